// Loaded ELF objects of a target, from its file-backed mappings, with their load bias.
// Load bias: runtime address = ELF vaddr + loadBias (pprof's ObjFile base; libbpf's "base address").

import { loadElf } from '../formats/elf/index.js';
import type { ElfFile } from '../formats/elf/index.js';
import { PT_LOAD } from '../formats/elf/elf.js';
import { SIZE_CAPS } from './target-files.js';
import type { Mapping, Module, TargetFiles } from '../model/memory.js';

/** Pure: the load bias of an object whose mapping of file offset `mappingOffset` starts at `mappingStart`. */
export function computeLoadBias(elf: Pick<ElfFile, 'segments'>, mappingStart: number, mappingOffset: number): number {
  // Find the PT_LOAD segment whose page-aligned file range holds mappingOffset.
  for (const s of elf.segments) {
    if (s.type !== PT_LOAD) continue;
    const pageOff = s.offset - (s.offset % 4096);
    if (mappingOffset >= pageOff && mappingOffset < s.offset + Math.max(s.filesz, 1)) {
      // runtime(mappingStart) corresponds to file offset mappingOffset -> vaddr = s.vaddr - s.offset + mappingOffset
      return mappingStart - (s.vaddr - s.offset + mappingOffset);
    }
  }
  return mappingStart - mappingOffset;
}

/** A path that can name a loaded object file (not a device, deleted file, memfd or SysV segment). */
export function isElfPath(path: string): boolean {
  return (
    path.startsWith('/') &&
    !path.startsWith('/dev/') &&
    !path.startsWith('/memfd:') &&
    !path.includes('(deleted)') &&
    !path.startsWith('/SYSV')
  );
}

/**
 * Groups file-backed mappings by path into modules. `hostPath` gives the path leakscope opens for an
 * object (from its target path and its lowest mapping; undefined: not openable, left out). Objects
 * that are not ELF (locale archives, fonts, ...), FIFOs, devices and files over the size cap are left
 * out. `exePath` (target view) is listed first. `files` opens the target's other files (debug files).
 */
export function buildModules(
  mappings: readonly Mapping[],
  hostPath: (p: string, first: Mapping) => string | undefined,
  exePath?: string,
  files?: TargetFiles,
): Module[] {
  const byPath = new Map<string, Mapping[]>();
  for (const m of mappings) {
    if (!isElfPath(m.path)) continue;
    let list = byPath.get(m.path);
    if (!list) byPath.set(m.path, (list = []));
    list.push(m);
  }
  const out: Module[] = [];
  for (const [path, maps] of byPath) {
    const first = maps.reduce((a, b) => (a.start < b.start ? a : b));
    let host: string | undefined;
    try {
      host = hostPath(path, first);
    } catch {
      continue;
    }
    if (!host) continue;
    let elf: ElfFile;
    try {
      elf = loadElf(host, { maxBytes: SIZE_CAPS.object, label: path });
    } catch {
      continue;
    }
    if (elf.isCore) continue;
    const loadBias = computeLoadBias(elf, first.start, first.offset);
    // .bss past the file's last page is an anonymous mapping right after it: part of the object
    // up to the end of its last PT_LOAD (vaddr + memsz), so static arrays there resolve to symbols.
    const loadEnd =
      loadBias + Math.max(0, ...elf.segments.filter((sg) => sg.type === PT_LOAD).map((sg) => sg.vaddr + sg.memsz));
    const fileEnd = Math.max(...maps.map((m) => m.end));
    const bss = mappings.filter((m) => !m.path && m.start >= fileEnd && m.start < loadEnd);
    const mod: Module = {
      path,
      hostPath: host,
      base: first.start,
      loadBias,
      mappings: [...maps, ...bss].sort((a, b) => a.start - b.start),
      buildId: elf.buildId,
    };
    // Not enumerable: a module stays plain data for JSON, spreads and deepEqual.
    if (files) Object.defineProperty(mod, 'files', { value: files, enumerable: false });
    out.push(mod);
  }
  out.sort((a, b) => (a.path === exePath ? -1 : b.path === exePath ? 1 : a.base - b.base));
  return out;
}

/** The module whose mappings hold runtime address addr. */
export function moduleAt(modules: readonly Module[], addr: number): Module | undefined {
  for (const mod of modules) for (const m of mod.mappings) if (addr >= m.start && addr < m.end) return mod;
  return undefined;
}
