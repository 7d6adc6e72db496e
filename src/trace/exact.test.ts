// Exact mode (--sample-bytes 0) against ground truth: 4 threads with >= 300k malloc/free pairs
// and known leaks through every glibc allocation API (test/fixtures/c/threaded-leaker.c).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFixture } from '../../test/helpers/fixture.js';
import { startNginx, driveRequests } from '../../test/helpers/nginx.js';
import { workloadWindow } from '../../test/helpers/trace-window.js';
import { toPprof } from '../formats/pprof/pprof.js';
import { LiveProcess } from '../target/index.js';
import { traceLeaks, LOST_STACK_FRAME } from './leak-tracer.js';
import type { LeakTraceOptions } from './leak-tracer.js';
import { frameLabel } from '../model/index.js';
import type { LeakTrace } from '../model/index.js';

interface ThreadedLeak {
  function: string;
  api: string;
  size: number;
  site?: number;
  count: number;
  bytes: number;
}
interface ThreadedReport {
  pid: number;
  churnPairs: number;
  leaks: ThreadedLeak[];
  totalLeakedBytes: number;
}

async function traceThreaded(command: string, seconds: number, extra: Partial<LeakTraceOptions> = {}) {
  const fx = await startFixture<ThreadedReport>('threaded-leaker');
  try {
    const space = LiveProcess.open(fx.pid);
    let attached!: () => void;
    const ready = new Promise<void>((r) => {
      attached = r;
    });
    // The window ends when the batch is done, so it covers every allocation of it (seconds: the most).
    const window = workloadWindow(seconds);
    const trace = traceLeaks(space, {
      mode: 'malloc',
      ...window.options,
      sampleBytes: 0,
      onProgress: () => attached(),
      ...extra,
    });
    setTimeout(() => attached(), 300);
    await ready;
    const t0 = Date.now();
    const report = await fx.command<ThreadedReport>(command, 120_000);
    const batchSeconds = (Date.now() - t0) / 1000;
    window.done();
    const t = await trace;
    space.close();
    return { t, report, batchSeconds };
  } finally {
    await fx.stop();
  }
}

/** Outstanding bytes / count per leak_* function (and per leaf API). */
function byFunction(t: LeakTrace): Map<string, { bytes: number; count: number; leaves: Set<string> }> {
  const out = new Map<string, { bytes: number; count: number; leaves: Set<string> }>();
  for (const s of t.stacks) {
    const names = s.frames.map(frameLabel);
    const fn =
      names.find((n) => n.startsWith('leak_') && n !== 'leak_every_kind') ??
      (names[0] === LOST_STACK_FRAME.function ? 'lost' : 'other');
    const e = out.get(fn) ?? { bytes: 0, count: 0, leaves: new Set<string>() };
    e.bytes += s.bytes;
    e.count += s.count;
    e.leaves.add(names[0]!);
    out.set(fn, e);
  }
  return out;
}

test('exact mode, 4 threads with churn: every leak exact to the byte per path, leaf = the API called, requested sizes', async () => {
  const { t, report, batchSeconds } = await traceThreaded('go 100000 50', 60);
  console.log(
    `# ${report.churnPairs} malloc/free pairs in ${batchSeconds.toFixed(1)} s under tracing; ${t.totals.sampledEvents} records; lost ${JSON.stringify(t.lost)}; complete ${t.complete}`,
  );
  assert.ok(report.churnPairs >= 300_000);
  const got = byFunction(t);
  // Nothing lost: freed allocations' records never leave the kernel, outstanding ones are read at the end.
  assert.equal(t.complete, true, `complete: ${JSON.stringify(t.lost)} ${t.notes.join('; ')}`);
  assert.equal(t.totals.allocatedCount >= report.churnPairs, true, 'every allocation counted');
  assert.equal(t.lost!.events, 0);
  const expect = new Map<string, { bytes: number; count: number; api: Set<string> }>();
  for (const l of report.leaks) {
    const e = expect.get(l.function) ?? { bytes: 0, count: 0, api: new Set<string>() };
    e.bytes += l.bytes;
    e.count += l.count;
    e.api.add(l.api);
    expect.set(l.function, e);
  }
  for (const [fn, e] of expect) {
    const g = got.get(fn);
    assert.ok(g, `${fn} is in the trace`);
    assert.equal(g.bytes, e.bytes, `${fn}: requested bytes exact`);
    assert.equal(g.count, e.count, `${fn}: count exact`);
    // aligned_alloc and memalign are one function in glibc (same address): either name is the API.
    const apis = e.api.has('aligned_alloc') || e.api.has('memalign') ? new Set(['aligned_alloc', 'memalign']) : e.api;
    for (const leaf of g.leaves) assert.ok(apis.has(leaf), `${fn}: leaf ${leaf} is the API called (${[...e.api]})`);
  }
  assert.equal(got.get('lost'), undefined);
});

