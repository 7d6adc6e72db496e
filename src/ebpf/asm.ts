// A small eBPF assembler: typed instruction builders, labels resolved at assemble time,
// map references patched into ld_imm64 at assemble time. Encoding: kernel
// include/uapi/linux/bpf.h and Documentation/bpf/standardization/instruction-set.rst.
//
// Each instruction is 8 bytes: code u8 | dst:4 (low) src:4 (high) | off s16 | imm s32.
// Builders take a register (R0..R10) or a number for the K (immediate) form:
//   mov64(R1, R6)   r1 = r6          mov64(R2, 88)   r2 = 88
//   jeq(R0, 0, 'out')                if r0 == 0 goto out
import { LeakscopeError } from '../model/errors.js';

export class Reg {
  constructor(readonly n: number) {}
  toString(): string {
    return `r${this.n}`;
  }
}
export const R0 = new Reg(0),
  R1 = new Reg(1),
  R2 = new Reg(2),
  R3 = new Reg(3),
  R4 = new Reg(4),
  R5 = new Reg(5);
export const R6 = new Reg(6),
  R7 = new Reg(7),
  R8 = new Reg(8),
  R9 = new Reg(9);
/** Read-only frame pointer; the stack is the 512 bytes below it. */
export const R10 = new Reg(10);
export const FP = R10;

// Instruction classes, sizes, modes, sources (bpf.h).
const LD = 0x00,
  LDX = 0x01,
  ST = 0x02,
  STX = 0x03,
  ALU = 0x04,
  JMP = 0x05,
  JMP32 = 0x06,
  ALU64 = 0x07;
const IMM = 0x00,
  MEM = 0x60;
const K = 0x00,
  X = 0x08;
export const Size = { b: 0x10, h: 0x08, w: 0x00, dw: 0x18 } as const;
export type SizeName = keyof typeof Size;
export const SIZE_BYTES: Record<SizeName, number> = { b: 1, h: 2, w: 4, dw: 8 };

export const AluOp = {
  add: 0x00,
  sub: 0x10,
  mul: 0x20,
  div: 0x30,
  or: 0x40,
  and: 0x50,
  lsh: 0x60,
  rsh: 0x70,
  neg: 0x80,
  mod: 0x90,
  xor: 0xa0,
  mov: 0xb0,
  arsh: 0xc0,
} as const;
export type AluOpName = keyof typeof AluOp;

export const JmpOp = {
  ja: 0x00,
  jeq: 0x10,
  jgt: 0x20,
  jge: 0x30,
  jset: 0x40,
  jne: 0x50,
  jsgt: 0x60,
  jsge: 0x70,
  call: 0x80,
  exit: 0x90,
  jlt: 0xa0,
  jle: 0xb0,
  jslt: 0xc0,
  jsle: 0xd0,
} as const;
export type JmpOpName = keyof typeof JmpOp;
export type CondName = Exclude<JmpOpName, 'ja' | 'call' | 'exit'>;

/** BPF helper function ids (enum bpf_func_id in bpf.h). */
export const Helper = {
  map_lookup_elem: 1,
  map_update_elem: 2,
  map_delete_elem: 3,
  probe_read: 4,
  ktime_get_ns: 5,
  trace_printk: 6,
  get_prandom_u32: 7,
  get_smp_processor_id: 8,
  tail_call: 12,
  get_current_pid_tgid: 14,
  get_current_uid_gid: 15,
  get_current_comm: 16,
  perf_event_output: 25,
  get_stackid: 27,
  get_current_task: 35,
  probe_read_str: 45,
  get_stack: 67,
  probe_read_user: 112,
  probe_read_kernel: 113,
  probe_read_user_str: 114,
  ringbuf_output: 130,
  ringbuf_reserve: 131,
  ringbuf_submit: 132,
  ringbuf_discard: 133,
  ringbuf_query: 134,
  get_ns_current_pid_tgid: 120,
  loop: 181,
} as const;
export type HelperName = keyof typeof Helper;

/** bpf_get_stackid / bpf_get_stack flags. */
export const BPF_F_USER_STACK = 0x100;
/** ld_imm64 src value meaning "imm is a map fd" (BPF_PSEUDO_MAP_FD). */
export const BPF_PSEUDO_MAP_FD = 1;

/** Anything with a map fd: resolved when the program is assembled, not when built. */
export interface MapRef {
  readonly fd: number;
  readonly name?: string;
}

