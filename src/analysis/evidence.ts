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

/** Owners whose pools live as long as their owner: not leak suspects. */
export const LIFECYCLE_OWNERS: ReadonlySet<string> = new Set(['cycle', 'old-cycle', 'connection', 'request', 'upstream']);

/** Allocation wrappers skipped when naming the leaking function. */
const ALLOCATOR_FUNCTIONS = /^(malloc|calloc|realloc|reallocarray|free|posix_memalign|aligned_alloc|memalign|valloc|pvalloc|__libc_\w+|_int_\w+|_mid_memalign|ngx_alloc|ngx_calloc|ngx_memalign|ngx_palloc\w*|ngx_pnalloc|ngx_pcalloc|ngx_pmemalign|ngx_create_pool|ngx_array_\w+|ngx_list_\w+|ngx_hash_\w+|CRYPTO_\w*alloc\w*|lj_alloc\w*|operator new.*|_Zn[wa]\w+)$/;

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
export interface LeakingFunction { fn: string | null; module: string | null; bytes: number; count: number }

/** What the verdict needs (verdict.ts); every field a plain value. */
export interface Findings {
  /** Why the heap could not be walked, or null. */
  heapError: string | null;
  isNginx: boolean;
  /** Module name of the main executable ('' when unknown), e.g. 'nginx'. */
  mainModule: string;
  growth: Growth;
  /** Null when no trace ran. */
  trace: null | { durationSeconds: number; outstandingBytes: number; top: LeakingFunction | null };
  /** Null when no pool analysis ran. */
  pools: null | {
    /** Pools no connection, request or cycle owns. */
    suspectPools: number;
    /** The largest such group that names a module or creator. */
    attributedSuspect: { module: string | null; creator: string | null } | null;
  };
}

/** Of all comparisons, the one whose top bucket grew most (in bytes), with that bucket when it is significant. */
export function pickGrowth(comparisons: ReadonlyArray<{ kind: ComparisonKind; label: string; cmp: CensusComparison }>,
  current: Pick<HeapCensus, 'totals'>): Growth {
  let best: Growth = { kind: null, source: '', buckets: [], anomalous: null };
  let bestBytes = -Infinity;
  const heapBytes = current.totals.inUseBytes + current.totals.mmappedBytes;
  for (const { kind, label, cmp } of comparisons) {
    const buckets: AnalyzeBucketGrowth[] = cmp.buckets.map((b) => ({
      minBytes: b.minBytes, maxBytes: b.maxBytes, baselineInUseChunks: b.baselineInUseChunks, currentInUseChunks: b.currentInUseChunks,
      chunkGrowth: b.inUseChunks, byteGrowth: b.inUseBytes,
    }));
    const top = buckets.reduce<AnalyzeBucketGrowth | null>((a, b) => (!a || b.byteGrowth > a.byteGrowth ? b : a), null);
    const need = SIGNIFICANT_GROWTH[kind];
    const significant = !!top && top.chunkGrowth >= MIN_CHUNK_GROWTH && top.byteGrowth >= need.minBytes && top.byteGrowth >= heapBytes * need.minShareOfHeap;
    const score = significant ? top!.byteGrowth : -1;
    if (score > bestBytes || best.kind === null) {
      if (score > bestBytes) bestBytes = score;
      best = { kind, source: label, buckets, anomalous: significant ? top : null };
    }
  }
  return best;
}

export function isSuspectPool(p: Pick<NginxPool, 'owner'>): boolean { return !LIFECYCLE_OWNERS.has(p.owner); }

