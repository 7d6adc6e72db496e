// Growth between two censuses (`leakscope heap --baseline FILE.json`). The baseline may be
// an earlier census of the same process or the census of a sibling (another nginx worker):
// the comparison uses only the census model, never addresses.

import type { BucketGrowth, CensusComparison, ClassTotals, HeapCensus } from './census-types.js';

const TOTAL_KEYS: (keyof ClassTotals)[] = [
  'inUseChunks',
  'inUseBytes',
  'freeChunks',
  'freeBytes',
  'tcacheChunks',
  'tcacheBytes',
  'fastbinChunks',
  'fastbinBytes',
  'binChunks',
  'binBytes',
  'topBytes',
  'mmappedChunks',
  'mmappedBytes',
  'systemBytes',
];

/** current - baseline per total, per histogram bucket and per exact size (topSizes of both). */
export function compareCensus(baseline: HeapCensus, current: HeapCensus): CensusComparison {
  const totals = {} as ClassTotals;
  for (const k of TOTAL_KEYS) totals[k] = (current.totals[k] ?? 0) - (baseline.totals[k] ?? 0);
  const mins = new Set<number>([
    ...baseline.histogram.map((b) => b.minBytes),
    ...current.histogram.map((b) => b.minBytes),
  ]);
  const buckets: BucketGrowth[] = [...mins]
    .sort((a, b) => a - b)
    .map((min) => {
      const b = baseline.histogram.find((x) => x.minBytes === min);
      const c = current.histogram.find((x) => x.minBytes === min);
      return {
        minBytes: min,
        maxBytes: min * 2,
        inUseChunks: (c?.inUseChunks ?? 0) - (b?.inUseChunks ?? 0),
        inUseBytes: (c?.inUseBytes ?? 0) - (b?.inUseBytes ?? 0),
        freeChunks: (c?.freeChunks ?? 0) - (b?.freeChunks ?? 0),
        freeBytes: (c?.freeBytes ?? 0) - (b?.freeBytes ?? 0),
        baselineInUseChunks: b?.inUseChunks ?? 0,
        currentInUseChunks: c?.inUseChunks ?? 0,
      };
    });
  // Exact sizes are only known for each census's topSizes; a size missing from one side
  // counts as 0 there only when that side's list is not truncated below it.
  const bSizes = new Map(baseline.topSizes.map((s) => [s.size, s.count]));
  const cSizes = new Map(current.topSizes.map((s) => [s.size, s.count]));
  const sizes: CensusComparison['sizes'] = [];
  for (const size of new Set([...bSizes.keys(), ...cSizes.keys()])) {
    const d = (cSizes.get(size) ?? 0) - (bSizes.get(size) ?? 0);
    if (d !== 0) sizes.push({ size, countDelta: d, bytesDelta: d * size });
  }
  sizes.sort((x, y) => y.bytesDelta - x.bytesDelta);
  return {
    baseline: { pid: baseline.pid, target: baseline.target },
    current: { pid: current.pid, target: current.target },
    totals,
    buckets,
    sizes,
  };
}
