// `leaks --reach` (eBPF, root): a fixture leaking from one path and caching from another; the trace
// alone sees both as outstanding, reachability at the end tells the leak from the cache.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { probesAttached, runLeakscope } from '../../test/helpers/leakscope-cli.js';
import { startFixture } from '../../test/helpers/fixture.js';

interface GoAnswer {
  leakPath: { count: number; bytes: number };
  cachePath: { count: number; bytes: number };
}
interface StackJson {
  frames: { function: string | null }[];
  bytes: number;
  count: number;
  reach?: Record<string, number>;
}

const run = runLeakscope;
const attached = probesAttached;

test('leaks --reach: the leaking path is unreachable, the caching path reachable', async () => {
  await ensureFixturesBuilt();
  const fx = await startFixture('reach-known');
  try {
    const trace = run([
      'leaks',
      String(fx.pid),
      '--mode',
      'malloc',
      '--sample-bytes',
      '0',
      '--duration',
      '6',
      '--reach',
      '--json',
    ]);
    await attached(trace.pid);
    const go = await fx.command<GoAnswer>('go 500');
    const r = await trace.done;
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout) as { stacks: StackJson[] };
    const on = (fn: string) => doc.stacks.filter((s) => s.frames.some((f) => f.function === fn));
    const sum = (ss: StackJson[], k: string) => ss.reduce((n, s) => n + (s.reach?.[k] ?? 0), 0);
    const leak = on('leak_path'),
      cache = on('cache_path');
    assert.ok(leak.length && cache.length, 'both paths traced');
    assert.equal(
      leak.reduce((n, s) => n + s.count, 0),
      go.leakPath.count,
    );
    assert.equal(
      cache.reduce((n, s) => n + s.count, 0),
      go.cachePath.count,
    );
    // Every leaked allocation is definitely lost; every cached one reachable (a list from a global).
    assert.equal(sum(leak, 'lostCount'), go.leakPath.count, JSON.stringify(leak.map((s) => s.reach)));
    assert.equal(sum(leak, 'reachableCount'), 0);
    assert.equal(sum(cache, 'reachableCount'), go.cachePath.count, JSON.stringify(cache.map((s) => s.reach)));
    assert.equal(sum(cache, 'lostCount'), 0);
  } finally {
    await fx.stop();
  }
});
