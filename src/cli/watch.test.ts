// `leakscope watch` end to end (system tier: root, Debian nginx with the leaking test module,
// Debian's prometheus / promtool, eBPF for the triggered trace):
// - a real Prometheus scrapes the watch; `promtool check metrics` accepts the scrape; the leaking
//   module's pool count equals the requests the module kept (its own counter), and a PromQL query
//   shows its pool bytes growing by at least leak_size per leaking request; every Grafana panel
//   query evaluates; a recorded series replayed through the shipped rules fires the alert;
// - `nginx -s reload` (to the test's own nginx): new worker pids appear with the same worker slots,
//   the old pids' series go stale;
// - a growth trigger writes one report naming the leak (HTML, JSON, pprof), then the cooldown holds;
// - SIGTERM during a triggered trace: exit 0, every BPF program and link it made is gone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  writeFileSync,
  copyFileSync,
} from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { freePort, startNginx } from '../../test/helpers/nginx.js';
import type { NginxHandle } from '../../test/helpers/nginx.js';
import { killQuietly, onExit } from '../../test/helpers/cleanup.js';
import { prometheusBinary, promtoolAvailable, startPrometheus } from '../../test/helpers/prometheus.js';
import { REPO, leakscope } from '../../test/helpers/proc.js';
import { checkEbpfSupport, listObjectIds } from '../ebpf/index.js';
import { parseWatch } from '../contract/watch.js';

const LEAK_SIZE = 64 * 1024;
const missing = [
  !prometheusBinary() && 'prometheus (apt-get install prometheus)',
  !promtoolAvailable() && 'promtool',
].filter(Boolean);
const skipProm = missing.length ? `needs ${missing.join(', ')}` : false;
const ebpfFailed = checkEbpfSupport().filter((c) => !c.ok);
const skipTrace = ebpfFailed.length ? `eBPF unavailable: ${ebpfFailed.map((c) => c.detail).join('; ')}` : false;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface WatchProcess {
  child: ChildProcess;
  port: number;
  log(): string;
  metrics(): Promise<string>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

async function startWatch(args: string[]): Promise<WatchProcess> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [join(REPO, 'bin/leakscope'), 'watch', '--listen', `127.0.0.1:${port}`, ...args],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const unregister = onExit(() => killQuietly(child.pid, 'SIGKILL'));
  const metrics = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`watch exited ${child.exitCode}: ${log}`);
    try {
      if (/leakscope_census_success/.test(await metrics())) break;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`watch not serving a census within 30 s: ${log}`);
    await sleep(100);
  }
  return {
    child,
    port,
    log: () => log,
    metrics,
    async stop(signal = 'SIGTERM') {
      killQuietly(child.pid, signal);
      const t = setTimeout(() => killQuietly(child.pid, 'SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(t);
      unregister();
      return code;
    },
  };
}

/** Requests to `path` every `everyMs` until stopped; resolves with the answered count. */
function steadyTraffic(ngx: NginxHandle, path: string, everyMs: number): () => Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
  let stop = false,
    ok = 0;
  const loop = (async () => {
    while (!stop) {
      const t0 = Date.now();
      await new Promise<void>((res) => {
        http
          .get(ngx.url(path), { agent }, (r) => {
            if (r.statusCode === 200) ok++;
            r.resume();
            r.on('end', () => res());
          })
          .on('error', () => res());
      });
      await sleep(Math.max(0, everyMs - (Date.now() - t0)));
    }
  })();
  return async () => {
    stop = true;
    await loop;
    agent.destroy();
    return ok;
  };
}

/** Samples of `name` in a Prometheus text scrape whose labels include `labels`. */
function samples(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): Array<{ labels: Record<string, string>; value: number }> {
  const out: Array<{ labels: Record<string, string>; value: number }> = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const l: Record<string, string> = {};
    for (const p of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g))
      l[p[1]!] = p[2]!.replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\');
    if (Object.entries(labels).every(([k, v]) => l[k] === v)) out.push({ labels: l, value: Number(m[3]) });
  }
  return out;
}

