// Hostile --core / --exe / --baseline files (issue 11): every size, offset and address is checked
// against the file before use; non-regular files are refused before they are read. Each case ends
// with one line on stderr and its exit code (6 not a core / not an executable, 7 truncated,
// 8 malformed: not a regular file, too large, out-of-range values), within a generous timeout that
// must not fire, with bounded RSS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  truncateSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_CODES } from '../model/errors.js';
import { FIXTURE_BUILD, REPO, spawnReady } from '../../test/helpers/proc.js';

const BIN = join(REPO, 'bin/leakscope');
const HANG_MS = 60_000;
const RSS_LIMIT_KIB = 600 * 1024;
const PT_LOAD = 1,
  PT_NOTE = 4,
  ET_CORE = 4;

interface Run {
  status: number | null;
  stderr: string;
  stdout: string;
  maxRssKiB: number;
  timedOut: boolean;
  ms: number;
}

function run(args: string[]): Run {
  const t0 = Date.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'LEAKSCOPE_MAXRSS=%M', process.execPath, BIN, ...args], {
    encoding: 'utf8',
    timeout: HANG_MS,
    killSignal: 'SIGKILL',
    maxBuffer: 64 << 20,
  });
  let stderr = r.stderr ?? '';
  const m = /LEAKSCOPE_MAXRSS=(\d+)\s*$/.exec(stderr);
  if (m) stderr = stderr.slice(0, m.index);
  stderr = stderr
    .split('\n')
    .filter((l) => !/^Command exited with non-zero status/.test(l))
    .join('\n');
  return {
    status: r.status,
    stdout: r.stdout ?? '',
    stderr,
    maxRssKiB: m ? Number(m[1]) : -1,
    timedOut: r.error !== undefined || r.signal === 'SIGKILL',
    ms: Date.now() - t0,
  };
}

function assertBounded(r: Run, what: string): void {
  console.log(`figure: ${what}: ${r.ms} ms, max RSS ${r.maxRssKiB} KiB, exit ${r.status}`);
  assert.equal(r.timedOut, false, `${what}: finished (took ${r.ms} ms; a hang is killed after ${HANG_MS} ms)`);
  assert.ok(
    r.maxRssKiB > 0 && r.maxRssKiB < RSS_LIMIT_KIB,
    `${what}: max RSS ${r.maxRssKiB} KiB < ${RSS_LIMIT_KIB} KiB`,
  );
  assert.doesNotMatch(r.stderr, /\n\s+at |internal error/, `${what}: no stack trace, no internal error: ${r.stderr}`);
}

