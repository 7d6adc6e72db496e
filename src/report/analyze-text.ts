// `leakscope analyze`: the terminal narrative of an AnalyzeDocument (steps, then the conclusion).
import type { AnalyzeDocument } from '../contract/analyze.js';
import { safeText } from './text-format.js';

const MARK: Record<string, string> = { ok: 'ok', anomaly: '!!', skipped: '--', error: 'xx' };
/** Never "no leak" for cannot-tell. */
const HEADING: Record<string, string> = {
  leak: 'LEAK FOUND',
  'no-leak': 'NO LEAK FOUND',
  'cannot-tell': 'CANNOT TELL YET',
};

export function renderAnalyzeText(doc: AnalyzeDocument): string {
  const out: string[] = [`leakscope analysis of ${safeText(doc.target)} (${doc.durationSeconds.toFixed(1)} s)`, ''];
  doc.steps.forEach((s, i) => {
    out.push(`${i + 1}. [${MARK[s.status] ?? s.status}] ${safeText(s.title)}: ${safeText(s.finding)}`);
    // The first 4 lines of evidence, and every nginx shm zone's slab pages (memory step).
    const shown = s.evidence.filter((e, k) => k < 4 || e.startsWith('nginx shm zone '));
    for (const e of shown) out.push(`      - ${safeText(e)}`);
  });
  const c = doc.conclusion;
  out.push('');
  const verdict = c.verdict ?? (c.leak ? 'leak' : 'no-leak');
  out.push(`${HEADING[verdict] ?? 'CANNOT TELL'} (verdict: ${verdict}, confidence: ${c.confidence})`);
  if (c.module) out.push(`  module:   ${safeText(c.module)}`);
  if (c.bucket) out.push(`  bucket:   chunks of ${c.bucket.minBytes}–${c.bucket.maxBytes - 1} bytes`);
  if (c.function) out.push(`  function: ${safeText(c.function)}`);
  if (c.growthRate)
    out.push(
      `  rate:     ${(c.growthRate.bytesPerSecond / 1024).toFixed(1)} KiB/s (+${(c.growthRate.bytesPerHour / 1048576).toFixed(1)} MiB/hour)`,
    );
  out.push(`  ${safeText(c.summary)}`);
  if (c.nextCommand) out.push(`  to tell:  ${safeText(c.nextCommand)}`);
  return out.join('\n');
}
