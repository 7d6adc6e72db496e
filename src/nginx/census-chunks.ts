// Adapter from the glibc heap census (src/glibc, the one heap walker) to InUseChunks.
// The census hands over every chunk its walk sees in use while its window holds the chunk's
// bytes (`onWalkInUse`), then the ones it found on a tcache / fastbin list (`onFreeListChunk`:
// dropped here), then the mmapped chunks. The pool-candidate test (pool.ts poolCandidateTag)
// runs on those bytes, so the pool scan skips chunks whose bytes already rule a pool out, and the
// first POOL_SCAN_BYTES of the others are kept (up to KEPT_BYTES_BUDGET).
//
// Memory: 14 bytes per in-use chunk (address f64, size u32, mmapped and hint u8), in arrays
// presized from the heap's extent (zero-filled: only the entries written cost RSS; no copies as
// the list grows), no object per chunk; the census itself keeps no list.

import { LeakscopeError } from '../model/errors.js';
import { heapCensus } from '../glibc/index.js';
import type { CensusOptions, HeapCensus } from '../glibc/index.js';
import type { AddressSpace } from '../target/index.js';
import { ChunkList, POOL_HINT, POOL_SCAN_BYTES } from './chunks.js';
import { poolCandidateTag } from './pool.js';
import type { ChunkArrays } from './chunks.js';

export interface CensusWithChunks {
  census: HeapCensus;
  chunks: ChunkList;
  elapsedMs: number;
}

/** Most entries allocated up front (14 bytes each, virtual until written); the list doubles beyond. */
const MAX_PRESIZED = 1 << 24;
/** Cap on the candidates' bytes kept from the walk (the scan reads the others itself). */
const KEPT_BYTES_BUDGET = 16 << 20;
/** Kept bytes live in slabs of this size (views stay valid: a slab never moves). */
const SLAB = 1 << 20;
const TWO32 = 4294967296;

/** The list being built: parallel typed arrays, grown by doubling past the presized capacity. */
class ChunkBuilder implements ChunkArrays {
  length = 0;
  addrs: Float64Array;
  sizes: Uint32Array | Float64Array;
  mmapped: Uint8Array;
  hint: Uint8Array;
  readonly bytes = new Map<number, Uint8Array>();
  private slab = new Uint8Array(0);
  private slabUsed = 0;
  private kept = 0;

  constructor(capacity: number) {
    const n = Math.max(1024, capacity);
    this.addrs = new Float64Array(n);
    this.sizes = new Uint32Array(n);
    this.mmapped = new Uint8Array(n);
    this.hint = new Uint8Array(n);
  }

  private grow(): void {
    const n = this.addrs.length * 2;
    const a = new Float64Array(n);
    a.set(this.addrs);
    this.addrs = a;
    const s = this.sizes instanceof Uint32Array ? new Uint32Array(n) : new Float64Array(n);
    s.set(this.sizes);
    this.sizes = s;
    const m = new Uint8Array(n);
    m.set(this.mmapped);
    this.mmapped = m;
    const h = new Uint8Array(n);
    h.set(this.hint);
    this.hint = h;
  }

  push(userAddr: number, chunkSize: number, mmapped: boolean, words?: Uint32Array, userWord?: number): void {
    const n = this.length;
    if (n === this.addrs.length) this.grow();
    if (chunkSize >= TWO32 && this.sizes instanceof Uint32Array) this.sizes = Float64Array.from(this.sizes);
    this.addrs[n] = userAddr;
    this.sizes[n] = chunkSize;
    this.mmapped[n] = mmapped ? 1 : 0;
    this.length = n + 1;
    if (words === undefined || userWord === undefined) {
      this.hint[n] = POOL_HINT.unknown;
      return;
    }
    // The window holds [chunk, chunk + chunkSize + 16): the chunk's prev_size field is word userWord - 4.
    const tag = poolCandidateTag(words, userWord - 4, userAddr, chunkSize);
    this.hint[n] = tag;
    if (tag !== POOL_HINT.yes || chunkSize < POOL_SCAN_BYTES || this.kept + POOL_SCAN_BYTES > KEPT_BYTES_BUDGET) return;
    if (this.slabUsed + POOL_SCAN_BYTES > this.slab.length) {
      this.slab = new Uint8Array(Math.min(SLAB, KEPT_BYTES_BUDGET - this.kept));
      this.slabUsed = 0;
    }
    const from = words.byteOffset + userWord * 4;
    const view = this.slab.subarray(this.slabUsed, this.slabUsed + POOL_SCAN_BYTES);
    view.set(new Uint8Array(words.buffer, from, POOL_SCAN_BYTES));
    this.bytes.set(n, view);
    this.slabUsed += POOL_SCAN_BYTES;
    this.kept += POOL_SCAN_BYTES;
  }

