// Finding the instruction right after a direct call inside a function, so a plain (entry-style)
// uprobe there sees the callee's return value in rax: one probe hit instead of an entry probe
// plus a uretprobe (which costs a second trap and hijacks the return address).
//
// x86-64 direct near call: E8 rel32, target = address of next instruction + rel32 (Intel SDM vol. 2A, CALL).
// We scan the function's bytes for E8 and keep matches whose target is the wanted callee. A false
// match needs the 4 bytes after a stray E8 to encode exactly that target; we additionally require
// the match to be the only one, or take the first.

import type { ElfFile } from '../formats/elf/index.js';
import { LeakscopeError } from '../model/errors.js';

export interface CallSite {
  /** ELF vaddr of the call instruction. */
  callVaddr: number;
  /** ELF vaddr of the instruction after the call (where rax holds the callee's result). */
  returnVaddr: number;
  /** Target vaddr of the call. */
  targetVaddr: number;
}

/** Pure: direct calls in `code` (which starts at vaddr `codeVaddr`) whose target is one of `targets`. */
export function findDirectCalls(code: Uint8Array, codeVaddr: number, targets: ReadonlySet<number>): CallSite[] {
  const out: CallSite[] = [];
  const view = new DataView(code.buffer, code.byteOffset, code.byteLength);
  for (let i = 0; i + 5 <= code.byteLength; i++) {
    if (code[i] !== 0xe8) continue;
    const next = codeVaddr + i + 5;
    const target = next + view.getInt32(i + 1, true);
    if (targets.has(target)) out.push({ callVaddr: codeVaddr + i, returnVaddr: next, targetVaddr: target });
  }
  return out;
}

/** Targets a function may call to reach `callee`: the symbol itself and its PLT stub, if any. */
export function calleeAddresses(elf: ElfFile, callee: string): Set<number> {
  const out = new Set<number>();
  const s = elf.findSymbol(callee);
  if (s) out.add(s.value);
  return out;
}

/**
 * The return site of the first direct call from `caller` to any of `callees` in one object.
 * Throws 'not-found' when the caller has no such call (e.g. it was inlined differently).
 */
export function returnSiteOfCall(elf: ElfFile, caller: string, callees: string[]): CallSite {
  const fn = elf.findSymbol(caller);
  if (fn?.type !== 'func' || !fn.size)
    throw new LeakscopeError('not-found', `${elf.label}: function ${caller} not found`);
  const off = elf.vaddrToFileOffset(fn.value);
  if (off === undefined)
    throw new LeakscopeError('malformed', `${elf.label}: ${caller} is not inside a loaded segment`);
  const code = elf.reader.bytesAt(off, fn.size);
  const targets = new Set<number>();
  for (const c of callees) for (const a of calleeAddresses(elf, c)) targets.add(a);
  const sites = findDirectCalls(code, fn.value, targets);
  if (!sites.length)
    throw new LeakscopeError('not-found', `${elf.label}: ${caller} has no direct call to ${callees.join(' or ')}`);
  return sites[0]!;
}

// ---- probe sites the kernel emulates ----
// A uprobe replaces an instruction with int3. The kernel then either emulates the original
// instruction (push, jmp, call, jcc: arch/x86/kernel/uprobes.c branch_setup_xol_ops /
// push_setup_xol_ops) or single-steps a copy of it out of line, which costs several µs more
// per hit on this VM (bench/README.md). So probes go on emulated instructions where that keeps
// the semantics: the same registers, and [rsp] still the return address for uretprobes.

/** Length of an instruction the kernel emulates at `code[i]` (push / jcc / jmp / call), else 0. */
export function emulatedInsnLength(code: Uint8Array, i: number): number {
  const b = code[i];
  if (b === undefined) return 0;
  if (b >= 0x50 && b <= 0x57) return 1; // push r64
  if (b === 0x41 && code[i + 1]! >= 0x50 && code[i + 1]! <= 0x57) return 2; // push r8-r15
  if (b >= 0x70 && b <= 0x7f) return 2; // jcc rel8
  if (b === 0x0f && code[i + 1]! >= 0x80 && code[i + 1]! <= 0x8f) return 6; // jcc rel32
  if (b === 0xeb) return 2; // jmp rel8
  if (b === 0xe9 || b === 0xe8) return 5; // jmp / call rel32
  return 0;
}

/**
 * Offset into a function where an entry probe (and a uretprobe) sees the same state as at the
 * entry and sits on an emulated instruction: 0 when the first instruction is emulated; past a
 * leading flag-only test (`test r64,r64`: 48 85 /r with mod 11, 3 bytes; `cmpb $imm8,d32(%rip)`:
 * 80 3d d32 imm8, 7 bytes) when the next one is. These leave arguments, rsp and [rsp] unchanged.
 */
export function emulatedEntryOffset(code: Uint8Array): number {
  if (emulatedInsnLength(code, 0)) return 0;
  let skip = 0;
  if (code[0] === 0x48 && code[1] === 0x85 && (code[2]! & 0xc0) === 0xc0) skip = 3;
  else if (code[0] === 0x80 && code[1] === 0x3d) skip = 7;
  return skip && emulatedInsnLength(code, skip) ? skip : 0;
}

/**
 * After a call returning a pointer, compilers test it: `test %rax,%rax` (48 85 c0) then a jcc.
 * The jcc is emulated and rax still holds the result there. Returns its vaddr, scanning at most
 * `window` bytes from the return site, or undefined.
 */
export function resultTestJumpVaddr(elf: ElfFile, site: CallSite, window = 64): number | undefined {
  const off = elf.vaddrToFileOffset(site.returnVaddr);
  if (off === undefined) return undefined;
  const code = elf.reader.bytesAt(off, Math.min(window + 6, elf.bytes.byteLength - off));
  for (let i = 0; i + 5 <= code.byteLength && i < window; i++) {
    if (code[i] === 0x48 && code[i + 1] === 0x85 && code[i + 2] === 0xc0) {
      const j = i + 3;
      if (code[j] === 0x74 || code[j] === 0x75 || (code[j] === 0x0f && (code[j + 1] === 0x84 || code[j + 1] === 0x85)))
        return site.returnVaddr + j;
    }
  }
  return undefined;
}

/** Entry probe offset of the function at `vaddr` (see emulatedEntryOffset). */
export function entryProbeOffsetAt(elf: ElfFile, vaddr: number): number {
  const off = elf.vaddrToFileOffset(vaddr);
  if (off === undefined) return 0;
  return emulatedEntryOffset(elf.reader.bytesAt(off, Math.min(16, elf.bytes.byteLength - off)));
}

/** Entry probe offset of a function symbol (see emulatedEntryOffset). */
export function entryProbeOffset(elf: ElfFile, symbol: string): number {
  const s = elf.findSymbol(symbol);
  if (!s) return 0;
  const off = elf.vaddrToFileOffset(s.value);
  if (off === undefined) return 0;
  return emulatedEntryOffset(elf.reader.bytesAt(off, Math.min(16, elf.bytes.byteLength - off)));
}
