// `leakscope.analyze/1`: the document of `leakscope analyze --json`, which the HTML report
// renders. DESIGN.md: steps [{ id, title, finding, evidence }], conclusion { leak, module,
// bucket, function, confidence, summary }; the documents of the other commands are embedded.

import type { HeapCensus } from '../glibc/census-types.js';
import type { LeakTrace } from '../model/leaks.js';
import type { MemBreakdown } from '../model/mem.js';
import type { PoolAnalysis } from '../nginx/pools.js';
import { encodeHeap, heapDocument } from './heap.js';
import type { HeapDocument } from './heap.js';
import {
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
  schema,
  string,
} from './json-check.js';
import { encodeLeaks, leaksDocument } from './leaks.js';
import type { LeaksDocument } from './leaks.js';
import { encodeMem, memDocument } from './mem.js';
import type { MemDocument } from './mem.js';
import { encodePools, poolsDocument } from './pools.js';
import type { PoolsDocument } from './pools.js';

export const ANALYZE_SCHEMA = 'leakscope.analyze/1';

export type AnalyzeStepId = 'memory' | 'allocator' | 'pools' | 'luajit' | 'buckets' | 'code-path';
export type AnalyzeStepStatus = 'ok' | 'anomaly' | 'skipped' | 'error';
export type Confidence = 'high' | 'medium' | 'low' | 'none';
/** What users script on: `leak` (exit 1 with --fail-on-leak), `no-leak`, `cannot-tell`. */
export type Verdict = 'leak' | 'no-leak' | 'cannot-tell';
export const VERDICTS: readonly Verdict[] = ['leak', 'no-leak', 'cannot-tell'];

/**
 * What a census was compared with: a saved `heap --json` (`baseline-file`), another worker of
 * the same program (`sibling`), the same process before the observation pause (`pause`) or
 * before the trace window (`trace-window`). The last two are growth over time; the first two
 * are differences between processes or moments that differ in load as well.
 */
export type ComparisonKind = 'baseline-file' | 'sibling' | 'pause' | 'trace-window';
export const COMPARISON_KINDS: readonly ComparisonKind[] = ['baseline-file', 'sibling', 'pause', 'trace-window'];

/** Growth of the same process over time (as opposed to a difference from another census). */
export function isGrowthOverTime(kind: ComparisonKind): boolean {
  return kind === 'pause' || kind === 'trace-window';
}

export interface AnalyzeStep {
  id: AnalyzeStepId;
  title: string;
  finding: string;
  evidence: string[];
  status: AnalyzeStepStatus;
}

export interface AnalyzeConclusion {
  /** Always written by this build; absent in documents of earlier builds (leak true -> 'leak'). */
  verdict?: Verdict;
  /** verdict === 'leak' (kept for readers of earlier documents). */
  leak: boolean;
  module: string | null;
  bucket: { minBytes: number; maxBytes: number } | null;
  function: string | null;
  confidence: Confidence;
  summary: string;
  /** A call path whose outstanding bytes grew steadily through the trace: least-squares slope with its 95% interval. */
  growthRate?: {
    function: string | null;
    bytesPerSecond: number;
    lowBytesPerSecond: number;
    highBytesPerSecond: number;
    bytesPerHour: number;
    rSquared: number;
    seconds: number;
  };
  /** For `cannot-tell`: the command that would tell (PID stands for the target's process id). */
  nextCommand?: string;
}

/** Growth of one chunk-size bucket between a baseline census and the current one (current - baseline). */
export interface AnalyzeBucketGrowth {
  minBytes: number;
  maxBytes: number;
  baselineInUseChunks: number;
  currentInUseChunks: number;
  chunkGrowth: number;
  byteGrowth: number;
}

export interface AnalyzeHeapComparison {
  /** What was compared with, in words ("sibling pid 42", "the same process 2 s earlier"). */
  baseline: string;
  /** The same, as a kind (additive in /1: absent in documents of earlier builds). */
  kind?: ComparisonKind;
  buckets: AnalyzeBucketGrowth[];
}

