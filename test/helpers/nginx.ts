// Starting, driving and stopping a real nginx with the leaking test module
// (demo/nginx-leak-module, built into test/fixtures/build/ngx_http_leak_module.so).
//
// startNginx() writes a fresh prefix (mkdtemp under os.tmpdir()) with nginx.conf, logs/
// and temp dirs, and runs `nginx -p PREFIX/ -c PREFIX/nginx.conf -e PREFIX/logs/error.log`
// with `daemon off; master_process on;`, so the master is our child and the workers are
// its children. Locations (all answer 200 with one JSON line from the module unless
// said otherwise; counts are per worker):
//   /leak-keep   leak_pool keep   (pool stored in ngx_http_leak_sessions[], never freed)
//   /leak-drop   leak_pool drop   (pool pointer dropped, never freed)
//   /ok          leak_pool none   (same work, pool destroyed: no leak)
//   /slow        leak_pool slow   (answers after leak_slow_ms, or ?ms=N)
//   /limited     limit_req zone=leakscope_zone (the nginx shm zone) + leak_pool none
//   /static      return 200 "static\n" (no module code)
//   /__ready     return 204 (start-up probe)
//   /gw/...      gateway mode only: proxy_pass to an upstream nginx (a second nginx
//                process answering `return 200 "upstream\n"` on every path)
// Everything started is killed, and the prefixes removed, on stop() or at process exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { join } from 'node:path';
import { LEAK_MODULE_PATH } from './build.js';
import { killQuietly, onExit } from './cleanup.js';

export interface StartNginxOptions {
  /** worker_processes (default 1). */
  workers?: number;
  /** leak_size at http level (default "300k"). */
  leakSize?: string;
  /** leak_slow_ms at http level (default 1000). */
  slowMs?: number;
  /** leak_touch (default true: the leaked memory is written, hence resident). */
  leakTouch?: boolean;
  /** Load the leak module (default true). Without it the leak locations are omitted. */
  loadModule?: boolean;
  /** Start an upstream nginx and proxy /gw/ to it (default false). */
  gateway?: boolean;
  /** `user` directive; only meaningful when run as root (default: none, so nginx's
   *  default applies: workers run as nobody when the master is root). */
  user?: string;
  /** worker_connections (default 4096). */
  workerConnections?: number;
  /** Extra directives at the main level (e.g. load_module of other dynamic modules). */
  mainExtra?: string;
  /** Extra directives inserted in the http {} and server {} blocks. */
  httpExtra?: string;
  serverExtra?: string;
  /** nginx binary (default $LEAKSCOPE_NGINX or "nginx"). */
  nginxBinary?: string;
  /** Start-up timeout (default 20 s). */
  timeoutMs?: number;
  /** Keep the prefix directory after stop() (default false). */
  keepPrefix?: boolean;
  /** Extra environment of the nginx processes (e.g. LD_PRELOAD of a test shim); default: leakscope's own. */
  env?: Record<string, string>;
}

