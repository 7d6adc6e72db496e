// Fuzzed memory images: heap-pattern's memory (every readable rw mapping: [heap], thread
// heaps, mmapped chunks, libc .data/.bss) is captured once into buffers behind a fake
// AddressSpace, then mutated at random (chunk sizes, arena/tcache/fastbin pointers, loops,
// out-of-range pointers, heap_info fields). Every walk must end in a typed LeakscopeError or
// a census, partial ones naming the bad address, each in bounded time.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveProcess, hostRoot } from '../target/index.js';
import { ImageSpace } from '../target/test-image-space.js';
import { isLeakscopeError } from '../model/errors.js';
import { Symbolizer } from '../symbols/index.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { startFixture } from '../../test/helpers/fixture.js';
import { heapCensus, locateGlibc, type GlibcLocation } from './index.js';

/** xorshift32: reproducible mutations (the seed is printed on failure). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

test('fuzzed heap images: every walk ends in a typed error or a (partial) census, in bounded time', async () => {
  await ensureFixturesBuilt();
  const fx = await startFixture('heap-pattern');
  let space: ImageSpace;
  let loc: GlibcLocation;
  try {
    const live = LiveProcess.open(fx.pid);
    const maps = live.mappings();
    const regions: { start: number; bytes: Buffer }[] = [];
    for (const m of maps) {
      if (!m.perms.startsWith('rw')) continue;
      if (m.path !== '' && m.path !== '[heap]' && !/libc\.so/.test(m.path)) continue;
      const bytes = Buffer.alloc(m.end - m.start);
      const n = live.readInto(m.start, bytes, 0, bytes.length);
      regions.push({ start: m.start, bytes: bytes.subarray(0, n) });
    }
    const mods = live.modules().map((m) => ({ ...m, hostPath: m.path }));
    space = ImageSpace.ofRegions(regions, {
      pid: fx.pid,
      description: `image of pid ${fx.pid}`,
      mappings: maps,
      modules: mods,
      openTargetFile: (p, kind) => hostRoot().openTargetFile(p, kind),
    });
    loc = locateGlibc(space, new Symbolizer(mods));
    live.close();
  } finally {
    await fx.stop();
  }
  // The unmutated image gives the full census.
  const base = heapCensus(space, { location: loc });
  assert.equal(base.inconsistencyCount, 0);
  assert.equal(base.totals.tcaches, 3);

  // Interesting places: chunk headers (from the walk's heaps), arena fields, tcache structs, heap_infos.
  const L = loc.layout;
  const targets: number[] = [];
  for (const a of base.arenas) {
    targets.push(
      a.address + L.mstate.top,
      a.address + L.mstate.next,
      a.address + L.mstate.bins + 8,
      a.address + L.mstate.systemMem,
    );
    for (let i = 0; i < 10; i++) targets.push(a.address + (L.mstate.fastbinsY ?? 0) + i * 8);
    for (const h of a.heaps) if (a.kind === 'thread') targets.push(h.start, h.start + 8, h.start + 16);
  }
  const heapRanges = base.arenas.flatMap((a) => a.heaps.map((h) => ({ start: h.start, end: h.end })));
  const r = rng(Number(process.env.LEAKSCOPE_FUZZ_SEED ?? 0x5eed));
  const randIn = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo));
  const pickAddr = (): number => {
    const x = r();
    if (x < 0.3) return targets[Math.floor(r() * targets.length)]!;
    const h = heapRanges[Math.floor(r() * heapRanges.length)]!;
    // chunk-header-like positions (size fields are at 16k + 8) near the start, where tcache structs live, or anywhere
    if (x < 0.5) return h.start + 8 + 16 * randIn(0, 64);
    return h.start + 8 * randIn(0, (Math.min(h.end, h.start + (8 << 20)) - h.start) / 8);
  };
  const valueFor = (addr: number): number => {
    const x = r();
    if (x < 0.2) return (randIn(0, 1 << 20) & ~7) | randIn(0, 8); // a random small size with flags
    if (x < 0.35) return addr - 8; // a self-loop (chunk / list points at itself)
    if (x < 0.5) {
      const h = heapRanges[Math.floor(r() * heapRanges.length)]!;
      return h.start + 16 * randIn(0, (h.end - h.start) / 16);
    }
    if (x < 0.6) return 0;
    if (x < 0.7) return 0x7ffffffff000 + randIn(0, 4096); // out of every mapping
    if (x < 0.8) return Math.floor(r() * 2 ** 53);
    return 2 ** 53 - 1 - randIn(0, 16); // extreme values (high bits set)
  };
  const ITER = 150;
  let errors = 0,
    partial = 0,
    clean = 0,
    maxMs = 0;
  const errorCodes = new Map<string, number>();
  for (let it = 0; it < ITER; it++) {
    const undo: { region: Buffer; off: number; old: Buffer }[] = [];
    const n = 1 + Math.floor(r() * 6);
    for (let k = 0; k < n; k++) {
      const addr = pickAddr();
      const reg = space.regions.find((x) => addr >= x.start && addr + 8 <= x.start + x.bytes.length);
      if (!reg) continue;
      const off = addr - reg.start;
      undo.push({ region: reg.bytes, off, old: Buffer.from(reg.bytes.subarray(off, off + 8)) });
      const v = valueFor(addr);
      reg.bytes.writeUInt32LE((v % 4294967296) >>> 0, off);
      reg.bytes.writeUInt32LE(Math.floor(v / 4294967296) >>> 0, off + 4);
    }
    const t0 = performance.now();
    try {
      const c = heapCensus(space, { location: loc });
      if (!c.complete || c.inconsistencyCount) {
        partial++;
        assert.ok(c.inconsistencies.length > 0, `iteration ${it}: partial census without inconsistencies`);
        for (const i of c.inconsistencies)
          assert.ok(Number.isSafeInteger(i.address) && i.kind.length > 0, `iteration ${it}: ${JSON.stringify(i)}`);
      } else clean++;
      // Whatever happened, numbers stay sane.
      assert.ok(
        c.totals.inUseChunks >= 0 && Number.isFinite(c.totals.inUseBytes),
        `iteration ${it}: totals ${JSON.stringify(c.totals)}`,
      );
    } catch (e) {
      assert.ok(
        isLeakscopeError(e),
        `iteration ${it} (seed ${process.env.LEAKSCOPE_FUZZ_SEED ?? '0x5eed'}): untyped error ${(e as Error).stack}`,
      );
      errors++;
      errorCodes.set(e.code, (errorCodes.get(e.code) ?? 0) + 1);
    }
    const ms = performance.now() - t0;
    maxMs = Math.max(maxMs, ms);
    assert.ok(ms < 2000, `iteration ${it} took ${ms.toFixed(0)} ms`);
    for (const u of undo.reverse()) u.old.copy(u.region, u.off);
  }
  console.log(
    `# fuzz: ${ITER} mutated images: ${clean} clean censuses, ${partial} partial with inconsistencies, ${errors} typed errors (${[...errorCodes].map(([k, v]) => `${k} ${v}`).join(', ')}), slowest ${maxMs.toFixed(0)} ms`,
  );
  // The image is restored: the census is the baseline again.
  const again = heapCensus(space, { location: loc });
  assert.deepEqual(again.totals, base.totals);
});
