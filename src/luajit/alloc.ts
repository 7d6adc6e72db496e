// lj_alloc (LuaJIT's own dlmalloc 2.8 derivative, lj_alloc.c) regions of a Lua VM: the
// segments listed in malloc_state.seg (embedded record, then `next` ...), and the direct
// chunks (requests >= DEFAULT_MMAP_THRESHOLD that got their own mmap, on no list).
// Layouts: malloc_state / malloc_segment from layouts.ts; chunk header (dlmalloc):
//   prev_foot u64 at p, head u64 at p+8 (size | PINUSE 1 | CINUSE 2), user memory at p+16.
// Direct chunk (direct_alloc): prev_foot = offset | IS_DIRECT_BIT(1), head = psize | CINUSE,
//   a FENCEPOST_HEAD (CINUSE|PINUSE|8 = 0xb) at p+psize+8, a 0 head at p+psize+16; the map is
//   offset + psize + DIRECT_FOOT_PAD (32) bytes from the mmap start (offset 0 on x86-64).
// Reads go through the AddressSpace (live or core) or a HeapImage; nothing is trusted:
// loops are bounded and every range must lie in an anonymous rw mapping.

import type { AddressSpace } from '../target/address-space.js';
import { findMapping } from '../target/address-space.js';
import type { Mapping } from '../model/memory.js';
import type { LuajitLayouts } from './layouts.js';
import type { HeapImage } from './image.js';

export interface AllocRange {
  start: number;
  end: number;
}
export interface AllocSegment extends AllocRange {
  /** chunk walk of the segment (from a HeapImage) */ usedBytes?: number;
  freeBytes?: number;
  usedChunks?: number;
  freeChunks?: number;
}
export interface DirectChunk extends AllocRange {
  /** dlmalloc chunk size (psize) */ chunkBytes: number;
}

const FENCEPOST_HEAD = 0xb,
  CINUSE = 2,
  PAGE = 4096,
  DIRECT_FOOT_PAD = 32;
const MAX_SEGMENTS = 1 << 16;

/** Anonymous private rw mappings: where lj_alloc's mmaps land. */
export function anonymousRw(space: AddressSpace): Mapping[] {
  return space
    .mappings()
    .filter((m) => m.perms.startsWith('rw') && (m.path === '' || m.path.startsWith('[anon')) && m.inode === 0);
}

/** The segments of the allocator whose malloc_state is at `mstate`, newest first. */
export function readSegments(
  space: AddressSpace,
  L: LuajitLayouts,
  mstate: number,
  problems: string[],
): AllocSegment[] {
  const ms = L.structs.malloc_state!,
    sg = L.structs.malloc_segment!;
  const maps = space.mappings();
  const out: AllocSegment[] = [];
  const seen = new Set<number>();
  let rec = mstate + ms.seg!;
  while (rec && out.length < MAX_SEGMENTS) {
    let base: number, size: number, next: number;
    try {
      base = space.readU64(rec + sg.base!);
      size = space.readU64(rec + sg.size!);
      next = space.readU64(rec + sg.next!);
    } catch {
      problems.push(`lj_alloc segment record at 0x${rec.toString(16)} unreadable`);
      break;
    }
    const m = findMapping(maps, base);
    if (
      !m ||
      base % PAGE !== 0 ||
      size <= 0 ||
      size % PAGE !== 0 ||
      seen.has(base) ||
      base + size > lastAdjacentEnd(maps, m)
    ) {
      problems.push(
        `lj_alloc segment ${base.toString(16)}+${size} at record 0x${rec.toString(16)} is not mapped memory`,
      );
      break;
    }
    seen.add(base);
    out.push({ start: base, end: base + size });
    rec = next;
  }
  return out;
}

/** The end of the run of contiguous mappings starting at m (a segment may span merged / split VMAs). */
function lastAdjacentEnd(maps: readonly Mapping[], m: Mapping): number {
  let i = maps.indexOf(m),
    end = m.end;
  while (i + 1 < maps.length && maps[i + 1]!.start === end) end = maps[++i]!.end;
  return end;
}