export interface HttpResult {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** The JSON body every leak-module location answers with (counts per worker). */
export interface LeakModuleBody {
  mode: 'keep' | 'drop' | 'none' | 'slow';
  pid: number;
  /** kept + dropped */
  leaked: number;
  kept: number;
  dropped: number;
  destroyed: number;
  /** /slow requests currently held open */
  inflight: number;
  /** pools currently stored in ngx_http_leak_sessions[] */
  stored: number;
  /** session cleanups that ran (one per destroyed session pool) */
  cleanups: number;
  /** leak_size in bytes (0 for slow) */
  size: number;
}

export interface NginxHandle {
  /** Master process id. */
  pid: number;
  port: number;
  /** Prefix directory (nginx.conf, logs/error.log, nginx.pid, tmp/). */
  prefix: string;
  confPath: string;
  errorLogPath: string;
  child: ChildProcess;
  /** Present in gateway mode. */
  upstream?: { pid: number; port: number; prefix: string };
  /** Current worker process ids (children of the master titled "nginx: worker process"). */
  workerPids(): number[];
  /** http://127.0.0.1:PORT + path */
  url(path: string): string;
  /** One GET on a fresh connection. */
  request(path: string, timeoutMs?: number): Promise<HttpResult>;
  /** Contents of the error log so far. */
  errorLog(): string;
  /** SIGTERM (fast shutdown), SIGKILL after 5 s, then removes the prefix. Idempotent. */
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (bind to port 0, then release it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Child process ids of pid, with their command lines, from /proc. */
function childrenOf(pid: number): { pid: number; cmdline: string }[] {
  const out: { pid: number; cmdline: string }[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      // pid (comm) state ppid ...; comm may hold spaces and parentheses
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) !== pid) continue;
      const cmdline = readFileSync(`/proc/${e}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      out.push({ pid: Number(e), cmdline });
    } catch {
      // raced with an exit
    }
  }
  return out;
}

function workerPidsOf(master: number): number[] {
  return childrenOf(master)
    .filter((c) => c.cmdline.includes('worker process'))
    .map((c) => c.pid)
    .sort((a, b) => a - b);
}

/** One HTTP GET on a fresh connection (no keep-alive). */
export function httpGet(url: string, timeoutMs = 30_000, agent: http.Agent | false = false): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

interface Instance {
  pid: number;
  child: ChildProcess;
  prefix: string;
  confPath: string;
  errorLogPath: string;
  port: number;
  exited: Promise<void>;
  isExited(): boolean;
  stop(): Promise<void>;
}

function makePrefix(tag: string): string {
  const prefix = mkdtempSync(join(os.tmpdir(), `leakscope-${tag}-`));
  // nginx workers may run as another user (nobody) and must traverse the prefix
  chmodSync(prefix, 0o755);
  for (const d of ['logs', 'tmp', 'tmp/body', 'tmp/proxy', 'tmp/fastcgi', 'tmp/uwsgi', 'tmp/scgi'])
    mkdirSync(join(prefix, d), { recursive: true });
  return prefix;
}

function commonMain(prefix: string, o: { workers: number; user?: string; workerConnections: number }): string {
  return [
    o.user ? `user ${o.user};` : '',
    `worker_processes ${o.workers};`,
    'daemon off;',
    'master_process on;',
    `pid ${prefix}/nginx.pid;`,
    `error_log ${prefix}/logs/error.log info;`,
    'worker_rlimit_nofile 65536;',
    `events { worker_connections ${o.workerConnections}; }`,
  ]
    .filter(Boolean)
    .join('\n');
}

function commonHttp(prefix: string): string {
  return [
    'default_type text/plain;',
    'access_log off;',
    `client_body_temp_path ${prefix}/tmp/body;`,
    `proxy_temp_path ${prefix}/tmp/proxy;`,
    `fastcgi_temp_path ${prefix}/tmp/fastcgi;`,
    `uwsgi_temp_path ${prefix}/tmp/uwsgi;`,
    `scgi_temp_path ${prefix}/tmp/scgi;`,
    'keepalive_requests 1000000;',
    'keepalive_timeout 60s;',
  ].join('\n    ');
}

/** Spawns one nginx master with the given config; resolves when /__ready answers and
 *  `workers` workers exist. */
async function launch(
  tag: string,
  prefix: string,
  conf: string,
  port: number,
  workers: number,
  bin: string,
  timeoutMs: number,
  keepPrefix: boolean,
  env?: Record<string, string>,
): Promise<Instance> {
  const confPath = join(prefix, 'nginx.conf');
  const errorLogPath = join(prefix, 'logs', 'error.log');
  writeFileSync(confPath, conf);
  const child = spawn(bin, ['-p', prefix + '/', '-c', confPath, '-e', errorLogPath], {
    stdio: ['ignore', 'ignore', 'pipe'],
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (stderr += d));
  let spawnFailed = false;
  const spawnError = new Promise<Error>((resolve) =>
    child.once('error', (e) => {
      spawnFailed = true;
      resolve(e);
    }),
  );
  let exited = false;
  const exitedP = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const pid = child.pid ?? -1;
  // Synchronous last-resort cleanup at process exit: SIGTERM lets the master stop and
  // reap its workers (a SIGKILLed master leaves orphaned workers); after 3 s whatever
  // is left gets SIGKILL.
  const unregister = onExit(() => {
    if (pid <= 0) return;
    const workers = childrenOf(pid).map((c) => c.pid);
    killQuietly(pid, 'SIGTERM');
    const deadline = Date.now() + 3000;
    const gone = (p: number) => {
      try {
        const st = readFileSync(`/proc/${p}/stat`, 'utf8');
        return st.slice(st.lastIndexOf(')') + 2).startsWith('Z');
      } catch {
        return true;
      }
    };
    while (Date.now() < deadline && !(gone(pid) && workers.every(gone))) sleepSync(20);
    for (const w of workers) killQuietly(w, 'SIGKILL');
    killQuietly(pid, 'SIGKILL');
    if (!keepPrefix) rmSync(prefix, { recursive: true, force: true });
  });
  // do not let a forgotten nginx keep the test process alive
  child.unref();
  (child.stderr as unknown as { unref?(): void }).unref?.();

  const readLog = () => {
    try {
      return readFileSync(errorLogPath, 'utf8');
    } catch {
      return '';
    }
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      const workersNow = pid > 0 ? childrenOf(pid).map((c) => c.pid) : [];
      if (!exited && !spawnFailed && pid > 0) {
        killQuietly(pid, 'SIGTERM');
        const t = setTimeout(() => {
          for (const w of childrenOf(pid)) killQuietly(w.pid, 'SIGKILL');
          killQuietly(pid, 'SIGKILL');
        }, 5000);
        await exitedP;
        clearTimeout(t);
      }
      for (const w of workersNow) killQuietly(w, 'SIGKILL'); // orphans, if any
      unregister();
      if (!keepPrefix) rmSync(prefix, { recursive: true, force: true });
    })();
    return stopping;
  };

  const deadline = Date.now() + timeoutMs;
  let lastErr = '';
  for (;;) {
    if (exited || child.pid === undefined) {
      const err = child.pid === undefined ? String(await spawnError) : '';
      await stop();
      throw new Error(
        `nginx (${tag}) exited during start-up ${err}\nstderr: ${stderr}\nerror.log:\n${readLog()}\nconfig:\n${conf}`,
      );
    }
    if (workerPidsOf(pid).length >= workers) {
      try {
        const r = await httpGet(`http://127.0.0.1:${port}/__ready`, 2000);
        if (r.status === 204) break;
        lastErr = `status ${r.status}`;
      } catch (e) {
        lastErr = String(e);
      }
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`nginx (${tag}) not ready within ${timeoutMs} ms (${lastErr})\nerror.log:\n${readLog()}`);
    }
    await sleep(50);
  }
  return { pid, child, prefix, confPath, errorLogPath, port, exited: exitedP, isExited: () => exited, stop };
}

