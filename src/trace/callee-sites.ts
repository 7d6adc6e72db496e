// Every call site of one function in one ELF object, proven by decoding instructions: each
// function's range comes from its .eh_frame FDE (present in stripped binaries), decoded linearly
// from its start (formats/x86/decode.ts), so a call found is known to start on an instruction
// boundary. Calls reach the callee directly (E8 rel32 to its address, in the object defining it),
// through its PLT stub (E8 to the stub) or through its GOT slot (FF 15, -fno-plt).
//
// Nothing is guessed: the result says `trusted: false`, with the reason, when a reference to the
// callee could not be accounted for (bytes that may call it outside any FDE or in an FDE that did
// not decode; a tail jump to it, after which no instruction of the caller runs; its address taken,
// so it may be called through a pointer). A caller must then not rely on the sites alone.

import type { ElfFile } from '../formats/elf/index.js';
import { PF_X, PT_LOAD } from '../formats/elf/index.js';
import {
  R_X86_64_64,
  R_X86_64_GLOB_DAT,
  R_X86_64_JUMP_SLOT,
  R_X86_64_RELATIVE,
  dynamicRelocations,
} from '../formats/elf/relocations.js';
import { type X86Insn, sweepX86 } from '../formats/x86/decode.js';
import { type Fde, findFdeInSorted } from '../formats/dwarf/cfi.js';
import { moduleCfiFromElf } from '../unwind/cfi-cache.js';

export interface CalleeSite {
  /** ELF vaddr of the call instruction. */
  callVaddr: number;
  /** ELF vaddr of the instruction after it (where rax holds the callee's result). */
  returnVaddr: number;
  via: 'direct' | 'plt' | 'got';
  /** The calling function's range (its FDE). */
  functionStart: number;
  functionEnd: number;
  /**
   * Where a plain (entry-style) probe sees the result in rax: the first instruction the kernel
   * emulates (jcc, jmp, call, push) in straight-line code after the call that leaves rax alone,
   * else the return site itself (single-stepped: several µs more per hit).
   */
  probeVaddr: number;
  probeEmulated: boolean;
}

export interface CalleeSites {
  sites: CalleeSite[];
  /** False when some reference to the callee is not among `sites` (see `problems`). */
  trusted: boolean;
  problems: string[];
  /** Functions (FDEs) decoded: those holding a candidate reference; how many stopped on an unknown instruction. */
  functionsDecoded: number;
  functionsUndecoded: number;
}

/** Instructions scanned after a return site for an emulated probe position. */
const PROBE_WINDOW = 8;

/**
 * The call sites of `callee` in `elf`. `callee` may be defined in the object (direct calls) or
 * imported (PLT / GOT), or neither (no sites, trusted).
 */
