// DWARF call frame information: `.eh_frame` (LSB 5.0 "Exception Frames") and `.debug_frame`
// (DWARF 5 section 6.4). Parses CIEs / FDEs, decodes DW_EH_PE pointer encodings, and runs the
// CFA program of an FDE to the unwind row that holds at one address.
//
// Pure functions over bytes: no file access, every loop bounded by the input's length or by
// an explicit cap, malformed input -> LeakscopeError('malformed') (never a hang or a RangeError).
// Addresses are ELF virtual addresses (`vaddr`); offsets are offsets into the section's bytes.
// Upstream models: gimli `src/read/cfi.rs`, libgcc `unwind-dw2-fde.c` / `unwind-dw2.c`.

import { ByteReader } from '../../binary/byte-reader.js';
import { LeakscopeError, isLeakscopeError } from '../../model/errors.js';

// ---- DW_EH_PE pointer encodings (LSB 5.0, table 10.5.1 / 10.5.2) ----
export const DW_EH_PE_absptr = 0x00,
  DW_EH_PE_uleb128 = 0x01,
  DW_EH_PE_udata2 = 0x02,
  DW_EH_PE_udata4 = 0x03,
  DW_EH_PE_udata8 = 0x04,
  DW_EH_PE_signed = 0x08,
  DW_EH_PE_sleb128 = 0x09,
  DW_EH_PE_sdata2 = 0x0a,
  DW_EH_PE_sdata4 = 0x0b,
  DW_EH_PE_sdata8 = 0x0c;
export const DW_EH_PE_pcrel = 0x10,
  DW_EH_PE_textrel = 0x20,
  DW_EH_PE_datarel = 0x30,
  DW_EH_PE_funcrel = 0x40,
  DW_EH_PE_aligned = 0x50,
  DW_EH_PE_indirect = 0x80,
  DW_EH_PE_omit = 0xff;

/** x86-64 DWARF register numbers (System V psABI, figure 3.36). */
export const DW_REG = {
  rax: 0,
  rdx: 1,
  rcx: 2,
  rbx: 3,
  rsi: 4,
  rdi: 5,
  rbp: 6,
  rsp: 7,
  r8: 8,
  r9: 9,
  r10: 10,
  r11: 11,
  r12: 12,
  r13: 13,
  r14: 14,
  r15: 15,
  ra: 16,
} as const;

/** DWARF register number (index) -> x86-64 register name; column 16, the return address, is rip. */
export const DW_REG_NAMES = [
  'rax',
  'rdx',
  'rcx',
  'rbx',
  'rsi',
  'rdi',
  'rbp',
  'rsp',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
  'rip',
] as const;

/** Bases for relative pointer encodings; each is a vaddr. `pcrel` uses the field's own vaddr. */
export interface PointerBases {
  /** vaddr of byte 0 of the bytes being read (pcrel base = this + field offset). */
  sectionVaddr: number;
  textVaddr?: number; // DW_EH_PE_textrel base (.text)
  dataVaddr?: number; // DW_EH_PE_datarel base (.got for .eh_frame; .eh_frame_hdr for its own table)
  funcVaddr?: number; // DW_EH_PE_funcrel base (the FDE's pc_begin)
}

export interface DecodedPointer {
  value: number;
  /** DW_EH_PE_indirect: `value` is the vaddr of a pointer to the real value (not dereferenced here). */
  indirect: boolean;
}

// biome-ignore lint/correctness/noPrecisionLoss: 2^64 is exact as a double
const TWO64 = 18446744073709551616;

function malformed(r: ByteReader, msg: string, off = r.pos): LeakscopeError {
  return new LeakscopeError('malformed', `${r.label}: ${msg} at offset 0x${(r.base + off).toString(16)}`);
}

/** Byte size of the value part of an encoding, or -1 when it is variable (LEB128). */
export function encodedSize(enc: number, addressSize = 8): number {
  switch (enc & 0x0f) {
    case DW_EH_PE_absptr:
    case DW_EH_PE_signed:
      return addressSize;
    case DW_EH_PE_udata2:
    case DW_EH_PE_sdata2:
      return 2;
    case DW_EH_PE_udata4:
    case DW_EH_PE_sdata4:
      return 4;
    case DW_EH_PE_udata8:
    case DW_EH_PE_sdata8:
      return 8;
    case DW_EH_PE_uleb128:
    case DW_EH_PE_sleb128:
      return -1;
    default:
      return 0; // invalid
  }
}

/**
 * Reads one pointer with encoding `enc` at the cursor (DW_EH_PE_omit must be handled by the caller).
 * Results wrap modulo 2^64 the way the C unwinders compute them; values >= 2^53 lose precision
 * (no x86-64 user address is that large).
 */
