// ELF parsing against binutils' view of the same files (readelf / nm are the ground truth).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadElf, parseElf } from './index.js';
import { LeakscopeError } from '../../model/errors.js';
import { debugRoots, findDebugFile } from '../../symbols/debug-files.js';
import { FIXTURE_BUILD, sh } from '../../../test/helpers/proc.js';

const NGINX = '/usr/sbin/nginx';
const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';

function readelfBuildId(path: string): string {
  return /Build ID: ([0-9a-f]+)/.exec(sh('readelf', ['-n', path]).stdout)![1]!;
}
function nmValue(path: string, name: string, dynamic = false): number {
  const out = sh('nm', [dynamic ? '-D' : '', path].filter(Boolean)).stdout;
  const m = new RegExp(`^([0-9a-f]+) \\w ${name}$`, 'm').exec(out);
  assert.ok(m, `nm has ${name}`);
  return parseInt(m[1]!, 16);
}

test('Debian nginx: headers, build-id, .dynsym symbols ngx_cycle and ngx_create_pool', () => {
  const elf = loadElf(NGINX);
  assert.equal(elf.header.machine, 62);
  assert.equal(elf.buildId, readelfBuildId(NGINX));
  const cycle = elf.findSymbol('ngx_cycle');
  assert.ok(cycle);
  assert.equal(cycle.type, 'object');
  assert.equal(cycle.value, nmValue(NGINX, 'ngx_cycle', true));
  const pool = elf.findSymbol('ngx_create_pool');
  assert.ok(pool);
  assert.equal(pool.type, 'func');
  assert.equal(pool.value, nmValue(NGINX, 'ngx_create_pool', true));
  assert.equal(elf.symbolAt(pool.value + 1)?.name, 'ngx_create_pool');
  // stripped: no .symtab, only .dynsym
  assert.equal(elf.section('.symtab'), undefined);
  // the file offset of a .text symbol through its PT_LOAD segment
  const off = elf.vaddrToFileOffset(pool.value)!;
  const text = elf.section('.text')!;
  assert.equal(off, pool.value - text.addr + text.offset);
});

test('libc: build-id and .gnu_debuglink agree with readelf; main_arena is in libc6-dbg', () => {
  const elf = loadElf(LIBC);
  assert.equal(elf.buildId, readelfBuildId(LIBC));
  const dl =
    /Separate debug info file: (\S+)/.exec(sh('readelf', ['--debug-dump=links', LIBC]).stdout)?.[1] ??
    /\s+(\S+\.debug)/.exec(sh('readelf', ['-p', '.gnu_debuglink', LIBC]).stdout)?.[1];
  assert.equal(elf.debugLink?.file, dl);
  assert.equal(elf.findSymbol('main_arena'), undefined, 'main_arena is not exported by libc itself');
  const dbg = findDebugFile(elf, LIBC);
  assert.ok(dbg, 'libc6-dbg debug file found by build-id');
  assert.match(dbg.path, /\.build-id\//);
  const ma = dbg.elf.findSymbol('main_arena');
  assert.ok(ma);
  assert.equal(ma.type, 'object');
  assert.equal(ma.size, 2200, 'sizeof(struct malloc_state) in glibc 2.36');
});

test('fixture: symbols match nm; debug file found through .gnu_debuglink and build-id', () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-elf-'));
  const exe = join(dir, 'elf-sample');
  copyFileSync(join(FIXTURE_BUILD, 'elf-sample'), exe);
  for (const name of ['elf_sample_global', 'elf_sample_function', 'elf_sample_static_buffer', 'main']) {
    const s = loadElf(exe, { cache: false }).findSymbol(name);
    assert.ok(s, name);
    assert.equal(s.value, nmValue(exe, name));
  }
  // Split the debug info off, strip, link: the layout Debian's -dbgsym packages use.
  assert.equal(sh('objcopy', ['--only-keep-debug', exe, `${exe}.debug`]).status, 0);
  assert.equal(sh('objcopy', ['--strip-all', `--add-gnu-debuglink=${exe}.debug`, exe]).status, 0);
  const stripped = loadElf(exe, { cache: false });
  assert.equal(stripped.findSymbol('elf_sample_static_buffer'), undefined);
  assert.equal(stripped.debugLink?.file, 'elf-sample.debug');
  const found = findDebugFile(stripped, exe);
  assert.equal(found?.path, `${exe}.debug`);
  assert.equal(
    found!.elf.findSymbol('elf_sample_static_buffer')!.value,
    nmValue(`${exe}.debug`, 'elf_sample_static_buffer'),
  );
  // build-id lookup under a debug root
  const root = join(dir, 'debugroot');
  const id = stripped.buildId!;
  mkdirSync(join(root, '.build-id', id.slice(0, 2)), { recursive: true });
  copyFileSync(`${exe}.debug`, join(root, '.build-id', id.slice(0, 2), `${id.slice(2)}.debug`));
  writeFileSync(`${exe}.debug`, 'gone');
  const saved = debugRoots.splice(0, debugRoots.length, root);
  try {
    const byId = findDebugFile(stripped, exe);
    assert.match(byId!.path, /\.build-id/);
  } finally {
    debugRoots.splice(0, debugRoots.length, ...saved);
  }
});

test('not ELF, truncated headers, truncated section table: typed errors', () => {
  assert.throws(
    () => parseElf(Buffer.from('#!/bin/sh\necho hi\n')),
    (e: unknown) => e instanceof LeakscopeError && e.code === 'not-elf',
  );
  const nginx = readFileSync(NGINX);
  assert.throws(
    () => parseElf(nginx.subarray(0, 40)),
    (e: unknown) => e instanceof LeakscopeError && e.code === 'truncated',
  );
  assert.throws(
    () => parseElf(nginx.subarray(0, nginx.length - 100)),
    (e: unknown) => e instanceof LeakscopeError && e.code === 'truncated',
  );
  assert.throws(
    () => loadElf('/nonexistent/file'),
    (e: unknown) => e instanceof LeakscopeError && e.code === 'not-found',
  );
});

test('random corruption of headers never escapes as a non-Leakscope error', () => {
  const base = readFileSync(join(FIXTURE_BUILD, 'elf-sample'));
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  for (let i = 0; i < 300; i++) {
    const b = Buffer.from(base);
    for (let k = 0; k < 8; k++) b[Math.floor(rnd() * Math.min(b.length, 4096))] = Math.floor(rnd() * 256);
    try {
      const e = parseElf(b);
      e.symbols();
      e.notes();
      void e.buildId;
      void e.debugLink;
    } catch (e) {
      assert.ok(e instanceof LeakscopeError, `unexpected ${(e as Error).stack}`);
    }
  }
});
