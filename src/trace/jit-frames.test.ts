// JIT frames: node --perf-basic-prof writes /tmp/perf-PID.map and keeps frame pointers in JIT
// code: malloc stacks through JavaScript show the JS function names ([jit] frames).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LiveProcess } from '../target/index.js';
import { traceLeaks } from './leak-tracer.js';
import { frameLabel } from '../model/index.js';

const SCRIPT = `const keep = [];
function leakyAllocatorForTest(n) { for (let i = 0; i < n; i++) keep.push(Buffer.allocUnsafeSlow(65536 + i)); }
setInterval(() => leakyAllocatorForTest(20), 50);
process.stdout.write('ready\\n');
`;

test('node --perf-basic-prof: JS function names in malloc stacks, from the perf map', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-jit-'));
  const file = join(dir, 'leak.js');
  writeFileSync(file, SCRIPT);
  // cwd: the temp dir, where V8 may also write its isolate-*-v8.log
  const child = spawn(process.execPath, ['--perf-basic-prof', file], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    await new Promise((r) => setTimeout(r, 1000)); // let the function be compiled and its map entry written
    const space = LiveProcess.open(child.pid!);
    const t = await traceLeaks(space, { mode: 'malloc', durationSeconds: 3, sampleBytes: 0 });
    space.close();
    const jsPaths = t.stacks.filter((s) =>
      s.frames.some((f) => f.module === '[jit]' && /leakyAllocatorForTest/.test(f.function ?? '')),
    );
    assert.ok(
      jsPaths.length > 0,
      `a malloc stack through the JS function: ${t.stacks
        .slice(0, 3)
        .map((s) => s.frames.map(frameLabel).join(' <- '))
        .join('\n')}`,
    );
    const bytes = jsPaths.reduce((a, s) => a + s.bytes, 0);
    assert.ok(bytes >= 65536 * 20, `${bytes} bytes kept by the JS function`);
    assert.ok(t.durationSeconds < 10, `the window stays about its length (${t.durationSeconds} s)`);
  } finally {
    child.kill('SIGKILL');
    rmSync(`/tmp/perf-${child.pid}.map`, { force: true });
  }
});

/** The pid of `pid`'s first child (unshare -f's forked child), once it exists. */
async function firstChild(pid: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    try {
      const c = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0];
      if (c) return Number(c);
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no child of ${pid}`);
}

test('node in its own pid namespace: its perf map is named by its pid there (NSpid), not the host pid', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-jit-'));
  const file = join(dir, 'leak.js');
  writeFileSync(file, SCRIPT);
  const unshare = spawn('unshare', ['-p', '-f', '--mount-proc', process.execPath, '--perf-basic-prof', file], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let nsPid = 0,
    hostPid = 0;
  try {
    await new Promise<void>((resolve) => unshare.stdout!.once('data', () => resolve()));
    hostPid = await firstChild(unshare.pid!);
    await new Promise((r) => setTimeout(r, 1000)); // let the function be compiled and its map entry written
    const space = LiveProcess.open(hostPid);
    nsPid = space.nsPid ?? 0;
    assert.ok(nsPid > 0 && nsPid !== hostPid, `node's pid in its namespace (${nsPid}) is not the host's (${hostPid})`);
    assert.ok(existsSync(`/proc/${hostPid}/root/tmp/perf-${nsPid}.map`), 'node wrote its map under its own pid');
    assert.ok(!existsSync(`/tmp/perf-${hostPid}.map`), 'no map under the host pid');
    const t = await traceLeaks(space, { mode: 'malloc', durationSeconds: 3, sampleBytes: 0 });
    space.close();
    const jsPaths = t.stacks.filter((s) =>
      s.frames.some((f) => f.module === '[jit]' && /leakyAllocatorForTest/.test(f.function ?? '')),
    );
    assert.ok(jsPaths.length > 0, `a malloc stack through the JS function, named from /tmp/perf-${nsPid}.map`);
  } finally {
    // node is the namespace's init: killing it ends the namespace, then unshare exits
    if (hostPid) process.kill(hostPid, 'SIGKILL');
    unshare.kill('SIGKILL');
    if (nsPid) rmSync(`/tmp/perf-${nsPid}.map`, { force: true });
    rmSync(dir, { recursive: true, force: true });
  }
});
