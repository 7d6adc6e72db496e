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
 * The in-use chunks in address order; a chunk is known by its index (0 .. length-1). Per chunk:
 * its user pointer (chunk address + 16), its chunk size (header included, flag bits masked, as
 * glibc counts it), whether it is mmapped, the census's pool-candidate hint (POOL_HINT: no, yes,
 * unknown), and for some candidates the first bytes at the user pointer when the census kept them
 * (POOL_SCAN_BYTES of them; candidates only, so they are few).
 */
export interface InUseChunks {
  readonly length: number;
  /** User pointer of chunk i. */
  addrAt(i: number): number;
  /** Chunk size of chunk i. */
  sizeAt(i: number): number;
  isMmapped(i: number): boolean;
  /** The POOL_HINT value of chunk i. */
  hintAt(i: number): number;
  /** The bytes the census kept of chunk i (pool candidates only), else undefined. */
  bytesOf(i: number): Uint8Array | undefined;
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
  /** The index of the in-use chunk whose user pointer is `userAddr`, else -1. */
  indexOf(userAddr: number): number;
  /** The chunk size of the in-use chunk whose user pointer is `userAddr`, else undefined. */
  sizeOf(userAddr: number): number | undefined;
}

const TWO32 = 4294967296;
/** A region's offsets are (address - base) / 16 in a u32: a region spans at most 64 GiB. */
const REGION_SPAN = TWO32 * 16;
// flags: the hint's code in bits 0-1, mmapped in bit 2
const H_NO = 0,
  H_YES = 1,
  H_UNKNOWN = 2,
  F_MMAPPED = 4;
const hintCode = (hint: number): number => (hint === POOL_HINT.no ? H_NO : hint === POOL_HINT.yes ? H_YES : H_UNKNOWN);
const HINT_OF = [POOL_HINT.no, POOL_HINT.yes, POOL_HINT.unknown, POOL_HINT.unknown];

/**
 * The in-use chunks, columnar: 9 bytes per chunk. Addresses are u32 offsets / 16 from the base of
 * their region (a run of ascending addresses within 64 GiB: one per heap, one for the mmapped
 * chunks, typically), sizes u32 chunk size / 16 (a chunk of 64 GiB or more: in `bigSizes`),
 * flags u8 (hint, mmapped). Built by push() in any order, then finish() (address order); arrays
 * can be presized (zero-filled: only the entries written cost RSS).
 */
export class ChunkList implements InUseChunks {
  length = 0;
  private off16: Uint32Array;
  private size16: Uint32Array;
  private flags: Uint8Array;
  private readonly bigSizes = new Map<number, number>();
  /** Region r holds chunks regFirst[r] .. regFirst[r + 1] - 1 at regBase[r] + off16 * 16. */
  private regBase: number[] = [];
  private regFirst: number[] = [];
  /** The region of the last lookup (sequential access stays in it). */
  private r = 0;
  private lastAddr = -1;
  private bytes = new Map<number, Uint8Array>();

  constructor(
    chunks?: ReadonlyArray<{
      userAddr: number;
      chunkSize: number;
      mmapped?: boolean;
      poolCandidate?: boolean;
      userBytes?: Uint8Array;
    }>,
    capacity = 1024,
  ) {
    const n = Math.max(16, chunks ? chunks.length : capacity);
    this.off16 = new Uint32Array(n);
    this.size16 = new Uint32Array(n);
    this.flags = new Uint8Array(n);
    if (!chunks) return;
    const sorted = [...chunks].sort((a, b) => a.userAddr - b.userAddr);
    for (const c of sorted) {
      const hint = c.poolCandidate === undefined ? POOL_HINT.unknown : c.poolCandidate ? POOL_HINT.yes : POOL_HINT.no;
      this.push(c.userAddr, c.chunkSize, !!c.mmapped, hint, c.userBytes);
    }
    this.finish();
  }

  private grow(): void {
    const n = this.off16.length * 2;
    const o = new Uint32Array(n);
    o.set(this.off16);
    this.off16 = o;
    const s = new Uint32Array(n);
    s.set(this.size16);
    this.size16 = s;
    const f = new Uint8Array(n);
    f.set(this.flags);
    this.flags = f;
  }