export function readEncodedPointer(r: ByteReader, enc: number, bases: PointerBases, addressSize = 8): DecodedPointer {
  if (enc === DW_EH_PE_omit) throw malformed(r, 'pointer encoding DW_EH_PE_omit where a value is required');
  const app = enc & 0x70;
  if (app === DW_EH_PE_aligned) {
    const pad = (addressSize - ((bases.sectionVaddr + r.pos) % addressSize)) % addressSize;
    r.skip(pad);
  }
  const fieldOff = r.pos;
  let v: number;
  switch (enc & 0x0f) {
    case DW_EH_PE_absptr:
      v = addressSize === 4 ? r.u32() : r.u64();
      break;
    case DW_EH_PE_signed:
      v = addressSize === 4 ? r.i32() : r.i64();
      break;
    case DW_EH_PE_uleb128:
      v = r.uleb();
      break;
    case DW_EH_PE_udata2:
      v = r.u16();
      break;
    case DW_EH_PE_udata4:
      v = r.u32();
      break;
    case DW_EH_PE_udata8:
      v = r.u64();
      break;
    case DW_EH_PE_sleb128:
      v = r.sleb();
      break;
    case DW_EH_PE_sdata2:
      v = r.i16();
      break;
    case DW_EH_PE_sdata4:
      v = r.i32();
      break;
    case DW_EH_PE_sdata8:
      v = r.i64();
      break;
    default:
      throw malformed(r, `unknown pointer encoding 0x${enc.toString(16)}`, fieldOff);
  }
  let base = 0;
  switch (app) {
    case DW_EH_PE_absptr:
    case DW_EH_PE_aligned:
      break;
    case DW_EH_PE_pcrel:
      base = bases.sectionVaddr + fieldOff;
      break;
    case DW_EH_PE_textrel:
      if (bases.textVaddr === undefined) throw malformed(r, 'DW_EH_PE_textrel without a text base', fieldOff);
      base = bases.textVaddr;
      break;
    case DW_EH_PE_datarel:
      if (bases.dataVaddr === undefined) throw malformed(r, 'DW_EH_PE_datarel without a data base', fieldOff);
      base = bases.dataVaddr;
      break;
    case DW_EH_PE_funcrel:
      if (bases.funcVaddr === undefined) throw malformed(r, 'DW_EH_PE_funcrel outside an FDE', fieldOff);
      base = bases.funcVaddr;
      break;
    default:
      throw malformed(r, `unknown pointer application 0x${app.toString(16)}`, fieldOff);
  }
  let value = base + v;
  if (value >= TWO64) value -= TWO64;
  else if (value < 0) value += TWO64;
  return { value, indirect: (enc & DW_EH_PE_indirect) !== 0 };
}

// ---- CIE / FDE model ----

export type CfiKind = 'eh_frame' | 'debug_frame';

/** A CFI section's bytes and where they sit in the ELF's address space. */
export interface CfiSection {
  kind: CfiKind;
  bytes: Uint8Array;
  /** vaddr of bytes[0] (.eh_frame is loaded; for .debug_frame only used in messages, may be 0). */
  vaddr: number;
  textVaddr?: number;
  dataVaddr?: number;
  /** Label for errors, e.g. "/usr/lib/x86_64-linux-gnu/libc.so.6 .eh_frame". */
  label?: string;
}

export interface Cie {
  /** Offset of the CIE's length field in the section. */
  offset: number;
  version: number;
  augmentation: string;
  addressSize: number;
  codeAlign: number;
  dataAlign: number;
  returnAddressRegister: number;
  /** Encoding of FDE pc_begin / pc_range (absptr when the CIE has no 'R'). */
  fdeEncoding: number;
  lsdaEncoding: number; // DW_EH_PE_omit when none
  personality?: DecodedPointer; // 'P'
  /** 'S': frames of this CIE are signal frames (the caller's pc is exact, not a return address). */
  signalFrame: boolean;
  /** Whether FDEs carry an augmentation-data length ('z'). */
  hasAugmentationData: boolean;
  /** [start, end) of the initial instructions in the section. */
  instructionsStart: number;
  instructionsEnd: number;
}

export interface Fde {
  offset: number; // of the length field
  cie: Cie;
  pcBegin: number; // vaddr
  pcEnd: number; // vaddr, exclusive
  lsda?: DecodedPointer;
  instructionsStart: number;
  instructionsEnd: number;
}

/** Entry header: where its body starts and ends, and the CIE id / pointer field. */
interface EntryHeader {
  offset: number;
  end: number; // offset past the entry
  idOffset: number; // offset of the CIE id / CIE pointer field
  id: number;
  bodyStart: number; // offset after the id
  dwarf64: boolean;
  terminator: boolean; // length 0 (.eh_frame terminator)
}

function sectionLabel(sec: CfiSection): string {
  return sec.label ?? (sec.kind === 'eh_frame' ? '.eh_frame' : '.debug_frame');
}
function sectionReader(sec: CfiSection): ByteReader {
  return new ByteReader(sec.bytes, { label: sectionLabel(sec) });
}

