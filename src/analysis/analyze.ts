// The guided analysis (steps 1-5): process memory -> glibc allocator -> nginx pools -> anomalous
// chunk-size bucket -> C call path, each step with quantified evidence, ending in a conclusion
// that names the module, the bucket and the function, or says plainly there is no leak.
//
// Timeline of a live analysis (T = trace window):
//   t=0        memory breakdown; census (+ pools for nginx)            "before"
//   t=0..P     observation pause; second census (+ pools)              growth per bucket / pool group
//              (baseline file or sibling workers, when given, are compared too)
//   t=P..P+T   trace aimed by what was found: pool mode when pools hold the growth (nginx),
//              else malloc mode filtered to the anomalous bucket's request sizes
//   t=P+T      final census (+ pools): growth over the whole analysis; pool liveness for the trace
// A core file gets steps 1-4 against the baseline only (no trace, no second census).

import { basename } from 'node:path';
import type { AddressSpace } from '../target/address-space.js';
import { Symbolizer } from '../symbols/index.js';
import type { HeapCensus, CensusComparison } from '../glibc/index.js';
import { compareCensus } from '../glibc/index.js';
import type { PoolAnalysis, NginxPool } from '../nginx/index.js';
import type { LeakTrace, StackSample, MemBreakdown } from '../model/index.js';
import { frameLabel } from '../model/index.js';
import { memoryBreakdown } from './memory-breakdown.js';
import { heapAndPools } from './pool-census.js';
import type { HeapAndPools } from './pool-census.js';
import { sleep, traceLeaks } from '../trace/leak-tracer.js';
import type { TraceProgress } from '../trace/leak-tracer.js';
import { breakdownInputsFor } from './breakdown-inputs.js';
import { memJson } from '../report/mem-table.js';
import { heapJson } from '../report/heap-table.js';
import { poolsJson } from '../report/pools-table.js';
import { leaksJson } from '../report/leaks-table.js';
import type { AnalyzeDocument, AnalyzeStep, AnalyzeConclusion, AnalyzeBucketGrowth, Confidence } from '../report/html-report.js';
import { formatBytes, formatPercent } from '../report/text-format.js';
import { isLeakscopeError } from '../model/errors.js';

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
  /** Allocations younger than this at the end are not leaks (seconds). Default 1. */
  minAgeSeconds?: number;
  onStep?: (text: string) => void;
  onTraceProgress?: (p: TraceProgress) => void;
  signal?: AbortSignal;
}

/** A bucket counts as anomalous above these (chunk count and bytes grown). */
const MIN_CHUNK_GROWTH = 8;
const MIN_BYTE_GROWTH = 1 << 20;
const MIN_SHARE_OF_HEAP = 0.01;
/** Against a sibling worker or a saved baseline. */
const MIN_STATIC_BYTE_GROWTH = 8 << 20;
const MIN_STATIC_SHARE_OF_HEAP = 0.1;
/** Owners whose pools live as long as their owner: not leak suspects. */
const LIFECYCLE_OWNERS = new Set(['cycle', 'old-cycle', 'connection', 'request', 'upstream']);
/** Allocation wrappers skipped when naming the leaking function. */
const ALLOCATOR_FUNCTIONS = /^(malloc|calloc|realloc|reallocarray|free|posix_memalign|aligned_alloc|memalign|valloc|pvalloc|__libc_\w+|_int_\w+|_mid_memalign|ngx_alloc|ngx_calloc|ngx_memalign|ngx_palloc\w*|ngx_pnalloc|ngx_pcalloc|ngx_pmemalign|ngx_create_pool|ngx_array_\w+|ngx_list_\w+|ngx_hash_\w+|CRYPTO_\w*alloc\w*|lj_alloc\w*|operator new.*|_Zn[wa]\w+)$/;

interface Growth { source: string; buckets: AnalyzeBucketGrowth[]; anomalous: AnalyzeBucketGrowth | null }

