// Evidence: pure functions from observations (observe.ts) to findings: which comparison shows
// the most significant growth and in which chunk-size bucket, which function the trace blames,
// which pools nothing owns, and the five steps of the report with their quantified evidence.
// No I/O, no clock: the same observations always give the same findings.

import { basename } from 'node:path';
import type { AnalyzeBucketGrowth, AnalyzeStep, ComparisonKind } from '../contract/analyze.js';
import type { CensusComparison, HeapCensus } from '../glibc/census-types.js';
import type { LeakTrace, MemBreakdown, StackSample } from '../model/index.js';
import { frameLabel } from '../model/stacks.js';
import { formatBytes, formatPercent } from '../model/units.js';
import type { NginxPool, PoolAnalysis } from '../nginx/pools.js';
import type { Observations } from './observe.js';
import { formatRatePerHour, growsSteadily } from './growth-rate.js';
import type { GrowthRate } from './growth-rate.js';
import { stableSuspects } from './pool-suspects.js';
import type { StableSuspects } from './pool-suspects.js';
import type { MemCategoryName } from '../model/index.js';
import { luaFinding, luaStep } from './lua-evidence.js';
import { describeShmZone } from '../contract/mem.js';
import { LIFECYCLE_POOL_OWNERS } from '../model/pools.js';
import type { LuaFinding } from './lua-evidence.js';

/** A bucket counts as anomalous with at least this many more chunks. */
export const MIN_CHUNK_GROWTH = 8;

/**
 * Growth a bucket needs, per comparison kind, to count as anomalous: bytes and share of the
 * heap (in-use + mmapped bytes). Two snapshots of one process over seconds differ little when
 * nothing leaks; two workers (or a saved baseline) differ with their load: those need a much
 * larger difference.
 */
export const SIGNIFICANT_GROWTH: Record<ComparisonKind, { minBytes: number; minShareOfHeap: number }> = {
  pause: { minBytes: 1 << 20, minShareOfHeap: 0.01 },
  'trace-window': { minBytes: 1 << 20, minShareOfHeap: 0.01 },
  sibling: { minBytes: 8 << 20, minShareOfHeap: 0.1 },
  'baseline-file': { minBytes: 8 << 20, minShareOfHeap: 0.1 },
};

/** Owners whose pools live as long as their owner: not leak suspects (model/pools.ts). */
export const LIFECYCLE_OWNERS: ReadonlySet<string> = LIFECYCLE_POOL_OWNERS;

/** Allocation wrappers skipped when naming the leaking function. */
const ALLOCATOR_FUNCTIONS =
  /^(malloc|calloc|realloc|reallocarray|free|posix_memalign|aligned_alloc|memalign|valloc|pvalloc|__libc_\w+|_int_\w+|_mid_memalign|ngx_alloc|ngx_calloc|ngx_memalign|ngx_palloc\w*|ngx_pnalloc|ngx_pcalloc|ngx_pmemalign|ngx_create_pool|ngx_array_\w+|ngx_list_\w+|ngx_hash_\w+|CRYPTO_\w*alloc\w*|lj_alloc\w*|operator new.*|_Zn[wa]\w+)$/;

/** The comparison the analysis rests on: what with, every bucket's growth, the anomalous bucket. */
export interface Growth {
  /** null: nothing was compared. */
  kind: ComparisonKind | null;
  /** In words ('' when nothing was compared). */
  source: string;
  buckets: AnalyzeBucketGrowth[];
  anomalous: AnalyzeBucketGrowth | null;
}

/** Outstanding memory of a trace attributed to one leaking function. */
export interface LeakingFunction {
  fn: string | null;
  module: string | null;
  bytes: number;
  count: number;
}

