// `leakscope watch` cost benchmark (issue 17), run as root: `node dist/bench/watch.js`.
//
// Scenario (the leak scenario): Debian nginx, 2 workers, the leaking test module (leak_size
// 300k), PRELEAK /leak-keep requests before the watch starts (a heap of ~PRELEAK x 300 KiB), and
// during the measurement a steady leak (one /leak-keep a second: ~1 GiB/hour) and one /ok every
// 200 ms, so every census sees a growing heap and the growth rates have work to do.
//
// The watch runs as in production (`leakscope watch --nginx=MASTER`, a CLI child process). Its
// CPU (utime + stime from /proc/PID/stat) and RSS (VmRSS, sampled every second; VmHWM at the end)
// are measured from the end of its first census (start-up: node, symbol tables, first census is
// reported apart) over a window, per interval:
//   --interval 5    WINDOW5 seconds: CPU share of one core, CPU per cycle (all workers),
//                   RSS after each cycle (bounded: the last vs the first)
//   --interval 60   WINDOW60 seconds (two cycles): CPU share of one core, measured; and the
//                   share computed from the interval-5 run: (CPU per cycle + idle CPU) / 60 s
// Also: the CPU of one /metrics scrape (100 scrapes, the watch's CPU delta / 100).
// Goal: CPU < 1% of one core at --interval 60; RSS bounded.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, ensureFixturesBuilt } from '../test/helpers/build.js';
import { killQuietly, onExit } from '../test/helpers/cleanup.js';
import { driveRequests, freePort, startNginx } from '../test/helpers/nginx.js';
import type { NginxHandle } from '../test/helpers/nginx.js';

const TICK_SECONDS = 1 / 100; // USER_HZ
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

function cpuSeconds(pid: number): number {
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_SECONDS;
}

function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