async function eventually<T>(
  what: string,
  timeoutMs: number,
  f: () => Promise<T | undefined | null | false>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out (${timeoutMs} ms) waiting for ${what}`);
    await sleep(200);
  }
}

/** BPF programs and links a process holds (ids from /proc/PID/fdinfo) and its perf_event fds (one per uprobe). */
function bpfObjectsHeldBy(pid: number): { progs: number[]; links: number[]; perfEvents: number } {
  const out = { progs: [] as number[], links: [] as number[], perfEvents: 0 };
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    let target = '';
    try {
      target = readlinkSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (target.includes('perf_event')) out.perfEvents++;
    if (!/bpf[-_](prog|link)/.test(target)) continue;
    try {
      const info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
      const prog = /^prog_id:\s*(\d+)/m.exec(info),
        link = /^link_id:\s*(\d+)/m.exec(info);
      if (target.includes('link') && link) out.links.push(Number(link[1]));
      else if (prog) out.progs.push(Number(prog[1]));
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** Ordinary least-squares slope of (x, y) points (what PromQL's deriv() computes, x in seconds). */
function leastSquaresSlope(points: Array<[number, number]>): number {
  const n = points.length;
  const mx = points.reduce((a, p) => a + p[0], 0) / n,
    my = points.reduce((a, p) => a + p[1], 0) / n;
  let sxy = 0,
    sxx = 0;
  for (const [x, y] of points) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
  }
  return sxy / sxx;
}

/** Prometheus's template function humanize1024 (Go: "%.4g" with binary prefixes ki, Mi, Gi...). */
function humanize1024(v: number): string {
  if (Math.abs(v) <= 1 || !Number.isFinite(v)) return String(Number(v.toPrecision(4)));
  let prefix = '';
  for (const p of ['ki', 'Mi', 'Gi', 'Ti', 'Pi', 'Ei', 'Zi', 'Yi']) {
    if (Math.abs(v) < 1024) break;
    prefix = p;
    v /= 1024;
  }
  return `${Number(v.toPrecision(4))}${prefix}`;
}

const num = (s: { value: [number, string] } | undefined) => (s ? Number(s.value[1]) : NaN);

test('watch + real Prometheus: scrape, promtool check metrics, pool growth by PromQL, dashboard queries, alert on a recorded series, reload followed', {
  skip: skipProm,
}, async () => {
  const ngx = await startNginx({ workers: 2, leakSize: '64k' });
  let watch: WatchProcess | undefined;
  let prom: Awaited<ReturnType<typeof startPrometheus>> | undefined;
  try {
    watch = await startWatch([`--nginx=${ngx.pid}`, '--interval', '0.5', '--budget', '0.9']);
    prom = await startPrometheus([`127.0.0.1:${watch.port}`], { scrapeSeconds: 1 });
    const p = prom;

    // Both workers followed, with their ngx_worker slots as `worker`.
    const first = await eventually('two workers in Prometheus', 20_000, async () => {
      const r = await p.query('leakscope_census_success');
      return r.length === 2 ? r : null;
    });
    const oldPids = ngx.workerPids();
    assert.deepEqual(
      first.map((s) => Number(s.metric.pid)).sort((a, b) => a - b),
      oldPids,
    );
    assert.deepEqual(first.map((s) => s.metric.worker).sort(), ['0', '1']);
    assert.ok(
      first.every((s) => s.value[1] === '1'),
      'censuses succeed',
    );

    // The snapshot reads back through the contract's parser, with the same workers.
    const snap = parseWatch(await (await fetch(`http://127.0.0.1:${watch.port}/snapshot.json`)).json());
    assert.deepEqual(
      snap.workers.map((x) => x.pid),
      oldPids,
    );
    assert.ok(
      snap.workers.every((x) => x.pools && x.glibc && x.rss),
      'every census part present',
    );

    // promtool accepts the exposition (format and lint).
    const text = await watch.metrics();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
    assert.equal((check.stdout + check.stderr).trim(), '', 'no lint complaints');

    // Steady leaking traffic for ~20 s: pool bytes grow; the pool count is the module's own count.
    const t0 = Date.now() / 1000;
    const stopLeak = steadyTraffic(ngx, '/leak-keep', 40);
    await sleep(20_000);
    const kept = await stopLeak();
    const t1 = Date.now() / 1000;
    assert.ok(kept >= 100, `${kept} leaking requests answered`);
    const leakSel = 'module="ngx_http_leak_module",owner="static"';
    const pools = await eventually(`leak pool count = ${kept} in Prometheus`, 10_000, async () => {
      const v = num((await p.query(`sum(leakscope_nginx_pools{${leakSel}})`))[0]);
      return v === kept ? v : null;
    });
    assert.equal(pools, kept);
    const before = num((await p.query(`sum(leakscope_nginx_pool_bytes{${leakSel}}) or vector(0)`, t0))[0]);
    const after = num((await p.query(`sum(leakscope_nginx_pool_bytes{${leakSel}})`))[0]);
    assert.ok(after - before >= kept * LEAK_SIZE, `pool bytes grew ${after - before} >= ${kept} x ${LEAK_SIZE}`);
    assert.ok(
      after - before <= kept * (LEAK_SIZE + 32 * 1024),
      `pool bytes grew ${after - before}: at most ${kept} x (leak + one pool block)`,
    );
    const growth = await p.query(`max(leakscope_growth_bytes_per_hour{${leakSel}})`);
    assert.ok(num(growth[0]) > 0, 'the watch reports positive growth for the leaking module');

    // Every Grafana panel query evaluates in Prometheus, with data.
    const dash = JSON.parse(readFileSync(join(REPO, 'contrib/grafana/leakscope-watch.json'), 'utf8')) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
      templating: { list: Array<{ name: string; definition?: string }> };
    };
    const mayBeEmpty = new Set(['Last triggered report', 'Census errors (1h)']);
    for (const v of dash.templating.list.filter((x) => x.definition)) {
      const m = /^label_values\((.*), (\w+)\)$/.exec(v.definition!.replace(/\$instance/g, '.+'));
      assert.ok(m, `variable ${v.name}: ${v.definition}`);
      const r = await p.query(`count by (${m[2]}) (${m[1]})`);
      assert.ok(r.length > 0, `variable ${v.name} has values`);
    }
    for (const panel of dash.panels) {
      for (const t of panel.targets) {
        const expr = t.expr.replace(/\$instance|\$worker/g, '.+').replace(/\$__rate_interval/g, '1m');
        const r = await p.query(expr);
        if (!mayBeEmpty.has(panel.title)) assert.ok(r.length > 0, `panel "${panel.title}": ${expr} returned no series`);
      }
    }

    // The recorded series of the worker whose leak pools grew most, replayed one sample a minute
    // (as --interval 60 would record a leak 60x slower) through the shipped rules: the alert fires.
    const ranges = await p.queryRange(`leakscope_nginx_pool_bytes{${leakSel}}`, Math.ceil(t0), Math.floor(t1), 1);
    const series = ranges
      .map((r) => ({ metric: r.metric, values: r.values.map((v) => Number(v[1])) }))
      .sort((a, b) => b.values.at(-1)! - b.values[0]! - (a.values.at(-1)! - a.values[0]!))[0]!;
    assert.ok(
      series.values.length >= 18,
      `${series.values.length} recorded samples (need 18 for 30m window + 15m for)`,
    );
    const perHour = ((series.values.at(-1)! - series.values[0]!) / (series.values.length - 1)) * 60;
    assert.ok(perHour > 2 * 16 * 1024 * 1024, `replayed growth ${perHour} B/h is well above the rule's 16 MiB/h`);
    const { __name__: _n, ...labels } = series.metric;
    const rulesDir = mkdtempSync(join(os.tmpdir(), 'leakscope-rules-'));
    try {
      copyFileSync(join(REPO, 'contrib/prometheus/leakscope.rules.yml'), join(rulesDir, 'leakscope.rules.yml'));
      const sel = Object.entries(labels)
        .map(([k, v]) => `${k}="${v}"`)
        .join(',');
      const evalMin = series.values.length - 1;
      const expLabels = Object.entries({ severity: 'warning', ...labels })
        .map(([k, v]) => `              ${k}: "${v}"`)
        .join('\n');
      // The annotations as the rule's templates render them: $value is deriv() over the 30m window
      // (all samples, one a minute) x 3600, through Prometheus's humanize1024.
      const value = leastSquaresSlope(series.values.map((v, i) => [i * 60, v])) * 3600;
      const summary = `nginx pools of ${labels.module} (${labels.owner}) grow steadily in worker ${labels.worker} (pid ${labels.pid})`;
      const description = `${humanize1024(value)}B/hour over 30 minutes on ${labels.instance}. Reports triggered by \`leakscope watch --trigger\` are kept under its --reports directory.`;
      writeFileSync(
        join(rulesDir, 'recorded.test.yml'),
        `rule_files: [leakscope.rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'leakscope_nginx_pool_bytes{${sel}}'
        values: '${series.values.join(' ')}'
    alert_rule_test:
      - eval_time: ${evalMin}m
        alertname: LeakscopeNginxPoolGrowth
        exp_alerts:
          - exp_labels:
${expLabels}
            exp_annotations:
              summary: ${JSON.stringify(summary)}
              description: ${JSON.stringify(description)}
`,
      );
      const rt = spawnSync('promtool', ['test', 'rules', 'recorded.test.yml'], { cwd: rulesDir, encoding: 'utf8' });
      assert.equal(rt.status, 0, `promtool test rules on the recorded series:\n${rt.stdout}${rt.stderr}`);
    } finally {
      rmSync(rulesDir, { recursive: true, force: true });
    }

    // Reload: new workers are followed (same slots), the old pids' series go stale.
    const r = spawnSync(
      process.env.LEAKSCOPE_NGINX ?? 'nginx',
      ['-p', ngx.prefix + '/', '-c', ngx.confPath, '-s', 'reload'],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, `nginx -s reload: ${r.stderr}`);
    const newPids = await eventually('new workers, old ones gone', 20_000, async () => {
      const now = ngx.workerPids();
      return now.length === 2 &&
        now.every((x) => !oldPids.includes(x)) &&
        oldPids.every((x) => !existsSync(`/proc/${x}`))
        ? now
        : null;
    });
    const followed = await eventually('Prometheus sees exactly the new pids', 20_000, async () => {
      const s = await p.query('leakscope_census_success');
      const pids = s.map((x) => Number(x.metric.pid)).sort((a, b) => a - b);
      return pids.length === 2 && pids.every((x, i) => x === newPids[i]) ? s : null;
    });
    assert.deepEqual(followed.map((s) => s.metric.worker).sort(), ['0', '1'], 'same worker slots after the reload');
    for (const old of oldPids) {
      assert.equal((await p.query(`leakscope_rss_bytes{pid="${old}"}`)).length, 0, `pid ${old}'s series are stale`);
      assert.ok(
        (await p.query(`last_over_time(leakscope_rss_bytes{pid="${old}"}[5m])`)).length > 0,
        `pid ${old} had series`,
      );
    }
    assert.match(watch.log(), new RegExp(`dropping pid ${oldPids[0]}`));
  } finally {
    const code = watch ? await watch.stop() : null;
    await prom?.stop();
    await ngx.stop();
    if (watch) assert.equal(code, 0, `watch exit status after SIGTERM; log:\n${watch.log()}`);
  }
});

