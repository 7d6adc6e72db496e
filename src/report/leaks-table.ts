// `leakscope leaks`: terminal summary and versioned JSON of a LeakTrace.
import type { LeakTrace } from '../model/leaks.js';
import { frameLabel } from '../model/stacks.js';
import { formatBytes, safeText, textTable } from './text-format.js';

/** Frames worth showing in a one-line path: skip the allocator's own and libc start-up frames. */
function shortPath(frames: LeakTrace['stacks'][number]['frames'], max = 6): string {
  const names = frames.map(frameLabel);
  const shown = names.slice(0, max);
  return safeText(shown.join(' <- ') + (names.length > max ? ` <- ... (${names.length - max} more)` : ''));
}

export function renderLeaksTable(t: LeakTrace, opts: { top?: number } = {}): string {
  const top = opts.top ?? 10;
  const out: string[] = [];
  out.push(`${safeText(t.target)}: ${t.mode} trace for ${t.durationSeconds.toFixed(1)} s` +
    (t.sampleBytes ? `, sampling every ${formatBytes(t.sampleBytes)} (estimates scaled)` : ', every allocation traced') +
    (t.minAgeSeconds ? `, ignoring memory younger than ${t.minAgeSeconds} s` : ''));
  if (t.complete === false) {
    out.push(`INCOMPLETE: ${t.lost?.events ?? 0} events lost (${formatBytes(t.lost?.requestedBytes ?? 0)} requested)` +
      (t.lost?.untracked ? `, ${t.lost.untracked} allocations untracked: totals are lower bounds` : '') + '; per-path figures are lower bounds');
  }
  if (t.targetExitedAfterSeconds !== undefined) out.push(`target exited after ${t.targetExitedAfterSeconds.toFixed(1)} s; results cover that`);
  out.push(`outstanding at the end: ${formatBytes(t.totals.outstandingBytes)} in ${t.totals.outstandingCount} ${t.mode === 'pool' ? 'pools' : 'allocations'}` +
    ` (allocated during the window: ${t.mode === 'pool' ? `${t.totals.allocatedCount} pools` : `${formatBytes(t.totals.allocatedBytes)} in ${t.totals.allocatedCount}`})`);
  if (t.stacks.length) {
    out.push('');
    out.push(textTable(['bytes', 'count', 'call path (leaf first)'],
      t.stacks.slice(0, top).map((s) => [formatBytes(s.bytes), String(Math.round(s.count)), shortPath(s.frames)])));
  } else {
    out.push('no outstanding memory from this window');
  }
  const complete = t.totals.sampledEvents ? t.totals.completeStacks / t.totals.sampledEvents : 0;
  out.push('');
  out.push(`stacks: ${t.totals.sampledEvents} captured, ${(complete * 100).toFixed(1)}% unwound to main or a thread start`);
  out.push(`cost: ${t.cost.totalProbeHits} probe hits (${Object.entries(t.cost.probeHits).map(([k, v]) => `${k} ${v}`).join(', ')}),` +
    ` about ${(t.cost.estimatedCpuSeconds * 1000).toFixed(0)} ms of target CPU (~${t.cost.perHitMicros} µs per hit measured on a 2-core VM)` +
    (t.cost.dutyCycle < 0.999 ? `, probes attached ${(t.cost.dutyCycle * 100).toFixed(0)}% of the window` : '') +
    (t.cost.lostEvents ? `, ${t.cost.lostEvents} events lost` : ''));
  for (const n of t.notes) out.push(`note: ${safeText(n)}`);
  return out.join('\n');
}

/** A frame in JSON: the stable fields, then file / line / demangled name / mapping when known (additive). */
export function frameJson(f: LeakTrace['stacks'][number]['frames'][number]): object {
  return {
    function: f.function, module: f.module, offset: f.offset,
    ...(f.file !== undefined ? { file: f.file } : {}), ...(f.line !== undefined ? { line: f.line } : {}),
    ...(f.mangled !== undefined ? { mangled: f.mangled } : {}),
    ...(f.inlined ? { inlined: true } : {}),
  };
}

export function leaksJson(t: LeakTrace): object {
  return {
    schema: 'leakscope.leaks/1',
    target: t.target, pid: t.pid, mode: t.mode,
    durationSeconds: t.durationSeconds,
    sampling: { sampleBytes: t.sampleBytes, minAgeSeconds: t.minAgeSeconds },
    totals: t.totals,
    cost: t.cost,
    probes: t.probes,
    complete: t.complete ?? true,
    ...(t.lost ? { lost: t.lost } : {}),
    ...(t.targetExitedAfterSeconds !== undefined ? { targetExitedAfterSeconds: t.targetExitedAfterSeconds } : {}),
    stacks: t.stacks.map((s) => ({
      frames: s.frames.map(frameJson),
      bytes: s.bytes, count: s.count, allocBytes: s.allocBytes ?? 0, allocCount: s.allocCount ?? 0,
    })),
    notes: t.notes,
  };
}
