// `leakscope.heap/1`: the document of `leakscope heap --json`, and the baseline that
// `heap --baseline` and `analyze --baseline` compare against. Field names are the DESIGN.md
// `heap` contract; chunk size = glibc's chunk size (header included, flag bits masked), bytes.

import type {
  ArenaCensus,
  CensusComparison,
  ClassTotals,
  ExactSize,
  HeapCensus,
  HistogramBucket,
  Inconsistency,
} from '../glibc/census-types.js';
import type { Reachability } from '../glibc/reachability.js';
import {
  address,
  amount,
  array,
  boolean,
  count,
  integer,
  literal,
  nullable,
  object,
  optional,
  parseWith,
  ratio,
  record,
  schema,
  string,
} from './json-check.js';

export const HEAP_SCHEMA = 'leakscope.heap/1';

/** The DESIGN.md totals, per arena and in all. */
export type HeapTotalsEntry = ClassTotals;

const TOTAL_FIELDS = [
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
] as const satisfies ReadonlyArray<keyof ClassTotals>;

export interface HeapArenaEntry extends ClassTotals {
  index: number;
  kind: 'main' | 'thread';
  /** Runtime address of the struct malloc_state. */
  address: number;
  topChunk: number;
  attachedThreads: number;
  unsortedChunks: number;
  smallbinChunks: number;
  largebinChunks: number;
  /** 0..1. */
  fragmentation: number;
  largestFreeChunk: number;
  heaps: Array<{ start: number; end: number; walkedEnd: number; chunks: number }>;
}

export interface HeapDocument {
  schema: typeof HEAP_SCHEMA;
  target: string;
  pid: number;
  glibcVersion: string;
  totals: ClassTotals & {
    unsortedChunks: number;
    smallbinChunks: number;
    largebinChunks: number;
    fragmentation: number;
    largestFreeChunk: number;
    arenas: number;
    tcaches: number;
  };
  arenas: HeapArenaEntry[];
  /** Ascending, non-empty power-of-two buckets [minBytes, maxBytes). */
  histogram: HistogramBucket[];
  topSizes: ExactSize[];
  glibcView: HeapCensus['glibcView'];
  /** Where each address and layout came from. */
  sources: Record<string, string>;
  inconsistencies: Inconsistency[];
  inconsistencyCount: number;
  complete: boolean;
  stats: { elapsedMs: number; bytesRead: number; chunksWalked: number };
  /** Present with `--baseline`: current - baseline. */
  comparison?: CensusComparison;
  /** Present with `--reach` (DESIGN.md): in-use chunks by valgrind's classes; the census above is the last scan's. */
  reachability?: Reachability;
}

function pickTotals(t: ClassTotals): ClassTotals {
  const o = {} as ClassTotals;
  for (const k of TOTAL_FIELDS) o[k] = t[k];
  return o;
}

function arenaEntry(a: ArenaCensus): HeapArenaEntry {
  return {
    index: a.index,
    kind: a.kind,
    address: a.address,
    topChunk: a.topChunk,
    attachedThreads: a.attachedThreads,
    ...pickTotals(a),
    unsortedChunks: a.unsortedChunks,
    smallbinChunks: a.smallbinChunks,
    largebinChunks: a.largebinChunks,
    fragmentation: a.fragmentation,
    largestFreeChunk: a.largestFreeChunk,
    heaps: a.heaps.map((h) => ({ start: h.start, end: h.end, walkedEnd: h.walkedEnd, chunks: h.chunks })),
  };
}

/** The versioned document of a census (and its comparison with a baseline); arrays are never null. */
export function encodeHeap(
  c: HeapCensus,
  opts: { comparison?: CensusComparison; reachability?: Reachability } = {},
): HeapDocument {
  return {
    schema: HEAP_SCHEMA,
    target: c.target,
    pid: c.pid,
    glibcVersion: c.glibcVersion,
    totals: {
      ...pickTotals(c.totals),
      unsortedChunks: c.totals.unsortedChunks,
      smallbinChunks: c.totals.smallbinChunks,
      largebinChunks: c.totals.largebinChunks,
      fragmentation: c.totals.fragmentation,
      largestFreeChunk: c.totals.largestFreeChunk,
      arenas: c.totals.arenas,
      tcaches: c.totals.tcaches,
    },
    arenas: c.arenas.map(arenaEntry),
    histogram: c.histogram.map((b) => ({ ...b })),
    topSizes: c.topSizes.map((s) => ({ ...s })),
    glibcView: { ...c.glibcView },
    sources: { ...c.sources },
    // A live walk may record a garbage pointer read mid-change (beyond 2^53): the document keeps
    // the contract's address type (0 then; the detail says the value as read).
    inconsistencies: c.inconsistencies.map((i) =>
      Number.isSafeInteger(i.address) && i.address >= 0
        ? { ...i }
        : { ...i, address: 0, detail: `${i.detail} (at an address read as 0x${i.address.toString(16)})` },
    ),
    inconsistencyCount: c.inconsistencyCount,
    complete: c.complete,
    stats: { ...c.stats },
    ...(opts.comparison ? { comparison: opts.comparison } : {}),
    ...(opts.reachability ? { reachability: reachabilityEntry(opts.reachability) } : {}),
  };
}

