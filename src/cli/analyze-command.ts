// `leakscope analyze` wiring: target, siblings, baseline, progress, outputs.
import type { AddressSpace } from '../target/address-space.js';
import { LiveProcess, siblingWorkers } from '../target/index.js';
import { analyze } from '../analysis/analyze.js';
import type { AnalyzeDocument } from '../contract/analyze.js';
import { renderHtmlReport } from '../report/html-report.js';
import { renderAnalyzeText } from '../report/analyze-text.js';
import { interruptSignal, requireEbpf } from '../ebpf/index.js';
import { isLeakscopeError } from '../model/errors.js';
import { writeFile } from './output.js';
import { readBaselineCensus } from './commands.js';
import type { CommandResult } from './commands.js';

export interface AnalyzeCliOptions {
  duration: number;
  pause: number;
  mode: 'auto' | 'pool' | 'malloc';
  sampleBytes: number;
  minAge: number;
  baseline?: string;
  html?: string;
  siblings?: boolean;
  quiet?: boolean;
  /** false with --no-reach: no reachability scan at the end. */
  reach?: boolean;
  allPoolSites?: boolean;
}

export async function runAnalyze(
  space: AddressSpace,
  o: AnalyzeCliOptions,
): Promise<CommandResult & { doc: AnalyzeDocument }> {
  if (space.kind === 'live' && o.duration > 0) requireEbpf();
  const siblings: AddressSpace[] = [];
  if (o.siblings && space.kind === 'live') {
    for (const s of siblingWorkers(space.pid).slice(0, 2)) {
      try {
        siblings.push(LiveProcess.open(s.pid));
      } catch (e) {
        if (!isLeakscopeError(e)) throw e;
      }
    }
  }
  const baseline = o.baseline ? readBaselineCensus(o.baseline) : undefined;
  const tty = process.stderr.isTTY && !o.quiet;
  const interrupt = interruptSignal();
  let doc: AnalyzeDocument;
  try {
    doc = await analyze(space, {
      traceSeconds: o.duration,
      pauseSeconds: o.pause,
      mode: o.mode,
      sampleBytes: o.sampleBytes,
      allPoolSites: o.allPoolSites,
      minAgeSeconds: o.minAge,
      baseline,
      siblings,
      signal: interrupt.signal,
      reach: o.reach,
      onStep: o.quiet ? undefined : (t) => process.stderr.write(`${tty ? '\r\x1b[K' : ''}${t}${tty ? '' : '\n'}`),
      onTraceProgress: tty
        ? (p) =>
            process.stderr.write(
              `\r\x1b[Ktracing: ${Math.max(0, p.durationSeconds - p.elapsedSeconds).toFixed(0)} s left, ${p.events} stacks`,
            )
        : undefined,
    });
  } finally {
    interrupt.dispose();
    for (const s of siblings) s.close();
    if (tty) process.stderr.write('\r\x1b[K');
  }
  if (o.html) writeFile(o.html, renderHtmlReport(doc));
  return { doc, text: () => renderAnalyzeText(doc) + (o.html ? `\n\nreport: ${o.html}` : ''), json: () => doc };
}
