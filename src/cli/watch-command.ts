// `leakscope watch`: a long-running census of nginx workers (or given PIDs) served as Prometheus
// metrics on /metrics, with growth-triggered analyses kept under --reports.
//
// Loop: every --interval seconds a cycle (1) re-discovers the workers (--nginx: all nginx workers,
// or those of one master; PIDs: the given ones while they live), following new processes and
// dropping gone ones (their series vanish from /metrics, so Prometheus marks them stale);
// (2) takes one static census per worker (analysis/watch-observe.ts: reads only, no probe);
// (3) fits growth rates (analysis/watch-growth.ts) and, when a series grows past --trigger, starts
// `analyze` (trace included, duty-cycled) at most once per --cooldown, one at a time.
// Cost control: the next cycle starts no sooner than (last cycle's census CPU time / --budget)
// after the last one started, so censuses never take more than --budget of one core.
// SIGINT / SIGTERM: the trace is aborted (probes detached), the server closed, then exit 0.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { LeakscopeError, isLeakscopeError } from '../model/errors.js';
import { LiveProcess, nginxWorkers, processStartSeconds, siblingWorkers } from '../target/index.js';
import type { AddressSpace } from '../target/address-space.js';
import { followWorker, observeWorker } from '../analysis/watch-observe.js';
import { luaHeaps, luajitLibrary } from '../luajit/index.js';
import type { WatchLua } from '../contract/index.js';
import type { Symbolizer } from '../symbols/index.js';
import type { FollowedWorker } from '../analysis/watch-observe.js';
import { TriggerGate, WorkerGrowth } from '../analysis/watch-growth.js';
import type { TriggerCandidate, TriggerThresholds } from '../analysis/watch-growth.js';
import { analyze } from '../analysis/analyze.js';
import { WATCH_SCHEMA } from '../contract/watch.js';
import type { WatchDocument, WatchReport, WatchSelf, WatchVerdict, WatchWorker } from '../contract/watch.js';
import { renderWatchMetrics } from '../report/watch-metrics.js';
import { PROMETHEUS_CONTENT_TYPE } from '../report/prometheus-text.js';
import { resources, requireEbpf } from '../ebpf/index.js';
import { createReportDirectory, enforceRetention, writeReport } from './watch-reports.js';

export interface WatchCliOptions {
  /** true: every nginx worker; a string: the workers of that master pid. */
  nginx?: boolean | string;
  listen: string;
  interval: number;
  budget: number;
  topModules: number;
  window: number;
  minSamples: number;
  trigger?: TriggerThresholds;
  cooldown: number;
  reports?: string;
  keep: number;
  traceSeconds: number;
  duty: number;
  pause: number;
}

