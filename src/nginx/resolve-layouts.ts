// Chooses the struct layouts for the target's nginx: DWARF of the binary or its debug file
// when present, else the built-in table by version + configure flags (layouts.ts).

import type { Module } from '../model/memory.js';
import type { Symbolizer } from '../symbols/index.js';
import { structLayoutsFromDwarf } from '../formats/dwarf/info.js';
import type { ElfFile } from '../formats/elf/index.js';
import { LAYOUT_FIELDS, layoutFeatures, nginxBuildInfo, tableLayouts, versionNumber } from './layouts.js';
import type { NginxLayouts, StructLayouts } from './layouts.js';

/** Layouts from an ELF's DWARF (.debug_info), or undefined when it has none or lacks a struct. */
export function dwarfLayouts(elf: ElfFile): StructLayouts | undefined {
  if (!elf.section('.debug_info')) return undefined;
  try {
    const found = structLayoutsFromDwarf(elf, LAYOUT_FIELDS as unknown as Record<string, readonly string[]>);
    for (const s of Object.keys(LAYOUT_FIELDS)) if (!found[s]) return undefined;
    return found as unknown as StructLayouts;
  } catch {
    return undefined;
  }
}

export function nginxLayouts(symbolizer: Symbolizer, exe: Module): NginxLayouts {
  const syms = symbolizer.symbolsOf(exe);
  if (!syms) return tableLayouts({ version: '', configureArgs: '' });
  const info = nginxBuildInfo(syms.elf);
  for (const [elf, where] of [
    [syms.elf, exe.path],
    [syms.debug?.elf, syms.debug?.path],
  ] as const) {
    if (!elf) continue;
    const d = dwarfLayouts(elf);
    if (d) {
      return {
        ...d,
        version: info.version,
        versionNumber: versionNumber(info.version),
        features: layoutFeatures(info.configureArgs),
        source: 'dwarf',
        sourceDetail: `DWARF of ${where}`,
      };
    }
  }
  return tableLayouts(info);
}
