// Running the built CLI (bin/leakscope) as a child process, and waiting until a tracing run has
// attached its probes.
import { spawn } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './build.js';

export interface CliRun {
  pid: number;
  done: Promise<{ status: number; stdout: string; stderr: string }>;
}

/** Starts `leakscope ARGS` (stdin closed); `done` resolves with its exit status and output. */
export function runLeakscope(args: string[]): CliRun {
  const c = spawn(process.execPath, [join(REPO_ROOT, 'bin/leakscope'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '',
    stderr = '';
  c.stdout.on('data', (d: Buffer) => (stdout += d));
  c.stderr.on('data', (d: Buffer) => (stderr += d));
  return {
    pid: c.pid!,
    done: new Promise((resolve) => c.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr }))),
  };
}

/** Waits until process `pid` holds probe fds (bpf links / perf events), unchanged for 500 ms (every probe attached). */
export async function probesAttached(pid: number, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  let last = -1,
    since = Date.now();
  while (Date.now() < end) {
    let n = 0;
    try {
      n = readdirSync(`/proc/${pid}/fd`).filter((f) => {
        try {
          return /perf_event|bpf_link/.test(readlinkSync(`/proc/${pid}/fd/${f}`));
        } catch {
          return false;
        }
      }).length;
    } catch {
      /* not yet */
    }
    if (n !== last) {
      last = n;
      since = Date.now();
    } else if (n > 0 && Date.now() - since >= 500) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('leakscope did not attach its probes');
}
