// Verdict: a pure function from findings (evidence.ts) to the conclusion of the analysis:
// `leak`, `no-leak` or `cannot-tell`, the module, bucket and function to blame, how sure the
// evidence makes it, and (when the evidence cannot tell) the command that would.
//
// Evidence of a leak (any one is enough; U raises G to high):
//   G  a chunk-size bucket grew significantly: over time (pause / trace window) -> medium, high
//      with a traced call path of at least MIN_TRACED_BYTES; against a sibling or a saved
//      baseline -> low.
//   R  a call path's outstanding bytes grew steadily through the trace window (least-squares slope
//      whose 95% interval lies above 0, growth-rate.ts) and the heap grew with it (at least
//      HEAP_CONFIRMS of the path's growth over the window) -> high, with "at this rate +N/hour".
// `no-leak` needs all of: a live process observed over time, a trace whose detection floor is
// at most NO_LEAK_FLOOR (a malloc trace; pool mode: no pool outlived the window unowned), no
// significant bucket, no steady path, no pool suspect confirmed by two reads, and no RSS growth
// in memory no model covers. Everything else is `cannot-tell`, with what is missing and the
// command that would tell: a core file, one snapshot, no trace (`--duration 0`), a trace too
// coarse for slow leaks, a steady path the heap does not confirm (a cache replacing entries
// older than the window looks the same), unexplained RSS growth, an unwalkable heap.

import type { AnalyzeConclusion, Confidence, Verdict } from '../contract/analyze.js';
import { isGrowthOverTime } from '../contract/analyze.js';
import { formatBytes, formatPercent } from '../model/units.js';
import type { Findings, SteadyPath } from './evidence.js';
import { moduleName, SAMPLES_TO_SEE_GROWTH } from './evidence.js';
import { formatRatePerHour } from './growth-rate.js';
import { luaVerdict } from './lua-evidence.js';

/** A traced call path explains growth when it left at least this much outstanding (bytes). */
export const MIN_TRACED_BYTES = (1 << 20) / 4;
/** A steady path counts when the heap grew by at least this share of the path's growth. */
export const HEAP_CONFIRMS = 0.4;
/** `no-leak` needs a trace able to see steady growth of this many bytes per second (72 MiB/hour). */
export const NO_LEAK_FLOOR = 20 * 1024;

