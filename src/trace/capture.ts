// What a probe captures for the unwinder: registers and a copy of the top of the user stack,
// written into one ring-buffer record (as `perf record --call-graph dwarf` does, offline unwinding).
//
// Record layout (little-endian, bytes; only header + stackLen bytes reach the ring):
//   0  u16 kind            EventKind
//   2  u16 luaBytes        bytes of the Lua block after the stack (lua-stack.ts), 0 = none
//   4  u32 stackLen        bytes of stack copied (0..STACK_BYTES)
//   8  u64 pidTgid         tgid << 32 | tid
//  16  u64 timeNs          bpf_ktime_get_ns() (CLOCK_MONOTONIC)
//  24  u64 size            requested bytes (malloc family) or 0
//  32  u64 address         result pointer when known at capture (pool mode), else 0
//  40  u64 aux             per-kind: realloc's old pointer, posix_memalign's memptr
//  48  u64 rip, rsp, rbp, rbx, r12, r13, r14, r15   (pt_regs at the probe)
// 112  stack bytes [rsp, rsp + stackLen)
//
// probe_read_user is all-or-nothing, and a copy that crosses the end of the stack mapping (or
// an absent page) fails (shared/reference/ebpf.md), so the copy keeps the longest readable
// page-aligned prefix (asm.readUserPrefix). STACK_BYTES = 8 KiB as perf's default.
// The Lua block, when the probe ran inside a Lua VM, follows the stack bytes at
// HEADER_BYTES + stackLen (its length in the header, so only what was written reaches the ring).

import * as A from '../ebpf/asm.js';
import type { Body } from '../ebpf/asm.js';
import type { RingRecord } from '../ebpf/ringbuf.js';
import { LUA_BLOCK_BYTES } from './lua-stack.js';

export const EventKind = { mallocSample: 1, poolCreate: 2, luaGrowth: 3 } as const;
export const HEADER_BYTES = 112;
export const STACK_BYTES = 8192;
/** Scratch record size: header and the largest stack copy. */
export const RECORD_BYTES = HEADER_BYTES + STACK_BYTES;
/** The per-CPU scratch value (and the large stash value): a record with the largest Lua block. */
export const SCRATCH_BYTES = RECORD_BYTES + LUA_BLOCK_BYTES;

export const CAPTURED_REGS = ['rip', 'rsp', 'rbp', 'rbx', 'r12', 'r13', 'r14', 'r15'] as const;
export type CapturedRegs = Record<(typeof CAPTURED_REGS)[number], number>;

/**
 * Fills the header registers and the stack copy of the record in `rec` (a scratch record), from
 * the pt_regs in `ctx`: the longest readable prefix of at most `stackBytes` (4096 or 8192) from rsp
 * (asm.readUserPrefix: whole, to the end of the next page, or rsp's own page). Uses r1-r5, r7, r8
 * (r7/r8 are clobbered); `rec` and `ctx` must be callee-saved registers other than r7/r8.
 */
export function captureRegsAndStack(
  rec: A.Reg,
  ctx: A.Reg,
  uniq: string,
  stackBytes: 4096 | 8192 = STACK_BYTES,
  stackTop?: StackTopLookup,
): Body {
  const done = `stack_top_${uniq}`;
  return [
    CAPTURED_REGS.map((r, i) => [A.loadReg(A.R1, ctx, r), A.stx('dw', rec, 48 + i * 8, A.R1)]),
    A.loadReg(A.R7, ctx, 'rsp'),
    A.mov64(A.R8, stackBytes),
    // A thread whose stack top is known copies only [rsp, top): the unwinder needs no more, and
    // records shrink from 8 KiB to the depth of the call path (see StackTopLookup).
    stackTop
      ? [
          A.ldMap(A.R1, stackTop.map),
          A.mov64(A.R2, A.FP),
          A.add64(A.R2, stackTop.keyOffset),
          A.call('map_lookup_elem'),
          A.jeq(A.R0, 0, done),
          A.ldx('dw', A.R1, A.R0, 0),
          A.jle(A.R1, A.R7, done), // top <= rsp: another stack (sigaltstack, coroutine): copy all
          A.sub64(A.R1, A.R7),
          A.jge(A.R1, stackBytes, done),
          A.mov64(A.R8, A.R1),
          A.label(done),
        ]
      : [],
    A.readUserPrefix(rec, HEADER_BYTES, A.R7, A.R8, stackBytes, `capture_${uniq}`), // r8 = bytes copied
    A.stx('w', rec, 4, A.R8),
  ];
}

/**
 * Per-thread stack tops learnt by the user side (hash pid_tgid -> u64 address just above the
 * outermost frame the unwinder needed, plus a margin). `keyOffset`: FP offset of the u64 pid_tgid.
 */
export interface StackTopLookup {
  map: A.MapRef;
  keyOffset: number;
}

export interface CapturedEvent {
  kind: number;
  tgid: number;
  tid: number;
  timeNs: number;
  size: number;
  address: number;
  aux: number;
  regs: CapturedRegs;
  /** Copy of the stack from regs.rsp. */
  stack: Uint8Array;
  /** The Lua block (lua-stack.ts decodeLuaBlock), a copy; absent when the probe ran outside Lua. */
  lua?: Uint8Array;
}

/**
 * Decodes a record. The stack is a zero-copy view valid only during the ring-buffer callback
 * (unwind it there); pass `copy` to keep it.
 */
export function decodeCapture(r: RingRecord, copy = false): CapturedEvent {
  const regs = {} as CapturedRegs;
  CAPTURED_REGS.forEach((name, i) => {
    regs[name] = r.u64n(48 + i * 8);
  });
  const stackLen = Math.min(r.u32(4), STACK_BYTES, Math.max(0, r.length - HEADER_BYTES));
  const word0 = r.u32(0);
  const luaBytes = Math.min(word0 >>> 16, LUA_BLOCK_BYTES);
  const luaAt = r.offset + HEADER_BYTES + stackLen;
  const lua =
    luaBytes > 0 && HEADER_BYTES + stackLen + luaBytes <= r.length ? r.u8.slice(luaAt, luaAt + luaBytes) : undefined;
  return {
    kind: word0 & 0xffff,
    ...(lua ? { lua } : {}),
    tgid: r.u32(12),
    tid: r.u32(8),
    timeNs: r.u64n(16),
    size: r.u64n(24),
    address: r.u64n(32),
    aux: r.u64n(40),
    regs,
    stack: copy
      ? r.u8.slice(r.offset + HEADER_BYTES, r.offset + HEADER_BYTES + stackLen)
      : r.u8.subarray(r.offset + HEADER_BYTES, r.offset + HEADER_BYTES + stackLen),
  };
}