export interface Insn {
  kind: 'insn';
  code: number;
  dst: number;
  src: number;
  off: number;
  imm: number;
  /** Jump target, resolved into `off` by assemble(). */
  target?: string;
  /** For ld_imm64: the high 32 bits (second slot's imm). */
  imm64Hi?: number;
  /** For ld_imm64 of a map: fd taken from here at assemble time. */
  map?: MapRef;
  comment?: string;
}
export interface Label {
  kind: 'label';
  name: string;
}
export type Item = Insn | Label;
/** A program body: items, possibly nested (macros return arrays). */
export type Body = ReadonlyArray<Item | Body>;

function s32(v: number, what: string): number {
  if (!Number.isInteger(v) || v < -0x8000_0000 || v > 0xffff_ffff) {
    throw new LeakscopeError('usage', `${what}: immediate ${v} does not fit in 32 bits`);
  }
  return v | 0;
}
function s16(v: number, what: string): number {
  if (!Number.isInteger(v) || v < -0x8000 || v > 0x7fff) {
    throw new LeakscopeError('usage', `${what}: offset ${v} does not fit in 16 bits`);
  }
  return v;
}
function insn(
  code: number,
  dst: Reg | number,
  src: Reg | number,
  off: number,
  imm: number,
  extra: Partial<Insn> = {},
): Insn {
  const d = typeof dst === 'number' ? dst : dst.n;
  const s = typeof src === 'number' ? src : src.n;
  return { kind: 'insn', code, dst: d, src: s, off: s16(off, 'insn'), imm: s32(imm, 'insn'), ...extra };
}

export function label(name: string): Label {
  return { kind: 'label', name };
}

// --- ALU -------------------------------------------------------------------------------
/** 64-bit ALU: dst = dst OP src (register: X form, number: K form). */
export function alu64(op: AluOpName, dst: Reg, src: Reg | number): Insn {
  return typeof src === 'number'
    ? insn(ALU64 | AluOp[op] | K, dst, 0, 0, src)
    : insn(ALU64 | AluOp[op] | X, dst, src, 0, 0);
}
/** 32-bit ALU (upper half of dst is zeroed). */
export function alu32(op: AluOpName, dst: Reg, src: Reg | number): Insn {
  return typeof src === 'number'
    ? insn(ALU | AluOp[op] | K, dst, 0, 0, src)
    : insn(ALU | AluOp[op] | X, dst, src, 0, 0);
}
export const mov64 = (dst: Reg, src: Reg | number): Insn => alu64('mov', dst, src);
export const mov32 = (dst: Reg, src: Reg | number): Insn => alu32('mov', dst, src);
export const add64 = (dst: Reg, src: Reg | number): Insn => alu64('add', dst, src);
export const sub64 = (dst: Reg, src: Reg | number): Insn => alu64('sub', dst, src);
export const mul64 = (dst: Reg, src: Reg | number): Insn => alu64('mul', dst, src);
export const div64 = (dst: Reg, src: Reg | number): Insn => alu64('div', dst, src);
export const mod64 = (dst: Reg, src: Reg | number): Insn => alu64('mod', dst, src);
export const and64 = (dst: Reg, src: Reg | number): Insn => alu64('and', dst, src);
export const or64 = (dst: Reg, src: Reg | number): Insn => alu64('or', dst, src);
export const xor64 = (dst: Reg, src: Reg | number): Insn => alu64('xor', dst, src);
export const lsh64 = (dst: Reg, src: Reg | number): Insn => alu64('lsh', dst, src);
export const rsh64 = (dst: Reg, src: Reg | number): Insn => alu64('rsh', dst, src);
export const arsh64 = (dst: Reg, src: Reg | number): Insn => alu64('arsh', dst, src);
export const neg64 = (dst: Reg): Insn => insn(ALU64 | AluOp.neg | K, dst, 0, 0, 0);

// --- 64-bit immediates and maps ----------------------------------------------------------
/** dst = imm (full 64 bits; two instruction slots). */
export function ldImm64(dst: Reg, value: bigint | number): Insn {
  const v = BigInt.asUintN(64, BigInt(value));
  const lo = Number(v & 0xffff_ffffn) | 0;
  const hi = Number(v >> 32n) | 0;
  return insn(LD | Size.dw | IMM, dst, 0, 0, lo, { imm64Hi: hi });
}
/** dst = pointer to `map` (ld_imm64 with BPF_PSEUDO_MAP_FD; the fd is read at assemble time). */
export function ldMap(dst: Reg, map: MapRef): Insn {
  return insn(LD | Size.dw | IMM, dst, BPF_PSEUDO_MAP_FD, 0, 0, { imm64Hi: 0, map, comment: `map ${map.name ?? ''}` });
}