export function conclude(f: Findings): AnalyzeConclusion {
  const lua = luaVerdict(f.lua); // a Lua table that grew during the analysis (lua-evidence.ts)
  if (lua) return lua;
  const g = f.growth;
  const t = f.trace;
  const bucket = g.anomalous ? { minBytes: g.anomalous.minBytes, maxBytes: g.anomalous.maxBytes } : null;
  const overTime = g.kind !== null && isGrowthOverTime(g.kind);
  const traceTop = t?.top ?? null;
  const traced = !!traceTop && traceTop.bytes >= MIN_TRACED_BYTES;
  const unexplained = f.unexplained.map(
    (u) =>
      `RSS grew ${formatBytes(u.growthBytes)} in ${u.category} over ${u.seconds.toFixed(0)} s, memory that no model (glibc, nginx pools, shm, known runtimes) covers (at this rate ${formatRatePerHour((u.growthBytes / u.seconds) * 3600)})`,
  );

  if (f.heapError !== null) {
    return cannotTell(f, [`the glibc heap could not be walked (${f.heapError})`, ...unexplained]);
  }

  // R: steady growth of a call path, judged against the heap's growth over the window.
  const window = t?.durationSeconds ?? 0;
  let steady: SteadyPath | null = null;
  let contradicted: SteadyPath | null = null;
  for (const p of f.steady ?? []) {
    const pathGrowth = p.rate.bytesPerSecond * window;
    const heap = f.traceHeapGrowth ?? 0;
    if (heap >= HEAP_CONFIRMS * pathGrowth) {
      steady = p;
      break;
    }
    contradicted ??= p; // the heap did not grow with it: not confirmed
  }

  // Blame: the steady path first, else the trace's top path.
  const blame = steady ? { fn: steady.fn, module: steady.module, bytes: steady.outstandingBytes } : traceTop;
  const fn = blame?.fn ?? null;
  let module: string | null = blame && fn && blame.module ? moduleName(blame.module) : null;
  if (f.isNginx && f.pools && (bucket || steady)) {
    const suspect = f.pools.attributedSuspect;
    if (suspect && (!module || module === f.mainModule)) module = suspect.module ?? suspect.creator;
  }

  let confidence: Confidence = 'none';
  // U  unreachable growth: at least half of the grown bucket's bytes are chunks nothing points to
  //    any more (lost in two scans, src/glibc/reachability.ts): a leak by definition, not a cache.
  const u = f.unreachable;
  const unreachableGrowth =
    !!u && !!g.anomalous && g.anomalous.byteGrowth > 0 && u.bucketLostBytes >= g.anomalous.byteGrowth / 2;
  if (bucket) confidence = traced || steady || unreachableGrowth ? 'high' : overTime ? 'medium' : 'low';
  else if (steady) confidence = 'high';
  // Not high on incomplete totals: a trace that lost events gives lower bounds only (issue 14),
  // unless the heap's own unreachable chunks carry the verdict.
  if (confidence === 'high' && t?.complete === false && !unreachableGrowth) confidence = 'medium';
  if (confidence !== 'none') {
    const parts: string[] = [];
    if (bucket)
      parts.push(
        `${g.anomalous!.chunkGrowth} more chunks of ${formatBytes(bucket.minBytes)}–${formatBytes(bucket.maxBytes)} (+${formatBytes(g.anomalous!.byteGrowth)}) than ${g.source}`,
      );
    if (steady) {
      const r = steady.rate;
      parts.push(
        `outstanding bytes from ${fn ?? 'an unnamed function'}${module ? ` in ${module}` : ''} grew steadily through the ${window.toFixed(0)} s trace: ${formatBytes(r.bytesPerSecond)}/s (95% interval ${formatBytes(Math.max(0, r.lowBytesPerSecond))}/s to ${formatBytes(r.highBytesPerSecond)}/s, R² ${r.rSquared.toFixed(2)}); the heap grew ${formatBytes(f.traceHeapGrowth ?? 0)} meanwhile; at this rate ${formatRatePerHour(r.bytesPerHour)}`,
      );
    } else if (traceTop && fn) {
      parts.push(
        `${formatBytes(traceTop.bytes)} allocated by ${fn}${module ? ` in ${module}` : ''} during the trace is still outstanding (${formatPercent(t!.outstandingBytes ? traceTop.bytes / t!.outstandingBytes : 0)} of what the window left behind)`,
      );
    }
    if (unreachableGrowth)
      parts.push(
        `${u!.bucketLostChunks} chunks of that size (${formatBytes(u!.bucketLostBytes)}) are unreachable: nothing points to them any more`,
      );
    if (f.isNginx && f.pools?.suspectPools)
      parts.push(`${f.pools.suspectPools} nginx pools are held by no connection or request in two reads`);
    parts.push(...unexplained);
    const partial =
      confidence === 'high'
        ? ''
        : ` The evidence is partial: no call path traced during the window explains the growth${overTime ? '' : ', and the growth is a difference from ' + g.source + ', not growth seen during the analysis'} (is the leak active now?).`;
    return {
      verdict: 'leak',
      leak: true,
      module,
      bucket,
      function: fn,
      confidence,
      ...(steady ? { growthRate: rateOf(steady) } : {}),
      summary: `Leak${module ? ` in ${module}` : ''}${fn ? `, allocated by ${fn}` : ''}: ${parts.join('; ')}.${partial}`,
    };
  }

  // No evidence of a leak. Can the analysis say there is none?
  const missing: string[] = [...unexplained];
  if (f.targetKind === 'core') missing.push('a core file is one snapshot: growth cannot be seen');
  else if (f.observedSeconds <= 0) missing.push('one snapshot: nothing was observed over time');
  if (f.targetKind === 'live' && !t)
    missing.push('no trace ran (--duration 0): a leak slower than the census can resolve over the pause is invisible');
  if (t && f.detectionFloor !== null) {
    if (f.steady === null) missing.push('the trace kept no per-second record of outstanding bytes');
    else if (f.detectionFloor > NO_LEAK_FLOOR)
      missing.push(
        `the trace samples every ${formatBytes(f.asked.sampleBytes ?? 0)} over ${window.toFixed(0)} s: steady growth below ${formatBytes(f.detectionFloor)}/s (${formatRatePerHour(f.detectionFloor * 3600)}) is invisible to it`,
      );
  }
  if (contradicted) {
    const r = contradicted.rate;
    missing.push(
      `outstanding bytes from ${contradicted.fn ?? 'an unnamed function'} grew steadily (${formatBytes(r.bytesPerSecond)}/s, ${formatRatePerHour(r.bytesPerHour)}) but the heap grew only ${formatBytes(f.traceHeapGrowth ?? 0)} over the window: a cache replacing entries older than the window looks the same`,
    );
  }
  if (t && traced && f.detectionFloor === null) {
    missing.push(
      `${formatBytes(traceTop!.bytes)} of pools created during the ${window.toFixed(0)} s window by ${fn ?? 'an unnamed function'} outlived it unowned without heap growth: long-lived state or a slow leak`,
    );
  }
  if (missing.length) return cannotTell(f, missing);

  const rest = t
    ? t.top && f.steady !== null
      ? `; ${formatBytes(t.outstandingBytes)} allocated during the ${window.toFixed(0)} s window is still outstanding, none of it growing steadily (the trace sees steady growth from ${formatBytes(f.detectionFloor ?? 0)}/s)`
      : ` and nothing allocated during the ${window.toFixed(0)} s window outlived it${f.detectionFloor !== null ? ` (the trace sees steady growth from ${formatBytes(f.detectionFloor)}/s)` : ''}`
    : '';
  const conf: Confidence = window >= 20 ? 'high' : window >= 5 ? 'medium' : 'low';
  return {
    verdict: 'no-leak',
    leak: false,
    module: null,
    bucket: null,
    function: null,
    confidence: conf,
    summary: `No leak: no chunk-size bucket grew significantly over ${f.observedSeconds.toFixed(0)} s${rest}, no nginx pool stayed unowned, and no memory outside the models grew.`,
  };
}

