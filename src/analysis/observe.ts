// Observing for the guided analysis: the only part of `analyze` that reads the target or waits.
// It records what it saw (memory breakdown, censuses and pool analyses, comparisons, the trace)
// as an `Observations` value; evidence.ts and verdict.ts turn that into findings and a
// conclusion without touching the target.
//
// Timeline of a live analysis (T = trace window):
//   t=0        memory breakdown; census (+ pools for nginx)            "before"
//   t=0..P     observation pause; second census (+ pools)              growth per bucket / pool group
//              (baseline file or sibling workers, when given, are compared too)
//   t=P..P+T   trace aimed by what was found: pool mode when pools hold the growth (nginx),
//              else malloc mode filtered to the anomalous bucket's request sizes
//   t=P+T      final census (+ pools): growth over the whole analysis; pool liveness for the trace
// A core file gets steps 1-4 against the baseline only (no trace, no second census).

import type { ComparisonKind } from '../contract/analyze.js';
import type { CensusComparison, HeapCensus } from '../glibc/index.js';
import { compareCensus, reachability } from '../glibc/index.js';
import type { PreviousScan, Reachability } from '../glibc/index.js';
import type { LeakTrace, MemBreakdown } from '../model/index.js';
import type { PoolAnalysis } from '../nginx/index.js';
import { stableSuspects } from './pool-suspects.js';
import { isLeakscopeError } from '../model/errors.js';
import { memoryCheckpoint, releaseMemory } from '../model/release-memory.js';
import { Symbolizer } from '../symbols/index.js';
import type { AddressSpace } from '../target/address-space.js';
import { sleep, traceLeaks } from '../trace/leak-tracer.js';
import type { TraceProgress } from '../trace/leak-tracer.js';
import { breakdownInputsFor } from './breakdown-inputs.js';
import { chooseTraceMode, pickGrowth, requestRange } from './evidence.js';
import { memoryBreakdown } from './memory-breakdown.js';
import { heapAndPools } from './pool-census.js';
import type { HeapAndPools } from './pool-census.js';
import { formatBytes } from '../model/units.js';
import { luaHeaps, luajitLibrary } from '../luajit/index.js';
import type { LuaObservation } from './lua-evidence.js';
import { startLuaGrowthTrace } from '../trace/lua-growth.js';
import type { LuaGrowthTrace } from '../trace/lua-growth.js';

/** Tables compared between the two Lua snapshots. */
const LUA_TABLES = 1000;

export interface AnalyzeOptions {
  /** Trace window, seconds (0: no trace). */
  traceSeconds: number;
  /** Observation pause between the first two censuses, seconds. */
  pauseSeconds?: number;
  /** A saved census to compare against (`heap --json`), e.g. from before the growth. */
  baseline?: HeapCensus;
  /** Healthy processes of the same program (other nginx workers): their census is a baseline. */
  siblings?: AddressSpace[];
  /** Trace mode; 'auto' decides from the evidence. */
  mode?: 'auto' | 'pool' | 'malloc';
  sampleBytes?: number;
  /** Pool mode: probe ngx_create_pool itself (every pool) instead of its call sites minus nginx's own. */
  allPoolSites?: boolean;
  /** Allocations younger than this at the end are not leaks (seconds). Default 1. */
  minAgeSeconds?: number;
  /** Scan the heap's reachability at the end (default true): unreachable chunks in the growing bucket are strong evidence. */
  reach?: boolean;
  /** Share of each second the trace's sampling probes are attached (0 < duty <= 1; default 1). */
  dutyCycle?: number;
  onStep?: (text: string) => void;
  onTraceProgress?: (p: TraceProgress) => void;
  signal?: AbortSignal;
}

/** One census compared with another: what with (kind + words) and the difference. */
export interface ObservedComparison {
  kind: ComparisonKind;
  /** In words, for findings: "sibling pid 42 ...", "the same process 2 s earlier". */
  label: string;
  cmp: CensusComparison;
}