function readEntryHeader(r: ByteReader, offset: number): EntryHeader {
  r.seek(offset);
  let len = r.u32();
  let dwarf64 = false;
  if (len === 0xffffffff) {
    len = r.u64();
    dwarf64 = true;
  } else if (len >= 0xfffffff0) throw malformed(r, `reserved initial length 0x${len.toString(16)}`, offset);
  if (len === 0) return { offset, end: r.pos, idOffset: r.pos, id: 0, bodyStart: r.pos, dwarf64, terminator: true };
  const start = r.pos;
  const end = start + len;
  if (end > r.length)
    throw malformed(r, `entry length ${len} runs past the section end (0x${r.length.toString(16)})`, offset);
  const idOffset = r.pos;
  const idSize = dwarf64 ? 8 : 4;
  if (len < idSize) throw malformed(r, `entry length ${len} too short for its id`, offset);
  const id = dwarf64 ? r.u64() : r.u32();
  return { offset, end, idOffset, id, bodyStart: r.pos, dwarf64, terminator: false };
}

function isCieId(sec: CfiSection, h: EntryHeader): boolean {
  if (sec.kind === 'eh_frame') return h.id === 0;
  // A 64-bit id read as a number rounds to 2^64, as the literal does.
  // biome-ignore lint/correctness/noPrecisionLoss: compared with the id as read (a double), not as an integer
  return h.dwarf64 ? h.id === 0xffffffffffffffff : h.id === 0xffffffff;
}

/** Run `fn`, turning truncation inside a length-delimited entry into 'malformed'. */
function asMalformed<T>(label: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (isLeakscopeError(e)) {
      if (e.code === 'truncated') throw new LeakscopeError('malformed', e.message, { cause: e });
      throw e;
    }
    throw new LeakscopeError('malformed', `${label}: ${(e as Error).message}`, { cause: e });
  }
}

function parseCieBody(sec: CfiSection, r: ByteReader, h: EntryHeader): Cie {
  const er = new ByteReader(sec.bytes.subarray(0, h.end), { label: r.label });
  er.seek(h.bodyStart);
  const version = er.u8();
  if (sec.kind === 'eh_frame' ? version !== 1 && version !== 3 : version !== 1 && version !== 3 && version !== 4) {
    throw malformed(er, `unsupported CIE version ${version}`, h.offset);
  }
  const augmentation = er.cstring(64);
  let addressSize = 8;
  if (version >= 4) {
    addressSize = er.u8();
    const segSize = er.u8();
    if (addressSize !== 4 && addressSize !== 8) throw malformed(er, `CIE address size ${addressSize}`, h.offset);
    if (segSize !== 0)
      throw malformed(er, `CIE segment selector size ${segSize} (segmented addressing unsupported)`, h.offset);
  }
  // "eh" (pre-gcc-3 EH data pointer) would go here; nobody has emitted it on x86-64.
  const codeAlign = er.uleb();
  const dataAlign = er.sleb();
  const returnAddressRegister = version === 1 ? er.u8() : er.uleb();
  const cie: Cie = {
    offset: h.offset,
    version,
    augmentation,
    addressSize,
    codeAlign,
    dataAlign,
    returnAddressRegister,
    fdeEncoding: DW_EH_PE_absptr,
    lsdaEncoding: DW_EH_PE_omit,
    signalFrame: false,
    hasAugmentationData: false,
    instructionsStart: 0,
    instructionsEnd: h.end,
  };
  if (augmentation.length > 0) {
    if (augmentation[0] !== 'z') throw malformed(er, `unsupported augmentation "${augmentation}"`, h.offset);
    cie.hasAugmentationData = true;
    const augLen = er.uleb();
    const augEnd = er.pos + augLen;
    if (augEnd > h.end) throw malformed(er, `augmentation data (${augLen} bytes) runs past the CIE`, h.offset);
    const bases: PointerBases = { sectionVaddr: sec.vaddr, textVaddr: sec.textVaddr, dataVaddr: sec.dataVaddr };
    for (let i = 1; i < augmentation.length; i++) {
      const c = augmentation[i];
      if (c === 'L') cie.lsdaEncoding = er.u8();
      else if (c === 'R') cie.fdeEncoding = er.u8();
      else if (c === 'P') {
        const enc = er.u8();
        cie.personality = readEncodedPointer(er, enc, bases, addressSize);
      } else if (c === 'S') cie.signalFrame = true;
      else if (c === 'B' || c === 'G') {
        /* AArch64 BTI / MTE markers: no data */
      } else break; // unknown: the 'z' length lets us skip the rest (as libgcc does)
      if (er.pos > augEnd) throw malformed(er, 'augmentation fields run past the augmentation data', h.offset);
    }
    er.seek(augEnd);
  }
  if (encodedSize(cie.fdeEncoding, addressSize) === 0)
    throw malformed(er, `bad FDE pointer encoding 0x${cie.fdeEncoding.toString(16)}`, h.offset);
  cie.instructionsStart = er.pos;
  return cie;
}

/**
 * Parses the CIE at `offset`. `cache` (by offset) avoids re-parsing the CIE shared by many FDEs.
 */
