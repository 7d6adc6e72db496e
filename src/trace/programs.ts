// The BPF programs of the leak tracers, as readable assembler. One entry program per allocation
// function convention, one return program, one for free, one for pool creation.
//
// Maps (created by the tracer):
//   events       ring buffer of capture records (capture.ts)
//   pending      hash  pid_tgid -> {timeNs, size, aux}: a sampled call between entry and return
//   outstanding  hash  pointer  -> {timeNs, size, pidTgid}: sampled allocations not yet freed
//   stats        per-CPU array of u64 counters (Stat)
//   scratch      per-CPU array, one SCRATCH_BYTES value: the record is built there, then copied into
//                the ring with ringbuf_output at its real length (header + stack actually copied),
//                so the ring holds ~3x more records than with a fixed-size reserve. (A task preempted
//                mid-program on a PREEMPT kernel could see its scratch reused: one garbled record.)
//
// Sampling (decided at entry, before any other work): an allocation of `size` bytes is sampled
// with probability p = min(1, size / sampleBytes) using bpf_get_prandom_u32; the user side scales
// each sample by 1/p (bytes: max(size, sampleBytes)), which is unbiased for totals per stack.

import * as A from '../ebpf/asm.js';
import type { Body, MapRef, Reg } from '../ebpf/asm.js';
import { R0, R1, R2, R3, R6, R7, R9, FP } from '../ebpf/asm.js';
import { EventKind, HEADER_BYTES, STACK_BYTES, captureRegsAndStack } from './capture.js';
import { LUA_BLOCK_BYTES, luaFramesBody } from './lua-stack.js';
import type { LuaWalkConfig } from './lua-stack.js';

export const Stat = {
  entryHits: 0,
  sampled: 1,
  returnHits: 2,
  freeHits: 3,
  freeMatched: 4,
  ringFull: 5,
  outstandingFull: 6,
  poolHits: 7,
  nested: 8,
  unsampled: 9,
  /** Requested bytes of the allocations whose record the full ring refused (their stacks are lost, not their bytes). */
  ringFullBytes: 10,
  /** Requested bytes of the sampled allocations (exact mode: of all of them). */
  sampledBytes: 11,
} as const;
export const STAT_COUNT = 12;
/** ringbuf_output flag (uapi bpf.h BPF_RB_NO_WAKEUP). */
const BPF_RB_NO_WAKEUP = 1;
/** ringbuf_output flag (uapi bpf.h BPF_RB_FORCE_WAKEUP). */
const BPF_RB_FORCE_WAKEUP = 2;
/** ringbuf_query flag (uapi bpf.h BPF_RB_AVAIL_DATA): bytes committed and not yet consumed. */
const BPF_RB_AVAIL_DATA = 0;

/** How an allocation function takes its size, and where its result comes from. */
export type AllocConvention =
  | 'size0' // malloc(size), valloc(size), pvalloc(size)
  | 'calloc' // calloc(n, size)
  | 'realloc' // realloc(old, size): old is freed
  | 'size1' // memalign(align, size), aligned_alloc(align, size)
  | 'posix_memalign' // posix_memalign(&ptr, align, size): result stored through arg 0, rax = 0 on success
  | 'lj_alloc' // LuaJIT lj_alloc_f(msp, ptr, osize, nsize): nsize 0 frees ptr, ptr != 0 reallocates it
  | 'int_memalign'; // glibc-internal _int_memalign(arena, align, size): what every memalign-family call with alignment > 16 ends in

export interface TracerMaps {
  events: MapRef;
  pending: MapRef;
  outstanding: MapRef;
  stats: MapRef;
  scratch: MapRef;
  stackTops?: MapRef;
  /**
   * Exact mode: the capture record of each outstanding allocation kept in the kernel, keyed by
   * {pidTgid, timeNs} (the outstanding value's identity), deleted by free: churn never reaches the
   * ring; only what is still outstanding at the end is read and unwound. Small: header + up to
   * STASH_SMALL_STACK bytes of stack; large: the whole record. A full stash falls back to the ring.
   */
  stashSmall?: MapRef;
  stashLarge?: MapRef;
}

/** Stack bytes a small stash value holds (thread stacks with a known top need ~0.5 KiB). */
export const STASH_SMALL_STACK = 1024;
export const STASH_SMALL_BYTES = HEADER_BYTES + STASH_SMALL_STACK;

