// `leakscope.watch/1`: the state of a running `leakscope watch` at one instant: every followed
// worker's last static census (RSS by category, glibc buckets, nginx pool groups), the growth
// rates fitted over its recent censuses, the watch's own cost and the last triggered report.
// report/prometheus-metrics.ts renders it as Prometheus text; DESIGN.md names the metrics.
// Byte counts are integers in bytes, times in seconds (Unix time for timestamps).

import type { MemCategoryName } from '../model/mem.js';
import {
  address,
  amount,
  array,
  boolean,
  count,
  finite,
  literal,
  nullable,
  object,
  parseWith,
  ratio,
  schema,
  string,
} from './json-check.js';
import type { Check } from './json-check.js';

export const WATCH_SCHEMA = 'leakscope.watch/1';

export type PoolOwnerLabel =
  | 'cycle'
  | 'old-cycle'
  | 'connection'
  | 'request'
  | 'upstream'
  | 'static'
  | 'heap'
  | 'unreferenced'
  | 'other';

/** What a growth series measures: a glibc chunk-size bucket, an nginx pool group, an RSS category. */
export type GrowthSeries =
  | { kind: 'bucket'; minBytes: number }
  | { kind: 'pool'; owner: PoolOwnerLabel; module: string }
  | { kind: 'category'; category: MemCategoryName };

export interface WatchGrowth {
  series: GrowthSeries;
  /** Least-squares slope over the window (analysis/growth-rate.ts), bytes per hour. */
  bytesPerHour: number;
  /** Its confidence interval (95%), bytes per hour. */
  lowBytesPerHour: number;
  highBytesPerHour: number;
  samples: number;
  spanSeconds: number;
}

export interface WatchBucket {
  /** Power-of-two chunk-size bucket [minBytes, 2 * minBytes). */
  minBytes: number;
  inUseChunks: number;
  inUseBytes: number;
  freeChunks: number;
  freeBytes: number;
}

export interface WatchGlibc {
  /** Non-empty buckets, ascending. In-use includes mmapped chunks (as the census histogram). */
  buckets: WatchBucket[];
  inUseBytes: number;
  freeBytes: number;
  topBytes: number;
  mmappedChunks: number;
  mmappedBytes: number;
  /** malloc_state.system_mem summed over arenas. */
  systemBytes: number;
  arenas: number;
  /** False when some heap could not be walked to its end (a concurrent change). */
  complete: boolean;
  inconsistencies: number;
}

export interface WatchPoolGroup {
  owner: PoolOwnerLabel;
  /** The owning (else creating) module, "unknown" when neither is known, "other" for the groups past the top N. */
  module: string;
  pools: number;
  bytes: number;
}

export interface WatchPools {
  /** At most the watch's top-N modules per owner plus "other" rows: bounded label cardinality. */
  groups: WatchPoolGroup[];
  pools: number;
  bytes: number;
}

/**
 * LuaJIT VMs of an OpenResty worker: an extension point. Filled only when a LuaJIT census module
 * (src/luajit/) is wired into analysis/watch-observe.ts; null until then, never estimated.
 */
export interface WatchLua {
  /** global_State.gc.total per VM, bytes. */
  vms: Array<{ globalState: number; gcTotalBytes: number }>;
  /** The largest tables by path (bounded, the rest not listed). */
  tables: Array<{ path: string; retainedBytes: number }>;
}

export interface WatchCensus {
  /** Unix time the census ended. */
  timestampSeconds: number;
  /** Wall time of the last census and of its phases, seconds. */
  durationSeconds: number;
  phases: { memSeconds: number; heapSeconds: number; poolsSeconds: number };
  /** Whether the last census produced data; errors counted since the worker was first seen. */
  ok: boolean;
  errors: number;
  /** One line: the last error, if any. */
  lastError: string | null;
}

export interface WatchWorker {
  pid: number;
  /** nginx: the worker slot (ngx_worker, stable across reloads and respawns); else the command name. */
  worker: string;
  command: string;
  /** Process start, Unix time. */
  startTimeSeconds: number;
  census: WatchCensus;
  /** RSS by category (`mem`), null when the breakdown failed. */
  rss: Array<{ category: MemCategoryName; rssBytes: number }> | null;
  glibc: WatchGlibc | null;
  pools: WatchPools | null;
  lua: WatchLua | null;
  growth: WatchGrowth[];
}

export type WatchVerdict = 'leak' | 'no-leak' | 'cannot-tell' | 'error';

export interface WatchReport {
  /** Directory under --reports holding report.html, analyze.json, leaks.pb.gz. */
  directory: string;
  pid: number;
  worker: string;
  timestampSeconds: number;
  /** The series whose growth fired the trigger. */
  trigger: GrowthSeries;
  triggerBytesPerHour: number;
  verdict: WatchVerdict;
  module: string | null;
  /** Chunk-size bucket lower bound, bytes. */
  bucketMinBytes: number | null;
  function: string | null;
  confidence: string | null;
  summary: string;
}

