// Dynamic relocations (SHT_RELA sections linked to .dynsym: .rela.dyn, .rela.plt): which GOT slot
// the dynamic linker fills with which symbol's address. Elf64_Rela (System V ABI x86-64 4.4):
// r_offset u64 (vaddr of the slot), r_info u64 (symbol index << 32 | type), r_addend i64.
// Two views: every entry (`dynamicRelocations`, for pool-site planning: which slots hold
// ngx_create_pool) and the imported-function slots by vaddr (`gotSlotSymbols`, JUMP_SLOT /
// GLOB_DAT only, for naming the function a call instruction reached: symbols/called-function.ts).
// Hostile input: `gotSlotSymbols` skips an entry that points outside its tables.

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