// BPF stack slots (offsets from FP).
const K_TID = -8; // u64 pid_tgid key
const V_TS = -32,
  V_SIZE = -24,
  V_AUX = -16; // pending / outstanding value {timeNs, size, aux|pidTgid}
const K_PTR = -40; // u64 pointer key
const K_STAT = -44; // u32 stat index
const K_STASH = -64; // {u64 pidTgid, u64 timeNs} stash key (-64..-49)

/** stats[stat] += 1. */
function statInc(m: TracerMaps, stat: number, uniq: string): Body {
  return statUpdate(m, stat, `stat_skip_${uniq}`, [A.add64(R1, 1)]);
}

/** stats[stat] += the u64 at fp[off]. */
function statAddSlot(m: TracerMaps, stat: number, off: number, uniq: string): Body {
  return statUpdate(m, stat, `stat_add_skip_${uniq}`, [A.ldx('dw', R2, FP, off), A.add64(R1, R2)]);
}

/** r0 = &stats[stat]; r1 = *r0; `add` (which updates r1); *r0 = r1. Skipped when the lookup fails. */
function statUpdate(m: TracerMaps, stat: number, skip: string, add: Body): Body {
  return [
    A.st('w', FP, K_STAT, stat),
    A.ldMap(R1, m.stats),
    A.mov64(R2, FP),
    A.add64(R2, K_STAT),
    A.call('map_lookup_elem'),
    A.jeq(R0, 0, skip),
    A.ldx('dw', R1, R0, 0),
    ...add,
    A.stx('dw', R0, 0, R1),
    A.label(skip),
  ];
}

/** r9 = &scratch[0] (this CPU's record buffer), or goto out. Uses K_STAT as the key slot. */
function scratchRecord(m: TracerMaps): Body {
  return [
    A.st('w', FP, K_STAT, 0),
    A.ldMap(R1, m.scratch),
    A.mov64(R2, FP),
    A.add64(R2, K_STAT),
    A.call('map_lookup_elem'),
    A.jeq(R0, 0, 'out'),
    A.mov64(R9, R0),
  ];
}

/**
 * ringbuf_output(events, r9, HEADER_BYTES + stackLen): only the bytes captured. Counts a full ring.
 * `wakeAtBytes`: no wakeup unless the ring already holds that many unread bytes (BPF_RB_AVAIL_DATA),
 * then BPF_RB_FORCE_WAKEUP: the reader sleeps in epoll until the ring fills instead of draining on a
 * timer (pool mode: records are rare). Without it, never a wakeup (the reader drains on a timer).
 */
function outputRecord(m: TracerMaps, uniq: string, lostBytesSlot?: number, wakeAtBytes?: number): Body {
  const ok = `output_ok_${uniq}`,
    clamp = `output_len_${uniq}`,
    quiet = `output_quiet_${uniq}`;
  return [
    // r0 = unread bytes (ringbuf_query); kept in r0 until the flags are chosen below (no call between).
    wakeAtBytes !== undefined ? [A.ldMap(R1, m.events), A.mov64(R2, BPF_RB_AVAIL_DATA), A.call('ringbuf_query')] : [],
    A.ldx('w', R3, R9, 4),
    A.jle(R3, STACK_BYTES, clamp),
    A.mov64(R3, STACK_BYTES),
    A.label(clamp),
    A.add64(R3, HEADER_BYTES),
    // + the Lua block (header u16 at 2)
    A.ldx('h', A.R4, R9, 2),
    A.jle(A.R4, LUA_BLOCK_BYTES, `${clamp}_lua`),
    A.mov64(A.R4, 0),
    A.label(`${clamp}_lua`),
    A.add64(R3, A.R4),
    // BPF_RB_NO_WAKEUP: no irq_work per record in the target; the reader drains on a timer.
    A.mov64(A.R4, BPF_RB_NO_WAKEUP),
    wakeAtBytes !== undefined
      ? [A.jlt(R0, wakeAtBytes, quiet), A.mov64(A.R4, BPF_RB_FORCE_WAKEUP), A.label(quiet)]
      : [],
    A.ldMap(R1, m.events),
    A.mov64(R2, R9),
    A.call('ringbuf_output'),
    A.jeq(R0, 0, ok),
    statInc(m, Stat.ringFull, `ringfull_${uniq}`),
    lostBytesSlot !== undefined ? statAddSlot(m, Stat.ringFullBytes, lostBytesSlot, `ringfull_${uniq}`) : [],
    A.label(ok),
  ];
}

