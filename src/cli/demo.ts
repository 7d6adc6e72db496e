// `leakscope demo`: the whole diagnosis on a real nginx. Builds the leaking test module against
// the installed nginx-dev (test/fixtures/nginx-leak-module), starts Debian's nginx with two
// workers on a loopback port, drives traffic (healthy requests plus requests that leak pools
// holding 300 KiB each) until the leak is visible, keeps the traffic going while `analyze`
// runs on the largest worker (its sibling is the healthy baseline), writes the HTML report.

import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LeakscopeError } from '../model/errors.js';
import { LiveProcess, nginxWorkers, processInfo } from '../target/index.js';
import { runAnalyze } from './analyze-command.js';
import type { CommandResult } from './commands.js';
import { formatBytes } from '../report/text-format.js';

/** Repository root: this file runs from dist/src/cli/. */
const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const MODULE_SO = join(REPO, 'test/fixtures/build/ngx_http_leak_module.so');
/** Stop driving the warm-up once the leaking worker's RSS grew this much. */
const VISIBLE_GROWTH = 64 << 20;

export async function runDemo(o: { duration: number; html: string }): Promise<CommandResult> {
  const log = (s: string) => process.stderr.write(`demo: ${s}\n`);
  if (!existsSync('/usr/sbin/nginx')) throw new LeakscopeError('not-found', 'nginx is not installed: run ./scripts/setup.sh (apt-get install nginx nginx-dev)');
  log('building the leaking nginx module against nginx-dev (first run: ~10 s)');
  const mk = spawnSync('make', ['-s', '-C', join(REPO, 'test/fixtures'), 'nginx-module'], { encoding: 'utf8' });
  if (mk.status !== 0 || !existsSync(MODULE_SO)) throw new LeakscopeError('not-found', `building the demo module failed: ${(mk.stderr || mk.stdout).trim().split('\n').pop()}`);

  const port = await freePort();
  const prefix = mkdtempSync(join(tmpdir(), 'leakscope-demo-'));
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, `load_module ${MODULE_SO};
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
`);
  log(`starting nginx on 127.0.0.1:${port} (prefix ${prefix})`);
  const master = spawn('/usr/sbin/nginx', ['-p', prefix, '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  const cleanup = () => { try { master.kill('SIGTERM'); } catch { /* gone */ } };
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
      result = await runAnalyze(space, { duration: o.duration, pause: 2, mode: 'auto', sampleBytes: 512 * 1024, minAge: 1, html: resolve(o.html), siblings: true, quiet: false });
    } finally {
      stop = true;
      await background;
      space.close();
      agent.destroy();
    }
    return { text: result.text, json: result.json };
  } finally {
    cleanup();
    await new Promise((r) => { if (master.exitCode !== null) r(null); else master.once('exit', r); setTimeout(r, 5000).unref(); });
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
    const req = http.get({ host: '127.0.0.1', port, path, agent, timeout: 5000 }, (r) => { r.resume(); r.on('end', () => res(r.statusCode ?? 0)); });
    req.on('error', () => res(0));
    req.on('timeout', () => { req.destroy(); res(0); });
  });
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => res(p)); });
    s.on('error', rej);
  });
}

async function waitForPort(port: number, child: ChildProcess, prefix: string): Promise<void> {
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      let logText = '';
      try { logText = readFileSync(join(prefix, 'error.log'), 'utf8').trim().split('\n').pop() ?? ''; } catch { /* none */ }
      throw new LeakscopeError('io', `nginx exited during start-up: ${logText}`);
    }
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); r(true); });
      s.on('error', () => r(false));
    });
    if (ok && nginxWorkers({ master: child.pid }).length >= 2) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new LeakscopeError('io', 'nginx did not start listening within 15 s');
}
