// What the pool analysis needs from the glibc heap census (src/glibc): the in-use chunks.
// The census is the one heap walker; this is the narrow view of it nginx/ uses, so the
// analysis also runs over a recorded chunk list in tests.

import { NOT_PEEKED } from '../glibc/census.js';

/** glibc chunk header size in front of the user pointer (prev_size + size fields), x86-64. */
export const CHUNK_HEADER = 16;
/** Bytes the pool scan looks at per candidate chunk (from the user pointer). */
export const POOL_SCAN_BYTES = 512;

/** Tags of the census's look at in-use chunks (ChunkPeek, src/glibc): the pool-candidate test. */
export const POOL_HINT = {
  /** d.end (user + 8) cannot be that of an ngx_pool_t in this chunk: 80 < d.end - pool <= chunk size fails (pool.ts poolCandidateTag). */
  no: 0,
  /** It can: the pool scan reads the chunk (or the bytes the census kept of it). */
  yes: 1,
  /** The census did not see the chunk's bytes (mmapped, or not in its window). */
  unknown: NOT_PEEKED,
} as const;

/**
/**
 * The in-use chunks, in address order. Per chunk: its user pointer (chunk address + 16), its chunk
 * size (header included, flag bits masked, as glibc counts it), whether it is mmapped, and the
 * census's pool-candidate hint (POOL_HINT: no, yes, unknown). Chunks are known by their user
 * pointer; the pool candidates (hint yes or unknown) are listed on their own with the first bytes
 * the census kept of some of them (POOL_SCAN_BYTES; candidates only, so they are few).
 */
export interface InUseChunks {
  /** How many in-use chunks (mmapped included). */
  readonly length: number;
  /** Calls `cb` for every chunk in address order, with the facts above (the hint as a boolean, undefined when unknown). */
  forEach(
    cb: (
      userAddr: number,
      chunkSize: number,
      mmapped: boolean,
      poolCandidate?: boolean,
      userBytes?: Uint8Array,
    ) => void,
  ): void;
  /** Calls `cb` for every chunk whose hint is not POOL_HINT.no, in address order, with the bytes the census kept of it (else undefined). */
  forEachCandidate(cb: (userAddr: number, chunkSize: number, mmapped: boolean, userBytes?: Uint8Array) => void): void;
  /** The chunk size of the in-use chunk whose user pointer is `userAddr`, else undefined. */
  sizeOf(userAddr: number): number | undefined;
  /** Whether `userAddr` is the user pointer of an in-use mmapped chunk. */
  isMmapped(userAddr: number): boolean;
}

/** The bitmaps cover the address space in pages of 1 MiB: one bit per 16 bytes (a possible user pointer). */
const PAGE_BYTES = 1 << 20;
const PAGE_WORDS = PAGE_BYTES / 16 / 32;
/** Words per slab of bitmap pages: 33 MiB, above glibc's largest dynamic mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX, malloc/malloc.c). */
const SLAB_WORDS = (33 << 20) / 4;
/** Candidate flags: the hint (0 unknown, 1 yes) in bit 0, mmapped in bit 1. */
const C_YES = 1,
  C_MMAPPED = 2;

/** One 1 MiB page of address space: `start` bits at in-use heap chunks' user pointers, `end` bits where a chunk that is not in use follows one of them. */
interface Page {
  start: Uint32Array;
  end: Uint32Array | null;
}