function assertOneLine(r: Run, status: number, pattern: RegExp, what: string): void {
  assertBounded(r, what);
  assert.equal(r.status, status, `${what}: exit status (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `${what}: one line: ${r.stderr}`);
  assert.match(lines[0]!, pattern, what);
}

/** Elf64_Ehdr of a little-endian x86-64 file: e_phoff 64, e_phentsize 56 (System V gABI, elf.h). */
function elfHeader(type: number, phnum: number): Buffer {
  const h = Buffer.alloc(64);
  h.writeUInt32BE(0x7f454c46, 0);
  h[4] = 2;
  h[5] = 1;
  h[6] = 1;
  h.writeUInt16LE(type, 16);
  h.writeUInt16LE(62, 18);
  h.writeUInt32LE(1, 20);
  h.writeBigUInt64LE(64n, 32);
  h.writeUInt16LE(64, 52);
  h.writeUInt16LE(56, 54);
  h.writeUInt16LE(phnum, 56);
  return h;
}

/** Elf64_Phdr: type, flags, offset, vaddr, paddr, filesz, memsz, align. */
function phdr(type: number, offset: bigint, vaddr: bigint, filesz: bigint, memsz: bigint): Buffer {
  const p = Buffer.alloc(56);
  p.writeUInt32LE(type, 0);
  p.writeUInt32LE(4, 4);
  p.writeBigUInt64LE(offset, 8);
  p.writeBigUInt64LE(vaddr, 16);
  p.writeBigUInt64LE(vaddr, 24);
  p.writeBigUInt64LE(filesz, 32);
  p.writeBigUInt64LE(memsz, 40);
  p.writeBigUInt64LE(4096n, 48);
  return p;
}

/** Writes header + program headers, then extends the file (sparse, zeros) to `size` bytes. */
function writeCore(path: string, parts: Buffer[], size?: number): void {
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, Buffer.concat(parts));
  } finally {
    closeSync(fd);
  }
  if (size !== undefined) truncateSync(path, size);
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'leakscope-core-hostile-'));
  chmodSync(d, 0o755);
  return d;
}

/** gcore of elf-sample run from `exe` (a copy the caller may later replace). */
async function gcoreOf(exe: string, dir: string): Promise<string> {
  const fx = await spawnReady(exe);
  try {
    const r = spawnSync('gcore', ['-o', join(dir, 'core'), String(fx.pid)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  } finally {
    await fx.stop();
  }
  return join(dir, `core.${fx.pid}`);
}

test('a 175 MiB all-zero note segment: refused (exit 8) without reading it', () => {
  const dir = tempDir();
  try {
    const core = join(dir, 'zero-notes.core');
    const notes = 175n << 20n;
    writeCore(core, [elfHeader(ET_CORE, 1), phdr(PT_NOTE, 120n, 0n, notes, 0n)], 120 + Number(notes));
    assertOneLine(
      run(['mem', '--core', core]),
      EXIT_CODES.malformed,
      /note segments hold 175\.0 MiB, more than the 64\.0 MiB/,
      'zero notes',
    );
    // Under the cap: 60 MiB of empty notes (5 M of them) are walked one at a time, not collected.
    const core60 = join(dir, 'zero-notes-60.core');
    writeCore(core60, [elfHeader(ET_CORE, 1), phdr(PT_NOTE, 120n, 0n, 60n << 20n, 0n)], 120 + (60 << 20));
    const r = run(['mem', '--core', core60]);
    assertBounded(r, '60 MiB of empty notes');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('segment address 2^64-1, filesz > memsz, segment past the end of the file: exit 8 / 7', () => {
  const dir = tempDir();
  try {
    const top = join(dir, 'top.core');
    writeCore(top, [elfHeader(ET_CORE, 1), phdr(PT_LOAD, 0n, 0xffff_ffff_ffff_ffffn, 0n, 4096n)]);
    assertOneLine(
      run(['mem', '--core', top]),
      EXIT_CODES.malformed,
      /ends past the 64-bit address space/,
      'address 2^64-1',
    );
    const fat = join(dir, 'fat.core');
    writeCore(fat, [elfHeader(ET_CORE, 1), phdr(PT_LOAD, 0n, 0x400000n, 8192n, 4096n)], 8192);
    assertOneLine(
      run(['mem', '--core', fat]),
      EXIT_CODES.malformed,
      /8192 file bytes for 4096 bytes of memory/,
      'filesz > memsz',
    );
    const past = join(dir, 'past.core');
    writeCore(past, [elfHeader(ET_CORE, 1), phdr(PT_LOAD, 1n << 40n, 0x400000n, 4096n, 4096n)]);
    assertOneLine(run(['mem', '--core', past]), EXIT_CODES.truncated, /truncated core/, 'segment past the end');
    const phdrs = join(dir, 'phdrs.core');
    writeCore(phdrs, [elfHeader(ET_CORE, 60000)]);
    assertOneLine(
      run(['mem', '--core', phdrs]),
      EXIT_CODES.truncated,
      /program headers end at/,
      'program headers past the end',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('FIFO, directory, /dev/zero, an executable and a core in the wrong place: one line each', async () => {
  const dir = tempDir();
  try {
    const fifo = join(dir, 'fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const sub = join(dir, 'a-directory');
    mkdirSync(sub);
    const core = await gcoreOf(join(FIXTURE_BUILD, 'elf-sample'), dir);
    assertOneLine(
      run(['mem', '--core', fifo]),
      EXIT_CODES.malformed,
      /not a regular file \(a FIFO\)/,
      'FIFO as --core',
    );
    assertOneLine(
      run(['mem', '--core', sub]),
      EXIT_CODES.malformed,
      /not a regular file \(a directory\)/,
      'directory as --core',
    );
    assertOneLine(
      run(['mem', '--core', '/dev/zero']),
      EXIT_CODES.malformed,
      /not a regular file \(a character device\)/,
      '/dev/zero as --core',
    );
    assertOneLine(
      run(['mem', '--core', join(FIXTURE_BUILD, 'elf-sample')]),
      EXIT_CODES['not-elf'],
      /not a core file \(ELF e_type 3/,
      'executable as --core',
    );
    assertOneLine(
      run(['mem', '--core', core, '--exe', fifo]),
      EXIT_CODES.malformed,
      /not a regular file \(a FIFO\)/,
      'FIFO as --exe',
    );
    assertOneLine(
      run(['mem', '--core', core, '--exe', '/dev/zero']),
      EXIT_CODES.malformed,
      /not a regular file \(a character device\)/,
      '/dev/zero as --exe',
    );
    assertOneLine(
      run(['mem', '--core', core, '--exe', sub]),
      EXIT_CODES.malformed,
      /a directory/,
      'directory as --exe',
    );
    assertOneLine(
      run(['mem', '--core', core, '--exe', core]),
      EXIT_CODES['not-elf'],
      /a core file, not an executable/,
      'core as --exe',
    );
    // A baseline document is a regular file within its cap.
    const big = join(dir, 'big.json');
    writeCore(big, [Buffer.from('{')], 65 << 20);
    for (const [path, pattern] of [
      [fifo, /a FIFO/],
      ['/dev/zero', /a character device/],
      [sub, /a directory/],
      [big, /65\.0 MiB, more than the 64\.0 MiB/],
    ] as const) {
      assertOneLine(
        run(['heap', '--core', core, '--baseline', path]),
        EXIT_CODES.malformed,
        pattern,
        `--baseline ${path}`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a file named inside the core (NT_FILE) that became a FIFO: not opened, the rest analysed', async () => {
  const dir = tempDir();
  try {
    const exe = join(dir, 'elf-sample-copy');
    copyFileSync(join(FIXTURE_BUILD, 'elf-sample'), exe);
    const core = await gcoreOf(exe, dir);
    unlinkSync(exe);
    assert.equal(spawnSync('mkfifo', [exe]).status, 0);
    const r = run(['heap', '--core', core, '--json']);
    assertBounded(r, 'heap --core with a FIFO in NT_FILE');
    assert.equal(r.status, 0, r.stderr);
    assert.ok(
      Array.isArray((JSON.parse(r.stdout) as { histogram: unknown[] }).histogram),
      'the heap census still comes from libc',
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