test('watch --trigger: one report naming the leak (HTML, JSON, pprof), then the cooldown holds', {
  skip: skipTrace,
}, async () => {
  const ngx = await startNginx({ workers: 2, leakSize: '64k' });
  const reports = mkdtempSync(join(os.tmpdir(), 'leakscope-reports-'));
  let watch: WatchProcess | undefined;
  const stopLeak = steadyTraffic(ngx, '/leak-keep', 40);
  try {
    watch = await startWatch([
      `--nginx=${ngx.pid}`,
      '--interval',
      '0.5',
      '--budget',
      '0.9',
      '--trigger',
      'module=1Mi',
      '--min-samples',
      '5',
      '--cooldown',
      '3600',
      '--reports',
      reports,
      '--keep',
      '3',
      '--trace-seconds',
      '3',
      '--pause',
      '0.5',
      '--duty',
      '0.5',
    ]);
    const w = watch;
    const dirs = await eventually('a report', 60_000, async () => {
      const d = readdirSync(reports);
      return d.length &&
        existsSync(join(reports, d[0]!, 'analyze.json')) &&
        /leakscope_reports_total 1/.test(await w.metrics())
        ? d
        : null;
    });
    assert.equal(dirs.length, 1);
    const dir = join(reports, dirs[0]!);
    assert.match(dirs[0]!, /^\d{8}T\d{6}Z-pid\d+$/);
    for (const f of ['report.html', 'analyze.json', 'trigger.json', 'leaks.pb.gz'])
      assert.ok(existsSync(join(dir, f)), `${f} written`);
    const doc = JSON.parse(readFileSync(join(dir, 'analyze.json'), 'utf8')) as {
      conclusion: { leak: boolean; module: string | null };
      pid: number;
    };
    assert.equal(doc.conclusion.leak, true, 'the analysis concludes: leak');
    assert.match(doc.conclusion.module ?? '', /ngx_http_leak_module/);
    const trigger = JSON.parse(readFileSync(join(dir, 'trigger.json'), 'utf8')) as {
      trigger: { kind: string; module?: string };
    };
    assert.equal(trigger.trigger.kind, 'pool');
    assert.equal(trigger.trigger.module, 'ngx_http_leak_module');
    assert.match(readFileSync(join(dir, 'report.html'), 'utf8'), /ngx_http_leak_module/);
    const prof = Profile.decode(gunzipSync(readFileSync(join(dir, 'leaks.pb.gz'))));
    const names = prof.stringTable.strings as string[];
    assert.ok(prof.sample.length > 0, 'the pprof profile has samples');
    assert.ok(
      names.some((s) => /ngx_http_leak/.test(s)),
      "the profile names the leaking module's functions",
    );

    const m = await w.metrics();
    const verdict = samples(m, 'leakscope_last_report_verdict');
    assert.equal(verdict.length, 1);
    assert.equal(verdict[0]!.labels.verdict, 'leak');
    assert.equal(verdict[0]!.labels.pid, String(doc.pid));
    assert.match(verdict[0]!.labels.module!, /ngx_http_leak_module/);

    // Still growing, but within the cooldown: no second analysis.
    await eventually('a trigger suppressed by the cooldown', 20_000, async () => {
      const s = samples(await w.metrics(), 'leakscope_triggers_suppressed_total', { reason: 'cooldown' })[0];
      return s && s.value >= 2 ? s : null;
    });
    assert.equal(readdirSync(reports).length, 1, 'one report only');
    assert.equal(samples(await w.metrics(), 'leakscope_reports_total')[0]!.value, 1);
  } finally {
    await stopLeak();
    const code = watch ? await watch.stop() : null;
    await ngx.stop();
    rmSync(reports, { recursive: true, force: true });
    if (watch) assert.equal(code, 0, `watch exit status; log:\n${watch.log()}`);
  }
});

