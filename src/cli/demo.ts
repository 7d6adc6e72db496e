// `leakscope demo`: the whole diagnosis on a real nginx. Builds the leaking demo module shipped in
// the package (demo/nginx-leak-module) against the installed nginx-dev into a cache directory, starts
// the host's nginx binary with two workers on a loopback port, in its own prefix, tied to this
// process's life (PR_SET_PDEATHSIG through `setpriv --pdeathsig TERM`: a SIGKILL of demo makes the
// master stop its workers and exit), drives traffic (healthy requests plus requests that leak pools
// holding 300 KiB each) until the leak is visible, keeps the traffic going while `analyze` runs on
// the largest worker (its sibling is the healthy baseline), writes the HTML report.
// What it needs beyond leakscope's run time (nginx, nginx-dev, a C compiler, make...) is checked
// first; when something is missing it refuses with one line (exit 11). It never installs anything.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync,
  constants,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LeakscopeError } from '../model/errors.js';
import { LiveProcess, nginxWorkers, processInfo } from '../target/index.js';
import { runAnalyze } from './analyze-command.js';
import type { CommandResult } from './commands.js';
import { formatBytes } from '../report/text-format.js';

/** Package root (a checkout or an installed package): this file runs from dist/src/cli/. */
const PACKAGE_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The leaking module's source, shipped with the package. */
const MODULE_DIR = join(PACKAGE_ROOT, 'demo/nginx-leak-module');
const BUILD_SCRIPT = join(PACKAGE_ROOT, 'demo/build-module.sh');
const MODULE_NAME = 'ngx_http_leak_module.so';
const NGX_SRC_DIR = process.env.NGX_SRC_DIR ?? '/usr/share/nginx/src';
/** Stop driving the warm-up once the leaking worker's RSS grew this much. */
const VISIBLE_GROWTH = 64 << 20;