export function parseCie(sec: CfiSection, offset: number, cache?: Map<number, Cie>): Cie {
  const hit = cache?.get(offset);
  if (hit) return hit;
  const r = sectionReader(sec);
  return asMalformed(r.label, () => {
    const h = readEntryHeader(r, offset);
    if (h.terminator || !isCieId(sec, h)) throw malformed(r, 'expected a CIE', offset);
    const cie = parseCieBody(sec, r, h);
    cache?.set(offset, cie);
    return cie;
  });
}

function parseFdeBody(sec: CfiSection, r: ByteReader, h: EntryHeader, cieCache?: Map<number, Cie>): Fde {
  let cieOffset: number;
  if (sec.kind === 'eh_frame')
    cieOffset = h.idOffset - h.id; // CIE pointer: bytes back from this field
  else cieOffset = h.id; // offset from the section start
  if (cieOffset < 0 || cieOffset >= sec.bytes.byteLength || cieOffset === h.offset) {
    throw malformed(r, `FDE's CIE pointer 0x${h.id.toString(16)} points outside the section`, h.offset);
  }
  const cie = parseCie(sec, cieOffset, cieCache);
  const er = new ByteReader(sec.bytes.subarray(0, h.end), { label: r.label });
  er.seek(h.bodyStart);
  const bases: PointerBases = { sectionVaddr: sec.vaddr, textVaddr: sec.textVaddr, dataVaddr: sec.dataVaddr };
  const begin = readEncodedPointer(er, cie.fdeEncoding, bases, cie.addressSize);
  if (begin.indirect) throw malformed(er, 'indirect FDE pc_begin', h.offset);
  // pc_range: same value format, no application (it is a length).
  const range = readEncodedPointer(er, cie.fdeEncoding & 0x0f, { sectionVaddr: sec.vaddr }, cie.addressSize);
  const fde: Fde = {
    offset: h.offset,
    cie,
    pcBegin: begin.value,
    pcEnd: begin.value + range.value,
    instructionsStart: 0,
    instructionsEnd: h.end,
  };
  if (fde.pcEnd > TWO64) throw malformed(er, 'FDE pc range wraps past 2^64', h.offset);
  if (cie.hasAugmentationData) {
    const augLen = er.uleb();
    const augEnd = er.pos + augLen;
    if (augEnd > h.end) throw malformed(er, `FDE augmentation data (${augLen} bytes) runs past the FDE`, h.offset);
    if (cie.lsdaEncoding !== DW_EH_PE_omit && augLen > 0) {
      fde.lsda = readEncodedPointer(er, cie.lsdaEncoding, { ...bases, funcVaddr: fde.pcBegin }, cie.addressSize);
    }
    er.seek(augEnd);
  }
  fde.instructionsStart = er.pos;
  return fde;
}

/** Parses the FDE at `offset` (and its CIE). */
export function parseFde(sec: CfiSection, offset: number, cieCache?: Map<number, Cie>): Fde {
  const r = sectionReader(sec);
  return asMalformed(r.label, () => {
    const h = readEntryHeader(r, offset);
    if (h.terminator || isCieId(sec, h)) throw malformed(r, 'expected an FDE', offset);
    return parseFdeBody(sec, r, h, cieCache);
  });
}

export interface CfiEntries {
  cies: Cie[];
  /** All FDEs, sorted by pcBegin (zero-length FDEs dropped: they cover nothing). */
  fdes: Fde[];
}

/**
 * Parses every entry of a section. Stops at an .eh_frame zero terminator (libgcc does the same);
 * a .debug_frame has none and runs to the end.
 */
export function parseCfiSection(sec: CfiSection): CfiEntries {
  const r = sectionReader(sec);
  const cieCache = new Map<number, Cie>();
  const fdes: Fde[] = [];
  asMalformed(r.label, () => {
    let off = 0;
    // Each iteration advances `off` by at least 4 bytes: bounded by the section length.
    while (off + 4 <= sec.bytes.byteLength) {
      const h = readEntryHeader(r, off);
      if (h.terminator) {
        if (sec.kind === 'eh_frame') break;
        off = h.end;
        continue;
      }
      if (isCieId(sec, h)) parseCie(sec, off, cieCache);
      else {
        const fde = parseFdeBody(sec, r, h, cieCache);
        if (fde.pcEnd > fde.pcBegin) fdes.push(fde);
      }
      off = h.end;
    }
  });
  fdes.sort((a, b) => a.pcBegin - b.pcBegin);
  return { cies: [...cieCache.values()], fdes };
}

/** Binary search in FDEs sorted by pcBegin for the one covering `vaddr`. */
export function findFdeInSorted(fdes: readonly Fde[], vaddr: number): Fde | undefined {
  let lo = 0,
    hi = fdes.length - 1,
    best = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (fdes[mid]!.pcBegin <= vaddr) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  // Overlapping FDEs are rare (linker-discarded duplicates); look back a few.
  for (let i = best; i >= 0 && i > best - 4; i--) {
    const f = fdes[i]!;
    if (vaddr >= f.pcBegin && vaddr < f.pcEnd) return f;
  }
  return undefined;
}

// ---- Unwind rows ----

