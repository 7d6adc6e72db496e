// Adapter from the glibc heap census (src/glibc, the one heap walker) to InUseChunks.
// The census reports every chunk it finally counts as in use (after tcache / fastbin
// reclassification) and every mmapped chunk through its generic chunk visitor (`onInUseChunk`);
// the pool-candidate test rides along as the census's ChunkPeek (pool.ts poolCandidateTag), so
// the pool scan skips chunks whose bytes already rule a pool out, and keeps the first bytes of
// the others.

import { LeakscopeError } from '../model/errors.js';
import { heapCensus } from '../glibc/index.js';
import type { CensusOptions, ChunkPeek, HeapCensus } from '../glibc/index.js';
import type { AddressSpace } from '../target/index.js';
import { ChunkList, POOL_HINT, POOL_SCAN_BYTES } from './chunks.js';
import { poolCandidateTag } from './pool.js';
import type { ChunkArrays } from './chunks.js';

export interface CensusWithChunks {
  census: HeapCensus;
  chunks: ChunkList;
  elapsedMs: number;
}

/** Runs the heap census once and collects its in-use chunks. */
export function censusWithChunks(space: AddressSpace, opts: CensusOptions = {}): CensusWithChunks {
  const t0 = performance.now();
  // Collected into parallel arrays (no object per chunk).
  const list: ChunkArrays = {
    length: 0,
    addrs: new Float64Array(1024),
    sizes: new Float64Array(1024),
    mmapped: new Uint8Array(1024),
    hint: new Uint8Array(1024),
    bytes: [],
  };
  const peek: ChunkPeek = { tag: poolCandidateTag, copyTag: POOL_HINT.yes, copyBytes: POOL_SCAN_BYTES };
  const census = heapCensus(space, {
    ...opts,
    peek,
    onInUseChunk: (userAddr, chunkSize, mmapped, tag, userBytes) => {
      const n = list.length;
      if (n === list.addrs.length) {
        const f = (a: Float64Array) => {
          const b = new Float64Array(n * 2);
          b.set(a);
          return b;
        };
        const u = (a: Uint8Array) => {
          const b = new Uint8Array(n * 2);
          b.set(a);
          return b;
        };
        list.addrs = f(list.addrs);
        list.sizes = f(list.sizes);
        list.mmapped = u(list.mmapped);
        list.hint = u(list.hint);
      }
      list.addrs[n] = userAddr;
      list.sizes[n] = chunkSize;
      list.mmapped[n] = mmapped ? 1 : 0;
      list.hint[n] = tag;
      list.bytes[n] = userBytes;
      list.length = n + 1;
    },
  });
  const expected = census.totals.inUseChunks + census.totals.mmappedChunks;
  if (list.length === 0 && expected > 0) {
    throw new LeakscopeError(
      'not-supported',
      `the heap census reported ${expected} in-use chunks but not the chunks themselves (CensusOptions.onInUseChunk missing in src/glibc)`,
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
