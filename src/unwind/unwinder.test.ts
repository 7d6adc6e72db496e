// Unwinds real stacks captured by test/fixtures/c/unwind-capture.c (gcc -O2 -fomit-frame-pointer) and
// checks them against the fixture's own ground truth: the expected function chain, and glibc's
// backtrace() (libgcc's unwinder) taken from level_c / thread_c, whose return addresses past that
// frame must equal ours exactly.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unwindStack, x86RegistersFromPtRegs, type ModuleResolver, type X86Registers } from './unwinder.js';
import { CfiCache } from './cfi-cache.js';
import { ModuleMap } from './module-map.js';
import {
  runCaptureFixture,
  modulesFromMaps,
  symbolizer,
  matchChain,
  debugFileByBuildId,
  FIXTURE_SRC,
  readCapture,
  parseMaps,
  type Capture,
} from './test-capture.js';
import { readFileSync } from 'node:fs';

const run = runCaptureFixture();
const mods = modulesFromMaps(run.maps);
const sym = symbolizer(mods);
const libc = mods.find((m) => /\/libc\.so\.6$/.test(m.path));
const haveLibcDebug = !!debugFileByBuildId(libc?.buildId);

function unwind(c: Capture, resolver: ModuleResolver, opts = {}) {
  return unwindStack(c.regs, c.stack, c.stackAddr, resolver, opts);
}

for (const which of ['main', 'thread', 'signal'] as const) {
  test(`${which} thread: CFI unwind matches the fixture's chain and libgcc's backtrace()`, () => {
    const c = run[which];
    const res = unwind(c, new ModuleMap(mods, new CfiCache()));
    const frames = res.pcs.map(sym);
    const names = frames.map((f) => `${f.module}:${f.name}`).join(' ');
    assert.equal(res.stopReason, 'outermost', `${res.stopReason} ${res.stopDetail}; got ${names}`);
    assert.equal(res.pcs[0], c.regs.rip);
    assert.ok(matchChain(frames, c.chain), `chain ${c.chain.join(' ')} vs ${names}`);
    // backtrace()[0] is a different call site in the same function (level_c / thread_c).
    assert.equal(sym(c.backtrace[0]!).name, frames[1]!.name);
    assert.deepEqual(
      res.pcs.slice(2).map((x) => x.toString(16)),
      c.backtrace.slice(1).map((x) => x.toString(16)),
    );
    // The signal frame's caller is the interrupted pc (exact), every other pc a return address.
    const sigIdx = which === 'signal' ? frames.findIndex((f) => f.module === 'libc.so.6') + 1 : -1;
    assert.deepEqual(
      res.sources,
      res.pcs.map((_, i) => (i === 0 ? 'registers' : i === sigIdx ? 'signal-frame' : 'cfi')),
    );
    for (let i = 1; i < res.sps.length; i++) assert.ok(res.sps[i]! > res.sps[i - 1]!, 'sp increases');
    if (!haveLibcDebug) {
      console.log('# libc6-dbg not installed: libc frame names not checked');
      return;
    }
    // Aliases (qsort_r / __qsort_r, clone3 / __clone3) depend on which symbol the ELF layer prefers.
    const libcNames = frames.filter((f) => f.module === 'libc.so.6').map((f) => f.name?.replace(/^_+/, ''));
    if (which === 'main') {
      assert.ok(libcNames.includes('msort_with_tmp.part.0') || libcNames.includes('msort_with_tmp'), names);
      assert.ok(libcNames.includes('qsort_r'), names);
      assert.deepEqual(libcNames.slice(-2), ['libc_start_call_main', 'libc_start_main'], names);
    } else if (which === 'thread') {
      assert.deepEqual(libcNames, ['start_thread', 'clone3'], names);
    } else {
      assert.equal(frames[sigIdx - 1]!.name, '__restore_rt', names);
      assert.deepEqual(libcNames.slice(-2), ['libc_start_call_main', 'libc_start_main'], names);
    }
  });
}

test('a short stack copy stops with stack-end, keeping the frames it could unwind', () => {
  const c = run.main;
  const full = unwind(c, new ModuleMap(mods, new CfiCache()));
  // Cut the copy just below the slot holding frame 5's return address.
  const cut = full.sps[5]! - 8 - c.stackAddr;
  const res = unwindStack(c.regs, c.stack.subarray(0, cut), c.stackAddr, new ModuleMap(mods, new CfiCache()));
  assert.equal(res.stopReason, 'stack-end');
  assert.deepEqual(res.pcs, full.pcs.slice(0, 5));
});