/** How to recover one register of the caller (DWARF 5 section 6.4.1). */
export type RegisterRule =
  | { kind: 'undefined' }
  | { kind: 'same-value' }
  | { kind: 'offset'; offset: number } // saved at CFA + offset
  | { kind: 'val-offset'; offset: number } // value = CFA + offset
  | { kind: 'register'; register: number } // value = that register's value in this frame
  | { kind: 'expression'; expr: Uint8Array } // saved at the address the expression computes (CFA pushed first)
  | { kind: 'val-expression'; expr: Uint8Array };

export type CfaRule =
  | { kind: 'register-offset'; register: number; offset: number }
  | { kind: 'expression'; expr: Uint8Array };

/** The unwind row holding at one address. Registers absent from `registers` follow the default rule (same value). */
export interface UnwindRow {
  /** vaddr range over which this row holds [start, end). */
  start: number;
  end: number;
  cfa: CfaRule;
  registers: Map<number, RegisterRule>;
  returnAddressRegister: number;
  signalFrame: boolean;
}

// DW_CFA_* opcodes (DWARF 5 table 7.29, plus GNU extensions).
const CFA = {
  advance_loc: 0x40,
  offset: 0x80,
  restore: 0xc0,
  nop: 0x00,
  set_loc: 0x01,
  advance_loc1: 0x02,
  advance_loc2: 0x03,
  advance_loc4: 0x04,
  offset_extended: 0x05,
  restore_extended: 0x06,
  undefined: 0x07,
  same_value: 0x08,
  register: 0x09,
  remember_state: 0x0a,
  restore_state: 0x0b,
  def_cfa: 0x0c,
  def_cfa_register: 0x0d,
  def_cfa_offset: 0x0e,
  def_cfa_expression: 0x0f,
  expression: 0x10,
  offset_extended_sf: 0x11,
  def_cfa_sf: 0x12,
  def_cfa_offset_sf: 0x13,
  val_offset: 0x14,
  val_offset_sf: 0x15,
  val_expression: 0x16,
  GNU_window_save: 0x2d,
  GNU_args_size: 0x2e,
  GNU_negative_offset_extended: 0x2f,
} as const;

/** remember_state depth cap (libgcc allocates without bound; real code nests 1–2 deep). */
export const MAX_REMEMBER_DEPTH = 64;
/** Register numbers above this are rejected as malformed (x86-64 defines up to ~130). */
export const MAX_DWARF_REGISTER = 1023;

interface RowState {
  cfa: CfaRule;
  registers: Map<number, RegisterRule>;
}

function cloneState(s: RowState): RowState {
  return { cfa: s.cfa, registers: new Map(s.registers) };
}

/**
 * Runs CFA instructions [start, end) of `sec`. With `targetVaddr` it stops at the first advance
 * past the target (returning the row's end); without, it runs to the end (CIE initial instructions).
 */
