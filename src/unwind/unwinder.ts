// Offline DWARF CFI unwinder over a captured user stack (x86-64), as `perf --call-graph dwarf`
// does: registers at the probe + a copy of the stack from sp upwards -> return addresses.
//
// Per frame: find the module holding the pc, its unwind row at the pc (pc - 1 for callers: a
// return address may be past the end of a noreturn call's function), compute the CFA, recover the
// caller's registers (rsp = CFA, rip = return address). When no FDE covers a pc, fall back to the
// rbp chain (validated: inside the copy, strictly increasing). Memory reads outside the copy end
// the walk; the result says why it ended.

import { ByteReader } from '../binary/byte-reader.js';
import { isLeakscopeError } from '../model/errors.js';
import {
  DW_REG,
  DW_REG_NAMES,
  evaluateExpression,
  ExpressionUnavailable,
  type ExpressionContext,
  type RegisterRule,
  type UnwindRow,
} from '../formats/dwarf/cfi.js';
import type { ModuleCfi } from './cfi-cache.js';

/** x86-64 registers at the probe, as numbers (user addresses < 2^47 are exact). Missing = unknown. */
export interface X86Registers {
  rip: number;
  rsp: number;
  rbp?: number;
  rbx?: number;
  r12?: number;
  r13?: number;
  r14?: number;
  r15?: number;
  rax?: number;
  rdx?: number;
  rcx?: number;
  rsi?: number;
  rdi?: number;
  r8?: number;
  r9?: number;
  r10?: number;
  r11?: number;
}

/** What the unwinder needs of the module holding a runtime address. */
export interface UnwindModule {
  /** runtime address = ELF vaddr + loadBias. */
  loadBias: number;
  /** The module's CFI; undefined when it has none (frame-pointer fallback only). */
  cfi: ModuleCfi | undefined;
  /** For diagnostics. */
  path?: string;
}

/** Maps a runtime address to its module (see ModuleMap for one built from /proc/PID/maps modules). */
export interface ModuleResolver {
  moduleAt(runtimeAddr: number): UnwindModule | undefined;
}

export interface UnwindOptions {
  /** Frames to produce at most, the first (the probe's rip) included. Default 128. */
  maxDepth?: number;
  /**
   * The `[uprobes]` mapping [start, end): a return address inside it is the uretprobe trampoline and is
   * replaced by the next entry of `returnAddressOverrides` (innermost pending uretprobe first).
   */
  trampolineRange?: { start: number; end: number };
  /** Real return addresses recorded at entry probes, innermost first. */
  returnAddressOverrides?: readonly number[];
  /** Use the rbp chain when no FDE covers a pc. Default true. */
  framePointerFallback?: boolean;
  /** Reads memory outside the stack copy (8 bytes at addr), e.g. from a core file; default: none. */
  readMemory?: (runtimeAddr: number) => number | undefined;
}

export type StopReason =
  | 'outermost' // the return-address rule is undefined (_start, clone3, start_thread's caller)
  | 'pc-zero' // a return address of 0
  | 'stack-end' // a read outside the stack copy (the copy ran out)
  | 'max-depth'
  | 'no-module' // a pc in no known module, and no usable frame pointer
  | 'no-cfi' // no FDE covers the pc, and no usable frame pointer
  | 'register-unavailable' // a rule needs a register whose value is unknown
  | 'not-increasing' // the CFA did not move up the stack (a loop or corrupt data)
  | 'malformed-cfi' // the covering FDE failed to parse or evaluate
  | 'trampoline-unresolved'; // a uretprobe trampoline with no override left

/**
 * How a pc was found. 'signal-frame': restored from a signal frame (the interrupted instruction itself,
 * not a return address: symbolize it without the usual `pc - 1`).
 */
export type FrameSource = 'registers' | 'cfi' | 'signal-frame' | 'frame-pointer';

export interface UnwindResult {
  /** pcs[0] = the probe's rip; then return addresses (call site + instruction length), leaf first. */
  pcs: number[];
  /** How each pc was found (parallel to pcs). */
  sources: FrameSource[];
  /** Stack pointer of each frame (parallel to pcs); a caller's return address sits at sps[i + 1] - 8. */
  sps: number[];
  stopReason: StopReason;
  /** Details for the stop (the pc, the address that could not be read, the CFI error). */
  stopDetail?: string;
}

export const DEFAULT_MAX_DEPTH = 128;