/** What the verdict needs (verdict.ts); every field a plain value. */
export interface Findings {
  /** Why the heap could not be walked, or null. */
  heapError: string | null;
  isNginx: boolean;
  /** Module name of the main executable ('' when unknown), e.g. 'nginx'. */
  mainModule: string;
  growth: Growth;
  /** Null when no trace ran. */
  /** complete false: the trace lost events, its per-path figures are lower bounds (trace/leak-tracer.ts). */
  trace: null | { durationSeconds: number; outstandingBytes: number; top: LeakingFunction | null; complete?: boolean };
  /** Live process or core file; seconds from the first census to the last (0: one snapshot). */
  targetKind: 'live' | 'core';
  observedSeconds: number;
  /** Malloc-mode trace: call paths (by leaking function) whose outstanding bytes grew steadily
   *  through the window, fastest first; null when the trace kept no per-second record. */
  steady: SteadyPath[] | null;
  /** Growth of the heap's in-use bytes (heap + mmapped chunks) over the trace window, null without one. */
  traceHeapGrowth: number | null;
  /** The smallest steady growth the trace could have seen, bytes per second (null without a malloc trace). */
  detectionFloor: number | null;
  /** RSS growth in categories no model covers (other-anon), over observedSeconds. */
  unexplained: UnexplainedGrowth[];
  /** What was asked (for the command that would tell more). */
  asked: Observations['asked'];
  /**
   * Reachability at the end, null when it did not run: lost (definitely + indirectly) chunks in all
   * and in the anomalous bucket.
   */
  unreachable?: null | { lostChunks: number; lostBytes: number; bucketLostChunks: number; bucketLostBytes: number };
  /** Null when no pool analysis ran. */
  pools: null | {
    /** Pools no connection, request or cycle owns, confirmed by a second read (a core: one read). */
    suspectPools: number;
    /** Suspects of the final read that the confirming read did not confirm (not counted). */
    transientPools: number;
    stable: StableSuspects | null;
    /** The largest such group that names a module or creator. */
    attributedSuspect: { module: string | null; creator: string | null } | null;
  };
  /** Lua heaps (lua-evidence.ts); absent or null without a Lua VM. */
  lua?: LuaFinding | null;
}

/** Of all comparisons, the one whose top bucket grew most (in bytes), with that bucket when it is significant. */
export function pickGrowth(
  comparisons: ReadonlyArray<{ kind: ComparisonKind; label: string; cmp: CensusComparison }>,
  current: Pick<HeapCensus, 'totals'>,
): Growth {
  let best: Growth = { kind: null, source: '', buckets: [], anomalous: null };
  let bestBytes = -Infinity;
  const heapBytes = current.totals.inUseBytes + current.totals.mmappedBytes;
  for (const { kind, label, cmp } of comparisons) {
    const buckets: AnalyzeBucketGrowth[] = cmp.buckets.map((b) => ({
      minBytes: b.minBytes,
      maxBytes: b.maxBytes,
      baselineInUseChunks: b.baselineInUseChunks,
      currentInUseChunks: b.currentInUseChunks,
      chunkGrowth: b.inUseChunks,
      byteGrowth: b.inUseBytes,
    }));
    const top = buckets.reduce<AnalyzeBucketGrowth | null>((a, b) => (!a || b.byteGrowth > a.byteGrowth ? b : a), null);
    const need = SIGNIFICANT_GROWTH[kind];
    const significant =
      !!top &&
      top.chunkGrowth >= MIN_CHUNK_GROWTH &&
      top.byteGrowth >= need.minBytes &&
      top.byteGrowth >= heapBytes * need.minShareOfHeap;
    const score = significant ? top!.byteGrowth : -1;
    if (score > bestBytes || best.kind === null) {
      if (score > bestBytes) bestBytes = score;
      best = { kind, source: label, buckets, anomalous: significant ? top : null };
    }
  }
  return best;
}

export function isSuspectPool(p: Pick<NginxPool, 'owner'>): boolean {
  return !LIFECYCLE_OWNERS.has(p.owner);
}

/** Pool mode when nginx pools hold the anomalous bucket's chunks (or nothing grew yet), else malloc. */
export function chooseTraceMode(
  isNginx: boolean,
  pools: Pick<PoolAnalysis, 'buckets'> | null,
  anomalous: AnalyzeBucketGrowth | null,
): 'pool' | 'malloc' {
  if (!isNginx || !pools) return 'malloc';
  if (!anomalous) return 'pool';
  const b = pools.buckets.find((x) => x.minBytes === anomalous.minBytes);
  return b && b.poolChunks >= Math.min(anomalous.currentInUseChunks, anomalous.chunkGrowth) * 0.5 ? 'pool' : 'malloc';
}

/** Request sizes whose chunks fall in a bucket: chunk = request + 8 rounded up to 16 (min 32); mmapped chunks +16, page-rounded. */
export function requestRange(b: { minBytes: number; maxBytes: number }): { min: number; max: number } {
  return { min: Math.max(0, b.minBytes - 4096 - 16), max: b.maxBytes };
}