/** Growable parallel columns (address, size, flags, bytes) for the few chunks listed one by one. */
class Column {
  length = 0;
  addr = new Float64Array(64);
  size = new Float64Array(64);
  flags = new Uint8Array(64);
  bytes: Array<Uint8Array | undefined> = [];
  push(addr: number, size: number, flags: number, bytes?: Uint8Array): void {
    const n = this.length;
    if (n === this.addr.length) {
      const a = new Float64Array(n * 2),
        s = new Float64Array(n * 2),
        f = new Uint8Array(n * 2);
      a.set(this.addr);
      s.set(this.size);
      f.set(this.flags);
      this.addr = a;
      this.size = s;
      this.flags = f;
    }
    this.addr[n] = addr;
    this.size[n] = size;
    this.flags[n] = flags;
    if (bytes) this.bytes[n] = bytes;
    this.length = n + 1;
  }
  /** Address order (usually already: one heap after another, each walked upwards). */
  sort(): void {
    const n = this.length;
    let sorted = true;
    for (let i = 1; i < n && sorted; i++) if (this.addr[i]! < this.addr[i - 1]!) sorted = false;
    if (sorted) return;
    const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => this.addr[x]! - this.addr[y]!);
    const a = new Float64Array(this.addr.length),
      s = new Float64Array(this.addr.length),
      f = new Uint8Array(this.addr.length),
      b: Array<Uint8Array | undefined> = [];
    order.forEach((k, i) => {
      a[i] = this.addr[k]!;
      s[i] = this.size[k]!;
      f[i] = this.flags[k]!;
      if (this.bytes[k]) b[i] = this.bytes[k];
    });
    this.addr = a;
    this.size = s;
    this.flags = f;
    this.bytes = b;
  }
  /** Index of the entry at `addr` (binary search, once sorted), else -1. */
  find(addr: number): number {
    let lo = 0,
      hi = this.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.addr[mid]!;
      if (v < addr) lo = mid + 1;
      else if (v > addr) hi = mid - 1;
      else return mid;
    }
    return -1;
  }
  /** Drops entry i (rare: a candidate found on a free list afterwards). */
  remove(i: number): void {
    const n = this.length - 1;
    this.addr.copyWithin(i, i + 1, n + 1);
    this.size.copyWithin(i, i + 1, n + 1);
    this.flags.copyWithin(i, i + 1, n + 1);
    this.bytes.splice(i, 1);
    this.length = n;
  }
}

/**
 * The in-use chunks without a record per chunk (issue 18: memory that does not grow with the
 * number of chunks). Heap chunks are bitmaps over 1 MiB pages of the address space the heaps use
 * (1 bit per 16 bytes: 1/128 of the heap's bytes): `start` marks every in-use chunk's user pointer;
 * `end`, made only for pages that need it, the user pointer of a chunk that is not in use (free, the
 * top) right after an in-use one. A chunk's size is the distance to the next bit of either (chunks
 * do not overlap, so no bit lies inside an in-use chunk). Listed one by one: the mmapped chunks
 * (few, large) and the pool candidates (the census's hint yes or unknown) with the bytes the
 * census kept of them. Built by push() in walk order (each heap upwards; heaps and the mmapped
 * chunks in any order), then finish().
 */
export class ChunkList implements InUseChunks {
  length = 0;
  private readonly pages = new Map<number, Page>();
  /** Page numbers in ascending order (after finish()). */
  private keys: number[] = [];
  private readonly mmapped = new Column();
  private readonly candidates = new Column();
  /** The user pointer right after the last heap chunk pushed (its end), -1 when none is pending. */
  private pendingEnd = -1;

  constructor(
    chunks?: ReadonlyArray<{
      userAddr: number;
      chunkSize: number;
      mmapped?: boolean;
      poolCandidate?: boolean;
      userBytes?: Uint8Array;
    }>,
  ) {
    if (!chunks) return;
    const sorted = [...chunks].sort((a, b) => a.userAddr - b.userAddr);
    for (const c of sorted) {
      const hint = c.poolCandidate === undefined ? POOL_HINT.unknown : c.poolCandidate ? POOL_HINT.yes : POOL_HINT.no;
      this.push(c.userAddr, c.chunkSize, !!c.mmapped, hint, c.userBytes);
    }
    this.finish();
  }