function upstreamConf(prefix: string, port: number): string {
  return `${commonMain(prefix, { workers: 1, workerConnections: 4096 })}
http {
    ${commonHttp(prefix)}
    server {
        listen 127.0.0.1:${port} backlog=4096;
        location = /__ready { return 204; }
        location / { return 200 "upstream\\n"; }
    }
}
`;
}

function mainConf(
  prefix: string,
  port: number,
  o: Required<
    Pick<StartNginxOptions, 'workers' | 'leakSize' | 'slowMs' | 'leakTouch' | 'loadModule' | 'workerConnections'>
  > &
    StartNginxOptions,
  upstreamPort?: number,
): string {
  const mod = o.loadModule;
  return `${mod ? `load_module ${LEAK_MODULE_PATH};\n` : ''}${o.mainExtra ? `${o.mainExtra}\n` : ''}${commonMain(prefix, o)}
http {
    ${commonHttp(prefix)}
    limit_req_zone $binary_remote_addr zone=leakscope_zone:1m rate=1000000r/s;
${mod ? `    leak_size ${o.leakSize};\n    leak_slow_ms ${o.slowMs};\n    leak_touch ${o.leakTouch ? 'on' : 'off'};\n` : ''}${
  upstreamPort !== undefined
    ? `    upstream leakscope_upstream {\n        server 127.0.0.1:${upstreamPort};\n        keepalive 64;\n    }\n`
    : ''
}${o.httpExtra ? `    ${o.httpExtra}\n` : ''}    server {
        listen 127.0.0.1:${port} backlog=4096;
        location = /__ready { return 204; }
        location = /static { return 200 "static\\n"; }
${
  mod
    ? `        location = /leak-keep { leak_pool keep; }
        location = /leak-drop { leak_pool drop; }
        location = /ok { leak_pool none; }
        location = /slow { leak_pool slow; }
        location = /limited {
            limit_req zone=leakscope_zone burst=100000 nodelay;
            leak_pool none;
        }
`
    : `        location = /limited {
            limit_req zone=leakscope_zone burst=100000 nodelay;
            return 200 "limited\\n";
        }
`
}${
  upstreamPort !== undefined
    ? `        location /gw/ {
            proxy_pass http://leakscope_upstream/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
`
    : ''
}${o.serverExtra ? `        ${o.serverExtra}\n` : ''}    }
}
`;
}

/** Starts nginx (and in gateway mode its upstream). See the file comment for locations. */
export async function startNginx(opts: StartNginxOptions = {}): Promise<NginxHandle> {
  const o = {
    workers: 1,
    leakSize: '300k',
    slowMs: 1000,
    leakTouch: true,
    loadModule: true,
    workerConnections: 4096,
    ...opts,
  };
  const bin = opts.nginxBinary ?? process.env.LEAKSCOPE_NGINX ?? 'nginx';
  const timeoutMs = opts.timeoutMs ?? 20_000;
  const keep = opts.keepPrefix ?? false;

  // a port can be taken between freePort() and nginx's bind: retry a few times
  const withPortRetry = async (f: (port: number) => Promise<Instance>): Promise<Instance> => {
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      try {
        return await f(port);
      } catch (e) {
        if (attempt < 3 && /Address already in use/.test(String(e))) continue;
        throw e;
      }
    }
  };

  let upstream: Instance | undefined;
  if (o.gateway) {
    upstream = await withPortRetry((port) => {
      const prefix = makePrefix('upstream');
      return launch('upstream', prefix, upstreamConf(prefix, port), port, 1, bin, timeoutMs, keep);
    });
  }
  let main: Instance;
  try {
    main = await withPortRetry((port) => {
      const prefix = makePrefix('nginx');
      return launch(
        'main',
        prefix,
        mainConf(prefix, port, o, upstream?.port),
        port,
        o.workers,
        bin,
        timeoutMs,
        keep,
        o.env,
      );
    });
  } catch (e) {
    await upstream?.stop();
    throw e;
  }

  let stopping: Promise<void> | undefined;
  return {
    pid: main.pid,
    port: main.port,
    prefix: main.prefix,
    confPath: main.confPath,
    errorLogPath: main.errorLogPath,
    child: main.child,
    upstream: upstream ? { pid: upstream.pid, port: upstream.port, prefix: upstream.prefix } : undefined,
    workerPids: () => workerPidsOf(main.pid),
    url: (path: string) => `http://127.0.0.1:${main.port}${path.startsWith('/') ? path : '/' + path}`,
    request: (path: string, timeoutMs?: number) =>
      httpGet(`http://127.0.0.1:${main.port}${path.startsWith('/') ? path : '/' + path}`, timeoutMs),
    errorLog: () => {
      try {
        return readFileSync(main.errorLogPath, 'utf8');
      } catch {
        return '';
      }
    },
    stop: () => {
      stopping ??= (async () => {
        await main.stop();
        await upstream?.stop();
      })();
      return stopping;
    },
  };
}