function metricValue(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

function allValues(text: string, name: string): number[] {
  return [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].map((m) => Number(m[1]));
}

interface RunResult {
  interval: number;
  windowSeconds: number;
  startupCpuSeconds: number;
  cycles: number;
  cpuShareOfCore: number;
  cpuPerCycleMs: number;
  censusSecondsMedian: number;
  cycleCensusCpuMs: number[];
  rssMiBAfterEachCycle: number[];
  rssMiBMax: number;
  hwmMiB: number;
}

async function runWatch(ngx: NginxHandle, interval: number, windowSeconds: number): Promise<RunResult> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    process.execPath,
    [
      join(REPO_ROOT, 'bin/leakscope'),
      'watch',
      `--nginx=${ngx.pid}`,
      '--listen',
      `127.0.0.1:${port}`,
      '--interval',
      String(interval),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const unregister = onExit(() => killQuietly(child.pid, 'SIGKILL'));
  const metrics = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  try {
    const deadline = Date.now() + 60_000;
    let m = '';
    for (;;) {
      if (child.exitCode !== null) throw new Error(`watch exited ${child.exitCode}: ${log}`);
      try {
        m = await metrics();
        if (metricValue(m, 'leakscope_watch_cycles_total') >= 1) break;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) throw new Error(`no census within 60 s: ${log}`);
      await sleep(50);
    }
    const pid = child.pid!;
    const c0 = cpuSeconds(pid),
      t0 = performance.now(),
      cycles0 = metricValue(m, 'leakscope_watch_cycles_total');
    const rssAfterCycle: number[] = [];
    const census: number[] = [];
    const cycleCpu: number[] = [];
    let rssMax = 0,
      lastCycles = cycles0;
    while ((performance.now() - t0) / 1000 < windowSeconds) {
      await sleep(1000);
      rssMax = Math.max(rssMax, statusKiB(pid, 'VmRSS'));
      // A scrape costs CPU too: only every 5 s (as Prometheus would scrape), counted in the window.
      if (Math.round((performance.now() - t0) / 1000) % 5 === 0) {
        m = await metrics();
        const cycles = metricValue(m, 'leakscope_watch_cycles_total');
        if (cycles > lastCycles) {
          rssAfterCycle.push(statusKiB(pid, 'VmRSS') / 1024);
          census.push(...allValues(m, 'leakscope_census_duration_seconds'));
          cycleCpu.push(round(metricValue(m, 'leakscope_watch_cycle_cpu_seconds') * 1000, 0));
          lastCycles = cycles;
        }
      }
    }
    const c1 = cpuSeconds(pid),
      t1 = performance.now();
    m = await metrics();
    const cycles = metricValue(m, 'leakscope_watch_cycles_total') - cycles0;
    const hwm = statusKiB(pid, 'VmHWM');
    return {
      interval,
      windowSeconds: round((t1 - t0) / 1000, 1),
      startupCpuSeconds: round(c0),
      cycles,
      cpuShareOfCore: (c1 - c0) / ((t1 - t0) / 1000),
      cpuPerCycleMs: cycles ? ((c1 - c0) / cycles) * 1000 : NaN,
      censusSecondsMedian: round(median(census), 3),
      cycleCensusCpuMs: cycleCpu,
      rssMiBAfterEachCycle: rssAfterCycle.map((x) => round(x, 1)),
      rssMiBMax: round(rssMax / 1024, 1),
      hwmMiB: round(hwm / 1024, 1),
    };
  } finally {
    killQuietly(child.pid, 'SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    unregister();
  }
}

/** CPU of one /metrics scrape: a watch at a long interval, 100 scrapes, its CPU delta / 100. */
async function scrapeCost(ngx: NginxHandle): Promise<{ scrapeCpuMs: number; bodyBytes: number; series: number }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [
      join(REPO_ROOT, 'bin/leakscope'),
      'watch',
      `--nginx=${ngx.pid}`,
      '--listen',
      `127.0.0.1:${port}`,
      '--interval',
      '3600',
    ],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
  const unregister = onExit(() => killQuietly(child.pid, 'SIGKILL'));
  try {
    let body = '';
    for (let i = 0; i < 600 && !/leakscope_census_success/.test(body); i++) {
      await sleep(100);
      try {
        body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      } catch {
        /* not yet */
      }
    }
    for (let i = 0; i < 20; i++) await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(); // warm-up
    const c0 = cpuSeconds(child.pid!);
    for (let i = 0; i < 100; i++) body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const c1 = cpuSeconds(child.pid!);
    return {
      scrapeCpuMs: round(((c1 - c0) / 100) * 1000, 3),
      bodyBytes: body.length,
      series: body.split('\n').filter((l) => l && !l.startsWith('#')).length,
    };
  } finally {
    killQuietly(child.pid, 'SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r(null) : child.once('exit', r)));
    unregister();
  }
}

export async function benchWatch(
  opts: { preleak?: number; window5?: number; window60?: number } = {},
): Promise<object> {
  await ensureFixturesBuilt();
  const preleak = opts.preleak ?? Number(process.env.WATCH_PRELEAK ?? 400);
  const window5 = opts.window5 ?? Number(process.env.WATCH_WINDOW5 ?? 40);
  const window60 = opts.window60 ?? Number(process.env.WATCH_WINDOW60 ?? 125);
  const ngx = await startNginx({ workers: 2, leakSize: '300k' });
  let stop = false;
  const traffic = (async () => {
    for (let i = 0; !stop; i++) {
      await Promise.all([
        i % 5 === 0 ? driveRequests(ngx, '/leak-keep', 1, 1) : undefined,
        driveRequests(ngx, '/ok', 1, 1),
      ]);
      await sleep(200);
    }
  })();
  try {
    await driveRequests(ngx, '/leak-keep', preleak, 4);
    const heapMiB = ngx.workerPids().map((p) => round(statusKiB(p, 'VmRSS') / 1024, 1));
    const r5 = await runWatch(ngx, 5, window5);
    const r60 = await runWatch(ngx, 60, window60);
    const scrape = await scrapeCost(ngx);
    // Idle CPU between cycles: the interval-60 window minus its cycles' CPU (from the interval-5 run).
    const idlePerSecond = Math.max(0, r60.cpuShareOfCore - (r60.cycles * r5.cpuPerCycleMs) / 1000 / r60.windowSeconds);
    const computed60 = (r5.cpuPerCycleMs / 1000 + idlePerSecond * 60) / 60;
    const out = {
      scenario: `nginx 2 workers, leak module, ${preleak} x 300 KiB kept before; during: 1 leak / s, 1 ok / 200 ms`,
      workerRssMiB: heapMiB,
      'interval 5: cpu % of one core': round(r5.cpuShareOfCore * 100, 3),
      'interval 5: cpu ms per cycle (2 workers)': round(r5.cpuPerCycleMs, 1),
      'interval 5: census s (median, per worker)': r5.censusSecondsMedian,
      'interval 5: census cpu ms per cycle (watch metric)': r5.cycleCensusCpuMs,
      'interval 60: census cpu ms per cycle (watch metric)': r60.cycleCensusCpuMs,
      'interval 5: cycles in window': `${r5.cycles} in ${r5.windowSeconds} s`,
      'interval 5: RSS MiB after each cycle': r5.rssMiBAfterEachCycle,
      'interval 5: RSS max / HWM MiB': `${r5.rssMiBMax} / ${r5.hwmMiB}`,
      'interval 60: cpu % of one core (measured)': round(r60.cpuShareOfCore * 100, 3),
      'interval 60: cpu % of one core (computed from per-cycle cpu)': round(computed60 * 100, 3),
      'interval 60: cycles in window': `${r60.cycles} in ${r60.windowSeconds} s`,
      'interval 60: RSS max / HWM MiB': `${r60.rssMiBMax} / ${r60.hwmMiB}`,
      'start-up cpu s (node, symbols, first census)': [r5.startupCpuSeconds, r60.startupCpuSeconds],
      'scrape cpu ms': scrape.scrapeCpuMs,
      'scrape body': `${scrape.bodyBytes} bytes, ${scrape.series} series`,
      goal: 'cpu < 1% of one core at --interval 60',
      met: r60.cpuShareOfCore < 0.01 && computed60 < 0.01,
    };
    return out;
  } finally {
    stop = true;
    await traffic;
    await ngx.stop();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchWatch().then(
    (r) => {
      for (const [k, v] of Object.entries(r))
        console.log(`${k.padEnd(60)} ${Array.isArray(v) ? v.join(' / ') : String(v)}`);
      process.exit(0);
    },
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
