// The leak tracers against ground truth: a C fixture that knows exactly what each call path
// leaked, and real Debian nginx (no frame pointers, no debug info) with the leaking module.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { startFixture } from '../../test/helpers/fixture.js';
import type { MallocLeakerReport } from '../../test/helpers/fixture.js';
import { startNginx, driveRequests, runWrk } from '../../test/helpers/nginx.js';
import { withBrowser, openFile } from '../../test/helpers/browser.js';
import { workloadWindow } from '../../test/helpers/trace-window.js';
import { LiveProcess } from '../target/index.js';
import { processCpuSeconds, traceLeaks } from './leak-tracer.js';
import { livePoolBytes } from '../analysis/pool-census.js';
import { frameLabel } from '../model/index.js';
import type { LeakTrace, StackSample } from '../model/index.js';
import { toFolded } from '../formats/folded/folded.js';
import { toPprof } from '../formats/pprof/pprof.js';
import { renderFlameGraphSvg } from '../report/flamegraph-svg.js';
import { debugRoots } from '../symbols/debug-files.js';

const names = (s: StackSample) => s.frames.map(frameLabel);
/** Outstanding bytes / count per leaking path of the fixture, keyed by leak_path_X. */
function byPath(t: LeakTrace): Map<string, { bytes: number; count: number }> {
  const out = new Map<string, { bytes: number; count: number }>();
  for (const s of t.stacks) {
    const p = names(s).find((n) => /^(leak_path_[a-d]|churn_path)$/.test(n)) ?? 'other';
    const e = out.get(p) ?? { bytes: 0, count: 0 };
    e.bytes += s.bytes;
    e.count += s.count;
    out.set(p, e);
  }
  return out;
}

async function traceFixtureBatch(command: string, sampleBytes: number, seconds: number, heapLiveness = false) {
  const fx = await startFixture('malloc-leaker');
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
      sampleBytes,
      heapLiveness,
      onProgress: () => attached(),
    });
    setTimeout(() => attached(), 300);
    await ready;
    const report = await fx.command<MallocLeakerReport>(command, 120_000);
    window.done();
    const t = await trace;
    space.close();
    return { t, report };
  } finally {
    await fx.stop();
  }
}

test('malloc mode, sampling off: per-path leaked counts and bytes are exact; outputs decode', async (t) => {
  const { t: trace, report } = await traceFixtureBatch('go 2000 250', 0, 5);
  assert.equal(trace.cost.lostEvents, 0, `no events lost: ${JSON.stringify(trace.cost)} ${trace.notes}`);
  assert.ok(
    trace.probes.some((p) => p.startsWith('libc:posix_memalign')),
    `the memalign family is probed at its API: ${trace.probes}`,
  );
  const got = byPath(trace);
  for (const p of report.paths) {
    assert.deepEqual(got.get(p.name), { bytes: p.leakedBytes, count: p.leakedCount }, p.name);
  }
  assert.equal(got.get('churn_path'), undefined, 'the non-leaking churn contributes nothing');
  assert.equal(got.get('other'), undefined);
  // every stack names its path through the fixture's call chain down to main
  for (const s of trace.stacks) {
    const n = names(s);
    const path = n.find((x) => x.startsWith('leak_path_'))!;
    const letter = path.slice(-1);
    assert.deepEqual(n.slice(n.indexOf(path), n.indexOf('main') + 1), [
      path,
      `leaker_mid_${letter}`,
      'leaker_iteration',
      'leaker_run_batch',
      'main',
    ]);
  }
  assert.equal(trace.totals.completeStacks, trace.totals.sampledEvents, 'every stack reaches main');

  // pprof decodes (pprof-format) into the same totals; folded lines follow speedscope's rule; the SVG opens in Chromium.
  const profile = Profile.decode(
    gunzipSync(toPprof(trace.stacks, { durationNanos: 5e9, timeNanos: BigInt(Date.now()) * 1000000n })),
  );
  const typeNames = profile.sampleType.map(
    (st) => `${profile.stringTable.strings[Number(st.type)]}/${profile.stringTable.strings[Number(st.unit)]}`,
  );
  const col = (name: string) => typeNames.indexOf(name);
  const sum = (i: number) => profile.sample.reduce((a, s) => a + Number(s.value[i]), 0);
  assert.equal(sum(col('inuse_space/bytes')), report.totalLeakedBytes);
  assert.equal(
    sum(col('inuse_objects/count')),
    report.paths.reduce((a, p) => a + p.leakedCount, 0),
  );
  const folded = toFolded(trace.stacks, 'bytes');
  let foldedTotal = 0;
  for (const line of folded.trim().split('\n')) {
    const m = /^(.*) (\d+)$/.exec(line); // speedscope src/import/bg-flamegraph.ts
    assert.ok(m, `speedscope rule: ${line}`);
    assert.ok(m[1]!.split(';')[0] === '_start' || m[1]!.split(';')[0]!.length > 0);
    foldedTotal += Number(m[2]);
  }
  assert.equal(foldedTotal, report.totalLeakedBytes);
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-trace-'));
  const svgPath = join(dir, 'leaks.svg');
  writeFileSync(svgPath, renderFlameGraphSvg(trace.stacks, { title: 'malloc-leaker', weight: 'bytes' }));
  await withBrowser(t, async ({ page, errors }) => {
    await openFile(page, svgPath);
    const texts = await page.locator('text').allTextContents();
    const titles = await page.locator('title').allTextContents();
    for (const p of report.paths)
      assert.ok(
        titles.some((x) => x.includes(p.name)),
        `frame ${p.name} in the SVG`,
      );
    assert.ok(
      texts.some((x) => x.includes('leak_path_c')),
      'the widest frames are labelled',
    );
    assert.deepEqual(errors, []);
  });
});