test('exact mode with a kernel stash and a ring too small on purpose: the loss is reported (complete: false, counts), totals keep the lost bytes', async () => {
  // 64 stashed records per map and a 4 KiB ring cannot hold 1800 leaks per thread.
  const { t, report } = await traceThreaded('go 100000 50', 60, { ringBytes: 4096, stashEntries: 64 });
  assert.equal(t.complete, false, 'the loss is said');
  assert.ok(t.lost!.events > 0, `lost events counted: ${JSON.stringify(t.lost)}`);
  assert.ok(t.lost!.requestedBytes > 0);
  assert.ok(
    t.notes.some((n) => n.includes('lost their stacks')),
    t.notes.join('; '),
  );
  // The kernel still tracked every allocation: the leaked bytes are all there, some under the lost path.
  const got = byFunction(t);
  const attributed = [...got.entries()].filter(([k]) => k.startsWith('leak_')).reduce((a, [, v]) => a + v.bytes, 0);
  const lost = got.get('lost')?.bytes ?? 0;
  assert.ok(attributed <= report.totalLeakedBytes, 'per-path figures are lower bounds');
  assert.ok(
    attributed + lost >= report.totalLeakedBytes,
    `leaked bytes ${report.totalLeakedBytes} all counted: ${attributed} attributed + ${lost} lost`,
  );
});

test('a target that exits during the trace is reported, and the result covers up to its exit', async () => {
  const fx = await startFixture<ThreadedReport>('threaded-leaker');
  try {
    const space = LiveProcess.open(fx.pid);
    const trace = traceLeaks(space, { mode: 'malloc', durationSeconds: 20, sampleBytes: 0 });
    await new Promise((r) => setTimeout(r, 1500));
    await fx.command<ThreadedReport>('go 1000 5', 60_000);
    fx.send('exit');
    const t0 = Date.now();
    const t = await trace;
    space.close();
    assert.ok(Date.now() - t0 < 5000, 'the trace ends soon after the exit, not at the end of its window');
    assert.ok(
      t.targetExitedAfterSeconds !== undefined && t.targetExitedAfterSeconds >= 1 && t.targetExitedAfterSeconds < 20,
      `exited after ${t.targetExitedAfterSeconds}`,
    );
    assert.ok(
      t.notes.some((n) => /target exited after \d+\.\d s; results cover that/.test(n)),
      t.notes.join('; '),
    );
    const got = byFunction(t);
    assert.equal(got.get('leak_pvalloc')?.bytes, 4 * 5 * 30000, 'what leaked before the exit is there');
  } finally {
    await fx.stop();
  }
});

test('go tool pprof reads the nginx pprof: function names, no symbolization warning; -raw shows full mapping paths with build IDs', async () => {
  const ngx = await startNginx({ workers: 1 });
  try {
    const [worker] = ngx.workerPids();
    await driveRequests(ngx, '/ok', 10, 2);
    const space = LiveProcess.open(worker!);
    const window = workloadWindow();
    const trace = traceLeaks(space, {
      mode: 'malloc',
      ...window.options,
      sampleBytes: 0,
    });
    assert.equal((await driveRequests(ngx, '/leak-keep', 20, 2)).ok, 20);
    window.done();
    const t = await trace;
    space.close();
    const dir = mkdtempSync(join(tmpdir(), 'leakscope-pprof-'));
    const file = join(dir, 'nginx.pb.gz');
    writeFileSync(file, toPprof(t.stacks, { durationNanos: 3e9, timeNanos: BigInt(Date.now()) * 1000000n }));
    const go = (args: string[]) =>
      spawnSync('go', ['tool', 'pprof', ...args, file], {
        encoding: 'utf8',
        env: { ...process.env, HOME: dir, PPROF_TMPDIR: dir },
      });
    const top = go(['-top']);
    assert.equal(top.status, 0, top.stderr);
    assert.doesNotMatch(top.stderr + top.stdout, /symbolization failed/i);
    assert.match(top.stdout, /ngx_http_leak_create_session|ngx_alloc|malloc/, top.stdout);
    const raw = go(['-raw']);
    assert.equal(raw.status, 0, raw.stderr);
    assert.match(raw.stdout, /\/usr\/sbin\/nginx/, 'mappings carry the full path');
    assert.match(raw.stdout, /\[[0-9a-f]{40}\]|[0-9a-f]{40}/, 'and a build ID');
    console.log(
      `# go tool pprof -top:\n${top.stdout
        .split('\n')
        .slice(0, 12)
        .map((l) => `#   ${l}`)
        .join('\n')}`,
    );
  } finally {
    await ngx.stop();
  }
});