const NREGS = 17; // DWARF 0..16 (rax..r15, return address)
const REG_NAMES: readonly (keyof X86Registers)[] = DW_REG_NAMES;
const RSP = DW_REG.rsp,
  RBP = DW_REG.rbp,
  RA = DW_REG.ra;
const TWO32 = 4294967296;

/** Ends the walk. Not an Error subclass: no stack trace is captured (cheap to throw per stack). */
class StopError {
  constructor(
    readonly reason: StopReason,
    readonly message: string,
  ) {}
}

/** Reads of the stack copy; 8-byte little-endian as number (exact below 2^53). */
class StackMemory {
  private readonly view: DataView;
  readonly end: number;
  constructor(
    readonly bytes: Uint8Array,
    readonly addr: number,
    private readonly fallback?: (a: number) => number | undefined,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.end = addr + bytes.byteLength;
  }
  inside(a: number, n = 8): boolean {
    return a >= this.addr && a + n <= this.end;
  }
  read64(a: number): number {
    if (a >= this.addr && a + 8 <= this.end) {
      const o = a - this.addr;
      return this.view.getUint32(o + 4, true) * TWO32 + this.view.getUint32(o, true);
    }
    const v = this.fallback?.(a);
    if (v === undefined)
      throw new StopError(
        'stack-end',
        `read of 8 bytes at 0x${a.toString(16)} outside the stack copy [0x${this.addr.toString(16)}, 0x${this.end.toString(16)})`,
      );
    return v;
  }
  readN(a: number, n: number): bigint | undefined {
    if (a >= this.addr && a + n <= this.end) {
      let v = 0n;
      for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.bytes[a - this.addr + i]!);
      return v;
    }
    if (n === 8) {
      const v = this.fallback?.(a);
      return v === undefined ? undefined : BigInt(v);
    }
    return undefined;
  }
}

function exprContext(regs: Float64Array, mem: StackMemory): ExpressionContext {
  return {
    register: (n) => (n < NREGS && !Number.isNaN(regs[n]!) ? BigInt(regs[n]!) : undefined),
    readMemory: (addr, size) => (addr < 0n || addr >= 1n << 53n ? undefined : mem.readN(Number(addr), size)),
  };
}

/**
 * Expressions glibc's signal trampoline uses for every register: `DW_OP_bregN off` and
 * `DW_OP_bregN off; DW_OP_deref`. Recognized once per expression and evaluated without BigInt.
 */
interface SimpleExpr {
  reg: number;
  offset: number;
  deref: boolean;
}
const simpleExprs = new WeakMap<Uint8Array, SimpleExpr | null>();

function simpleExpr(expr: Uint8Array): SimpleExpr | null {
  let hit = simpleExprs.get(expr);
  if (hit !== undefined) return hit;
  hit = null;
  const op = expr[0];
  if (op !== undefined && op >= 0x70 && op <= 0x8f) {
    // sleb128 offset, at most 4 bytes (|offset| < 2^27) for the fast path.
    let off = 0,
      mul = 1,
      i = 1,
      b = 0x80;
    for (; i < expr.length && i <= 4 && b & 0x80; i++) {
      b = expr[i]!;
      off += (b & 0x7f) * mul;
      mul *= 128;
    }
    if (!(b & 0x80)) {
      if (b & 0x40) off -= mul;
      if (i === expr.length) hit = { reg: op - 0x70, offset: off, deref: false };
      else if (i === expr.length - 1 && expr[i] === 0x06) hit = { reg: op - 0x70, offset: off, deref: true };
    }
  }
  simpleExprs.set(expr, hit);
  return hit;
}

function evalToNumber(expr: Uint8Array, regs: Float64Array, mem: StackMemory, initial: number[]): number {
  const simple = simpleExpr(expr);
  if (simple && simple.reg < NREGS) {
    const base = regs[simple.reg]!;
    if (Number.isNaN(base))
      throw new StopError('register-unavailable', `expression needs DWARF register ${simple.reg}`);
    return simple.deref ? mem.read64(base + simple.offset) : base + simple.offset;
  }
  try {
    const v = evaluateExpression(
      expr,
      exprContext(regs, mem),
      initial.map((x) => BigInt(x)),
    );
    if (v >= 1n << 53n) throw new StopError('malformed-cfi', `expression value 0x${v.toString(16)} beyond 2^53`);
    return Number(v);
  } catch (e) {
    if (e instanceof ExpressionUnavailable)
      throw new StopError(e.reason === 'memory' ? 'stack-end' : 'register-unavailable', e.message);
    throw e;
  }
}

