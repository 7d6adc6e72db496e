// `leakscope.pools/1`: the document of `leakscope pools --json`. DESIGN.md fields: totals
// { pools, blocks, bytes, largeAllocs, largeBytes }, groups [{ owner, module, creator,
// referencedFrom, pools, blocks, blockBytes, usedBytes, largeAllocs, largeBytes, bytes }]; pools
// nothing refers to form groups whose owner is "unreferenced". Byte counts are glibc chunk sizes.

import type { NginxPool, PoolAnalysis } from '../nginx/pools.js';
import {
  address,
  amount,
  array,
  count,
  fail,
  integer,
  literal,
  nullable,
  object,
  parseWith,
  record,
  schema,
  string,
} from './json-check.js';

export const POOLS_SCHEMA = 'leakscope.pools/1';

export type PoolOwnerName =
  | 'cycle'
  | 'old-cycle'
  | 'connection'
  | 'request'
  | 'upstream'
  | 'static'
  | 'heap'
  | 'unreferenced';
const OWNERS: PoolOwnerName[] = [
  'cycle',
  'old-cycle',
  'connection',
  'request',
  'upstream',
  'static',
  'heap',
  'unreferenced',
];

export interface PoolGroupEntry {
  owner: PoolOwnerName;
  module: string | null;
  creator: string | null;
  referencedFrom: string | null;
  pools: number;
  blocks: number;
  blockBytes: number;
  usedBytes: number;
  largeAllocs: number;
  largeBytes: number;
  bytes: number;
}

export interface PoolCleanupEntry {
  /** Handler address in the target, its symbol, loaded object and offset in that object, nginx module. */
  handler: number;
  function: string | null;
  object: string;
  offset: number;
  module: string | null;
  /** cleanup->data as read from the target. */
  data: number;
}

export interface PoolEntry {
  address: number;
  /** Block size (d.end - pool), bytes. */
  size: number;
  owner: PoolOwnerName;
  module: string | null;
  creator: string | null;
  referencedFrom: string | null;
  references: string[];
  foundBy: 'root' | 'scan' | 'both';
  blocks: Array<{ address: number; size: number; used: number; chunkSize: number }>;
  large: Array<{ address: number; chunkSize: number }>;
  cleanups: PoolCleanupEntry[];
  blockBytes: number;
  usedBytes: number;
  largeBytes: number;
  bytes: number;
}

export interface PoolBucketEntry {
  minBytes: number;
  maxBytes: number;
  censusInUseChunks: number;
  censusInUseBytes: number;
  poolChunks: number;
  poolBytes: number;
  /** `group` indexes `groups`. */
  groups: Array<{ group: number; blockChunks: number; blockBytes: number; largeChunks: number; largeBytes: number }>;
}

export interface PoolsDocument {
  schema: typeof POOLS_SCHEMA;
  target: string;
  pid: number;
  nginxVersion: string;
  /** Where struct layouts came from: 'dwarf' | 'table' | 'table-nearest' (additive in /1). */
  layoutSource: string;
  sources: { layouts: string; cycle: string; bytes: string };
  totals: {
    pools: number;
    blocks: number;
    bytes: number;
    largeAllocs: number;
    largeBytes: number;
    blockBytes: number;
    usedBytes: number;
  };
  /** Largest bytes first. */
  groups: PoolGroupEntry[];
  /** The N largest pools (`--largest`). */
  largest: PoolEntry[];
  /** Every pool, largest bytes first. */
  pools: PoolEntry[];
  buckets: PoolBucketEntry[];
  modules: Array<{ name: string; address: number; index: number; object: string }>;
  roots: {
    cycle: number | null;
    connectionsInUse: number;
    requests: number;
    upstreams: number;
    oldCycles: number;
    cycleSymbolSource: string | null;
  };
  inconsistencies: Array<{ kind: string; address: number; detail: string }>;
  inconsistencyCount: number;
  inconsistencyKinds: Record<string, number>;
  stats: PoolAnalysis['stats'];
}

function poolEntry(p: NginxPool): PoolEntry {
  return {
    address: p.address,
    size: p.size,
    owner: p.owner,
    module: p.module,
    creator: p.creator,
    referencedFrom: p.referencedFrom,
    references: p.references,
    foundBy: p.foundBy,
    blocks: p.blocks.map((b) => ({ address: b.address, size: b.size, used: b.used, chunkSize: b.chunkSize })),
    large: p.large.map((l) => ({ address: l.address, chunkSize: l.chunkSize })),
    cleanups: p.cleanups.map((c) => ({
      handler: c.handler,
      function: c.function,
      object: c.object,
      offset: c.offset,
      module: c.module,
      data: c.data,
    })),
    blockBytes: p.blockBytes,
    usedBytes: p.usedBytes,
    largeBytes: p.largeBytes,
    bytes: p.bytes,
  };
}