/** An executable on PATH (or an absolute path), else undefined. */
function onPath(name: string): string | undefined {
  const dirs = name.includes('/') ? [''] : (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const d of dirs) {
    const p = d ? join(d, name) : name;
    try {
      accessSync(p, constants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** What the demo needs on the host; refuses with one line (exit 11) naming what is missing. */
function requirements(): { nginx: string; setpriv: string } {
  // Debian's nginx first: nginx-dev (the module's build tree) is built for it.
  const nginx = onPath('/usr/sbin/nginx') ?? onPath('nginx');
  const missing: string[] = [];
  if (!nginx) missing.push('nginx');
  if (!existsSync(join(NGX_SRC_DIR, 'conf_flags'))) missing.push(`nginx-dev (${NGX_SRC_DIR})`);
  if (!onPath('cc') && !onPath('gcc')) missing.push('gcc (cc)');
  for (const tool of ['make', 'bash', 'cp']) if (!onPath(tool)) missing.push(tool);
  const setpriv = onPath('setpriv');
  if (!setpriv) missing.push('setpriv (util-linux)');
  const headers: [string, string][] = [
    ['pcre2.h', 'libpcre2-dev'],
    ['zlib.h', 'zlib1g-dev'],
    ['openssl/ssl.h', 'libssl-dev'],
  ];
  for (const [h, pkg] of headers) if (!existsSync(join('/usr/include', h))) missing.push(pkg);
  if (missing.length) {
    throw new LeakscopeError(
      'not-supported',
      `demo needs nginx, nginx-dev, gcc, make, bash, setpriv and nginx's build headers to build and run its leaking module; ` +
        `missing: ${missing.join(', ')} (Debian: apt-get install nginx nginx-dev gcc make libpcre2-dev zlib1g-dev libssl-dev; leakscope installs nothing itself)`,
    );
  }
  return { nginx: nginx!, setpriv: setpriv! };
}

/** A directory only this user can write, for the built module, or undefined when none is safe. */
function cacheBase(): string | undefined {
  const base = join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'leakscope');
  try {
    mkdirSync(base, { recursive: true, mode: 0o700 });
    const st = lstatSync(base);
    if (!st.isDirectory() || st.uid !== process.geteuid?.() || (st.mode & 0o022) !== 0) return undefined;
    return base;
  } catch {
    return undefined;
  }
}

/**
 * The demo module built against this host's nginx-dev, cached by the module's source, nginx-dev's
 * configure flags and the nginx binary. Returns the .so path and a cleanup for an uncached build.
 */
function buildModule(nginx: string, log: (s: string) => void): { so: string; dispose: () => void } {
  const h = createHash('sha256');
  for (const f of readdirSync(MODULE_DIR).sort()) h.update(f).update(readFileSync(join(MODULE_DIR, f)));
  h.update(readFileSync(join(NGX_SRC_DIR, 'conf_flags')));
  const ns = statSync(nginx);
  h.update(`${ns.dev}:${ns.ino}:${ns.size}:${ns.mtimeMs}`);
  const key = h.digest('hex').slice(0, 16);
  const base = cacheBase();
  // The module's file name is its name in reports (ngx_http_leak_module), so the key names the directory.
  const cached = base && join(base, `demo-module-${key}`, MODULE_NAME);
  if (cached && existsSync(cached)) return { so: cached, dispose: () => undefined };
  const work = mkdtempSync(join(base ?? tmpdir(), 'demo-build-'));
  log(`building the leaking nginx module against nginx-dev in ${work} (first run: ~30 s)`);
  const out = join(work, MODULE_NAME);
  const r = spawnSync('bash', [BUILD_SCRIPT, MODULE_DIR, work, out], {
    encoding: 'utf8',
    env: { ...process.env, NGX_SRC_DIR },
  });
  if (r.status !== 0 || !existsSync(out)) {
    rmSync(work, { recursive: true, force: true });
    throw new LeakscopeError(
      'not-supported',
      `building the demo module failed: ${(r.stderr || r.stdout || String(r.error ?? '')).trim().split('\n').pop()}`,
    );
  }
  if (cached) {
    mkdirSync(join(cached, '..'), { recursive: true, mode: 0o700 });
    renameSync(out, cached);
    rmSync(work, { recursive: true, force: true });
    return { so: cached, dispose: () => undefined };
  }
  return { so: out, dispose: () => rmSync(work, { recursive: true, force: true }) };
}

export async function runDemo(o: { duration: number; html: string }): Promise<CommandResult> {
  const log = (s: string) => process.stderr.write(`demo: ${s}\n`);
  const need = requirements();
  const module = buildModule(need.nginx, log);
  try {
    return await runWithModule(o, need, module.so, log);
  } finally {
    module.dispose();
  }
}

async function runWithModule(
  o: { duration: number; html: string },
  need: { nginx: string; setpriv: string },
  moduleSo: string,
  log: (s: string) => void,
): Promise<CommandResult> {
  const port = await freePort();
  const prefix = mkdtempSync(join(tmpdir(), 'leakscope-demo-'));
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(
    conf,
    `load_module ${moduleSo};
daemon off; master_process on; worker_processes 2;
pid ${prefix}/nginx.pid; error_log ${prefix}/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path ${prefix}/body; proxy_temp_path ${prefix}/proxy; fastcgi_temp_path ${prefix}/fastcgi;
    uwsgi_temp_path ${prefix}/uwsgi; scgi_temp_path ${prefix}/scgi;
    limit_req_zone $binary_remote_addr zone=demo_zone:1m rate=1000000r/s;
    leak_size 300k;
    server {
        listen 127.0.0.1:${port};
        location = /leak-keep { leak_pool keep; }
        location = /leak-drop { leak_pool drop; }
        location = /ok { limit_req zone=demo_zone burst=100000 nodelay; leak_pool none; }
    }
}
`,
  );
  log(`starting nginx on 127.0.0.1:${port} (prefix ${prefix})`);
  // setpriv execs nginx with PR_SET_PDEATHSIG = SIGTERM: if demo dies (even by SIGKILL), the master
  // gets SIGTERM, stops its workers and exits. `daemon off;` keeps the master our child.
  const master = spawn(need.setpriv, ['--pdeathsig', 'TERM', '--', need.nginx, '-p', prefix, '-c', conf], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const cleanup = () => {
    try {
      master.kill('SIGTERM');
    } catch {
      /* gone */
    }
  };
  process.once('exit', cleanup);
  try {
    await waitForPort(port, master, prefix);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const get = (path: string) => httpGet(agent, port, path);

    // Warm up until the leak is visible in one worker's RSS.
    log('driving traffic until the leak is visible');
    const rss0 = workerRss(master.pid!);
    for (let i = 0; i < 2000 && maxGrowth(rss0, workerRss(master.pid!)) < VISIBLE_GROWTH; i++) {
      await Promise.all([get(i % 3 === 0 ? '/leak-drop' : '/leak-keep'), get('/ok'), get('/ok'), get('/ok')]);
    }
    const rss = workerRss(master.pid!);
    const worker = [...rss.entries()].sort((a, b) => b[1] - a[1])[0];
    if (!worker) throw new LeakscopeError('no-such-process', 'the demo nginx has no worker');
    log(`worker ${worker[0]} grew to ${formatBytes(worker[1])} RSS; analyzing it while traffic continues`);

    // Traffic during the analysis: mostly healthy requests, a leak every ~50 ms.
    let stop = false;
    const background = (async () => {
      let i = 0;
      while (!stop) {
        await Promise.all([get(i++ % 2 ? '/leak-keep' : '/leak-drop'), get('/ok'), get('/ok')]);
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    const space = LiveProcess.open(worker[0]);
    let result: Awaited<ReturnType<typeof runAnalyze>>;
    try {
      result = await runAnalyze(space, {
        duration: o.duration,
        pause: 2,
        mode: 'auto',
        sampleBytes: 512 * 1024,
        minAge: 1,
        html: resolve(o.html),
        siblings: true,
        quiet: false,
      });
    } finally {
      stop = true;
      await background;
      space.close();
      agent.destroy();
    }
    return { text: result.text, json: result.json };
  } finally {
    cleanup();
    await new Promise((r) => {
      if (master.exitCode !== null) r(null);
      else master.once('exit', r);
      setTimeout(r, 5000).unref();
    });
    rmSync(prefix, { recursive: true, force: true });
  }
}

function workerRss(master: number): Map<number, number> {
  return new Map(nginxWorkers({ master }).map((w) => [w.pid, processInfo(w.pid)?.rssBytes ?? w.rssBytes]));
}
function maxGrowth(a: Map<number, number>, b: Map<number, number>): number {
  let g = 0;
  for (const [pid, v] of b) g = Math.max(g, v - (a.get(pid) ?? v));
  return g;
}

function httpGet(agent: http.Agent, port: number, path: string): Promise<number> {
  return new Promise((res) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, timeout: 5000 }, (r) => {
      r.resume();
      r.on('end', () => res(r.statusCode ?? 0));
    });
    req.on('error', () => res(0));
    req.on('timeout', () => {
      req.destroy();
      res(0);
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => res(p));
    });
    s.on('error', rej);
  });
}

async function waitForPort(port: number, child: ChildProcess, prefix: string): Promise<void> {
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      let logText = '';
      try {
        logText = readFileSync(join(prefix, 'error.log'), 'utf8').trim().split('\n').pop() ?? '';
      } catch {
        /* none */
      }
      throw new LeakscopeError('io', `nginx exited during start-up: ${logText}`);
    }
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok && nginxWorkers({ master: child.pid }).length >= 2) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new LeakscopeError('io', 'nginx did not start listening within 15 s');
}