function runInstructions(
  sec: CfiSection,
  cie: Cie,
  start: number,
  end: number,
  state: RowState,
  initial: Map<number, RegisterRule> | undefined,
  loc: { start: number; end: number },
  targetVaddr: number | undefined,
  fdeBegin: number,
): void {
  const r = new ByteReader(sec.bytes.subarray(0, end), { label: sectionLabel(sec) });
  r.seek(start);
  const stack: RowState[] = [];
  const daf = cie.dataAlign,
    caf = cie.codeAlign;
  const reg = (n: number): number => {
    if (n > MAX_DWARF_REGISTER) throw malformed(r, `register number ${n}`);
    return n;
  };
  const block = (): Uint8Array => {
    const n = r.uleb();
    return r.take(n);
  };
  const advance = (delta: number): boolean => {
    const next = loc.start + delta * caf;
    if (targetVaddr !== undefined && next > targetVaddr) {
      loc.end = next;
      return true;
    }
    loc.start = next;
    return false;
  };
  const restoreRule = (n: number): void => {
    if (!initial) throw malformed(r, "DW_CFA_restore in a CIE's initial instructions");
    const init = initial.get(n);
    if (init) state.registers.set(n, init);
    else state.registers.delete(n);
  };
  // Each iteration consumes at least one byte: bounded by end - start.
  while (r.pos < end) {
    const op = r.u8();
    const hi = op & 0xc0,
      low = op & 0x3f;
    if (hi === CFA.advance_loc) {
      if (advance(low)) return;
      continue;
    }
    if (hi === CFA.offset) {
      state.registers.set(low, { kind: 'offset', offset: r.uleb() * daf });
      continue;
    }
    if (hi === CFA.restore) {
      restoreRule(low);
      continue;
    }
    switch (op) {
      case CFA.nop:
        break;
      case CFA.set_loc: {
        const p = readEncodedPointer(
          r,
          cie.fdeEncoding,
          { sectionVaddr: sec.vaddr, textVaddr: sec.textVaddr, dataVaddr: sec.dataVaddr, funcVaddr: fdeBegin },
          cie.addressSize,
        );
        if (p.value < loc.start) throw malformed(r, 'DW_CFA_set_loc moves backwards');
        if (targetVaddr !== undefined && p.value > targetVaddr) {
          loc.end = p.value;
          return;
        }
        loc.start = p.value;
        break;
      }
      case CFA.advance_loc1:
        if (advance(r.u8())) return;
        break;
      case CFA.advance_loc2:
        if (advance(r.u16())) return;
        break;
      case CFA.advance_loc4:
        if (advance(r.u32())) return;
        break;
      case CFA.offset_extended: {
        const n = reg(r.uleb());
        state.registers.set(n, { kind: 'offset', offset: r.uleb() * daf });
        break;
      }
      case CFA.restore_extended:
        restoreRule(reg(r.uleb()));
        break;
      case CFA.undefined:
        state.registers.set(reg(r.uleb()), { kind: 'undefined' });
        break;
      case CFA.same_value:
        state.registers.set(reg(r.uleb()), { kind: 'same-value' });
        break;
      case CFA.register: {
        const n = reg(r.uleb());
        state.registers.set(n, { kind: 'register', register: reg(r.uleb()) });
        break;
      }
      case CFA.remember_state:
        if (stack.length >= MAX_REMEMBER_DEPTH)
          throw malformed(r, `DW_CFA_remember_state nested deeper than ${MAX_REMEMBER_DEPTH}`);
        stack.push(cloneState(state));
        break;
      case CFA.restore_state: {
        const s = stack.pop();
        if (!s) throw malformed(r, 'DW_CFA_restore_state with an empty state stack');
        // The CFA rule is part of the remembered state (as in gimli and libgcc).
        state.cfa = s.cfa;
        state.registers = s.registers;
        break;
      }
      case CFA.def_cfa: {
        const n = reg(r.uleb());
        state.cfa = { kind: 'register-offset', register: n, offset: r.uleb() };
        break;
      }
      case CFA.def_cfa_sf: {
        const n = reg(r.uleb());
        state.cfa = { kind: 'register-offset', register: n, offset: r.sleb() * daf };
        break;
      }
      case CFA.def_cfa_register: {
        const n = reg(r.uleb());
        if (state.cfa.kind !== 'register-offset')
          throw malformed(r, 'DW_CFA_def_cfa_register while the CFA is an expression');
        state.cfa = { kind: 'register-offset', register: n, offset: state.cfa.offset };
        break;
      }
      case CFA.def_cfa_offset:
      case CFA.def_cfa_offset_sf: {
        const off = op === CFA.def_cfa_offset ? r.uleb() : r.sleb() * daf;
        if (state.cfa.kind !== 'register-offset')
          throw malformed(r, 'DW_CFA_def_cfa_offset while the CFA is an expression');
        state.cfa = { kind: 'register-offset', register: state.cfa.register, offset: off };
        break;
      }
      case CFA.def_cfa_expression:
        state.cfa = { kind: 'expression', expr: block() };
        break;
      case CFA.expression: {
        const n = reg(r.uleb());
        state.registers.set(n, { kind: 'expression', expr: block() });
        break;
      }
      case CFA.val_expression: {
        const n = reg(r.uleb());
        state.registers.set(n, { kind: 'val-expression', expr: block() });
        break;
      }
      case CFA.offset_extended_sf: {
        const n = reg(r.uleb());
        state.registers.set(n, { kind: 'offset', offset: r.sleb() * daf });
        break;
      }
      case CFA.val_offset: {
        const n = reg(r.uleb());
        state.registers.set(n, { kind: 'val-offset', offset: r.uleb() * daf });
        break;
      }
      case CFA.val_offset_sf: {
        const n = reg(r.uleb());
        state.registers.set(n, { kind: 'val-offset', offset: r.sleb() * daf });
        break;
      }
      case CFA.GNU_args_size:
        r.uleb();
        break;
      case CFA.GNU_negative_offset_extended: {
        const n = reg(r.uleb());
        state.registers.set(n, { kind: 'offset', offset: -r.uleb() * daf });
        break;
      }
      default:
        throw malformed(r, `unknown CFA opcode 0x${op.toString(16)}`, r.pos - 1);
    }
  }
}

const initialCache = new WeakMap<Cie, RowState>();

/** The row set up by a CIE's initial instructions (CFA rule and register rules). */
export function cieInitialState(sec: CfiSection, cie: Cie): { cfa: CfaRule; registers: Map<number, RegisterRule> } {
  const hit = initialCache.get(cie);
  if (hit) return cloneState(hit);
  const state: RowState = { cfa: { kind: 'register-offset', register: DW_REG.rsp, offset: 0 }, registers: new Map() };
  asMalformed('CIE', () =>
    runInstructions(
      sec,
      cie,
      cie.instructionsStart,
      cie.instructionsEnd,
      state,
      undefined,
      { start: 0, end: 0 },
      undefined,
      0,
    ),
  );
  initialCache.set(cie, cloneState(state));
  return state;
}

/**
 * The unwind row of `fde` at `vaddr` (which must lie in [pcBegin, pcEnd)): runs the CIE's
 * initial instructions, then the FDE's, stopping at the first advance past `vaddr`.
 */
