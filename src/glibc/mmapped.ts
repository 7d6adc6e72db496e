// mmapped chunks: requests >= mp_.mmap_threshold get their own anonymous mapping
// (glibc 2.36 malloc/malloc.c sysmalloc_mmap): prev_size = alignment slack (0 for
// malloc), size = mapping length | IS_MMAPPED. The kernel merges adjacent anonymous
// mappings with equal permissions, so one VMA may hold several chunks back to back and
// other things (thread stacks, nginx / LuaJIT regions). We walk each candidate VMA page
// by page and accept a chunk only when its header validates:
//   size & 7 == IS_MMAPPED, size a page multiple >= one page, prev_size 16-aligned and
//   below a page, and the chunk fits in the VMA; a valid chunk is skipped whole.

import type { AddressSpace } from '../target/address-space.js';
import type { Mapping } from '../model/memory.js';
import { pageAlignedBuffer } from '../target/aligned-buffer.js';

export const PAGE_SIZE = 4096;
/** Pages probed per census at most (1 TiB of anonymous memory at 4 KiB pages). */
export const MAX_PROBED_PAGES = 1 << 28;

export interface MmappedChunk {
  /** Chunk address (the mapping start plus prev_size). */
  address: number;
  /** Chunk size: size & ~7. */
  size: number;
  /** Mapping length: prev_size + size (what mp_.mmapped_mem counts). */
  mappedBytes: number;
}

/** Anonymous rw mappings minus the excluded ranges (thread heaps), as [start, end) pieces. */
export function mmapCandidateRanges(
  mappings: readonly Mapping[],
  exclude: readonly { start: number; end: number }[],
): { start: number; end: number }[] {
  const ex = [...exclude].sort((a, b) => a.start - b.start);
  const out: { start: number; end: number }[] = [];
  for (const m of mappings) {
    if (m.path !== '' || !m.perms.startsWith('rw')) continue;
    let pieces = [{ start: m.start, end: m.end }];
    for (const e of ex) {
      if (e.end <= m.start || e.start >= m.end) continue;
      const next: { start: number; end: number }[] = [];
      for (const p of pieces) {
        if (e.end <= p.start || e.start >= p.end) {
          next.push(p);
          continue;
        }
        if (p.start < e.start) next.push({ start: p.start, end: e.start });
        if (e.end < p.end) next.push({ start: e.end, end: p.end });
      }
      pieces = next;
    }
    out.push(...pieces);
  }
  return out;
}

/** Bytes read per probe window: reading pages in bulk is ~20x cheaper than one pread per page. */
const PROBE_WINDOW = 256 << 10;

/** Scans ranges for mmapped chunks; calls `sink` per chunk. Returns bytes read. */
export function scanMmappedChunks(
  space: AddressSpace,
  ranges: readonly { start: number; end: number }[],
  sink: (c: MmappedChunk) => void,
): number {
  const win = pageAlignedBuffer(PROBE_WINDOW);
  let bytesRead = 0,
    probes = 0;
  for (const r of ranges) {
    let q = Math.ceil(r.start / PAGE_SIZE) * PAGE_SIZE;
    let winStart = 0,
      winEnd = 0,
      jumped = false;
    while (q + PAGE_SIZE <= r.end && probes < MAX_PROBED_PAGES) {
      probes++;
      if (q + 16 > winEnd || q < winStart) {
        // Right after a chunk another chunk header is likely (leaked mmapped chunks lie back to
        // back): read just the header there, not a window of pages the jump would skip.
        const n = space.readInto(q, win, 0, Math.min(jumped ? 16 : PROBE_WINDOW, r.end - q));
        bytesRead += n;
        winStart = q;
        winEnd = q + n;
        if (n < 16) {
          winEnd = 0;
          q += PAGE_SIZE;
          continue;
        }
      }
      jumped = false;
      const o = q - winStart;
      const prevLo = win.readUInt32LE(o),
        prevHi = win.readUInt32LE(o + 4);
      const lo = win.readUInt32LE(o + 8),
        hi = win.readUInt32LE(o + 12);
      if ((lo & 7) === 2 && prevHi === 0 && prevLo < PAGE_SIZE && (prevLo & 15) === 0) {
        const size = hi * 4294967296 + (lo - 2);
        const mapped = prevLo + size;
        if (size >= PAGE_SIZE && mapped % PAGE_SIZE === 0 && q + mapped <= r.end) {
          // The header at the mapping start: prev_size is the slack before the chunk.
          sink({ address: q + prevLo, size, mappedBytes: mapped });
          q += mapped;
          jumped = true;
          continue;
        }
      }
      q += PAGE_SIZE;
    }
  }
  return bytesRead;
}