// --- memory --------------------------------------------------------------------------------
/** dst = *(size *)(src + off) */
export function ldx(size: SizeName, dst: Reg, src: Reg, off: number): Insn {
  return insn(LDX | Size[size] | MEM, dst, src, off, 0);
}
/** *(size *)(dst + off) = src */
export function stx(size: SizeName, dst: Reg, off: number, src: Reg): Insn {
  return insn(STX | Size[size] | MEM, dst, src, off, 0);
}
/** *(size *)(dst + off) = imm */
export function st(size: SizeName, dst: Reg, off: number, imm: number): Insn {
  return insn(ST | Size[size] | MEM, dst, 0, off, imm);
}

// --- jumps ---------------------------------------------------------------------------------
/** if (dst OP src) goto target; 64-bit compare. */
export function jmp(op: CondName, dst: Reg, src: Reg | number, target: string): Insn {
  return typeof src === 'number'
    ? insn(JMP | JmpOp[op] | K, dst, 0, 0, src, { target })
    : insn(JMP | JmpOp[op] | X, dst, src, 0, 0, { target });
}
/** if ((u32)dst OP (u32)src) goto target. */
export function jmp32(op: CondName, dst: Reg, src: Reg | number, target: string): Insn {
  return typeof src === 'number'
    ? insn(JMP32 | JmpOp[op] | K, dst, 0, 0, src, { target })
    : insn(JMP32 | JmpOp[op] | X, dst, src, 0, 0, { target });
}
export const jeq = (d: Reg, s: Reg | number, t: string): Insn => jmp('jeq', d, s, t);
export const jne = (d: Reg, s: Reg | number, t: string): Insn => jmp('jne', d, s, t);
export const jgt = (d: Reg, s: Reg | number, t: string): Insn => jmp('jgt', d, s, t);
export const jge = (d: Reg, s: Reg | number, t: string): Insn => jmp('jge', d, s, t);
export const jlt = (d: Reg, s: Reg | number, t: string): Insn => jmp('jlt', d, s, t);
export const jle = (d: Reg, s: Reg | number, t: string): Insn => jmp('jle', d, s, t);
export const jset = (d: Reg, s: Reg | number, t: string): Insn => jmp('jset', d, s, t);
export const jsgt = (d: Reg, s: Reg | number, t: string): Insn => jmp('jsgt', d, s, t);
export const jslt = (d: Reg, s: Reg | number, t: string): Insn => jmp('jslt', d, s, t);
export const jsle = (d: Reg, s: Reg | number, t: string): Insn => jmp('jsle', d, s, t);
export const jsge = (d: Reg, s: Reg | number, t: string): Insn => jmp('jsge', d, s, t);
/** goto target */
export function ja(target: string): Insn {
  return insn(JMP | JmpOp.ja, 0, 0, 0, 0, { target });
}
/** r0 = helper(r1..r5); clobbers r1..r5. */
export function call(helper: HelperName): Insn {
  return insn(JMP | JmpOp.call, 0, 0, 0, Helper[helper], { comment: helper });
}
export function exit(): Insn {
  return insn(JMP | JmpOp.exit, 0, 0, 0, 0);
}

// --- macros ------------------------------------------------------------------------------
/** `struct pt_regs` offsets seen by a (u|k)probe program on x86-64 (arch/x86/include/asm/ptrace.h). */
export const PtRegs = {
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
  orig_rax: 120,
  rip: 128,
  cs: 136,
  eflags: 144,
  rsp: 152,
  ss: 160,
} as const;
/** SysV x86-64 integer argument registers, in order. */
export const ARG_REGS = ['rdi', 'rsi', 'rdx', 'rcx', 'r8', 'r9'] as const;

/** dst = ctx->REG (ctx: a register holding the pt_regs pointer). */
export function loadReg(dst: Reg, ctx: Reg, reg: keyof typeof PtRegs): Insn {
  return ldx('dw', dst, ctx, PtRegs[reg]);
}
/** dst = argument N (0-based) of the probed function, at function entry. */
export function loadArg(dst: Reg, ctx: Reg, n: number): Insn {
  const reg = ARG_REGS[n];
  if (!reg) throw new LeakscopeError('usage', `argument ${n}: only the first 6 integer arguments are in registers`);
  return loadReg(dst, ctx, reg);
}

