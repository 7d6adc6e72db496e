// Dynamic relocations that name an imported function's GOT slot: R_X86_64_JUMP_SLOT (.rela.plt,
// the PLT's slots) and R_X86_64_GLOB_DAT (.rela.dyn, `call *f@GOTPCREL(%rip)` with -fno-plt and
// address-taken imports). Layout: Elf64_Rela (24 bytes: r_offset u64, r_info u64 = sym << 32 | type,
// r_addend i64), System V gABI; types from the x86-64 psABI (GLOB_DAT 6, JUMP_SLOT 7). The symbol
// index is into the section named by the relocation section's sh_link (.dynsym).
// Hostile input: every read is bounds-checked; an entry that points outside its tables is skipped.

import type { ElfFile } from './elf.js';

export const SHT_RELA = 4;
export const R_X86_64_GLOB_DAT = 6,
  R_X86_64_JUMP_SLOT = 7;

/** Slot vaddr -> imported symbol name (without @version) for every JUMP_SLOT / GLOB_DAT relocation. */
export function gotSlotSymbols(elf: ElfFile): Map<number, string> {
  const cached = slotCache.get(elf);
  if (cached) return cached;
  const out = new Map<number, string>();
  const r = elf.reader;
  const size = elf.bytes.byteLength;
  for (const sec of elf.sections) {
    if (sec.type !== SHT_RELA || sec.entsize !== 24 || sec.offset + sec.size > size) continue;
    const symtab = elf.sections[sec.link];
    const strtab = symtab ? elf.sections[symtab.link] : undefined;
    if (!symtab || !strtab || symtab.entsize !== 24 || symtab.offset + symtab.size > size) continue;
    const nsyms = Math.floor(symtab.size / 24);
    const n = Math.floor(sec.size / 24);
    for (let i = 0; i < n; i++) {
      const o = sec.offset + i * 24;
      const type = r.u32At(o + 8);
      if (type !== R_X86_64_JUMP_SLOT && type !== R_X86_64_GLOB_DAT) continue;
      const sym = r.u32At(o + 12);
      if (sym === 0 || sym >= nsyms) continue;
      const nameOff = r.u32At(symtab.offset + sym * 24);
      if (!nameOff || nameOff >= strtab.size || strtab.offset + nameOff >= size) continue;
      let name: string;
      try {
        name = r.cstringAt(strtab.offset + nameOff, 1024);
      } catch {
        continue;
      }
      if (name) out.set(r.u64At(o), name.split('@')[0]!);
    }
  }
  slotCache.set(elf, out);
  return out;
}
const slotCache = new WeakMap<ElfFile, Map<number, string>>();