test('maxDepth bounds the walk', () => {
  const res = unwind(run.main, new ModuleMap(mods, new CfiCache()), { maxDepth: 3 });
  assert.equal(res.stopReason, 'max-depth');
  assert.equal(res.pcs.length, 3);
});

test('uretprobe trampoline return addresses are replaced by the recorded ones, innermost first', () => {
  const c = run.main;
  const mm = new ModuleMap(mods, new CfiCache());
  const full = unwind(c, mm);
  const tramp = { start: 0x7fffff000000, end: 0x7fffff001000 }; // a [uprobes] page: in no module
  const stack = new Uint8Array(c.stack);
  const dv = new DataView(stack.buffer);
  const overrides: number[] = [];
  for (const i of [2, 5, 9]) {
    // frames whose return-address slots hold the trampoline
    const slot = full.sps[i]! - 8 - c.stackAddr;
    assert.equal(Number(dv.getBigUint64(slot, true)), full.pcs[i]);
    dv.setBigUint64(slot, BigInt(tramp.start), true);
    overrides.push(full.pcs[i]!);
  }
  const res = unwindStack(c.regs, stack, c.stackAddr, mm, {
    trampolineRange: tramp,
    returnAddressOverrides: overrides,
  });
  assert.deepEqual(res.pcs, full.pcs);
  assert.equal(res.stopReason, 'outermost');
  const short = unwindStack(c.regs, stack, c.stackAddr, mm, {
    trampolineRange: tramp,
    returnAddressOverrides: overrides.slice(0, 2),
  });
  assert.equal(short.stopReason, 'trampoline-unresolved');
  assert.deepEqual(short.pcs, full.pcs.slice(0, 9));
});

test('CfiCache loads each module once and ModuleMap shares it', () => {
  const cache = new CfiCache();
  const mm = new ModuleMap(mods, cache);
  unwind(run.main, mm);
  unwind(run.thread, mm);
  const used = new Set(
    unwind(run.main, mm)
      .pcs.concat(unwind(run.thread, mm).pcs)
      .map((pc) => sym(pc).module),
  );
  assert.equal(cache.size, used.size);
  assert.equal(cache.get(libc!.hostPath, { buildId: libc!.buildId }).problems.length, 0);
});

test('frame-pointer fallback follows a validated rbp chain when no FDE covers the pc', () => {
  // Synthetic stack at 0x7ffe00001000: frame A's rbp -> B -> C (rbp 0 ends the chain).
  const base = 0x7ffe00001000;
  const bytes = new Uint8Array(256);
  const dv = new DataView(bytes.buffer);
  const put = (addr: number, v: number) => dv.setBigUint64(addr - base, BigInt(v), true);
  put(base + 0x40, base + 0x80);
  put(base + 0x48, 0x401111); // frame 1: saved rbp, return address
  put(base + 0x80, base + 0xc0);
  put(base + 0x88, 0x402222);
  put(base + 0xc0, 0);
  put(base + 0xc8, 0x403333);
  const none: ModuleResolver = { moduleAt: () => undefined };
  const regs: X86Registers = { rip: 0x400000, rsp: base, rbp: base + 0x40 };
  const res = unwindStack(regs, bytes, base, none);
  assert.deepEqual(res.pcs, [0x400000, 0x401111, 0x402222, 0x403333]);
  assert.deepEqual(res.sources, ['registers', 'frame-pointer', 'frame-pointer', 'frame-pointer']);
  assert.equal(res.stopReason, 'no-module');
  // rbp below sp (not a frame pointer) or outside the copy: no fallback.
  assert.deepEqual(unwindStack({ ...regs, rbp: base - 0x100 }, bytes, base, none).pcs, [0x400000]);
  assert.deepEqual(unwindStack({ ...regs, rbp: base + 0x1000 }, bytes, base, none).pcs, [0x400000]);
  assert.deepEqual(unwindStack(regs, bytes, base, none, { framePointerFallback: false }).pcs, [0x400000]);
  // A chain that loops back down stops instead of repeating.
  put(base + 0x80, base + 0x40);
  const loop = unwindStack(regs, bytes, base, none);
  assert.deepEqual(loop.pcs, [0x400000, 0x401111, 0x402222]);
});