export function findCalleeSites(elf: ElfFile, callee: string): CalleeSites {
  const problems: string[] = [];
  const out: CalleeSites = { sites: [], trusted: true, problems, functionsDecoded: 0, functionsUndecoded: 0 };
  const fail = (why: string) => {
    out.trusted = false;
    if (problems.length < 20) problems.push(why);
  };
  const hex = (v: number) => `0x${v.toString(16)}`;

  // What the callee is reached through.
  const def = elf.findSymbol(callee);
  const fnVaddr = def && def.shndx !== 0 && def.type === 'func' ? def.value : undefined;
  const slots = new Set<number>();
  let relocs: ReturnType<typeof dynamicRelocations> = [];
  try {
    relocs = dynamicRelocations(elf);
  } catch (e) {
    fail(`relocations unreadable: ${(e as Error).message}`);
  }
  for (const r of relocs) {
    if (r.symbol === callee && (r.type === R_X86_64_JUMP_SLOT || r.type === R_X86_64_GLOB_DAT)) slots.add(r.offset);
    else if (r.symbol === callee && r.type === R_X86_64_64)
      fail(`${callee}'s address is stored at ${hex(r.offset)} (R_X86_64_64): it may be called through a pointer`);
    else if (fnVaddr !== undefined && r.type === R_X86_64_RELATIVE && r.addend === fnVaddr)
      fail(`${callee}'s address is stored at ${hex(r.offset)} (R_X86_64_RELATIVE): it may be called through a pointer`);
  }
  if (fnVaddr === undefined && !slots.size) {
    // Not defined and not imported through a slot: nothing here can call it (unless the object has
    // no section headers, when the relocations could not be read at all).
    if (!elf.sections.length) fail('no section headers: imports unknown');
    return out;
  }

  // PLT stubs jumping through a slot (.plt, .plt.sec, .plt.got): calls to the stub are calls to the callee.
  const stubs = new Set<number>();
  const pltRanges: Array<[number, number]> = [];
  for (const s of elf.sections) {
    if (s.name !== '.plt' && s.name !== '.plt.sec' && s.name !== '.plt.got') continue;
    pltRanges.push([s.addr, s.addr + s.size]);
    const bytes = elf.sectionBytes(s);
    const sw = sweepX86(bytes, 0, bytes.byteLength);
    let prev: X86Insn | undefined;
    for (const i of sw.insns) {
      if (i.flow === 'jmp-ind' && i.ripTarget !== undefined && slots.has(s.addr + i.ripTarget)) {
        // The stub starts at the jmp, or at an endbr64 (F3 0F 1E FA) just before it.
        const endbr =
          prev && prev.length === 4 && bytes[prev.offset] === 0xf3 && prev.map === 1 && prev.opcode === 0x1e;
        stubs.add(s.addr + (endbr ? prev!.offset : i.offset));
      }
      prev = i;
    }
    if (sw.unknown) fail(`${s.name} did not decode at ${hex(s.addr + sw.unknown.offset)}: ${sw.unknown.reason}`);
  }
  const inPlt = (v: number) => pltRanges.some(([a, b]) => v >= a && v < b);
  const callTargets = new Set<number>(stubs);
  if (fnVaddr !== undefined) callTargets.add(fnVaddr);

  // Candidates: every byte pattern in executable segments that could be the rel32 / disp32 field of
  // an instruction naming the callee, its stub or its slot (target = end of the instruction + value;
  // the field is followed by 0, 1, 2 or 4 bytes of immediate). Every real reference is among them.
  const watchedList = [...new Set<number>([...callTargets, ...slots])];
  const candidates: Array<{ v: number; callForm: boolean; at: number }> = [];
  for (const seg of elf.segments) {
    if (seg.type !== PT_LOAD || !(seg.flags & PF_X)) continue;
    const raw = elf.reader.bytesAt(seg.offset, seg.filesz);
    const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength);
    const n = bytes.byteLength;
    for (let i = 0; i + 4 <= n; i++) {
      const rel = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24) | 0;
      const base = seg.vaddr + i + 4 + rel;
      let hit = false;
      for (const w of watchedList) {
        const d = w - base;
        if (d === 0 || d === 1 || d === 2 || d === 4) hit = true;
      }
      const v = seg.vaddr + i;
      if (!hit || inPlt(v)) continue;
      // A call or jump form (E8 / E9 rel32, FF 15 / FF 25 disp32) naming the callee exactly.
      const b1 = i >= 1 ? bytes[i - 1]! : -1,
        b2 = i >= 2 ? bytes[i - 2]! : -1;
      const callForm =
        ((b1 === 0xe8 || b1 === 0xe9) && callTargets.has(base)) ||
        (b2 === 0xff && (b1 === 0x15 || b1 === 0x25) && slots.has(base));
      candidates.push({ v, callForm, at: v - (b1 === 0x15 || b1 === 0x25 ? 2 : 1) });
    }
  }

  // The functions (FDE ranges) holding a candidate, decoded from their start; also those within a
  // short jump (rel8) of the callee, whose jumps to it have no 4-byte field.
  const cfi = moduleCfiFromElf(elf);
  let fdes: Fde[] = [];
  try {
    fdes = cfi.allFdes().ehFrame;
  } catch (e) {
    fail(`.eh_frame unreadable: ${(e as Error).message}`);
  }
  if (!fdes.length) fail('no .eh_frame FDEs: function ranges unknown');
  const toDecode = new Set<Fde>();
  for (const c of candidates) {
    const f = findFdeInSorted(fdes, c.v);
    if (f) toDecode.add(f);
  }
  for (const t of callTargets)
    for (const f of fdes) if (f.pcEnd > t - 130 && f.pcBegin < t + 130 && !inPlt(f.pcBegin)) toDecode.add(f);
  /** vaddrs of the rel32 / disp32 fields of references explained by a decoded instruction. */
  const explained = new Set<number>();
  /** FDE ranges that decoded completely (a stray byte pattern inside them is proven not a reference). */
  const decoded: Array<[number, number]> = [];
  for (const f of toDecode) {
    if (inPlt(f.pcBegin)) continue; // the stubs themselves, handled above
    const off = elf.vaddrToFileOffset(f.pcBegin);
    if (off === undefined || elf.vaddrToFileOffset(f.pcEnd - 1) !== off + (f.pcEnd - 1 - f.pcBegin)) continue;
    const code = elf.reader.bytesAt(off, f.pcEnd - f.pcBegin);
    const sw = sweepX86(code, 0, code.byteLength);
    out.functionsDecoded++;
    if (sw.unknown) out.functionsUndecoded++;
    else decoded.push([f.pcBegin, f.pcEnd]);
    // Branch targets inside the function: code after a call that something jumps into is not straight-line.
    const targets = new Set<number>();
    for (const i of sw.insns) if (i.branchTarget !== undefined) targets.add(i.branchTarget);
    sw.insns.forEach((i, k) => {
      const at = f.pcBegin + i.offset;
      const next = at + i.length;
      const rel = i.branchTarget !== undefined ? f.pcBegin + i.branchTarget : undefined;
      const rip = i.ripTarget !== undefined ? f.pcBegin + i.ripTarget : undefined;
      if (rel !== undefined && callTargets.has(rel)) {
        explained.add(next - 4);
        if (i.flow === 'call-rel') {
          if (sw.unknown) fail(`call at ${hex(at)} in a function that did not decode to its end`);
          else out.sites.push(site(at, next, rel === fnVaddr ? 'direct' : 'plt', f, sw.insns, k, targets));
        } else fail(`jump to ${callee} at ${hex(at)} (a tail call: the caller's code never runs after it)`);
      }
      if (rip !== undefined && (slots.has(rip) || callTargets.has(rip))) {
        explained.add(ripFieldVaddr(code, i, f.pcBegin));
        if (i.flow === 'call-ind' && i.modrm === 0x15 && slots.has(rip)) {
          if (sw.unknown) fail(`call at ${hex(at)} in a function that did not decode to its end`);
          else out.sites.push(site(at, next, 'got', f, sw.insns, k, targets));
        } else if (i.flow === 'jmp-ind') fail(`jump through ${callee}'s GOT slot at ${hex(at)} (a tail call)`);
        else fail(`${callee}'s address is loaded at ${hex(at)}: it may be called through a pointer`);
      }
    });
  }

  // Every candidate is explained by a decoded instruction, or lies inside a function that decoded
  // completely (so it is not an instruction's field). A call or jump form naming the callee exactly
  // is not waved off even then: a range that does not start on an instruction (glibc's signal
  // trampolines start their FDE one byte early) decodes "completely" but wrongly.
  for (const c of candidates) {
    if (explained.has(c.v)) continue;
    if (!c.callForm && decoded.some(([a, b]) => c.v >= a && c.v < b)) continue;
    fail(
      c.callForm
        ? `a call or jump to ${callee} at ${hex(c.at)} is not on a decoded instruction boundary`
        : `bytes at ${hex(c.v)} may reference ${callee} outside any function that decoded`,
    );
  }
  out.sites.sort((a, b) => a.callVaddr - b.callVaddr);
  return out;
}