/** Stores the record in r9 in the stash (small if its stack fits, else large); falls back to the ring. */
function stashRecord(m: TracerMaps, uniq: string): Body {
  const large = `stash_large_${uniq}`,
    ring = `stash_ring_${uniq}`,
    done = `stash_done_${uniq}`;
  return [
    A.ldx('dw', R1, FP, K_TID),
    A.stx('dw', FP, K_STASH, R1),
    A.ldx('dw', R1, FP, V_TS),
    A.stx('dw', FP, K_STASH + 8, R1),
    A.ldx('w', R3, R9, 4),
    A.ldx('h', R1, R9, 2),
    A.add64(R3, R1),
    A.jgt(R3, STASH_SMALL_STACK, large),
    A.ldMap(R1, m.stashSmall!),
    A.mov64(R2, FP),
    A.add64(R2, K_STASH),
    A.mov64(R3, R9),
    A.mov64(A.R4, 0),
    A.call('map_update_elem'),
    A.jeq(R0, 0, done),
    A.label(large),
    A.ldMap(R1, m.stashLarge!),
    A.mov64(R2, FP),
    A.add64(R2, K_STASH),
    A.mov64(R3, R9),
    A.mov64(A.R4, 0),
    A.call('map_update_elem'),
    A.jeq(R0, 0, done),
    A.label(ring),
    outputRecord(m, uniq, V_SIZE),
    A.label(done),
  ];
}

/**
 * Forgets the allocation at fp[K_PTR]: its stash record (exact mode) and its outstanding entry.
 * r0 = 0 when it was outstanding (map_delete_elem's result).
 */
function forgetPointer(m: TracerMaps, uniq: string): Body {
  if (!m.stashSmall) return mapDelete(m.outstanding, K_PTR);
  const none = `forget_none_${uniq}`;
  return [
    A.ldMap(R1, m.outstanding),
    A.mov64(R2, FP),
    A.add64(R2, K_PTR),
    A.call('map_lookup_elem'),
    A.jeq(R0, 0, none),
    // outstanding value {timeNs, size, pidTgid} -> stash key {pidTgid, timeNs}
    A.ldx('dw', R1, R0, 16),
    A.stx('dw', FP, K_STASH, R1),
    A.ldx('dw', R1, R0, 0),
    A.stx('dw', FP, K_STASH + 8, R1),
    mapDelete(m.stashSmall, K_STASH),
    A.jeq(R0, 0, `${none}_del`),
    mapDelete(m.stashLarge!, K_STASH),
    A.label(`${none}_del`),
    A.label(none),
    mapDelete(m.outstanding, K_PTR),
  ];
}

/**
 * free's work on a pointer argument (free, realloc's old block, lj_alloc_f's ptr): argument `arg` of
 * the pt_regs in `ctx`; NULL jumps to `done`; else forgets it (forgetPointer) and counts a match in
 * freeMatched. Falls through (to the caller's `done` label) either way.
 */
function forgetArgPointer(m: TracerMaps, ctx: Reg, arg: number, uniq: string, done: string): Body {
  return [
    A.loadArg(R1, ctx, arg),
    A.jeq(R1, 0, done),
    A.stx('dw', FP, K_PTR, R1),
    forgetPointer(m, uniq),
    A.jne(R0, 0, done),
    statInc(m, Stat.freeMatched, uniq),
  ];
}

function tgidOrExit(tgid: number | undefined, pidns?: A.PidNamespace): Body {
  return tgid === undefined ? [] : A.tgidFilter(tgid, 'out', pidns);
}

/** r0 = bpf_map_delete_elem(map, &fp[keyOff]) */
function mapDelete(map: MapRef, keyOff: number): Body {
  return [A.ldMap(R1, map), A.mov64(R2, FP), A.add64(R2, keyOff), A.call('map_delete_elem')];
}

function sizeOf(conv: AllocConvention, ctx: Reg): Body {
  switch (conv) {
    case 'size0':
      return [A.loadArg(R7, ctx, 0)];
    case 'calloc':
      return [A.loadArg(R7, ctx, 0), A.loadArg(R1, ctx, 1), A.mul64(R7, R1)];
    case 'realloc':
      return [A.loadArg(R7, ctx, 1)];
    case 'size1':
      return [A.loadArg(R7, ctx, 1)];
    case 'posix_memalign':
      return [A.loadArg(R7, ctx, 2)];
    case 'int_memalign':
      return [A.loadArg(R7, ctx, 2)];
    case 'lj_alloc':
      return [A.loadArg(R7, ctx, 3)];
  }
}