/**
 * Direct chunks: every page of the anonymous rw mappings outside `exclude` whose first 16 bytes
 * are a direct-chunk header and whose fencepost is where the header says. One 16-byte read per
 * page (pages of known segments skipped); the header and fencepost together make false
 * positives unlikely, and LuaJIT's odd prev_foot keeps glibc's mmapped chunks (prev_size 0) out.
 */
export function findDirectChunks(space: AddressSpace, exclude: readonly AllocRange[]): DirectChunk[] {
  const out: DirectChunk[] = [];
  const hdr = Buffer.alloc(16),
    fence = Buffer.alloc(16);
  const ex = [...exclude].sort((a, b) => a.start - b.start);
  for (const m of anonymousRw(space)) {
    let p = m.start;
    while (p + PAGE <= m.end) {
      const e = ex.find((r) => p >= r.start && p < r.end);
      if (e) {
        p = Math.ceil(e.end / PAGE) * PAGE;
        continue;
      }
      if (space.readInto(p, hdr, 0, 16) === 16 && hdr.readUInt32LE(0) === 1 && hdr.readUInt32LE(4) === 0) {
        const head = hdr.readUInt32LE(12) * 4294967296 + hdr.readUInt32LE(8);
        const psize = head - CINUSE;
        if (
          (head & 7) === CINUSE &&
          psize > 0 &&
          (psize + DIRECT_FOOT_PAD) % PAGE === 0 &&
          p + psize + DIRECT_FOOT_PAD <= m.end &&
          space.readInto(p + psize, fence, 0, 16) === 16 &&
          fence.readUInt32LE(8) === FENCEPOST_HEAD &&
          fence.readUInt32LE(12) === 0
        ) {
          out.push({ start: p, end: p + psize + DIRECT_FOOT_PAD, chunkBytes: psize });
          p += psize + DIRECT_FOOT_PAD;
          continue;
        }
      }
      p += PAGE;
    }
  }
  return out;
}

/**
 * Chunk walk of one segment over a HeapImage: in-use and free chunk bytes (the top chunk is
 * free). Stops at the top chunk, a fencepost, or the first malformed header (bounded by the
 * segment size). `inUse(p, size)` is called for every in-use chunk (header at p). Returns the
 * address up to which the walk accounted for the segment (after the top chunk, or where it
 * stopped).
 */
export function walkSegment(
  img: HeapImage,
  seg: AllocSegment,
  top: number,
  topsize: number,
  inUse?: (p: number, size: number) => void,
): number {
  let p = seg.start,
    used = 0,
    free = 0,
    nu = 0,
    nf = 0;
  // The segment's region, read through its DataView when the whole segment is in it and intact.
  const ri = img.regionIndex(seg.start);
  const st = ri >= 0 ? img.storage(ri) : undefined;
  const dv = st && !st.gone && seg.end <= st.end ? st.dv : undefined,
    at = st ? st.start : 0;
  while (p + 16 <= seg.end) {
    if (p === top) {
      free += topsize;
      nf++;
      if (topsize > 0 && p + topsize <= seg.end) p += topsize;
      break;
    }
    let head: number;
    if (dv) head = dv.getUint32(p + 12 - at, true) * 4294967296 + dv.getUint32(p + 8 - at, true);
    else if (!img.has(p, 16)) break;
    else head = img.u64(p + 8);
    if (head === FENCEPOST_HEAD) break;
    const size = head - (head & 7);
    if (size < 16 || p + size > seg.end) break;
    if (head & CINUSE) {
      used += size;
      nu++;
      inUse?.(p, size);
    } else {
      free += size;
      nf++;
    }
    p += size;
  }
  seg.usedBytes = used;
  seg.freeBytes = free;
  seg.usedChunks = nu;
  seg.freeChunks = nf;
  return p;
}
