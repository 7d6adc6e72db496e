// x86-64 instruction length decoder (64-bit mode): where each instruction starts and ends, what
// a branch targets, and the address a RIP-relative operand names. It decodes no semantics beyond
// that; anything it does not know is reported as unknown (never guessed), so a caller can refuse to
// trust a range it could not decode.
//
// Source: Intel SDM vol. 2 (2023), ch. 2 (instruction format: legacy prefixes, REX, VEX, EVEX,
// ModRM/SIB/displacement/immediate) and appendix A (opcode maps: one-byte, 0F, 0F38, 0F3A).
// Checked against `objdump -d` (GNU binutils) over whole binaries in decode.test.ts.

/** What kind of control transfer an instruction is (lengths alone need no more). */
export type X86Flow =
  | 'call-rel' // E8 rel32
  | 'jmp-rel' // E9 rel32, EB rel8
  | 'jcc' // 70-7F rel8, 0F 80-8F rel32
  | 'call-ind' // FF /2
  | 'jmp-ind' // FF /4
  | 'ret' // C2, C3
  | 'other';

export interface X86Insn {
  /** Offset of the first byte in the decoded buffer. */
  offset: number;
  /** Bytes, 1..15. */
  length: number;
  /** Opcode map: 0 one-byte, 1 0F, 2 0F38, 3 0F3A (VEX / EVEX maps by their map number). */
  map: number;
  opcode: number;
  /** ModRM byte, when the instruction has one. */
  modrm?: number;
  /** REX.W (or VEX/EVEX W). */
  rexW: boolean;
  /** Any REX prefix seen (40-4F), with its low four bits (W R X B). */
  rex: number;
  /** 66 operand-size prefix seen. */
  opsize: boolean;
  flow: X86Flow;
  /** Relative branch target, as an offset into the buffer's address space (next + rel). */
  branchTarget?: number;
  /** Offset (same space) a RIP-relative memory operand addresses (next + disp32). */
  ripTarget?: number;
}

/** Why a decode stopped: an opcode this decoder does not know, or bytes running out. */
export interface X86Unknown {
  offset: number;
  reason: string;
}

// Operand-size immediate: imm32, or imm16 with the 66 prefix.
const I8 = 1,
  IZ = 2, // imm16/32
  I16 = 3,
  I16_8 = 4, // enter: imm16 + imm8
  REL8 = 5,
  RELZ = 6, // rel32
  MOFFS = 7, // 8 bytes (4 with 67)
  IV = 8; // imm16/32/64 (B8-BF mov)

// One-byte map: -1 invalid in 64-bit mode; bit 0x10 = ModRM; low nibble = immediate kind.
const M = 0x10;
const X = -1;
const PFX = -2; // prefix (handled before the table)
// biome-ignore format: an opcode table reads best as a 16x16 grid
const ONE_BYTE: readonly number[] = [
  /*0*/ M, M, M, M, I8, IZ, X, X, M, M, M, M, I8, IZ, X, PFX,
  /*1*/ M, M, M, M, I8, IZ, X, X, M, M, M, M, I8, IZ, X, X,
  /*2*/ M, M, M, M, I8, IZ, PFX, X, M, M, M, M, I8, IZ, PFX, X,
  /*3*/ M, M, M, M, I8, IZ, PFX, X, M, M, M, M, I8, IZ, PFX, X,
  /*4*/ PFX, PFX, PFX, PFX, PFX, PFX, PFX, PFX, PFX, PFX, PFX, PFX, PFX, PFX, PFX, PFX,
  /*5*/ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  /*6*/ X, X, PFX, M, PFX, PFX, PFX, PFX, IZ, M | IZ, I8, M | I8, 0, 0, 0, 0,
  /*7*/ REL8, REL8, REL8, REL8, REL8, REL8, REL8, REL8, REL8, REL8, REL8, REL8, REL8, REL8, REL8, REL8,
  /*8*/ M | I8, M | IZ, X, M | I8, M, M, M, M, M, M, M, M, M, M, M, M,
  /*9*/ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, X, 0, 0, 0, 0, 0,
  /*A*/ MOFFS, MOFFS, MOFFS, MOFFS, 0, 0, 0, 0, I8, IZ, 0, 0, 0, 0, 0, 0,
  /*B*/ I8, I8, I8, I8, I8, I8, I8, I8, IV, IV, IV, IV, IV, IV, IV, IV,
  /*C*/ M | I8, M | I8, I16, 0, PFX, PFX, M | I8, M | IZ, I16_8, 0, I16, 0, 0, I8, X, 0,
  /*D*/ M, M, M, M, X, X, X, 0, M, M, M, M, M, M, M, M,
  /*E*/ REL8, REL8, REL8, REL8, I8, I8, I8, I8, RELZ, RELZ, X, REL8, 0, 0, 0, 0,
  /*F*/ PFX, 0, PFX, PFX, 0, 0, M, M, 0, 0, 0, 0, 0, 0, M, M,
];

