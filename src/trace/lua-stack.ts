// Lua call paths at a probe: the LuaJIT frame walk in BPF, and its decoding and symbolization
// in user space (shared/reference/luajit.md §7; frame macros of lj_frame.h, GC64 + FR2).
//
// In the probe, for each Lua VM (global_State g, found by luajit/state.ts), after the native
// capture:
//   L = g->cur_L (the running coroutine); cf = L->cframe & ~3 (CFRAME_RAWMASK).
//   The VM is on this thread's native stack iff rsp < cf < rsp + CFRAME_WINDOW: cf is the
//   native frame of lj_vm_resume / lj_vm_pcall / lj_vm_call. Otherwise nothing more is read
//   (2 reads: the cost for stacks that do not pass through libluajit).
//   vmstate = g->vmstate: >= 0 is the number of the running trace; then base = g->jit_base
//   (L->base is stale) and J->trace[vmstate] gives the trace's start (startpt, startpc);
//   else base = L->base (the VM stores it before every call out of the interpreter).
//   Frames (FR2: func at slot f-1, link `ftsz` at f): f = base - 8, bot = L->stack + 8;
//   while f > bot: copy [f-16, f+8) (contpc, func, link) and 40 bytes of the GCfunc from
//   func+8 (header: ffid, then env, gclist, pc, and f / uvptr[0]); then
//     link & 3 == 0 (Lua): f -= 8 * (2 + bc_a(*(u32 *)(link - 4)))   frame_prevl
//     else                 f -= link & ~7                            frame_prevd
//   at most LUA_MAX_FRAMES frames, unrolled (no loop for the verifier to bound).
//
// The block follows the record's stack copy (capture.ts); its length is the header's u16 at
// offset 2. Layout (little-endian):
//    0 u64 L            8 u64 cf (cframe, raw)      16 u64 top pc (*(cf + CFRAME_OFS_PC))
//   24 i32 vmstate     28 u32 frames               32 u64 base used
//   40 u64 trace startpt (GCproto *) or 0           48 u64 trace startpc or 0
//   56 + 64 i: frame i (top first): +0 contpc (f-16), +8 func (tagged, f-8), +16 link (f),
//              +24 .. +64 the GCfunc's bytes [8, 48): +26 ffid, +48 pc, +56 f (C) / uvptr[0]

import * as A from '../ebpf/asm.js';
import type { Body, Reg } from '../ebpf/asm.js';
import { R0, R1, R2, R3, R6, R7, FP } from '../ebpf/asm.js';
import type { AddressSpace } from '../target/address-space.js';
import type { Frame } from '../model/index.js';
import type { LuajitLayouts } from '../luajit/layouts.js';
import type { Symbolizer } from '../symbols/index.js';

export const LUA_MAX_FRAMES = 16;
export const LUA_HEAD_BYTES = 56;
export const LUA_FRAME_BYTES = 64;
/** Largest Lua block a record carries. */
export const LUA_BLOCK_BYTES = LUA_HEAD_BYTES + LUA_MAX_FRAMES * LUA_FRAME_BYTES;
/** cf must lie within this many bytes above rsp (a thread's stack; the VM's frame is near). */
export const CFRAME_WINDOW = 8 << 20;

/** What the probe needs to know of one Lua VM: addresses and offsets as constants. */
export interface LuaWalkConfig {
  globalState: number;
  curL: number; // g + offsetof(global_State, cur_L); jit_base follows at +8
  jitBase: number;
  vmstate: number;
  /** &J->trace (GG_State: g and J are siblings). */
  jTrace: number;
  lBase: number; // offsetof(lua_State, base)
  lStack: number;
  lCframe: number;
  cframePc: number; // CFRAME_OFS_PC
  /** offsetof(GCtrace, startpt), startpc right after it; undefined: trace starts not read. */
  traceStartpt?: number;
}

