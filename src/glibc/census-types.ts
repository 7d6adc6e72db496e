// Plain model of a glibc heap census (the `heap` JSON contract of DESIGN.md). No imports
// beyond types; renderers (src/report/heap-table.ts) and the CLI read only these.
//
// Chunk size = glibc's chunk size (header included, flag bits masked: size & ~7), in bytes.

/** Counts and bytes per chunk class. Field names are the DESIGN.md `heap` contract. */
export interface ClassTotals {
  /** Chunks handed out to the program (heap chunks; mmapped chunks are counted in mmapped*). */
  inUseChunks: number;
  inUseBytes: number;
  /** Every free heap chunk: tcache + fastbins + bins + the top chunk of each arena. */
  freeChunks: number;
  freeBytes: number;
  /** Free chunks parked in some thread's tcache (glibc counts them as used in mallinfo2). */
  tcacheChunks: number;
  tcacheBytes: number;
  fastbinChunks: number;
  fastbinBytes: number;
  /** Free chunks in the unsorted, small and large bins. */
  binChunks: number;
  binBytes: number;
  /** Size of the top chunk(s). */
  topBytes: number;
  mmappedChunks: number;
  /** Full mapping length of each mmapped chunk (prev_size slack + size), as mp_.mmapped_mem counts it. */
  mmappedBytes: number;
  /** Memory the arena(s) got from the system: malloc_state.system_mem (mallinfo2 `arena`); mmapped chunks come on top. */
  systemBytes: number;
}

export interface BinBreakdown {
  unsortedChunks: number;
  smallbinChunks: number;
  largebinChunks: number;
}

export interface HeapSegment {
  /** First byte of the heap (main: sbrk_base; thread: the heap_info). */
  start: number;
  /** End of the heap's used part (main: end of top; thread: heap_info + size). */
  end: number;
  /** Where the walk stopped: == end when the whole heap was walked. */
  walkedEnd: number;
  chunks: number;
}

export interface ArenaCensus extends ClassTotals, BinBreakdown {
  index: number;
  kind: 'main' | 'thread';
  /** Runtime address of the struct malloc_state. */
  address: number;
  topChunk: number;
  attachedThreads: number;
  heaps: HeapSegment[];
  /** Free bytes outside top / (in-use + free bytes outside top), 0..1. */
  fragmentation: number;
  largestFreeChunk: number;
}

export interface HistogramBucket {
  /** Inclusive lower bound, a power of two. */
  minBytes: number;
  /** Exclusive upper bound (2 * minBytes). */
  maxBytes: number;
  /** In-use heap chunks plus mmapped chunks. */
  inUseChunks: number;
  inUseBytes: number;
  /** tcache + fastbin + bin chunks (top chunks excluded). */
  freeChunks: number;
  freeBytes: number;
}

export interface ExactSize {
  size: number;
  count: number;
  bytes: number;
}

export interface Inconsistency {
  /** Runtime address where the walk found the problem. */
  address: number;
  kind: string;
  detail: string;
}

export interface HeapCensus {
  pid: number;
  target: string;
  glibcVersion: string;
  totals: ClassTotals &
    BinBreakdown & { fragmentation: number; largestFreeChunk: number; arenas: number; tcaches: number };
  arenas: ArenaCensus[];
  /** Ascending, only non-empty buckets. */
  histogram: HistogramBucket[];
  /** In-use chunk sizes (mmapped included) with the most bytes, largest first. */
  topSizes: ExactSize[];
  /** Where each address and layout came from: 'debug-file symbol', 'heuristic: top-chunk search', ... */
  sources: Record<string, string>;
  /** glibc's own counters, for comparison with the walk. */
  glibcView: {
    nMmaps: number | null;
    mmappedMem: number | null;
    mmapThreshold: number | null;
    tcacheCount: number | null;
  };
  inconsistencies: Inconsistency[];
  /** Total inconsistencies found (the list keeps the first 100). */
  inconsistencyCount: number;
  /** False when some heap could not be walked to its end. */
  complete: boolean;
  /** Milliseconds spent and bytes read. */
  stats: { elapsedMs: number; bytesRead: number; chunksWalked: number };
}

/** Growth of one histogram bucket between two censuses (current - baseline). */
export interface BucketGrowth {
  minBytes: number;
  maxBytes: number;
  inUseChunks: number;
  inUseBytes: number;
  freeChunks: number;
  freeBytes: number;
  baselineInUseChunks: number;
  currentInUseChunks: number;
}

export interface CensusComparison {
  baseline: { pid: number; target: string };
  current: { pid: number; target: string };
  /** current - baseline for every total. */
  totals: ClassTotals;
  /** Every bucket present in either census, ascending. */
  buckets: BucketGrowth[];
  /** Exact sizes whose in-use count changed, largest byte growth first. */
  sizes: { size: number; countDelta: number; bytesDelta: number }[];
}

/** What `leakscope mem` needs to classify RSS. */
export interface GlibcRegions {
  mainHeap: { start: number; end: number }[];
  threadHeaps: { start: number; end: number; arena: number }[];
  mmappedChunks: { address: number; size: number }[];
}
