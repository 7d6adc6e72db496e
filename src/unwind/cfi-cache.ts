// Per-module CFI tables: .eh_frame (+ .eh_frame_hdr for O(log n) lookup) from the ELF file the
// process mapped, .debug_frame from the same file or from its separate debug file. Tables are parsed
// lazily and cached per (path, build-id); unwind rows are cached per vaddr.

import { LeakscopeError, isLeakscopeError } from '../model/errors.js';
import { loadElf, PT_GNU_EH_FRAME, PT_LOAD, SHT_NOBITS, type ElfFile } from '../formats/elf/index.js';
import {
  type CfiSection,
  type Cie,
  type Fde,
  type UnwindRow,
  parseFde,
  parseCfiSection,
  findFdeInSorted,
  unwindRowAt,
} from '../formats/dwarf/cfi.js';
import { type EhFrameHdr, parseEhFrameHdr, searchEhFrameHdr } from '../formats/dwarf/eh-frame-hdr.js';

/** Rows cached per module before the cache is dropped and refilled (bounds leakscope's own memory). */
export const MAX_CACHED_ROWS = 1 << 16;

export interface ModuleCfiSources {
  ehFrame?: CfiSection;
  ehFrameHdr?: EhFrameHdr;
  debugFrame?: CfiSection;
}

/** The CFI of one ELF object, looked up by ELF vaddr. */
export class ModuleCfi {
  readonly ehFrame?: CfiSection;
  readonly ehFrameHdr?: EhFrameHdr;
  readonly debugFrame?: CfiSection;
  /** Why a table could not be loaded or parsed (lookups then use what remains). */
  readonly problems: string[] = [];
  private readonly ehCies = new Map<number, Cie>();
  private ehSorted?: Fde[];
  private debugSorted?: Fde[];
  private readonly rows = new Map<number, UnwindRow | null>();

  constructor(
    readonly label: string,
    sources: ModuleCfiSources,
    problems: string[] = [],
  ) {
    this.ehFrame = sources.ehFrame;
    this.ehFrameHdr = sources.ehFrameHdr;
    this.debugFrame = sources.debugFrame;
    this.problems.push(...problems);
  }

  get hasTables(): boolean {
    return !!(this.ehFrame || this.debugFrame);
  }

  /** The FDE covering `vaddr` (.eh_frame first, then .debug_frame), with the section it came from. */
  findFde(vaddr: number): { section: CfiSection; fde: Fde } | undefined {
    const eh = this.ehFrame;
    if (eh) {
      const hdr = this.ehFrameHdr;
      if (hdr?.searchable) {
        const hit = searchEhFrameHdr(hdr, vaddr);
        if (hit) {
          const fde = parseFde(eh, hit.fdeVaddr - eh.vaddr, this.ehCies);
          if (vaddr >= fde.pcBegin && vaddr < fde.pcEnd) return { section: eh, fde };
        }
      } else {
        if (!this.ehSorted) this.ehSorted = this.parseAll(eh);
        const fde = findFdeInSorted(this.ehSorted, vaddr);
        if (fde) return { section: eh, fde };
      }
    }
    const dbg = this.debugFrame;
    if (dbg) {
      if (!this.debugSorted) this.debugSorted = this.parseAll(dbg);
      const fde = findFdeInSorted(this.debugSorted, vaddr);
      if (fde) return { section: dbg, fde };
    }
    return undefined;
  }

  private parseAll(sec: CfiSection): Fde[] {
    try {
      return parseCfiSection(sec).fdes;
    } catch (e) {
      if (!isLeakscopeError(e)) throw e;
      this.problems.push(e.message);
      return [];
    }
  }

  /**
   * The unwind row at `vaddr`, or null when no FDE covers it. Cached per vaddr.
   * Throws LeakscopeError('malformed') when the covering FDE is corrupt.
   */
  rowAt(vaddr: number): UnwindRow | null {
    const hit = this.rows.get(vaddr);
    if (hit !== undefined) return hit;
    const found = this.findFde(vaddr);
    const row = found ? unwindRowAt(found.section, found.fde, vaddr) : null;
    if (this.rows.size >= MAX_CACHED_ROWS) this.rows.clear();
    this.rows.set(vaddr, row);
    return row;
  }

  /** Every FDE of every table (parses them all; for statistics and tests). */
  allFdes(): { ehFrame: Fde[]; debugFrame: Fde[] } {
    return {
      ehFrame: this.ehFrame ? parseCfiSection(this.ehFrame).fdes : [],
      debugFrame: this.debugFrame ? parseCfiSection(this.debugFrame).fdes : [],
    };
  }
}

function sectionVaddr(elf: ElfFile, name: string): number | undefined {
  const s = elf.section(name);
  return s?.addr ? s.addr : undefined;
}

/**
 * Builds a module's CFI from its ELF file (`elf`) and optionally a separate debug file.
 * .eh_frame / .eh_frame_hdr are found by section name, else through PT_GNU_EH_FRAME.
 */