/** Outstanding bytes per leaking function (stacks differing above it are summed), heaviest first. */
export function byLeakingFunction(stacks: readonly StackSample[]): LeakingFunction[] {
  const m = new Map<string, LeakingFunction>();
  for (const s of stacks) {
    const fn = leakingFunction(s);
    const frame = fn ? s.frames.find((f) => f.function === fn)! : s.frames[0];
    const key = `${fn}\0${frame?.module}`;
    const e = m.get(key) ?? { fn, module: frame ? frame.module : null, bytes: 0, count: 0 };
    e.bytes += s.bytes;
    e.count += s.count;
    m.set(key, e);
  }
  return [...m.values()].sort((a, b) => b.bytes - a.bytes);
}

/** The first frame from the leaf that is not an allocator or an unsymbolized frame next to one. */
export function leakingFunction(s: StackSample): string | null {
  for (const f of s.frames) {
    if (f.function === null) continue;
    // gcc's clones (_mid_memalign.constprop.0, foo.isra.0, foo.part.1, foo.cold) are their function.
    if (ALLOCATOR_FUNCTIONS.test(f.function.replace(/\.(constprop|isra|part|cold|lto_priv)(\.\d+)*/g, ''))) continue;
    return f.function;
  }
  return null;
}

/** 'libfoo.so.1' -> 'libfoo'; '/usr/sbin/nginx' -> 'nginx'. */
export function moduleName(path: string): string {
  return basename(path).replace(/\.so(\.\d+)*$/, '');
}

/** A call path whose outstanding bytes grew steadily through the trace window. */
export interface SteadyPath {
  fn: string | null;
  module: string | null;
  rate: GrowthRate;
  outstandingBytes: number;
}

/** RSS growth of one memory category that no model (glibc, pools, shm, known runtimes) explains. */
export interface UnexplainedGrowth {
  category: MemCategoryName;
  growthBytes: number;
  seconds: number;
  startBytes: number;
  endBytes: number;
}

/** Categories whose memory no model reads: growth there is unexplained. */
export const UNMODELLED_CATEGORIES: readonly MemCategoryName[] = ['other-anon'];
/** Unexplained growth worth a finding: at least this many bytes and this share of RSS. */
export const MIN_UNEXPLAINED_BYTES = 4 << 20;
export const MIN_UNEXPLAINED_SHARE = 0.02;

/** Per leaking function, the sum of its stacks' per-second series; those that grow steadily. */
export function steadyPaths(t: LeakTrace): SteadyPath[] | null {
  const times = t.seriesSeconds;
  if (!times || times.length < 3) return null;
  const m = new Map<string, { fn: string | null; module: string | null; series: number[]; bytes: number }>();
  for (const s of t.stacks) {
    if (!s.series || s.series.length !== times.length) continue;
    const fn = leakingFunction(s);
    const frame = fn ? s.frames.find((f) => f.function === fn)! : s.frames[0];
    const key = `${fn}\0${frame?.module}`;
    let e = m.get(key);
    if (!e)
      m.set(
        key,
        (e = { fn, module: frame ? frame.module : null, series: new Array<number>(times.length).fill(0), bytes: 0 }),
      );
    for (let i = 0; i < times.length; i++) e.series[i]! += s.series[i]!;
    e.bytes += s.bytes;
  }
  const out: SteadyPath[] = [];
  for (const e of m.values()) {
    const d = growsSteadily(e.series.map((bytes, i) => ({ seconds: times[i]!, bytes })));
    if (!d.steady || !d.rate) continue;
    // A sampled path's series is a count of samples (each sampleBytes) over time: its points are
    // not independent, so least squares understates the slope's uncertainty. The interval is at
    // least the Poisson one of the samples the growth is made of: ±1.96 √N samples over the span.
    const r = d.rate;
    if (t.sampleBytes > 0 && r.spanSeconds > 0) {
      const n = Math.max(1, (r.bytesPerSecond * r.spanSeconds) / t.sampleBytes);
      const half = Math.max(
        r.highBytesPerSecond - r.bytesPerSecond,
        (1.96 * Math.sqrt(n) * t.sampleBytes) / r.spanSeconds,
      );
      if (!(r.bytesPerSecond - half > 0)) continue;
      r.lowBytesPerSecond = r.bytesPerSecond - half;
      r.highBytesPerSecond = r.bytesPerSecond + half;
      r.lowBytesPerHour = r.lowBytesPerSecond * 3600;
      r.highBytesPerHour = r.highBytesPerSecond * 3600;
    }
    out.push({ fn: e.fn, module: e.module, rate: r, outstandingBytes: e.bytes });
  }
  return out.sort((a, b) => b.rate.bytesPerSecond - a.rate.bytesPerSecond);
}