test("malloc mode without libc's debug file (memalign family probed at its entry points): still exact", async () => {
  const saved = debugRoots.splice(0, debugRoots.length);
  try {
    const { t: trace, report } = await traceFixtureBatch('go 1000 250', 0, 4);
    assert.ok(
      trace.probes.some((p) => p.startsWith('libc:posix_memalign')),
      `probes: ${trace.probes}`,
    );
    assert.equal(trace.cost.lostEvents, 0);
    const got = byPath(trace);
    for (const p of report.paths)
      assert.deepEqual(got.get(p.name), { bytes: p.leakedBytes, count: p.leakedCount }, p.name);
  } finally {
    debugRoots.push(...saved);
  }
});

test('malloc mode, default sampling (512 KiB): per-path estimates are unbiased', async () => {
  const { t: trace, report } = await traceFixtureBatch('go 60000', 512 * 1024, 40);
  // Sampled mode with libc's debug file: the memalign family is probed where it allocates
  // (_int_memalign; small alignments reach malloc's probe), one trap per posix_memalign(16) instead of two.
  assert.ok(
    trace.probes.some((p) => p.startsWith('libc:_int_memalign')),
    `probes: ${trace.probes}`,
  );
  assert.ok(!trace.probes.some((p) => p.startsWith('libc:posix_memalign')), `probes: ${trace.probes}`);
  const got = byPath(trace);
  for (const p of report.paths) {
    // Bernoulli sampling with p = size/period, each sample weighted 1/p: the relative standard
    // error is 1/sqrt(expected samples), expected samples = leaked bytes / period.
    const expectedSamples = p.leakedBytes / (512 * 1024);
    const est = got.get(p.name)?.bytes ?? 0;
    const rel = Math.abs(est - p.leakedBytes) / p.leakedBytes;
    const fourSigma = 4 / Math.sqrt(expectedSamples);
    assert.ok(
      rel <= fourSigma,
      `${p.name}: estimate ${est} vs ${p.leakedBytes} (${(rel * 100).toFixed(1)}%, 4 sigma = ${(fourSigma * 100).toFixed(1)}%)`,
    );
    if (expectedSamples >= 900)
      assert.ok(
        rel <= 0.1,
        `${p.name}: within 10% (${(rel * 100).toFixed(1)}%, ${expectedSamples.toFixed(0)} expected samples)`,
      );
    console.log(
      `# ${p.name}: truth ${p.leakedBytes} B, estimate ${est} B (${(rel * 100).toFixed(1)}% off, ${expectedSamples.toFixed(0)} expected samples)`,
    );
  }
  const total = [...got.values()].reduce((a, b) => a + b.bytes, 0);
  assert.ok(
    Math.abs(total - report.totalLeakedBytes) <= report.totalLeakedBytes * 0.1,
    `total ${total} vs ${report.totalLeakedBytes}`,
  );
});

