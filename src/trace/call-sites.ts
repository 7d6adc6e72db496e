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
  if (!fn || fn.type !== 'func' || !fn.size) throw new LeakscopeError('not-found', `${elf.label}: function ${caller} not found`);
  const off = elf.vaddrToFileOffset(fn.value);
  if (off === undefined) throw new LeakscopeError('malformed', `${elf.label}: ${caller} is not inside a loaded segment`);
  const code = elf.reader.bytesAt(off, fn.size);
  const targets = new Set<number>();
  for (const c of callees) for (const a of calleeAddresses(elf, c)) targets.add(a);
  const sites = findDirectCalls(code, fn.value, targets);
  if (!sites.length) throw new LeakscopeError('not-found', `${elf.label}: ${caller} has no direct call to ${callees.join(' or ')}`);
  return sites[0]!;
}