/** Samples of growth a steady path needs over the window to be told from sampling noise
 *  (byte-weighted sampling makes the samples of a steady path a Poisson process: with 8 expected,
 *  the per-second series is a line with few steps missing; with 2 it is often flat). */
export const SAMPLES_TO_SEE_GROWTH = 8;

/** The smallest steady growth a sampled trace resolves, bytes per second. */
export function detectionFloor(t: Pick<LeakTrace, 'sampleBytes' | 'durationSeconds'>): number {
  return t.durationSeconds > 0 ? (SAMPLES_TO_SEE_GROWTH * Math.max(t.sampleBytes, 1)) / t.durationSeconds : Infinity;
}

/** Growth of unmodelled categories between two breakdowns. */
export function unexplainedGrowth(start: MemBreakdown, end: MemBreakdown | null, seconds: number): UnexplainedGrowth[] {
  if (!end || !(seconds > 0)) return [];
  const out: UnexplainedGrowth[] = [];
  for (const name of UNMODELLED_CATEGORIES) {
    const a = start.categories.find((c) => c.name === name)?.rssBytes ?? 0;
    const b = end.categories.find((c) => c.name === name)?.rssBytes ?? 0;
    const g = b - a;
    if (g >= MIN_UNEXPLAINED_BYTES && g >= MIN_UNEXPLAINED_SHARE * end.rssBytes)
      out.push({ category: name, growthBytes: g, seconds, startBytes: a, endBytes: b });
  }
  return out;
}

/** What the verdict needs from the observations. */
export function findings(o: Observations): Findings {
  const final = o.final;
  const growth = final
    ? pickGrowth(o.comparisons, final.census)
    : { kind: null, source: '', buckets: [], anomalous: null };
  const pools = final?.pools ?? null;
  let poolFindings: Findings['pools'] = null;
  if (pools) {
    const stable = o.poolsConfirm ? stableSuspects(pools, o.poolsConfirm) : null;
    const attributed = stable?.groups.find((x) => x.module) ?? null;
    poolFindings = {
      suspectPools: stable ? stable.pools.length : 0,
      transientPools: stable ? stable.transient : pools.pools.filter(isSuspectPool).length,
      stable,
      attributedSuspect: attributed ? { module: attributed.module, creator: null } : null,
    };
  }
  const t = o.trace;
  const traceHeapGrowth =
    t && o.traceStart && final
      ? final.census.totals.inUseBytes +
        final.census.totals.mmappedBytes -
        (o.traceStart.totals.inUseBytes + o.traceStart.totals.mmappedBytes)
      : null;
  return {
    targetKind: o.target.kind,
    observedSeconds: o.observedSeconds,
    steady: t && t.mode === 'malloc' ? steadyPaths(t) : null,
    traceHeapGrowth,
    detectionFloor: t && t.mode === 'malloc' ? detectionFloor(t) : null,
    unexplained: unexplainedGrowth(o.mem, o.memEnd, o.observedSeconds),
    asked: o.asked,
    heapError: o.heapError,
    isNginx: o.isNginx,
    mainModule: moduleName(o.target.mainModule),
    growth,
    trace: t
      ? {
          durationSeconds: t.durationSeconds,
          outstandingBytes: t.totals.outstandingBytes,
          top: byLeakingFunction(t.stacks)[0] ?? null,
          ...(t.complete === false ? { complete: false } : {}),
        }
      : null,
    pools: poolFindings,
    lua: luaFinding(o.lua ?? null),
    unreachable: unreachableFindings(o, growth),
  };
}

function unreachableFindings(o: Observations, g: Growth): Findings['unreachable'] {
  const r = o.reach;
  if (!r) return null;
  const b = g.anomalous ? r.buckets.find((x) => x.minBytes === g.anomalous!.minBytes) : undefined;
  return {
    lostChunks: r.lostChunks,
    lostBytes: r.lostBytes,
    bucketLostChunks: b?.lostChunks ?? 0,
    bucketLostBytes: b?.lostBytes ?? 0,
  };
}