test('malloc mode, --heap-liveness: no free probe; paths whose chunks are never freed are unbiased, ghosts only add', async () => {
  const { t: trace, report } = await traceFixtureBatch('go 20000', 512 * 1024, 20, true);
  assert.equal(trace.cost.probeHits.free, 0);
  assert.ok(!trace.probes.some((p) => p.startsWith('libc:free')), `probes: ${trace.probes}`);
  assert.ok(
    trace.notes.some((n) => n.includes('liveness from the heap') && n.includes('ghost')),
    trace.notes.join('\n'),
  );
  const got = byPath(trace);
  for (const p of report.paths) {
    const expectedSamples = p.leakedBytes / (512 * 1024);
    const est = got.get(p.name)?.bytes ?? 0;
    const rel = (est - p.leakedBytes) / p.leakedBytes;
    console.log(
      `# ${p.name} (leaked every ${p.leakEvery}): truth ${p.leakedBytes} B, estimate ${est} B (${(rel * 100).toFixed(1)}%, ${expectedSamples.toFixed(0)} expected samples)`,
    );
    // leak_path_a and _d never free their own chunks: their samples are all still in use, so the
    // estimate is as unbiased as with the free probe. Paths that free some of their chunks (b, c) may
    // be over-counted: a freed sample whose chunk the path's next leak reuses before a check still counts.
    if (p.leakEvery === 1) assert.ok(Math.abs(rel) <= 4 / Math.sqrt(expectedSamples), `${p.name}: ${rel}`);
    else assert.ok(rel >= -4 / Math.sqrt(expectedSamples), `${p.name}: never under-counted (${rel})`);
  }
  console.log(`# churn_path (never leaks): ${got.get('churn_path')?.bytes ?? 0} B of ghosts`);
});

test('nginx under load, malloc mode: the heaviest leak runs malloc <- ngx_alloc <- ... <- module <- main', async () => {
  const ngx = await startNginx({ workers: 1 });
  try {
    const [worker] = ngx.workerPids();
    await driveRequests(ngx, '/ok', 10, 2);
    const space = LiveProcess.open(worker!);
    const window = workloadWindow();
    const trace = traceLeaks(space, { mode: 'malloc', ...window.options });
    const load = runWrk(ngx.url('/ok'), 3, 8);
    const leak = await driveRequests(ngx, '/leak-keep', 40, 2);
    assert.equal(leak.ok, 40);
    await load;
    window.done();
    const t = await trace;
    space.close();
    const heaviest = names(t.stacks[0]!);
    assert.deepEqual(heaviest.slice(0, 2), ['malloc', 'ngx_alloc'], heaviest.join(' <- '));
    const mod = heaviest.indexOf('ngx_http_leak_create_session');
    assert.ok(
      mod >= 2 && mod <= 4,
      `the module's function follows ngx_palloc_large or its caller: ${heaviest.join(' <- ')}`,
    );
    assert.ok(heaviest.includes('main'), 'reaches main');
    // Was 0.95: fell to ~0.92 while other traces ran on the machine (foreign-return-probes.test.ts).
    assert.ok(
      t.totals.completeStacks >= 0.99 * t.totals.sampledEvents,
      `${t.totals.completeStacks} of ${t.totals.sampledEvents} stacks reach main`,
    );
    for (const s of t.stacks)
      assert.ok(!names(s).includes('ngx_http_leak_none_session'), 'the non-leaking location contributes nothing');
    console.log(`# heaviest: ${heaviest.join(' <- ')}; ${t.totals.completeStacks}/${t.totals.sampledEvents} complete`);
  } finally {
    await ngx.stop();
  }
});

