// Live and core-file address spaces against ground truth: the fixture's own printed addresses,
// gdb's view of symbols, and the same bytes read both ways.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreFile, LiveProcess } from './index.js';
import { Symbolizer } from '../symbols/index.js';
import { LeakscopeError } from '../model/errors.js';
import { FIXTURE_BUILD, sh, spawnReady } from '../../test/helpers/proc.js';

function gdbAddress(pid: number, expr: string): number {
  const out = sh('gdb', ['-batch', '-nx', '-p', String(pid), '-ex', `p/x (unsigned long)${expr}`]).stdout;
  const m = /\$1 = (0x[0-9a-f]+)/.exec(out);
  assert.ok(m, `gdb printed ${expr}: ${out.slice(-300)}`);
  return parseInt(m[1]!, 16);
}

test('live process: modules with load bias, symbols by name across modules (gdb agrees), reads', async () => {
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  try {
    const space = LiveProcess.open(fx.pid);
    const mods = space.modules();
    assert.match(mods[0]!.path, /elf-sample$/, 'executable first');
    assert.ok(mods.some((m) => m.path.endsWith('/libc.so.6')));
    const sym = new Symbolizer(mods);
    const g = sym.require('elf_sample_global');
    assert.equal(g.runtimeAddr, parseInt(String(fx.line.global), 16), "matches the fixture's own &elf_sample_global");
    // biome-ignore lint/correctness/noPrecisionLoss: readU64 gives a double; the literal rounds the same way
    assert.equal(space.readU64(g.runtimeAddr), 0x1122334455667788);
    const f = sym.require('elf_sample_function');
    assert.equal(f.runtimeAddr, parseInt(String(fx.line.function), 16));
    assert.deepEqual(
      { fn: sym.frame(f.runtimeAddr + 2).function, mod: sym.frame(f.runtimeAddr + 2).module },
      { fn: 'elf_sample_function', mod: 'elf-sample' },
    );
    // .bss past the file's last page lives in an anonymous mapping: still the executable's
    const bssSym = sym.require('elf_sample_static_buffer');
    const tail = bssSym.runtimeAddr + bssSym.size - 8;
    assert.ok(
      space.mappings().some((m) => !m.path && tail >= m.start && tail < m.end),
      'the buffer ends in an anonymous mapping',
    );
    assert.equal(sym.frame(tail).function, 'elf_sample_static_buffer');
    const ma = sym.require('main_arena', { module: 'libc.so' });
    assert.equal(ma.source, 'debug-file');
    assert.equal(ma.runtimeAddr, gdbAddress(fx.pid, '&main_arena'));
    // unmapped memory: short read, then a typed error
    const buf = Buffer.alloc(16);
    assert.equal(space.readInto(8, buf, 0, 16), 0);
    assert.throws(
      () => space.read(8, 16),
      (e: unknown) => e instanceof LeakscopeError && e.code === 'unreadable',
    );
    space.close();
  } finally {
    await fx.stop();
  }
});

test('Debian nginx binary: ngx_cycle and ngx_create_pool resolve at the addresses gdb gives', async () => {
  // A plain `nginx -t` would exit; run nginx in the foreground on a throwaway config instead.
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-ngx-'));
  const conf = join(dir, 'nginx.conf');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(
    conf,
    `daemon off; master_process off; pid ${dir}/pid; error_log ${dir}/error.log; events {} http { access_log off; server { listen 127.0.0.1:${20000 + (process.pid % 20000)}; } }\n`,
  );
  const { spawn } = await import('node:child_process');
  const child = spawn('/usr/sbin/nginx', ['-p', dir, '-c', conf], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 400));
    const space = LiveProcess.open(child.pid!);
    const sym = new Symbolizer(space.modules());
    const cycle = sym.require('ngx_cycle', { module: 'nginx' });
    assert.equal(cycle.source, 'dynsym');
    assert.equal(cycle.runtimeAddr, gdbAddress(child.pid!, '&ngx_cycle'));
    const pool = sym.require('ngx_create_pool', { module: 'nginx' });
    assert.equal(pool.runtimeAddr, gdbAddress(child.pid!, '&ngx_create_pool'));
    assert.ok(space.readU64(cycle.runtimeAddr) > 0, 'ngx_cycle points at the live cycle');
    space.close();
  } finally {
    child.kill('SIGKILL');
  }
});

test('core file from gcore: same mappings, bytes, symbols and registers as the live process', async () => {
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-core-'));
  const corePath = join(dir, 'core');
  try {
    const r = sh('gcore', ['-o', corePath, String(fx.pid)]);
    assert.equal(r.status, 0, r.stderr);
    const live = LiveProcess.open(fx.pid);
    const core = CoreFile.open(`${corePath}.${fx.pid}`);
    assert.equal(core.pid, fx.pid);
    assert.equal(core.command, 'elf-sample');
    assert.ok(core.threads().length >= 1 && core.threads()[0]!.regs!.rsp > 0);
    const sl = new Symbolizer(live.modules()),
      sc = new Symbolizer(core.modules());
    for (const name of ['elf_sample_global', 'main_arena']) {
      assert.equal(sc.require(name).runtimeAddr, sl.require(name).runtimeAddr, name);
    }
    const g = sc.require('elf_sample_global').runtimeAddr;
    // biome-ignore lint/correctness/noPrecisionLoss: readU64 gives a double; the literal rounds the same way
    assert.equal(core.readU64(g), 0x1122334455667788);
    const heapLive = live.mappings().find((m) => m.path === '[heap]')!;
    const heapCore = core.mappings().find((m) => m.path === '[heap]')!;
    assert.deepEqual([heapCore.start, heapCore.end], [heapLive.start, heapLive.end], '[heap] recognised in the core');
    assert.ok(live.read(heapLive.start, 4096).equals(core.read(heapLive.start, 4096)));
    // read-only code pages are not dumped by gcore: they come from the mapped file
    const fnAddr = sc.require('elf_sample_function').runtimeAddr;
    assert.ok(live.read(fnAddr, 32).equals(core.read(fnAddr, 32)));
    live.close();
    core.close();

    // truncated core: a typed error naming the file
    const cut = join(dir, 'cut.core');
    copyFileSync(`${corePath}.${fx.pid}`, cut);
    truncateSync(cut, Math.floor(statSync(cut).size / 2));
    assert.throws(
      () => CoreFile.open(cut),
      (e: unknown) => e instanceof LeakscopeError && e.code === 'truncated' && e.message.includes(cut),
    );
  } finally {
    await fx.stop();
  }
});