export interface DriveResult {
  /** Requests answered with status 200. */
  ok: number;
  /** Requests answered with another status, or failed. */
  failed: number;
  /** Count per HTTP status (0 = connection error). */
  statuses: Record<number, number>;
  /** The last 200 body (e.g. the module's JSON), if any. */
  lastBody?: string;
  elapsedMs: number;
}

/**
 * Sends n GET requests to path, at most `concurrency` at a time, over keep-alive
 * connections (one per concurrent slot). Resolves when all have completed.
 */
export async function driveRequests(
  handle: Pick<NginxHandle, 'url'>,
  path: string,
  n: number,
  concurrency = 8,
): Promise<DriveResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const url = handle.url(path);
  const statuses: Record<number, number> = {};
  let next = 0;
  let ok = 0;
  let lastBody: string | undefined;
  const start = Date.now();
  const worker = async () => {
    while (next < n) {
      next++;
      try {
        const r = await httpGet(url, 30_000, agent);
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        if (r.status === 200) {
          ok++;
          lastBody = r.body;
        }
      } catch {
        statuses[0] = (statuses[0] ?? 0) + 1;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, n)) }, worker));
  } finally {
    agent.destroy();
  }
  return { ok, failed: n - ok, statuses, lastBody, elapsedMs: Date.now() - start };
}