function reachabilityEntry(r: Reachability): Reachability {
  const c = (x: { chunks: number; bytes: number }) => ({ chunks: x.chunks, bytes: x.bytes });
  return {
    definitelyLost: c(r.definitelyLost),
    indirectlyLost: c(r.indirectlyLost),
    possiblyLost: c(r.possiblyLost),
    reachable: c(r.reachable),
    unknown: c(r.unknown),
    allocator: c(r.allocator),
    buckets: r.buckets.map((b) => ({
      minBytes: b.minBytes,
      maxBytes: b.maxBytes,
      definitelyLost: c(b.definitelyLost),
      indirectlyLost: c(b.indirectlyLost),
      possiblyLost: c(b.possiblyLost),
      reachable: c(b.reachable),
      unknown: c(b.unknown),
    })),
    roots: r.roots.map((x) => ({ ...x })),
    largestLost: r.largestLost.map((x) => ({ ...x })),
    scans: r.scans,
    notes: [...r.notes],
    stats: { ...r.stats, phasesMs: { ...r.stats.phasesMs } },
  };
}

const classTotals = {
  inUseChunks: count,
  inUseBytes: count,
  freeChunks: count,
  freeBytes: count,
  tcacheChunks: count,
  tcacheBytes: count,
  fastbinChunks: count,
  fastbinBytes: count,
  binChunks: count,
  binBytes: count,
  topBytes: count,
  mmappedChunks: count,
  mmappedBytes: count,
  systemBytes: count,
};
const growthTotals = Object.fromEntries(TOTAL_FIELDS.map((k) => [k, integer])) as Record<
  keyof ClassTotals,
  typeof integer
>;
const bins = { unsortedChunks: count, smallbinChunks: count, largebinChunks: count };

const arena = object({
  index: count,
  kind: literal('main', 'thread'),
  address,
  topChunk: address,
  attachedThreads: count,
  ...classTotals,
  ...bins,
  fragmentation: ratio,
  largestFreeChunk: count,
  heaps: array(object({ start: address, end: address, walkedEnd: address, chunks: count })),
});
const bucket = object({
  minBytes: count,
  maxBytes: count,
  inUseChunks: count,
  inUseBytes: count,
  freeChunks: count,
  freeBytes: count,
});
const comparison = object({
  baseline: object({ pid: count, target: string }),
  current: object({ pid: count, target: string }),
  totals: object(growthTotals),
  buckets: array(
    object({
      minBytes: count,
      maxBytes: count,
      inUseChunks: integer,
      inUseBytes: integer,
      freeChunks: integer,
      freeBytes: integer,
      baselineInUseChunks: count,
      currentInUseChunks: count,
    }),
  ),
  sizes: array(object({ size: count, countDelta: integer, bytesDelta: integer })),
});

const classCount = object({ chunks: count, bytes: count });
const reachability = object({
  definitelyLost: classCount,
  indirectlyLost: classCount,
  possiblyLost: classCount,
  reachable: classCount,
  unknown: classCount,
  allocator: classCount,
  buckets: array(
    object({
      minBytes: count,
      maxBytes: count,
      definitelyLost: classCount,
      indirectlyLost: classCount,
      possiblyLost: classCount,
      reachable: classCount,
      unknown: classCount,
    }),
  ),
  roots: array(
    object({ kind: string, name: string, ranges: count, bytes: count, startPointers: count, interiorPointers: count }),
  ),
  largestLost: array(
    object({
      address,
      chunkSize: count,
      class: literal('definitelyLost', 'indirectlyLost', 'possiblyLost', 'reachable', 'unknown'),
      groupChunks: count,
      groupBytes: count,
      hex: string,
      ascii: string,
    }),
  ),
  scans: count,
  notes: array(string),
  stats: object({
    elapsedMs: amount,
    bytesRead: count,
    chunks: count,
    edges: count,
    edgesStored: boolean,
    rootBytes: count,
    phasesMs: record(amount),
  }),
});

export const heapDocument = object({
  schema: schema(HEAP_SCHEMA),
  target: string,
  pid: count,
  glibcVersion: string,
  totals: object({
    ...classTotals,
    ...bins,
    fragmentation: ratio,
    largestFreeChunk: count,
    arenas: count,
    tcaches: count,
  }),
  arenas: array(arena),
  histogram: array(bucket),
  topSizes: array(object({ size: count, count, bytes: count })),
  // Read from the target as-is (mp_ is not validated against the walk): any integers.
  glibcView: object({
    nMmaps: nullable(integer),
    mmappedMem: nullable(integer),
    mmapThreshold: nullable(integer),
    tcacheCount: nullable(integer),
  }),
  sources: record(string),
  inconsistencies: array(object({ address, kind: string, detail: string })),
  inconsistencyCount: count,
  complete: boolean,
  stats: object({ elapsedMs: amount, bytesRead: count, chunksWalked: count }),
  comparison: optional(comparison),
  reachability: optional(reachability),
});

/** A `leakscope.heap/1` document from untrusted JSON; throws `malformed` with the path of the first problem. */
export function parseHeap(doc: unknown): HeapDocument {
  return parseWith(heapDocument, doc);
}

/** The census a heap document describes (for comparing a baseline with a live census). */
export function censusFromHeap(d: HeapDocument): HeapCensus {
  return {
    pid: d.pid,
    target: d.target,
    glibcVersion: d.glibcVersion,
    totals: d.totals,
    arenas: d.arenas,
    histogram: d.histogram,
    topSizes: d.topSizes,
    sources: d.sources,
    glibcView: d.glibcView,
    inconsistencies: d.inconsistencies,
    inconsistencyCount: d.inconsistencyCount,
    complete: d.complete,
    stats: d.stats,
  };
}
