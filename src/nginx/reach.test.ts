// Reachability (src/glibc) on a real Debian nginx with the leaking test module: the dropped
// session pools' blocks and large allocations are lost (definitely / indirectly), the kept ones
// reachable, matching the pool analysis's unreferenced / static owners and the module's own table.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { driveRequests, startNginx } from '../../test/helpers/nginx.js';
import type { NginxHandle } from '../../test/helpers/nginx.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { Symbolizer } from '../symbols/index.js';
import { LiveProcess } from '../target/index.js';
import { reachability } from '../glibc/index.js';
import { censusWithChunks } from './census-chunks.js';
import { analyzePools } from './pools.js';

const handles: NginxHandle[] = [];
after(async () => {
  for (const h of handles) await h.stop();
});

test("nginx: dropped pools' blocks and large allocations lost, kept ones reachable", { timeout: 120_000 }, async () => {
  await ensureFixturesBuilt();
  const h = await startNginx({ workers: 1 });
  handles.push(h);
  assert.equal((await driveRequests(h, '/leak-keep', 30, 4)).ok, 30);
  assert.equal((await driveRequests(h, '/leak-drop', 20, 4)).ok, 20);
  const [pid] = h.workerPids();
  const space = LiveProcess.open(pid!);
  try {
    const symbolizer = new Symbolizer(space.modules());
    const r = await reachability(space, { symbolizer });
    const census = censusWithChunks(space, { symbolizer });
    const a = analyzePools(space, { chunks: census.chunks, symbolizer, histogram: census.census.histogram });
    // The module's own table of kept pools (ground truth, through its symbols).
    const table = symbolizer.require('ngx_http_leak_sessions', { module: 'ngx_http_leak_module' });
    const n = space.readU64(
      symbolizer.require('ngx_http_leak_nsessions', { module: 'ngx_http_leak_module' }).runtimeAddr,
    );
    const kept = new Set<number>();
    for (let i = 0; i < n; i++) kept.add(space.readU64(table.runtimeAddr + i * 8));
    assert.equal(kept.size, 30);

    const dropped = a.pools.filter((p) => p.owner === 'unreferenced' && p.creator === 'ngx_http_leak_module');
    const statics = a.pools.filter((p) => p.owner === 'static' && p.module === 'ngx_http_leak_module');
    assert.equal(dropped.length, 20);
    assert.deepEqual(new Set(statics.map((p) => p.address)), kept);
    for (const p of dropped) {
      assert.ok(!kept.has(p.address));
      // The pool's (only) block: nothing points to it: the leader of its group.
      assert.equal(r.classOf(p.address), 'definitelyLost', `dropped pool 0x${p.address.toString(16)}`);
      assert.equal(p.large.length, 1);
      // Its large allocation is pointed to only from the pool's ngx_pool_large_t: indirectly lost.
      assert.equal(
        r.classOf(p.large[0]!.address),
        'indirectlyLost',
        `large allocation of dropped pool 0x${p.address.toString(16)}`,
      );
    }
    for (const p of statics) {
      assert.equal(r.classOf(p.address), 'reachable', `kept pool 0x${p.address.toString(16)}`);
      for (const l of p.large)
        assert.equal(r.classOf(l.address), 'reachable', `large allocation of kept pool 0x${p.address.toString(16)}`);
    }
    const x = r.reachability;
    assert.ok(
      x.definitelyLost.chunks >= 20 && x.indirectlyLost.chunks >= 20,
      JSON.stringify({ d: x.definitelyLost, i: x.indirectlyLost }),
    );
    // What is lost is mostly the dropped sessions: 20 pools of 16 KiB + 20 x 300 KiB.
    const droppedBytes = dropped.reduce((s, p) => s + p.bytes, 0);
    assert.ok(
      x.definitelyLost.bytes + x.indirectlyLost.bytes >= droppedBytes * 0.99,
      `${x.definitelyLost.bytes + x.indirectlyLost.bytes} >= ${droppedBytes}`,
    );
  } finally {
    space.close();
  }
});