  /**
   * Bitmap pages are cut from slabs bigger than glibc's largest mmap threshold (32 MiB): zero-filled
   * virtual memory, resident only where written, given back to the system when the list is dropped.
   * (A 32 KiB array each would be malloc'd from the brk heap and stay resident there after: +8-12
   * MiB per census left behind on a 1 GiB heap.)
   */
  private slab = new Uint32Array(0);
  private slabUsed = 0;
  private newPage(): Uint32Array {
    if (this.slabUsed + PAGE_WORDS > this.slab.length) {
      this.slab = new Uint32Array(SLAB_WORDS);
      this.slabUsed = 0;
    }
    this.slabUsed += PAGE_WORDS;
    return this.slab.subarray(this.slabUsed - PAGE_WORDS, this.slabUsed);
  }

  private setBit(addr: number, end: boolean): void {
    const n = Math.floor(addr / PAGE_BYTES),
      bit = (addr - n * PAGE_BYTES) >>> 4;
    let p = this.pages.get(n);
    if (!p) this.pages.set(n, (p = { start: this.newPage(), end: null }));
    const words = end ? (p.end ??= this.newPage()) : p.start;
    words[bit >>> 5] = words[bit >>> 5]! | (1 << (bit & 31));
  }

  /** Appends a chunk (builder; then finish()). The heap chunks of one heap come in ascending order. */
  push(userAddr: number, chunkSize: number, mmapped: boolean, hint: number, userBytes?: Uint8Array): void {
    this.length++;
    if (hint !== POOL_HINT.no)
      this.candidates.push(
        userAddr,
        chunkSize,
        (hint === POOL_HINT.yes ? C_YES : 0) | (mmapped ? C_MMAPPED : 0),
        userBytes,
      );
    if (mmapped) {
      this.mmapped.push(userAddr, chunkSize, 0);
      return;
    }
    if (this.pendingEnd >= 0 && this.pendingEnd !== userAddr) this.setBit(this.pendingEnd, true);
    this.setBit(userAddr, false);
    this.pendingEnd = userAddr + chunkSize;
  }

  /**
   * Drops the heap chunks whose user pointers are in `freed` (walked as in use, found on a free
   * list afterwards; mmapped chunks are never dropped), then puts the lists in address order.
   */
  finish(freed?: Float64Array): void {
    if (this.pendingEnd >= 0) this.setBit(this.pendingEnd, true);
    this.pendingEnd = -1;
    this.candidates.sort();
    this.mmapped.sort();
    if (freed)
      for (let i = 0; i < freed.length; i++) {
        const a = freed[i]!;
        if (!this.hasStart(a)) continue;
        // Now a free chunk: the end of the in-use chunk before it.
        const n = Math.floor(a / PAGE_BYTES),
          bit = (a - n * PAGE_BYTES) >>> 4;
        const p = this.pages.get(n)!;
        p.start[bit >>> 5] = p.start[bit >>> 5]! & ~(1 << (bit & 31));
        this.setBit(a, true);
        this.length--;
        const c = this.candidates.find(a);
        if (c >= 0 && !(this.candidates.flags[c]! & C_MMAPPED)) this.candidates.remove(c);
      }
    this.keys = [...this.pages.keys()].sort((x, y) => x - y);
  }

  /** Whether `addr` is an in-use heap chunk's user pointer. */
  private hasStart(addr: number): boolean {
    if (!(addr >= 0) || addr % 16 !== 0) return false;
    const n = Math.floor(addr / PAGE_BYTES);
    const p = this.pages.get(n);
    if (!p) return false;
    const bit = (addr - n * PAGE_BYTES) >>> 4;
    return (p.start[bit >>> 5]! & (1 << (bit & 31))) !== 0;
  }