export async function analyze(space: AddressSpace, opts: AnalyzeOptions): Promise<AnalyzeDocument> {
  const t0 = Date.now();
  const say = opts.onStep ?? (() => {});
  const symbolizer = new Symbolizer(space.modules());
  const isNginx = !!symbolizer.lookup('ngx_cycle');
  const live = space.kind === 'live';
  const steps: AnalyzeStep[] = [];

  // ---- step 1: memory ----
  say('step 1/5: where the memory lives');
  const mem = memoryBreakdown(space, breakdownInputsFor(space, symbolizer));
  const glibcRss = mem.categories.filter((c) => c.name.startsWith('glibc-')).reduce((a, c) => a + c.rssBytes, 0);
  steps.push({
    id: 'memory', title: 'Process memory',
    finding: `glibc's allocator holds ${formatBytes(glibcRss)} of the ${formatBytes(mem.rssBytes)} RSS (${formatPercent(mem.glibcShare)})` + (mem.glibcShare >= 0.5 ? ': the allocator is where to look' : ''),
    evidence: mem.categories.filter((c) => c.rssBytes > 0).sort((a, b) => b.rssBytes - a.rssBytes).slice(0, 6)
      .map((c) => `${c.name}: ${formatBytes(c.rssBytes)} RSS (${formatPercent(mem.rssBytes ? c.rssBytes / mem.rssBytes : 0)})`),
    status: mem.glibcShare >= 0.5 ? 'anomaly' : 'ok',
  });

  // ---- step 2: allocator (census), step 3: pools ----
  say('step 2/5: glibc heap census' + (isNginx ? ' and nginx pools' : ''));
  let before: HeapAndPools;
  try {
    before = heapAndPools(space, { symbolizer, pools: isNginx });
  } catch (e) {
    if (!isLeakscopeError(e)) throw e;
    steps.push({ id: 'allocator', title: 'glibc allocator', finding: `the heap could not be walked: ${e.message}`, evidence: [], status: 'error' });
    return finish(space, t0, steps, noLeak('the glibc heap could not be walked, so no leak can be located'), mem, null, null, null, null, null);
  }

  // Baselines: a file, sibling workers, and the growth over an observation pause.
  const comparisons: Array<{ source: string; cmp: CensusComparison }> = [];
  if (opts.baseline) comparisons.push({ source: `baseline ${opts.baseline.target}`, cmp: compareCensus(opts.baseline, before.census) });
  for (const sib of opts.siblings ?? []) {
    try {
      const sc = heapAndPools(sib, { pools: false }).census;
      comparisons.push({ source: `sibling ${sib.description}`, cmp: compareCensus(sc, before.census) });
    } catch (e) { if (!isLeakscopeError(e)) throw e; }
  }
  let after = before;
  const pause = live ? Math.max(0, opts.pauseSeconds ?? 2) : 0;
  if (pause > 0) {
    say(`observing for ${pause} s`);
    await sleep(pause * 1000, opts.signal);
    after = heapAndPools(space, { symbolizer, pools: isNginx });
    comparisons.push({ source: `the same process ${pause} s earlier`, cmp: compareCensus(before.census, after.census) });
  }
  const growth = pickGrowth(comparisons, after.census);


  // ---- step 5 (trace), aimed by what was found ----
  let trace: LeakTrace | null = null;
  let traceMode: 'pool' | 'malloc' | null = null;
  let final = after;
  if (live && opts.traceSeconds > 0) {
    traceMode = opts.mode && opts.mode !== 'auto' ? opts.mode : chooseMode(isNginx, after.pools, growth.anomalous);
    const range = traceMode === 'malloc' && growth.anomalous ? requestRange(growth.anomalous) : undefined;
    say(`step 5/5: tracing ${traceMode === 'pool' ? 'nginx pool creation' : 'malloc'}${range ? ` for requests of ${formatBytes(range.min)}–${formatBytes(range.max)}` : ''} for ${opts.traceSeconds} s`);
    let endState: HeapAndPools | undefined;
    trace = await traceLeaks(space, {
      mode: traceMode, durationSeconds: opts.traceSeconds, sampleBytes: opts.sampleBytes, minAgeSeconds: opts.minAgeSeconds ?? 1,
      sizeRange: range,
      livePools: traceMode === 'pool' ? () => {
        endState = heapAndPools(space, { symbolizer, pools: true });
        return new Map(endState.pools!.pools.filter(isSuspectPool).map((p) => [p.address, p.bytes]));
      } : undefined,
      onProgress: opts.onTraceProgress, signal: opts.signal,
    });
    final = endState ?? heapAndPools(space, { symbolizer, pools: isNginx });
    const overall = compareCensus(before.census, final.census);
    comparisons.push({ source: `the same process before the ${opts.traceSeconds} s trace window`, cmp: overall });
  }
  const finalGrowth = pickGrowth(comparisons, final.census);
  // Steps 2-4 report the state at the end of the analysis, with growth since its start.
  steps.push(allocatorStep(final.census));
  if (isNginx) steps.push(poolsStep(final.pools, before.pools, finalGrowth.anomalous));
  steps.push(bucketsStep(finalGrowth, final.census));
  steps.push(codePathStep(trace, traceMode, finalGrowth.anomalous, live));

  const conclusion = conclude(space, final, finalGrowth, trace, isNginx);
  const comparison = finalGrowth.anomalous || finalGrowth.buckets.length ? { baseline: finalGrowth.source, buckets: finalGrowth.buckets } : null;
  return finish(space, t0, steps, conclusion, mem, final.census, comparison, finalGrowth.anomalous, final.pools, trace);
}

