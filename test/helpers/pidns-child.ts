// Child of src/trace/pid-namespace.test.ts, run inside its own pid namespace (`unshare -p -f --mount-proc`):
// starts malloc-leaker, runs `leakscope leaks PID --sample-bytes 0 --json FILE` on it (PID as this
// namespace numbers it), waits until the trace's probes are in (free's first bytes change: a
// uprobe's int3), has the leaker run one batch, and prints one JSON line: the leaker's own report
// (ground truth), the trace document, the PIDs seen here and leakscope's exit status.
// Usage: node dist/test/helpers/pidns-child.js
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFixture, type MallocLeakerReport } from './fixture.js';
import { REPO } from './proc.js';
import { LiveProcess } from '../../src/target/index.js';
import { Symbolizer } from '../../src/symbols/index.js';

function bytesAt(pid: number, addr: number, n: number): Buffer {
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    const b = Buffer.alloc(n);
    readSync(fd, b, 0, n, addr);
    return b;
  } finally {
    closeSync(fd);
  }
}

const dir = mkdtempSync(join(tmpdir(), 'leakscope-pidns-'));
const out = join(dir, 'leaks.json');
const fx = await startFixture('malloc-leaker');
try {
  const space = LiveProcess.open(fx.pid);
  const free = new Symbolizer(space.modules()).require('free', { module: 'libc.so' }).runtimeAddr;
  space.close();
  const before = bytesAt(fx.pid, free, 32);
  const child = spawn(
    process.execPath,
    [join(REPO, 'bin/leakscope'), 'leaks', String(fx.pid), '--duration', '8', '--sample-bytes', '0', `--json=${out}`],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const t0 = Date.now();
  let attached = false;
  while (!attached && Date.now() - t0 < 30_000 && child.exitCode === null) {
    await new Promise((r) => setTimeout(r, 50));
    attached = !bytesAt(fx.pid, free, 32).equals(before);
  }
  const report = attached ? await fx.command<MallocLeakerReport>('go 300 1000', 60_000) : undefined;
  const status = await exited;
  let trace: unknown;
  try {
    trace = JSON.parse(readFileSync(out, 'utf8'));
  } catch {
    trace = undefined;
  }
  process.stdout.write(
    JSON.stringify({ pid: fx.pid, selfPid: process.pid, attached, report, trace, status, stderr }) + '\n',
  );
} finally {
  await fx.stop();
  rmSync(dir, { recursive: true, force: true });
}
