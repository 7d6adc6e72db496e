// ELF64 little-endian parser: file header, program headers, section headers, symbol tables
// (.symtab, .dynsym), notes (build-id, core notes), .gnu_debuglink.
// Layouts: System V gABI, /usr/include/elf.h (Elf64_Ehdr 64 bytes, Elf64_Phdr 56, Elf64_Shdr 64, Elf64_Sym 24).
// Pure: `parseElf(bytes)` -> ElfFile. `loadElf(path)` (in load.ts) adds the path to errors.

import { ByteReader } from '../../binary/byte-reader.js';
import { LeakscopeError } from '../../model/errors.js';

export const PT_LOAD = 1,
  PT_DYNAMIC = 2,
  PT_NOTE = 4,
  PT_GNU_EH_FRAME = 0x6474e550;
export const SHT_SYMTAB = 2,
  SHT_NOTE = 7,
  SHT_NOBITS = 8,
  SHT_DYNSYM = 11;
export const ET_EXEC = 2,
  ET_DYN = 3,
  ET_CORE = 4;
export const PF_X = 1,
  PF_W = 2,
  PF_R = 4;
const STT_NAMES = ['notype', 'object', 'func', 'section', 'file', 'common', 'tls'] as const;

export interface ElfHeader {
  type: number; // ET_*
  machine: number; // 62 = x86-64
  entry: number; // vaddr
  phoff: number;
  shoff: number;
  phnum: number;
  shnum: number;
  shstrndx: number;
}
export interface ElfSegment {
  type: number;
  flags: number;
  offset: number; // file offset
  vaddr: number;
  filesz: number;
  memsz: number;
  align: number;
}
export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: number;
  addr: number; // vaddr (0 if not allocated)
  offset: number; // file offset
  size: number;
  link: number;
  info: number;
  entsize: number;
}
export interface ElfSymbol {
  name: string;
  value: number; // vaddr for defined symbols in ET_EXEC/ET_DYN
  size: number;
  type: (typeof STT_NAMES)[number] | 'other';
  bind: 'local' | 'global' | 'weak' | 'other';
  shndx: number; // 0 = undefined
  source: 'symtab' | 'dynsym';
}
export interface ElfNote {
  name: string;
  type: number;
  desc: Uint8Array /** file offset of desc */;
  descOffset: number;
}

/** findSymbol calls per file answered by a scan of the symbol tables before the name map is built. */
const DIRECT_LOOKUPS = 24;

export class ElfFile {
  readonly reader: ByteReader;
  readonly header: ElfHeader;
  readonly segments: ElfSegment[];
  readonly sections: ElfSection[];
  private symCache?: ElfSymbol[];
  private byName?: Map<string, ElfSymbol>;
  private sortedFuncs?: ElfSymbol[];