/**
 * Process filter: `if (current tgid != tgid) goto target`. perf's `pid` is a thread id and
 * a uprobe may fire in any process that maps the file when another probe shares the
 * offset, so per-process programs check the thread-group id themselves.
 * Clobbers r0..r5 (a helper call).
 */
export function tgidFilter(tgid: number, target: string, pidns?: PidNamespace): Body {
  if (pidns) return nsTgidFilter(pidns, target);
  return [call('get_current_pid_tgid'), rsh64(R0, 32), jne(R0, tgid, target)];
}

/**
 * A pid namespace, as bpf_get_ns_current_pid_tgid names it: the kernel dev_t (MAJOR << 20 | MINOR)
 * and inode of its nsfs file (/proc/PID/ns/pid), and the target's tgid in it.
 */
export interface PidNamespace {
  dev: number;
  ino: number;
  tgid: number;
}

/**
 * Jumps to `target` unless the current task's tgid, as seen in `ns`, is `ns.tgid`:
 * bpf_get_ns_current_pid_tgid(dev, ino, &info, 8) (kernel >= 5.7) fills struct bpf_pidns_info
 * { u32 pid; u32 tgid; } and fails (non-zero) when the task is not in that namespace. For tracers
 * that run inside a pid namespace, where bpf_get_current_pid_tgid gives the initial namespace's
 * tgid, not the PID the user named. Uses the 8 bytes at fp-8 as scratch (before anything else).
 */
export function nsTgidFilter(ns: PidNamespace, target: string): Body {
  return [
    ldImm64(R1, ns.dev),
    ldImm64(R2, ns.ino),
    mov64(R3, R10),
    add64(R3, -8),
    mov64(R4, 8),
    call('get_ns_current_pid_tgid'),
    jne(R0, 0, target),
    ldx('w', R0, R10, -4),
    jne(R0, ns.tgid, target),
  ];
}

/** x86-64 page size: the unit in which user memory is present or not. */
export const PAGE_SIZE = 4096;

/**
 * Copies the longest readable prefix of user memory [src, src + len) to dst + dstOff.
 * bpf_probe_read_user cannot fault pages in and fails as a whole (zeroing dst) when any page
 * is absent, e.g. the never-touched random gap (up to 8 KiB, arch_align_stack) between a
 * main thread's first frame and its environment strings. So: try the whole range; then up
 * to the end of the page after src's page; then to the end of src's own page.
 * Contract: `len` holds [1, max] (the verifier must know it); `dst` points at >= dstOff + max
 * bytes; src, len, dst are callee-saved registers (r6..r9). On return `len` holds the bytes
 * copied (0 if none). Clobbers r0..r5. `id` makes the labels unique per use.
 */
export function readUserPrefix(dst: Reg, dstOff: number, src: Reg, len: Reg, max: number, id = 'rup'): Body {
  const copy = (next: string): Body => [
    jgt(len, max, `${id}_clamp_${next}`), // keep the verifier's bound on len after each change
    ja(`${id}_go_${next}`),
    label(`${id}_clamp_${next}`),
    mov64(len, max),
    label(`${id}_go_${next}`),
    mov64(R1, dst),
    add64(R1, dstOff),
    mov64(R2, len),
    mov64(R3, src),
    call('probe_read_user'),
    jeq(R0, 0, `${id}_done`),
  ];
  return [
    copy('1'),
    // Up to the end of the next page: 2 * PAGE_SIZE - (src & (PAGE_SIZE - 1)), in [4097, 8192].
    mov64(R2, src),
    and64(R2, PAGE_SIZE - 1),
    mov64(R1, 2 * PAGE_SIZE),
    sub64(R1, R2),
    jle(len, R1, `${id}_own_page`), // not shorter than what already failed
    mov64(len, R1),
    copy('2'),
    label(`${id}_own_page`),
    mov64(R2, src),
    and64(R2, PAGE_SIZE - 1),
    mov64(R1, PAGE_SIZE),
    sub64(R1, R2),
    jle(len, R1, `${id}_fail`),
    mov64(len, R1),
    copy('3'),
    label(`${id}_fail`),
    mov64(len, 0),
    label(`${id}_done`),
  ];
}

/** r0 = 0; exit */
export function returnZero(): Body {
  return [mov64(R0, 0), exit()];
}

function flatten(body: Body, out: Item[]): Item[] {
  for (const x of body) {
    if (Array.isArray(x)) flatten(x as Body, out);
    else out.push(x as Item);
  }
  return out;
}