test('nginx under load, --heap-liveness --max-overhead: the duty keeps the estimated cost near the budget; the leak is still found with its module function', async () => {
  const ngx = await startNginx({ workers: 1 });
  try {
    const [worker] = ngx.workerPids();
    await driveRequests(ngx, '/ok', 10, 2);
    const space = LiveProcess.open(worker!);
    const budget = 0.03;
    // The load and the leak start once the window runs (its first progress report, after the first
    // second): then the duty is low (a few % of each second), so the leak is driven long enough
    // (600 x 300 KiB, sampled with p ~ 0.59 when attached) to expect ~20 samples, not a lucky one.
    let windowRuns!: () => void;
    const running = new Promise<void>((r) => {
      windowRuns = r;
    });
    const window = workloadWindow();
    const trace = traceLeaks(space, {
      mode: 'malloc',
      ...window.options,
      heapLiveness: true,
      maxOverhead: budget,
      onProgress: () => windowRuns(),
    });
    await Promise.race([running, trace]);
    const cpu0 = processCpuSeconds(worker!)!;
    const load = runWrk(ngx.url('/ok'), 4, 8);
    const leak = await driveRequests(ngx, '/leak-keep', 600, 2);
    assert.equal(leak.ok, 600);
    await load;
    window.done();
    const t = await trace;
    const cpu = processCpuSeconds(worker!)! - cpu0;
    space.close();
    const note = t.notes.find((n) => n.startsWith('cost budget'));
    assert.ok(note, t.notes.join('\n'));
    assert.ok(t.cost.dutyCycle < 0.95, `duty ${t.cost.dutyCycle} under load (${note})`);
    assert.equal(t.cost.probeHits.free, 0);
    // The estimate is what the controller steers: within 4x the budget of the worker's CPU (the first
    // second runs at half duty before any figure is known, the duty follows the last second's load,
    // and on a loaded host attaching / detaching keeps the probes on longer than the duty says).
    assert.ok(
      t.cost.estimatedCpuSeconds <= 4 * budget * cpu + 0.1,
      `estimated ${t.cost.estimatedCpuSeconds} s vs worker CPU ${cpu} s (${note})`,
    );
    const leakPaths = t.stacks.filter((s) => names(s).includes('ngx_http_leak_keep_session'));
    assert.ok(leakPaths.length > 0, t.stacks.map((s) => names(s).slice(0, 6).join(' <- ')).join('\n'));
    console.log(
      `# ${note}; attached ${(t.cost.dutyCycle * 100).toFixed(0)}%, estimated ${t.cost.estimatedCpuSeconds.toFixed(3)} s of ${cpu.toFixed(2)} s worker CPU`,
    );
  } finally {
    await ngx.stop();
  }
});

test('nginx under load, pool mode: leaked pools carry the module function in their creation stack', async () => {
  const ngx = await startNginx({ workers: 1 });
  try {
    const [worker] = ngx.workerPids();
    await driveRequests(ngx, '/ok', 10, 2);
    const space = LiveProcess.open(worker!);
    const window = workloadWindow();
    const trace = traceLeaks(space, {
      mode: 'pool',
      ...window.options,
      livePools: () => livePoolBytes(space),
    });
    const load = runWrk(ngx.url('/ok'), 3, 8);
    assert.equal((await driveRequests(ngx, '/leak-keep', 30, 2)).ok, 30);
    assert.equal((await driveRequests(ngx, '/leak-drop', 20, 2)).ok, 20);
    await load;
    window.done();
    const t = await trace;
    space.close();
    const leaking = t.stacks.filter((s) => names(s).includes('ngx_http_leak_create_session'));
    assert.equal(
      leaking.reduce((a, s) => a + s.count, 0),
      50,
      'exactly the 50 leaked pools',
    );
    for (const s of leaking) {
      assert.equal(names(s)[0], 'ngx_create_pool');
      assert.ok(s.bytes >= s.count * (16 * 1024 + 300 * 1024), 'each holds its block and its large allocation');
    }
    for (const s of t.stacks)
      assert.ok(!names(s).includes('ngx_http_leak_none_session'), 'the non-leaking location contributes nothing');
    assert.ok(
      t.totals.completeStacks >= 0.95 * t.totals.sampledEvents,
      `${t.totals.completeStacks} of ${t.totals.sampledEvents} stacks reach main`,
    );
    assert.deepEqual(Object.keys(t.cost.probeHits), ['pool create']);
  } finally {
    await ngx.stop();
  }
});

