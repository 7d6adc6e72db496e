// Shared helpers for terminal renderers: byte sizes, percentages, aligned tables.

export { formatBytes, formatPercent } from '../model/units.js';

/** Renders rows as an aligned text table; numeric-looking cells are right-aligned. */
export function textTable(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const numeric = (s: string) => /^-?[\d.,]+( ?[KMGT]?i?B|%|x)?$/.test(s);
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (numeric(c) && i > 0 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}

/** Strips control characters from target-supplied strings before printing them on a terminal. */
export function safeText(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, '?');
}