export function unwindRowAt(sec: CfiSection, fde: Fde, vaddr: number): UnwindRow {
  if (vaddr < fde.pcBegin || vaddr >= fde.pcEnd) {
    throw new LeakscopeError(
      'not-found',
      `0x${vaddr.toString(16)} is outside the FDE [0x${fde.pcBegin.toString(16)}, 0x${fde.pcEnd.toString(16)})`,
    );
  }
  const init = cieInitialState(sec, fde.cie);
  const state: RowState = cloneState(init);
  const loc = { start: fde.pcBegin, end: fde.pcEnd };
  asMalformed('FDE', () =>
    runInstructions(
      sec,
      fde.cie,
      fde.instructionsStart,
      fde.instructionsEnd,
      state,
      init.registers,
      loc,
      vaddr,
      fde.pcBegin,
    ),
  );
  return {
    start: loc.start,
    end: Math.min(loc.end, fde.pcEnd),
    cfa: state.cfa,
    registers: state.registers,
    returnAddressRegister: fde.cie.returnAddressRegister,
    signalFrame: fde.cie.signalFrame,
  };
}

/** Every row of an FDE, in address order (for dumps and tests; `readelf -wF` shows the same table). */
export function unwindTable(sec: CfiSection, fde: Fde): UnwindRow[] {
  const rows: UnwindRow[] = [];
  let pc = fde.pcBegin;
  // Each row ends strictly after it starts, so at most (pcEnd - pcBegin) rows; cap anyway.
  for (let i = 0; pc < fde.pcEnd && i < 1_000_000; i++) {
    const row = unwindRowAt(sec, fde, pc);
    rows.push(row);
    if (row.end <= pc)
      throw new LeakscopeError('malformed', `FDE at 0x${fde.offset.toString(16)}: row does not advance`);
    pc = row.end;
  }
  return rows;
}

// ---- DWARF expressions (the subset CFI uses; DWARF 5 section 2.5) ----

/** What an expression may read: register values of the frame being unwound, and memory. */
export interface ExpressionContext {
  /** Value of DWARF register `n`, or undefined when unknown. */
  register(n: number): bigint | undefined;
  /** 8 (or `size`) bytes at `addr`, or undefined when unreadable. */
  readMemory(addr: bigint, size: number): bigint | undefined;
}

/** Why an expression could not be evaluated for this frame (not malformed: data unavailable). */
export class ExpressionUnavailable extends Error {
  constructor(
    readonly reason: 'register' | 'memory',
    message: string,
  ) {
    super(message);
  }
}

export const MAX_EXPRESSION_STEPS = 10_000;
export const MAX_EXPRESSION_STACK = 64;

const M64 = (1n << 64n) - 1n;
const u64 = (v: bigint): bigint => v & M64;
const s64 = (v: bigint): bigint => BigInt.asIntN(64, v);

/**
 * Evaluates a DWARF expression as CFI uses it (a value / address, not a location list).
 * `initialStack` is [CFA] for DW_CFA_expression / val_expression rules, [] for def_cfa_expression.
 * Throws LeakscopeError('malformed') for bad bytecode, ExpressionUnavailable when a register or
 * memory it needs is not available. Every loop bounded (MAX_EXPRESSION_STEPS ops).
 */
