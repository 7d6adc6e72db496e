// Trace overhead benchmark (issues 6, 18), run as root: `node dist/bench/trace-overhead.js`
// (or `npm run bench` / `node dist/bench/run.js trace-overhead`).
//
// Target: nginx as a gateway (1 worker, the leaking test module loaded) proxying to an
// upstream nginx on loopback, under wrk (1 thread, 16 connections: the gateway's single
// worker is the bottleneck; nothing is pinned, the machine has 2 cores). wrk runs
// bench/gateway-mix.lua: every LEAK_EVERY-th request is /leak-drop (the module leaks a
// pool), the others /gw/bench (proxied). No location both proxies and leaks: the test
// module's `leak_pool` is a content handler, as is proxy_pass.
//
// Modes, side by side in interleaved rounds (the order rotates each round), each a wrk run
// of SECONDS with the tracer attached for the whole run (the tracer is started, then wrk
// starts once its perf_event fds, one per uprobe, are all open and stable):
//   untraced      no tracer
//   pool          `leakscope leaks PID --mode pool` (CLI child process, as in production)
//   malloc        `leakscope leaks PID --mode malloc` (default sampling: 512 KiB)
//   malloc-exact  `leakscope leaks PID --mode malloc --sample-bytes 0` (every allocation)
//   bpftrace      `bpftrace -p PID bench/memleak.bt PID` (memleak-style, stacks on every allocation)
// (Run alone: LEAKSCOPE_BENCH_MODES=untraced,pool-duty-0.5,malloc-duty-0.5,... picks other modes,
// LEAKSCOPE_BENCH_ROUNDS and LEAKSCOPE_BENCH_SECONDS change the rounds (7) and run length (5 s);
// mode pool-base runs the pool mode of another build, LEAKSCOPE_BENCH_BASE_CLI=/other/checkout/bin/leakscope.)
// The verdict is the median over rounds of each round's ratio to that round's untraced run (paired);
// beside it the ratio of the medians, each mode's min-max, and the worker's CPU per request.
// Reported: median requests/s per mode, its ratio to the untraced median, probe hits (traps)
// per request as leakscope's own stats count them (the JSON's cost.probeHits / wrk's request
// count; bpftrace: its @hits count), the worker's CPU per request, the tracer's own CPU, and
// the cost leakscope printed (cost.estimatedCpuSeconds) against the worker CPU it really added
// (worker CPU of the run - the untraced median's CPU per request x requests).
// Before the rounds, one bpftrace counting run measures how many times the worker calls each
// probed function per request (what explains the cost).
// Goals (issue 18): pool >= 97% of untraced, malloc >= 90%; malloc exact reported.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT, ensureFixturesBuilt } from '../test/helpers/build.js';
import { killQuietly, onExit } from '../test/helpers/cleanup.js';
import { parseWrkOutput, startNginx, type NginxHandle, type WrkResult } from '../test/helpers/nginx.js';

export type OverheadMode =
  | 'untraced'
  | 'pool'
  | 'pool-all-sites' // pool mode with --all-pool-sites: the probe inside ngx_create_pool (every pool)
  | 'malloc'
  | 'malloc-exact'
  | 'malloc-heap' // sampled malloc mode with --heap-liveness: no free probe, liveness read from the heap
  | `malloc-heap-duty-${number}`
  | `malloc-heap-budget-${number}` // --heap-liveness --max-overhead N
  | 'bpftrace'
  | 'pool-base' // pool mode of another build (LEAKSCOPE_BENCH_BASE_CLI=/path/bin/leakscope): before / after in one run
  | `pool-duty-${number}`
  | `malloc-duty-${number}`;

export interface OverheadOptions {
  rounds?: number;
  /** wrk run length per mode and round (s). */
  seconds?: number;
  connections?: number;
  /** Every Nth request is /leak-drop (0: none). */
  leakEvery?: number;
  /** leak_size of the test module. */
  leakSize?: string;
  modes?: OverheadMode[];
}