  /** Appends a chunk (builder; then finish()). */
  push(userAddr: number, chunkSize: number, mmapped: boolean, hint: number, userBytes?: Uint8Array): void {
    const n = this.length;
    if (n === this.off16.length) this.grow();
    const R = this.regBase.length;
    if (
      R === 0 ||
      userAddr <= this.lastAddr ||
      userAddr - this.regBase[R - 1]! >= REGION_SPAN ||
      (userAddr - this.regBase[R - 1]!) % 16 !== 0
    ) {
      this.regBase.push(userAddr);
      this.regFirst.push(n);
    }
    this.off16[n] = (userAddr - this.regBase[this.regBase.length - 1]!) / 16;
    const s16 = Math.floor(chunkSize / 16);
    if (s16 >= TWO32) this.bigSizes.set(n, chunkSize);
    this.size16[n] = s16 >= TWO32 ? 0 : s16;
    this.flags[n] = hintCode(hint) | (mmapped ? F_MMAPPED : 0);
    if (userBytes) this.bytes.set(n, userBytes);
    this.lastAddr = userAddr;
    this.length = n + 1;
  }

  /**
   * Drops the chunks whose user pointers are in `freed` (walked as in use, found on a free list
   * afterwards; mmapped chunks are never dropped), then puts the chunks in address order.
   */
  finish(freed?: Float64Array): void {
    if (freed?.length) this.drop(freed.sort());
    // Regions without chunks go; each region's base becomes its first chunk's address.
    const base: number[] = [],
      first: number[] = [];
    for (let r = 0; r < this.regBase.length; r++) {
      const from = this.regFirst[r]!,
        to = r + 1 < this.regBase.length ? this.regFirst[r + 1]! : this.length;
      if (from >= to) continue;
      const d = this.off16[from]!;
      if (d !== 0) for (let i = from; i < to; i++) this.off16[i] = this.off16[i]! - d;
      base.push(this.regBase[r]! + d * 16);
      first.push(from);
    }
    this.regBase = base;
    this.regFirst = first;
    this.r = 0;
    this.lastAddr = -1;
    // Regions in address order and disjoint: nothing moves (the usual case: one arena's heap, then
    // the mmapped chunks); else a full sort.
    for (let r = 1; r < base.length; r++) {
      const lastOfPrev = base[r - 1]! + this.off16[first[r]! - 1]! * 16;
      if (base[r]! <= lastOfPrev) {
        this.sort();
        return;
      }
    }
  }

  private drop(freed: Float64Array): void {
    const n = this.length;
    const R = this.regBase.length;
    let w = 0;
    for (let r = 0; r < R; r++) {
      const from = this.regFirst[r]!,
        to = r + 1 < R ? this.regFirst[r + 1]! : n,
        base = this.regBase[r]!;
      this.regFirst[r] = w;
      for (let i = from; i < to; i++) {
        const a = base + this.off16[i]! * 16;
        if ((this.flags[i]! & F_MMAPPED) === 0 && has(freed, a)) {
          this.bytes.delete(i);
          this.bigSizes.delete(i);
          continue;
        }
        if (w !== i) {
          this.off16[w] = this.off16[i]!;
          this.size16[w] = this.size16[i]!;
          this.flags[w] = this.flags[i]!;
          const b = this.bytes.get(i);
          if (b) {
            this.bytes.delete(i);
            this.bytes.set(w, b);
          }
          const big = this.bigSizes.get(i);
          if (big !== undefined) {
            this.bigSizes.delete(i);
            this.bigSizes.set(w, big);
          }
        }
        w++;
      }
    }
    this.length = w;
  }