export function moduleCfiFromElf(elf: ElfFile, debugElf?: ElfFile, label = elf.label): ModuleCfi {
  const problems: string[] = [];
  const sources: ModuleCfiSources = {};
  const textVaddr = sectionVaddr(elf, '.text');
  const dataVaddr = sectionVaddr(elf, '.got');
  try {
    let hdrBytes: Uint8Array | undefined,
      hdrVaddr = 0;
    const hdrSec = elf.section('.eh_frame_hdr');
    if (hdrSec && hdrSec.type !== SHT_NOBITS) {
      hdrBytes = elf.sectionBytes(hdrSec);
      hdrVaddr = hdrSec.addr;
    } else if (!hdrSec) {
      const seg = elf.segments.find((s) => s.type === PT_GNU_EH_FRAME);
      if (seg) {
        hdrBytes = elf.reader.bytesAt(seg.offset, seg.filesz);
        hdrVaddr = seg.vaddr;
      }
    }
    if (hdrBytes) sources.ehFrameHdr = parseEhFrameHdr(hdrBytes, hdrVaddr, `${label} .eh_frame_hdr`);
  } catch (e) {
    if (!isLeakscopeError(e)) throw e;
    problems.push(e.message);
  }
  try {
    const ehSec = elf.section('.eh_frame');
    if (ehSec && ehSec.type !== SHT_NOBITS) {
      sources.ehFrame = {
        kind: 'eh_frame',
        bytes: elf.sectionBytes(ehSec),
        vaddr: ehSec.addr,
        textVaddr,
        dataVaddr,
        label: `${label} .eh_frame`,
      };
    } else if (!ehSec && sources.ehFrameHdr) {
      // No section headers: .eh_frame runs from eh_frame_ptr to the end of its PT_LOAD segment.
      const v = sources.ehFrameHdr.ehFrameVaddr;
      const seg = elf.segments.find((s) => s.type === PT_LOAD && v >= s.vaddr && v < s.vaddr + s.filesz);
      if (seg) {
        const off = v - seg.vaddr + seg.offset;
        sources.ehFrame = {
          kind: 'eh_frame',
          bytes: elf.reader.bytesAt(off, seg.offset + seg.filesz - off),
          vaddr: v,
          label: `${label} .eh_frame`,
        };
      }
    }
    if (sources.ehFrame && sources.ehFrameHdr && sources.ehFrameHdr.ehFrameVaddr !== sources.ehFrame.vaddr) {
      problems.push(
        `${label}: .eh_frame_hdr points at 0x${sources.ehFrameHdr.ehFrameVaddr.toString(16)}, .eh_frame is at 0x${sources.ehFrame.vaddr.toString(16)}; using a sorted index instead`,
      );
      sources.ehFrameHdr = undefined;
    }
  } catch (e) {
    if (!isLeakscopeError(e)) throw e;
    problems.push(e.message);
  }
  for (const f of debugElf ? [debugElf, elf] : [elf]) {
    const s = f.section('.debug_frame');
    if (s && s.type !== SHT_NOBITS && s.size > 0) {
      // .debug_frame is not loaded; its pc values are absolute vaddrs (no pcrel), so vaddr 0 is fine.
      sources.debugFrame = {
        kind: 'debug_frame',
        bytes: f.sectionBytes(s),
        vaddr: 0,
        label: `${f.label} .debug_frame`,
      };
      break;
    }
  }
  return new ModuleCfi(label, sources, problems);
}

export interface CfiLoadOptions {
  /** GNU build-id of the mapped object (part of the cache key: a replaced file is a new entry). */
  buildId?: string;
  /** Separate debug file (e.g. /usr/lib/debug/.build-id/xx/yyyy.debug), parsed, to take .debug_frame from. */
  debugElf?: ElfFile;
}

/** Loads and caches ModuleCfi per (path, build-id). Never throws for a missing or unreadable file. */
export class CfiCache {
  private readonly entries = new Map<string, ModuleCfi>();

  /** `path`: the file to open (a module's hostPath). */
  get(path: string, opts: CfiLoadOptions = {}): ModuleCfi {
    const key = `${path}\0${opts.buildId ?? ''}`;
    const hit = this.entries.get(key);
    if (hit) return hit;
    let cfi: ModuleCfi;
    try {
      const elf = loadElf(path);
      if (opts.buildId && elf.buildId && elf.buildId !== opts.buildId) {
        throw new LeakscopeError(
          'not-found',
          `${path}: build-id ${elf.buildId} differs from the mapped object's ${opts.buildId}`,
        );
      }
      cfi = moduleCfiFromElf(elf, opts.debugElf, path);
    } catch (e) {
      if (!isLeakscopeError(e)) throw e;
      cfi = new ModuleCfi(path, {}, [e.message]);
    }
    this.entries.set(key, cfi);
    return cfi;
  }

  get size(): number {
    return this.entries.size;
  }
  clear(): void {
    this.entries.clear();
  }
}
