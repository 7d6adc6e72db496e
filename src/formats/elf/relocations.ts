// Dynamic relocations (SHT_RELA sections linked to .dynsym: .rela.dyn, .rela.plt): which GOT slot
// the dynamic linker fills with which symbol's address. Elf64_Rela (System V ABI x86-64 4.4):
// r_offset u64 (vaddr of the slot), r_info u64 (symbol index << 32 | type), r_addend i64.

import type { ElfFile } from './elf.js';
import { SHT_DYNSYM } from './elf.js';

/** SHT_RELA. */
export const SHT_RELA = 4;
/** x86-64 relocation types (psABI table 4.9) that fill a slot with a symbol's address. */
export const R_X86_64_64 = 1,
  R_X86_64_GLOB_DAT = 6,
  R_X86_64_JUMP_SLOT = 7,
  R_X86_64_RELATIVE = 8;

export interface DynamicRelocation {
  /** vaddr of the slot written. */
  offset: number;
  type: number;
  /** Name of the symbol (without version), '' for none (e.g. RELATIVE). */
  symbol: string;
  addend: number;
}

/** Every RELA entry of sections whose symbol table is .dynsym (none when the file has no section headers). */
export function dynamicRelocations(elf: ElfFile): DynamicRelocation[] {
  const out: DynamicRelocation[] = [];
  const r = elf.reader;
  for (const sec of elf.sections) {
    if (sec.type !== SHT_RELA || sec.entsize !== 24) continue;
    const symtab = elf.sections[sec.link];
    if (symtab?.type !== SHT_DYNSYM || symtab.entsize !== 24) continue;
    const strtab = elf.sections[symtab.link];
    const nsyms = Math.floor(symtab.size / 24);
    const n = Math.floor(sec.size / 24);
    r.check(sec.offset, n * 24);
    for (let i = 0; i < n; i++) {
      const o = sec.offset + i * 24;
      const type = r.u32At(o + 8),
        symIndex = r.u32At(o + 12);
      let symbol = '';
      if (symIndex && symIndex < nsyms && strtab) {
        const nameOff = r.u32At(symtab.offset + symIndex * 24);
        if (nameOff < strtab.size) symbol = r.cstringAt(strtab.offset + nameOff, 4096).split('@')[0]!;
      }
      // r_addend is signed; addresses fit in 2^53.
      const lo = r.u32At(o + 16),
        hi = r.u32At(o + 20) | 0;
      out.push({ offset: r.u64At(o), type, symbol, addend: hi * 2 ** 32 + lo });
    }
  }
  return out;
}
