// `leaks --reach` (eBPF, root): a fixture leaking from one path and caching from another; the trace
// alone sees both as outstanding, reachability at the end tells the leak from the cache.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { readdirSync, readlinkSync } from 'node:fs';
import { ensureFixturesBuilt, REPO_ROOT } from '../../test/helpers/build.js';
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

function run(args: string[]): { pid: number; done: Promise<{ status: number; stdout: string; stderr: string }> } {
  const c = spawn(process.execPath, [join(REPO_ROOT, 'bin/leakscope'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '',
    stderr = '';
  c.stdout.on('data', (d: Buffer) => (stdout += d));
  c.stderr.on('data', (d: Buffer) => (stderr += d));
  return {
    pid: c.pid!,
    done: new Promise((resolve) => c.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr }))),
  };
}

/** Waits until process `pid` holds probe fds (bpf links / perf events), unchanged for 500 ms (every probe attached). */
async function attached(pid: number, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = -1,
    since = Date.now();
  while (Date.now() < end) {
    let n = 0;
    try {
      n = readdirSync(`/proc/${pid}/fd`).filter((f) => {
        try {
          return /perf_event|bpf_link/.test(readlinkSync(`/proc/${pid}/fd/${f}`));
        } catch {
          return false;
        }
      }).length;
    } catch {
      /* not yet */
    }
    if (n !== last) {
      last = n;
      since = Date.now();
    } else if (n > 0 && Date.now() - since >= 500) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('leakscope did not attach its probes');
}

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