interface RunResult {
  round: number;
  mode: OverheadMode;
  requestsPerSec: number;
  requests: number;
  errors: number;
  /** Probe hits the tracer counted (null for untraced / unknown). */
  probeHits: number | null;
  probeHitsByKind?: Record<string, number>;
  /** Worker CPU (user + sys) per request during the wrk run (µs). */
  workerCpuMicrosPerRequest: number;
  /** The tracer process's CPU (user + sys) from start to the end of the wrk run (s). */
  tracerCpuSeconds: number | null;
  /** The tracer's CPU during the wrk run only (s): what it took from the machine while measured. */
  tracerWindowCpuSeconds: number | null;
  /** The tracer's CPU before wrk started (s): start-up, the probe plan, attaching. */
  tracerStartCpuSeconds: number | null;
  /** The tracer's CPU during the wrk run by thread name (s), e.g. node's main thread vs V8's GC workers. */
  tracerWindowCpuByThread?: Record<string, number>;
  /** Share of all CPUs busy during the wrk run (/proc/stat), 0..1. */
  hostBusy: number;
  /** The worker's context switches per request during the wrk run (a per-task perf event costs one each). */
  workerSwitchesPerRequest: number;
  /** Worker CPU (user + sys) over the wrk run (s). */
  workerCpuSeconds: number;
  /** leakscope's own cost estimate for its whole window (cost.estimatedCpuSeconds; s). */
  estimatedCpuSeconds?: number;
  /** The window leakscope reported (durationSeconds; s): longer than the wrk run. */
  tracedSeconds?: number;
  lostEvents?: number;
  note?: string;
}

const LIBC_FUNCTIONS = ['malloc', 'calloc', 'realloc', 'posix_memalign', 'memalign', 'free'] as const;
const TICK_MICROS = 1e6 / 100; // USER_HZ = 100 on Linux x86-64

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** utime + stime of a process, in clock ticks (0 when it is gone). */
function cpuTicks(pid: number): number {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]);
  } catch {
    return 0;
  }
}

/** utime + stime per thread name of a process, in clock ticks (empty when it is gone). */
function threadTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        const st = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const name = st.slice(st.indexOf('(') + 1, st.lastIndexOf(')'));
        const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
        out.set(name, (out.get(name) ?? 0) + Number(f[11]) + Number(f[12]));
      } catch {
        /* exited meanwhile */
      }
    }
  } catch {
    /* exited */
  }
  return out;
}

/** Context switches (voluntary + involuntary) of a process's main thread so far (0 when it is gone). */
function contextSwitches(pid: number): number {
  try {
    const st = readFileSync(`/proc/${pid}/status`, 'utf8');
    return (
      Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(st)?.[1] ?? 0) +
      Number(/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(st)?.[1] ?? 0)
    );
  } catch {
    return 0;
  }
}

/** Busy and total jiffies of all CPUs (/proc/stat's first line; idle = idle + iowait). */
function hostTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total };
}

/** Open perf_event and bpf_link fds of a process (one or two per attached uprobe; uprobe
 *  sessions are bpf_links without a perf_event), for both tracers. */
function perfEventFds(pid: number): number {
  let n = 0;
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const l = readlinkSync(`/proc/${pid}/fd/${fd}`);
        if (l.includes('perf_event') || l.includes('bpf_link') || l.includes('bpf-link')) n++;
      } catch {
        /* closed meanwhile */
      }
    }
  } catch {
    /* exited */
  }
  return n;
}

/** Resolves once the process has >= 1 perf_event fd and the count has not changed for
 *  `stableMs` (or, under a duty cycle, where the count keeps changing, 1 s after the first fd);
 *  rejects when it exits first or after `timeoutMs`. */
async function waitAttached(
  child: ChildProcess,
  what: string,
  output: () => string,
  stableMs = 500,
  timeoutMs = 30_000,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let since = Date.now();
  let firstSeen = 0;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(
        `${what} exited before attaching (${child.exitCode ?? child.signalCode}): ${output().trim().slice(-2000)}`,
      );
    const n = perfEventFds(child.pid!);
    if (n > 0 && !firstSeen) firstSeen = Date.now();
    if (n !== last) {
      last = n;
      since = Date.now();
    } else if (n > 0 && Date.now() - since >= stableMs) return n;
    if (firstSeen && Date.now() - firstSeen >= 1000) return n;
    if (Date.now() > deadline)
      throw new Error(
        `${what}: probes not attached within ${timeoutMs} ms (${n} perf_event fds): ${output().trim().slice(-2000)}`,
      );
    await sleep(50);
  }
}