export interface WatchSelf {
  startedAtSeconds: number;
  intervalSeconds: number;
  /** Census cycles run, and cycles started late because the previous ones exceeded the CPU budget. */
  cycles: number;
  cyclesDelayed: number;
  /** Wall time of the last cycle (all workers), seconds. */
  lastCycleSeconds: number;
  /** CPU time (user + system) of the last cycle's censuses, seconds: what --budget limits. */
  lastCycleCpuSeconds: number;
  /** Share of one core the censuses may take (--budget) and the share the last cycle took (census CPU / period). */
  budget: number;
  lastCycleDuty: number;
  /** The watch process's own CPU and RSS. */
  cpuSeconds: number;
  residentBytes: number;
  /** Triggered analyses: run, running now, suppressed (by reason). */
  reports: number;
  analysisRunning: boolean;
  triggersSuppressed: { cooldown: number; busy: number };
  analysisErrors: number;
}

export interface WatchDocument {
  schema: typeof WATCH_SCHEMA;
  generatedAt: string;
  self: WatchSelf;
  workers: WatchWorker[];
  lastReport: WatchReport | null;
}

// ---- validating parser (a snapshot read back: GET /snapshot.json of a running watch) ----

const MEM_CATEGORIES: MemCategoryName[] = [
  'glibc-main-heap',
  'glibc-thread-arenas',
  'glibc-mmapped-chunks',
  'nginx-shm',
  'luajit',
  'code',
  'file',
  'stack',
  'other-anon',
];
const OWNERS: PoolOwnerLabel[] = [
  'cycle',
  'old-cycle',
  'connection',
  'request',
  'upstream',
  'static',
  'heap',
  'unreferenced',
  'other',
];
const seconds = amount;

/** A growth series: its `kind` decides the other fields. */
const growthSeries: Check<GrowthSeries> = (v, p) => {
  const kind = object({ kind: literal('bucket', 'pool', 'category') })(v, p).kind;
  if (kind === 'bucket') return object({ kind: literal('bucket'), minBytes: count })(v, p);
  if (kind === 'pool') return object({ kind: literal('pool'), owner: literal(...OWNERS), module: string })(v, p);
  return object({ kind: literal('category'), category: literal(...MEM_CATEGORIES) })(v, p);
};

const watchGrowth = object({
  series: growthSeries,
  bytesPerHour: finite,
  lowBytesPerHour: finite,
  highBytesPerHour: finite,
  samples: count,
  spanSeconds: seconds,
});
const watchWorker = object({
  pid: count,
  worker: string,
  command: string,
  startTimeSeconds: seconds,
  census: object({
    timestampSeconds: seconds,
    durationSeconds: seconds,
    phases: object({ memSeconds: seconds, heapSeconds: seconds, poolsSeconds: seconds }),
    ok: boolean,
    errors: count,
    lastError: nullable(string),
  }),
  rss: nullable(array(object({ category: literal(...MEM_CATEGORIES), rssBytes: count }))),
  glibc: nullable(
    object({
      buckets: array(
        object({ minBytes: count, inUseChunks: count, inUseBytes: count, freeChunks: count, freeBytes: count }),
      ),
      inUseBytes: count,
      freeBytes: count,
      topBytes: count,
      mmappedChunks: count,
      mmappedBytes: count,
      systemBytes: count,
      arenas: count,
      complete: boolean,
      inconsistencies: count,
    }),
  ),
  pools: nullable(
    object({
      groups: array(object({ owner: literal(...OWNERS), module: string, pools: count, bytes: count })),
      pools: count,
      bytes: count,
    }),
  ),
  lua: nullable(
    object({
      vms: array(object({ globalState: address, gcTotalBytes: count })),
      tables: array(object({ path: string, retainedBytes: count })),
    }),
  ),
  growth: array(watchGrowth),
});
const watchReport = object({
  directory: string,
  pid: count,
  worker: string,
  timestampSeconds: seconds,
  trigger: growthSeries,
  triggerBytesPerHour: finite,
  verdict: literal('leak', 'no-leak', 'cannot-tell', 'error'),
  module: nullable(string),
  bucketMinBytes: nullable(count),
  function: nullable(string),
  confidence: nullable(string),
  summary: string,
});
export const watchDocument = object({
  schema: schema(WATCH_SCHEMA),
  generatedAt: string,
  self: object({
    startedAtSeconds: seconds,
    intervalSeconds: seconds,
    cycles: count,
    cyclesDelayed: count,
    lastCycleSeconds: seconds,
    lastCycleCpuSeconds: seconds,
    budget: ratio,
    lastCycleDuty: amount,
    cpuSeconds: seconds,
    residentBytes: count,
    reports: count,
    analysisRunning: boolean,
    triggersSuppressed: object({ cooldown: count, busy: count }),
    analysisErrors: count,
  }),
  workers: array(watchWorker),
  lastReport: nullable(watchReport),
});

/** A `leakscope.watch/1` document from untrusted JSON; throws `malformed` with the path of the first problem. */
export function parseWatch(doc: unknown): WatchDocument {
  return parseWith(watchDocument, doc) as WatchDocument;
}