test('watch: SIGTERM during a triggered trace exits 0 and leaves no BPF program or link', {
  skip: skipTrace,
}, async () => {
  const ngx = await startNginx({ workers: 1, leakSize: '64k' });
  const reports = mkdtempSync(join(os.tmpdir(), 'leakscope-reports-'));
  const stopLeak = steadyTraffic(ngx, '/leak-keep', 40);
  let watch: WatchProcess | undefined;
  try {
    watch = await startWatch([
      `--nginx=${ngx.pid}`,
      '--interval',
      '0.5',
      '--budget',
      '0.9',
      '--trigger',
      'module=1Mi',
      '--min-samples',
      '5',
      '--reports',
      reports,
      '--trace-seconds',
      '120',
      '--pause',
      '0',
      '--duty',
      '1',
    ]);
    const w = watch;
    const ours = await eventually('the triggered trace attached', 60_000, async () => {
      if (!/leakscope_analysis_running 1/.test(await w.metrics())) return null;
      const held = bpfObjectsHeldBy(w.child.pid!);
      // Probes are perf-event uprobes or uprobe_multi links (pool mode's, since issue 18).
      return held.progs.length && (held.perfEvents > 0 || held.links.length > 0) ? held : null;
    });
    const code = await w.stop('SIGTERM');
    watch = undefined;
    assert.equal(code, 0);
    await eventually('its programs and links freed', 10_000, async () => {
      const progs = listObjectIds('prog'),
        links = listObjectIds('link');
      return ours.progs.every((id) => !progs.includes(id)) && ours.links.every((id) => !links.includes(id));
    });
    assert.equal(readdirSync(reports).length, 0, 'an interrupted analysis writes no report');
  } finally {
    await stopLeak();
    await watch?.stop('SIGKILL');
    await ngx.stop();
    rmSync(reports, { recursive: true, force: true });
  }
});

