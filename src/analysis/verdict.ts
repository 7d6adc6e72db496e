// Verdict: a pure function from findings (evidence.ts) to the conclusion of the analysis:
// leak or not, the module, bucket and function to blame, and how sure the evidence makes it.
//
// Rules, in order:
//   - the heap could not be walked                     -> no leak can be located (confidence none)
//   - nothing compared and no trace                    -> cannot tell from one snapshot
//   - no significant bucket growth                     -> no leak (what the trace saw, if anything,
//                                                         is long-lived state without heap growth)
//   - a significant bucket and a traced call path of at
//     least MIN_TRACED_BYTES                           -> leak, confidence high
//   - a significant bucket, growth of the process
//     itself over time (pause / trace window)          -> leak, confidence medium
//   - a significant bucket, a difference from a
//     sibling worker or a saved baseline               -> leak, confidence low
// The module is the leaking frame's ELF object; for nginx, when that is the executable itself
// (or unknown), the module or creator of the largest pool group nothing owns.

import type { AnalyzeConclusion, Confidence } from '../contract/analyze.js';
import { isGrowthOverTime } from '../contract/analyze.js';
import { formatBytes, formatPercent } from '../model/units.js';
import type { Findings } from './evidence.js';
import { moduleName } from './evidence.js';

/** A traced call path explains growth when it left at least this much outstanding (bytes). */
export const MIN_TRACED_BYTES = (1 << 20) / 4;

export function conclude(f: Findings): AnalyzeConclusion {
  if (f.heapError !== null) return noLeak('the glibc heap could not be walked, so no leak can be located');
  const g = f.growth;
  const t = f.trace;
  const bucket = g.anomalous ? { minBytes: g.anomalous.minBytes, maxBytes: g.anomalous.maxBytes } : null;
  const top = t?.top ?? undefined;
  const fn = top?.fn ?? null;
  // Module: the ELF object of the leaking frame; for nginx, the pool attribution when it names one.
  let module: string | null = null;
  if (top && fn && top.module) module = moduleName(top.module);
  if (f.isNginx && f.pools && bucket) {
    const suspect = f.pools.attributedSuspect;
    if (suspect && (!module || module === f.mainModule)) module = suspect.module ?? suspect.creator;
  }
  const traceBytes = t?.outstandingBytes ?? 0;
  const bucketBytes = g.anomalous?.byteGrowth ?? 0;
  const traced = !!top && top.bytes >= MIN_TRACED_BYTES;
  // A leak needs the heap to have grown (or to differ from a healthy baseline). Memory the trace
  // saw outstanding without any growth is long-lived state as likely as a leak: not enough alone.
  // Growth of the process itself during the analysis is stronger evidence than a difference from
  // a sibling or a saved baseline; a call path that explains it makes it high.
  const overTime = g.kind !== null && isGrowthOverTime(g.kind);
  let confidence: Confidence = 'none';
  if (bucket) confidence = traced ? 'high' : overTime ? 'medium' : 'low';
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
  if (f.isNginx && f.pools?.suspectPools) parts.push(`${f.pools.suspectPools} nginx pools are held by no connection or request`);
  return {
    leak, module, bucket, function: fn, confidence,
    summary: `Leak${module ? ` in ${module}` : ''}${fn ? `, allocated by ${fn}` : ''}: ${parts.join('; ')}.` +
      (confidence === 'high' ? '' : ` The evidence is partial: no call path traced during the window explains the growth${overTime ? '' : ', and the growth is a difference from ' + g.source + ', not growth seen during the analysis'} (is the leak active now?).`),
  };
}

export function noLeak(why: string): AnalyzeConclusion {
  return { leak: false, module: null, bucket: null, function: null, confidence: 'none', summary: `No leak found: ${why}.` };
}
