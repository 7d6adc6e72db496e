// Heap census against ground truth: heap-pattern's own mallinfo2() and chunk classes,
// mem-known's regions, and live walks of the churn fixture.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveProcess } from '../target/index.js';
import { debugRoots } from '../symbols/index.js';
import { isLeakscopeError } from '../model/errors.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { startFixture, type HeapPatternTruth } from '../../test/helpers/fixture.js';
import { heapCensus, glibcRegions, compareCensus, type HeapCensus } from './index.js';
import { renderHeapTable } from '../report/heap-table.js';
import { encodeHeap, parseHeap } from '../contract/heap.js';

function bucketOf(size: number): number {
  return Math.floor(Math.log2(size));
}

/** Checks a census of heap-pattern at its quiescent point against the fixture's own numbers. */
function checkHeapPattern(c: HeapCensus, truth: HeapPatternTruth): void {
  const mi = truth.mallinfo2;
  const t = c.totals;
  assert.equal(c.glibcVersion, truth.glibcVersion);
  assert.equal(c.inconsistencyCount, 0, JSON.stringify(c.inconsistencies));
  assert.equal(c.complete, true);
  assert.equal(c.arenas.length, truth.arenaCount);
  // mallinfo2 (glibc 2.36 int_mallinfo): arena = sum system_mem; ordblks = bin chunks + one
  // top per arena; smblks = fastbin chunks; hblks/hblkhd = mmapped; fordblks = top +
  // fastbins + bins; uordblks = arena - fordblks.
  assert.equal(t.systemBytes, mi.arena, 'arena');
  assert.equal(t.binChunks + c.arenas.length, mi.ordblks, 'ordblks');
  assert.equal(t.fastbinChunks, mi.smblks, 'smblks');
  assert.equal(t.fastbinBytes, mi.fsmblks, 'fsmblks');
  assert.equal(t.mmappedChunks, mi.hblks, 'hblks');
  assert.equal(t.mmappedBytes, mi.hblkhd, 'hblkhd');
  assert.equal(
    t.topBytes,
    c.arenas.reduce((n, a) => n + a.topBytes, 0),
  );
  assert.equal(c.arenas[0]!.topBytes, mi.keepcost, 'keepcost');
  const fordblks = t.topBytes + t.fastbinBytes + t.binBytes;
  const uordblks = t.inUseBytes + t.tcacheBytes;
  assert.ok(Math.abs(fordblks - mi.fordblks) <= 0.005 * mi.fordblks, `fordblks ${fordblks} vs ${mi.fordblks}`);
  assert.ok(Math.abs(uordblks - mi.uordblks) <= 0.005 * mi.uordblks, `uordblks ${uordblks} vs ${mi.uordblks}`);
  // Free lists: the fixture made every free chunk there is (libc frees none of its own at this point).
  const tt = truth.totals;
  assert.equal(t.tcacheChunks, tt.tcacheChunks, 'tcache chunks');
  assert.equal(t.tcacheBytes, tt.tcacheBytes, 'tcache bytes');
  assert.equal(t.fastbinChunks, tt.fastbinChunks, 'fastbin chunks');
  assert.equal(t.binChunks, tt.binChunks, 'bin chunks');
  assert.equal(t.binBytes, tt.binBytes, 'bin bytes');
  assert.equal(t.unsortedChunks, tt.unsortedChunks, 'unsorted');
  assert.equal(t.smallbinChunks, tt.smallbinChunks, 'small bins');
  assert.equal(t.largebinChunks, tt.largebinChunks, 'large bins');
  assert.equal(t.tcaches, truth.threads, 'one tcache per thread');
  // Per arena (each arena got the same holes; compare as multisets).
  const perArena = (f: (a: { tcache: number; fastbin: number; bin: number }) => number) => f;
  void perArena;
  const truthArena = new Map<string, { tcache: number; fastbin: number; bin: number }>();
  for (const k of truth.classes) {
    const e = truthArena.get(k.arena) ?? { tcache: 0, fastbin: 0, bin: 0 };
    if (k.state === 'tcache') e.tcache += k.count;
    else if (k.state === 'fastbin') e.fastbin += k.count;
    else if (k.state === 'smallbin' || k.state === 'largebin' || k.state === 'unsorted') e.bin += k.count;
    truthArena.set(k.arena, e);
  }
  const key = (x: { tcache: number; fastbin: number; bin: number }) => `${x.tcache}/${x.fastbin}/${x.bin}`;
  assert.deepEqual(
    c.arenas.map((a) => key({ tcache: a.tcacheChunks, fastbin: a.fastbinChunks, bin: a.binChunks })).sort(),
    [...truthArena.values()].map(key).sort(),
  );
  // Histogram: free chunks per bucket exactly the fixture's.
  for (const b of truth.buckets) {
    const h = c.histogram.find((x) => x.minBytes === b.minBytes);
    assert.equal(h?.freeChunks ?? 0, b.freeChunks, `free chunks in [${b.minBytes}, ${b.maxBytes})`);
    assert.equal(h?.freeBytes ?? 0, b.freeBytes, `free bytes in [${b.minBytes}, ${b.maxBytes})`);
  }
  // In use: every exact size the fixture allocated is counted exactly (libc allocates none of these sizes).
  const fixtureSizes = new Map<number, number>();
  for (const k of truth.classes)
    if (k.state === 'inuse' || k.state === 'mmapped')
      fixtureSizes.set(k.chunkSize, (fixtureSizes.get(k.chunkSize) ?? 0) + k.count);
  const sizes = new Map(c.topSizes.map((s) => [s.size, s.count]));
  for (const [size, count] of fixtureSizes) assert.equal(sizes.get(size), count, `in-use chunks of size ${size}`);
  // Buckets: the census's in-use count = the fixture's + libc's own chunks (sizes the fixture never asks for:
  // the 3 tcache_perthread_structs, stdio's FILE, thread bookkeeping). They must be few.
  const libcExtra = new Map<number, number>();
  for (const s of c.topSizes)
    if (!fixtureSizes.has(s.size)) libcExtra.set(bucketOf(s.size), (libcExtra.get(bucketOf(s.size)) ?? 0) + s.count);
  const extraTotal = [...libcExtra.values()].reduce((x, y) => x + y, 0);
  assert.ok(extraTotal >= truth.threads && extraTotal <= 12, `libc's own in-use chunks: ${extraTotal}`);
  assert.equal(sizes.get(656), truth.threads, 'tcache_perthread_struct chunks (0x290) in use, one per thread');
  for (const b of truth.buckets) {
    const h = c.histogram.find((x) => x.minBytes === b.minBytes);
    assert.equal(
      h?.inUseChunks ?? 0,
      b.inUseChunks + b.mmappedChunks + (libcExtra.get(bucketOf(b.minBytes)) ?? 0),
      `in-use chunks in [${b.minBytes}, ${b.maxBytes})`,
    );
  }
}