test('.debug_frame only: the same program built with -fno-asynchronous-unwind-tables unwinds through .debug_frame', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-df-'));
  const bin = join(dir, 'unwind-capture-df');
  const cc = spawnSync(
    'gcc',
    [
      '-O2',
      '-fomit-frame-pointer',
      '-fno-inline-small-functions',
      '-pthread',
      '-g',
      '-fno-asynchronous-unwind-tables',
      '-o',
      bin,
      FIXTURE_SRC,
    ],
    { stdio: 'inherit' },
  );
  if (cc.error || cc.status !== 0) {
    t.skip('gcc not available');
    return;
  }
  const out = mkdtempSync(join(tmpdir(), 'leakscope-df-out-'));
  execFileSync(bin, [out]);
  const maps = parseMaps(readFileSync(join(out, 'maps'), 'utf8'));
  const dmods = modulesFromMaps(maps);
  const dsym = symbolizer(dmods);
  const cache = new CfiCache();
  const exe = dmods.find((m) => m.path === bin)!;
  const cfi = cache.get(exe.hostPath, { buildId: exe.buildId });
  assert.ok(cfi.debugFrame, 'binary has .debug_frame');
  for (const name of ['main', 'thread', 'signal'] as const) {
    const c = readCapture(out, name);
    const res = unwindStack(c.regs, c.stack, c.stackAddr, new ModuleMap(dmods, cache));
    const frames = res.pcs.map(dsym);
    assert.ok(
      matchChain(frames, c.chain),
      `${c.chain.join(' ')} vs ${frames.map((f) => f.name).join(' ')} (${res.stopReason} ${res.stopDetail})`,
    );
    assert.equal(res.stopReason, 'outermost');
  }
  // The program's own functions are found only in .debug_frame.
  const leaf = readCapture(out, 'main').regs.rip - exe.loadBias;
  assert.equal(cfi.findFde(leaf)?.section.kind, 'debug_frame');
});

// Cached unwinds (the CfiCache and the JIT warm) give the first unwind's result exactly; their
// speed (goal < 50 µs each) is measured by `node dist/bench/run.js unwind` (bench/unwind.ts).
test('cached unwinds of the captures repeat the first unwind exactly', () => {
  const mm = new ModuleMap(mods, new CfiCache());
  for (const [label, c, len] of [
    ['main 8 KiB', run.main, 8192],
    ['main full', run.main, run.main.stack.byteLength],
    ['thread', run.thread, run.thread.stack.byteLength],
    ['signal frame', run.signal, run.signal.stack.byteLength],
  ] as const) {
    const stack = c.stack.subarray(0, Math.min(len, c.stack.byteLength));
    const first = unwindStack(c.regs, stack, c.stackAddr, mm);
    assert.ok(first.pcs.length > 1, `${label}: ${first.pcs.length} frames (${first.stopReason})`);
    for (let i = 0; i < 200; i++) {
      const again = unwindStack(c.regs, stack, c.stackAddr, mm);
      assert.deepEqual(again.pcs, first.pcs, `${label}: unwind ${i + 2}`);
      assert.deepEqual(again.sps, first.sps, `${label}: unwind ${i + 2}`);
      assert.equal(again.stopReason, first.stopReason, label);
    }
    // a fresh cache (cold) gives the same as the warm one
    assert.deepEqual(unwindStack(c.regs, stack, c.stackAddr, new ModuleMap(mods, new CfiCache())).pcs, first.pcs, label);
  }
});

test('x86RegistersFromPtRegs reads the pt_regs layout a uprobe sees', () => {
  const b = new Uint8Array(168);
  const dv = new DataView(b.buffer);
  const offs = {
    r15: 0,
    r14: 8,
    r13: 16,
    r12: 24,
    rbp: 32,
    rbx: 40,
    r11: 48,
    r10: 56,
    r9: 64,
    r8: 72,
    rax: 80,
    rcx: 88,
    rdx: 96,
    rsi: 104,
    rdi: 112,
    rip: 128,
    rsp: 152,
  };
  for (const o of Object.values(offs)) dv.setBigUint64(o, BigInt(0x7f0000000000 + o), true);
  const regs = x86RegistersFromPtRegs(b);
  for (const [k, o] of Object.entries(offs)) assert.equal(regs[k as keyof X86Registers], 0x7f0000000000 + o, k);
});