/** The report's steps (1-5) from the observations and the growth the analysis rests on. */
export function steps(o: Observations, f: Findings): AnalyzeStep[] {
  const growth = f.growth;
  const out: AnalyzeStep[] = [memoryStep(o.mem, f.unexplained, o.memEnd)];
  if (o.heapError !== null || !o.before || !o.final) {
    out.push({
      id: 'allocator',
      title: 'glibc allocator',
      finding: `the heap could not be walked: ${o.heapError ?? 'no census'}`,
      evidence: [],
      status: 'error',
    });
    return out;
  }
  // Steps 2-4 report the state at the end of the analysis, with growth since its start.
  const steadyHeap = !!f.steady?.length && f.traceHeapGrowth !== null && f.traceHeapGrowth > 0;
  out.push(allocatorStep(o.final.census, { anomalous: !!growth.anomalous || steadyHeap, mem: o.memEnd ?? o.mem }));
  if (o.isNginx) out.push(poolsStep(o.final.pools, o.before.pools, growth.anomalous, f.pools?.stable ?? null));
  const lua = luaFinding(o.lua ?? null);
  if (lua) out.push(luaStep(lua, o.lua!.after));
  const buckets = bucketsStep(growth, o.final.census);
  const u = unreachableFindings(o, growth);
  if (u) {
    buckets.evidence.push(
      growth.anomalous
        ? `unreachable at the end (definitely or indirectly lost, in two scans): ${u.bucketLostChunks} chunks / ${formatBytes(u.bucketLostBytes)} of ${formatBytes(growth.anomalous.minBytes)}–${formatBytes(growth.anomalous.maxBytes)}; ${u.lostChunks} chunks / ${formatBytes(u.lostBytes)} in all`
        : `unreachable at the end (definitely or indirectly lost, in two scans): ${u.lostChunks} chunks / ${formatBytes(u.lostBytes)}`,
    );
  }
  out.push(buckets);
  out.push(codePathStep(o.trace, o.traceMode, o.target.kind === 'live', f.steady, !!growth.anomalous));
  return out;
}

export function memoryStep(
  mem: MemBreakdown,
  unexplained: readonly UnexplainedGrowth[] = [],
  memEnd: MemBreakdown | null = null,
): AnalyzeStep {
  const glibcRss = mem.categories.filter((c) => c.name.startsWith('glibc-')).reduce((a, c) => a + c.rssBytes, 0);
  const grew = unexplained.map(
    (u) =>
      `RSS grew ${formatBytes(u.growthBytes)} in ${u.category} (${formatBytes(u.startBytes)} -> ${formatBytes(u.endBytes)} in ${u.seconds.toFixed(0)} s), which no model covers`,
  );
  const evidence = mem.categories
    .filter((c) => c.rssBytes > 0)
    .sort((a, b) => b.rssBytes - a.rssBytes)
    .slice(0, 6)
    .map(
      (c) =>
        `${c.name}: ${formatBytes(c.rssBytes)} RSS (${formatPercent(mem.rssBytes ? c.rssBytes / mem.rssBytes : 0)})`,
    );
  if (memEnd)
    evidence.push(`RSS ${formatBytes(mem.rssBytes)} at the start, ${formatBytes(memEnd.rssBytes)} at the end`);
  // nginx shm zones (lua_shared_dict, limit_req, caches) with their slab pages, at the end when read twice.
  for (const z of (memEnd ?? mem).shmZones ?? []) evidence.push(`nginx shm zone ${describeShmZone(z)}`);
  return {
    id: 'memory',
    title: 'Process memory',
    finding: grew.length
      ? `${grew.join('; ')}`
      : `glibc's allocator holds ${formatBytes(glibcRss)} of the ${formatBytes(mem.rssBytes)} RSS (${formatPercent(mem.glibcShare)})` +
        (mem.glibcShare >= 0.5 ? ': the allocator is where to look' : ''),
    evidence: [...grew, ...evidence],
    status: grew.length || mem.glibcShare >= 0.5 ? 'anomaly' : 'ok',
  };
}