  /** Full sort by address (regions out of order or overlapping: several arenas, a changing heap). */
  private sort(): void {
    const n = this.length;
    const addr = new Float64Array(n);
    for (let i = 0; i < n; i++) addr[i] = this.addrAt(i);
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    order.sort((a, b) => addr[a]! - addr[b]!);
    const size16 = new Uint32Array(n),
      flags = new Uint8Array(n),
      off16 = new Uint32Array(n);
    const bytes = new Map<number, Uint8Array>(),
      big = new Map<number, number>();
    const regBase: number[] = [],
      regFirst: number[] = [];
    for (let i = 0; i < n; i++) {
      const k = order[i]!,
        a = addr[k]!;
      const R = regBase.length;
      if (R === 0 || a - regBase[R - 1]! >= REGION_SPAN || (a - regBase[R - 1]!) % 16 !== 0) {
        regBase.push(a);
        regFirst.push(i);
      }
      off16[i] = (a - regBase[regBase.length - 1]!) / 16;
      size16[i] = this.size16[k]!;
      flags[i] = this.flags[k]!;
      const b = this.bytes.get(k);
      if (b) bytes.set(i, b);
      const s = this.bigSizes.get(k);
      if (s !== undefined) big.set(i, s);
    }
    this.off16 = off16;
    this.size16 = size16;
    this.flags = flags;
    this.bytes = bytes;
    this.bigSizes.clear();
    for (const [k, v] of big) this.bigSizes.set(k, v);
    this.regBase = regBase;
    this.regFirst = regFirst;
    this.r = 0;
  }

  /** The region holding chunk i. */
  private regionOf(i: number): number {
    const first = this.regFirst,
      R = first.length;
    let r = this.r;
    if (r < R && first[r]! <= i && (r + 1 === R || i < first[r + 1]!)) return r;
    let lo = 0,
      hi = R - 1;
    r = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (first[mid]! <= i) {
        r = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    this.r = r;
    return r;
  }

  addrAt(i: number): number {
    return this.regBase[this.regionOf(i)]! + this.off16[i]! * 16;
  }
  sizeAt(i: number): number {
    const s = this.size16[i]!;
    return s === 0 && this.bigSizes.size ? (this.bigSizes.get(i) ?? 0) : s * 16;
  }
  isMmapped(i: number): boolean {
    return (this.flags[i]! & F_MMAPPED) !== 0;
  }
  hintAt(i: number): number {
    return HINT_OF[this.flags[i]! & 3]!;
  }
  bytesOf(i: number): Uint8Array | undefined {
    return this.bytes.get(i);
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
    for (let i = 0; i < this.length; i++) {
      const h = this.hintAt(i);
      cb(
        this.addrAt(i),
        this.sizeAt(i),
        this.isMmapped(i),
        h === POOL_HINT.unknown ? undefined : h === POOL_HINT.yes,
        this.bytes.get(i),
      );
    }
  }
  /** Index of the last chunk whose user pointer is <= addr, or -1 (binary searches: the region, then the chunk in it). */
  floor(addr: number): number {
    const base = this.regBase,
      R = base.length;
    let lo = 0,
      hi = R - 1,
      r = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (base[mid]! <= addr) {
        r = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (r < 0) return -1;
    const rel = (addr - base[r]!) / 16;
    const o = this.off16;
    let a = this.regFirst[r]!,
      b = (r + 1 < R ? this.regFirst[r + 1]! : this.length) - 1,
      best = this.regFirst[r]! - 1;
    while (a <= b) {
      const mid = (a + b) >> 1;
      if (o[mid]! <= rel) {
        best = mid;
        a = mid + 1;
      } else b = mid - 1;
    }
    return best;
  }
  indexOf(userAddr: number): number {
    const i = this.floor(userAddr);
    return i >= 0 && this.addrAt(i) === userAddr ? i : -1;
  }
  sizeOf(userAddr: number): number | undefined {
    const i = this.indexOf(userAddr);
    return i >= 0 ? this.sizeAt(i) : undefined;
  }
}

/** Whether the ascending `sorted` holds v (binary search). */
function has(sorted: Float64Array, v: number): boolean {
  let lo = 0,
    hi = sorted.length - 1;
  if (hi < 0 || v < sorted[0]! || v > sorted[hi]!) return false;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const f = sorted[mid]!;
    if (f < v) lo = mid + 1;
    else if (f > v) hi = mid - 1;
    else return true;
  }
  return false;
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