function spawnLogged(
  cmd: string,
  args: string[],
  env?: NodeJS.ProcessEnv,
): { child: ChildProcess; output: () => string; exited: Promise<number | null> } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const unregister = onExit(() => killQuietly(child.pid, 'SIGKILL'));
  const exited = new Promise<number | null>((resolve) => {
    child.on('error', (e) => {
      out += String(e);
      unregister();
      resolve(-1);
    });
    child.on('close', (code) => {
      unregister();
      resolve(code);
    });
  });
  return { child, output: () => out, exited };
}

async function runWrkMix(h: NginxHandle, seconds: number, connections: number, leakEvery: number): Promise<WrkResult> {
  const script = join(REPO_ROOT, 'bench', 'gateway-mix.lua');
  const p = spawnLogged('wrk', [
    '-t',
    '1',
    '-c',
    String(connections),
    '-d',
    `${seconds}s`,
    '-s',
    script,
    h.url('/'),
    '--',
    String(leakEvery),
  ]);
  const code = await p.exited;
  if (code !== 0) throw new Error(`wrk exited ${code}: ${p.output()}`);
  return parseWrkOutput(p.output());
}

interface Tracer {
  /** Probes are attached. */
  ready: Promise<void>;
  /** Ends the trace; resolves with what the tracer reported. */
  stop(): Promise<{
    probeHits: number | null;
    byKind?: Record<string, number>;
    lostEvents?: number;
    estimatedCpuSeconds?: number;
    tracedSeconds?: number;
    note?: string;
  }>;
  pid: number;
}

function startLeakscope(
  worker: number,
  mode: 'pool' | 'malloc',
  tmp: string,
  run: number,
  duty?: number,
  extra: string[] = [],
  cli?: string,
): Tracer {
  const json = join(tmp, `leaks-${mode}-${run}.json`);
  // A long window, ended by SIGINT once wrk is done (the CLI then writes its JSON).
  const args = [
    cli ?? join(REPO_ROOT, 'bin', 'leakscope'),
    'leaks',
    String(worker),
    '--mode',
    mode,
    '--duration',
    '600',
    '--json',
    json,
  ];
  if (duty !== undefined) args.push('--duty', String(duty));
  args.push(...extra);
  const p = spawnLogged(process.execPath, args);
  return {
    pid: p.child.pid!,
    ready: waitAttached(p.child, `leakscope leaks --mode ${mode}`, p.output).then(() => undefined),
    async stop() {
      p.child.kill('SIGINT');
      const code = await p.exited;
      if (code !== 0)
        throw new Error(`leakscope leaks --mode ${mode} exited ${code}: ${p.output().trim().slice(-2000)}`);
      const j = JSON.parse(readFileSync(json, 'utf8')) as {
        durationSeconds: number;
        cost: {
          probeHits: Record<string, number>;
          totalProbeHits: number;
          lostEvents: number;
          estimatedCpuSeconds: number;
        };
        notes?: string[];
      };
      return {
        probeHits: j.cost.totalProbeHits,
        byKind: j.cost.probeHits,
        lostEvents: j.cost.lostEvents,
        estimatedCpuSeconds: j.cost.estimatedCpuSeconds,
        tracedSeconds: j.durationSeconds,
        note: j.notes?.length ? j.notes.join('; ') : undefined,
      };
    },
  };
}

function bpftraceEnv(): NodeJS.ProcessEnv {
  // memleak keeps up to 10240 outstanding allocations by default; leakscope 262144.
  return { ...process.env, BPFTRACE_MAP_KEYS_MAX: '262144' };
}

/** bpftrace under `ulimit -l unlimited` where allowed (it warns, and works, when not). */
function spawnBpftrace(args: string[]): ReturnType<typeof spawnLogged> {
  const quoted = args.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return spawnLogged('bash', ['-c', `ulimit -l unlimited 2>/dev/null; exec bpftrace ${quoted}`], bpftraceEnv());
}

function startBpftrace(worker: number): Tracer {
  const p = spawnBpftrace(['-p', String(worker), join(REPO_ROOT, 'bench', 'memleak.bt'), String(worker)]);
  return {
    pid: p.child.pid!,
    ready: waitAttached(p.child, 'bpftrace memleak.bt', p.output).then(() => undefined),
    async stop() {
      p.child.kill('SIGINT');
      await p.exited;
      const m = /@hits:\s*(\d+)/.exec(p.output());
      return {
        probeHits: m ? Number(m[1]) : null,
        note: m ? undefined : `no @hits in bpftrace output: ${p.output().trim().slice(-500)}`,
      };
    },
  };
}