export function luaWalkConfig(globalState: number, l: LuajitLayouts): LuaWalkConfig | undefined {
  const s = l.structs;
  const gs = s.global_State,
    ls = s.lua_State,
    gg = s.GG_State,
    j = s.jit_State;
  if (!l.gc64 || !l.fr2 || !gs || !ls || !gg || !j) return undefined;
  const need = [gs.cur_L, gs.jit_base, gs.vmstate, gg.g, gg.J, j.trace, ls.base, ls.stack, ls.cframe];
  if (need.some((v) => v === undefined)) return undefined;
  // The trace start is read as one 16-byte copy of startpt and startpc.
  const tr = s.GCtrace;
  const traceStart = tr?.startpt !== undefined && tr.startpc === tr.startpt + 8 ? tr.startpt : undefined;
  return {
    globalState,
    curL: globalState + gs.cur_L!,
    jitBase: globalState + gs.jit_base!,
    vmstate: globalState + gs.vmstate!,
    jTrace: globalState - gg.g! + gg.J! + j.trace!,
    lBase: ls.base!,
    lStack: ls.stack!,
    lCframe: ls.cframe!,
    cframePc: s.constants?.CFRAME_OFS_PC ?? 24,
    traceStartpt: traceStart,
  };
}

// FP slots (below the tracers' own, which end at -64).
const S_L = -72; // lua_State fields read in one go: base .. cframe (at most 64 bytes)
const S_LEN = 64;
const S_TMP = -144; // u64 scratch
const S_BOT = -152; // L->stack + 8
const S_N = -160; // frames written (u64)

/**
 * The Lua block writer. `rec`: the scratch record (callee-saved); `stackLen`: a register holding
 * the bytes of native stack copied (bounded by the caller to STACK_BYTES); `ctx`: pt_regs
 * (callee-saved, clobbered from here on). Clobbers r0-r5, r7 and `ctx`. Writes the block at
 * rec + headerBytes + stackLen and its length into the header's u16 at offset 2 (0 = no Lua).
 */
export function luaFramesBody(
  vms: readonly LuaWalkConfig[],
  rec: Reg,
  stackLen: Reg,
  ctx: Reg,
  headerBytes: number,
  uniq: string,
): Body {
  if (!vms.length) return [];
  const done = `lua_done_${uniq}`;
  const out: Array<Body[number]> = [
    A.loadReg(R1, ctx, 'rsp'),
    A.stx('dw', FP, S_TMP, R1),
    // r7 = block = rec + header + stackLen
    A.mov64(R7, rec),
    A.add64(R7, stackLen),
    A.add64(R7, headerBytes),
  ];
  for (let i = 0; i < vms.length; i++)
    out.push(vmWalk(vms[i]!, rec, ctx, `${uniq}_${i}`, i + 1 < vms.length ? `lua_vm_${uniq}_${i + 1}` : done, done));
  out.push(A.label(`lua_vm_${uniq}_${vms.length}`), A.label(done));
  return out;
}

/** r1 = probe_read_user(r7 + dstOff, len, src) with src computed by `src` into r3. */
function readInto(dstOff: number, len: number, src: Body, fail: string): Body {
  return [src, A.mov64(R1, R7), A.add64(R1, dstOff), A.mov64(R2, len), A.call('probe_read_user'), A.jne(R0, 0, fail)];
}