  constructor(
    readonly bytes: Uint8Array,
    readonly label = 'ELF',
  ) {
    const r = new ByteReader(bytes, { label });
    this.reader = r;
    if (bytes.byteLength < 4 || bytes[0] !== 0x7f || bytes[1] !== 0x45 || bytes[2] !== 0x4c || bytes[3] !== 0x46) {
      throw new LeakscopeError('not-elf', `${label}: not an ELF file (no \\x7fELF magic)`);
    }
    if (bytes.byteLength < 64)
      throw new LeakscopeError('truncated', `${label}: ELF header needs 64 bytes, file has ${bytes.byteLength}`);
    if (bytes[4] !== 2)
      throw new LeakscopeError('not-supported', `${label}: only ELF64 is supported (EI_CLASS=${bytes[4]})`);
    if (bytes[5] !== 1) throw new LeakscopeError('not-supported', `${label}: only little-endian ELF is supported`);
    this.header = {
      type: r.u16At(16),
      machine: r.u16At(18),
      entry: r.u64At(24),
      phoff: r.u64At(32),
      shoff: r.u64At(40),
      phnum: r.u16At(56),
      shnum: r.u16At(60),
      shstrndx: r.u16At(62),
    };
    const h = this.header;
    const phentsize = r.u16At(54),
      shentsize = r.u16At(58);
    this.segments = [];
    if (h.phnum && phentsize !== 56)
      throw new LeakscopeError('malformed', `${label}: e_phentsize ${phentsize}, expected 56`);
    for (let i = 0; i < h.phnum; i++) {
      const o = h.phoff + i * 56;
      r.check(o, 56);
      this.segments.push({
        type: r.u32At(o),
        flags: r.u32At(o + 4),
        offset: r.u64At(o + 8),
        vaddr: r.u64At(o + 16),
        filesz: r.u64At(o + 32),
        memsz: r.u64At(o + 40),
        align: r.u64At(o + 48),
      });
    }
    this.sections = [];
    // Core files and some stripped files have no section headers; a truncated core may cut them off.
    if (h.shnum && h.shoff && h.shoff + h.shnum * 64 <= bytes.byteLength) {
      if (shentsize !== 64) throw new LeakscopeError('malformed', `${label}: e_shentsize ${shentsize}, expected 64`);
      for (let i = 0; i < h.shnum; i++) {
        const o = h.shoff + i * 64;
        this.sections.push({
          index: i,
          name: '',
          type: r.u32At(o + 4),
          flags: r.u64At(o + 8),
          addr: r.u64At(o + 16),
          offset: r.u64At(o + 24),
          size: r.u64At(o + 32),
          link: r.u32At(o + 40),
          info: r.u32At(o + 44),
          entsize: r.u64At(o + 56),
        });
        (this.sections[i] as { nameOff?: number }).nameOff = r.u32At(o);
      }
      const strtab = this.sections[h.shstrndx];
      for (const s of this.sections) {
        const nameOff = (s as { nameOff?: number }).nameOff ?? 0;
        delete (s as { nameOff?: number }).nameOff;
        if (strtab && strtab.type !== SHT_NOBITS && nameOff < strtab.size) {
          try {
            s.name = r.cstringAt(strtab.offset + nameOff, 256);
          } catch {
            s.name = '';
          }
        }
      }
    } else if (h.shnum && h.type !== ET_CORE) {
      throw new LeakscopeError(
        'truncated',
        `${label}: section headers at 0x${h.shoff.toString(16)} (+${h.shnum}x64) lie past the end of the file (${bytes.byteLength} bytes)`,
      );
    }
  }

  get isCore(): boolean {
    return this.header.type === ET_CORE;
  }

  section(name: string): ElfSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** Bytes of a section's file contents (empty for NOBITS). */
  sectionBytes(s: ElfSection | string): Uint8Array {
    const sec = typeof s === 'string' ? this.section(s) : s;
    if (!sec || sec.type === SHT_NOBITS) return new Uint8Array(0);
    return this.reader.bytesAt(sec.offset, sec.size);
  }

  /** File offset of an ELF virtual address, through the PT_LOAD segment holding it (libbpf elf_sym_offset). */
  vaddrToFileOffset(vaddr: number): number | undefined {
    for (const s of this.segments) {
      if (s.type === PT_LOAD && vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz) return vaddr - s.vaddr + s.offset;
    }
    return undefined;
  }
  /** Virtual address of a file offset (inverse of vaddrToFileOffset). */
  fileOffsetToVaddr(fileOffset: number): number | undefined {
    for (const s of this.segments) {
      if (s.type === PT_LOAD && fileOffset >= s.offset && fileOffset < s.offset + s.filesz)
        return fileOffset - s.offset + s.vaddr;
    }
    return undefined;
  }
  /** Lowest PT_LOAD vaddr rounded down to its alignment (0 for PIE / shared objects). */
  get firstLoadVaddr(): number {
    const loads = this.segments.filter((s) => s.type === PT_LOAD);
    if (!loads.length) return 0;
    const s = loads.reduce((a, b) => (a.vaddr < b.vaddr ? a : b));
    return s.vaddr - (s.offset % Math.max(1, Math.min(s.align, 4096)));
  }

  /** Notes from PT_NOTE segments (cores) or SHT_NOTE sections. */
  notes(): ElfNote[] {
    return [...this.eachNote()];
  }

  /** Notes one at a time (a core's note segments may hold millions: never an array of them all). */
  *eachNote(): Generator<ElfNote> {
    const ranges: Array<[number, number]> = [];
    for (const s of this.segments) if (s.type === PT_NOTE) ranges.push([s.offset, s.filesz]);
    if (!ranges.length) for (const s of this.sections) if (s.type === SHT_NOTE) ranges.push([s.offset, s.size]);
    for (const [off, size] of ranges) yield* notesIn(this.reader, off, size, this.label);
  }

  /** GNU build-id (NT_GNU_BUILD_ID = 3) as lowercase hex. */
  get buildId(): string | undefined {
    for (const n of this.notes()) if (n.name === 'GNU' && n.type === 3) return Buffer.from(n.desc).toString('hex');
    return undefined;
  }

