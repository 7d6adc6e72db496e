export * from './census-types.js';
export { heapCensus, DEFAULT_WINDOW, NOT_PEEKED, type CensusOptions, type ChunkPeek } from './census.js';
export { compareCensus } from './compare.js';
export { glibcRegions } from './regions.js';
export { locateGlibc, detectGlibcVersion, findLibc, type GlibcLocation } from './locate.js';
export { layoutFor, parseGlibcVersion, type GlibcLayout, type GlibcVersion } from './layout.js';
export {
  reachability,
  ChunkTable,
  REACH_CLASSES,
  type ReachClass,
  type Reachability,
  type ReachResult,
  type ReachOptions,
  type PreviousScan,
  type ReachRoot,
  type ReachBucket,
  type LostChunk,
  type ClassCount,
} from './reachability.js';