/** Everything the analysis saw of the target, in the order it saw it. */
export interface Observations {
  target: {
    description: string;
    pid: number;
    kind: 'live' | 'core';
    /** Path of the main executable (the first module), '' when unknown. */
    mainModule: string;
  };
  isNginx: boolean;
  /** Wall-clock start, ms since the epoch. */
  startedAt: number;
  mem: MemBreakdown;
  /** Why the heap could not be walked, or null when it was. */
  heapError: string | null;
  /** The census (+ pools) at the start of the analysis; null when the heap could not be walked. */
  before: HeapAndPools | null;
  /** The census (+ pools) at the end of the analysis (== before without a pause or trace). */
  final: HeapAndPools | null;
  /** Every comparison made, in the order made: baseline file, siblings, pause, trace window. */
  comparisons: ObservedComparison[];
  /** The trace, when one ran, and its mode. */
  trace: LeakTrace | null;
  traceMode: 'pool' | 'malloc' | null;
  /** The census right before the trace window (after the pause), null without a trace. */
  traceStart: HeapCensus | null;
  /** Seconds from the first census to the final one (0: one snapshot). */
  observedSeconds: number;
  /** The memory breakdown again at the end (live, after a pause or trace), for growth no model covers. */
  memEnd: MemBreakdown | null;
  /** The pool analysis that confirms suspects in `final.pools` (a second read), 'frozen' for a core file. */
  poolsConfirm: PoolAnalysis | 'frozen' | null;
  /** What was asked, for the command that would tell more. */
  asked: { pauseSeconds: number; traceSeconds: number; sampleBytes: number | null; baseline: boolean };
  /** Lua heaps (OpenResty / LuaJIT) at the start and after the pause, when a Lua VM was found. */
  lua?: LuaObservation | null;
  /**
   * Reachability at the end (live: lost in two scans): definitely + indirectly lost chunks in all
   * and per chunk-size bucket; absent when it did not run.
   */
  reach?: ObservedReach | null;
}

export interface ObservedReach {
  lostChunks: number;
  lostBytes: number;
  buckets: Array<{ minBytes: number; maxBytes: number; lostChunks: number; lostBytes: number }>;
}