  /** `.gnu_debuglink`: file name, then (4-aligned) CRC32 of the debug file. */
  get debugLink(): { file: string; crc: number } | undefined {
    const sec = this.section('.gnu_debuglink');
    if (!sec) return undefined;
    const r = new ByteReader(this.sectionBytes(sec), { label: `${this.label} .gnu_debuglink` });
    const file = r.cstringAt(0);
    const crcOff = (Buffer.byteLength(file) + 1 + 3) & ~3;
    return { file, crc: r.u32At(crcOff) };
  }

  /** All symbols of .symtab and .dynsym (both kept; same-named entries may appear twice). */
  symbols(): ElfSymbol[] {
    if (this.symCache) return this.symCache;
    const out: ElfSymbol[] = [];
    for (const sec of this.sections) {
      if (sec.type !== SHT_SYMTAB && sec.type !== SHT_DYNSYM) continue;
      if (sec.entsize !== 24 || sec.offset + sec.size > this.bytes.byteLength) continue;
      const strtab = this.sections[sec.link];
      if (!strtab) continue;
      const source = sec.type === SHT_SYMTAB ? 'symtab' : 'dynsym';
      const r = this.reader;
      const n = Math.floor(sec.size / 24);
      r.check(sec.offset, n * 24);
      for (let i = 1; i < n; i++) {
        const o = sec.offset + i * 24;
        const nameOff = r.u32At(o),
          info = r.u8At(o + 4),
          shndx = r.u16At(o + 6);
        const bindN = info >> 4,
          typeN = info & 15;
        let name = '';
        if (nameOff && nameOff < strtab.size) {
          try {
            name = r.cstringAt(strtab.offset + nameOff, 4096);
          } catch {
            name = '';
          }
        }
        out.push({
          name,
          value: r.u64At(o + 8),
          size: r.u64At(o + 16),
          type: STT_NAMES[typeN] ?? 'other',
          bind: bindN === 0 ? 'local' : bindN === 1 ? 'global' : bindN === 2 ? 'weak' : 'other',
          shndx,
          source,
        });
      }
    }
    this.symCache = out;
    return out;
  }

  /** A defined symbol by name, preferring .symtab over .dynsym, ignoring version suffixes (`malloc@@GLIBC_2.2.5`). */
  findSymbol(name: string): ElfSymbol | undefined {
    // The first few lookups scan the symbol tables' bytes for the name (no object per symbol: a
    // census looks up a handful of names in each of a dozen objects); later ones build the map.
    if (!this.byName && !this.symCache && this.directLookups < DIRECT_LOOKUPS) {
      this.directLookups++;
      return this.scanForSymbol(name);
    }
    if (!this.byName) {
      this.byName = new Map();
      for (const s of this.symbols()) {
        if (!s.name || s.shndx === 0) continue;
        const key = s.name.split('@')[0]!;
        const prev = this.byName.get(key);
        if (!prev || (prev.source === 'dynsym' && s.source === 'symtab' && prev.bind !== 'global'))
          this.byName.set(key, s);
      }
    }
    return this.byName.get(name);
  }

  private directLookups = 0;

  /** findSymbol without building every symbol: the same choice among the entries named `name` or `name@...`. */
  private scanForSymbol(name: string): ElfSymbol | undefined {
    const key = Buffer.from(name, 'utf8');
    if (key.length === 0 || key.includes(0x40)) return undefined;
    const bytes = this.bytes,
      r = this.reader;
    const k0 = key[0]!,
      kn = key.length;
    let best: ElfSymbol | undefined;
    for (const sec of this.sections) {
      if (sec.type !== SHT_SYMTAB && sec.type !== SHT_DYNSYM) continue;
      if (sec.entsize !== 24 || sec.offset + sec.size > bytes.byteLength) continue;
      const strtab = this.sections[sec.link];
      if (!strtab) continue;
      const source = sec.type === SHT_SYMTAB ? 'symtab' : 'dynsym';
      const n = Math.floor(sec.size / 24);
      r.check(sec.offset, n * 24);
      for (let i = 1; i < n; i++) {
        const o = sec.offset + i * 24;
        const nameOff = r.u32At(o);
        if (!nameOff || nameOff >= strtab.size) continue;
        const at = strtab.offset + nameOff;
        if (at + kn >= bytes.byteLength || bytes[at] !== k0) continue;
        let j = 1;
        while (j < kn && bytes[at + j] === key[j]) j++;
        if (j < kn) continue;
        const term = bytes[at + kn];
        if (term !== 0 && term !== 0x40) continue;
        const shndx = r.u16At(o + 6);
        if (shndx === 0) continue;
        const info = r.u8At(o + 4);
        const bindN = info >> 4;
        const bind = bindN === 0 ? 'local' : bindN === 1 ? 'global' : bindN === 2 ? 'weak' : 'other';
        if (best && !(best.source === 'dynsym' && source === 'symtab' && best.bind !== 'global')) continue;
        let full: string;
        try {
          full = r.cstringAt(at, 4096);
        } catch {
          continue;
        }
        best = {
          name: full,
          value: r.u64At(o + 8),
          size: r.u64At(o + 16),
          type: STT_NAMES[info & 15] ?? 'other',
          bind,
          shndx,
          source,
        };
      }
    }
    return best;
  }