function vmWalk(vm: LuaWalkConfig, rec: Reg, f: Reg, u: string, next: string, done: string): Body {
  const lFirst = vm.lBase;
  const lLen = vm.lCframe + 8 - lFirst;
  if (lLen > S_LEN || lFirst > vm.lStack) throw new Error('lua_State layout: base .. cframe too far apart');
  const body: Array<Body[number]> = [
    A.label(`lua_vm_${u}`),
    // L -> block[0]
    readInto(0, 8, [A.ldImm64(R3, vm.curL)], next),
    A.ldx('dw', R3, R7, 0),
    A.jeq(R3, 0, next),
    // base .. cframe -> FP[S_L]
    A.mov64(R1, FP),
    A.add64(R1, S_L - S_LEN + 8),
    A.mov64(R2, lLen),
    A.add64(R3, lFirst),
    A.call('probe_read_user'),
    A.jne(R0, 0, next),
    // cf = cframe & ~3; on this stack above rsp?
    A.ldx('dw', R1, FP, S_L - S_LEN + 8 + (vm.lCframe - lFirst)),
    A.and64(R1, -4),
    A.stx('dw', R7, 8, R1),
    A.ldx('dw', R2, FP, S_TMP),
    A.jle(R1, R2, next),
    A.sub64(R1, R2),
    A.jge(R1, CFRAME_WINDOW, next),
    // From here this VM is the one: the block is written.
    A.ldx('dw', R1, FP, S_L - S_LEN + 8 + (vm.lStack - lFirst)),
    A.add64(R1, 8),
    A.stx('dw', FP, S_BOT, R1),
    A.st('dw', R7, 40, 0),
    A.st('dw', R7, 48, 0),
    A.st('dw', R7, 16, 0),
    A.st('dw', FP, S_N, 0),
    // top pc: *(cf + CFRAME_OFS_PC)
    readInto(16, 8, [A.ldx('dw', R3, R7, 8), A.add64(R3, vm.cframePc)], `lua_vmstate_${u}`),
    A.label(`lua_vmstate_${u}`),
    readInto(24, 4, [A.ldImm64(R3, vm.vmstate)], done),
    A.ldx('w', R1, R7, 24),
    A.jset(R1, 0x8000_0000, `lua_interp_${u}`),
    // A trace runs: base = jit_base; J->trace[vmstate]->startpt / startpc.
    A.st('dw', R7, 32, 0),
    readInto(32, 8, [A.ldImm64(R3, vm.jitBase)], `lua_jb_${u}`),
    A.label(`lua_jb_${u}`),
    A.ldx('dw', f, R7, 32),
    readInto(40, 8, [A.ldImm64(R3, vm.jTrace)], `lua_frames_${u}`),
    A.ldx('dw', R3, R7, 40),
    A.ldx('w', R1, R7, 24),
    A.lsh64(R1, 3),
    A.add64(R3, R1),
    A.st('dw', R7, 40, 0),
    readInto(48, 8, [], `lua_frames_${u}`),
    A.ldx('dw', R3, R7, 48),
    A.st('dw', R7, 48, 0),
    A.jeq(R3, 0, `lua_frames_${u}`),
    vm.traceStartpt === undefined ? A.ja(`lua_frames_${u}`) : [],
    A.add64(R3, vm.traceStartpt ?? 0),
    readInto(40, 16, [], `lua_trace_bad_${u}`),
    A.ja(`lua_frames_${u}`),
    A.label(`lua_trace_bad_${u}`),
    A.st('dw', R7, 40, 0),
    A.st('dw', R7, 48, 0),
    A.ja(`lua_frames_${u}`),
    A.label(`lua_interp_${u}`),
    A.ldx('dw', f, FP, S_L - S_LEN + 8),
    A.label(`lua_frames_${u}`),
    A.stx('dw', R7, 32, f),
    A.sub64(f, 8),
  ];
  for (let i = 0; i < LUA_MAX_FRAMES; i++) {
    const at = LUA_HEAD_BYTES + i * LUA_FRAME_BYTES;
    const nx = `lua_f${i + 1}_${u}`;
    const end = `lua_end_${u}`;
    body.push(
      A.ldx('dw', R1, FP, S_BOT),
      A.jle(f, R1, end),
      readInto(at, 24, [A.mov64(R3, f), A.sub64(R3, 16)], end),
      // func = tagged & (2^47 - 1)
      A.ldx('dw', R3, R7, at + 8),
      A.lsh64(R3, 17),
      A.rsh64(R3, 17),
      A.jeq(R3, 0, end),
      A.add64(R3, 8),
      readInto(at + 24, 40, [], end),
      A.st('dw', FP, S_N, i + 1),
      A.ldx('dw', R1, R7, at + 16),
      A.mov64(R2, R1),
      A.and64(R2, 3),
      A.jne(R2, 0, `lua_delta_${i}_${u}`),
      // Lua frame: the caller's BC_CALL* is at link - 4; its A operand sizes the caller's frame.
      A.mov64(R3, R1),
      A.sub64(R3, 4),
      A.mov64(R1, FP),
      A.add64(R1, S_TMP),
      A.mov64(R2, 4),
      A.call('probe_read_user'),
      A.jne(R0, 0, end),
      A.ldx('w', R1, FP, S_TMP),
      A.rsh64(R1, 8),
      A.and64(R1, 0xff),
      A.add64(R1, 2),
      A.lsh64(R1, 3),
      A.sub64(f, R1),
      A.ja(nx),
      A.label(`lua_delta_${i}_${u}`),
      A.and64(R1, -8),
      A.jeq(R1, 0, end),
      A.sub64(f, R1),
      A.label(nx),
    );
  }
  body.push(
    A.label(`lua_end_${u}`),
    A.ldx('dw', R1, FP, S_N),
    A.stx('w', R7, 28, R1),
    A.mul64(R1, LUA_FRAME_BYTES),
    A.add64(R1, LUA_HEAD_BYTES),
    A.stx('h', rec, 2, R1),
    A.ja(done),
  );
  void R6;
  return body;
}

