// Finding glibc's allocator state in a target: libc's version, main_arena, mp_ and
// tcache_key. Symbols from libc's debug file (Debian: libc6-dbg) when present; otherwise
// signatures validated against the data (DESIGN.md "Finding glibc's arena without symbols"):
//   main_arena: an 8-byte value in libc's writable segments that is the top chunk of [heap]
//               (main_arena.top), with every bin either empty (fd == bk == bin_at(i), the
//               self-reference) or pointing into [heap].
//   mp_:        an 8-byte value == [heap] start (mp_.sbrk_base) with plausible neighbours
//               (tcache_bins, n_mmaps_max, mmapped_mem page multiple, ...).

import { basename } from 'node:path';
import type { AddressSpace } from '../target/address-space.js';
import type { Mapping, Module } from '../model/memory.js';
import { LeakscopeError } from '../model/errors.js';
import type { Symbolizer } from '../symbols/symbolizer.js';
import { ByteReader } from '../binary/byte-reader.js';
import { layoutFor, parseGlibcVersion, type GlibcLayout, type GlibcVersion, PREV_INUSE, IS_MMAPPED } from './layout.js';

export interface GlibcLocation {
  libc: Module;
  version: GlibcVersion;
  layout: GlibcLayout;
  mainArena: number;
  /** Runtime address of mp_, or null when neither the symbol nor the signature was found. */
  mp: number | null;
  /** Value of tcache_key (2.34+) when the debug file names it; else null (inferred later). */
  tcacheKey: number | null;
  /** [heap] mapping (brk), when the process has one. */
  heapMapping: Mapping | undefined;
  sources: Record<string, string>;
}

export function findLibc(space: AddressSpace, symbolizer: Symbolizer): Module {
  const mod =
    symbolizer.modulesNamed('libc.so')[0] ?? symbolizer.modules.find((m) => /^libc[-.]/.test(basename(m.path)));
  if (!mod)
    throw new LeakscopeError('not-found', `${space.description}: no libc.so in the process (not a glibc program?)`);
  return mod;
}

/**
 * glibc version of a libc: the banner "GNU C Library (...) ... version 2.36." in .rodata
 * (csu/version.c), else the file name (libc-2.31.so). Returns the version and where it came from.
 */
export function detectGlibcVersion(symbolizer: Symbolizer, libc: Module): { version: GlibcVersion; source: string } {
  const s = symbolizer.symbolsOf(libc);
  if (s) {
    const sec = s.elf.sections.find((x) => x.name === '.rodata');
    if (sec) {
      const bytes = Buffer.from(s.elf.sectionBytes(sec));
      let at = bytes.indexOf('GNU C Library');
      for (let guard = 0; at >= 0 && guard < 16; guard++) {
        const end = bytes.indexOf(0, at);
        const text = bytes.toString('latin1', at, end < 0 ? Math.min(bytes.length, at + 400) : Math.min(end, at + 400));
        const m = /version (\d+\.\d+(?:\.\d+)?)/.exec(text);
        if (m)
          return {
            version: parseGlibcVersion(m[1]!),
            source: `libc .rodata banner "${text.split('\n')[0]!.slice(0, 100)}"`,
          };
        at = bytes.indexOf('GNU C Library', at + 1);
      }
    }
  }
  const m = /libc-(\d+\.\d+)\.so/.exec(basename(libc.path));
  if (m) return { version: parseGlibcVersion(m[1]!), source: `libc file name ${basename(libc.path)}` };
  throw new LeakscopeError(
    'not-found',
    `cannot tell the glibc version of ${libc.path}: no "GNU C Library ... version" banner in .rodata`,
  );
}

/** libc's writable mappings, plus the anonymous mapping right after them (.bss tail). */
function libcWritable(space: AddressSpace, libc: Module): Mapping[] {
  const maps = space.mappings();
  const out: Mapping[] = [];
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i]!;
    if (m.path === libc.path && m.perms.startsWith('rw')) {
      out.push(m);
      const n = maps[i + 1];
      if (n && n.path === '' && n.start === m.end && n.perms.startsWith('rw')) out.push(n);
    }
  }
  return out;
}