/** Pool mode when nginx pools hold the anomalous bucket's chunks (or nothing grew yet), else malloc. */
export function chooseTraceMode(isNginx: boolean, pools: Pick<PoolAnalysis, 'buckets'> | null, anomalous: AnalyzeBucketGrowth | null): 'pool' | 'malloc' {
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
    e.bytes += s.bytes; e.count += s.count;
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

/** What the verdict needs from the observations. */
export function findings(o: Observations): Findings {
  const final = o.final;
  const growth = final ? pickGrowth(o.comparisons, final.census) : { kind: null, source: '', buckets: [], anomalous: null };
  const pools = final?.pools ?? null;
  let poolFindings: Findings['pools'] = null;
  if (pools) {
    const suspects = pools.groups.filter((x) => !LIFECYCLE_OWNERS.has(x.owner));
    const attributed = suspects.filter((x) => x.module || x.creator).sort((a, b) => b.bytes - a.bytes)[0];
    poolFindings = {
      suspectPools: suspects.reduce((a, x) => a + x.pools, 0),
      attributedSuspect: attributed ? { module: attributed.module, creator: attributed.creator } : null,
    };
  }
  const t = o.trace;
  return {
    heapError: o.heapError,
    isNginx: o.isNginx,
    mainModule: moduleName(o.target.mainModule),
    growth,
    trace: t ? { durationSeconds: t.durationSeconds, outstandingBytes: t.totals.outstandingBytes, top: byLeakingFunction(t.stacks)[0] ?? null } : null,
    pools: poolFindings,
  };
}

/** The report's steps (1-5) from the observations and the growth the analysis rests on. */
export function steps(o: Observations, growth: Growth): AnalyzeStep[] {
  const out: AnalyzeStep[] = [memoryStep(o.mem)];
  if (o.heapError !== null || !o.before || !o.final) {
    out.push({ id: 'allocator', title: 'glibc allocator', finding: `the heap could not be walked: ${o.heapError ?? 'no census'}`, evidence: [], status: 'error' });
    return out;
  }
  // Steps 2-4 report the state at the end of the analysis, with growth since its start.
  out.push(allocatorStep(o.final.census));
  if (o.isNginx) out.push(poolsStep(o.final.pools, o.before.pools, growth.anomalous));
  out.push(bucketsStep(growth, o.final.census));
  out.push(codePathStep(o.trace, o.traceMode, o.target.kind === 'live'));
  return out;
}

export function memoryStep(mem: MemBreakdown): AnalyzeStep {
  const glibcRss = mem.categories.filter((c) => c.name.startsWith('glibc-')).reduce((a, c) => a + c.rssBytes, 0);
  return {
    id: 'memory', title: 'Process memory',
    finding: `glibc's allocator holds ${formatBytes(glibcRss)} of the ${formatBytes(mem.rssBytes)} RSS (${formatPercent(mem.glibcShare)})` + (mem.glibcShare >= 0.5 ? ': the allocator is where to look' : ''),
    evidence: mem.categories.filter((c) => c.rssBytes > 0).sort((a, b) => b.rssBytes - a.rssBytes).slice(0, 6)
      .map((c) => `${c.name}: ${formatBytes(c.rssBytes)} RSS (${formatPercent(mem.rssBytes ? c.rssBytes / mem.rssBytes : 0)})`),
    status: mem.glibcShare >= 0.5 ? 'anomaly' : 'ok',
  };
}

export function allocatorStep(c: HeapCensus): AnalyzeStep {
  const t = c.totals;
  const top = c.topSizes.slice(0, 3).map((s) => `${s.count} chunks of ${formatBytes(s.size)} (${formatBytes(s.bytes)})`);
  return {
    id: 'allocator', title: 'glibc allocator',
    finding: `${formatBytes(t.inUseBytes + t.mmappedBytes)} in use in ${t.inUseChunks + t.mmappedChunks} chunks, ${formatBytes(t.freeBytes)} free (fragmentation ${formatPercent(t.fragmentation)}) across ${t.arenas} arena(s)`,
    evidence: [
      `in use: ${t.inUseChunks} heap chunks (${formatBytes(t.inUseBytes)}) + ${t.mmappedChunks} mmapped (${formatBytes(t.mmappedBytes)})`,
      `free: tcache ${t.tcacheChunks}, fastbins ${t.fastbinChunks}, bins ${t.binChunks}, top ${formatBytes(t.topBytes)}`,
      `largest in-use sizes: ${top.join('; ') || 'none'}`,
      `glibc ${c.glibcVersion}; main_arena from ${c.sources.mainArena ?? 'unknown'}`,
      ...(c.inconsistencyCount ? [`${c.inconsistencyCount} inconsistencies while walking a live heap (counted, not fatal)`] : []),
    ],
    status: 'ok',
  };
}

export function poolsStep(p: PoolAnalysis | null, before: PoolAnalysis | null, anomalous: AnalyzeBucketGrowth | null): AnalyzeStep {
  if (!p) return { id: 'pools', title: 'nginx memory pools', finding: 'the pool analysis did not run', evidence: [], status: 'error' };
  const suspects = p.groups.filter((g) => !LIFECYCLE_OWNERS.has(g.owner));
  const suspectBytes = suspects.reduce((a, g) => a + g.bytes, 0);
  const top = [...p.groups].sort((a, b) => b.bytes - a.bytes)[0];
  const evidence = p.groups.slice(0, 6).map((g) => `${g.owner}${g.module ? ` / ${g.module}` : ''}${g.creator ? ` (created by ${g.creator})` : ''}: ${g.pools} pools, ${formatBytes(g.bytes)} (${g.largeAllocs} large allocations, ${formatBytes(g.largeBytes)})`);
  if (before) {
    const grew = p.totals.pools - before.totals.pools;
    evidence.push(`pools: ${before.totals.pools} -> ${p.totals.pools} (${grew >= 0 ? '+' : ''}${grew}) during the analysis`);
  }
  if (anomalous) {
    const b = p.buckets.find((x) => x.minBytes === anomalous.minBytes);
    if (b) evidence.push(`${b.poolChunks} of the ${b.censusInUseChunks} in-use chunks in ${formatBytes(b.minBytes)}–${formatBytes(b.maxBytes)} are pool blocks or large allocations`);
  }
  return {
    id: 'pools', title: 'nginx memory pools',
    finding: `${p.totals.pools} pools hold ${formatBytes(p.totals.bytes)}` + (top ? `; the largest group is ${top.owner}${top.module ? ` (${top.module})` : ''} with ${formatBytes(top.bytes)}` : '') +
      (suspectBytes ? `; ${formatBytes(suspectBytes)} in pools no connection or request owns` : ''),
    evidence, status: suspectBytes > 0 ? 'anomaly' : 'ok',
  };
}

export function bucketsStep(g: Growth, c: Pick<HeapCensus, 'totals'>): AnalyzeStep {
  if (!g.buckets.length) {
    return { id: 'buckets', title: 'Chunk sizes', finding: 'no baseline to compare with (give --baseline, use --nginx with sibling workers, or analyze a live process)', evidence: [], status: 'skipped' };
  }
  const grown = [...g.buckets].filter((b) => b.byteGrowth > 0).sort((a, b) => b.byteGrowth - a.byteGrowth).slice(0, 4)
    .map((b) => `${formatBytes(b.minBytes)}–${formatBytes(b.maxBytes)}: ${b.baselineInUseChunks} -> ${b.currentInUseChunks} chunks (${b.chunkGrowth >= 0 ? '+' : ''}${b.chunkGrowth}, ${formatBytes(b.byteGrowth)})`);
  const a = g.anomalous;
  const heapBytes = c.totals.inUseBytes + c.totals.mmappedBytes;
  return {
    id: 'buckets', title: 'Chunk sizes',
    finding: a ? `${a.chunkGrowth} more chunks of ${formatBytes(a.minBytes)}–${formatBytes(a.maxBytes)} than ${g.source} (+${formatBytes(a.byteGrowth)}, ${formatPercent(heapBytes ? a.byteGrowth / heapBytes : 0)} of the heap)`
      : `no chunk-size bucket grew significantly against ${g.source}`,
    evidence: grown.length ? grown : ['no bucket grew'],
    status: a ? 'anomaly' : 'ok',
  };
}

export function codePathStep(t: LeakTrace | null, mode: string | null, live: boolean): AnalyzeStep {
  if (!t) return { id: 'code-path', title: 'C call path', finding: live ? 'no trace window was requested' : 'a core file cannot be traced', evidence: [], status: 'skipped' };
  const top = byLeakingFunction(t.stacks)[0];
  const evidence = t.stacks.slice(0, 3).map((s) => `${formatBytes(s.bytes)} in ${Math.round(s.count)}: ${s.frames.slice(0, 6).map(frameLabel).join(' <- ')}`);
  evidence.push(`${mode} mode, ${t.durationSeconds.toFixed(1)} s; ${t.totals.sampledEvents} stacks, ${t.totals.sampledEvents ? formatPercent(t.totals.completeStacks / t.totals.sampledEvents) : '0%'} unwound to main`);
  evidence.push(`cost to the target: ${t.cost.totalProbeHits} probe hits, about ${(t.cost.estimatedCpuSeconds * 1000).toFixed(0)} ms of CPU`);
  return {
    id: 'code-path', title: 'C call path',
    finding: top ? `${formatBytes(t.totals.outstandingBytes)} allocated during the window is still outstanding; ${formatPercent(t.totals.outstandingBytes ? top.bytes / t.totals.outstandingBytes : 0)} of it from ${top.fn ?? frameLabel(t.stacks[0]!.frames[0]!)}`
      : 'nothing allocated during the window is still outstanding',
    evidence, status: top ? 'anomaly' : 'ok',
  };
}