/**
 * Keeps requests going until the returned function is called: each round sends one GET per path
 * at once (one keep-alive connection each), then pauses `pauseMs`. The stop function waits for
 * the round in flight and resolves to the number of requests sent.
 */
export function steadyTraffic(
  handle: Pick<NginxHandle, 'url'>,
  paths: readonly string[],
  pauseMs: number,
): () => Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Math.max(1, paths.length) });
  let stop = false,
    n = 0;
  const get = (p: string) =>
    new Promise<void>((res) => {
      http
        .get(handle.url(p), { agent }, (r) => {
          r.resume();
          r.on('end', () => res());
        })
        .on('error', () => res());
    });
  const loop = (async () => {
    while (!stop) {
      await Promise.all(paths.map((p) => get(p)));
      n += paths.length;
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  })();
  return async () => {
    stop = true;
    await loop;
    agent.destroy();
    return n;
  };
}

export interface WrkResult {
  requestsPerSec: number;
  totalRequests: number;
  durationSec: number;
  /** "Non-2xx or 3xx responses" */
  non2xx: number;
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  /** wrk's full stdout */
  output: string;
}

/** Parses wrk's text output. Throws when "Requests/sec" is missing. */
export function parseWrkOutput(output: string): WrkResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output);
  if (!rps) throw new Error(`wrk output has no Requests/sec:\n${output}`);
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(output);
  const unit: Record<string, number> = { us: 1e-6, ms: 1e-3, s: 1, m: 60 };
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  return {
    requestsPerSec: Number(rps[1]),
    totalRequests: total ? Number(total[1]) : 0,
    durationSec: total ? Number(total[2]) * unit[total[3]] : 0,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors: se
      ? { connect: +se[1], read: +se[2], write: +se[3], timeout: +se[4] }
      : { connect: 0, read: 0, write: 0, timeout: 0 },
    output,
  };
}

/** Runs `wrk -t T -c C -d Ss URL` and returns everything it reported. T defaults to
 *  min(connections, number of CPUs). Rejects when wrk is missing or fails. */
export function runWrkDetailed(
  url: string,
  seconds: number,
  connections: number,
  threads?: number,
): Promise<WrkResult> {
  const t = Math.max(1, Math.min(connections, threads ?? os.cpus().length));
  return new Promise((resolve, reject) => {
    const child = spawn('wrk', ['-t', String(t), '-c', String(connections), '-d', `${seconds}s`, url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const unregister = onExit(() => killQuietly(child.pid, 'SIGKILL'));
    child.on('error', (e) => {
      unregister();
      reject(new Error(`cannot run wrk (apt-get install wrk): ${e.message}`));
    });
    child.on('close', (code) => {
      unregister();
      if (code !== 0) return reject(new Error(`wrk exited ${code}: ${err}${out}`));
      try {
        resolve(parseWrkOutput(out));
      } catch (e) {
        reject(e);
      }
    });
  });
}

/** Runs wrk against url and resolves with the requests per second it measured. */
export async function runWrk(url: string, seconds: number, connections: number): Promise<number> {
  return (await runWrkDetailed(url, seconds, connections)).requestsPerSec;
}