test('heap census of heap-pattern agrees with its mallinfo2() and chunk classes (libc6-dbg symbols)', async () => {
  await ensureFixturesBuilt();
  const fx = await startFixture('heap-pattern');
  try {
    const space = LiveProcess.open(fx.pid);
    const c = heapCensus(space, { topSizes: 1000 });
    space.close();
    assert.match(c.sources.mainArena!, /^debug-file symbol/);
    assert.match(c.sources.mp!, /^debug-file symbol/);
    checkHeapPattern(c, fx.truth);
    // Renderers: JSON contract fields and a table.
    const j = encodeHeap(c);
    assert.equal(j.schema, 'leakscope.heap/1');
    for (const k of [
      'inUseChunks',
      'inUseBytes',
      'freeChunks',
      'freeBytes',
      'tcacheChunks',
      'tcacheBytes',
      'fastbinChunks',
      'fastbinBytes',
      'binChunks',
      'binBytes',
      'topBytes',
      'mmappedChunks',
      'mmappedBytes',
      'systemBytes',
    ]) {
      assert.equal(typeof (j.totals as unknown as Record<string, number>)[k], 'number', k);
    }
    assert.ok(Array.isArray(j.histogram) && Array.isArray(j.arenas) && Array.isArray(j.inconsistencies));
    // The contract's parser reads back exactly what the encoder wrote.
    const text = JSON.stringify(j);
    assert.deepEqual(JSON.parse(JSON.stringify(parseHeap(JSON.parse(text)))), JSON.parse(text));
    const table = renderHeapTable(j);
    assert.match(table, /glibc 2\.36/);
    assert.match(table, /1\.00 MiB – 2\.00 MiB/);
    // Comparing a census with itself: no growth.
    const cmp = compareCensus(c, c);
    assert.ok(cmp.buckets.every((b) => b.inUseChunks === 0 && b.freeChunks === 0));
  } finally {
    await fx.stop();
  }
});