// Two-byte map (0F xx).
// biome-ignore format: an opcode table reads best as a 16x16 grid
const TWO_BYTE: readonly number[] = [
  /*0*/ M, M, M, M, X, 0, 0, 0, 0, 0, X, 0, X, M, 0, X,
  /*1*/ M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,
  /*2*/ M, M, M, M, X, X, X, X, M, M, M, M, M, M, M, M,
  /*3*/ 0, 0, 0, 0, 0, 0, X, 0, PFX, X, PFX, X, X, X, X, X,
  /*4*/ M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,
  /*5*/ M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,
  /*6*/ M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,
  /*7*/ M | I8, M | I8, M | I8, M | I8, M, M, M, 0, M, M, X, X, M, M, M, M,
  /*8*/ RELZ, RELZ, RELZ, RELZ, RELZ, RELZ, RELZ, RELZ, RELZ, RELZ, RELZ, RELZ, RELZ, RELZ, RELZ, RELZ,
  /*9*/ M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,
  /*A*/ 0, 0, 0, M, M | I8, M, X, X, 0, 0, 0, M, M | I8, M, M, M,
  /*B*/ M, M, M, M, M, M, M, M, M, M, M | I8, M, M, M, M, M,
  /*C*/ M, M, M | I8, M, M | I8, M | I8, M | I8, M, 0, 0, 0, 0, 0, 0, 0, 0,
  /*D*/ M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,
  /*E*/ M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,
  /*F*/ M, M, M, M, M, M, M, M, M, M, M, M, M, M, M, M,
];

/** VEX/EVEX map 1 (0F) opcodes that take an imm8 (pshufd & co., shifts by imm, cmpps, pinsrw, pextrw, shufps). */
const MAP1_IMM8 = new Set([0x70, 0x71, 0x72, 0x73, 0xc2, 0xc4, 0xc5, 0xc6]);

const MAX_INSN = 15;

/**
 * Decodes the instruction at `code[offset]`. `end` bounds the bytes it may use (default the
 * buffer's end). Returns the instruction, or an X86Unknown saying why not.
 */
