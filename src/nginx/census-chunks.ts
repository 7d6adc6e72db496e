// Adapter from the glibc heap census (src/glibc, the one heap walker) to InUseChunks.
// The census hands over every chunk its walk sees in use while its window holds the chunk's
// bytes (`onWalkInUse`), then the ones it found on a tcache / fastbin list (`onFreeListChunk`:
// dropped here), then the mmapped chunks. The pool-candidate test (pool.ts poolCandidateTag)
// runs on those bytes, so the pool scan skips chunks whose bytes already rule a pool out, and the
// first POOL_SCAN_BYTES of the others are kept (up to KEPT_BYTES_BUDGET).
//
// Memory: no record per in-use chunk (ChunkList: a bit per 16 bytes of heap, 1/128 of the heap's
// bytes, and a list of the pool candidates and mmapped chunks only); the census itself keeps no list.

import { LeakscopeError } from '../model/errors.js';
import { heapCensus } from '../glibc/index.js';
import type { CensusOptions, HeapCensus } from '../glibc/index.js';
import type { AddressSpace } from '../target/index.js';
import { ChunkList, POOL_HINT, POOL_SCAN_BYTES } from './chunks.js';
import { poolCandidateTag } from './pool.js';

export interface CensusWithChunks {
  census: HeapCensus;
  chunks: ChunkList;
  elapsedMs: number;
}

/** Cap on the candidates' bytes kept from the walk (the scan reads the others itself). */
const KEPT_BYTES_BUDGET = 16 << 20;
/** Kept bytes live in slabs of this size (views stay valid: a slab never moves). */
const SLAB = 1 << 20;

/** The candidates' first bytes as the walk read them, copied into slabs (views stay valid: a slab never moves). */
class KeptBytes {
  private slab = new Uint8Array(0);
  private used = 0;
  private total = 0;
  /** A copy of words' bytes from u32 index `word` on (POOL_SCAN_BYTES of them), or undefined past the budget. */
  keep(words: Uint32Array, word: number): Uint8Array | undefined {
    if (this.total + POOL_SCAN_BYTES > KEPT_BYTES_BUDGET) return undefined;
    if (this.used + POOL_SCAN_BYTES > this.slab.length) {
      this.slab = new Uint8Array(Math.min(SLAB, KEPT_BYTES_BUDGET - this.total));
      this.used = 0;
    }
    const view = this.slab.subarray(this.used, this.used + POOL_SCAN_BYTES);
    view.set(new Uint8Array(words.buffer, words.byteOffset + word * 4, POOL_SCAN_BYTES));
    this.used += POOL_SCAN_BYTES;
    this.total += POOL_SCAN_BYTES;
    return view;
  }
}

/** Runs the heap census once and collects its in-use chunks. */
export function censusWithChunks(space: AddressSpace, opts: CensusOptions = {}): CensusWithChunks {
  const t0 = performance.now();
  const list = new ChunkList();
  const kept = new KeptBytes();
  let freed = new Float64Array(256),
    nFreed = 0;
  const census = heapCensus(space, {
    ...opts,
    onWalkInUse: (userAddr, chunkSize, mmapped, words, userWord) => {
      if (words === undefined || userWord === undefined) {
        list.push(userAddr, chunkSize, mmapped, POOL_HINT.unknown);
        return;
      }
      // The window holds [chunk, chunk + chunkSize + 16): the chunk's prev_size field is word userWord - 4.
      const tag = poolCandidateTag(words, userWord - 4, userAddr, chunkSize);
      const bytes = tag === POOL_HINT.yes && chunkSize >= POOL_SCAN_BYTES ? kept.keep(words, userWord) : undefined;
      list.push(userAddr, chunkSize, mmapped, tag, bytes);
    },
    onFreeListChunk: (userAddr) => {
      if (nFreed === freed.length) {
        const f = new Float64Array(nFreed * 2);
        f.set(freed);
        freed = f;
      }
      freed[nFreed++] = userAddr;
    },
  });
  list.finish(freed.subarray(0, nFreed));
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
  return { census, chunks: list, elapsedMs: performance.now() - t0 };
}