/** One bpftrace counting run: calls per request of each probed libc function and of
 *  ngx_create_pool / ngx_destroy_pool in the worker. */
async function callsPerRequest(
  h: NginxHandle,
  worker: number,
  seconds: number,
  connections: number,
  leakEvery: number,
): Promise<{ requests: number; perRequest: Record<string, number>; requestsPerSec: number }> {
  const exe = readlinkSync(`/proc/${worker}/exe`);
  const probes = [
    ...LIBC_FUNCTIONS.map((f) => `uprobe:libc:${f}`),
    `uprobe:${exe}:ngx_create_pool`,
    `uprobe:${exe}:ngx_destroy_pool`,
  ];
  const p = spawnBpftrace([
    '-p',
    String(worker),
    '-e',
    `${probes.join(',\n')} /pid == ${worker}/ { @[probe] = count(); }`,
  ]);
  try {
    await waitAttached(p.child, 'bpftrace (call counts)', p.output);
    const w = await runWrkMix(h, seconds, connections, leakEvery);
    p.child.kill('SIGINT');
    await p.exited;
    const perRequest: Record<string, number> = {};
    for (const m of p.output().matchAll(/@\[uprobe:([^\]]+)\]:\s*(\d+)/g)) {
      const name = m[1]!.split(':').pop()!;
      perRequest[name] = Number(m[2]) / Math.max(1, w.totalRequests);
    }
    if (!Object.keys(perRequest).length)
      throw new Error(`bpftrace (call counts): no counts in its output: ${p.output().trim().slice(-1000)}`);
    return { requests: w.totalRequests, perRequest, requestsPerSec: w.requestsPerSec };
  } finally {
    killQuietly(p.child.pid, 'SIGKILL');
  }
}