export function decodeX86(code: Uint8Array, offset: number, end = code.byteLength): X86Insn | X86Unknown {
  const limit = Math.min(end, offset + MAX_INSN);
  let p = offset;
  let rex = 0,
    opsize = false,
    adsize = false;
  // Legacy prefixes (any order) and REX (only valid directly before the opcode: a legacy prefix after it cancels it).
  for (;;) {
    if (p + 1 > limit) return { offset, reason: 'truncated' };
    const b = code[p]!;
    if (b === 0x66) opsize = true;
    else if (b === 0x67) adsize = true;
    else if (b === 0xf0 || b === 0xf2 || b === 0xf3 || b === 0x2e || b === 0x36 || b === 0x3e || b === 0x26) {
      /* lock, rep, segment */
    } else if (b === 0x64 || b === 0x65) {
      /* fs, gs */
    } else if (b >= 0x40 && b <= 0x4f) {
      rex = b;
      p++;
      if (p + 1 > limit) return { offset, reason: 'truncated' };
      const n = code[p]!;
      if (isLegacyPrefix(n) || (n >= 0x40 && n <= 0x4f)) continue; // REX cancelled by what follows
      break;
    } else break;
    rex = 0;
    p++;
  }
  const rexW = (rex & 8) !== 0;
  const op0 = code[p++]!;

  // VEX (C4 3-byte, C5 2-byte) and EVEX (62): always in 64-bit mode. ModRM follows the opcode.
  if (op0 === 0xc4 || op0 === 0xc5 || op0 === 0x62) {
    if (rex || opsize) return { offset, reason: 'VEX/EVEX after a REX or 66 prefix' };
    let map: number,
      w = false;
    if (op0 === 0xc5) {
      if (p + 1 > limit) return { offset, reason: 'truncated' };
      p += 1;
      map = 1;
    } else if (op0 === 0xc4) {
      if (p + 2 > limit) return { offset, reason: 'truncated' };
      map = code[p]! & 0x1f;
      w = (code[p + 1]! & 0x80) !== 0;
      p += 2;
    } else {
      if (p + 3 > limit) return { offset, reason: 'truncated' };
      const p0 = code[p]!,
        p1 = code[p + 1]!;
      if ((p0 & 0x08) !== 0 || (p1 & 0x04) === 0) return { offset, reason: 'EVEX reserved bits' };
      map = p0 & 0x07;
      w = (p1 & 0x80) !== 0;
      p += 3;
    }
    if (map < 1 || map > 3) return { offset, reason: `VEX/EVEX opcode map ${map}` };
    if (p + 1 > limit) return { offset, reason: 'truncated' };
    const opcode = code[p++]!;
    // VEX 0F 77 (vzeroupper / vzeroall) has no ModRM; every other VEX/EVEX instruction has one.
    if (op0 !== 0x62 && map === 1 && opcode === 0x77)
      return makeInsn(code, offset, p, 1, opcode, undefined, w, rex, opsize, 'other');
    const mr = modrmLength(code, p, limit);
    if (mr < 0) return { offset, reason: 'truncated' };
    const imm = map === 3 || (map === 1 && MAP1_IMM8.has(opcode)) ? 1 : 0;
    const modrm = code[p]!;
    const ripDisp = mr & RIP_REL ? p + 1 : undefined;
    p += mr & 0xff;
    if (p + imm > limit) return { offset, reason: 'truncated' };
    p += imm;
    return makeInsn(code, offset, p, map, opcode, modrm, w, rex, opsize, 'other', undefined, ripDisp);
  }

  let map = 0,
    opcode = op0,
    kind: number;
  if (op0 === 0x0f) {
    if (p + 1 > limit) return { offset, reason: 'truncated' };
    opcode = code[p++]!;
    if (opcode === 0x38 || opcode === 0x3a) {
      if (p + 1 > limit) return { offset, reason: 'truncated' };
      map = opcode === 0x38 ? 2 : 3;
      opcode = code[p++]!;
      kind = map === 2 ? M : M | I8;
    } else {
      map = 1;
      kind = TWO_BYTE[opcode]!;
    }
  } else {
    kind = ONE_BYTE[op0]!;
  }
  if (kind === X || kind === PFX)
    return { offset, reason: `invalid opcode ${map ? `0F ${hex(opcode)}` : hex(opcode)}` };
  if (map === 1 && opcode === 0x0f) return { offset, reason: '3DNow! (0F 0F)' };

  let modrm: number | undefined;
  let ripDisp: number | undefined;
  if (kind & M) {
    if (p + 1 > limit) return { offset, reason: 'truncated' };
    modrm = code[p]!;
    // 8F with reg != 0 is AMD XOP, not pop.
    if (map === 0 && op0 === 0x8f && ((modrm >> 3) & 7) !== 0) return { offset, reason: 'XOP (8F /1-7)' };
    const mr = modrmLength(code, p, limit);
    if (mr < 0) return { offset, reason: 'truncated' };
    if (mr & RIP_REL) ripDisp = p + 1;
    p += mr & 0xff;
  }
  let immKind = kind & 0x0f;
  // Groups 3 (F6 / F7): only /0 and /1 (test) take an immediate.
  if (map === 0 && (op0 === 0xf6 || op0 === 0xf7) && modrm !== undefined && ((modrm >> 3) & 7) <= 1)
    immKind = op0 === 0xf6 ? I8 : IZ;
  let size = 0;
  switch (immKind) {
    case 0:
      break;
    case I8:
    case REL8:
      size = 1;
      break;
    case IZ:
      size = opsize ? 2 : 4;
      break;
    case RELZ:
      // 66 on a near branch: Intel ignores it, AMD takes rel16. Not emitted by compilers: refuse.
      if (opsize) return { offset, reason: '66-prefixed rel32 branch' };
      size = 4;
      break;
    case I16:
      size = 2;
      break;
    case I16_8:
      size = 3;
      break;
    case MOFFS:
      size = adsize ? 4 : 8;
      break;
    case IV:
      size = rexW ? 8 : opsize ? 2 : 4;
      break;
  }
  if (p + size > limit) return { offset, reason: 'truncated' };
  const immAt = p;
  p += size;

  let flow: X86Flow = 'other';
  let branchTarget: number | undefined;
  if (immKind === REL8 || immKind === RELZ) {
    const rel = size === 1 ? (code[immAt]! << 24) >> 24 : readI32(code, immAt);
    branchTarget = p + rel;
    if (map === 1 || (map === 0 && op0 >= 0x70 && op0 <= 0x7f)) flow = 'jcc';
    else if (op0 === 0xe8) flow = 'call-rel';
    else if (op0 === 0xe9 || op0 === 0xeb) flow = 'jmp-rel';
    // E0-E3 (loop, jrcxz) branch too: 'other' with a target.
  } else if (map === 0 && (op0 === 0xc3 || op0 === 0xc2)) flow = 'ret';
  else if (map === 0 && op0 === 0xff && modrm !== undefined) {
    const reg = (modrm >> 3) & 7;
    if (reg === 2) flow = 'call-ind';
    else if (reg === 4) flow = 'jmp-ind';
    else if (reg === 7) return { offset, reason: 'FF /7' };
  }
  return makeInsn(code, offset, p, map, opcode, modrm, rexW, rex, opsize, flow, branchTarget, ripDisp);
}