test("watch PIDs (plain glibc programs): the leaking bucket's growth rate matches the program's own counter; a bounded cache does not trigger", async () => {
  const { startFixture } = await import('../../test/helpers/fixture.js');
  const { ensureFixturesBuilt } = await import('../../test/helpers/build.js');
  await ensureFixturesBuilt();
  const leak = await startFixture('growth-cases', ['slow-leak']);
  const cache = await startFixture('growth-cases', ['bounded-cache']);
  const reports = mkdtempSync(join(os.tmpdir(), 'leakscope-reports-'));
  let watch: WatchProcess | undefined;
  try {
    await sleep(2000); // the cache fills in ~1.3 s, then stays bounded
    const s0 = await leak.command<{ leakedBytes: number; elapsedMs: number }>('status');
    // A trigger on buckets, static only (no trace): the cache must never fire it.
    watch = await startWatch([
      String(leak.pid),
      String(cache.pid),
      '--interval',
      '0.5',
      '--budget',
      '0.9',
      '--window',
      '30',
      '--trigger',
      'bucket=40Mi',
      '--min-samples',
      '10',
      '--cooldown',
      '3600',
      '--reports',
      reports,
      '--trace-seconds',
      '0',
      '--pause',
      '0',
    ]);
    await sleep(10_000);
    const m = await watch.metrics();
    const s1 = await leak.command<{ leakedBytes: number; elapsedMs: number }>('status');
    const truthPerHour = ((s1.leakedBytes - s0.leakedBytes) / ((s1.elapsedMs - s0.elapsedMs) / 1000)) * 3600;
    assert.deepEqual(
      samples(m, 'leakscope_census_success')
        .map((s) => s.labels.worker)
        .sort(),
      ['growth-cases', 'growth-cases'],
    );
    assert.equal(samples(m, 'leakscope_nginx_pool_bytes').length, 0, 'no pool metrics for a program that is not nginx');
    const rate = samples(m, 'leakscope_growth_bytes_per_hour', { pid: String(leak.pid), bucket: '256B-512B' })[0];
    assert.ok(rate, 'a growth rate for the 256-512 B bucket');
    assert.ok(
      Math.abs(rate.value - truthPerHour) <= 0.3 * truthPerHour,
      `watch ${Math.round(rate.value)} B/h vs the program's own ${Math.round(truthPerHour)} B/h`,
    );
    assert.ok(
      samples(m, 'leakscope_growth_low_bytes_per_hour', { pid: String(leak.pid), bucket: '256B-512B' })[0]!.value > 0,
      'significant',
    );
    // The leak (~110 MiB/h) triggered a static analysis of the leaking program; the cache never did.
    await eventually("the leak's report", 30_000, async () => readdirSync(reports).length === 1 || null);
    assert.match(readdirSync(reports)[0]!, new RegExp(`-pid${leak.pid}$`));
    const trig = JSON.parse(readFileSync(join(reports, readdirSync(reports)[0]!, 'trigger.json'), 'utf8')) as {
      pid: number;
      trigger: { kind: string };
    };
    assert.equal(trig.pid, leak.pid);
    assert.equal(trig.trigger.kind, 'bucket');
    // The trigger is on buckets: the cache's bucket series must stay below it. (Its RSS categories are
    // not asserted: the churn threads keep touching new pages of their arenas for a while, RSS warm-up
    // that is not what --trigger bucket= watches.)
    for (const s of samples(m, 'leakscope_growth_low_bytes_per_hour', { pid: String(cache.pid) }).filter(
      (x) => x.labels.bucket !== undefined,
    )) {
      assert.ok(
        s.value < 40 * 1024 * 1024,
        `bounded cache: ${JSON.stringify(s.labels)} low end ${s.value} B/h stays below the trigger`,
      );
    }
  } finally {
    const code = watch ? await watch.stop() : null;
    await leak.stop();
    await cache.stop();
    rmSync(reports, { recursive: true, force: true });
    if (watch) assert.equal(code, 0, `watch exit status; log:\n${watch.log()}`);
  }
});

test('watch: usage errors and a missing process exit with their codes, one line on stderr', async () => {
  const cases: Array<[string[], number, RegExp]> = [
    [['watch'], 2, /missing target/],
    [['watch', '123', '--nginx'], 2, /not both/],
    [['watch', '--nginx=abc'], 2, /not a process id/],
    [['watch', '--nginx', '--trigger', '10Mi'], 2, /--trigger needs --reports/],
    [['watch', '--nginx', '--trigger', 'table=1'], 2, /unknown series kind/],
    [['watch', '--nginx', '--listen', 'nowhere'], 2, /--listen/],
    [['watch', '--nginx', '--interval', '0'], 2, /--interval/],
    [['watch', '4194304999'], 3, /no such process/],
    [['watch', '--nginx=4194304999'], 3, /no such process/],
  ];
  for (const [args, code, message] of cases) {
    const r = leakscope(args);
    assert.equal(r.status, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  }
});
