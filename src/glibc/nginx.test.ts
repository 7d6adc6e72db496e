// The census on a real nginx worker with the leaking test module: every /leak-keep and
// /leak-drop request leaks one pool holding one 300 KiB large allocation, so the in-use
// count of the bucket holding those allocations grows by exactly the number of leaks the
// module itself reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveProcess } from '../target/index.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { startNginx, type LeakModuleBody } from '../../test/helpers/nginx.js';
import { heapCensus, compareCensus } from './index.js';

test('nginx with the leak module: the 256 KiB-512 KiB bucket grows by exactly the leaked allocations', async () => {
  await ensureFixturesBuilt();
  const ngx = await startNginx({ workers: 1, leakSize: '300k' });
  try {
    const [worker] = ngx.workerPids();
    assert.ok(worker, 'one nginx worker');
    // Warm-up: the same work without leaking. The first free of a 300 KiB mmapped chunk
    // raises glibc's mmap threshold, after which these allocations come from the heap.
    for (let i = 0; i < 20; i++) assert.equal((await ngx.request('/ok')).status, 200);
    const before = JSON.parse((await ngx.request('/ok')).body) as LeakModuleBody;
    const space = LiveProcess.open(worker);
    const baseline = heapCensus(space);
    const N = 12;
    let last = before;
    for (let i = 0; i < N; i++) {
      const r = await ngx.request(i % 2 ? '/leak-drop' : '/leak-keep');
      assert.equal(r.status, 200);
      last = JSON.parse(r.body) as LeakModuleBody;
    }
    const leaked = last.leaked - before.leaked;
    assert.equal(leaked, N);
    space.mappings({ refresh: true });
    const current = heapCensus(space);
    space.close();
    const size = before.size || 300 * 1024;
    const bucketMin = 2 ** Math.floor(Math.log2(size));
    const growth = compareCensus(baseline, current).buckets.find((b) => b.minBytes === bucketMin);
    assert.ok(growth, `bucket ${bucketMin}`);
    assert.equal(
      growth.inUseChunks,
      leaked,
      `in-use chunks in [${bucketMin}, ${bucketMin * 2}): ${growth.baselineInUseChunks} -> ${growth.currentInUseChunks}`,
    );
    assert.ok(growth.inUseBytes >= leaked * size && growth.inUseBytes < leaked * (size + 8192));
    assert.equal(current.inconsistencyCount, 0, JSON.stringify(current.inconsistencies));
  } finally {
    await ngx.stop();
  }
});
