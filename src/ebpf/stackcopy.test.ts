// The pattern the leak tracer needs: copy up to 8 KiB of user stack at a uprobe, with the
// length clamped to a stack end passed in a map (probe_read_user is all-or-nothing, so a
// copy crossing the end of [stack] would fail). Proves the verifier accepts the bounded
// register length and that the bytes are the process's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import {
  R0,
  R1,
  R2,
  R3,
  R6,
  R7,
  R8,
  R9,
  R10,
  add64,
  call,
  exit,
  ja,
  jeq,
  jgt,
  jsle,
  label,
  ldMap,
  ldx,
  loadReg,
  mov64,
  readUserPrefix,
  st,
  stx,
  sub64,
  type Body,
} from './asm.js';
import { checkEbpfSupport } from './features.js';
import { BpfMap, PerCpuArrayMap, RingBufMap, u32, u64, u64n } from './maps.js';
import type { RingRecord } from './ringbuf.js';
import { loadProgram } from './prog.js';
import { openRingBuffer } from './ringbuf.js';
import { TargetProcess, countInto, fixturePath, sumCounter } from './test-support.js';
import { attachUprobe } from './uprobe.js';

const failed = checkEbpfSupport().filter((c) => !c.ok);
const skip = failed.length ? `eBPF unavailable: ${failed.map((c) => c.detail).join('; ')}` : false;
const MAX_STACK = 8192;

/**
 * Record: { u64 src; u64 requested; u64 copied; u8 data[8192] }. src = ctx->REG; requested =
 * min(8192, cfg[0] - src); copied = what readUserPrefix managed.
 */
function copyProgram(
  srcReg: 'rsp' | 'rdi',
  cfg: BpfMap<number, number>,
  rb: RingBufMap,
  drops: PerCpuArrayMap<bigint>,
): Body {
  return [
    mov64(R6, R1), //                             r6 = ctx
    loadReg(R7, R6, srcReg), //                   r7 = src (sp)
    st('w', R10, -4, 0),
    ldMap(R1, cfg),
    mov64(R2, R10),
    add64(R2, -4),
    call('map_lookup_elem'),
    jeq(R0, 0, 'out'),
    ldx('dw', R8, R0, 0), //                      r8 = end (cfg[0])
    sub64(R8, R7), //                             r8 = end - src
    jsle(R8, 0, 'out'), //                        src at or above the end: nothing to copy
    jgt(R8, MAX_STACK, 'clamp'),
    ja('reserve'),
    label('clamp'),
    mov64(R8, MAX_STACK), //                      r8 in [1, 8192]
    label('reserve'),
    ldMap(R1, rb),
    mov64(R2, 24 + MAX_STACK),
    mov64(R3, 0),
    call('ringbuf_reserve'),
    jeq(R0, 0, 'full'),
    mov64(R9, R0),
    stx('dw', R9, 0, R7),
    stx('dw', R9, 8, R8),
    readUserPrefix(R9, 24, R7, R8, MAX_STACK), // r8 = bytes copied
    stx('dw', R9, 16, R8),
    mov64(R1, R9),
    mov64(R2, 0),
    call('ringbuf_submit'),
    ja('out'),
    label('full'),
    countInto(drops),
    label('out'),
    mov64(R0, 0),
    exit(),
  ];
}
interface Copy {
  src: number;
  requested: number;
  copied: number;
  data: Uint8Array;
}
const decodeCopy = (r: RingRecord): Copy => ({
  src: r.u64n(0),
  requested: r.u64n(8),
  copied: r.u64n(16),
  data: r.copy().subarray(24),
});

function readMem(pid: number, addr: number, len: number): Buffer {
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    const b = Buffer.alloc(len);
    readSync(fd, b, 0, len, addr);
    return b;
  } finally {
    closeSync(fd);
  }
}

