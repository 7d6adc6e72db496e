// watchExit against real processes: a child that exits (and one that stays a zombie while unreaped
// counts as exited: pidfd_poll), and one that lives on (no call).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { watchExit } from './exit-watch.js';
import { processAlive } from './leak-tracer.js';

test('watchExit calls back once when the process exits, not before; stop() ends the watch', async () => {
  const short = spawn('sleep', ['0.3'], { stdio: 'ignore' });
  const long = spawn('sleep', ['30'], { stdio: 'ignore' });
  try {
    const started = Date.now();
    let calls = 0;
    let longCalls = 0;
    const exited = new Promise<number>((resolve) => {
      const stop = watchExit(short.pid!, processAlive, () => {
        calls++;
        stop();
        resolve(Date.now() - started);
      });
    });
    const stopLong = watchExit(long.pid!, processAlive, () => longCalls++);
    const ms = await exited;
    assert.ok(ms >= 250, `called after the exit (${ms} ms), not at once`);
    assert.ok(ms < 5000, `called soon after the exit (${ms} ms)`);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(calls, 1);
    assert.equal(longCalls, 0, 'a live process is not reported');
    stopLong();
    stopLong(); // twice is harmless
  } finally {
    long.kill('SIGKILL');
  }
});