export function allocatorStep(c: HeapCensus, ctx: { anomalous?: boolean; mem?: MemBreakdown } = {}): AnalyzeStep {
  const t = c.totals;
  // In-use bytes are chunk sizes; a malloc'd chunk is resident only where it was written, so a
  // large allocation never (fully) written counts whole in use but little in RSS.
  const glibcRss = ctx.mem
    ? ctx.mem.categories.filter((x) => x.name.startsWith('glibc-')).reduce((a, x) => a + x.rssBytes, 0)
    : 0;
  const inUse = t.inUseBytes + t.mmappedBytes;
  const untouched =
    ctx.mem && inUse > glibcRss
      ? [
          `in use (${formatBytes(inUse)}) exceeds the allocator's resident memory (${formatBytes(glibcRss)}): pages of allocations that were never written are not resident`,
        ]
      : [];
  const top = c.topSizes
    .slice(0, 3)
    .map((s) => `${s.count} chunks of ${formatBytes(s.size)} (${formatBytes(s.bytes)})`);
  return {
    id: 'allocator',
    title: 'glibc allocator',
    finding: `${formatBytes(t.inUseBytes + t.mmappedBytes)} in use in ${t.inUseChunks + t.mmappedChunks} chunks, ${formatBytes(t.freeBytes)} free (fragmentation ${formatPercent(t.fragmentation)}) across ${t.arenas} arena(s)`,
    evidence: [
      `in use: ${t.inUseChunks} heap chunks (${formatBytes(t.inUseBytes)}) + ${t.mmappedChunks} mmapped (${formatBytes(t.mmappedBytes)})`,
      `free: tcache ${t.tcacheChunks}, fastbins ${t.fastbinChunks}, bins ${t.binChunks}, top ${formatBytes(t.topBytes)}`,
      `largest in-use sizes: ${top.join('; ') || 'none'}`,
      `glibc ${c.glibcVersion}; main_arena from ${c.sources.mainArena ?? 'unknown'}`,
      ...(c.inconsistencyCount
        ? [`${c.inconsistencyCount} inconsistencies while walking a live heap (counted, not fatal)`]
        : []),
      ...untouched,
    ],
    // The allocator is where the anomaly lives when a bucket grew or a call path's heap memory grew steadily.
    status: ctx.anomalous ? 'anomaly' : 'ok',
  };
}

export function poolsStep(
  p: PoolAnalysis | null,
  before: PoolAnalysis | null,
  anomalous: AnalyzeBucketGrowth | null,
  stable: StableSuspects | null = null,
): AnalyzeStep {
  if (!p)
    return {
      id: 'pools',
      title: 'nginx memory pools',
      finding: 'the pool analysis did not run',
      evidence: [],
      status: 'error',
    };
  // Suspects only when a second read confirms them (pool-suspects.ts); none without one.
  const suspectBytes = stable ? stable.bytes : 0;
  const top = [...p.groups].sort((a, b) => b.bytes - a.bytes)[0];
  // Cleanup handlers say which module registered cleanups on a pool, not who created it: a
  // creator is only named from a trace (the code-path step).
  const evidence = p.groups
    .slice(0, 6)
    .map(
      (g) =>
        `${g.owner}${g.module ? ` / ${g.module}` : ''}${g.creator && !LIFECYCLE_OWNERS.has(g.owner) ? ` (cleanups registered by ${g.creator})` : ''}: ${g.pools} pools, ${formatBytes(g.bytes)} (${g.largeAllocs} large allocations, ${formatBytes(g.largeBytes)})`,
    );
  if (stable?.transient)
    evidence.push(
      `${stable.transient} pools unowned in one read only (requests or connections being set up or torn down): not suspects`,
    );
  if (before) {
    const grew = p.totals.pools - before.totals.pools;
    evidence.push(
      `pools: ${before.totals.pools} -> ${p.totals.pools} (${grew >= 0 ? '+' : ''}${grew}) during the analysis`,
    );
  }
  if (anomalous) {
    const b = p.buckets.find((x) => x.minBytes === anomalous.minBytes);
    if (b)
      evidence.push(
        `${b.poolChunks} of the ${b.censusInUseChunks} in-use chunks in ${formatBytes(b.minBytes)}–${formatBytes(b.maxBytes)} are pool blocks or large allocations`,
      );
  }
  return {
    id: 'pools',
    title: 'nginx memory pools',
    finding:
      `${p.totals.pools} pools hold ${formatBytes(p.totals.bytes)}` +
      (top
        ? `; the largest group is ${top.owner}${top.module ? ` (${top.module})` : ''} with ${formatBytes(top.bytes)}`
        : '') +
      (suspectBytes
        ? `; ${formatBytes(suspectBytes)} in ${stable!.pools.length} pools no connection or request owns (in two reads)`
        : ''),
    evidence,
    status: suspectBytes > 0 ? 'anomaly' : 'ok',
  };
}