/** Entry of an allocation function: sample, capture the stack, remember the call until it returns. */
export function allocEntryProgram(
  m: TracerMaps,
  conv: AllocConvention,
  opts: {
    tgid?: number;
    pidns?: A.PidNamespace;
    sampleBytes: number;
    mayNest?: boolean;
    sizeRange?: { min: number; max: number };
    lua?: LuaWalkConfig[];
  },
): Body {
  return [A.mov64(R6, R1), allocEntryBody(m, conv, { ...opts, skipReturns: 0 })];
}

/**
 * The entry logic on the pt_regs in r6. Exits with 0 after a sampled call (its return must be
 * seen) and with `skipReturns` otherwise (1 in a session: the kernel then skips the return probe).
 * `relay` (sessions): a call that glibc relays to malloc (relaysToMalloc) is decided and its stack
 * captured here, at its own entry, and its inner malloc call is left alone (nested). Captured at the
 * inner malloc instead, the stack would hold this call's return address as the kernel left it: the
 * [uprobes] trampoline whenever any other uprobe_multi return probe or session on this function
 * exists, even one filtered to another process (kernel/events/uprobes.c handler_chain prepares the
 * return for every consumer with a return handler whose entry handler did not decline; BPF's
 * uprobe_multi handler returns 0 for a task outside its link), and the walk ends there.
 */
