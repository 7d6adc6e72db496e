// `leakscope pools`: the terminal table of a `leakscope.pools/1` document. Byte counts are
// glibc chunk sizes.

import type { PoolsDocument } from '../contract/pools.js';
import { formatBytes, safeText, textTable } from './text-format.js';

const hex = (n: number) => '0x' + n.toString(16);
const orDash = (s: string | null) => (s === null || s === '' ? '-' : safeText(s));

export function renderPoolsTable(a: PoolsDocument, opts: { largest?: number } = {}): string {
  const out: string[] = [];
  const t = a.totals;
  out.push(`${safeText(a.target)}: nginx ${a.nginxVersion || '?'} (layouts: ${a.layoutSource})`);
  out.push(
    `${t.pools} pools, ${t.blocks} blocks (${formatBytes(t.blockBytes)}, ${formatBytes(t.usedBytes)} used), ${t.largeAllocs} large allocations (${formatBytes(t.largeBytes)}): ${formatBytes(t.bytes)} in total`,
  );
  out.push('');
  out.push(
    textTable(
      [
        'owner',
        'module',
        'creator',
        'referenced from',
        'pools',
        'blocks',
        'block bytes',
        'large',
        'large bytes',
        'bytes',
      ],
      a.groups.map((g) => [
        g.owner,
        orDash(g.module),
        orDash(g.creator),
        orDash(g.referencedFrom),
        String(g.pools),
        String(g.blocks),
        formatBytes(g.blockBytes),
        String(g.largeAllocs),
        formatBytes(g.largeBytes),
        formatBytes(g.bytes),
      ]),
    ),
  );
  const unref = a.groups.filter((g) => g.owner === 'unreferenced');
  if (unref.length) {
    const n = unref.reduce((s, g) => s + g.pools, 0),
      b = unref.reduce((s, g) => s + g.bytes, 0);
    out.push('', `leak suspects: ${n} pool(s) nothing refers to, ${formatBytes(b)}`);
  }
  const k = opts.largest ?? 10;
  if (a.pools.length) {
    out.push('', `largest pools:`);
    out.push(
      textTable(
        ['pool', 'owner', 'size', 'blocks', 'large', 'bytes', 'cleanups', 'referenced from'],
        a.pools
          .slice(0, k)
          .map((p) => [
            hex(p.address),
            p.owner,
            formatBytes(p.size),
            String(p.blocks.length),
            String(p.large.length),
            formatBytes(p.bytes),
            orDash(p.cleanups.map((c) => c.function ?? `${c.object}+${hex(c.offset)}`).join(',')),
            orDash(p.references[0] ?? null),
          ]),
      ),
    );
  }
  const bk = a.buckets.filter((b) => b.poolChunks > 0);
  if (bk.length) {
    out.push('', 'census buckets holding pool memory (chunk size [min, max)):');
    out.push(
      textTable(
        ['bucket', 'census in use', 'pool chunks', 'pool bytes', 'share', 'by group'],
        bk.map((b) => [
          `${formatBytes(b.minBytes)}-${formatBytes(b.maxBytes)}`,
          `${b.censusInUseChunks}`,
          String(b.poolChunks),
          formatBytes(b.poolBytes),
          b.censusInUseBytes ? `${((b.poolBytes / b.censusInUseBytes) * 100).toFixed(1)}%` : '-',
          b.groups.map((s) => `#${s.group + 1} ${a.groups[s.group]!.owner}:${s.blockChunks + s.largeChunks}`).join(' '),
        ]),
      ),
    );
  }
  if (a.inconsistencyCount) {
    out.push(
      '',
      `inconsistencies: ${a.inconsistencyCount} (${Object.entries(a.inconsistencyKinds)
        .map(([kk, v]) => `${kk} ${v}`)
        .join(', ')})`,
    );
    for (const i of a.inconsistencies.slice(0, 5)) out.push(`  ${i.kind}: ${safeText(i.detail)}`);
  }
  return out.join('\n');
}