/** The document of a pool analysis. `pools` lists every pool, `largest` the top N by bytes (default 10). */
export function encodePools(a: PoolAnalysis, opts: { largest?: number } = {}): PoolsDocument {
  return {
    schema: POOLS_SCHEMA,
    target: a.target,
    pid: a.pid,
    nginxVersion: a.nginxVersion,
    layoutSource: a.layoutSource,
    sources: {
      layouts: `${a.layoutSource}: ${a.layoutDetail}`,
      cycle: a.roots.cycleSymbolSource ? `ngx_cycle (${a.roots.cycleSymbolSource})` : 'not found',
      bytes: 'glibc chunk sizes from the heap census',
    },
    totals: {
      pools: a.totals.pools,
      blocks: a.totals.blocks,
      bytes: a.totals.bytes,
      largeAllocs: a.totals.largeAllocs,
      largeBytes: a.totals.largeBytes,
      blockBytes: a.totals.blockBytes,
      usedBytes: a.totals.usedBytes,
    },
    groups: a.groups.map((g) => ({
      owner: g.owner,
      module: g.module,
      creator: g.creator,
      referencedFrom: g.referencedFrom,
      pools: g.pools,
      blocks: g.blocks,
      blockBytes: g.blockBytes,
      usedBytes: g.usedBytes,
      largeAllocs: g.largeAllocs,
      largeBytes: g.largeBytes,
      bytes: g.bytes,
    })),
    largest: a.pools.slice(0, opts.largest ?? 10).map(poolEntry),
    pools: a.pools.map(poolEntry),
    buckets: a.buckets.map((b) => ({
      minBytes: b.minBytes,
      maxBytes: b.maxBytes,
      censusInUseChunks: b.censusInUseChunks,
      censusInUseBytes: b.censusInUseBytes,
      poolChunks: b.poolChunks,
      poolBytes: b.poolBytes,
      groups: b.groups.map((s) => ({
        group: s.group,
        blockChunks: s.blockChunks,
        blockBytes: s.blockBytes,
        largeChunks: s.largeChunks,
        largeBytes: s.largeBytes,
      })),
    })),
    modules: a.modules.map((m) => ({ name: m.name, address: m.address, index: m.index, object: m.object })),
    roots: a.roots,
    inconsistencies: a.inconsistencies,
    inconsistencyCount: a.inconsistencyCount,
    inconsistencyKinds: a.inconsistencyKinds,
    stats: a.stats,
  };
}

const owner = literal(...OWNERS);
const attribution = { owner, module: nullable(string), creator: nullable(string), referencedFrom: nullable(string) };
const pool = object({
  address,
  size: count,
  ...attribution,
  references: array(string),
  foundBy: literal('root', 'scan', 'both'),
  blocks: array(object({ address, size: count, used: count, chunkSize: count })),
  large: array(object({ address, chunkSize: count })),
  // Raw words of the target (the handler is symbolized, data is not followed): any non-negative number.
  cleanups: array(
    object({
      handler: amount,
      function: nullable(string),
      object: string,
      offset: integer,
      module: nullable(string),
      data: amount,
    }),
  ),
  blockBytes: count,
  usedBytes: count,
  largeBytes: count,
  bytes: count,
});

export const poolsDocument = object({
  schema: schema(POOLS_SCHEMA),
  target: string,
  pid: count,
  nginxVersion: string,
  layoutSource: string,
  sources: object({ layouts: string, cycle: string, bytes: string }),
  totals: object({
    pools: count,
    blocks: count,
    bytes: count,
    largeAllocs: count,
    largeBytes: count,
    blockBytes: count,
    usedBytes: count,
  }),
  groups: array(
    object({
      ...attribution,
      pools: count,
      blocks: count,
      blockBytes: count,
      usedBytes: count,
      largeAllocs: count,
      largeBytes: count,
      bytes: count,
    }),
  ),
  largest: array(pool),
  pools: array(pool),
  buckets: array(
    object({
      minBytes: count,
      maxBytes: count,
      censusInUseChunks: count,
      censusInUseBytes: count,
      poolChunks: count,
      poolBytes: count,
      groups: array(
        object({ group: count, blockChunks: count, blockBytes: count, largeChunks: count, largeBytes: count }),
      ),
    }),
  ),
  modules: array(object({ name: string, address, index: count, object: string })),
  roots: object({
    cycle: nullable(address),
    connectionsInUse: count,
    requests: count,
    upstreams: count,
    oldCycles: count,
    cycleSymbolSource: nullable(string),
  }),
  inconsistencies: array(object({ kind: string, address: amount, detail: string })),
  inconsistencyCount: count,
  inconsistencyKinds: record(count),
  stats: object({
    elapsedMs: amount,
    chunksSeen: count,
    candidates: count,
    signatureMatches: count,
    bytesRead: count,
    phasesMs: object({
      roots: amount,
      scan: amount,
      validate: amount,
      staticRefs: amount,
      heapRefs: amount,
      attribute: amount,
      group: amount,
    }),
  }),
});

/** A `leakscope.pools/1` document from untrusted JSON; throws `malformed` with the path of the first problem. */
export function parsePools(doc: unknown): PoolsDocument {
  const d = parseWith(poolsDocument, doc);
  for (let i = 0; i < d.buckets.length; i++) {
    const shares = d.buckets[i]!.groups;
    for (let j = 0; j < shares.length; j++) {
      const g = shares[j]!.group;
      if (g >= d.groups.length)
        fail(`$.buckets[${i}].groups[${j}].group`, `an index into $.groups (< ${d.groups.length})`, g);
    }
  }
  return d;
}