export async function observe(space: AddressSpace, opts: AnalyzeOptions): Promise<Observations> {
  const say = opts.onStep ?? (() => {});
  const symbolizer = new Symbolizer(space.modules());
  const isNginx = !!symbolizer.lookup('ngx_cycle');
  const live = space.kind === 'live';
  const obs: Observations = {
    target: {
      description: space.description,
      pid: space.pid,
      kind: live ? 'live' : 'core',
      mainModule: space.modules()[0]?.path ?? '',
    },
    isNginx,
    startedAt: Date.now(),
    mem: undefined as unknown as MemBreakdown,
    heapError: null,
    before: null,
    final: null,
    comparisons: [],
    trace: null,
    traceMode: null,
    traceStart: null,
    observedSeconds: 0,
    memEnd: null,
    poolsConfirm: live ? null : 'frozen',
    asked: {
      pauseSeconds: live ? Math.max(0, opts.pauseSeconds ?? 2) : 0,
      traceSeconds: live ? opts.traceSeconds : 0,
      sampleBytes: opts.sampleBytes ?? null,
      baseline: !!opts.baseline,
    },
  };

  // ---- step 1: memory ----
  say('step 1/5: where the memory lives');
  obs.mem = memoryBreakdown(space, breakdownInputsFor(space, symbolizer));
  memoryCheckpoint('observe: after breakdown');

  // ---- step 2: allocator (census), step 3: pools ----
  say('step 2/5: glibc heap census' + (isNginx ? ' and nginx pools' : ''));
  let before: HeapAndPools;
  let firstCensusAt = 0;
  try {
    before = heapAndPools(space, { symbolizer, pools: isNginx });
    firstCensusAt = performance.now();
  } catch (e) {
    if (!isLeakscopeError(e)) throw e;
    obs.heapError = e.message;
    return obs;
  }
  obs.before = before;
  memoryCheckpoint('observe: after first heapAndPools');
  const lua = luajitLibrary(space) ? luaHeaps(space, { symbolizer, tables: LUA_TABLES }) : null;

  // Baselines: a file, sibling workers, and the growth over an observation pause.
  const comparisons = obs.comparisons;
  if (opts.baseline)
    comparisons.push({
      kind: 'baseline-file',
      label: `baseline ${opts.baseline.target}`,
      cmp: compareCensus(opts.baseline, before.census),
    });
  for (const sib of opts.siblings ?? []) {
    try {
      const sc = heapAndPools(sib, { pools: false }).census;
      comparisons.push({ kind: 'sibling', label: `sibling ${sib.description}`, cmp: compareCensus(sc, before.census) });
    } catch (e) {
      if (!isLeakscopeError(e)) throw e;
    }
  }
  let after = before;
  const pause = live ? Math.max(0, opts.pauseSeconds ?? 2) : 0;
  // The first reachability scan runs during the pause; the one at the end confirms it (stability).
  let firstReach: PreviousScan | undefined;
  // Lua heap growth by call path during the pause: mmap / mremap from libluajit (rare, near-zero cost).
  let luaGrowth: { stop: () => LuaGrowthTrace } | undefined;
  let luaGrowthError: string | undefined;
  if (pause > 0 && lua?.vms.length) {
    try {
      luaGrowth = startLuaGrowthTrace(space, symbolizer);
    } catch (e) {
      // Optional evidence: no eBPF (not root, old kernel) must not stop the analysis.
      luaGrowthError = e instanceof Error ? e.message : String(e);
    }
  }
  // The growth probes are detached on every way out (stop() closes the session).
  const stopLuaGrowth = (): LuaGrowthTrace | null => {
    const g = luaGrowth;
    luaGrowth = undefined;
    return g ? g.stop() : null;
  };
  try {
    if (pause > 0) {
      say(`observing for ${pause} s`);
      const pauseStart = Date.now();
      if (opts.reach !== false) {
        try {
          firstReach = await lostChunksOnly(space, symbolizer);
        } catch (e) {
          if (!isLeakscopeError(e)) throw e;
        }
      }
      memoryCheckpoint('observe: after first reach');
      await sleep(Math.max(0, pause * 1000 - (Date.now() - pauseStart)), opts.signal);
      releaseMemory(); // the first scan's tables are garbage: freed before the census and pool analysis allocate theirs
      after = heapAndPools(space, { symbolizer, pools: isNginx });
      memoryCheckpoint('observe: after second heapAndPools');
      comparisons.push({
        kind: 'pause',
        label: `the same process ${pause} s earlier`,
        cmp: compareCensus(before.census, after.census),
      });
    }
    if (lua?.vms.length) {
      say('LuaJIT heap: objects by type, tables by path');
      obs.lua =
        pause > 0
          ? {
              before: lua,
              after: luaHeaps(space, { symbolizer, tables: LUA_TABLES }),
              label: `the same process ${pause} s earlier`,
              seconds: pause,
              growth: stopLuaGrowth(),
              ...(luaGrowthError ? { growthError: luaGrowthError } : {}),
            }
          : { before: lua, after: lua, label: 'one snapshot', seconds: 0 };
    }
  } finally {
    stopLuaGrowth();
  }
  obs.final = after;
  if (isNginx && pause > 0) obs.poolsConfirm = before.pools;

  // ---- step 5 (trace), aimed by what was found ----
  if (live && opts.traceSeconds > 0) {
    const growth = pickGrowth(comparisons, after.census);
    const traceMode =
      opts.mode && opts.mode !== 'auto' ? opts.mode : chooseTraceMode(isNginx, after.pools, growth.anomalous);
    const range = traceMode === 'malloc' && growth.anomalous ? requestRange(growth.anomalous) : undefined;
    say(
      `step 5/5: tracing ${traceMode === 'pool' ? 'nginx pool creation' : 'malloc'}${range ? ` for requests of ${formatBytes(range.min)}–${formatBytes(range.max)}` : ''} for ${opts.traceSeconds} s`,
    );
    let endState: HeapAndPools | undefined;
    obs.traceMode = traceMode;
    obs.traceStart = after.census;
    obs.trace = await traceLeaks(space, {
      mode: traceMode,
      durationSeconds: opts.traceSeconds,
      sampleBytes: opts.sampleBytes,
      allPoolSites: opts.allPoolSites,
      minAgeSeconds: opts.minAgeSeconds ?? 1,
      sizeRange: range,
      livePools:
        traceMode === 'pool'
          ? () => {
              // Two reads: a pool counts as alive and unowned only when both agree (pool-suspects.ts).
              const first = heapAndPools(space, { symbolizer, pools: true }).pools!;
              endState = heapAndPools(space, { symbolizer, pools: true });
              obs.poolsConfirm = first;
              return new Map(stableSuspects(endState.pools!, first).pools.map((p) => [p.address, p.bytes]));
            }
          : undefined,
      onProgress: opts.onTraceProgress,
      signal: opts.signal,
      dutyCycle: opts.dutyCycle,
    });
    if (!endState && isNginx) obs.poolsConfirm = obs.final.pools;
    obs.final = endState ?? heapAndPools(space, { symbolizer, pools: isNginx });
    comparisons.push({
      kind: 'trace-window',
      label: `the same process before the ${opts.traceSeconds} s trace window`,
      cmp: compareCensus(before.census, obs.final.census),
    });
  }
  if (opts.reach !== false) {
    say('reachability: which in-use chunks nothing points to any more');
    try {
      const r = await reachabilityOnly(space, symbolizer, firstReach);
      releaseMemory(); // the scan's tables are garbage: freed before the breakdown and the report
      memoryCheckpoint('observe: after second reach');
      obs.reach = {
        lostChunks: r.definitelyLost.chunks + r.indirectlyLost.chunks,
        lostBytes: r.definitelyLost.bytes + r.indirectlyLost.bytes,
        buckets: r.buckets.map((b) => ({
          minBytes: b.minBytes,
          maxBytes: b.maxBytes,
          lostChunks: b.definitelyLost.chunks + b.indirectlyLost.chunks,
          lostBytes: b.definitelyLost.bytes + b.indirectlyLost.bytes,
        })),
      };
    } catch (e) {
      if (!isLeakscopeError(e)) throw e;
      obs.reach = null;
    }
  }
  if (live && obs.final !== before) {
    obs.observedSeconds = (performance.now() - firstCensusAt) / 1000;
    // Residency is read after the heap reads; live-process.ts does not count zero-page mappings.
    obs.memEnd = memoryBreakdown(space, breakdownInputsFor(space, symbolizer));
  }
  return obs;
}

// The scans' results are taken apart in functions of their own: a temporary held across an
// `await` in observe's frame would keep the whole scan (its chunk table, ~60 MiB on 4.4M chunks)
// alive through the pause and the next scan.

/** A first reachability scan, keeping only its lost chunks (to confirm against later). */
async function lostChunksOnly(space: AddressSpace, symbolizer: Symbolizer): Promise<PreviousScan> {
  return (await reachability(space, { symbolizer, scans: 1 })).lastScan;
}

/** The reachability summary (the scan's tables are dropped). */
async function reachabilityOnly(
  space: AddressSpace,
  symbolizer: Symbolizer,
  previous: PreviousScan | undefined,
): Promise<Reachability> {
  return (await reachability(space, { symbolizer, ...(previous ? { scans: 1, previous } : {}) })).reachability;
}