export async function benchTraceOverhead(opts: OverheadOptions = {}): Promise<object> {
  const rounds = opts.rounds ?? 7;
  const seconds = opts.seconds ?? 5;
  const connections = opts.connections ?? 16;
  const leakEvery = opts.leakEvery ?? 100;
  const leakSize = opts.leakSize ?? '1k';
  if (process.getuid?.() !== 0) throw new Error('trace-overhead: run as root (eBPF)');
  if (spawnSync('wrk', ['--version']).error)
    throw new Error('trace-overhead: wrk is not installed (apt-get install wrk)');
  const haveBpftrace = spawnSync('bpftrace', ['--version']).status === 0;
  const modes: OverheadMode[] = (opts.modes ?? ['untraced', 'pool', 'malloc', 'malloc-exact', 'bpftrace']).filter(
    (m) => m !== 'bpftrace' || haveBpftrace,
  );
  await ensureFixturesBuilt();

  const tmp = mkdtempSync(join(os.tmpdir(), 'leakscope-bench-overhead-'));
  const h = await startNginx({ workers: 1, gateway: true, leakSize, workerConnections: 1024 });
  try {
    const [worker] = h.workerPids();
    if (!worker) throw new Error('no nginx worker');
    await runWrkMix(h, 2, connections, leakEvery); // warm-up: connections, upstream keepalive, caches

    const calls = haveBpftrace ? await callsPerRequest(h, worker, 4, connections, leakEvery) : null;

    const runs: RunResult[] = [];
    let run = 0;
    for (let round = 0; round < rounds; round++) {
      const order = modes.map((_, i) => modes[(i + round) % modes.length]!);
      for (const mode of order) {
        run++;
        let tracer: Tracer | undefined;
        if (mode === 'pool' || mode === 'malloc') tracer = startLeakscope(worker, mode, tmp, run);
        else if (mode === 'pool-base') {
          const cli = process.env.LEAKSCOPE_BENCH_BASE_CLI;
          if (!cli) throw new Error("pool-base: set LEAKSCOPE_BENCH_BASE_CLI to another build's bin/leakscope");
          tracer = startLeakscope(worker, 'pool', tmp, run, undefined, [], cli);
        } else if (mode === 'pool-all-sites')
          tracer = startLeakscope(worker, 'pool', tmp, run, undefined, ['--all-pool-sites']);
        else if (mode === 'malloc-heap')
          tracer = startLeakscope(worker, 'malloc', tmp, run, undefined, ['--heap-liveness']);
        else if (mode.startsWith('malloc-heap-budget-'))
          tracer = startLeakscope(worker, 'malloc', tmp, run, undefined, [
            '--heap-liveness',
            '--max-overhead',
            mode.slice('malloc-heap-budget-'.length),
          ]);
        else if (mode.startsWith('malloc-heap-duty-'))
          tracer = startLeakscope(worker, 'malloc', tmp, run, Number(mode.slice('malloc-heap-duty-'.length)), [
            '--heap-liveness',
          ]);
        else if (mode === 'malloc-exact')
          tracer = startLeakscope(worker, 'malloc', tmp, run, undefined, ['--sample-bytes', '0']);
        else if (mode.startsWith('pool-duty-'))
          tracer = startLeakscope(worker, 'pool', tmp, run, Number(mode.slice('pool-duty-'.length)));
        else if (mode.startsWith('malloc-duty-'))
          tracer = startLeakscope(worker, 'malloc', tmp, run, Number(mode.slice('malloc-duty-'.length)));
        else if (mode === 'bpftrace') tracer = startBpftrace(worker);
        else if (mode !== 'untraced')
          // An unknown name would otherwise run untraced and be reported as a traced mode.
          throw new Error(`trace-overhead: unknown mode ${JSON.stringify(mode)} (see OverheadMode)`);
        try {
          await tracer?.ready;
          const w0 = cpuTicks(worker);
          const t0 = tracer ? cpuTicks(tracer.pid) : 0;
          const th0 = tracer ? threadTicks(tracer.pid) : new Map<string, number>();
          const host0 = hostTicks();
          const cs0 = contextSwitches(worker);
          const w = await runWrkMix(h, seconds, connections, leakEvery);
          const workerTicks = cpuTicks(worker) - w0;
          const tracerTicks = tracer ? cpuTicks(tracer.pid) : 0;
          const th1 = tracer ? threadTicks(tracer.pid) : new Map<string, number>();
          const host1 = hostTicks();
          const switches = contextSwitches(worker) - cs0;
          const byThread: Record<string, number> = {};
          for (const [name, t] of th1) {
            const d = t - (th0.get(name) ?? 0);
            if (d > 0) byThread[name] = d / 100;
          }
          const t = tracer ? await tracer.stop() : undefined;
          tracer = undefined;
          const errors =
            w.non2xx + w.socketErrors.connect + w.socketErrors.read + w.socketErrors.write + w.socketErrors.timeout;
          runs.push({
            round,
            mode,
            requestsPerSec: w.requestsPerSec,
            requests: w.totalRequests,
            errors,
            probeHits: mode === 'untraced' ? 0 : (t?.probeHits ?? null),
            probeHitsByKind: t?.byKind,
            workerCpuMicrosPerRequest: (workerTicks * TICK_MICROS) / Math.max(1, w.totalRequests),
            tracerCpuSeconds: mode === 'untraced' ? null : tracerTicks / 100,
            tracerWindowCpuSeconds: mode === 'untraced' ? null : (tracerTicks - t0) / 100,
            tracerStartCpuSeconds: mode === 'untraced' ? null : t0 / 100,
            ...(tracer ? { tracerWindowCpuByThread: byThread } : {}),
            hostBusy: (host1.busy - host0.busy) / Math.max(1, host1.total - host0.total),
            workerSwitchesPerRequest: switches / Math.max(1, w.totalRequests),
            workerCpuSeconds: workerTicks / 100,
            estimatedCpuSeconds: t?.estimatedCpuSeconds,
            tracedSeconds: t?.tracedSeconds,
            lostEvents: t?.lostEvents,
            note: t?.note,
          });
          const r = runs[runs.length - 1]!;
          process.stderr.write(
            `  round ${round + 1} ${mode.padEnd(10)} ${r.requestsPerSec.toFixed(0).padStart(7)} req/s, worker ${r.workerCpuMicrosPerRequest.toFixed(1)} µs/req, ${r.workerSwitchesPerRequest.toFixed(2)} switches/req, host ${(r.hostBusy * 100).toFixed(0)}% busy${r.probeHits !== null && mode !== 'untraced' ? `, ${(r.probeHits / Math.max(1, r.requests)).toFixed(2)} hits/req` : ''}${r.tracerWindowCpuSeconds !== null ? `, tracer ${r.tracerWindowCpuSeconds.toFixed(2)} s CPU in the run (${r.tracerStartCpuSeconds!.toFixed(2)} s before)` : ''}\n`,
          );
        } finally {
          if (tracer) {
            killQuietly(tracer.pid, 'SIGKILL');
            await tracer.stop().catch(() => undefined);
          }
        }
      }
    }

    const base = median(runs.filter((r) => r.mode === 'untraced').map((r) => r.requestsPerSec));
    const summary = modes.map((mode) => {
      const rs = runs.filter((r) => r.mode === mode);
      const rps = median(rs.map((r) => r.requestsPerSec));
      const hitsPerReq = rs.every((r) => r.probeHits !== null)
        ? median(rs.map((r) => r.probeHits! / Math.max(1, r.requests)))
        : null;
      const byKind: Record<string, number> = {};
      for (const k of Object.keys(rs[0]?.probeHitsByKind ?? {}))
        byKind[k] = median(rs.map((r) => (r.probeHitsByKind?.[k] ?? 0) / Math.max(1, r.requests)));
      // Issue 18: pool >= 97 %, malloc (sampled) >= 90 %; exact mode is reported without a goal.
      const target = mode.startsWith('pool') ? 0.97 : mode.startsWith('malloc') && mode !== 'malloc-exact' ? 0.9 : null;
      // The cost leakscope printed (its window: probes attached before wrk started, detached after)
      // per request, against the worker CPU it really added.
      const est = rs.filter((r) => r.estimatedCpuSeconds !== undefined);
      const estimatedMicrosPerRequest = est.length
        ? median(est.map((r) => (r.estimatedCpuSeconds! * 1e6) / Math.max(1, r.requests)))
        : null;
      // Per round: this mode's req/s over the same round's untraced req/s (the runs are next to each
      // other in time, so slow drifts of the shared machine cancel); the verdict is their median.
      const paired = rs.flatMap((r) => {
        const u = runs.find((x) => x.mode === 'untraced' && x.round === r.round);
        return u && u.requestsPerSec > 0 ? [r.requestsPerSec / u.requestsPerSec] : [];
      });
      const pairedRatio = paired.length ? median(paired) : base > 0 ? rps / base : 0;
      const cpus = rs.map((r) => r.workerCpuMicrosPerRequest);
      const windowCpu = rs.flatMap((r) => (r.tracerWindowCpuSeconds === null ? [] : [r.tracerWindowCpuSeconds]));
      const startCpu = rs.flatMap((r) => (r.tracerStartCpuSeconds === null ? [] : [r.tracerStartCpuSeconds]));
      return {
        mode,
        medianRequestsPerSec: rps,
        minRequestsPerSec: Math.min(...rs.map((r) => r.requestsPerSec)),
        maxRequestsPerSec: Math.max(...rs.map((r) => r.requestsPerSec)),
        ratio: base > 0 ? rps / base : 0,
        pairedRatio,
        pairedRatios: paired.map((x) => Math.round(x * 1000) / 1000),
        target,
        met: target === null ? null : pairedRatio >= target,
        probeHitsPerRequest: hitsPerReq,
        probeHitsPerRequestByKind: Object.keys(byKind).length ? byKind : undefined,
        workerCpuMicrosPerRequest: median(cpus),
        minWorkerCpuMicrosPerRequest: Math.min(...cpus),
        maxWorkerCpuMicrosPerRequest: Math.max(...cpus),
        tracerCpuSeconds: mode === 'untraced' ? null : median(rs.map((r) => r.tracerCpuSeconds ?? 0)),
        tracerWindowCpuSeconds: windowCpu.length ? median(windowCpu) : null,
        tracerStartCpuSeconds: startCpu.length ? median(startCpu) : null,
        hostBusy: median(rs.map((r) => r.hostBusy)),
        workerSwitchesPerRequest: median(rs.map((r) => r.workerSwitchesPerRequest)),
        estimatedMicrosPerRequest,
        runs: rs.map((r) => Math.round(r.requestsPerSec)),
        errors: rs.reduce((s, r) => s + r.errors, 0),
      };
    });
    const untracedCpu = summary.find((s) => s.mode === 'untraced')?.workerCpuMicrosPerRequest ?? 0;

    const result = {
      target: `nginx gateway (1 worker, pid ${worker}) -> upstream nginx on loopback; wrk -t1 -c${connections} -d${seconds}s, every ${leakEvery}th request /leak-drop (leak_size ${leakSize})`,
      rounds,
      seconds,
      connections,
      leakEvery,
      cpus: os.cpus().length,
      summary: summary.map((s) => ({
        ...s,
        extraWorkerMicrosPerRequest: s.workerCpuMicrosPerRequest - untracedCpu,
        // The throughput ratio the worker's own CPU per request implies when the worker alone is the
        // bottleneck (untraced µs/req over this mode's): steadier than req/s on a shared machine.
        cpuRatio: s.workerCpuMicrosPerRequest > 0 ? untracedCpu / s.workerCpuMicrosPerRequest : 0,
      })),
      callsPerRequest: calls,
      runs,
      goal: 'pool >= 97% of untraced, malloc (default sampling) >= 90%; malloc exact reported',
      verdict:
        "median over rounds of req/s / the same round's untraced req/s (pairedRatio); ratio of the medians and cpuRatio (untraced worker µs/req / mode worker µs/req) reported beside it",
    };

    const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
    const rows = [
      [
        'mode',
        'req/s median (min-max)',
        'ratio: paired / of medians',
        'target (paired)',
        'probe hits/req',
        'worker µs/req (min-max)',
        'CPU ratio',
        'added µs/req: measured / printed',
        'tracer CPU s: in run / before',
        'host busy',
        'runs (req/s)',
      ],
      ...result.summary.map((s) => [
        s.mode,
        `${s.medianRequestsPerSec.toFixed(0)} (${s.minRequestsPerSec.toFixed(0)}-${s.maxRequestsPerSec.toFixed(0)})`,
        `${pct(s.pairedRatio)} / ${pct(s.ratio)}`,
        s.target === null ? '' : `>= ${pct(s.target)} ${s.met ? 'met' : 'NOT met'}`,
        s.probeHitsPerRequest === null
          ? '?'
          : `${s.probeHitsPerRequest.toFixed(2)}${
              s.probeHitsPerRequestByKind
                ? ` (${Object.entries(s.probeHitsPerRequestByKind)
                    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
                    .join(', ')})`
                : ''
            }`,
        `${s.workerCpuMicrosPerRequest.toFixed(1)} (${s.minWorkerCpuMicrosPerRequest.toFixed(1)}-${s.maxWorkerCpuMicrosPerRequest.toFixed(1)})`,
        pct(s.cpuRatio),
        s.mode === 'untraced'
          ? ''
          : `${s.extraWorkerMicrosPerRequest.toFixed(1)} / ${s.estimatedMicrosPerRequest === null ? '?' : s.estimatedMicrosPerRequest.toFixed(1)}`,
        s.tracerWindowCpuSeconds === null
          ? ''
          : `${s.tracerWindowCpuSeconds.toFixed(2)} / ${s.tracerStartCpuSeconds!.toFixed(2)}`,
        pct(s.hostBusy),
        s.runs.join(' '),
      ]),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    console.log(result.target);
    console.log(
      rows
        .map((r) =>
          r
            .map((c, i) => c.padEnd(widths[i]!))
            .join('  ')
            .trimEnd(),
        )
        .join('\n'),
    );
    if (calls)
      console.log(
        `calls per request in the worker (bpftrace count, ${calls.requests} requests): ${Object.entries(
          calls.perRequest,
        )
          .map(([k, v]) => `${k} ${v.toFixed(2)}`)
          .join(', ')}`,
      );
    const notes = [...new Set(runs.filter((r) => r.note).map((r) => `${r.mode}: ${r.note}`))];
    for (const n of notes) console.log(`note: ${n}`);
    return result;
  } finally {
    await h.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const extra = (process.env.LEAKSCOPE_BENCH_MODES ?? '').split(',').filter(Boolean) as OverheadMode[];
  const rounds = Number(process.env.LEAKSCOPE_BENCH_ROUNDS) || undefined;
  const seconds = Number(process.env.LEAKSCOPE_BENCH_SECONDS) || undefined;
  benchTraceOverhead({ ...(extra.length ? { modes: extra } : {}), rounds, seconds }).then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