test('stack copy: clamped to the stack end from a map, bytes match the process', { skip }, async () => {
  const target = await TargetProcess.start();
  const cfg = new BpfMap({ name: 'cfg', type: 'array', key: u32, value: u64n, maxEntries: 1 });
  const rb = new RingBufMap('stacks', 1 << 20);
  const drops = new PerCpuArrayMap({ name: 'drops', value: u64, maxEntries: 1 });
  const prog = loadProgram({ name: 'stack_copy', body: copyProgram('rsp', cfg, rb, drops) });
  const records: Copy[] = [];
  const reader = openRingBuffer(rb, (r) => records.push(decodeCopy(r)));
  try {
    const stackLine = readFileSync(`/proc/${target.pid}/maps`, 'utf8')
      .split('\n')
      .find((l) => l.endsWith('[stack]'))!;
    const stackEnd = Number.parseInt(stackLine.split(' ')[0]!.split('-')[1]!, 16);
    const link = attachUprobe(prog, { binaryPath: fixturePath(), symbol: 'ebpf_target_add' }, { pid: target.pid });
    // 1. The real stack end.
    cfg.update(0, stackEnd);
    await target.run('add 3 1');
    reader.drain();
    // The outer frames (libc start-up, the top of main's caller) do not change while main
    // waits in fgets: the top 256 bytes of the copy must match the process's memory now.
    const r0 = records[0]!;
    const liveTop = readMem(target.pid, r0.src + r0.copied - 256, 256);
    // 2. An end 100 bytes above sp: clamped to exactly 100 bytes.
    const sp0 = records[0]!.src;
    cfg.update(0, sp0 + 100);
    await target.run('add 1 1');
    reader.drain();
    link.detach();
    assert.equal(sumCounter(drops), 0);
    assert.equal(records.length, 4);
    const first = records[0]!;
    assert.equal(first.requested, Math.min(MAX_STACK, stackEnd - first.src));
    // Either everything, or (when the copy reaches the main thread's never-touched gap below
    // its environment) a prefix ending at a page boundary, of at least sp's own page.
    const ownPage = 4096 - (first.src % 4096);
    assert.ok(
      first.copied === first.requested || ((first.src + first.copied) % 4096 === 0 && first.copied >= ownPage),
      `copied ${first.copied} of ${first.requested} from sp 0x${first.src.toString(16)}`,
    );
    assert.deepEqual(Buffer.from(first.data.subarray(first.copied - 256, first.copied)), liveTop);
    // *(sp) at entry is the return address into the fixture's text.
    const ret = Number(Buffer.from(first.data).readBigUInt64LE(0));
    const text = readFileSync(`/proc/${target.pid}/maps`, 'utf8')
      .split('\n')
      .filter((l) => l.endsWith(fixturePath()) && l.split(' ')[1]!.includes('x'))
      .map((l) =>
        l
          .split(' ')[0]!
          .split('-')
          .map((h) => Number.parseInt(h, 16)),
      );
    assert.ok(
      text.some(([lo, hi]) => ret >= lo! && ret < hi!),
      'return address inside ebpf-target text',
    );
    const clamped = records[3]!;
    assert.equal(clamped.src, sp0, 'same call depth, same sp');
    assert.deepEqual([clamped.requested, clamped.copied], [100, 100]);
  } finally {
    reader.close();
    await target.quit();
    prog.close();
    rb.close();
    drops.close();
    cfg.close();
  }
});

test('stack copy: an absent page truncates the copy at a page boundary instead of losing it', { skip }, async () => {
  const target = await TargetProcess.start();
  const cfg = new BpfMap({ name: 'cfg', type: 'array', key: u32, value: u64n, maxEntries: 1 });
  const rb = new RingBufMap('holes', 1 << 20);
  const drops = new PerCpuArrayMap({ name: 'drops', value: u64, maxEntries: 1 });
  const prog = loadProgram({ name: 'hole_copy', body: copyProgram('rdi', cfg, rb, drops) });
  const records: Copy[] = [];
  const reader = openRingBuffer(rb, (r) => records.push(decodeCopy(r)));
  try {
    cfg.update(0, 2 ** 47); // no end: request 8192 bytes from map + 4000 (pages 0, 1, 2)
    const link = attachUprobe(prog, { binaryPath: fixturePath(), symbol: 'ebpf_target_payload' }, { pid: target.pid });
    // K present pages -> expected bytes: 3 pages touched: all 8192; 2: to the end of page 1
    // (96 + 4096); 1: to the end of page 0 (96); 0: nothing.
    const expected = new Map([
      [3, 8192],
      [2, 4192],
      [1, 96],
      [0, 0],
    ]);
    for (const [k, want] of expected) {
      const base = Number(await target.run(`holes ${k}`));
      reader.drain();
      const r = records.at(-1)!;
      assert.equal(r.src, base + 4000);
      assert.equal(r.requested, 8192);
      assert.equal(r.copied, want, `${k} present pages`);
      for (let j = 0; j < r.copied; j++) {
        const addr = 4000 + j;
        if (r.data[j] !== ((Math.floor(addr / 4096) * 16 + (addr % 4096)) & 0xff))
          assert.fail(`${k} pages: byte ${j} differs`);
      }
    }
    link.detach();
    assert.equal(records.length, 4);
  } finally {
    reader.close();
    await target.quit();
    prog.close();
    rb.close();
    drops.close();
    cfg.close();
  }
});
