// Pool analysis against a real Debian nginx with the leaking test module.
// Ground truth comes from the module itself, not from the analysis:
//   - its JSON answers (kept / dropped / stored / inflight counts per worker, leak size);
//   - its own static table ngx_http_leak_sessions[0 .. ngx_http_leak_nsessions), read
//     directly through the symbol, for the exact addresses of the kept pools;
//   - the session record it writes at pool + 80 (first ngx_pcalloc of a fresh pool) with
//     magic "LEAKSCOP", which marks every pool it created and never destroyed;
//   - the glibc census (src/glibc) for in-use chunks and histogram buckets.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { driveRequests, runWrk, startNginx } from '../../test/helpers/nginx.js';
import type { LeakModuleBody, NginxHandle } from '../../test/helpers/nginx.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { Symbolizer } from '../symbols/index.js';
import { LiveProcess } from '../target/index.js';
import type { AddressSpace } from '../target/index.js';
import { censusWithChunks } from './census-chunks.js';
import { analyzePools } from './pools.js';
import type { PoolAnalysis } from './pools.js';
import { nginxShmZones } from './shm.js';
import { bucketOf, ChunkList } from './chunks.js';
import { renderPoolsTable } from '../report/pools-table.js';
import { encodePools, parsePools } from '../contract/pools.js';

const MAGIC_LO = 0x53434f50,
  MAGIC_HI = 0x4c45414b;
const SESSION_POOL_SIZE = 16384;
const LEAK_SIZE = 300 * 1024;

const handles: NginxHandle[] = [];
after(async () => {
  for (const h of handles) await h.stop();
});

async function start(opts: Parameters<typeof startNginx>[0] = {}): Promise<NginxHandle> {
  await ensureFixturesBuilt();
  const h = await startNginx(opts);
  handles.push(h);
  return h;
}

function analyze(pid: number): { a: PoolAnalysis; space: AddressSpace; census: ReturnType<typeof censusWithChunks> } {
  const space = LiveProcess.open(pid);
  const symbolizer = new Symbolizer(space.modules());
  const census = censusWithChunks(space, { symbolizer });
  const a = analyzePools(space, { chunks: census.chunks, symbolizer, histogram: census.census.histogram });
  return { a, space, census };
}

function hasMagic(space: AddressSpace, pool: number): boolean {
  const b = Buffer.alloc(8);
  if (space.readInto(pool + 80, b, 0, 8) !== 8) return false;
  return b.readUInt32LE(0) === MAGIC_LO && b.readUInt32LE(4) === MAGIC_HI;
}

/** The module's own table of kept pools, read through its symbols. */
function keptPoolsFromModule(space: AddressSpace): number[] {
  const sym = new Symbolizer(space.modules());
  const table = sym.require('ngx_http_leak_sessions', { module: 'ngx_http_leak_module' });
  const n = space.readU64(sym.require('ngx_http_leak_nsessions', { module: 'ngx_http_leak_module' }).runtimeAddr);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(space.readU64(table.runtimeAddr + i * 8));
  return out;
}

