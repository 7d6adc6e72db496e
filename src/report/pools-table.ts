// `leakscope pools`: terminal table and versioned JSON (`leakscope.pools/1`) of a PoolAnalysis.
// JSON fields per DESIGN.md: totals { pools, blocks, bytes, largeAllocs, largeBytes },
// groups [{ owner, module, creator, referencedFrom, pools, blocks, blockBytes, usedBytes,
// largeAllocs, largeBytes, bytes }]. Byte counts are glibc chunk sizes.

import type { NginxPool, PoolAnalysis } from '../nginx/pools.js';
import { formatBytes, safeText, textTable } from './text-format.js';

const hex = (n: number) => '0x' + n.toString(16);
const orDash = (s: string | null) => (s === null || s === '' ? '-' : safeText(s));

export function renderPoolsTable(a: PoolAnalysis, opts: { largest?: number } = {}): string {
  const out: string[] = [];
  const t = a.totals;
  out.push(`${safeText(a.target)}: nginx ${a.nginxVersion || '?'} (layouts: ${a.layoutSource})`);
  out.push(`${t.pools} pools, ${t.blocks} blocks (${formatBytes(t.blockBytes)}, ${formatBytes(t.usedBytes)} used), ${t.largeAllocs} large allocations (${formatBytes(t.largeBytes)}): ${formatBytes(t.bytes)} in total`);
  out.push('');
  out.push(textTable(
    ['owner', 'module', 'creator', 'referenced from', 'pools', 'blocks', 'block bytes', 'large', 'large bytes', 'bytes'],
    a.groups.map((g) => [g.owner, orDash(g.module), orDash(g.creator), orDash(g.referencedFrom), String(g.pools), String(g.blocks),
      formatBytes(g.blockBytes), String(g.largeAllocs), formatBytes(g.largeBytes), formatBytes(g.bytes)]),
  ));
  const unref = a.groups.filter((g) => g.owner === 'unreferenced');
  if (unref.length) {
    const n = unref.reduce((s, g) => s + g.pools, 0), b = unref.reduce((s, g) => s + g.bytes, 0);
    out.push('', `leak suspects: ${n} pool(s) nothing refers to, ${formatBytes(b)}`);
  }
  const k = opts.largest ?? 10;
  if (a.pools.length) {
    out.push('', `largest pools:`);
    out.push(textTable(['pool', 'owner', 'size', 'blocks', 'large', 'bytes', 'cleanups', 'referenced from'],
      a.pools.slice(0, k).map((p) => [hex(p.address), p.owner, formatBytes(p.size), String(p.blocks.length), String(p.large.length), formatBytes(p.bytes),
        orDash(p.cleanups.map((c) => c.function ?? `${c.object}+${hex(c.offset)}`).join(',')), orDash(p.references[0] ?? null)])));
  }
  const bk = a.buckets.filter((b) => b.poolChunks > 0);
  if (bk.length) {
    out.push('', 'census buckets holding pool memory (chunk size [min, max)):');
    out.push(textTable(['bucket', 'census in use', 'pool chunks', 'pool bytes', 'share', 'by group'],
      bk.map((b) => [`${formatBytes(b.minBytes)}-${formatBytes(b.maxBytes)}`, `${b.censusInUseChunks}`, String(b.poolChunks), formatBytes(b.poolBytes),
        b.censusInUseBytes ? `${((b.poolBytes / b.censusInUseBytes) * 100).toFixed(1)}%` : '-',
        b.groups.map((s) => `#${s.group + 1} ${a.groups[s.group]!.owner}:${s.blockChunks + s.largeChunks}`).join(' ')])));
  }
  if (a.inconsistencyCount) {
    out.push('', `inconsistencies: ${a.inconsistencyCount} (${Object.entries(a.inconsistencyKinds).map(([kk, v]) => `${kk} ${v}`).join(', ')})`);
    for (const i of a.inconsistencies.slice(0, 5)) out.push(`  ${i.kind}: ${safeText(i.detail)}`);
  }
  return out.join('\n');
}

function poolJson(p: NginxPool): object {
  return {
    address: p.address, size: p.size, owner: p.owner, module: p.module, creator: p.creator, referencedFrom: p.referencedFrom,
    references: p.references, foundBy: p.foundBy,
    blocks: p.blocks.map((b) => ({ address: b.address, size: b.size, used: b.used, chunkSize: b.chunkSize })),
    large: p.large.map((l) => ({ address: l.address, chunkSize: l.chunkSize })),
    cleanups: p.cleanups.map((c) => ({ handler: c.handler, function: c.function, object: c.object, offset: c.offset, module: c.module, data: c.data })),
    blockBytes: p.blockBytes, usedBytes: p.usedBytes, largeBytes: p.largeBytes, bytes: p.bytes,
  };
}

/** The `leakscope.pools/1` JSON document. `pools` lists every pool (`largest` the top N by bytes). */
export function poolsJson(a: PoolAnalysis, opts: { largest?: number } = {}): object {
  return {
    schema: 'leakscope.pools/1',
    target: a.target,
    pid: a.pid,
    nginxVersion: a.nginxVersion,
    sources: { layouts: `${a.layoutSource}: ${a.layoutDetail}`, cycle: a.roots.cycleSymbolSource ? `ngx_cycle (${a.roots.cycleSymbolSource})` : 'not found', bytes: 'glibc chunk sizes from the heap census' },
    totals: { pools: a.totals.pools, blocks: a.totals.blocks, bytes: a.totals.bytes, largeAllocs: a.totals.largeAllocs, largeBytes: a.totals.largeBytes, blockBytes: a.totals.blockBytes, usedBytes: a.totals.usedBytes },
    groups: a.groups.map((g) => ({
      owner: g.owner, module: g.module, creator: g.creator, referencedFrom: g.referencedFrom, pools: g.pools, blocks: g.blocks,
      blockBytes: g.blockBytes, usedBytes: g.usedBytes, largeAllocs: g.largeAllocs, largeBytes: g.largeBytes, bytes: g.bytes,
    })),
    largest: a.pools.slice(0, opts.largest ?? 10).map(poolJson),
    pools: a.pools.map(poolJson),
    buckets: a.buckets.map((b) => ({
      minBytes: b.minBytes, maxBytes: b.maxBytes, censusInUseChunks: b.censusInUseChunks, censusInUseBytes: b.censusInUseBytes,
      poolChunks: b.poolChunks, poolBytes: b.poolBytes,
      groups: b.groups.map((s) => ({ group: s.group, blockChunks: s.blockChunks, blockBytes: s.blockBytes, largeChunks: s.largeChunks, largeBytes: s.largeBytes })),
    })),
    modules: a.modules.map((m) => ({ name: m.name, address: m.address, index: m.index, object: m.object })),
    roots: a.roots,
    inconsistencies: a.inconsistencies,
    inconsistencyCount: a.inconsistencyCount,
    inconsistencyKinds: a.inconsistencyKinds,
    stats: a.stats,
  };
}
