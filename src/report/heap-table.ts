// `leakscope heap`: the terminal table of a `leakscope.heap/1` document (with its comparison
// against a baseline, when it has one). The renderer never reads the target.
import type { HeapDocument, HeapTotalsEntry } from '../contract/heap.js';
import { formatBytes, formatPercent, safeText, textTable } from './text-format.js';

const hex = (n: number) => `0x${n.toString(16)}`;

function totalsRow(label: string, t: HeapTotalsEntry): string[] {
  return [
    label,
    String(t.inUseChunks),
    formatBytes(t.inUseBytes),
    String(t.tcacheChunks),
    formatBytes(t.tcacheBytes),
    String(t.fastbinChunks),
    formatBytes(t.fastbinBytes),
    String(t.binChunks),
    formatBytes(t.binBytes),
    formatBytes(t.topBytes),
    String(t.mmappedChunks),
    formatBytes(t.mmappedBytes),
    formatBytes(t.systemBytes),
  ];
}

export function renderHeapTable(c: HeapDocument): string {
  const t = c.totals;
  const out: string[] = [
    `${safeText(c.target)}: glibc ${safeText(c.glibcVersion)}, ${t.arenas} arena(s), ${t.tcaches} tcache(s)`,
    `in use ${formatBytes(t.inUseBytes)} in ${t.inUseChunks} chunks + mmapped ${formatBytes(t.mmappedBytes)} in ${t.mmappedChunks}; ` +
      `free ${formatBytes(t.freeBytes)} (top ${formatBytes(t.topBytes)}); from the system ${formatBytes(t.systemBytes + t.mmappedBytes)}; ` +
      `fragmentation ${formatPercent(t.fragmentation)}`,
    '',
    textTable(
      [
        'arena',
        'in use',
        'bytes',
        'tcache',
        'bytes',
        'fastbin',
        'bytes',
        'bins',
        'bytes',
        'top',
        'mmapped',
        'bytes',
        'system',
      ],
      [
        ...c.arenas.map((a) => totalsRow(`${a.kind === 'main' ? 'main' : `#${a.index}`} ${hex(a.address)}`, a)),
        totalsRow('total', t),
      ],
    ),
    '',
    'chunk sizes (chunk size = header included), power-of-two buckets; in use includes mmapped chunks:',
  ];
  const growth = c.comparison ? new Map(c.comparison.buckets.map((b) => [b.minBytes, b])) : undefined;
  const header = ['bucket', 'in use', 'bytes', 'free', 'bytes'];
  if (growth) header.push('Δ in use', 'Δ bytes');
  out.push(
    textTable(
      header,
      c.histogram.map((b) => {
        const row = [
          `${formatBytes(b.minBytes)} – ${formatBytes(b.maxBytes)}`,
          String(b.inUseChunks),
          formatBytes(b.inUseBytes),
          String(b.freeChunks),
          formatBytes(b.freeBytes),
        ];
        if (growth) {
          const g = growth.get(b.minBytes);
          row.push(g ? `${g.inUseChunks >= 0 ? '+' : ''}${g.inUseChunks}` : '0', g ? formatBytes(g.inUseBytes) : '0 B');
        }
        return row;
      }),
    ),
  );
  if (c.topSizes.length) {
    out.push('', 'largest in-use sizes:');
    out.push(
      textTable(
        ['chunk size', 'count', 'bytes'],
        c.topSizes.slice(0, 10).map((s) => [String(s.size), String(s.count), formatBytes(s.bytes)]),
      ),
    );
  }
  if (c.inconsistencyCount) {
    out.push(
      '',
      `${c.inconsistencyCount} inconsistenc${c.inconsistencyCount === 1 ? 'y' : 'ies'}${c.complete ? '' : ' (census is partial)'}:`,
    );
    for (const i of c.inconsistencies.slice(0, 10))
      out.push(`  ${hex(i.address)} ${safeText(i.kind)}: ${safeText(i.detail)}`);
  }
  const gv = c.glibcView;
  if (gv.nMmaps !== null && (gv.nMmaps !== t.mmappedChunks || gv.mmappedMem !== t.mmappedBytes)) {
    out.push(`glibc's own view: n_mmaps ${gv.nMmaps}, mmapped_mem ${formatBytes(gv.mmappedMem ?? 0)}`);
  }
  out.push('', 'sources:');
  for (const [k, v] of Object.entries(c.sources)) out.push(`  ${k}: ${safeText(v)}`);
  return out.join('\n');
}