/** Number of instruction slots an item occupies (ld_imm64 takes two). */
function slots(i: Insn): number {
  return i.code === (LD | Size.dw | IMM) ? 2 : 1;
}

/**
 * Encodes a program: resolves labels (offsets count from the next instruction) and map
 * fds. Throws 'usage' for an unknown or duplicate label.
 */
export function assemble(body: Body): { bytes: Buffer; insnCount: number; insns: Insn[] } {
  const items = flatten(body, []);
  const labels = new Map<string, number>();
  let pc = 0;
  for (const it of items) {
    if (it.kind === 'label') {
      if (labels.has(it.name)) throw new LeakscopeError('usage', `assemble: duplicate label "${it.name}"`);
      labels.set(it.name, pc);
    } else pc += slots(it);
  }
  const bytes = Buffer.alloc(pc * 8);
  const insns: Insn[] = [];
  pc = 0;
  for (const it of items) {
    if (it.kind === 'label') continue;
    let off = it.off;
    if (it.target !== undefined) {
      const to = labels.get(it.target);
      if (to === undefined) throw new LeakscopeError('usage', `assemble: unknown label "${it.target}" at insn ${pc}`);
      off = s16(to - (pc + 1), `jump to ${it.target}`);
    }
    let imm = it.imm;
    if (it.map) {
      if (!(it.map.fd >= 0))
        throw new LeakscopeError('usage', `assemble: map ${it.map.name ?? ''} is not created (no fd)`);
      imm = it.map.fd;
    }
    const o = pc * 8;
    bytes.writeUInt8(it.code, o);
    bytes.writeUInt8(((it.src & 0xf) << 4) | (it.dst & 0xf), o + 1);
    bytes.writeInt16LE(off, o + 2);
    bytes.writeInt32LE(imm, o + 4);
    insns.push({ ...it, off, imm });
    if (slots(it) === 2) {
      bytes.writeInt32LE(it.imm64Hi ?? 0, o + 12);
    }
    pc += slots(it);
  }
  return { bytes, insnCount: pc, insns };
}

/** A readable listing ("12: r1 = *(u64 *)(r6 + 112)"), for error messages and reviews. */
export function disassemble(body: Body): string {
  const { insns } = assemble(body);
  const lines: string[] = [];
  let pc = 0;
  const sizeName = (code: number): string =>
    ({ 0x10: 'u8', 0x08: 'u16', 0x00: 'u32', 0x18: 'u64' })[code & 0x18] ?? '?';
  for (const i of insns) {
    const cls = i.code & 7;
    const src = (i.code & X) !== 0 ? `r${i.src}` : `${i.imm}`;
    let text: string;
    if (cls === ALU64 || cls === ALU) {
      const op = Object.entries(AluOp).find(([, v]) => v === (i.code & 0xf0))?.[0] ?? '?';
      text = `${cls === ALU ? 'w' : 'r'}${i.dst} ${op}= ${src}`;
    } else if (cls === LDX)
      text = `r${i.dst} = *(${sizeName(i.code)} *)(r${i.src} ${i.off >= 0 ? '+' : '-'} ${Math.abs(i.off)})`;
    else if (cls === STX)
      text = `*(${sizeName(i.code)} *)(r${i.dst} ${i.off >= 0 ? '+' : '-'} ${Math.abs(i.off)}) = r${i.src}`;
    else if (cls === ST)
      text = `*(${sizeName(i.code)} *)(r${i.dst} ${i.off >= 0 ? '+' : '-'} ${Math.abs(i.off)}) = ${i.imm}`;
    else if (cls === LD)
      text = i.map ? `r${i.dst} = map[${i.map.name ?? i.imm}]` : `r${i.dst} = ${i.imm64Hi}:${i.imm} ll`;
    else if ((i.code & 0xf0) === JmpOp.call) text = `call ${i.comment ?? i.imm}`;
    else if ((i.code & 0xf0) === JmpOp.exit) text = 'exit';
    else if ((i.code & 0xf0) === JmpOp.ja) text = `goto ${i.target ?? i.off}`;
    else {
      const op = Object.entries(JmpOp).find(([, v]) => v === (i.code & 0xf0))?.[0] ?? '?';
      text = `if ${cls === JMP32 ? 'w' : 'r'}${i.dst} ${op} ${src} goto ${i.target ?? i.off}`;
    }
    lines.push(`${String(pc).padStart(4)}: ${text}`);
    pc += slots(i);
  }
  return lines.join('\n');
}