// ---- user space ----

export interface LuaFrameRaw {
  contPc: number;
  func: number;
  link: number;
  ffid: number;
  /** GCfunc.pc: for a Lua function, its proto's bytecode (proto = fnPc - sizeof(GCproto)). */
  fnPc: number;
  /** GCfuncC.f: the C function's address. */
  cfn: number;
}

export interface LuaCapture {
  L: number;
  cframe: number;
  topPc: number;
  vmstate: number;
  base: number;
  traceStartPt: number;
  traceStartPc: number;
  frames: LuaFrameRaw[];
}

const TWO32 = 4294967296;
const u64 = (v: DataView, at: number) => v.getUint32(at + 4, true) * TWO32 + v.getUint32(at, true);

/** Decodes a Lua block (undefined when malformed). */
export function decodeLuaBlock(b: Uint8Array): LuaCapture | undefined {
  if (b.byteLength < LUA_HEAD_BYTES) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = v.getUint32(28, true);
  if (n > LUA_MAX_FRAMES || LUA_HEAD_BYTES + n * LUA_FRAME_BYTES > b.byteLength) return undefined;
  const frames: LuaFrameRaw[] = [];
  for (let i = 0; i < n; i++) {
    const at = LUA_HEAD_BYTES + i * LUA_FRAME_BYTES;
    frames.push({
      contPc: u64(v, at),
      func: u64(v, at + 8) % 2 ** 47,
      link: u64(v, at + 16),
      ffid: v.getUint8(at + 26),
      fnPc: u64(v, at + 48),
      cfn: u64(v, at + 56),
    });
  }
  return {
    L: u64(v, 0),
    cframe: u64(v, 8),
    topPc: u64(v, 16),
    vmstate: v.getInt32(24, true),
    base: u64(v, 32),
    traceStartPt: u64(v, 40),
    traceStartPc: u64(v, 48),
    frames,
  };
}

/** A stable key of a capture's Lua frames (function + pc per printed frame), for aggregation. */
export function luaKey(c: LuaCapture): string {
  const parts: string[] = [];
  if (c.vmstate >= 0) parts.push(`T${c.vmstate}:${c.traceStartPt}:${c.traceStartPc}`);
  for (const f of luaFrameList(c))
    parts.push(`${f.ffid === 0 ? f.fnPc : f.ffid === 1 ? `c${f.cfn}` : `ff${f.ffid}`}@${f.pc}`);
  return parts.join(';');
}

/** The frames to print, top first, each with its pc (0 = unknown); vararg pseudo-frames dropped. */
export function luaFrameList(c: LuaCapture): Array<LuaFrameRaw & { pc: number; trace: boolean }> {
  const out: Array<LuaFrameRaw & { pc: number; trace: boolean }> = [];
  let pc = c.vmstate >= 0 ? 0 : c.topPc;
  let skip = false;
  c.frames.forEach((f, i) => {
    const type = f.link & 3,
      typep = f.link & 7;
    if (!skip) out.push({ ...f, pc: f.ffid === 0 ? pc : 0, trace: i === 0 && c.vmstate >= 0 });
    // The pc of the frame below: this frame's link when it is a Lua return address; a
    // continuation frame's saved pc; unknown below C, pcall and vararg frames (a vararg frame's
    // lower half is the same function: not printed again, its own link gives the pc below it).
    skip = typep === 3;
    pc = type === 0 ? f.link : typep === 2 ? f.contPc : skip ? pc : 0;
  });
  return out;
}

