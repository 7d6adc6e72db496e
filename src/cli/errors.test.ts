// Bad input: a one-line error on stderr, a distinct exit status, never a stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_CODES } from '../model/errors.js';
import { FIXTURE_BUILD, leakscope, sh, spawnReady } from '../../test/helpers/proc.js';

function assertOneLineError(r: { status: number; stdout: string; stderr: string }, status: number, pattern: RegExp) {
  assert.equal(r.status, status, `exit status (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('missing PID, non-numeric PID, no such process', () => {
  assertOneLineError(leakscope(['mem']), EXIT_CODES.usage, /missing target/);
  assertOneLineError(leakscope(['mem', 'nginx']), EXIT_CODES.usage, /not a process id/);
  assertOneLineError(leakscope(['mem', '999999999']), EXIT_CODES['no-such-process'], /no such process: 999999999/);
});

test('PID of a kernel thread', () => {
  assertOneLineError(leakscope(['mem', '2']), EXIT_CODES['kernel-thread'], /kernel thread/);
});

test('no permission: an unprivileged user reading a root process', async () => {
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  try {
    const r = leakscope(['mem', String(fx.pid)], { asUser: 'nobody' });
    assertOneLineError(r, EXIT_CODES.permission, /not permitted.*root or with CAP_SYS_PTRACE/);
  } finally {
    await fx.stop();
  }
});

test('non-ELF file and truncated core file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-cli-'));
  writeFileSync(join(dir, 'notes.txt'), 'hello\n');
  assertOneLineError(leakscope(['mem', '--core', join(dir, 'notes.txt')]), EXIT_CODES['not-elf'], /not an ELF/);
  assertOneLineError(leakscope(['mem', '--core', join(dir, 'nope')]), EXIT_CODES['not-found'], /no such file/);
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  try {
    assert.equal(sh('gcore', ['-o', join(dir, 'core'), String(fx.pid)]).status, 0);
  } finally {
    await fx.stop();
  }
  const core = join(dir, `core.${fx.pid}`);
  const cut = join(dir, 'cut.core');
  copyFileSync(core, cut);
  truncateSync(cut, Math.floor(statSync(core).size * 0.6));
  assertOneLineError(leakscope(['mem', '--core', cut]), EXIT_CODES.truncated, /truncated/);
  truncateSync(cut, 30);
  assertOneLineError(leakscope(['mem', '--core', cut]), EXIT_CODES.truncated, /ELF header needs 64 bytes/);
});

test('unknown command and unknown option: usage errors', () => {
  assert.equal(leakscope(['frobnicate']).status, EXIT_CODES.usage);
  assert.equal(leakscope(['mem', '--bogus', '1']).status, EXIT_CODES.usage);
});

test('a malformed --baseline (schema only, negative count): exit 8 naming the JSON path', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-cli-'));
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  try {
    const schemaOnly = join(dir, 'schema-only.json');
    writeFileSync(schemaOnly, '{"schema":"leakscope.heap/1"}');
    for (const cmd of [['heap'], ['analyze', '--duration', '0', '--pause', '0']]) {
      assertOneLineError(
        leakscope([...cmd, String(fx.pid), '--baseline', schemaOnly]),
        EXIT_CODES.malformed,
        /schema-only\.json: \$\.target: expected a string, got nothing/,
      );
    }
    const saved = leakscope(['heap', String(fx.pid), '--json']);
    assert.equal(saved.status, 0, saved.stderr);
    const negative = JSON.parse(saved.stdout);
    negative.histogram[0].inUseChunks = -3;
    const negFile = join(dir, 'negative.json');
    writeFileSync(negFile, JSON.stringify(negative));
    assertOneLineError(
      leakscope(['heap', String(fx.pid), '--baseline', negFile]),
      EXIT_CODES.malformed,
      /\$\.histogram\[0\]\.inUseChunks: expected a count/,
    );
    // The unmodified document is a valid baseline.
    writeFileSync(negFile, saved.stdout);
    assert.equal(leakscope(['heap', String(fx.pid), '--baseline', negFile]).status, 0);
  } finally {
    await fx.stop();
  }
});