function finish(space: AddressSpace, t0: number, steps: AnalyzeStep[], conclusion: AnalyzeConclusion, mem: MemBreakdown,
  census: HeapCensus | null, heapComparison: AnalyzeDocument['heapComparison'], anomalous: AnalyzeBucketGrowth | null,
  pools: PoolAnalysis | null, trace: LeakTrace | null): AnalyzeDocument {
  return {
    schema: 'leakscope.analyze/1', target: space.description, pid: space.pid,
    generatedAt: new Date().toISOString(), durationSeconds: (Date.now() - t0) / 1000,
    steps, conclusion,
    mem: memJson(mem), heap: census ? heapJson(census) : null, heapComparison,
    anomalousBucket: anomalous ? { minBytes: anomalous.minBytes, maxBytes: anomalous.maxBytes, chunkGrowth: anomalous.chunkGrowth, byteGrowth: anomalous.byteGrowth } : null,
    pools: pools ? poolsJson(pools) : null,
    leaks: trace ? leaksJson(trace) : null,
  };
}

/** Of all comparisons, the one whose top bucket grew most (in bytes), with that bucket when it is significant. */
function pickGrowth(comparisons: Array<{ source: string; cmp: CensusComparison }>, current: HeapCensus): Growth {
  let best: Growth = { source: '', buckets: [], anomalous: null };
  let bestBytes = -Infinity;
  const heapBytes = current.totals.inUseBytes + current.totals.mmappedBytes;
  for (const { source, cmp } of comparisons) {
    const buckets: AnalyzeBucketGrowth[] = cmp.buckets.map((b) => ({
      minBytes: b.minBytes, maxBytes: b.maxBytes, baselineInUseChunks: b.baselineInUseChunks, currentInUseChunks: b.currentInUseChunks,
      chunkGrowth: b.inUseChunks, byteGrowth: b.inUseBytes,
    }));
    const top = buckets.reduce<AnalyzeBucketGrowth | null>((a, b) => (!a || b.byteGrowth > a.byteGrowth ? b : a), null);
    // Two snapshots of one process over seconds differ little when nothing leaks; two workers (or
    // a saved baseline) differ with their load: those need a much larger difference.
    const temporal = source.startsWith('the same process');
    const minBytes = temporal ? MIN_BYTE_GROWTH : MIN_STATIC_BYTE_GROWTH, minShare = temporal ? MIN_SHARE_OF_HEAP : MIN_STATIC_SHARE_OF_HEAP;
    const significant = !!top && top.chunkGrowth >= MIN_CHUNK_GROWTH && top.byteGrowth >= minBytes && top.byteGrowth >= heapBytes * minShare;
    const score = significant ? top!.byteGrowth : -1;
    if (score > bestBytes || (!best.source && comparisons.length)) {
      if (score > bestBytes) bestBytes = score;
      best = { source, buckets, anomalous: significant ? top : null };
    }
  }
  return best;
}