/** vaddr of an instruction's RIP-relative disp32 field: before its immediate, which ends the instruction. */
function ripFieldVaddr(code: Uint8Array, i: X86Insn, base: number): number {
  // Find the 4-byte field whose value plus the instruction's end gives ripTarget.
  const end = i.offset + i.length;
  for (let p = i.offset + 1; p + 4 <= end; p++) {
    const v = code[p]! | (code[p + 1]! << 8) | (code[p + 2]! << 16) | (code[p + 3]! << 24) | 0;
    if (end + v === i.ripTarget) return base + p;
  }
  return base + end - 4;
}

function site(
  callVaddr: number,
  returnVaddr: number,
  via: CalleeSite['via'],
  f: { pcBegin: number; pcEnd: number },
  insns: readonly X86Insn[],
  k: number,
  branchTargets: ReadonlySet<number>,
): CalleeSite {
  const probe = emulatedProbeAfter(insns, k, branchTargets);
  return {
    callVaddr,
    returnVaddr,
    via,
    functionStart: f.pcBegin,
    functionEnd: f.pcEnd,
    probeVaddr: f.pcBegin + (probe ?? insns[k]!.offset + insns[k]!.length),
    probeEmulated: probe !== undefined,
  };
}

/**
 * Offset of the first emulated instruction after the call `insns[k]`, reached in straight-line
 * code that leaves rax as the call returned it, and that no branch of the function lands inside.
 */