/** The `leakscope analyze --json` document; the HTML report renders exactly this. */
export interface AnalyzeDocument {
  schema: typeof ANALYZE_SCHEMA;
  target: string;
  pid: number;
  /** ISO 8601. */
  generatedAt: string;
  durationSeconds: number;
  steps: AnalyzeStep[];
  conclusion: AnalyzeConclusion;
  mem: MemDocument;
  /** Null when the heap was not walked. */
  heap: HeapDocument | null;
  heapComparison: AnalyzeHeapComparison | null;
  anomalousBucket: null | { minBytes: number; maxBytes: number; chunkGrowth: number; byteGrowth: number };
  /** Null: not nginx, or not analysed. */
  pools: PoolsDocument | null;
  /** Null when no trace ran. */
  leaks: LeaksDocument | null;
}

/** What an analysis produced, in model terms; `encodeAnalyze` turns it into the document. */
export interface AnalyzeResult {
  target: string;
  pid: number;
  generatedAt: Date;
  durationSeconds: number;
  steps: AnalyzeStep[];
  conclusion: AnalyzeConclusion;
  mem: MemBreakdown;
  census: HeapCensus | null;
  comparison: AnalyzeHeapComparison | null;
  anomalous: AnalyzeBucketGrowth | null;
  pools: PoolAnalysis | null;
  trace: LeakTrace | null;
}

export function encodeAnalyze(r: AnalyzeResult): AnalyzeDocument {
  const a = r.anomalous;
  return {
    schema: ANALYZE_SCHEMA,
    target: r.target,
    pid: r.pid,
    generatedAt: r.generatedAt.toISOString(),
    durationSeconds: r.durationSeconds,
    steps: r.steps,
    conclusion: r.conclusion,
    mem: encodeMem(r.mem),
    heap: r.census ? encodeHeap(r.census) : null,
    heapComparison: r.comparison,
    anomalousBucket: a
      ? { minBytes: a.minBytes, maxBytes: a.maxBytes, chunkGrowth: a.chunkGrowth, byteGrowth: a.byteGrowth }
      : null,
    pools: r.pools ? encodePools(r.pools) : null,
    leaks: r.trace ? encodeLeaks(r.trace) : null,
  };
}

const bucketRange = { minBytes: count, maxBytes: count };
export const analyzeDocument = object({
  schema: schema(ANALYZE_SCHEMA),
  target: string,
  pid: count,
  generatedAt: string,
  durationSeconds: amount,
  steps: array(
    object({
      id: literal('memory', 'allocator', 'pools', 'luajit', 'buckets', 'code-path'),
      title: string,
      finding: string,
      evidence: array(string),
      status: literal('ok', 'anomaly', 'skipped', 'error'),
    }),
  ),
  conclusion: object({
    leak: boolean,
    module: nullable(string),
    bucket: nullable(object(bucketRange)),
    function: nullable(string),
    confidence: literal('high', 'medium', 'low', 'none'),
    summary: string,
    verdict: optional(literal(...VERDICTS)),
    growthRate: optional(
      object({
        function: nullable(string),
        bytesPerSecond: integer,
        lowBytesPerSecond: integer,
        highBytesPerSecond: integer,
        bytesPerHour: integer,
        rSquared: ratio,
        seconds: amount,
      }),
    ),
    nextCommand: optional(string),
  }),
  mem: memDocument,
  heap: nullable(heapDocument),
  heapComparison: nullable(
    object({
      baseline: string,
      kind: optional(literal(...COMPARISON_KINDS)),
      buckets: array(
        object({
          ...bucketRange,
          baselineInUseChunks: count,
          currentInUseChunks: count,
          chunkGrowth: integer,
          byteGrowth: integer,
        }),
      ),
    }),
  ),
  anomalousBucket: nullable(object({ ...bucketRange, chunkGrowth: integer, byteGrowth: integer })),
  pools: nullable(poolsDocument),
  leaks: nullable(leaksDocument),
});

/** A `leakscope.analyze/1` document from untrusted JSON; throws `malformed` with the path of the first problem. */
export function parseAnalyze(doc: unknown): AnalyzeDocument {
  return parseWith(analyzeDocument, doc);
}