interface ProtoInfo {
  chunk: string;
  firstline: number;
  numline: number;
  sizebc: number;
  lineinfo: number;
  lines?: Uint8Array | Uint16Array | Uint32Array;
}

/**
 * Names Lua frames: `chunkname:line` read from the protos (long-lived: the code cache keeps them;
 * read read-only at the end, cached by address), fast functions as `builtin#N`, C functions by
 * symbol. Every byte read is checked; a frame that does not resolve says so.
 */
export class LuaFrameResolver {
  private protos = new Map<number, ProtoInfo | null>();
  constructor(
    private readonly space: AddressSpace,
    private readonly layouts: LuajitLayouts,
    private readonly symbolizer?: Symbolizer,
  ) {}

  private read(addr: number, len: number): Buffer | undefined {
    if (!(addr > 0) || len <= 0 || len > 1 << 20) return undefined;
    try {
      const b = this.space.read(addr, len);
      return b.length === len ? b : undefined;
    } catch {
      return undefined;
    }
  }

  private proto(pt: number): ProtoInfo | null {
    let p = this.protos.get(pt);
    if (p !== undefined) return p;
    p = null;
    const P = this.layouts.structs.GCproto!;
    const h = this.read(pt, P.sizeof!);
    if (h && h[9] === 7 /* gct proto */) {
      const chunkname = Number(h.readBigUInt64LE(P.chunkname!) & 0x7fffffffffffn);
      const S = this.layouts.structs.GCstr!;
      const sh = this.read(chunkname, S.sizeof!);
      const len = sh && sh[9] === 4 ? sh.readUInt32LE(S.len!) : -1;
      const name = len >= 0 && len < 4096 ? this.read(chunkname + S.sizeof!, len)?.toString('latin1') : undefined;
      if (name !== undefined)
        p = {
          chunk: chunkLabel(name),
          firstline: h.readInt32LE(P.firstline!),
          numline: h.readInt32LE(P.numline!),
          sizebc: h.readUInt32LE(P.sizebc!),
          lineinfo: Number(h.readBigUInt64LE(P.lineinfo!)),
        };
    }
    this.protos.set(pt, p);
    return p;
  }

  /** lj_debug_line for the instruction at `pc` in the proto (pc = the return address: the call is pc - 4). */
  private line(pt: number, p: ProtoInfo, pc: number): number | undefined {
    const bc = pt + this.layouts.structs.GCproto!.sizeof!;
    const pos = (pc - bc) / 4 - 1; // debug_framepc: proto_bcpos(pt, ins) - 1
    if (!Number.isInteger(pos) || pos < 0 || pos > p.sizebc || !p.lineinfo) return undefined;
    if (pos === p.sizebc) return p.firstline + p.numline;
    if (pos === 0) return p.firstline;
    if (!p.lines) {
      const w = p.numline < 256 ? 1 : p.numline < 65536 ? 2 : 4;
      const b = this.read(p.lineinfo, w * p.sizebc);
      if (!b) return undefined;
      const ab = b.buffer.slice(b.byteOffset, b.byteOffset + b.length);
      p.lines = w === 1 ? new Uint8Array(ab) : w === 2 ? new Uint16Array(ab) : new Uint32Array(ab);
    }
    const d = p.lines[pos - 1];
    return d === undefined ? undefined : p.firstline + d;
  }