function allocEntryBody(
  m: TracerMaps,
  conv: AllocConvention,
  opts: {
    tgid?: number;
    pidns?: A.PidNamespace;
    sampleBytes: number;
    mayNest?: boolean;
    sizeRange?: { min: number; max: number };
    skipReturns: number;
    relay?: boolean;
    lua?: LuaWalkConfig[];
  },
): Body {
  const ctx = R6;
  const relayCheck = opts.relay ? relaysToMalloc(conv, ctx, 'out') : undefined;
  return [
    tgidOrExit(opts.tgid, opts.pidns),
    statInc(m, Stat.entryHits, 'entry'),
    // realloc frees its old block whether or not this call is sampled.
    conv === 'realloc' ? [forgetArgPointer(m, ctx, 0, 'realloc', 'no_old'), A.label('no_old')] : [],
    // lj_alloc_f frees or reallocates its ptr argument (arg 1); nsize 0 is a free only.
    conv === 'lj_alloc'
      ? [
          forgetArgPointer(m, ctx, 1, 'lj_alloc', 'lj_no_old'),
          A.label('lj_no_old'),
          A.loadArg(R1, ctx, 3),
          A.jeq(R1, 0, 'out'),
        ]
      : [],
    sizeOf(conv, ctx),
    // Only requests in [min, max) bytes (the anomalous chunk-size bucket): decided before anything else.
    opts.sizeRange ? [A.jlt(R7, opts.sizeRange.min, 'out'), A.jge(R7, opts.sizeRange.max, 'out')] : [],
    // A call nested in a sampled call (realloc(NULL, n) -> malloc) belongs to the outer one.
    A.call('get_current_pid_tgid'),
    A.stx('dw', FP, K_TID, R0),
    A.ldMap(R1, m.pending),
    A.mov64(R2, FP),
    A.add64(R2, K_TID),
    A.call('map_lookup_elem'),
    A.jeq(R0, 0, 'not_nested'),
    // An unsampled relaying call's marker (timeNs 0) is used up by its inner call: no return probe needed.
    A.ldx('dw', R1, R0, 0),
    A.jne(R1, 0, 'nested_sampled'),
    mapDelete(m.pending, K_TID),
    A.label('nested_sampled'),
    statInc(m, Stat.nested, 'nested'),
    A.ja('out'),
    A.label('not_nested'),
    // Sampling: keep with probability size / sampleBytes.
    opts.sampleBytes > 0
      ? [
          A.jge(R7, opts.sampleBytes, 'sampled'),
          A.call('get_prandom_u32'),
          A.mod64(R0, opts.sampleBytes),
          A.jlt(R0, R7, 'sampled'),
          statInc(m, Stat.unsampled, 'unsampled'),
          // Functions that call malloc internally (posix_memalign with small alignment, realloc(NULL, n))
          // leave a marker (timeNs 0) so the inner call is not sampled on its own: the decision is the
          // outer call's, and the inner stack would pass through the outer's uretprobe trampoline.
          // In a session only a call that relays leaves one (its inner call uses it up).
          opts.mayNest || relayCheck
            ? [
                relayCheck ?? [],
                A.st('dw', FP, V_TS, 0),
                A.st('dw', FP, V_SIZE, 0),
                A.st('dw', FP, V_AUX, 0),
                A.ldMap(R1, m.pending),
                A.mov64(R2, FP),
                A.add64(R2, K_TID),
                A.mov64(R3, FP),
                A.add64(R3, V_TS),
                A.mov64(A.R4, 0),
                A.call('map_update_elem'),
              ]
            : [],
          A.ja('out'),
        ]
      : [],
    A.label('sampled'),
    statInc(m, Stat.sampled, 'sampled'),
    A.stx('dw', FP, V_SIZE, R7),
    statAddSlot(m, Stat.sampledBytes, V_SIZE, 'sampled'),
    conv === 'posix_memalign' || conv === 'realloc'
      ? [A.loadArg(R1, ctx, 0), A.stx('dw', FP, V_AUX, R1)]
      : [A.st('dw', FP, V_AUX, 0)],
    A.call('ktime_get_ns'),
    A.stx('dw', FP, V_TS, R0),
    // The capture record, built in the per-CPU scratch value.
    scratchRecord(m),
    A.st('w', R9, 0, EventKind.mallocSample),
    A.ldx('dw', R1, FP, K_TID),
    A.stx('dw', R9, 8, R1),
    A.ldx('dw', R1, FP, V_TS),
    A.stx('dw', R9, 16, R1),
    A.ldx('dw', R1, FP, V_SIZE),
    A.stx('dw', R9, 24, R1),
    A.st('dw', R9, 32, 0),
    A.ldx('dw', R1, FP, V_AUX),
    A.stx('dw', R9, 40, R1),
    captureRegsAndStack(
      R9,
      ctx,
      'alloc',
      STACK_BYTES,
      m.stackTops ? { map: m.stackTops, keyOffset: K_TID } : undefined,
    ),
    // Inside a Lua VM: its frames after the stack (r8 = stack bytes copied; ctx is not used after).
    opts.lua?.length
      ? [
          A.jgt(A.R8, STACK_BYTES, 'lua_skip'),
          luaFramesBody(opts.lua, R9, A.R8, ctx, HEADER_BYTES, 'alloc'),
          A.label('lua_skip'),
        ]
      : [],
    m.stashSmall && opts.sampleBytes === 0 ? stashRecord(m, 'alloc') : outputRecord(m, 'alloc', V_SIZE),
    // pending[pid_tgid] = {timeNs, size, aux}
    A.ldMap(R1, m.pending),
    A.mov64(R2, FP),
    A.add64(R2, K_TID),
    A.mov64(R3, FP),
    A.add64(R3, V_TS),
    A.mov64(A.R4, 0),
    A.call('map_update_elem'),
    A.returnZero(),
    A.label('out'),
    A.mov64(R0, opts.skipReturns),
    A.exit(),
  ];
}

/**
 * Jumps to `out` unless this call relays to malloc (glibc 2.36 malloc.c): posix_memalign with
 * alignment 8 or 16 (other alignments <= 16 fail with EINVAL before), memalign / aligned_alloc with
 * alignment <= 16 (_mid_memalign: "If we need less alignment than we give anyway, just relay to
 * malloc"), realloc(NULL, n). undefined for functions that never relay. Uses r1.
 */
function relaysToMalloc(conv: AllocConvention, ctx: Reg, out: string): Body | undefined {
  switch (conv) {
    case 'posix_memalign':
      return [A.loadArg(R1, ctx, 1), A.jeq(R1, 8, 'relays'), A.jne(R1, 16, out), A.label('relays')];
    case 'size1':
      return [A.loadArg(R1, ctx, 0), A.jgt(R1, 16, out)];
    case 'realloc':
      return [A.loadArg(R1, ctx, 0), A.jne(R1, 0, out)];
    default:
      return undefined;
  }
}

/** Return of an allocation function: a pending sampled call becomes an outstanding allocation. */
export function allocReturnProgram(
  m: TracerMaps,
  conv: 'rax' | 'posix_memalign',
  opts: { tgid?: number; pidns?: A.PidNamespace },
): Body {
  return [A.mov64(R6, R1), allocReturnBody(m, conv, opts)];
}

