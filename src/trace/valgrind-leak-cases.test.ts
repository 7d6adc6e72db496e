// valgrind's memcheck leak-cases.c (Debian's valgrind source, fetched and built -g by
// `make -C test/fixtures valgrind-tests`): traced from its first instruction of main to its
// exit, every call site that leaves memory behind is its own folded line with file:line, and the
// call sites are exactly those of valgrind's own loss records (--show-leak-kinds=all).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LiveProcess } from '../target/index.js';
import { traceLeaks } from './leak-tracer.js';
import { toFolded } from '../formats/folded/folded.js';

const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));

// Stops the program before main (after libc is mapped), so the tracer can attach first.
const PAUSE_AT_START = `#include <signal.h>
__attribute__((constructor)) static void pause_at_start(void) { raise(SIGSTOP); }
`;

function state(pid: number): string {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return s[s.lastIndexOf(')') + 2]!;
  } catch {
    return 'gone';
  }
}

test('valgrind leak-cases.c (-g): each leaking call site its own folded line with file:line, the same sites as valgrind', async () => {
  execFileSync('make', ['-s', '-C', FIXTURES, 'valgrind-tests'], { stdio: 'inherit' });
  const bin = join(FIXTURES, 'build/valgrind/leak-cases');
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-vg-'));
  writeFileSync(join(dir, 'pause.c'), PAUSE_AT_START);
  execFileSync('gcc', ['-shared', '-fPIC', '-O2', '-o', join(dir, 'pause.so'), join(dir, 'pause.c')]);

  // valgrind's own loss records: the caller lines in leak-cases.c of every record
  const vg = spawnSync('valgrind', ['--leak-check=full', '--show-leak-kinds=all', bin], { encoding: 'utf8' });
  // each loss record: "by 0x...: mk (leak-cases.c:52)" then "by 0x...: f (leak-cases.c:LINE)"
  const vgRecords: number[] = [];
  for (const rec of vg.stderr.split(/\n==\d+== \n/)) {
    if (!/in loss record/.test(rec)) continue;
    const m = /by 0x[0-9A-F]+: f \(leak-cases\.c:(\d+)\)/.exec(rec);
    if (m) vgRecords.push(Number(m[1]));
  }
  const vgSites = new Set(vgRecords);
  assert.ok(vgRecords.length >= 10, `valgrind's records: ${vgRecords}`);

  const child = spawn(bin, [], { env: { ...process.env, LD_PRELOAD: join(dir, 'pause.so') }, stdio: 'ignore' });
  const pid = child.pid!;
  try {
    for (let i = 0; i < 200 && state(pid) !== 'T'; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(state(pid), 'T', 'stopped before main');
    const space = LiveProcess.open(pid);
    const trace = traceLeaks(space, { mode: 'malloc', durationSeconds: 30, sampleBytes: 0 }); // attached when this returns
    process.kill(pid, 'SIGCONT');
    const t = await trace;
    space.close();
    assert.ok(t.targetExitedAfterSeconds !== undefined, 'the exit ended the trace');
    assert.equal(t.complete, true);
    const folded = toFolded(t.stacks, 'bytes')
      .trim()
      .split('\n')
      .filter((l) => /;mk:\d+/.test(l));
    const ours: number[] = [];
    for (const l of folded) {
      const m =
        /;main:\d+(?:\+0x[0-9a-f]+)?;f:(\d+)(?:\+0x[0-9a-f]+)?;mk:52(?:\+0x[0-9a-f]+)?;malloc(?::\d+)? (\d+)$/.exec(l);
      assert.ok(m, `a call path main:LINE -> f:LINE -> mk:52 -> malloc: ${l}`);
      ours.push(Number(m[1]));
    }
    console.log(`# target exited after ${t.targetExitedAfterSeconds} s`);
    console.log(
      `# call sites (f's lines): ours ${ours.sort((a, b) => a - b)}; valgrind ${vgRecords.sort((a, b) => a - b)}`,
    );
    // one folded line per valgrind loss record (two calls on one line are told apart), same lines
    assert.deepEqual(
      ours.sort((a, b) => a - b),
      vgRecords.sort((a, b) => a - b),
    );
    assert.deepEqual(new Set(ours), vgSites);
  } finally {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});