test('heap census of heap-pattern without libc debug file (debugRoots = []): same numbers by heuristics', async () => {
  await ensureFixturesBuilt();
  const saved = debugRoots.splice(0, debugRoots.length);
  const fx = await startFixture('heap-pattern');
  try {
    const space = LiveProcess.open(fx.pid);
    const c = heapCensus(space, { topSizes: 1000 });
    space.close();
    assert.match(c.sources.mainArena!, /^heuristic: top-chunk search/);
    assert.match(c.sources.mp!, /^heuristic/);
    assert.match(c.sources.tcacheKey!, /^heuristic/);
    checkHeapPattern(c, fx.truth);
  } finally {
    debugRoots.push(...saved);
    await fx.stop();
  }
});

test('glibcRegions of mem-known holds its main-heap, thread-arena and mmapped allocations', async () => {
  await ensureFixturesBuilt();
  const fx = await startFixture('mem-known');
  try {
    const space = LiveProcess.open(fx.pid);
    const r = glibcRegions(space);
    const t = fx.truth;
    const inAny = (rs: { start: number; end: number }[], a: number) => rs.some((x) => a >= x.start && a < x.end);
    assert.ok(inAny(r.mainHeap, t.mainHeap.firstAddr) && inAny(r.mainHeap, t.mainHeap.lastAddr), 'main heap');
    assert.ok(
      inAny(r.threadHeaps, t.threadArena.firstAddr) && inAny(r.threadHeaps, t.threadArena.lastAddr),
      'thread heaps',
    );
    assert.ok(!inAny(r.threadHeaps, t.mainHeap.firstAddr));
    assert.equal(r.mmappedChunks.length, t.mallinfo2.hblks);
    assert.equal(
      r.mmappedChunks.reduce((n, m) => n + m.size, 0),
      t.mallinfo2.hblkhd,
    );
    const mm = r.mmappedChunks.map((m) => ({ start: m.address, end: m.address + m.size }));
    assert.ok(inAny(mm, t.mmapped.firstAddr) && inAny(mm, t.mmapped.lastAddr), 'mmapped chunks');
    assert.ok(mm.filter((m) => m.end - m.start === t.mmapped.chunkSize).length >= t.mmapped.count);
    // And the census agrees with mallinfo2 on a 100 MiB heap.
    const c = heapCensus(space);
    space.close();
    assert.equal(c.totals.systemBytes, t.mallinfo2.arena);
    assert.equal(c.totals.mmappedChunks, t.mallinfo2.hblks);
    assert.equal(c.totals.binChunks + c.arenas.length, t.mallinfo2.ordblks);
    const sizes = new Map(c.topSizes.map((s) => [s.size, s.count]));
    assert.equal(sizes.get(t.mainHeap.chunkSize), t.mainHeap.count + t.threadArena.count);
  } finally {
    await fx.stop();
  }
});

test('live walks of the churn fixture (heap mutating while read) never throw or hang', async () => {
  await ensureFixturesBuilt();
  const fx = await startFixture('churn', ['2', '4096']);
  let inconsistencies = 0,
    partial = 0,
    errors = 0;
  const kinds = new Map<string, number>();
  try {
    const space = LiveProcess.open(fx.pid);
    for (let i = 0; i < 20; i++) {
      const t0 = Date.now();
      try {
        const c = heapCensus(space);
        inconsistencies += c.inconsistencyCount;
        if (!c.complete) partial++;
        for (const x of c.inconsistencies) {
          assert.ok(Number.isFinite(x.address) && x.kind && x.detail);
          kinds.set(x.kind, (kinds.get(x.kind) ?? 0) + 1);
        }
        assert.ok(c.arenas.length >= fx.truth.arenaCountAtLeast);
        assert.ok(c.totals.inUseChunks > 0);
      } catch (e) {
        // A typed error is allowed (e.g. a mapping vanished between maps and read); nothing else.
        assert.ok(isLeakscopeError(e), `walk ${i} threw ${String(e)}`);
        errors++;
      }
      assert.ok(Date.now() - t0 < 5000, `walk ${i} took ${Date.now() - t0} ms`);
      space.mappings({ refresh: true });
    }
    space.close();
  } finally {
    await fx.stop();
  }
  console.log(
    `# churn: 20 walks, ${inconsistencies} inconsistencies (${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}), ${partial} partial, ${errors} typed errors`,
  );
});