function allocReturnBody(
  m: TracerMaps,
  conv: 'rax' | 'posix_memalign',
  opts: { tgid?: number; pidns?: A.PidNamespace },
): Body {
  const ctx = R6;
  return [
    tgidOrExit(opts.tgid, opts.pidns),
    statInc(m, Stat.returnHits, 'ret'),
    A.call('get_current_pid_tgid'),
    A.stx('dw', FP, K_TID, R0),
    A.ldMap(R1, m.pending),
    A.mov64(R2, FP),
    A.add64(R2, K_TID),
    A.call('map_lookup_elem'),
    A.jeq(R0, 0, 'out'),
    A.ldx('dw', R1, R0, 0),
    A.stx('dw', FP, V_TS, R1),
    A.ldx('dw', R1, R0, 8),
    A.stx('dw', FP, V_SIZE, R1),
    A.ldx('dw', R7, R0, 16), // aux: posix_memalign's memptr
    mapDelete(m.pending, K_TID),
    A.ldx('dw', R1, FP, V_TS),
    A.jeq(R1, 0, 'out'), // an unsampled outer call's marker
    conv === 'posix_memalign'
      ? [
          A.loadReg(R1, ctx, 'rax'),
          A.jne(R1, 0, 'out'), // non-zero: failed
          A.mov64(R1, FP),
          A.add64(R1, K_PTR),
          A.mov64(R2, 8),
          A.mov64(R3, R7),
          A.call('probe_read_user'),
          A.jne(R0, 0, 'out'),
        ]
      : [A.loadReg(R1, ctx, 'rax'), A.stx('dw', FP, K_PTR, R1)],
    A.ldx('dw', R1, FP, K_PTR),
    A.jeq(R1, 0, 'out'),
    // outstanding[ptr] = {timeNs, size, pidTgid}
    A.ldx('dw', R1, FP, K_TID),
    A.stx('dw', FP, V_AUX, R1),
    A.ldMap(R1, m.outstanding),
    A.mov64(R2, FP),
    A.add64(R2, K_PTR),
    A.mov64(R3, FP),
    A.add64(R3, V_TS),
    A.mov64(A.R4, 0),
    A.call('map_update_elem'),
    A.jeq(R0, 0, 'out'),
    statInc(m, Stat.outstandingFull, 'full'),
    A.label('out'),
    A.returnZero(),
  ];
}

/** free(ptr): forget a sampled allocation. */
export function freeProgram(m: TracerMaps, opts: { tgid?: number; pidns?: A.PidNamespace }): Body {
  const ctx = R6;
  return [
    A.mov64(ctx, R1),
    tgidOrExit(opts.tgid, opts.pidns),
    statInc(m, Stat.freeHits, 'free'),
    forgetArgPointer(m, ctx, 0, 'freed', 'out'),
    A.label('out'),
    A.returnZero(),
  ];
}

/**
 * Pool creation, probed at the instruction after ngx_create_pool's call to ngx_memalign
 * (rax = the new pool): one probe hit per pool, no uretprobe. Liveness is checked at the end by
 * reading memory (the pool census), so ngx_destroy_pool is not probed at all.
 */
export function poolCreateProgram(
  m: TracerMaps,
  opts: { tgid?: number; pidns?: A.PidNamespace; stackBytes?: 4096 | 8192; wakeAtBytes?: number },
): Body {
  const ctx = R6;
  return [
    A.mov64(ctx, R1),
    tgidOrExit(opts.tgid, opts.pidns),
    statInc(m, Stat.poolHits, 'pool'),
    A.loadReg(R7, ctx, 'rax'),
    A.jeq(R7, 0, 'out'),
    A.stx('dw', FP, K_PTR, R7),
    scratchRecord(m),
    A.st('w', R9, 0, EventKind.poolCreate),
    A.call('get_current_pid_tgid'),
    A.stx('dw', R9, 8, R0),
    A.call('ktime_get_ns'),
    A.stx('dw', R9, 16, R0),
    A.st('dw', R9, 24, 0),
    A.ldx('dw', R1, FP, K_PTR),
    A.stx('dw', R9, 32, R1),
    A.st('dw', R9, 40, 0),
    captureRegsAndStack(R9, ctx, 'pool', opts.stackBytes),
    outputRecord(m, 'pool', undefined, opts.wakeAtBytes),
    A.label('out'),
    A.returnZero(),
  ];
}

