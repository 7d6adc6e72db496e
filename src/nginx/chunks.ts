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
 * (POOL_SCAN_BYTES of them). Hot loops read the arrays: 8 + 4 + 1 + 1 bytes per chunk (sizes
 * are u32 unless some chunk is 4 GiB or more); the kept bytes are few (candidates only).
 */
export interface InUseChunks {
  readonly length: number;
  readonly addrs: Float64Array;
  readonly sizes: Uint32Array | Float64Array;
  readonly mmapped: Uint8Array;
  readonly hint: Uint8Array;
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

/** In-use chunks as parallel arrays (any order, `length` of them used); `hint`: a POOL_HINT value (see InUseChunks); `bytes`: kept bytes by index. */
export interface ChunkArrays {
  length: number;
  addrs: Float64Array;
  sizes: Uint32Array | Float64Array;
  mmapped: Uint8Array;
  hint: Uint8Array;
  bytes: Map<number, Uint8Array>;
}

/** A simple InUseChunks over arrays sorted by address (tests, recorded censuses, adapters). */
export class ChunkList implements InUseChunks {
  readonly addrs: Float64Array;
  readonly sizes: Uint32Array | Float64Array;
  readonly mmapped: Uint8Array;
  /** Pool-candidate hint: a POOL_HINT value. */
  readonly hint: Uint8Array;
  private readonly bytes: Map<number, Uint8Array>;

  constructor(
    chunks:
      | ReadonlyArray<{
          userAddr: number;
          chunkSize: number;
          mmapped?: boolean;
          poolCandidate?: boolean;
          userBytes?: Uint8Array;
        }>
      | ChunkArrays,
  ) {
    if ('addrs' in chunks) {
      const n = chunks.length;
      let sorted = true;
      for (let i = 1; i < n && sorted; i++) if (chunks.addrs[i - 1]! > chunks.addrs[i]!) sorted = false;
      if (sorted) {
        // Already in address order (the usual case: one heap, then mmapped chunks): the arrays
        // are used as they are (views of their first n entries, no copy).
        this.addrs = chunks.addrs.subarray(0, n);
        this.sizes = chunks.sizes.subarray(0, n);
        this.mmapped = chunks.mmapped.subarray(0, n);
        this.hint = chunks.hint.subarray(0, n);
        this.bytes = chunks.bytes;
        return;
      }
      // Sorted by address through an index permutation.
      const order = new Uint32Array(n);
      for (let i = 0; i < n; i++) order[i] = i;
      order.sort((a, b) => chunks.addrs[a]! - chunks.addrs[b]!);
      this.addrs = new Float64Array(n);
      this.sizes = chunks.sizes instanceof Uint32Array ? new Uint32Array(n) : new Float64Array(n);
      this.mmapped = new Uint8Array(n);
      this.hint = new Uint8Array(n);
      this.bytes = new Map();
      for (let i = 0; i < n; i++) {
        const k = order[i]!;
        this.addrs[i] = chunks.addrs[k]!;
        this.sizes[i] = chunks.sizes[k]!;
        this.mmapped[i] = chunks.mmapped[k]!;
        this.hint[i] = chunks.hint[k]!;
        const b = chunks.bytes.get(k);
        if (b) this.bytes.set(i, b);
      }
      return;
    }
    const sorted = [...chunks].sort((a, b) => a.userAddr - b.userAddr);
    this.addrs = new Float64Array(sorted.length);
    this.sizes = new Float64Array(sorted.length);
    this.mmapped = new Uint8Array(sorted.length);
    this.hint = new Uint8Array(sorted.length);
    this.bytes = new Map();
    sorted.forEach((c, i) => {
      if (c.userBytes) this.bytes.set(i, c.userBytes);
      this.addrs[i] = c.userAddr;
      this.sizes[i] = c.chunkSize;
      this.mmapped[i] = c.mmapped ? 1 : 0;
      this.hint[i] = c.poolCandidate === undefined ? POOL_HINT.unknown : c.poolCandidate ? POOL_HINT.yes : POOL_HINT.no;
    });
  }
  get length(): number {
    return this.addrs.length;
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
    for (let i = 0; i < this.addrs.length; i++) {
      const h = this.hint[i]!;
      cb(
        this.addrs[i]!,
        this.sizes[i]!,
        this.mmapped[i] === 1,
        h === POOL_HINT.unknown ? undefined : h === POOL_HINT.yes,
        this.bytes.get(i),
      );
    }
  }
  /** Index of the last chunk whose user pointer is <= addr, or -1 (binary search: no per-chunk map to build or keep). */
  private floor(addr: number): number {
    const a = this.addrs;
    let lo = 0,
      hi = a.length - 1,
      best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid]! <= addr) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return best;
  }
  indexOf(userAddr: number): number {
    const i = this.floor(userAddr);
    return i >= 0 && this.addrs[i] === userAddr ? i : -1;
  }
  sizeOf(userAddr: number): number | undefined {
    const i = this.indexOf(userAddr);
    return i >= 0 ? this.sizes[i] : undefined;
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