function applyRule(rule: RegisterRule, cfa: number, regs: Float64Array, mem: StackMemory): number {
  switch (rule.kind) {
    case 'undefined':
      return NaN;
    case 'same-value':
      return NaN; // handled by the caller (keeps the old value)
    case 'offset':
      return mem.read64(cfa + rule.offset);
    case 'val-offset':
      return cfa + rule.offset;
    case 'register':
      return rule.register < NREGS ? regs[rule.register]! : NaN;
    case 'expression':
      return mem.read64(evalToNumber(rule.expr, regs, mem, [cfa]));
    case 'val-expression':
      return evalToNumber(rule.expr, regs, mem, [cfa]);
  }
}

/**
 * One CFI step: from this frame's registers (`regs`, modified in place into the caller's) and row.
 * Returns the caller's pc (the return address), or throws StopError.
 */
function cfiStep(row: UnwindRow, regs: Float64Array, mem: StackMemory): number {
  let cfa: number;
  const c = row.cfa;
  if (c.kind === 'register-offset') {
    const base = c.register < NREGS ? regs[c.register]! : NaN;
    if (Number.isNaN(base)) throw new StopError('register-unavailable', `CFA needs DWARF register ${c.register}`);
    cfa = base + c.offset;
  } else {
    cfa = evalToNumber(c.expr, regs, mem, []);
  }
  const raReg = row.returnAddressRegister;
  const raRule = row.registers.get(raReg);
  if (!raRule || raRule.kind === 'undefined') {
    // No rule = same value: the return address would be this frame's own pc (an endless loop).
    if (raRule?.kind === 'undefined')
      throw new StopError('outermost', 'return-address rule undefined (outermost frame)');
    throw new StopError('malformed-cfi', `no rule for the return-address register ${raReg}`);
  }
  // Compute every rule against the callee's values before writing any (rules read the old registers).
  const updates: Array<[number, number]> = [];
  let spRule = false;
  for (const [n, rule] of row.registers) {
    if (n >= NREGS || rule.kind === 'same-value') continue;
    if (n === RSP) spRule = true;
    updates.push([n, applyRule(rule, cfa, regs, mem)]);
  }
  const ra = raReg < NREGS ? applyRuleValue(updates, raReg) : NaN;
  for (const [n, v] of updates) regs[n] = v;
  // x86-64: the caller's sp is the CFA unless the row says otherwise (signal frames restore rsp).
  if (!spRule) regs[RSP] = cfa;
  return ra;
}

function applyRuleValue(updates: Array<[number, number]>, n: number): number {
  for (const [r, v] of updates) if (r === n) return v;
  return NaN;
}

/**
 * Unwinds one captured stack.
 * @param regs registers at the probe (the first pc is `regs.rip`)
 * @param stack bytes of the user stack copied from `stackAddr` (normally the sp at capture) upwards
 * @param resolver runtime address -> module with CFI and load bias
 */