export function emulatedProbeAfter(
  insns: readonly X86Insn[],
  k: number,
  branchTargets: ReadonlySet<number>,
): number | undefined {
  for (let j = k + 1; j < insns.length && j <= k + PROBE_WINDOW; j++) {
    const i = insns[j]!;
    if (branchTargets.has(i.offset)) return undefined; // another path joins here, with another rax
    if (isEmulated(i)) return i.offset;
    if (!keepsRaxStraight(i)) return undefined;
  }
  return undefined;
}

/** Instructions the kernel emulates instead of single-stepping (see call-sites.ts emulatedInsnLength). */
function isEmulated(i: X86Insn): boolean {
  if (i.flow === 'jcc' || i.flow === 'call-rel') return !i.opsize;
  if (i.flow === 'jmp-rel') return !i.opsize;
  // push r64 (50-57, with REX.B for r8-r15), no other prefix.
  return i.map === 0 && i.opcode >= 0x50 && i.opcode <= 0x57 && !i.opsize && (i.rex & 0xe) === 0 && i.length <= 2;
}

/** True for the few non-branching forms compilers put between a call and its result's null test that never write rax. */
function keepsRaxStraight(i: X86Insn): boolean {
  if (i.flow !== 'other' || (i.map !== 0 && !(i.map === 1 && i.opcode === 0x1f))) return false;
  if (i.map === 1) return true; // 0F 1F: nop
  const op = i.opcode;
  const m = i.modrm;
  const reg = m === undefined ? 0 : ((m >> 3) & 7) | (i.rex & 4 ? 8 : 0);
  const rm = m === undefined ? 0 : (m & 7) | (i.rex & 1 ? 8 : 0);
  const regDest = m !== undefined && m >> 6 === 3;
  switch (op) {
    case 0x90: // nop
      return i.rex === 0;
    case 0x84: // test r/m8, r8
    case 0x85: // test r/m, r
    case 0x38:
    case 0x39:
    case 0x3a:
    case 0x3b: // cmp
      return true;
    case 0x89: // mov r/m, r: writes r/m
    case 0x31:
    case 0x29: // xor / sub r/m, r
      return !regDest || rm !== 0;
    case 0x8b: // mov r, r/m: writes reg
    case 0x8d: // lea
    case 0x33:
    case 0x2b:
      return reg !== 0;
    case 0xc6:
    case 0xc7: // mov r/m, imm
      return !regDest || rm !== 0;
    default:
      if (op >= 0xb8 && op <= 0xbf) return (op & 7) !== 0 || (i.rex & 1) !== 0; // mov r, imm
      return false;
  }
}