function rateOf(p: SteadyPath): NonNullable<AnalyzeConclusion['growthRate']> {
  const r = p.rate;
  return {
    function: p.fn,
    bytesPerSecond: Math.round(r.bytesPerSecond),
    lowBytesPerSecond: Math.round(r.lowBytesPerSecond),
    highBytesPerSecond: Math.round(r.highBytesPerSecond),
    bytesPerHour: Math.round(r.bytesPerHour),
    rSquared: Math.round(r.rSquared * 1000) / 1000,
    seconds: Math.round(r.spanSeconds * 10) / 10,
  };
}

/** The command that would tell: longer observation, a finer trace, or a baseline. */
export function nextCommand(f: Findings): string {
  if (f.targetKind === 'core') {
    return 'leakscope heap --json PID > baseline.json (on the live process, now), then later: leakscope analyze PID --baseline baseline.json --duration 30';
  }
  // Growth outside every model: a trace of malloc cannot see it; the breakdown names the mappings.
  if (f.unexplained.length)
    return 'leakscope mem PID (run it again later: the largest other-anon regions are where the growth is)';
  const duration = Math.max(30, Math.ceil((f.asked.traceSeconds || 0) * 2));
  const sample = Math.min(f.asked.sampleBytes || 16384, 16384);
  // The detection floor (SAMPLES_TO_SEE_GROWTH * sample / duration) must reach NO_LEAK_FLOOR.
  const need = Math.max(duration, Math.ceil((SAMPLES_TO_SEE_GROWTH * sample) / NO_LEAK_FLOOR));
  return `leakscope analyze PID --pause ${Math.max(10, f.asked.pauseSeconds * 2)} --duration ${need} --mode malloc --sample-bytes ${sample}`;
}

function cannotTell(f: Findings, why: string[]): AnalyzeConclusion {
  return {
    verdict: 'cannot-tell',
    leak: false,
    module: null,
    bucket: null,
    function: null,
    confidence: 'none',
    nextCommand: nextCommand(f),
    summary: `Cannot tell yet: ${why.join('; ')}. To tell: ${nextCommand(f)}.`,
  };
}

/** The verdict of a conclusion written by a build before `verdict` existed. */
export function verdictOf(c: Pick<AnalyzeConclusion, 'leak'> & { verdict?: Verdict }): Verdict {
  return c.verdict ?? (c.leak ? 'leak' : 'no-leak');
}