  /** Drops the chunks whose user pointers are in `freed` (walked as in use, found on a free list afterwards). */
  drop(freed: Float64Array): void {
    if (freed.length === 0) return;
    freed.sort();
    const n = this.length;
    let w = 0;
    for (let i = 0; i < n; i++) {
      const v = this.addrs[i]!;
      // binary search: the list is in address order per heap only
      let lo = 0,
        hi = freed.length - 1,
        hit = false;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const f = freed[mid]!;
        if (f < v) lo = mid + 1;
        else if (f > v) hi = mid - 1;
        else {
          hit = true;
          break;
        }
      }
      if (hit && this.mmapped[i] === 0) {
        this.bytes.delete(i);
        continue;
      }
      if (w !== i) {
        this.addrs[w] = v;
        this.sizes[w] = this.sizes[i]!;
        this.mmapped[w] = this.mmapped[i]!;
        this.hint[w] = this.hint[i]!;
        const b = this.bytes.get(i);
        if (b) {
          this.bytes.delete(i);
          this.bytes.set(w, b);
        }
      }
      w++;
    }
    this.length = w;
  }
}

/** At most one chunk per 32 bytes of the brk heap and anonymous rw memory (thread heaps and mmapped chunks live there). */
function capacityBound(space: AddressSpace): number {
  let bound = 0;
  for (const m of space.mappings({ refresh: true }))
    if (m.path === '[heap]' || (m.path === '' && m.perms.startsWith('rw'))) bound += (m.end - m.start) / 32;
  return Math.min(MAX_PRESIZED, Math.ceil(bound));
}

/** Runs the heap census once and collects its in-use chunks. */
export function censusWithChunks(space: AddressSpace, opts: CensusOptions = {}): CensusWithChunks {
  const t0 = performance.now();
  const list = new ChunkBuilder(capacityBound(space));
  let freed = new Float64Array(256),
    nFreed = 0;
  const census = heapCensus(space, {
    ...opts,
    onWalkInUse: (userAddr, chunkSize, mmapped, words, userWord) =>
      list.push(userAddr, chunkSize, mmapped, words, userWord),
    onFreeListChunk: (userAddr) => {
      if (nFreed === freed.length) {
        const f = new Float64Array(nFreed * 2);
        f.set(freed);
        freed = f;
      }
      freed[nFreed++] = userAddr;
    },
  });
  list.drop(freed.subarray(0, nFreed));
  const expected = census.totals.inUseChunks + census.totals.mmappedChunks;
  if (list.length === 0 && expected > 0) {
    throw new LeakscopeError(
      'not-supported',
      `the heap census reported ${expected} in-use chunks but not the chunks themselves (CensusOptions.onWalkInUse missing in src/glibc)`,
    );
  }
  // On a heap that changes while it is walked, a free-list chunk the walk saw as free is not in
  // the list yet still counted out of the in-use total: the two may differ by a few chunks. That
  // is one more counted inconsistency of a live walk, not a failure; a quiescent heap matches
  // exactly (tested).
  if (list.length !== expected) {
    census.inconsistencyCount++;
    if (census.inconsistencies.length < 100)
      census.inconsistencies.push({
        address: 0,
        kind: 'chunk-list-mismatch',
        detail: `the census counted ${expected} in-use chunks and listed ${list.length} (the heap changed during the walk)`,
      });
  }
  return { census, chunks: new ChunkList(list), elapsedMs: performance.now() - t0 };
}