export function unwindStack(
  regs: X86Registers,
  stack: Uint8Array,
  stackAddr: number,
  resolver: ModuleResolver,
  opts: UnwindOptions = {},
): UnwindResult {
  const maxDepth = Math.max(1, opts.maxDepth ?? DEFAULT_MAX_DEPTH);
  const fpFallback = opts.framePointerFallback ?? true;
  const overrides = opts.returnAddressOverrides ?? [];
  let nextOverride = 0;
  const tramp = opts.trampolineRange;
  const mem = new StackMemory(stack, stackAddr, opts.readMemory);
  const r = new Float64Array(NREGS).fill(NaN);
  for (let i = 0; i < NREGS; i++) {
    const v = regs[REG_NAMES[i]!];
    if (typeof v === 'number' && Number.isFinite(v)) r[i] = v;
  }
  r[RA] = NaN;
  const pcs: number[] = [];
  const sources: FrameSource[] = [];
  const sps: number[] = [];
  let pc = regs.rip;
  let source: FrameSource = 'registers';
  let exact = true; // pc is exact (first frame, or the caller of a signal frame), not a return address
  const stop = (reason: StopReason, detail?: string): UnwindResult => ({
    pcs,
    sources,
    sps,
    stopReason: reason,
    stopDetail: detail,
  });

  // Each iteration pushes one pc: bounded by maxDepth.
  for (;;) {
    if (pc === 0) return stop('pc-zero');
    if (tramp && pc >= tramp.start && pc < tramp.end && source !== 'registers') {
      if (nextOverride >= overrides.length)
        return stop(
          'trampoline-unresolved',
          `return address 0x${pc.toString(16)} is the uretprobe trampoline and no recorded return address is left`,
        );
      pc = overrides[nextOverride++]!;
      if (pc === 0) return stop('pc-zero');
    }
    pcs.push(pc);
    sources.push(source);
    sps.push(r[RSP]!);
    if (pcs.length >= maxDepth) return stop('max-depth');

    const lookupPc = exact ? pc : pc - 1;
    const mod = resolver.moduleAt(lookupPc);
    let row: UnwindRow | null = null;
    if (mod?.cfi) {
      try {
        row = mod.cfi.rowAt(lookupPc - mod.loadBias);
      } catch (e) {
        if (!isLeakscopeError(e)) throw e;
        return stop('malformed-cfi', `${mod.path ?? 'module'} at 0x${pc.toString(16)}: ${e.message}`);
      }
    }
    const oldSp = r[RSP]!;
    if (row) {
      let ra: number;
      try {
        ra = cfiStep(row, r, mem);
      } catch (e) {
        if (e instanceof StopError) return stop(e.reason, `at pc 0x${pc.toString(16)}: ${e.message}`);
        if (isLeakscopeError(e)) return stop('malformed-cfi', `at pc 0x${pc.toString(16)}: ${e.message}`);
        throw e;
      }
      if (Number.isNaN(ra)) return stop('register-unavailable', `return address unknown at pc 0x${pc.toString(16)}`);
      if (!row.signalFrame && !(r[RSP]! > oldSp)) {
        return stop(
          'not-increasing',
          `CFA 0x${r[RSP]!.toString(16)} not above sp 0x${oldSp.toString(16)} at pc 0x${pc.toString(16)}`,
        );
      }
      exact = row.signalFrame;
      pc = ra;
      source = row.signalFrame ? 'signal-frame' : 'cfi';
      continue;
    }
    // Frame-pointer fallback: [rbp] = caller's rbp, [rbp + 8] = return address, caller's sp = rbp + 16.
    const rbp = r[RBP]!;
    const why: StopReason = mod ? 'no-cfi' : 'no-module';
    const whyDetail = `${mod ? `no FDE in ${mod.path ?? 'module'}` : 'no module'} for pc 0x${pc.toString(16)}`;
    if (!fpFallback || Number.isNaN(rbp) || rbp % 8 !== 0 || !(rbp >= oldSp) || !mem.inside(rbp, 16)) {
      return stop(why, whyDetail);
    }
    const callerRbp = mem.read64(rbp);
    const ra = mem.read64(rbp + 8);
    r[RBP] = callerRbp;
    r[RSP] = rbp + 16;
    // Other callee-saved registers are unknown after a frame-pointer step.
    r[DW_REG.rbx] = r[DW_REG.r12] = r[DW_REG.r13] = r[DW_REG.r14] = r[DW_REG.r15] = NaN;
    exact = false;
    pc = ra;
    source = 'frame-pointer';
  }
}

/**
 * Registers from a copy of the kernel's `struct pt_regs` as a uprobe program sees it (x86-64; offsets
 * from shared/reference/ebpf.md: r15 0, r14 8, r13 16, r12 24, rbp 32, rbx 40, r11 48, r10 56, r9 64,
 * r8 72, rax 80, rcx 88, rdx 96, rsi 104, rdi 112, orig_rax 120, rip 128, cs 136, eflags 144, rsp 152).
 * `offset`: where the 168-byte struct starts in `bytes`. Values >= 2^53 lose precision (never addresses).
 */
export function x86RegistersFromPtRegs(bytes: Uint8Array, offset = 0): X86Registers {
  const r = new ByteReader(bytes, { label: 'pt_regs' });
  r.check(offset, 160);
  const q = (o: number): number => r.u64At(offset + o);
  return {
    r15: q(0),
    r14: q(8),
    r13: q(16),
    r12: q(24),
    rbp: q(32),
    rbx: q(40),
    r11: q(48),
    r10: q(56),
    r9: q(64),
    r8: q(72),
    rax: q(80),
    rcx: q(88),
    rdx: q(96),
    rsi: q(104),
    rdi: q(112),
    rip: q(128),
    rsp: q(152),
  };
}