export function evaluateExpression(expr: Uint8Array, ctx: ExpressionContext, initialStack: bigint[] = []): bigint {
  const r = new ByteReader(expr, { label: 'DWARF expression' });
  const st: bigint[] = initialStack.map(u64);
  const push = (v: bigint): void => {
    if (st.length >= MAX_EXPRESSION_STACK) throw malformed(r, 'expression stack overflow');
    st.push(u64(v));
  };
  const pop = (): bigint => {
    const v = st.pop();
    if (v === undefined) throw malformed(r, 'expression stack underflow');
    return v;
  };
  const regVal = (n: number): bigint => {
    const v = ctx.register(n);
    if (v === undefined) throw new ExpressionUnavailable('register', `DWARF register ${n} unknown`);
    return v;
  };
  const deref = (addr: bigint, size: number): bigint => {
    const v = ctx.readMemory(addr, size);
    if (v === undefined)
      throw new ExpressionUnavailable('memory', `cannot read ${size} bytes at 0x${addr.toString(16)}`);
    return v;
  };
  try {
    for (let steps = 0; r.pos < expr.byteLength; steps++) {
      if (steps >= MAX_EXPRESSION_STEPS) throw malformed(r, `expression runs more than ${MAX_EXPRESSION_STEPS} steps`);
      const op = r.u8();
      if (op >= 0x30 && op <= 0x4f) {
        push(BigInt(op - 0x30));
        continue;
      } // lit0..31
      if (op >= 0x70 && op <= 0x8f) {
        push(regVal(op - 0x70) + BigInt(r.sleb()));
        continue;
      } // breg0..31
      switch (op) {
        case 0x03:
          push(r.u64n());
          break; // addr
        case 0x06:
          push(deref(pop(), 8));
          break; // deref
        case 0x08:
          push(BigInt(r.u8()));
          break; // const1u
        case 0x09:
          push(BigInt(r.i8()));
          break; // const1s
        case 0x0a:
          push(BigInt(r.u16()));
          break; // const2u
        case 0x0b:
          push(BigInt(r.i16()));
          break; // const2s
        case 0x0c:
          push(BigInt(r.u32()));
          break; // const4u
        case 0x0d:
          push(BigInt(r.i32()));
          break; // const4s
        case 0x0e:
          push(r.u64n());
          break; // const8u
        case 0x0f:
          push(r.u64n());
          break; // const8s (same bits)
        case 0x10:
          push(r.ulebn());
          break; // constu
        case 0x11:
          push(r.slebn());
          break; // consts
        case 0x12: {
          const v = pop();
          push(v);
          push(v);
          break;
        } // dup
        case 0x13:
          pop();
          break; // drop
        case 0x14: {
          if (st.length < 2) throw malformed(r, 'over on a short stack');
          push(st[st.length - 2]!);
          break;
        }
        case 0x15: {
          const i = r.u8();
          if (i >= st.length) throw malformed(r, `pick ${i} beyond the stack`);
          push(st[st.length - 1 - i]!);
          break;
        }
        case 0x16: {
          const a = pop(),
            b = pop();
          push(a);
          push(b);
          break;
        } // swap
        case 0x17: {
          const a = pop(),
            b = pop(),
            c = pop();
          push(a);
          push(c);
          push(b);
          break;
        } // rot
        case 0x19:
          push(abs64(pop()));
          break; // abs
        case 0x1a: {
          const b = pop(),
            a = pop();
          push(a & b);
          break;
        } // and
        case 0x1b: {
          const b = s64(pop()),
            a = s64(pop());
          if (b === 0n) throw malformed(r, 'division by zero');
          push(a / b);
          break;
        }
        case 0x1c: {
          const b = pop(),
            a = pop();
          push(a - b);
          break;
        } // minus
        case 0x1d: {
          const b = pop(),
            a = pop();
          if (b === 0n) throw malformed(r, 'modulo by zero');
          push(a % b);
          break;
        }
        case 0x1e: {
          const b = pop(),
            a = pop();
          push(a * b);
          break;
        } // mul
        case 0x1f:
          push(-s64(pop()));
          break; // neg
        case 0x20:
          push(~pop());
          break; // not
        case 0x21: {
          const b = pop(),
            a = pop();
          push(a | b);
          break;
        } // or
        case 0x22: {
          const b = pop(),
            a = pop();
          push(a + b);
          break;
        } // plus
        case 0x23:
          push(pop() + r.ulebn());
          break; // plus_uconst
        case 0x24: {
          const b = pop(),
            a = pop();
          push(b >= 64n ? 0n : a << b);
          break;
        } // shl
        case 0x25: {
          const b = pop(),
            a = pop();
          push(b >= 64n ? 0n : a >> b);
          break;
        } // shr
        case 0x26: {
          const b = pop(),
            a = s64(pop());
          push(a >> (b >= 64n ? 63n : b));
          break;
        } // shra
        case 0x27: {
          const b = pop(),
            a = pop();
          push(a ^ b);
          break;
        } // xor
        case 0x28: {
          // bra
          const d = r.i16();
          if (pop() !== 0n) jump(r, d, expr.byteLength);
          break;
        }
        case 0x29:
        case 0x2a:
        case 0x2b:
        case 0x2c:
        case 0x2d:
        case 0x2e: {
          // eq ge gt le lt ne (signed)
          const b = s64(pop()),
            a = s64(pop());
          const t =
            op === 0x29
              ? a === b
              : op === 0x2a
                ? a >= b
                : op === 0x2b
                  ? a > b
                  : op === 0x2c
                    ? a <= b
                    : op === 0x2d
                      ? a < b
                      : a !== b;
          push(t ? 1n : 0n);
          break;
        }
        case 0x2f:
          jump(r, r.i16(), expr.byteLength);
          break; // skip
        case 0x92: {
          const n = r.uleb();
          push(regVal(n) + r.slebn());
          break;
        } // bregx
        case 0x94: {
          // deref_size
          const size = r.u8();
          if (size < 1 || size > 8) throw malformed(r, `deref_size ${size}`);
          push(deref(pop(), size));
          break;
        }
        case 0x96:
          break; // nop
        default:
          throw malformed(r, `unsupported DWARF expression opcode 0x${op.toString(16)}`, r.pos - 1);
      }
    }
  } catch (e) {
    if (isLeakscopeError(e) && e.code === 'truncated') throw new LeakscopeError('malformed', e.message, { cause: e });
    throw e;
  }
  const v = st.pop();
  if (v === undefined) throw new LeakscopeError('malformed', 'DWARF expression left an empty stack');
  return v;
}

function jump(r: ByteReader, delta: number, len: number): void {
  const to = r.pos + delta;
  if (to < 0 || to > len) throw malformed(r, `branch to ${to} outside the expression`);
  r.pos = to;
}
function abs64(v: bigint): bigint {
  const s = s64(v);
  return s < 0n ? -s : s;
}
