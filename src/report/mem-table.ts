// `leakscope mem`: the terminal table of a `leakscope.mem/1` document.
import { describeShmZone } from '../contract/mem.js';
import type { MemDocument } from '../contract/mem.js';
import { formatBytes, formatPercent, safeText, textTable } from './text-format.js';

export function renderMemTable(b: MemDocument): string {
  const rows = b.categories.map((c) => [
    c.name,
    formatBytes(c.rssBytes),
    formatPercent(b.rssBytes ? c.rssBytes / b.rssBytes : 0),
    formatBytes(c.pssBytes),
    formatBytes(c.swapBytes),
    String(c.mappings),
  ]);
  const out = [
    `${safeText(b.target)}: RSS ${formatBytes(b.rssBytes)}, PSS ${formatBytes(b.pssBytes)}, swap ${formatBytes(b.swapBytes)}`,
    '',
    textTable(['category', 'RSS', 'share', 'PSS', 'swap', 'mappings'], rows),
    '',
    `glibc holds ${formatPercent(b.glibcShare)} of RSS`,
  ];
  const shm = b.categories.find((c) => c.name === 'nginx-shm');
  if (shm?.top.length)
    out.push(`nginx shm zones: ${shm.top.map((r) => `${safeText(r.label)} ${formatBytes(r.rssBytes)}`).join(', ')}`);
  for (const z of b.shmZones ?? []) out.push(`nginx shm zone ${safeText(describeShmZone(z))}`);
  const lj = b.categories.find((c) => c.name === 'luajit');
  if (lj && lj.usedBytes !== undefined)
    out.push(
      `LuaJIT heap: lj_alloc regions ${formatBytes(lj.usedBytes + (lj.freeBytes ?? 0))}, used by Lua objects (gc.total) ${formatBytes(lj.usedBytes)}, free inside ${formatBytes(lj.freeBytes ?? 0)}`,
    );
  for (const n of b.notes) out.push(`note: ${safeText(n)}`);
  return out.join('\n');
}