function isSuspectPool(p: NginxPool): boolean { return !LIFECYCLE_OWNERS.has(p.owner); }

function chooseMode(isNginx: boolean, pools: PoolAnalysis | null, anomalous: AnalyzeBucketGrowth | null): 'pool' | 'malloc' {
  if (!isNginx || !pools) return 'malloc';
  if (!anomalous) return 'pool';
  // Do pools hold the anomalous bucket's chunks?
  const b = pools.buckets.find((x) => x.minBytes === anomalous.minBytes);
  return b && b.poolChunks >= Math.min(anomalous.currentInUseChunks, anomalous.chunkGrowth) * 0.5 ? 'pool' : 'malloc';
}

/** Request sizes whose chunks fall in a bucket: chunk = request + 8 rounded up to 16 (min 32); mmapped chunks +16, page-rounded. */
function requestRange(b: { minBytes: number; maxBytes: number }): { min: number; max: number } {
  return { min: Math.max(0, b.minBytes - 4096 - 16), max: b.maxBytes };
}

function allocatorStep(c: HeapCensus): AnalyzeStep {
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

function poolsStep(p: PoolAnalysis | null, before: PoolAnalysis | null, anomalous: AnalyzeBucketGrowth | null): AnalyzeStep {
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

function bucketsStep(g: Growth, c: HeapCensus): AnalyzeStep {
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

function codePathStep(t: LeakTrace | null, mode: string | null, anomalous: AnalyzeBucketGrowth | null, live: boolean): AnalyzeStep {
  if (!t) return { id: 'code-path', title: 'C call path', finding: live ? 'no trace window was requested' : 'a core file cannot be traced', evidence: [], status: 'skipped' };
  const top = byLeakingFunction(t.stacks)[0];
  const evidence = t.stacks.slice(0, 3).map((s) => `${formatBytes(s.bytes)} in ${Math.round(s.count)}: ${s.frames.slice(0, 6).map(frameLabel).join(' <- ')}`);
  evidence.push(`${mode} mode, ${t.durationSeconds.toFixed(1)} s; ${t.totals.sampledEvents} stacks, ${t.totals.sampledEvents ? formatPercent(t.totals.completeStacks / t.totals.sampledEvents) : '0%'} unwound to main`);
  evidence.push(`cost to the target: ${t.cost.totalProbeHits} probe hits, about ${(t.cost.estimatedCpuSeconds * 1000).toFixed(0)} ms of CPU`);
  void anomalous;
  return {
    id: 'code-path', title: 'C call path',
    finding: top ? `${formatBytes(t.totals.outstandingBytes)} allocated during the window is still outstanding; ${formatPercent(t.totals.outstandingBytes ? top.bytes / t.totals.outstandingBytes : 0)} of it from ${top.fn ?? frameLabel(t.stacks[0]!.frames[0]!)}`
      : 'nothing allocated during the window is still outstanding',
    evidence, status: top ? 'anomaly' : 'ok',
  };
}

/** Outstanding bytes per leaking function (stacks differing above it are summed), heaviest first. */
export function byLeakingFunction(stacks: readonly StackSample[]): Array<{ fn: string | null; module: string | null; bytes: number; count: number }> {
  const m = new Map<string, { fn: string | null; module: string | null; bytes: number; count: number }>();
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

function moduleName(path: string): string {
  return basename(path).replace(/\.so(\.\d+)*$/, '');
}

function conclude(space: AddressSpace, final: HeapAndPools, g: Growth, t: LeakTrace | null, isNginx: boolean): AnalyzeConclusion {
  const bucket = g.anomalous ? { minBytes: g.anomalous.minBytes, maxBytes: g.anomalous.maxBytes } : null;
  const top = t ? byLeakingFunction(t.stacks)[0] : undefined;
  const fn = top?.fn ?? null;
  // Module: the ELF object of the leaking frame; for nginx, the pool attribution when it names one.
  let module: string | null = null;
  if (top && fn && top.module) module = moduleName(top.module);
  if (isNginx && final.pools && bucket) {
    const suspect = final.pools.groups.filter((x) => !LIFECYCLE_OWNERS.has(x.owner) && (x.module || x.creator)).sort((a, b) => b.bytes - a.bytes)[0];
    if (suspect && (!module || module === moduleName(space.modules()[0]?.path ?? ''))) module = suspect.module ?? suspect.creator;
  }
  const traceBytes = t?.totals.outstandingBytes ?? 0;
  const bucketBytes = g.anomalous?.byteGrowth ?? 0;
  const traced = !!top && top.bytes >= MIN_BYTE_GROWTH / 4;
  // A leak needs the heap to have grown (or to differ from a healthy baseline). Memory the trace
  // saw outstanding without any growth is long-lived state as likely as a leak: not enough alone.
  // Growth of the process itself during the analysis is stronger evidence than a difference from
  // a sibling or a saved baseline; a call path that explains it makes it high.
  const temporal = g.source.startsWith('the same process');
  let confidence: Confidence = 'none';
  if (bucket) confidence = traced ? 'high' : temporal ? 'medium' : 'low';
  // Not high on incomplete totals: a trace that lost events (t.complete false) gives lower bounds only.
  if (confidence === 'high' && t?.complete === false) confidence = 'medium';
  const leak = confidence !== 'none';
  if (!leak && !t && !g.buckets.length) {
    return { ...noLeak(''), summary: 'Cannot tell from one snapshot: nothing to compare the heap with and no trace. Give --baseline (a `heap --json` saved earlier) or analyze the live process.' };
  }
  if (!leak) {
    const rest = traced ? `; ${formatBytes(traceBytes)} allocated during the ${t!.durationSeconds.toFixed(0)} s window is still outstanding (${fn ?? 'unknown'}), which without heap growth looks like long-lived state` : t ? ` and nothing allocated during the ${t.durationSeconds.toFixed(0)} s window is still outstanding` : ' (no trace was run)';
    return noLeak(`no chunk-size bucket grew significantly${rest}`);
  }
  const parts: string[] = [];
  if (bucket) parts.push(`${g.anomalous!.chunkGrowth} more chunks of ${formatBytes(bucket.minBytes)}–${formatBytes(bucket.maxBytes)} (+${formatBytes(bucketBytes)}) than ${g.source}`);
  if (top && fn) parts.push(`${formatBytes(top.bytes)} allocated by ${fn}${module ? ` in ${module}` : ''} during the trace is still outstanding (${formatPercent(traceBytes ? top.bytes / traceBytes : 0)} of what the window left behind)`);
  if (isNginx && final.pools) {
    const s = final.pools.groups.filter((x) => !LIFECYCLE_OWNERS.has(x.owner)).reduce((a, x) => a + x.pools, 0);
    if (s) parts.push(`${s} nginx pools are held by no connection or request`);
  }
  return {
    leak, module, bucket, function: fn, confidence,
    summary: `Leak${module ? ` in ${module}` : ''}${fn ? `, allocated by ${fn}` : ''}: ${parts.join('; ')}.` +
      (confidence === 'high' ? '' : ` The evidence is partial: no call path traced during the window explains the growth${temporal ? '' : ', and the growth is a difference from ' + g.source + ', not growth seen during the analysis'} (is the leak active now?).`),
  };
}

function noLeak(why: string): AnalyzeConclusion {
  return { leak: false, module: null, bucket: null, function: null, confidence: 'none', summary: `No leak found: ${why}.` };
}