export function locateGlibc(space: AddressSpace, symbolizer: Symbolizer): GlibcLocation {
  const libc = findLibc(space, symbolizer);
  const { version, source: versionSource } = detectGlibcVersion(symbolizer, libc);
  const layout = layoutFor(version);
  const sources: Record<string, string> = {
    glibcVersion: versionSource,
    layout: `built-in x86-64 layout for glibc ${version.major}.${version.minor} (bminor/glibc malloc/malloc.c, malloc/arena.c at glibc-${version.major}.${version.minor})`,
  };
  const heapMapping = space.mappings().find((m) => m.path === '[heap]');

  const symArena = symbolizer.lookup('main_arena', { module: basename(libc.path) });
  const symMp = symbolizer.lookup('mp_', { module: basename(libc.path) });
  const symKey =
    layout.tcache.key === 'random' ? symbolizer.lookup('tcache_key', { module: basename(libc.path) }) : undefined;
  let mainArena: number;
  if (symArena) {
    mainArena = symArena.runtimeAddr;
    sources.mainArena =
      symArena.source === 'debug-file'
        ? `debug-file symbol main_arena (${symbolizer.symbolsOf(libc)?.debug?.path ?? '?'})`
        : `${symArena.source} symbol main_arena`;
    if (symArena.size && symArena.size !== layout.mstate.size) {
      throw new LeakscopeError(
        'not-supported',
        `main_arena is ${symArena.size} bytes in ${libc.path}, the built-in glibc ${version.text} layout expects ${layout.mstate.size}: unknown malloc_state layout`,
      );
    }
    if (symArena.size) sources.layout += `; sizeof(malloc_state) ${symArena.size} checked against the debug file`;
  } else {
    if (!heapMapping)
      throw new LeakscopeError(
        'not-found',
        `${space.description}: no [heap] mapping and no main_arena symbol (install libc6-dbg): cannot find glibc's main arena`,
      );
    mainArena = findMainArenaBySignature(space, libc, layout, heapMapping);
    sources.mainArena =
      'heuristic: top-chunk search (main_arena.top == top chunk of [heap], bins self-referencing or in [heap]) in libc .data';
  }
  let mp: number | null = null;
  if (symMp) {
    mp = symMp.runtimeAddr;
    sources.mp = symMp.source === 'debug-file' ? 'debug-file symbol mp_' : `${symMp.source} symbol mp_`;
    if (symMp.size && symMp.size !== layout.mpar.size) {
      throw new LeakscopeError(
        'not-supported',
        `mp_ is ${symMp.size} bytes in ${libc.path}, the built-in glibc ${version.text} layout expects ${layout.mpar.size}: unknown malloc_par layout`,
      );
    }
  } else if (heapMapping) {
    mp = findMpBySignature(space, libc, layout, heapMapping.start);
    sources.mp =
      mp === null
        ? 'not found (no symbol; no sbrk_base signature): mmapped-chunk counts from the scan only'
        : 'heuristic: sbrk_base == [heap] start, with plausible tcache/mmap parameters, in libc .data';
  } else {
    sources.mp = 'not found (no symbol, no [heap])';
  }
  let tcacheKey: number | null = null;
  if (symKey) {
    try {
      tcacheKey = space.readU64(symKey.runtimeAddr);
      sources.tcacheKey = 'debug-file symbol tcache_key';
    } catch {
      /* inferred later */
    }
  }
  return { libc, version, layout, mainArena, mp, tcacheKey, heapMapping, sources };
}

function readRegion(space: AddressSpace, m: Mapping): ByteReader | undefined {
  const len = Math.min(m.end - m.start, 4 << 20);
  const buf = Buffer.alloc(len);
  const n = space.readInto(m.start, buf, 0, len);
  if (n < 64) return undefined;
  return new ByteReader(buf.subarray(0, n), { base: m.start, label: `libc data at 0x${m.start.toString(16)}` });
}

function findMainArenaBySignature(space: AddressSpace, libc: Module, layout: GlibcLayout, heap: Mapping): number {
  const L = layout.mstate;
  const inHeap = (v: number) => v >= heap.start && v < heap.end;
  const hdr = Buffer.alloc(16);
  for (const m of libcWritable(space, libc)) {
    const r = readRegion(space, m);
    if (!r) continue;
    for (let o = L.top; o + L.size - L.top <= r.length; o += 8) {
      const top = r.u64At(o);
      if (!inHeap(top) || top % 16 !== 0) continue;
      // The top chunk: PREV_INUSE set, not mmapped, ends inside [heap].
      if (space.readInto(top, hdr, 0, 16) !== 16) continue;
      const size = hdr.readUInt32LE(8) + hdr.readUInt32LE(12) * 4294967296;
      if ((size & PREV_INUSE) === 0 || (size & IS_MMAPPED) !== 0) continue;
      const csize = size - (size % 8);
      if (top + csize > heap.end || csize < 32) continue;
      const base = o - L.top;
      const arena = m.start + base;
      let self = 0,
        ok = true;
      for (let i = 1; i < 128 && ok; i++) {
        const fd = r.u64At(base + L.bins + (i - 1) * 16),
          bk = r.u64At(base + L.bins + (i - 1) * 16 + 8);
        const binAt = arena + L.bins + (i - 1) * 16 - 16;
        if (fd === binAt && bk === binAt) self++;
        else if (!(inHeap(fd) && inHeap(bk))) ok = false;
      }
      if (!ok || self === 0) continue;
      const next = r.u64At(base + L.next);
      if (next !== arena && (next === 0 || next % 16 !== 0)) continue;
      return arena;
    }
  }
  throw new LeakscopeError(
    'not-found',
    `${space.description}: no main_arena signature in ${libc.path}'s writable segments (no value there is the top chunk of [heap] with self-referencing bins); install libc6-dbg`,
  );
}

function findMpBySignature(space: AddressSpace, libc: Module, layout: GlibcLayout, heapStart: number): number | null {
  const P = layout.mpar;
  for (const m of libcWritable(space, libc)) {
    const r = readRegion(space, m);
    if (!r) continue;
    for (let o = P.sbrkBase; o + P.size - P.sbrkBase <= r.length; o += 8) {
      if (r.u64At(o) !== heapStart) continue;
      const b = o - P.sbrkBase;
      const tcacheBins = r.u64At(b + P.tcacheBins);
      const tcacheCount = r.u64At(b + P.tcacheCount);
      const mmapThreshold = r.u64At(b + P.mmapThreshold);
      const nMmaps = r.i32At(b + P.nMmaps);
      const nMmapsMax = r.i32At(b + P.nMmapsMax);
      const mmapped = r.u64At(b + P.mmappedMem);
      if (tcacheBins > layout.tcache.bins || tcacheCount > 65535) continue;
      if (mmapThreshold < 4096 || mmapThreshold > 1 << 30) continue;
      if (nMmaps < 0 || nMmapsMax < 0 || (nMmaps > nMmapsMax && nMmapsMax > 0)) continue;
      if (mmapped % 4096 !== 0) continue;
      if ((nMmaps === 0) !== (mmapped === 0)) continue;
      return m.start + b;
    }
  }
  return null;
}
