// `leakscope mem`: terminal table and versioned JSON of a MemBreakdown.
import type { MemBreakdown } from '../model/mem.js';
import { formatBytes, formatPercent, safeText, textTable } from './text-format.js';

export function renderMemTable(b: MemBreakdown): string {
  const rows = b.categories.map((c) => [c.name, formatBytes(c.rssBytes), formatPercent(b.rssBytes ? c.rssBytes / b.rssBytes : 0), formatBytes(c.pssBytes), formatBytes(c.swapBytes), String(c.mappings)]);
  const out = [
    `${safeText(b.target)}: RSS ${formatBytes(b.rssBytes)}, PSS ${formatBytes(b.pssBytes)}, swap ${formatBytes(b.swapBytes)}`,
    '',
    textTable(['category', 'RSS', 'share', 'PSS', 'swap', 'mappings'], rows),
    '',
    `glibc holds ${formatPercent(b.glibcShare)} of RSS`,
  ];
  const shm = b.categories.find((c) => c.name === 'nginx-shm');
  if (shm && shm.top.length) out.push(`nginx shm zones: ${shm.top.map((r) => `${safeText(r.label)} ${formatBytes(r.rssBytes)}`).join(', ')}`);
  for (const n of b.notes) out.push(`note: ${safeText(n)}`);
  return out.join('\n');
}

export function memJson(b: MemBreakdown): object {
  return {
    schema: 'leakscope.mem/1',
    target: b.target, pid: b.pid,
    rssBytes: b.rssBytes, pssBytes: b.pssBytes, swapBytes: b.swapBytes,
    glibcShare: b.glibcShare,
    categories: b.categories.map((c) => ({
      name: c.name, rssBytes: c.rssBytes, pssBytes: c.pssBytes, swapBytes: c.swapBytes, mappings: c.mappings, source: c.source,
      top: c.top.map((r) => ({ start: r.start, end: r.end, rssBytes: r.rssBytes, swapBytes: r.swapBytes, label: r.label })),
    })),
    modules: b.modules,
    notes: b.notes,
  };
}