test('pool mode at call sites: requests nginx serves alone cost no probe hit, module pools one each; --all-pool-sites probes every pool', async () => {
  const ngx = await startNginx({ workers: 1 });
  try {
    const [worker] = ngx.workerPids();
    await driveRequests(ngx, '/ok', 10, 2);
    const hits: Record<string, number> = {};
    for (const all of [false, true]) {
      const space = LiveProcess.open(worker!);
      const window = workloadWindow();
      const trace = traceLeaks(space, {
        mode: 'pool',
        ...window.options,
        allPoolSites: all,
        livePools: () => livePoolBytes(space),
      });
      // Ground truth: /static runs no module code (one request pool, nginx's own); /ok creates and
      // destroys one module pool per request; /leak-drop leaks one.
      assert.equal((await driveRequests(ngx, '/static', 300, 4)).ok, 300);
      assert.equal((await driveRequests(ngx, '/ok', 40, 4)).ok, 40);
      assert.equal((await driveRequests(ngx, '/leak-drop', 10, 2)).ok, 10);
      window.done();
      const t = await trace;
      space.close();
      const n = t.cost.probeHits['pool create']!;
      hits[all ? 'all' : 'sites'] = n;
      const sites = t.poolSites!;
      const leaked = t.stacks.filter((s) => names(s).includes('ngx_http_leak_drop_session'));
      assert.equal(
        leaked.reduce((a, s) => a + s.count, 0),
        10,
        `${all ? 'body' : 'call sites'}: the 10 leaked pools`,
      );
      for (const s of leaked) assert.equal(names(s)[0], 'ngx_create_pool');
      if (all) {
        assert.equal(sites.placement, 'body');
        assert.equal(sites.reason, '--all-pool-sites');
        // every request pool (350) and every module pool (50), plus a connection pool per keep-alive connection
        assert.ok(n >= 400, `body probe: ${n} hits for 350 request pools + 50 module pools`);
      } else {
        assert.equal(sites.placement, 'call-sites', sites.reason);
        assert.equal(n, 50, 'one hit per module pool (40 /ok + 10 /leak-drop), none for requests or connections');
        // The module's site is probed; every skipped site is nginx's own (none in a module).
        assert.ok(sites.probed.some((p) => p.module.endsWith('ngx_http_leak_module.so')));
        assert.ok(sites.skipped.length > 0);
        for (const p of sites.skipped) {
          assert.ok(!p.module.endsWith('.so'), `${p.function} in ${p.module} skipped`);
          assert.ok(['cycle', 'connection', 'request', 'upstream', 'http2'].includes(p.owner!), p.owner);
        }
        for (const o of ['request', 'connection'])
          assert.ok(
            sites.skipped.some((p) => p.owner === o),
            `the ${o} pool site is among the skipped`,
          );
      }
    }
    console.log(
      `# pool create hits: call sites ${hits.sites}, --all-pool-sites ${hits.all} (350 requests, 50 module pools)`,
    );
  } finally {
    await ngx.stop();
  }
});

test('pool mode: the ring wakes its reader when a quarter full (no drain timer), so a burst into a small ring loses nothing', async () => {
  const ngx = await startNginx({ workers: 1 });
  try {
    const [worker] = ngx.workerPids();
    await driveRequests(ngx, '/ok', 10, 2);
    const space = LiveProcess.open(worker!);
    // 128 KiB holds ~40-60 pool records (header + the request's stack, ~2-3 KiB): 200 leaked pools
    // within the window's first second overflow it unless the program wakes the reader at 32 KiB.
    const trace = traceLeaks(space, {
      mode: 'pool',
      durationSeconds: 3,
      ringBytes: 128 * 1024,
      livePools: () => livePoolBytes(space),
    });
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    assert.equal((await driveRequests(ngx, '/leak-drop', 200, 4)).ok, 200);
    const burstMs = Date.now() - t0;
    const t = await trace;
    space.close();
    assert.equal(t.lost?.events, 0, `no record lost (burst of 200 pools in ${burstMs} ms)`);
    const leaked = t.stacks.filter((s) => names(s).includes('ngx_http_leak_drop_session'));
    assert.equal(
      leaked.reduce((a, s) => a + s.count, 0),
      200,
      'the 200 leaked pools, each with its stack',
    );
    console.log(`# 200 pools in ${burstMs} ms through a 128 KiB ring: ${t.totals.sampledEvents} records, 0 lost`);
  } finally {
    await ngx.stop();
  }
});
