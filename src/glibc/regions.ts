// Where glibc's allocator memory lives, for `leakscope mem` (RSS by category): the main
// heap, each thread arena's heaps, and the mmapped chunks. Cheap: reads the arena ring,
// heap_info chain and one header per probed page of anonymous mappings; no chunk walk.

import type { AddressSpace } from '../target/address-space.js';
import { Symbolizer } from '../symbols/symbolizer.js';
import type { GlibcRegions, Inconsistency } from './census-types.js';
import { locateGlibc } from './locate.js';
import { readArenas, readMallocParams } from './arenas.js';
import { mmapCandidateRanges, scanMmappedChunks } from './mmapped.js';

/**
 * mainHeap: sbrk_base .. end of top (the [heap] mapping part glibc owns);
 * threadHeaps: heap_info .. heap_info + mprotect_size (the read-write part of each 64 MiB heap);
 * mmappedChunks: address = start of the chunk's mapping, size = mapping length (prev_size + chunk size).
 * Throws LeakscopeError('not-found' | 'not-supported' | 'unreadable') when glibc's state cannot be found.
 */
export function glibcRegions(
  space: AddressSpace,
  symbolizer?: Symbolizer,
  onInconsistency?: (i: Inconsistency) => void,
  exclude: ReadonlyArray<{ start: number; end: number }> = [],
): GlibcRegions {
  space.mappings({ refresh: true }); // fresh maps: mmapped chunks come and go
  symbolizer ??= new Symbolizer(space.modules());
  const loc = locateGlibc(space, symbolizer);
  const mp = readMallocParams(space, loc);
  const { arenas, heapMaxSize } = readArenas(space, loc, mp, onInconsistency ?? (() => {}));
  const out: GlibcRegions = { mainHeap: [], threadHeaps: [], mmappedChunks: [] };
  for (const a of arenas) {
    for (const h of a.heaps) {
      if (a.kind === 'main') out.mainHeap.push({ start: h.start, end: h.end });
      else out.threadHeaps.push({ start: h.start, end: h.mappedEnd, arena: a.address });
    }
  }
  const skip = [
    ...exclude,
    ...arenas
      .filter((a) => a.kind === 'thread')
      .flatMap((a) => a.heaps.map((h) => ({ start: h.start, end: h.start + heapMaxSize }))),
  ];
  if (loc.heapMapping) skip.push({ start: loc.heapMapping.start, end: loc.heapMapping.end });
  scanMmappedChunks(space, mmapCandidateRanges(space.mappings(), skip), (c) => {
    out.mmappedChunks.push({ address: c.address - (c.mappedBytes - c.size), size: c.mappedBytes });
  });
  return out;
}
