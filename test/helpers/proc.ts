// Small process helpers for tests: run a command or ./bin/leakscope, spawn a program that prints one JSON line
// when ready (startFixture in fixture.ts is the richer version for the C fixtures' protocol).
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT, FIXTURES_BUILD_DIR } from './build.js';

export const REPO = REPO_ROOT;
export const FIXTURE_BUILD = FIXTURES_BUILD_DIR;

export function sh(
  cmd: string,
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv } = {},
): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    input: opts.input,
    env: opts.env ?? process.env,
    maxBuffer: 64 << 20,
  });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Runs ./bin/leakscope with args; returns status and output. */
export function leakscope(args: string[], opts: { env?: NodeJS.ProcessEnv; asUser?: string } = {}) {
  const bin = join(REPO, 'bin/leakscope');
  if (opts.asUser)
    return sh(
      'setpriv',
      [`--reuid=${opts.asUser}`, '--regid=65534', '--clear-groups', process.execPath, bin, ...args],
      opts,
    );
  return sh(process.execPath, [bin, ...args], opts);
}

export interface Spawned {
  pid: number;
  child: ChildProcess;
  line: Record<string, unknown>;
  stop(): Promise<void>;
}

/** Spawns a program that prints one JSON line when ready and then waits on stdin. */
export function spawnReady(path: string, args: string[] = []): Promise<Spawned> {
  return new Promise((resolve, reject) => {
    const child = spawn(path, args, { stdio: ['pipe', 'pipe', 'inherit'] });
    let buf = '';
    const stop = () =>
      new Promise<void>((res) => {
        if (child.exitCode !== null || child.signalCode) return res();
        child.once('exit', () => res());
        child.stdin!.end();
        setTimeout(() => child.kill('SIGKILL'), 2000).unref();
      });
    child.on('error', reject);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        child.stdout!.removeAllListeners('data');
        child.stdout!.resume();
        try {
          resolve({ pid: child.pid!, child, line: JSON.parse(buf.slice(0, nl)), stop });
        } catch (e) {
          reject(e);
        }
      }
    });
    child.on('exit', (code) => reject(new Error(`${path} exited (${code}) before it was ready`)));
    process.once('exit', () => {
      try {
        child.kill('SIGKILL');
      } catch {
        /* gone */
      }
    });
  });
}