/** ADDR:PORT, [IPv6]:PORT or PORT (loopback). */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]*)):(\d{1,5})$/.exec(text) ?? /^()()(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535))
    throw new LeakscopeError('usage', `--listen: expected ADDR:PORT, got ${JSON.stringify(text)}`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

interface Followed {
  key: string;
  follow: FollowedWorker;
  growth: WorkerGrowth;
  last: WatchWorker | null;
}

const log = (s: string) => process.stderr.write(`leakscope watch: ${s.replace(/\s*\n\s*/g, ' ')}\n`);

export class Watch {
  private followed = new Map<string, Followed>();
  private readonly pids: number[];
  private readonly gate: TriggerGate;
  private readonly startedAt = Date.now() / 1000;
  private self = {
    cycles: 0,
    cyclesDelayed: 0,
    lastCycleSeconds: 0,
    lastCycleCpuSeconds: 0,
    lastCycleDuty: 0,
    reports: 0,
    suppressedCooldown: 0,
    suppressedBusy: 0,
    analysisErrors: 0,
  };
  private lastReport: WatchReport | null = null;
  private readonly abort = new AbortController();
  private server?: http.Server;
  private timer?: NodeJS.Timeout;
  private wake?: () => void;
  private analysis: Promise<void> | null = null;
  private warnedNoWorkers = false;

  constructor(
    pidArgs: string[],
    private readonly o: WatchCliOptions,
  ) {
    if (o.nginx !== undefined && o.nginx !== false && pidArgs.length)
      throw new LeakscopeError('usage', 'give PIDs or --nginx, not both');
    if ((o.nginx === undefined || o.nginx === false) && !pidArgs.length)
      throw new LeakscopeError('usage', 'missing target: give PIDs or --nginx[=MASTER]');
    if (typeof o.nginx === 'string' && !/^\d+$/.test(o.nginx))
      throw new LeakscopeError('usage', `--nginx=MASTER: not a process id: ${JSON.stringify(o.nginx)}`);
    for (const p of pidArgs)
      if (!/^\d+$/.test(p)) throw new LeakscopeError('usage', `not a process id: ${JSON.stringify(p)}`);
    if (o.trigger && !o.reports)
      throw new LeakscopeError('usage', '--trigger needs --reports DIR (where the reports are kept)');
    this.pids = pidArgs.map(Number);
    this.gate = new TriggerGate(o.cooldown);
  }

  /** Binds the server, runs the first cycle, then cycles until stop(). Resolves when stopped. */
  async run(): Promise<void> {
    if (this.o.trigger && this.o.traceSeconds > 0) requireEbpf();
    // Explicit PIDs (and an explicit master) must exist at start (one-line error and exit code otherwise).
    for (const pid of this.pids) LiveProcess.open(pid).close();
    if (typeof this.o.nginx === 'string' && processStartSeconds(Number(this.o.nginx)) === undefined) {
      throw new LeakscopeError('no-such-process', `--nginx=${this.o.nginx}: no such process`);
    }
    await this.listen();
    const onSignal = (sig: NodeJS.Signals) => {
      if (this.abort.signal.aborted) {
        resources.closeAll();
        process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
      }
      log(`${sig}: stopping`);
      this.stop();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      while (!this.abort.signal.aborted) {
        const cycleStart = performance.now();
        const censusCpu = await this.cycle();
        const took = (performance.now() - cycleStart) / 1000;
        const next = nextCycle(this.o.interval, this.o.budget, took, censusCpu);
        if (next.delayed) this.self.cyclesDelayed++;
        this.self.lastCycleSeconds = took;
        this.self.lastCycleCpuSeconds = censusCpu;
        this.self.lastCycleDuty = next.duty;
        await this.sleep(next.sleepSeconds * 1000);
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await this.shutdown();
    }
  }

  stop(): void {
    if (this.abort.signal.aborted) return;
    resources.detachAll(); // a running trace loses its probes now; it ends on the abort below
    this.abort.abort(new Error('watch stopped'));
    this.wake?.();
  }

  /** The address the server listens on (after run() has bound it). */
  address(): AddressInfo | null {
    return (this.server?.address() as AddressInfo | null) ?? null;
  }

  private async listen(): Promise<void> {
    const { host, port } = parseListen(this.o.listen);
    const server = http.createServer((req, res) => this.serve(req, res));
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new LeakscopeError(
            e.code === 'EACCES' ? 'permission' : 'io',
            `cannot listen on ${this.o.listen}: ${e.code ?? e.message}`,
          ),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const a = this.address();
    log(
      `serving http://${a?.family === 'IPv6' ? `[${a.address}]` : a?.address}:${a?.port}/metrics, census every ${this.o.interval} s`,
    );
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/metrics') {
      let body: string;
      try {
        body = renderWatchMetrics(this.document());
      } catch (e) {
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`internal error: ${(e as Error).message}\n`);
        return;
      }
      res.writeHead(200, { 'Content-Type': PROMETHEUS_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (path === '/snapshot.json') {
      const body = JSON.stringify(this.document(), null, 2) + '\n';
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
      return;
    }
    if (path === '/') {
      res
        .writeHead(200, { 'Content-Type': 'text/plain' })
        .end('leakscope watch: Prometheus metrics at /metrics, the leakscope.watch/1 document at /snapshot.json\n');
      return;
    }
    res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
  }

  /** The state now, as a `leakscope.watch/1` document. */
  document(): WatchDocument {
    const cpu = process.cpuUsage();
    const self: WatchSelf = {
      startedAtSeconds: this.startedAt,
      intervalSeconds: this.o.interval,
      cycles: this.self.cycles,
      cyclesDelayed: this.self.cyclesDelayed,
      lastCycleSeconds: this.self.lastCycleSeconds,
      lastCycleCpuSeconds: this.self.lastCycleCpuSeconds,
      budget: this.o.budget,
      lastCycleDuty: this.self.lastCycleDuty,
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      residentBytes: process.memoryUsage.rss(),
      reports: this.self.reports,
      analysisRunning: this.gate.isRunning,
      triggersSuppressed: { cooldown: this.self.suppressedCooldown, busy: this.self.suppressedBusy },
      analysisErrors: this.self.analysisErrors,
    };
    const workers = [...this.followed.values()]
      .map((f) => f.last)
      .filter((w): w is WatchWorker => !!w)
      .sort((a, b) => a.pid - b.pid);
    return { schema: WATCH_SCHEMA, generatedAt: new Date().toISOString(), self, workers, lastReport: this.lastReport };
  }

  /** Processes to follow now: pid -> start time. */
  private discover(): Map<number, number> {
    const out = new Map<number, number>();
    const pids =
      this.o.nginx !== undefined && this.o.nginx !== false
        ? nginxWorkers(typeof this.o.nginx === 'string' ? { master: Number(this.o.nginx) } : {}).map((w) => w.pid)
        : this.pids;
    for (const pid of pids) {
      const start = processStartSeconds(pid);
      if (start !== undefined) out.set(pid, start);
    }
    return out;
  }

  /** One cycle; returns the CPU seconds its censuses took (following new workers excluded: a one-off). */
  private async cycle(): Promise<number> {
    const now = this.discover();
    const wanted = new Set<string>();
    for (const [pid, start] of now) wanted.add(`${pid}@${start}`);
    for (const [key, f] of this.followed) {
      if (!wanted.has(key)) {
        this.drop(key, f, 'exited');
      }
    }
    for (const [pid, start] of now) {
      const key = `${pid}@${start}`;
      if (this.followed.has(key)) continue;
      let space: AddressSpace | undefined;
      try {
        space = LiveProcess.open(pid);
        const follow = followWorker(space, start);
        this.followed.set(key, {
          key,
          follow,
          growth: new WorkerGrowth({ windowSeconds: this.o.window, maxPoints: WINDOW_MAX_POINTS }),
          last: null,
        });
        log(`following pid ${pid} (${follow.isNginx ? `nginx worker ${follow.worker}` : space.command})`);
      } catch (e) {
        space?.close();
        if (!isLeakscopeError(e)) throw e;
        if (e.code !== 'no-such-process') log(`cannot follow pid ${pid}: ${e.message}`);
      }
    }
    if (!this.followed.size && !this.warnedNoWorkers) {
      log('no worker to follow (yet)');
      this.warnedNoWorkers = true;
    }
    if (this.followed.size) this.warnedNoWorkers = false;

    let cpu = 0;
    for (const [key, f] of this.followed) {
      if (this.abort.signal.aborted) return cpu;
      const c0 = process.cpuUsage();
      let obs: ReturnType<typeof observeWorker>;
      try {
        obs = observeWorker(f.follow, { topModules: this.o.topModules, luaCensus: watchLuaCensus });
      } catch (e) {
        // A bug met on some target's data: counted as a failed census, the watch goes on.
        f.follow.errors++;
        const msg = `internal error: ${(e as Error)?.message ?? String(e)}`.replace(/\s*\n\s*/g, ' ').slice(0, 300);
        if (f.last)
          f.last = { ...f.last, census: { ...f.last.census, ok: false, errors: f.follow.errors, lastError: msg } };
        log(`census of pid ${f.follow.space.pid}: ${msg}`);
        continue;
      } finally {
        const c = process.cpuUsage(c0);
        cpu += (c.user + c.system) / 1e6;
      }
      if (obs.gone) {
        this.drop(key, f, 'exited');
        continue;
      }
      obs.worker.growth = f.growth.add(obs.worker.census.timestampSeconds, obs.points, obs.observed);
      f.last = obs.worker;
      await new Promise((r) => setImmediate(r)); // let scrapes in between workers
    }
    this.self.cycles++;
    if (this.o.trigger) this.considerTriggers();
    return cpu;
  }

  private drop(key: string, f: Followed, why: string): void {
    this.followed.delete(key);
    f.follow.space.close();
    log(`dropping pid ${f.follow.space.pid} (${why})`);
  }

  private considerTriggers(): void {
    let best: { f: Followed; c: TriggerCandidate } | null = null;
    for (const f of this.followed.values()) {
      const c = f.growth.candidates(this.o.trigger!, this.o.minSamples)[0];
      if (c && (!best || c.lowBytesPerHour - c.threshold > best.c.lowBytesPerHour - best.c.threshold)) best = { f, c };
    }
    if (!best) return;
    const decision = this.gate.decide(Date.now() / 1000);
    if (decision === 'cooldown') {
      this.self.suppressedCooldown++;
      return;
    }
    if (decision === 'busy') {
      this.self.suppressedBusy++;
      return;
    }
    this.gate.started(Date.now() / 1000);
    this.analysis = this.runAnalysis(best.f, best.c).finally(() => {
      this.gate.finished();
      this.analysis = null;
    });
  }

  private async runAnalysis(f: Followed, c: TriggerCandidate): Promise<void> {
    const pid = f.follow.space.pid;
    log(
      `growth of ${describeSeries(c)} in pid ${pid}: ${Math.round(c.bytesPerHour)} B/h (95% low end ${Math.round(c.lowBytesPerHour)} > ${c.threshold}): analyzing`,
    );
    const when = new Date();
    let space: LiveProcess | undefined;
    const siblings: LiveProcess[] = [];
    let report: WatchReport;
    try {
      space = LiveProcess.open(pid);
      for (const s of siblingWorkers(pid).slice(0, 2)) {
        try {
          siblings.push(LiveProcess.open(s.pid));
        } catch (e) {
          if (!isLeakscopeError(e)) throw e;
        }
      }
      const doc = await analyze(space, {
        traceSeconds: this.o.traceSeconds,
        pauseSeconds: this.o.pause,
        mode: 'auto',
        siblings,
        signal: this.abort.signal,
        dutyCycle: this.o.duty,
      });
      if (this.abort.signal.aborted) {
        log('analysis interrupted: no report written');
        return;
      }
      const dir = createReportDirectory(this.o.reports!, pid, when);
      const concl = doc.conclusion as typeof doc.conclusion & { verdict?: string };
      report = {
        directory: dir,
        pid,
        worker: f.follow.worker,
        timestampSeconds: when.getTime() / 1000,
        trigger: c.series,
        triggerBytesPerHour: c.bytesPerHour,
        verdict: verdictOf(concl.verdict, concl.leak),
        module: concl.module,
        bucketMinBytes: concl.bucket?.minBytes ?? null,
        function: concl.function,
        confidence: concl.confidence ?? null,
        summary: concl.summary,
      };
      writeReport(dir, doc, {
        schema: 'leakscope.watch-trigger/1',
        ...report,
        thresholdBytesPerHour: c.threshold,
        lowBytesPerHour: c.lowBytesPerHour,
      });
      const removed = enforceRetention(this.o.reports!, this.o.keep);
      log(
        `report ${dir}: ${report.summary}${removed.length ? ` (removed ${removed.length} old report${removed.length > 1 ? 's' : ''})` : ''}`,
      );
      this.self.reports++;
    } catch (e) {
      if (this.abort.signal.aborted) return;
      this.self.analysisErrors++;
      const msg = e instanceof Error ? e.message : String(e);
      log(`analysis of pid ${pid} failed: ${msg}`);
      report = {
        directory: '',
        pid,
        worker: f.follow.worker,
        timestampSeconds: when.getTime() / 1000,
        trigger: c.series,
        triggerBytesPerHour: c.bytesPerHour,
        verdict: 'error',
        module: null,
        bucketMinBytes: null,
        function: null,
        confidence: null,
        summary: msg.slice(0, 300),
      };
      if (!isLeakscopeError(e)) process.exitCode = 1;
    } finally {
      space?.close();
      for (const s of siblings) s.close();
    }
    this.lastReport = report;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.abort.signal.aborted) return resolve();
      this.wake = () => {
        clearTimeout(this.timer);
        this.wake = undefined;
        resolve();
      };
      this.timer = setTimeout(() => this.wake?.(), ms);
    });
  }

  private async shutdown(): Promise<void> {
    if (this.analysis) await this.analysis.catch(() => undefined);
    resources.closeAll();
    await new Promise<void>((resolve) => {
      if (!this.server) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    for (const f of this.followed.values()) f.follow.space.close();
    this.followed.clear();
  }
}

/**
 * When the next cycle starts, `tookSeconds` (wall) after this one started: `interval` after it,
 * or later when its censuses' CPU time (`censusCpuSeconds`) would exceed `budget` of one core over
 * that period. The budget is CPU, not wall time: a loaded host makes censuses slower, not costlier.
 */
export function nextCycle(
  interval: number,
  budget: number,
  tookSeconds: number,
  censusCpuSeconds: number,
): { sleepSeconds: number; delayed: boolean; duty: number } {
  const minPeriod = censusCpuSeconds / budget;
  const period = Math.max(interval, minPeriod);
  return {
    sleepSeconds: Math.max(0, period - tookSeconds),
    delayed: minPeriod > interval,
    duty: censusCpuSeconds / Math.max(period, tookSeconds),
  };
}

/** Points kept per growth series (with --window): bounds the watch's memory per worker. */
const WINDOW_MAX_POINTS = 360;

function verdictOf(verdict: string | undefined, leak: boolean): WatchVerdict {
  if (verdict === 'leak' || verdict === 'no-leak' || verdict === 'cannot-tell') return verdict;
  return leak ? 'leak' : 'no-leak';
}

function describeSeries(c: TriggerCandidate): string {
  const s = c.series;
  return s.kind === 'bucket'
    ? `chunk bucket ${s.minBytes} B`
    : s.kind === 'pool'
      ? `${s.owner} pools of ${s.module}`
      : `RSS ${s.category}`;
}

export async function runWatch(pidArgs: string[], o: WatchCliOptions): Promise<void> {
  const w = new Watch(pidArgs, o);
  await w.run();
}

/** Lua tables listed per worker in the metrics (largest retained first); the label cardinality bound. */
const WATCH_LUA_TABLES = 10;

/**
 * The watch's LuaJIT census: gc.total of every Lua VM and the largest tables by path, for a worker
 * that has libluajit loaded (nothing is read otherwise). A static read of the Lua heap, like the
 * glibc census; its CPU counts toward --budget with the rest of the cycle.
 */
function watchLuaCensus(space: AddressSpace, symbolizer: Symbolizer): WatchLua | null {
  if (!luajitLibrary(space)) return null;
  const r = luaHeaps(space, { symbolizer, tables: WATCH_LUA_TABLES });
  if (!r.vms.length) return null;
  const tables = r.vms
    .flatMap((v) => v.tables)
    .sort((a, b) => b.retainedBytes - a.retainedBytes)
    .slice(0, WATCH_LUA_TABLES);
  return {
    vms: r.vms.map((v) => ({ globalState: v.globalState, gcTotalBytes: v.gcTotal })),
    tables: tables.map((t) => ({ path: t.path, retainedBytes: t.retainedBytes })),
  };
}
