// `leakscope demo`: its nginx never outlives it (SIGKILL mid-run leaves no master or worker), and a
// host without what the demo needs gets one line and exit 11 naming it, with nothing installed.
// System test: real Debian nginx, the demo module built by demo itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { EXIT_CODES } from '../model/errors.js';
import { REPO } from '../../test/helpers/proc.js';
import { killQuietly, onExit } from '../../test/helpers/cleanup.js';

/** pid is gone (or a zombie waiting for init to reap it). */
function gone(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return st.slice(st.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

/** Live processes whose command line mentions TEXT. */
function processesMentioning(text: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((p) => {
      try {
        return !gone(p) && readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(text);
      } catch {
        return false;
      }
    });
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

test('SIGKILL of `leakscope demo` mid-run leaves no nginx of its prefix running', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-demo-kill-'));
  const demo = spawn(
    process.execPath,
    [join(REPO, 'bin/leakscope'), 'demo', '--duration', '60', '--html', join(dir, 'r.html')],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  onExit(() => killQuietly(demo.pid!, 'SIGKILL'));
  let prefix = '';
  let master = 0;
  let workers: number[] = [];
  try {
    let err = '';
    await new Promise<void>((resolve, reject) => {
      demo.stderr!.setEncoding('utf8');
      demo.stderr!.on('data', (d: string) => {
        err += d;
        const m = /starting nginx on \S+ \(prefix (\S+)\)/.exec(err);
        if (m) prefix = m[1]!;
        // traffic is flowing: nginx is up with its workers
        if (prefix && /driving traffic/.test(err)) resolve();
      });
      demo.once('exit', (code) => reject(new Error(`demo exited (${code}) before nginx ran: ${err}`)));
    });
    const masters = processesMentioning(prefix);
    assert.equal(masters.length, 1, `one master of prefix ${prefix}: ${masters}`);
    master = masters[0]!;
    workers = childrenOf(master);
    assert.ok(workers.length >= 2, `workers of ${master}: ${workers}`);

    demo.kill('SIGKILL');
    await new Promise((r) => demo.once('exit', r));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && ![master, ...workers].every(gone)) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      [master, ...workers].filter((p) => !gone(p)),
      [],
      'master and workers exited after demo was killed',
    );
    assert.deepEqual(processesMentioning(prefix), [], `no process of prefix ${prefix} remains`);
  } finally {
    killQuietly(demo.pid!, 'SIGKILL');
    for (const p of [master, ...workers]) if (p && !gone(p)) killQuietly(p, 'SIGKILL');
    if (prefix.includes('leakscope-demo-')) rmSync(prefix, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});

test('demo on a host without a compiler or nginx-dev: one line naming what it needs, exit 11, nothing installed', () => {
  // PATH: node only (a directory holding a link to it), no gcc / cc / make.
  const bin = mkdtempSync(join(tmpdir(), 'leakscope-demo-path-'));
  try {
    symlinkSync(process.execPath, join(bin, 'node'));
    for (const env of [
      { PATH: bin },
      { PATH: `${bin}:${dirname(process.execPath)}:/usr/bin:/bin`, NGX_SRC_DIR: '/nonexistent/nginx-src' },
    ]) {
      const r = spawnSync(process.execPath, [join(REPO, 'bin/leakscope'), 'demo', '--html', join(bin, 'r.html')], {
        encoding: 'utf8',
        env: { ...env, HOME: bin },
      });
      assert.equal(r.status, EXIT_CODES['not-supported'], r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(
        lines[0]!,
        /^leakscope: demo needs nginx, nginx-dev, gcc, make.*missing: .*apt-get install nginx nginx-dev gcc make/,
      );
      if (env.PATH === bin) assert.match(lines[0]!, /missing: .*gcc \(cc\).*make/);
      else assert.match(lines[0]!, /missing: nginx-dev \(\/nonexistent\/nginx-src\)/);
      assert.equal(existsSync(join(bin, 'r.html')), false, 'no report');
    }
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});