test('leaked pools: exactly the leaked ones, kept attributed to the module, dropped unreferenced, in-flight requests found', {
  timeout: 120_000,
}, async () => {
  const h = await start({ workers: 1 });
  const keep = await driveRequests(h, '/leak-keep', 30, 4);
  const drop = await driveRequests(h, '/leak-drop', 20, 4);
  assert.equal(keep.ok, 30);
  assert.equal(drop.ok, 20);
  // The module's counters after every request completed (the last body to arrive, with 4 at a
  // time, may come from an earlier request): every location answers with them; /ok leaks nothing.
  const body = JSON.parse((await h.request('/ok')).body) as LeakModuleBody;
  assert.equal(body.kept, 30);
  assert.equal(body.dropped, 20);
  assert.equal(body.size, LEAK_SIZE);

  // three requests held open while we look
  const slow = [0, 1, 2].map(() => h.request('/slow?ms=4000', 20_000));
  const deadline = Date.now() + 3000;
  let inflight = 0;
  while (Date.now() < deadline) {
    inflight = (JSON.parse((await h.request('/ok')).body) as LeakModuleBody).inflight;
    if (inflight === 3) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(inflight, 3, 'three /slow requests in flight');

  const [pid] = h.workerPids();
  const { a, space, census } = analyze(pid!);
  try {
    const kept = new Set(keptPoolsFromModule(space));
    assert.equal(kept.size, 30);

    // exactly the leaked pools carry the module's session record
    const leaked = a.pools.filter((p) => hasMagic(space, p.address));
    assert.equal(leaked.length, 50, 'every leaked pool found, no other pool mistaken for one');
    for (const p of leaked) {
      assert.equal(p.size, SESSION_POOL_SIZE);
      assert.equal(p.blocks.length, 1);
      assert.equal(p.large.length, 1, `pool 0x${p.address.toString(16)} has its one large allocation`);
      assert.ok(
        p.large[0]!.chunkSize >= LEAK_SIZE + 8 && p.large[0]!.chunkSize <= LEAK_SIZE + 4096 + 16,
        `large chunk ${p.large[0]!.chunkSize}`,
      );
      assert.deepEqual(
        p.cleanups.map((c) => c.function),
        ['ngx_http_leak_session_cleanup'],
      );
      assert.equal(p.creator, 'ngx_http_leak_module');
    }
    // kept: attributed to the module by name, referenced from its table
    const staticPools = a.pools.filter((p) => p.owner === 'static' && p.module === 'ngx_http_leak_module');
    assert.deepEqual(new Set(staticPools.map((p) => p.address)), kept);
    for (const p of staticPools) assert.equal(p.referencedFrom, 'ngx_http_leak_module.so:ngx_http_leak_sessions');
    // dropped: unreferenced, exactly the 20 leaked pools not in the table
    const unref = a.pools.filter((p) => p.owner === 'unreferenced');
    assert.deepEqual(
      new Set(unref.map((p) => p.address)),
      new Set(leaked.filter((p) => !kept.has(p.address)).map((p) => p.address)),
    );
    assert.equal(unref.length, 20);
    const g = a.groups.find((x) => x.owner === 'unreferenced' && x.creator === 'ngx_http_leak_module')!;
    assert.equal(g.pools, 20);
    assert.equal(g.largeAllocs, 20);
    const gk = a.groups.find((x) => x.owner === 'static' && x.module === 'ngx_http_leak_module')!;
    assert.equal(gk.pools, 30);
    assert.equal(gk.largeAllocs, 30);

    // the held-open requests: their pools, reached through connection->data
    assert.equal(a.roots.requests, 3);
    assert.equal(a.pools.filter((p) => p.owner === 'request').length, 3);
    assert.equal(a.pools.filter((p) => p.owner === 'cycle').length, 1);
    assert.ok(a.pools.filter((p) => p.owner === 'connection').length >= 3, 'the three client connections');

    // Reconciliation with the census (all figures are glibc chunk sizes):
    //  1. every block and large allocation is an in-use chunk of the census, with that chunk size;
    //  2. group bytes = sum of those chunk sizes; totals = sum over groups;
    //  3. per histogram bucket, pool chunks/bytes <= the census's in-use chunks/bytes there,
    //     and the per-bucket split sums back to the totals;
    //  4. the 50 leaked pools alone: 50 chunks of 16400 bytes (request2size(16384)) in bucket
    //     [16 KiB, 32 KiB) and 50 mmapped chunks in [256 KiB, 512 KiB).
    const chunkSize = new Map<number, number>();
    census.chunks.forEach((addr, size) => {
      chunkSize.set(addr, size);
    });
    let sum = 0;
    for (const p of a.pools) {
      for (const b of p.blocks) {
        assert.equal(chunkSize.get(b.address), b.chunkSize, `block 0x${b.address.toString(16)}`);
        sum += b.chunkSize;
      }
      for (const l of p.large) {
        assert.equal(chunkSize.get(l.address), l.chunkSize, `large 0x${l.address.toString(16)}`);
        sum += l.chunkSize;
      }
    }
    assert.equal(a.totals.bytes, sum);
    assert.equal(
      a.groups.reduce((s, x) => s + x.bytes, 0),
      sum,
    );
    assert.equal(
      a.groups.reduce((s, x) => s + x.blockBytes + x.largeBytes, 0),
      sum,
    );
    const census2 = census.census;
    assert.ok(sum <= census2.totals.inUseBytes + census2.totals.mmappedBytes);
    let bucketSum = 0;
    for (const b of a.buckets) {
      const hb = census2.histogram.find((x) => x.minBytes === b.minBytes)!;
      assert.ok(hb, `census bucket ${b.minBytes}`);
      assert.equal(b.censusInUseChunks, hb.inUseChunks);
      assert.ok(b.poolChunks <= hb.inUseChunks && b.poolBytes <= hb.inUseBytes, `bucket ${b.minBytes}`);
      assert.equal(
        b.groups.reduce((s, x) => s + x.blockBytes + x.largeBytes, 0),
        b.poolBytes,
      );
      bucketSum += b.poolBytes;
    }
    assert.equal(bucketSum, sum);
    const b16k = a.buckets.find((b) => b.minBytes === bucketOf(16400).minBytes)!;
    const leakGroups = new Set([a.groups.indexOf(g), a.groups.indexOf(gk)]);
    assert.equal(
      b16k.groups.filter((s) => leakGroups.has(s.group)).reduce((s, x) => s + x.blockChunks, 0),
      50,
    );
    assert.equal(
      b16k.groups.filter((s) => leakGroups.has(s.group)).reduce((s, x) => s + x.blockBytes, 0),
      50 * 16400,
    );
    const b256k = a.buckets.find((b) => b.minBytes === 256 * 1024)!;
    assert.equal(
      b256k.groups.filter((s) => leakGroups.has(s.group)).reduce((s, x) => s + x.largeChunks, 0),
      50,
    );
    assert.equal(a.inconsistencyCount, 0, JSON.stringify(a.inconsistencies.slice(0, 5)));
    // quiescent worker: the census lists exactly the chunks it counts as in use
    assert.equal(census.census.inconsistencyCount, 0, JSON.stringify(census.census.inconsistencies.slice(0, 5)));
    assert.equal(census.chunks.length, census.census.totals.inUseChunks + census.census.totals.mmappedChunks);

    // The census's pool-candidate hints and bytes only save reads: every leaked pool's chunk is
    // hinted a candidate (or unknown), and the analysis over the bare chunk list (no hints, no
    // bytes: every chunk read by the scan) finds the same leaked pools with the same owners.
    const bare: Array<{ userAddr: number; chunkSize: number; mmapped: boolean }> = [];
    const hint = new Map<number, boolean | undefined>();
    let hintedOut = 0;
    census.chunks.forEach((userAddr, size, mmapped, poolCandidate) => {
      bare.push({ userAddr, chunkSize: size, mmapped });
      hint.set(userAddr, poolCandidate);
      if (poolCandidate === false) hintedOut++;
    });
    assert.ok(hintedOut > 0, 'some chunks hinted not a pool');
    for (const p of leaked)
      assert.notEqual(hint.get(p.address), false, `leaked pool 0x${p.address.toString(16)} hinted not a pool`);
    const a2 = analyzePools(space, { chunks: new ChunkList(bare), histogram: census2.histogram });
    const ownersOf = (x: PoolAnalysis) =>
      x.pools
        .filter((p) => hasMagic(space, p.address))
        .map((p) => `${p.address}:${p.owner}:${p.module}:${p.bytes}`)
        .sort();
    assert.deepEqual(ownersOf(a2), ownersOf(a));
    assert.ok(
      a2.stats.candidates > a.stats.candidates,
      `${a2.stats.candidates} candidates without hints, ${a.stats.candidates} with`,
    );

    // renderers
    const json = encodePools(a);
    assert.equal(json.schema, 'leakscope.pools/1');
    assert.deepEqual(Object.keys(json.totals).slice(0, 5), ['pools', 'blocks', 'bytes', 'largeAllocs', 'largeBytes']);
    assert.equal(JSON.parse(JSON.stringify(json)).groups.length, a.groups.length);
    // The contract's parser reads back exactly what the encoder wrote.
    const written = JSON.stringify(json);
    assert.deepEqual(JSON.parse(JSON.stringify(parsePools(JSON.parse(written)))), JSON.parse(written));
    const text = renderPoolsTable(json);
    assert.match(text, /ngx_http_leak_module/);
    assert.match(text, /leak suspects: 20 pool/);
  } finally {
    space.close();
  }
  await Promise.all(slow);
});

test('a worker that never served the leaking locations has nothing attributed to the module', {
  timeout: 60_000,
}, async () => {
  const h = await start({ workers: 1 });
  await driveRequests(h, '/ok', 20, 4);
  const [pid] = h.workerPids();
  const { a, space } = analyze(pid!);
  try {
    for (const g of a.groups) {
      assert.notEqual(g.module, 'ngx_http_leak_module', JSON.stringify(g));
      assert.notEqual(g.creator, 'ngx_http_leak_module', JSON.stringify(g));
    }
    assert.equal(a.pools.filter((p) => p.owner === 'unreferenced').length, 0);
    assert.equal(a.pools.filter((p) => hasMagic(space, p.address)).length, 0);
    assert.ok(
      a.modules.some((m) => m.name === 'ngx_http_leak_module' && m.object.endsWith('ngx_http_leak_module.so')),
      'the module is loaded, just unused',
    );
  } finally {
    space.close();
  }
});

test('nginxShmZones: the limit_req zone with its size and owning module', { timeout: 60_000 }, async () => {
  const h = await start({ workers: 1 });
  const [pid] = h.workerPids();
  const space = LiveProcess.open(pid!);
  try {
    const zones = nginxShmZones(space, new Symbolizer(space.modules()));
    const z = zones.find((x) => x.name === 'leakscope_zone');
    assert.ok(z, JSON.stringify(zones));
    assert.equal(z.size, 1024 * 1024);
    assert.equal(z.module, 'ngx_http_limit_req_module');
    const m = space.mappings().find((x) => z.address >= x.start && z.address < x.end)!;
    assert.ok(m?.perms.endsWith('s'), 'a shared mapping');
    assert.ok(z.address + z.size <= m.end);
  } finally {
    space.close();
  }
});

test('under load (wrk on /ok and /leak-drop) the analysis completes and counts inconsistencies', {
  timeout: 120_000,
}, async (t) => {
  const h = await start({ workers: 1, leakSize: '64k' });
  const [pid] = h.workerPids();
  const load = Promise.all([runWrk(h.url('/ok'), 4, 16), runWrk(h.url('/leak-drop'), 4, 4)]);
  const t0 = Date.now();
  let runs = 0,
    failures = 0,
    inconsistencies = 0,
    slowest = 0;
  const errors: string[] = [];
  await new Promise((r) => setTimeout(r, 300));
  while (Date.now() - t0 < 3500) {
    try {
      const { a, space } = analyze(pid!);
      space.close();
      runs++;
      inconsistencies += a.inconsistencyCount;
      slowest = Math.max(slowest, a.stats.elapsedMs);
      assert.ok(Number.isInteger(a.inconsistencyCount));
      assert.ok(a.totals.pools >= 1);
      assert.equal(
        a.inconsistencyCount,
        Object.values(a.inconsistencyKinds).reduce((s, n) => s + n, 0),
      );
    } catch (e) {
      // The census may refuse a heap that changed under it; the pool analysis itself must not throw.
      failures++;
      errors.push(String(e));
      if (!/census|heap/i.test(String(e))) throw e;
    }
    await new Promise((r) => setImmediate(r));
  }
  const reqs = await load;
  t.diagnostic(
    `${runs} analyses under load, ${failures} census failures, ${inconsistencies} pool inconsistencies counted, slowest analysis ${slowest.toFixed(0)} ms`,
  );
  assert.ok(reqs[0] > 0 && reqs[1] > 0, 'wrk drove traffic');
  assert.ok(
    runs >= 1,
    `at least one complete analysis under load (${failures} census failures: ${errors.slice(0, 2).join('; ')})`,
  );
  // after the load: every dropped pool is found, unreferenced
  const body = JSON.parse((await h.request('/ok')).body) as LeakModuleBody;
  const { a, space } = analyze(pid!);
  try {
    const dropped = a.pools.filter((p) => p.owner === 'unreferenced' && p.creator === 'ngx_http_leak_module');
    assert.equal(dropped.length, body.dropped);
  } finally {
    space.close();
  }
});