  /** Defined function (and object) symbols with a size, sorted by address, for address -> name lookup. */
  sortedSymbols(): ElfSymbol[] {
    if (!this.sortedFuncs) {
      const seen = new Map<number, ElfSymbol>();
      for (const s of this.symbols()) {
        if (
          s.shndx === 0 ||
          !s.name ||
          (s.type !== 'func' && s.type !== 'object' && s.type !== 'notype' && s.type !== 'other')
        )
          continue;
        if (s.type === 'notype' && s.size === 0) continue;
        const prev = seen.get(s.value);
        if (!prev || betterAlias(s, prev)) seen.set(s.value, s);
      }
      this.sortedFuncs = [...seen.values()].sort((a, b) => a.value - b.value);
    }
    return this.sortedFuncs;
  }

  /** The symbol whose [value, value+size) holds vaddr, or undefined (never a misleading nearest name). */
  symbolAt(vaddr: number): ElfSymbol | undefined {
    const syms = this.sortedSymbols();
    let lo = 0,
      hi = syms.length - 1,
      best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (syms[mid]!.value <= vaddr) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    // Walk back over symbols at lower addresses whose ranges may still cover vaddr (nested / aliases).
    for (let i = best; i >= 0 && i > best - 8; i--) {
      const s = syms[i]!;
      if (vaddr >= s.value && vaddr < s.value + Math.max(s.size, 1)) return s;
    }
    return undefined;
  }
}

/** Of two symbols at one address, the one to show: a function, then a public-looking name
 *  (fewer leading underscores: `calloc` over `__libc_calloc`), then global binding, then a size. */
function betterAlias(s: ElfSymbol, prev: ElfSymbol): boolean {
  if ((s.type === 'func') !== (prev.type === 'func')) return s.type === 'func';
  const u = (x: ElfSymbol) => /^_*/.exec(x.name)![0].length;
  if (u(s) !== u(prev)) return u(s) < u(prev);
  if ((s.bind === 'global') !== (prev.bind === 'global')) return s.bind === 'global';
  return prev.size === 0 && s.size > 0;
}

/** The notes in [off, off + size) of `r` (Elf64_Nhdr: namesz, descsz, type, then name and desc, each 4-aligned). */
export function* notesIn(r: ByteReader, off: number, size: number, label: string): Generator<ElfNote> {
  let p = off;
  const end = off + size;
  r.check(off, size);
  const v = r.view;
  while (p + 12 <= end) {
    const namesz = v.getUint32(p, true),
      descsz = v.getUint32(p + 4, true),
      type = v.getUint32(p + 8, true);
    const nameOff = p + 12,
      descOff = nameOff + ((namesz + 3) & ~3);
    if (namesz > end - nameOff || descsz > end - descOff)
      throw new LeakscopeError('truncated', `${label}: note at 0x${(r.base + p).toString(16)} runs past its segment`);
    // A note without a name belongs to no owner (every real note has "CORE", "GNU", "LINUX"...): skipped unread.
    if (namesz)
      yield {
        name: Buffer.from(r.bytesAt(nameOff, namesz - 1)).toString('latin1'),
        type,
        desc: r.bytesAt(descOff, descsz),
        descOffset: r.base + descOff,
      };
    p = descOff + ((descsz + 3) & ~3);
  }
}

export function parseElf(bytes: Uint8Array, label?: string): ElfFile {
  return new ElfFile(bytes, label);
}
