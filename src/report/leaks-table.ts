// `leakscope leaks`: the terminal summary of a `leakscope.leaks/1` document.
import type { LeaksDocument } from '../contract/leaks.js';
import { frameLabel } from '../model/stacks.js';
import { formatBytes, safeText, textTable } from './text-format.js';

/** Frames worth showing in a one-line path: skip the allocator's own and libc start-up frames. */
function shortPath(frames: LeaksDocument['stacks'][number]['frames'], max = 6): string {
  const names = frames.map(frameLabel);
  const shown = names.slice(0, max);
  return safeText(shown.join(' <- ') + (names.length > max ? ` <- ... (${names.length - max} more)` : ''));
}

export function renderLeaksTable(t: LeaksDocument, opts: { top?: number } = {}): string {
  const top = opts.top ?? 10;
  const out: string[] = [];
  out.push(
    `${safeText(t.target)}: ${t.mode} trace for ${t.durationSeconds.toFixed(1)} s` +
      (t.sampling.sampleBytes
        ? `, sampling every ${formatBytes(t.sampling.sampleBytes)} (estimates scaled)`
        : ', every allocation traced') +
      (t.sampling.minAgeSeconds ? `, ignoring memory younger than ${t.sampling.minAgeSeconds} s` : ''),
  );
  if (t.complete === false) {
    out.push(
      `INCOMPLETE: ${t.lost?.events ?? 0} events lost (${formatBytes(t.lost?.requestedBytes ?? 0)} requested)` +
        (t.lost?.untracked ? `, ${t.lost.untracked} allocations untracked: totals are lower bounds` : '') +
        '; per-path figures are lower bounds',
    );
  }
  if (t.targetExitedAfterSeconds !== undefined)
    out.push(`target exited after ${t.targetExitedAfterSeconds.toFixed(1)} s; results cover that`);
  out.push(
    `outstanding at the end: ${formatBytes(t.totals.outstandingBytes)} in ${t.totals.outstandingCount} ${t.mode === 'pool' ? 'pools' : 'allocations'}` +
      ` (allocated during the window: ${t.mode === 'pool' ? `${t.totals.allocatedCount} pools` : `${formatBytes(t.totals.allocatedBytes)} in ${t.totals.allocatedCount}`})`,
  );
  if (t.stacks.length) {
    out.push('');
    const reach = t.stacks.some((s) => s.reach);
    out.push(
      textTable(
        ['bytes', 'count', ...(reach ? ['unreachable', 'reachable'] : []), 'call path (leaf first)'],
        t.stacks
          .slice(0, top)
          .map((s) => [
            formatBytes(s.bytes),
            String(Math.round(s.count)),
            ...(reach
              ? [
                  s.reach ? reachCell(s.reach.lostBytes, s.bytes) : '?',
                  s.reach ? reachCell(s.reach.reachableBytes, s.bytes) : '?',
                ]
              : []),
            shortPath(s.frames),
          ]),
      ),
    );
    if (reach)
      out.push(
        'unreachable: definitely or indirectly lost at the end (a leak); reachable: still referenced (a cache or live data)',
      );
  } else {
    out.push('no outstanding memory from this window');
  }
  const complete = t.totals.sampledEvents ? t.totals.completeStacks / t.totals.sampledEvents : 0;
  out.push('');
  out.push(
    `stacks: ${t.totals.sampledEvents} captured, ${(complete * 100).toFixed(1)}% unwound to main or a thread start`,
  );
  out.push(
    `cost: ${t.cost.totalProbeHits} probe hits (${Object.entries(t.cost.probeHits)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}),` +
      ` about ${(t.cost.estimatedCpuSeconds * 1000).toFixed(0)} ms of target CPU (~${t.cost.perHitMicros} µs per hit)` +
      (t.cost.dutyCycle < 0.999 ? `, probes attached ${(t.cost.dutyCycle * 100).toFixed(0)}% of the window` : '') +
      (t.cost.lostEvents ? `, ${t.cost.lostEvents} events lost` : ''),
  );
  if (t.poolSites) out.push(...poolSitesText(t.poolSites));
  for (const n of t.notes) out.push(`note: ${safeText(n)}`);
  return out.join('\n');
}

/** Pool mode: where ngx_create_pool was probed, and which call sites were left alone. */
function poolSitesText(p: NonNullable<LeaksDocument['poolSites']>): string[] {
  if (p.placement === 'body') return [`pool probe: inside ngx_create_pool, every pool (${safeText(p.reason ?? '')})`];
  const site = (e: (typeof p.probed)[number]) =>
    `${safeText(e.function)} (${safeText(e.module.split('/').pop() ?? e.module)} 0x${e.callVaddr.toString(16)}${e.via === 'direct' ? '' : `, ${e.via}`})`;
  const out = [
    `pool probes at ${p.probed.length} ngx_create_pool call sites: ${p.probed.map(site).join(', ') || 'none'}`,
  ];
  if (p.skipped.length)
    out.push(
      `left alone (pools nginx owns and destroys; --all-pool-sites probes them): ${p.skipped
        .map((e) => `${site(e)} ${safeText(e.owner ?? '')}`)
        .join(', ')}`,
    );
  return out;
}

function reachCell(part: number, whole: number): string {
  return whole > 0 ? `${formatBytes(part)} ${Math.round((part / whole) * 100)}%` : formatBytes(part);
}