/**
 * One program for both runs of a uprobe session on an allocation function: at entry the probed
 * instruction's address is in rip; at return rip is the caller's return address. Unsampled calls
 * return 1 at entry, so the kernel skips their return probe: only sampled calls pay for it.
 */
export function allocSessionProgram(
  m: TracerMaps,
  conv: AllocConvention,
  opts: {
    tgid?: number;
    pidns?: A.PidNamespace;
    sampleBytes: number;
    sizeRange?: { min: number; max: number };
    entryRuntimeAddr: number;
    lua?: LuaWalkConfig[];
  },
): Body {
  return [
    A.mov64(R6, R1),
    A.loadReg(R1, R6, 'rip'),
    A.ldImm64(R2, opts.entryRuntimeAddr),
    A.jne(R1, R2, 'at_return'),
    prefixLabels(allocEntryBody(m, conv, { ...opts, skipReturns: 1, relay: true }), 'e_'),
    A.label('at_return'),
    prefixLabels(allocReturnBody(m, conv === 'posix_memalign' ? 'posix_memalign' : 'rax', opts), 'r_'),
  ];
}

/** Renames every label (and jump target) of a body, so two bodies can share one program. */
function prefixLabels(body: Body, prefix: string): Body {
  const out: Array<A.Item> = [];
  const walk = (b: Body) => {
    for (const x of b) {
      if (Array.isArray(x)) walk(x as Body);
      else {
        const it = x as A.Item;
        if (it.kind === 'label') out.push({ ...it, name: prefix + it.name });
        else out.push(it.target !== undefined ? { ...it, target: prefix + it.target } : it);
      }
    }
  };
  walk(body);
  return out;
}

/**
 * Lua heap growth: libc mmap (or mremap) called from libluajit's text (lj_alloc mapping a new
 * segment or a direct chunk, or growing one). The return address at [rsp] decides before
 * anything else (one read); then the native stack and the Lua frames. Rare by construction:
 * lj_alloc maps memory only when no free chunk fits, so the cost is near zero.
 * Record: size = bytes mapped (mremap: new - old size), address 0.
 */
export function luaGrowthProgram(
  m: TracerMaps,
  opts: {
    tgid?: number;
    pidns?: A.PidNamespace;
    call: 'mmap' | 'mremap';
    callerStart: number;
    callerEnd: number;
    lua: LuaWalkConfig[];
  },
): Body {
  const ctx = R6;
  return [
    A.mov64(ctx, R1),
    tgidOrExit(opts.tgid, opts.pidns),
    A.loadReg(R3, ctx, 'rsp'),
    A.mov64(R1, FP),
    A.add64(R1, K_PTR),
    A.mov64(R2, 8),
    A.call('probe_read_user'),
    A.jne(R0, 0, 'out'),
    A.ldx('dw', R1, FP, K_PTR),
    A.ldImm64(R2, opts.callerStart),
    A.jlt(R1, R2, 'out'),
    A.ldImm64(R2, opts.callerEnd),
    A.jge(R1, R2, 'out'),
    statInc(m, Stat.entryHits, 'grow'),
    opts.call === 'mmap'
      ? [A.loadArg(R7, ctx, 1)]
      : [A.loadArg(R7, ctx, 2), A.loadArg(R1, ctx, 1), A.jle(R7, R1, 'out'), A.sub64(R7, R1)],
    A.stx('dw', FP, V_SIZE, R7),
    scratchRecord(m),
    A.st('w', R9, 0, EventKind.luaGrowth),
    A.call('get_current_pid_tgid'),
    A.stx('dw', R9, 8, R0),
    A.stx('dw', FP, K_TID, R0),
    A.call('ktime_get_ns'),
    A.stx('dw', R9, 16, R0),
    A.ldx('dw', R1, FP, V_SIZE),
    A.stx('dw', R9, 24, R1),
    A.st('dw', R9, 32, 0),
    A.st('dw', R9, 40, 0),
    captureRegsAndStack(R9, ctx, 'grow', STACK_BYTES, m.stackTops ? { map: m.stackTops, keyOffset: K_TID } : undefined),
    A.jgt(A.R8, STACK_BYTES, 'lua_skip'),
    luaFramesBody(opts.lua, R9, A.R8, ctx, HEADER_BYTES, 'grow'),
    A.label('lua_skip'),
    outputRecord(m, 'grow'),
    A.label('out'),
    A.returnZero(),
  ];
}