function makeInsn(
  code: Uint8Array,
  offset: number,
  end: number,
  map: number,
  opcode: number,
  modrm: number | undefined,
  rexW: boolean,
  rex: number,
  opsize: boolean,
  flow: X86Flow,
  branchTarget?: number,
  ripDispAt?: number,
): X86Insn {
  // Every field present (undefined when absent): one object shape for all instructions.
  return {
    offset,
    length: end - offset,
    map,
    opcode,
    modrm,
    rexW,
    rex,
    opsize,
    flow,
    branchTarget,
    ripTarget: ripDispAt !== undefined ? end + readI32(code, ripDispAt) : undefined,
  };
}

/**
 * Bytes of ModRM + SIB + displacement at `code[p]`, plus RIP_REL when the operand is RIP-relative
 * (its disp32 follows the ModRM byte); -1 when the bytes run out. 32-bit addressing (67) in 64-bit
 * mode has the same lengths (there are no 16-bit forms).
 */
function modrmLength(code: Uint8Array, p: number, limit: number): number {
  if (p >= limit) return -1;
  const modrm = code[p]!;
  const mod = modrm >> 6,
    rm = modrm & 7;
  let n = 1;
  if (mod === 3) return 1;
  if (rm === 4) {
    if (p + 1 >= limit) return -1;
    n++;
    if (mod === 0 && (code[p + 1]! & 7) === 5) n += 4;
  } else if (mod === 0 && rm === 5) {
    return p + 5 > limit ? -1 : 5 | RIP_REL;
  }
  if (mod === 1) n += 1;
  else if (mod === 2) n += 4;
  return p + n > limit ? -1 : n;
}
const RIP_REL = 0x100;

function isLegacyPrefix(b: number): boolean {
  return (
    b === 0x66 ||
    b === 0x67 ||
    b === 0xf0 ||
    b === 0xf2 ||
    b === 0xf3 ||
    b === 0x2e ||
    b === 0x36 ||
    b === 0x3e ||
    b === 0x26 ||
    b === 0x64 ||
    b === 0x65
  );
}

function readI32(code: Uint8Array, i: number): number {
  return code[i]! | (code[i + 1]! << 8) | (code[i + 2]! << 16) | (code[i + 3]! << 24) | 0;
}

function hex(b: number): string {
  return b.toString(16).padStart(2, '0').toUpperCase();
}

export function isUnknown(d: X86Insn | X86Unknown): d is X86Unknown {
  return 'reason' in d;
}

/** A linear decode of [start, end) of `code`: every instruction, or where and why it stopped. */
export interface X86Sweep {
  insns: X86Insn[];
  /** Set when an instruction could not be decoded (the sweep stops there), or the last one ran past `end`. */
  unknown?: X86Unknown;
}

/**
 * Decodes instructions one after another from `start` to `end` (a function's range, e.g. an FDE's):
 * every start it yields is an instruction boundary provided [start, end) holds only code.
 */
export function sweepX86(code: Uint8Array, start: number, end: number): X86Sweep {
  const insns: X86Insn[] = [];
  let p = start;
  // Each step advances by >= 1 byte: bounded by end - start.
  while (p < end) {
    const d = decodeX86(code, p, end);
    if (isUnknown(d)) return { insns, unknown: d };
    insns.push(d);
    p += d.length;
  }
  return { insns };
}