  /** The address of the first start or end bit after `addr` (a heap chunk's user pointer), else -1. */
  private nextBoundary(addr: number): number {
    let n = Math.floor(addr / PAGE_BYTES);
    let bit = ((addr - n * PAGE_BYTES) >>> 4) + 1;
    let p: Page | undefined = this.pages.get(n);
    let ki = -1;
    for (;;) {
      if (p && bit < PAGE_WORDS * 32) {
        const s = p.start,
          e = p.end,
          w0 = bit >>> 5;
        for (let w = w0; w < PAGE_WORDS; w++) {
          let v = s[w]! | (e ? e[w]! : 0);
          if (w === w0) v &= ~((1 << (bit & 31)) - 1);
          if (v !== 0) return n * PAGE_BYTES + (w * 32 + (31 - Math.clz32(v & -v))) * 16;
        }
      }
      // the next page that exists
      if (ki < 0) {
        let lo = 0,
          hi = this.keys.length;
        while (lo < hi) {
          const mid = (lo + hi) >> 1;
          if (this.keys[mid]! <= n) lo = mid + 1;
          else hi = mid;
        }
        ki = lo;
      } else ki++;
      if (ki >= this.keys.length) return -1;
      n = this.keys[ki]!;
      p = this.pages.get(n);
      bit = 0;
    }
  }

  sizeOf(userAddr: number): number | undefined {
    if (this.hasStart(userAddr)) {
      const b = this.nextBoundary(userAddr);
      return b < 0 ? undefined : b - userAddr;
    }
    const m = this.mmapped.find(userAddr);
    return m >= 0 ? this.mmapped.size[m]! : undefined;
  }
  isMmapped(userAddr: number): boolean {
    return this.mmapped.find(userAddr) >= 0;
  }
  forEachCandidate(cb: (userAddr: number, chunkSize: number, mmapped: boolean, userBytes?: Uint8Array) => void): void {
    const c = this.candidates;
    for (let i = 0; i < c.length; i++) cb(c.addr[i]!, c.size[i]!, (c.flags[i]! & C_MMAPPED) !== 0, c.bytes[i]);
  }
  forEach(
    cb: (
      userAddr: number,
      chunkSize: number,
      mmapped: boolean,
      poolCandidate?: boolean,
      userBytes?: Uint8Array,
    ) => void,
  ): void {
    const cand = this.candidates,
      mm = this.mmapped;
    let ci = 0,
      mi = 0;
    const emit = (a: number, size: number, mmapped: boolean) => {
      while (ci < cand.length && cand.addr[ci]! < a) ci++;
      if (ci < cand.length && cand.addr[ci] === a)
        cb(a, size, mmapped, (cand.flags[ci]! & C_YES) !== 0 ? true : undefined, cand.bytes[ci]);
      else cb(a, size, mmapped, false);
    };
    // Heap chunks: every bit in address order; a start bit's chunk ends at the next bit.
    let pending = -1;
    for (const n of this.keys) {
      const p = this.pages.get(n)!,
        s = p.start,
        e = p.end,
        base = n * PAGE_BYTES;
      for (let w = 0; w < PAGE_WORDS; w++) {
        let v = s[w]! | (e ? e[w]! : 0);
        while (v !== 0) {
          const low = v & -v;
          v ^= low;
          const a = base + (w * 32 + (31 - Math.clz32(low))) * 16;
          if (pending >= 0) {
            while (mi < mm.length && mm.addr[mi]! < pending) emit(mm.addr[mi]!, mm.size[mi++]!, true);
            emit(pending, a - pending, false);
          }
          pending = (s[w]! & low) !== 0 ? a : -1;
        }
      }
    }
    while (mi < mm.length) emit(mm.addr[mi]!, mm.size[mi++]!, true);
  }
}

/** Power-of-two bucket of a chunk size, as the census histogram: [2^k, 2^(k+1)). */
export function bucketOf(chunkSize: number): { minBytes: number; maxBytes: number } {
  const k = Math.floor(Math.log2(Math.max(1, chunkSize)));
  let min = 2 ** k;
  if (min > chunkSize)
    min /= 2; // float guard
  else if (min * 2 <= chunkSize) min *= 2;
  return { minBytes: min, maxBytes: min * 2 };
}