  /** Frame for the code at (proto, pc); pc 0 = unknown line (the function's first line is shown). */
  private luaFrame(pt: number, pc: number, prefix = ''): Frame {
    const p = this.proto(pt);
    if (!p) return { function: `${prefix}[lua function 0x${pt.toString(16)}]`, module: LUA_MODULE, offset: 0 };
    const line = pc ? this.line(pt, p, pc) : undefined;
    return line !== undefined
      ? { function: `${prefix}${p.chunk}:${line}`, module: LUA_MODULE, offset: 0, file: p.chunk, line }
      : { function: `${prefix}${p.chunk}:${p.firstline}`, module: LUA_MODULE, offset: 0, file: p.chunk };
  }

  /** The capture's frames, top (innermost) first. */
  frames(c: LuaCapture): Frame[] {
    const P = this.layouts.structs.GCproto!;
    const out: Frame[] = [];
    for (const f of luaFrameList(c)) {
      if (f.trace) {
        // Frames inlined into the trace are invisible: the trace's start stands for them.
        out.push(
          c.traceStartPt
            ? this.luaFrame(c.traceStartPt, c.traceStartPc + 4, `[trace ${c.vmstate}] `)
            : { function: `[trace ${c.vmstate}]`, module: LUA_MODULE, offset: 0 },
        );
        continue;
      }
      if (f.ffid === 0) out.push(this.luaFrame(f.fnPc - P.sizeof!, f.pc));
      else if (f.ffid === 1) {
        const sym = this.symbolizer?.frame(f.cfn);
        out.push({
          function: sym?.function ?? `[C function 0x${f.cfn.toString(16)}]`,
          module: LUA_MODULE,
          offset: 0,
        });
      } else out.push({ function: fastFunctionName(this.layouts, f.ffid), module: LUA_MODULE, offset: 0 });
    }
    return out;
  }
}

/** Module name of Lua frames in stacks. */
export const LUA_MODULE = '[lua]';

/** LuaJIT's own naming of a fast function (lj_debug: "builtin#N"), or its lj_ffdef.h name when the layouts carry them. */
export function fastFunctionName(l: LuajitLayouts, ffid: number): string {
  const n = l.fastFunctions?.[ffid];
  return n ? n : `builtin#${ffid}`;
}

/** "@/path/x.lua" -> "/path/x.lua"; "=content_by_lua(nginx.conf:33)" -> as is without "="; else [string "..."]. */
export function chunkLabel(name: string): string {
  const clean = name.replace(/[^\x20-\x7e]/g, '?');
  if (clean.startsWith('@') || clean.startsWith('=')) return clean.slice(1, 200);
  const first = clean.split('\n')[0]!.slice(0, 60);
  return `[string "${first}${first.length < clean.length ? '...' : ''}"]`;
}

/**
 * Puts the Lua frames into a native call path: native frames up to the VM's C frame (those whose
 * sp <= cf: the interpreter and what it called), then the Lua frames, then the native callers of
 * the VM. `outer`: the VM's callers when the native walk did not get past the VM (JIT code has no
 * unwind info), from `resumeFromCframe`. Without `showInternal`, libluajit's own frames between
 * the leaf and the Lua frames (VM internals, unnamed in a stripped build) are dropped.
 */
export function spliceLuaFrames(
  native: readonly Frame[],
  spOffsets: readonly number[],
  cfOffset: number,
  lua: readonly Frame[],
  outer: readonly Frame[] | undefined,
  luajitModule: string | undefined,
  showInternal = false,
): Frame[] {
  let cut = native.length;
  for (let i = 0; i < native.length; i++) {
    if ((spOffsets[i] ?? Infinity) > cfOffset) {
      cut = i;
      break;
    }
  }
  let inner = native.slice(0, cut);
  if (!showInternal && luajitModule) {
    // Keep the leaf frames up to the first libluajit one, and named frames of other modules.
    const firstLj = inner.findIndex((f) => f.module === luajitModule);
    if (firstLj >= 0)
      inner = [
        ...inner.slice(0, firstLj),
        ...inner
          .slice(firstLj)
          .filter((f) => f.module !== luajitModule && f.module !== '[jit]' && f.module !== '[unknown]'),
      ];
  }
  const after = cut < native.length ? native.slice(cut) : (outer ?? []);
  return [...inner, ...lua, ...after];
}