export function bucketsStep(g: Growth, c: Pick<HeapCensus, 'totals'>): AnalyzeStep {
  if (!g.buckets.length) {
    return {
      id: 'buckets',
      title: 'Chunk sizes',
      finding:
        'no baseline to compare with (give --baseline, use --nginx with sibling workers, or analyze a live process)',
      evidence: [],
      status: 'skipped',
    };
  }
  const grown = [...g.buckets]
    .filter((b) => b.byteGrowth > 0)
    .sort((a, b) => b.byteGrowth - a.byteGrowth)
    .slice(0, 4)
    .map(
      (b) =>
        `${formatBytes(b.minBytes)}–${formatBytes(b.maxBytes)}: ${b.baselineInUseChunks} -> ${b.currentInUseChunks} chunks (${b.chunkGrowth >= 0 ? '+' : ''}${b.chunkGrowth}, ${formatBytes(b.byteGrowth)})`,
    );
  const a = g.anomalous;
  const heapBytes = c.totals.inUseBytes + c.totals.mmappedBytes;
  return {
    id: 'buckets',
    title: 'Chunk sizes',
    finding: a
      ? `${a.chunkGrowth} more chunks of ${formatBytes(a.minBytes)}–${formatBytes(a.maxBytes)} than ${g.source} (+${formatBytes(a.byteGrowth)}, ${formatPercent(heapBytes ? a.byteGrowth / heapBytes : 0)} of the heap)`
      : `no chunk-size bucket grew significantly against ${g.source}`,
    evidence: grown.length ? grown : ['no bucket grew'],
    status: a ? 'anomaly' : 'ok',
  };
}

export function codePathStep(
  t: LeakTrace | null,
  mode: string | null,
  live: boolean,
  steady: SteadyPath[] | null = null,
  heapGrew = false,
): AnalyzeStep {
  if (!t)
    return {
      id: 'code-path',
      title: 'C call path',
      finding: live ? 'no trace window was requested' : 'a core file cannot be traced',
      evidence: [],
      status: 'skipped',
    };
  const top = byLeakingFunction(t.stacks)[0];
  const evidence = t.stacks
    .slice(0, 3)
    .map(
      (s) => `${formatBytes(s.bytes)} in ${Math.round(s.count)}: ${s.frames.slice(0, 6).map(frameLabel).join(' <- ')}`,
    );
  evidence.push(
    `${mode} mode, ${t.durationSeconds.toFixed(1)} s; ${t.totals.sampledEvents} stacks, ${t.totals.sampledEvents ? formatPercent(t.totals.completeStacks / t.totals.sampledEvents) : '0%'} unwound to main`,
  );
  evidence.push(
    `cost to the target: ${t.cost.totalProbeHits} probe hits, about ${(t.cost.estimatedCpuSeconds * 1000).toFixed(0)} ms of CPU`,
  );
  const s = steady?.[0];
  if (s)
    evidence.unshift(
      `${s.fn ?? 'an unnamed function'}: outstanding bytes grew ${formatBytes(s.rate.bytesPerSecond)}/s (95% interval ${formatBytes(Math.max(0, s.rate.lowBytesPerSecond))}/s to ${formatBytes(s.rate.highBytesPerSecond)}/s, R² ${s.rate.rSquared.toFixed(2)}, ${s.rate.samples} per-second points): ${formatRatePerHour(s.rate.bytesPerHour)}`,
    );
  else if (steady) evidence.push("no call path's outstanding bytes grew steadily through the window");
  return {
    id: 'code-path',
    title: 'C call path',
    finding: s
      ? `outstanding bytes from ${s.fn ?? 'an unnamed function'} grow steadily: ${formatRatePerHour(s.rate.bytesPerHour)}`
      : top
        ? `${formatBytes(t.totals.outstandingBytes)} allocated during the window is still outstanding; ${formatPercent(t.totals.outstandingBytes ? top.bytes / t.totals.outstandingBytes : 0)} of it from ${top.fn ?? frameLabel(t.stacks[0]!.frames[0]!)}`
        : 'nothing allocated during the window is still outstanding',
    evidence,
    status: s || (top && heapGrew) ? 'anomaly' : 'ok',
  };
}
