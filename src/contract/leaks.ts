// `leakscope.leaks/1`: the document of `leakscope leaks --json`. DESIGN.md: stacks [{ frames,
// bytes, count }] with frames leaf first, each { function, module, offset }; totals; sampling;
// what the trace cost. Sampled figures are estimates (scaled), so bytes and counts may be fractional.

import type { LeakTrace, PoolSiteEntry, PoolSiteReport, TraceCost } from '../model/leaks.js';
import type { Frame, StackReach } from '../model/stacks.js';
import {
  amount,
  array,
  boolean,
  count,
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

export const LEAKS_SCHEMA = 'leakscope.leaks/1';

export interface LeakStackEntry {
  /**
   * Leaf first; file / line (DWARF), mangled (the raw symbol when `function` is demangled) when known;
   * inlined: true for a function inlined into the next frame (DWARF .debug_info) (additive in /1).
   * Lua frames (allocations made inside a LuaJIT VM) have module "[lua]", function "chunk:line"
   * ("[trace N] chunk:line" for JIT code: the trace's start), file = the chunk name, line.
   */
  frames: Array<
    Pick<Frame, 'function' | 'module' | 'offset'> & Partial<Pick<Frame, 'file' | 'line' | 'mangled' | 'inlined'>>
  >;
  /** Outstanding at the end of the window (estimated when sampled). */
  bytes: number;
  count: number;
  /** Allocated during the window (0 when unknown). */
  allocBytes: number;
  allocCount: number;
  /** With `--reach`: the outstanding memory by reachability at the end (lost = definitely or indirectly lost). */
  reach?: StackReach;
  /** Malloc mode: outstanding bytes at each of the document's seriesSeconds (additive in /1). */
  series?: number[];
}

export interface LeaksDocument {
  schema: typeof LEAKS_SCHEMA;
  target: string;
  pid: number;
  mode: 'pool' | 'malloc' | 'lua';
  durationSeconds: number;
  sampling: { sampleBytes: number; minAgeSeconds: number };
  totals: LeakTrace['totals'];
  cost: TraceCost;
  probes: string[];
  stacks: LeakStackEntry[];
  /** Seconds since the window start of each stack's series values (additive in /1). */
  seriesSeconds?: number[];
  /** False when events were lost: per-path figures are lower bounds (additive in /1; absent = unknown). */
  complete?: boolean;
  lost?: NonNullable<LeakTrace['lost']>;
  /** The target exited this many seconds into the window; the result covers up to then (additive in /1). */
  targetExitedAfterSeconds?: number;
  /** Pool mode: ngx_create_pool call sites probed and left alone (nginx's own pools) (additive in /1). */
  poolSites?: PoolSiteReport;
  notes: string[];
}

export function encodeLeaks(t: LeakTrace): LeaksDocument {
  return {
    schema: LEAKS_SCHEMA,
    target: t.target,
    pid: t.pid,
    mode: t.mode,
    durationSeconds: t.durationSeconds,
    sampling: { sampleBytes: t.sampleBytes, minAgeSeconds: t.minAgeSeconds },
    totals: t.totals,
    cost: t.cost,
    probes: t.probes,
    stacks: t.stacks.map((s) => ({
      frames: s.frames.map((f) => ({
        function: f.function,
        module: f.module,
        offset: f.offset,
        ...(f.file !== undefined ? { file: f.file } : {}),
        ...(f.line !== undefined ? { line: f.line } : {}),
        ...(f.mangled !== undefined ? { mangled: f.mangled } : {}),
        ...(f.inlined ? { inlined: true } : {}),
      })),
      bytes: s.bytes,
      count: s.count,
      allocBytes: s.allocBytes ?? 0,
      allocCount: s.allocCount ?? 0,
      ...(s.reach ? { reach: { ...s.reach } } : {}),
      ...(s.series ? { series: s.series } : {}),
    })),
    ...(t.seriesSeconds ? { seriesSeconds: t.seriesSeconds } : {}),
    ...(t.complete !== undefined ? { complete: t.complete } : {}),
    ...(t.lost ? { lost: { ...t.lost } } : {}),
    ...(t.targetExitedAfterSeconds !== undefined ? { targetExitedAfterSeconds: t.targetExitedAfterSeconds } : {}),
    ...(t.poolSites
      ? {
          poolSites: {
            placement: t.poolSites.placement,
            ...(t.poolSites.reason !== undefined ? { reason: t.poolSites.reason } : {}),
            probed: t.poolSites.probed.map(poolSiteEntry),
            skipped: t.poolSites.skipped.map(poolSiteEntry),
          },
        }
      : {}),
    notes: t.notes,
  };
}

function poolSiteEntry(e: PoolSiteEntry): PoolSiteEntry {
  return {
    module: e.module,
    function: e.function,
    callVaddr: e.callVaddr,
    via: e.via,
    probeVaddr: e.probeVaddr,
    emulated: e.emulated,
    ...(e.owner !== undefined ? { owner: e.owner } : {}),
    ...(e.source !== undefined ? { source: e.source } : {}),
  };
}

const poolSiteEntryShape = object({
  module: string,
  function: string,
  callVaddr: count,
  via: literal('direct', 'plt', 'got'),
  probeVaddr: count,
  emulated: boolean,
  owner: optional(string),
  source: optional(string),
});

export const leaksDocument = object({
  schema: schema(LEAKS_SCHEMA),
  target: string,
  pid: count,
  mode: literal('pool', 'malloc', 'lua'),
  durationSeconds: amount,
  sampling: object({ sampleBytes: count, minAgeSeconds: amount }),
  totals: object({
    outstandingBytes: amount,
    outstandingCount: amount,
    allocatedBytes: amount,
    allocatedCount: amount,
    sampledEvents: count,
    completeStacks: count,
  }),
  cost: object({
    probeHits: record(count),
    totalProbeHits: count,
    estimatedCpuSeconds: amount,
    perHitMicros: amount,
    dutyCycle: ratio,
    lostEvents: count,
  }),
  probes: array(string),
  stacks: array(
    object({
      frames: array(
        object({
          function: nullable(string),
          module: string,
          offset: amount,
          file: optional(string),
          line: optional(count),
          mangled: optional(string),
          inlined: optional(boolean),
        }),
      ),
      bytes: amount,
      count: amount,
      allocBytes: amount,
      allocCount: amount,
      reach: optional(
        object({
          lostBytes: amount,
          lostCount: amount,
          possiblyLostBytes: amount,
          possiblyLostCount: amount,
          reachableBytes: amount,
          reachableCount: amount,
          unknownBytes: amount,
          unknownCount: amount,
        }),
      ),
      series: optional(array(amount)),
    }),
  ),
  seriesSeconds: optional(array(amount)),
  complete: optional(boolean),
  lost: optional(
    object({
      events: count,
      requestedBytes: count,
      outstandingCount: count,
      outstandingBytes: count,
      untracked: count,
    }),
  ),
  targetExitedAfterSeconds: optional(amount),
  poolSites: optional(
    object({
      placement: literal('call-sites', 'body'),
      reason: optional(string),
      probed: array(poolSiteEntryShape),
      skipped: array(poolSiteEntryShape),
    }),
  ),
  notes: array(string),
});

/** A `leakscope.leaks/1` document from untrusted JSON; throws `malformed` with the path of the first problem. */
export function parseLeaks(doc: unknown): LeaksDocument {
  return parseWith(leaksDocument, doc);
}
