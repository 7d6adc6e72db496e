// Which imported function a call site called, decoded from the caller's own ELF file (never the
// target's memory): the instruction just before a return address.
//
//   E8 rel32            call rel32: target = return address + rel32; when the target is a PLT stub
//                       (`[endbr64] [bnd] jmp *slot(%rip)`: FF 25 disp32, slot = stub insn end + disp32),
//                       the slot's JUMP_SLOT relocation names the import.
//   FF 15 disp32        call *slot(%rip) (-fno-plt): slot = return address + disp32; the slot's
//                       GLOB_DAT / JUMP_SLOT relocation names the import.
//   tail call           E8 to a function of the same module that leaves through `jmp rel32` (E9) to a
//                       PLT stub or `jmp *slot(%rip)` (FF 25): decided only when exactly one of the
//                       wanted names is reached that way from that function's bytes.
// Encodings: Intel SDM vol. 2A (CALL, JMP); stub shapes: x86-64 psABI 5.x (PLT, .plt.sec with IBT).
// Used where the callee's own address cannot tell aliases apart (glibc 2.36: aligned_alloc and
// memalign are one function). Undecidable cases (indirect calls through a register, stray bytes,
// several candidates) return undefined and the caller keeps its name.

import type { ElfFile } from '../formats/elf/index.js';
import { gotSlotSymbols } from '../formats/elf/index.js';

/** How far into a tail-calling function we look for its jmp (bytes). */
const MAX_WRAPPER_BYTES = 4096;

/** `len` bytes of the file at ELF vaddr `vaddr`, or undefined when not all inside one loaded segment. */
function codeAt(elf: ElfFile, vaddr: number, len: number): Uint8Array | undefined {
  if (vaddr < 0 || len <= 0) return undefined;
  const off = elf.vaddrToFileOffset(vaddr);
  const end = elf.vaddrToFileOffset(vaddr + len - 1);
  if (off === undefined || end !== off + len - 1) return undefined;
  try {
    return elf.reader.bytesAt(off, len);
  } catch {
    return undefined;
  }
}

function i32(b: Uint8Array, i: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getInt32(i, true);
}

/** Import named by a PLT stub at `vaddr`: `[F3 0F 1E FA] [F2] FF 25 disp32` -> the slot's relocation. */
export function pltStubImport(elf: ElfFile, vaddr: number): string | undefined {
  const b = codeAt(elf, vaddr, 11);
  if (!b) return undefined;
  let i = 0;
  if (b[0] === 0xf3 && b[1] === 0x0f && b[2] === 0x1e && b[3] === 0xfa) i = 4; // endbr64
  if (b[i] === 0xf2) i++; // bnd prefix (MPX-era PLTs)
  if (b[i] !== 0xff || b[i + 1] !== 0x25) return undefined;
  const slot = vaddr + i + 6 + i32(b, i + 2);
  return gotSlotSymbols(elf).get(slot);
}

export interface CalledFunction {
  name: string;
  /** plt: direct call to a PLT stub; got: call *slot(%rip); tail: through a function that tail-calls it. */
  via: 'plt' | 'got' | 'tail';
}

/**
 * The imported function the call ending at `returnVaddr` (ELF vaddr in `elf`) called, or undefined.
 * `wanted`: names that count for the tail-call case (a wrapper may jump to several imports).
 */
export function calledFunction(
  elf: ElfFile,
  returnVaddr: number,
  wanted?: ReadonlySet<string>,
): CalledFunction | undefined {
  const b = codeAt(elf, returnVaddr - 6, 6);
  if (!b) return undefined;
  if (b[0] === 0xff && b[1] === 0x15) {
    const name = gotSlotSymbols(elf).get(returnVaddr + i32(b, 2));
    if (name) return { name, via: 'got' };
  }
  if (b[1] !== 0xe8) return undefined;
  const target = returnVaddr + i32(b, 2);
  const viaPlt = pltStubImport(elf, target);
  if (viaPlt) return { name: viaPlt, via: 'plt' };
  if (!wanted?.size) return undefined;
  const tail = tailCallImport(elf, target, wanted);
  return tail ? { name: tail, via: 'tail' } : undefined;
}

/** The one wanted import a function starting at `vaddr` jumps to (E9 rel32 to a PLT stub, FF 25 slot). */
function tailCallImport(elf: ElfFile, vaddr: number, wanted: ReadonlySet<string>): string | undefined {
  const fn = elf.symbolAt(vaddr);
  if (!fn || fn.value !== vaddr || fn.type !== 'func' || !fn.size || fn.size > MAX_WRAPPER_BYTES) return undefined;
  const code = codeAt(elf, vaddr, fn.size);
  if (!code) return undefined;
  const found = new Set<string>();
  const slots = gotSlotSymbols(elf);
  for (let i = 0; i + 5 <= code.byteLength; i++) {
    let name: string | undefined;
    if (code[i] === 0xe9) name = pltStubImport(elf, vaddr + i + 5 + i32(code, i + 1));
    else if (code[i] === 0xff && code[i + 1] === 0x25 && i + 6 <= code.byteLength)
      name = slots.get(vaddr + i + 6 + i32(code, i + 2));
    if (name && wanted.has(name)) found.add(name);
  }
  return found.size === 1 ? [...found][0] : undefined;
}
