// A real Prometheus server for tests (Debian's `prometheus` package): started with its own config
// on a free loopback port with a temporary storage directory; never the packaged service. Queried
// through its HTTP API (/api/v1/query, /api/v1/query_range). Killed, and its directory removed, on
// stop() or at process exit.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { killQuietly, onExit } from './cleanup.js';
import { freePort } from './nginx.js';

export interface PromSample {
  metric: Record<string, string>;
  value: [number, string];
}
export interface PromRange {
  metric: Record<string, string>;
  values: Array<[number, string]>;
}

export interface PrometheusHandle {
  port: number;
  dir: string;
  /** Instant query at `time` (Unix seconds; default now). Rejects on an API error. */
  query(expr: string, time?: number): Promise<PromSample[]>;
  queryRange(expr: string, start: number, end: number, stepSeconds: number): Promise<PromRange[]>;
  /** Output so far (stdout + stderr). */
  log(): string;
  stop(): Promise<void>;
}

/** The binary, or null when the package is missing (the caller skips, saying why). */
export function prometheusBinary(): string | null {
  const r = spawnSync('prometheus', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? 'prometheus' : null;
}

export function promtoolAvailable(): boolean {
  return spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
}

/** Starts Prometheus scraping `targets` (host:port) every `scrapeSeconds`; resolves when /-/ready answers. */
export async function startPrometheus(
  targets: string[],
  opts: { scrapeSeconds?: number; job?: string } = {},
): Promise<PrometheusHandle> {
  const dir = mkdtempSync(join(os.tmpdir(), 'leakscope-prometheus-'));
  const port = await freePort();
  const scrape = `${opts.scrapeSeconds ?? 1}s`;
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global:',
      `  scrape_interval: ${scrape}`,
      `  evaluation_interval: ${scrape}`,
      'scrape_configs:',
      `  - job_name: ${opts.job ?? 'leakscope'}`,
      `    scrape_interval: ${scrape}`,
      `    scrape_timeout: ${scrape}`,
      '    static_configs:',
      `      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]`,
      '',
    ].join('\n'),
  );
  const child = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const unregister = onExit(() => {
    killQuietly(child.pid, 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      killQuietly(child.pid, 'SIGTERM');
      const t = setTimeout(() => killQuietly(child.pid, 'SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
      unregister();
      rmSync(dir, { recursive: true, force: true });
    })());
  const base = `http://127.0.0.1:${port}`;
  const api = async <T>(path: string, params: Record<string, string>): Promise<T> => {
    const r = await fetch(`${base}${path}?${new URLSearchParams(params)}`);
    const j = (await r.json()) as { status: string; data: { result: T }; error?: string };
    if (j.status !== 'success') throw new Error(`Prometheus ${path} ${JSON.stringify(params)}: ${j.error ?? r.status}`);
    return j.data.result;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`prometheus exited during start-up: ${out}`);
    }
    try {
      if ((await fetch(`${base}/-/ready`)).status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`prometheus not ready within 30 s: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    dir,
    stop,
    log: () => out,
    query: (expr, time) =>
      api<PromSample[]>('/api/v1/query', { query: expr, ...(time !== undefined ? { time: String(time) } : {}) }),
    queryRange: (expr, start, end, step) =>
      api<PromRange[]>('/api/v1/query_range', {
        query: expr,
        start: String(start),
        end: String(end),
        step: `${step}s`,
      }),
  };
}
