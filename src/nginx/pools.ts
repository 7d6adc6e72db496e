// nginx pool analysis: finds every ngx_pool_t of a worker from the roots (cycle,
// connections, requests, upstream connections, old cycles) and by scanning every in-use
// chunk of the glibc census for the pool signature (pool.ts), then attributes each pool:
//   owner        the structure that holds it (cycle, connection, request, upstream, old-cycle),
//                else 'static' (a module's .data/.bss points at it), else 'heap' (another in-use
//                chunk, not one of the pool's own, points at it), else 'unreferenced' (a leak suspect);
//   module       the nginx module (ngx_module_t.name) whose static data refers to it;
//   creator      the nginx module whose code its cleanup handlers are (evidence of who made it).
// Byte counts are glibc chunk sizes (from the census), so they reconcile with `heap` totals:
// a pool's bytes = its blocks' chunk sizes + its live large allocations' chunk sizes.

import { basename } from 'node:path';
import { ByteReader } from '../binary/byte-reader.js';
import type { Module } from '../model/memory.js';
import { Symbolizer } from '../symbols/index.js';
import type { AddressSpace } from '../target/index.js';
import { bucketOf, CHUNK_HEADER, POOL_SCAN_BYTES } from './chunks.js';
import type { InUseChunks } from './chunks.js';
import { objectAt, readRoots } from './cycle.js';
import type { NginxModuleInfo, NginxRoots } from './cycle.js';
import type { NginxLayouts } from './layouts.js';
import { chunkFitsBlock, parsePoolHeader, poolHeaderPlausible, POOL, readPool } from './pool.js';
import type { PoolBlock, PoolInconsistency, PoolLargeAlloc, PoolRead } from './pool.js';
import { readBatched } from './read-batch.js';
import { PointerTargets, scanForPointers, searchRanges, writableRegions } from './references.js';

export type PoolOwner = 'cycle' | 'old-cycle' | 'connection' | 'request' | 'upstream' | 'static' | 'heap' | 'unreferenced';

export interface PoolCleanupInfo { handler: number; function: string | null; object: string; module: string | null; data: number }

export interface NginxPool {
  address: number;
  /** Block size (d.end - pool), bytes. */
  size: number;
  blocks: PoolBlock[];
  large: PoolLargeAlloc[];
  cleanups: PoolCleanupInfo[];
  /** Chunk sizes of the blocks. */
  blockBytes: number;
  /** Bytes handed out from the blocks (sum of d.last - block). */
  usedBytes: number;
  largeBytes: number;
  /** blockBytes + largeBytes. */
  bytes: number;
  foundBy: 'root' | 'scan' | 'both';
  owner: PoolOwner;
  module: string | null;
  creator: string | null;
  referencedFrom: string | null;
  /** Every reference found, most specific first ("ngx_cycle->connections[3].pool", "ngx_http_leak_module.so:ngx_http_leak_sessions+0x18", "heap chunk 0x..."). */
  references: string[];
}

export interface PoolGroup {
  owner: PoolOwner;
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

export interface PoolBucketGroupShare { group: number; blockChunks: number; blockBytes: number; largeChunks: number; largeBytes: number }
export interface PoolBucketSplit {
  minBytes: number; maxBytes: number;
  /** The census's in-use chunks in this bucket (mmapped included). */
  censusInUseChunks: number; censusInUseBytes: number;
  /** Of which pool blocks and large allocations (all groups). */
  poolChunks: number; poolBytes: number;
  /** Per group (index into `groups`). */
  groups: PoolBucketGroupShare[];
}

export interface PoolAnalysis {
  pid: number;
  target: string;
  nginxVersion: string;
  /** Where struct layouts came from ('dwarf' | 'table' | 'table-nearest') and details. */
  layoutSource: string;
  layoutDetail: string;
  totals: { pools: number; blocks: number; bytes: number; largeAllocs: number; largeBytes: number; blockBytes: number; usedBytes: number };
  /** Largest bytes first. */
  groups: PoolGroup[];
  /** Every pool, largest bytes first. */
  pools: NginxPool[];
  buckets: PoolBucketSplit[];
  modules: NginxModuleInfo[];
  roots: { cycle: number | null; connectionsInUse: number; requests: number; upstreams: number; oldCycles: number; cycleSymbolSource: string | null };
  /** The first 100 inconsistencies; all are counted in inconsistencyCount and by kind. */
  inconsistencies: PoolInconsistency[];
  inconsistencyCount: number;
  inconsistencyKinds: Record<string, number>;
  stats: {
    elapsedMs: number; chunksSeen: number; candidates: number; signatureMatches: number; bytesRead: number;
    phasesMs: { roots: number; scan: number; validate: number; staticRefs: number; heapRefs: number; attribute: number; group: number };
  };
}

export interface AnalyzePoolsOptions {
  /** The census's in-use chunks (src/glibc). */
  chunks: InUseChunks;
  symbolizer?: Symbolizer;
  layouts?: NginxLayouts;
  /**
   * Search in-use chunks for references to pools that no root or static data holds:
   * 'default' searches every in-use chunk except pools' large allocations (byte buffers
   * handed out by ngx_palloc; searching them costs a full re-read of the data) and the
   * never-used tails of pool blocks; 'all' searches large allocations too; 'off' skips the search.
   */
  heapReferences?: 'default' | 'all' | 'off';
  /** Census histogram, when the caller has it (else bucket totals are counted from `chunks`). */
  histogram?: ReadonlyArray<{ minBytes: number; maxBytes: number; inUseChunks: number; inUseBytes: number }>;
}

/**
 * '0x' + n in hex. Number#toString(16) is slow for values outside the small-integer range
 * (every user address), so those go as two parts: n / 2^16 (< 2^31) and the low 16 bits.
 */
const hex = (n: number): string => {
  if (n >= 0 && n < 0x40000000) return '0x' + n.toString(16);
  if (!(n >= 0 && n < 2 ** 47) || !Number.isInteger(n)) return '0x' + n.toString(16);
  return '0x' + Math.floor(n / 65536).toString(16) + (n % 65536).toString(16).padStart(4, '0');
};
const MAX_LISTED_INCONSISTENCIES = 100;
/** Smallest chunk that can hold a pool: ngx_pool_t (80) + 1 byte -> request2size(81) = 96. */
const MIN_POOL_CHUNK = 96;
/** Bytes read at each candidate chunk by the scan. */
const SCAN_BYTES = POOL_SCAN_BYTES;

export function analyzePools(space: AddressSpace, opts: AnalyzePoolsOptions): PoolAnalysis {
  const t0 = performance.now();
  const chunks = opts.chunks;
  const symbolizer = opts.symbolizer ?? new Symbolizer(space.modules());
  const objects = space.modules();
  const problems: PoolInconsistency[] = [];
  const kinds: Record<string, number> = {};
  let problemCount = 0;
  const problem = (p: PoolInconsistency) => {
    problemCount++;
    kinds[p.kind] = (kinds[p.kind] ?? 0) + 1;
    if (problems.length < MAX_LISTED_INCONSISTENCIES) problems.push(p);
  };
  let bytesRead = 0;

  // ---- roots ----
  const roots: NginxRoots = readRoots(space, symbolizer, { layouts: opts.layouts });
  for (const p of roots.problems) problem({ kind: p.kind, address: 0, detail: p.detail });
  interface RootRef { owner: PoolOwner; ref: string; rank: number }
  const rootRefs = new Map<number, RootRef[]>();
  const addRoot = (pool: number, owner: PoolOwner, ref: string, rank: number) => {
    if (!pool) return;
    let l = rootRefs.get(pool);
    if (!l) rootRefs.set(pool, (l = []));
    l.push({ owner, ref, rank });
  };
  const cyc = roots.cycle;
  let requests = 0, upstreams = 0, inUse = 0;
  if (cyc) {
    addRoot(cyc.pool, 'cycle', 'ngx_cycle->pool', 0);
    cyc.oldCycles.forEach((o, i) => addRoot(o.pool, 'old-cycle', `ngx_cycle->old_cycle${i ? `(${i + 1})` : ''}->pool`, 1));
    for (const c of cyc.connections) {
      inUse++;
      if (c.requestPool) { requests++; addRoot(c.requestPool, 'request', 'ngx_cycle->connections[].data (request)->pool', 2); }
      if (c.upstreamOf) { upstreams++; addRoot(c.pool, 'upstream', 'ngx_cycle->connections[].pool (upstream)', 3); }
      else addRoot(c.pool, 'connection', 'ngx_cycle->connections[].pool', 4);
    }
  }
  const tRoots = performance.now();

  // ---- scan every in-use chunk for the pool signature ----
  let n = 0;
  let addrs = new Float64Array(1 << 14), sizes = new Float64Array(1 << 14), mm = new Uint8Array(1 << 14);
  const bucketTotals = new Map<number, { chunks: number; bytes: number }>();
  const countBuckets = !opts.histogram;
  let chunksSeen = 0, candidates = 0;
  // Each candidate's first SCAN_BYTES: the header, and for most pools the whole used part of
  // the first block with its large / cleanup records (a read costs about the same either way).
  // Matches' bytes are copied into one arena (views made once the scan is done).
  // (The census's bytes are kept as they are: views of its own copy.)
  const matches: Array<{ addr: number; header: ReturnType<typeof parsePoolHeader>; prefixOff: number; prefixLen: number; prefix?: Uint8Array }> = [];
  let arena = Buffer.allocUnsafe(1 << 16), arenaLen = 0;
  // One reader per underlying ArrayBuffer (the census's copy, the read window), not one per candidate.
  let reader: ByteReader | undefined;
  const examine = (addr: number, chunkSize: number, mmapped: boolean, buf: Uint8Array, off: number, got: number, keep: boolean) => {
    if (got < POOL.sizeof) return;
    if (!reader || reader.bytes.buffer !== buf.buffer) reader = new ByteReader(new Uint8Array(buf.buffer), { label: 'chunk' });
    const r = reader, at = buf.byteOffset + off;
    // Cheap pre-checks on d.end before parsing: d.end - addr must fit the chunk.
    const end = r.u64At(at + POOL.end);
    const size = end - addr;
    if (!(size > POOL.sizeof) || !chunkFitsBlock(size, chunkSize, mmapped)) return;
    const h = parsePoolHeader(r, at);
    if (!poolHeaderPlausible(addr, h)) return;
    if (keep) { matches.push({ addr, header: h, prefixOff: -1, prefixLen: got, prefix: buf.byteLength === got && off === 0 ? buf : buf.subarray(off, off + got) }); return; }
    if (arenaLen + got > arena.length) { const a2 = Buffer.allocUnsafe(Math.max(arena.length * 2, arenaLen + got)); arena.copy(a2, 0, 0, arenaLen); arena = a2; }
    arena.set(buf.subarray(off, off + got), arenaLen);
    matches.push({ addr, header: h, prefixOff: arenaLen, prefixLen: got });
    arenaLen += got;
  };
  chunks.forEach((userAddr, chunkSize, mmapped, poolCandidate, userBytes) => {
    chunksSeen++;
    if (countBuckets) {
      const b = bucketOf(chunkSize).minBytes;
      const e = bucketTotals.get(b);
      if (e) { e.chunks++; e.bytes += chunkSize; } else bucketTotals.set(b, { chunks: 1, bytes: chunkSize });
    }
    // poolCandidate false: the census saw a d.end that fails the scan's first test below.
    if (chunkSize < MIN_POOL_CHUNK || poolCandidate === false) return;
    candidates++;
    if (userBytes && userBytes.byteLength === SCAN_BYTES) { examine(userAddr, chunkSize, mmapped, userBytes, 0, SCAN_BYTES, true); return; }
    if (n === addrs.length) {
      const a2 = new Float64Array(n * 2); a2.set(addrs); addrs = a2;
      const s2 = new Float64Array(n * 2); s2.set(sizes); sizes = s2;
      const m2 = new Uint8Array(n * 2); m2.set(mm); mm = m2;
    }
    addrs[n] = userAddr; sizes[n] = chunkSize; mm[n] = mmapped ? 1 : 0; n++;
  });
  // Candidates the census gave no bytes for are read here.
  readBatched(space, addrs.subarray(0, n), SCAN_BYTES, (i, buf, off, got) => {
    bytesRead += got;
    examine(addrs[i]!, sizes[i]!, mm[i] === 1, buf, off, got, false);
  }, { gap: 4096, maxWindow: 4 << 20 });
  matches.sort((a, b) => a.addr - b.addr);
  for (const m of matches) if (m.prefixOff >= 0) m.prefix = arena.subarray(m.prefixOff, m.prefixOff + m.prefixLen);
  const tScan = performance.now();

  // ---- validate: full read of every candidate and every root pool ----
  // prefix: the scan's bytes at the pool (its first SCAN_BYTES, as read), when it was found by the scan
  const pools = new Map<number, { read: PoolRead; foundBy: NginxPool['foundBy']; prefix: Uint8Array | undefined }>();
  for (const m of matches) {
    const res = readPool(space, m.addr, chunks, m.header, m.prefix);
    if (!res.ok) continue; // signature-alike data, or a pool that changed under us
    for (const p of res.problems) problem(p);
    pools.set(m.addr, { read: res.pool, foundBy: 'scan', prefix: m.prefix });
  }
  for (const [addr, refs] of rootRefs) {
    const have = pools.get(addr);
    if (have) { have.foundBy = 'both'; continue; }
    const res = readPool(space, addr, chunks);
    if (!res.ok) { problem({ kind: 'root-pool-invalid', address: addr, detail: `${refs[0]!.ref} = ${hex(addr)}: ${res.reason}` }); continue; }
    for (const p of res.problems) problem(p);
    pools.set(addr, { read: res.pool, foundBy: 'root', prefix: undefined });
  }
  // A later block of one pool can never be the first block of another.
  const blockOwner = new Map<number, number>();
  const largeOwner = new Map<number, number>();
  for (const [addr, p] of pools) {
    const bl = p.read.blocks;
    for (let i = 1; i < bl.length; i++) blockOwner.set(bl[i]!.address, addr);
  }
  if (blockOwner.size) {
    for (const addr of [...pools.keys()]) {
      if (blockOwner.has(addr)) { problem({ kind: 'pool-overlap', address: addr, detail: `pool ${hex(addr)} is also a block of pool ${hex(blockOwner.get(addr)!)}` }); pools.delete(addr); }
    }
  }
  for (const [addr, p] of pools) {
    const large = p.read.large;
    let kept: PoolLargeAlloc[] | null = null; // copy made at the first shared allocation
    for (let i = 0; i < large.length; i++) {
      const l = large[i]!;
      const other = largeOwner.get(l.address);
      if (other !== undefined) {
        problem({ kind: 'large-shared', address: addr, detail: `large allocation ${hex(l.address)} also listed by pool ${hex(other)}` });
        if (!kept) kept = large.slice(0, i);
        continue;
      }
      largeOwner.set(l.address, addr);
      if (kept) kept.push(l);
    }
    if (kept) p.read.large = kept;
  }
  const tValidate = performance.now();

  // ---- nginx module names by object and symbol ----
  const modules = cyc?.modules ?? [];
  const modulesByObject = new Map<string, NginxModuleInfo[]>();
  for (const m of modules) {
    let l = modulesByObject.get(m.object);
    if (!l) modulesByObject.set(m.object, (l = []));
    l.push(m);
  }
  const nginxModuleFor = (object: Module | undefined, symbol: string | null): string | null => {
    if (!object) return null;
    const mods = modulesByObject.get(object.path) ?? [];
    if (mods.length === 1) return mods[0]!.name;
    if (symbol) {
      // the module whose name (minus "_module") is the longest prefix of the symbol
      let best: string | null = null, bestLen = 0;
      for (const m of mods) {
        const stem = m.name.replace(/_module$/, '');
        if ((symbol === stem || symbol.startsWith(stem + '_')) && stem.length > bestLen) { best = m.name; bestLen = stem.length; }
      }
      return best;
    }
    return null;
  };

  // ---- static references: writable segments of every loaded object ----
  const staticRefs = new Map<number, Array<{ ref: string; module: string | null; symbol: string | null }>>();
  const targets = new PointerTargets(pools.keys());
  const regions = writableRegions(symbolizer, objects);
  // Per region and symbol: the symbol's address, nginx module and display name (looked up once).
  const regionNames = regions.map((r) => basename(r.object.path));
  const symInfo = regions.map(() => new Map<string | null, { runtimeAddr: number | undefined; module: string | null; symbol: string | null }>());
  bytesRead += searchRanges(space, regions.map((r) => r.start), regions.map((r) => r.end - r.start), targets, (ri, slot, value) => {
    const region = regions[ri]!, name = regionNames[ri]!;
    const f = symbolizer.frame(slot);
    const sym = f.function;
    let si = symInfo[ri]!.get(sym);
    if (!si) {
      si = { runtimeAddr: sym ? symbolizer.lookup(sym, { module: name })?.runtimeAddr : undefined, module: nginxModuleFor(region.object, sym), symbol: sym ? `${name}:${sym}` : null };
      symInfo[ri]!.set(sym, si);
    }
    const where = sym ? `${sym}${si.runtimeAddr !== undefined && slot !== si.runtimeAddr ? `+${hex(slot - si.runtimeAddr)}` : ''}` : `${hex(f.offset)}`;
    let l = staticRefs.get(value);
    if (!l) staticRefs.set(value, (l = []));
    l.push({ ref: `${name}:${where}`, module: si.module, symbol: si.symbol });
  });
  const tStatic = performance.now();

  // ---- heap references, for pools neither a root nor static data holds ----
  const heapRefs = new Map<number, string[]>();
  const orphans = [...pools.keys()].filter((a) => !rootRefs.has(a) && !staticRefs.has(a));
  if ((opts.heapReferences ?? 'default') !== 'off' && orphans.length) {
    // chunk -> pool that owns it (block or large allocation), to ignore a pool's references to
    // itself; a block is searched only up to d.last (the rest was never handed out: stale bytes).
    // One map: chunk -> slot; per slot the owning pool (the last one listing the chunk) and the
    // used part when some pool lists it as a block (-1: only as a large allocation).
    // (ownPrefix: the scan's bytes when the chunk is a pool's first block.)
    const own = new Map<number, number>();
    const ownPool: number[] = [], ownUsed: number[] = [];
    const ownPrefix: Array<Uint8Array | undefined> = [];
    const claim = (chunk: number, pool: number, used: number, prefix: Uint8Array | undefined) => {
      const k = own.get(chunk);
      if (k === undefined) { own.set(chunk, ownPool.length); ownPool.push(pool); ownUsed.push(used); ownPrefix.push(prefix); return; }
      ownPool[k] = pool;
      if (used >= 0) ownUsed[k] = used;
      if (prefix) ownPrefix[k] = prefix;
    };
    for (const [addr, p] of pools) {
      const bl = p.read.blocks;
      for (let i = 0; i < bl.length; i++) claim(bl[i]!.address, addr, bl[i]!.used, i === 0 ? p.prefix : undefined);
      for (const l of p.read.large) claim(l.address, addr, -1, undefined);
    }
    const ownerOf = (chunk: number): number | undefined => { const k = own.get(chunk); return k === undefined ? undefined : ownPool[k]; };
    const searchLarge = opts.heapReferences === 'all';
    const orphanTargets = new PointerTargets(orphans);
    const starts: number[] = [], lens: number[] = [];
    // Hits in ascending slot order (as one address-ordered search finds them): the first 8 per pool are kept.
    const hits: Array<{ chunk: number; slot: number; value: number }> = [];
    const onHit = (chunk: number, slot: number, value: number) => {
      if (ownerOf(chunk) === value) return; // referenced from inside its own blocks / large allocations
      hits.push({ chunk, slot, value });
    };
    let preChunk = 0;
    const onPrefixHit = (slot: number, value: number) => onHit(preChunk, slot, value);
    chunks.forEach((userAddr, chunkSize, mmapped) => {
      const k = own.get(userAddr);
      const used = k === undefined ? -1 : ownUsed[k]!;
      if (used >= 0) {
        // A first block whose used part the scan already read: search those bytes.
        const pre = ownPrefix[k!];
        if (pre && used <= pre.byteLength) { preChunk = userAddr; scanForPointers(pre, 0, used, userAddr, orphanTargets, onPrefixHit); return; }
        starts.push(userAddr); lens.push(used); return;
      }
      if (!searchLarge && k !== undefined) return; // a pool's large allocation
      starts.push(userAddr);
      // user area: chunk size minus the header, plus the next chunk's prev_size field for heap chunks
      lens.push(chunkSize - CHUNK_HEADER + (mmapped ? 0 : 8));
    });
    bytesRead += searchRanges(space, starts, lens, orphanTargets, (ci, slot, value) => onHit(starts[ci]!, slot, value));
    hits.sort((a, b) => a.slot - b.slot);
    for (const { chunk, value } of hits) {
      const holder = ownerOf(chunk);
      let l = heapRefs.get(value);
      if (!l) heapRefs.set(value, (l = []));
      if (l.length < 8) l.push(holder !== undefined ? `pool ${hex(holder)}` : `heap chunk ${hex(chunk)}`);
    }
  }
  const tHeap = performance.now();

  // ---- attribute ----
  const out: NginxPool[] = [];
  const cleanupCache = new Map<number, PoolCleanupInfo>();
  const none: never[] = [];
  for (const [addr, { read, foundBy }] of pools) {
    const rc = read.cleanups;
    const cleanups: PoolCleanupInfo[] = new Array(rc.length);
    let creator: string | null = null; // the first cleanup with a module
    for (let i = 0; i < rc.length; i++) {
      const c = rc[i]!;
      let info = cleanupCache.get(c.handler);
      if (!info) {
        const f = c.handler ? symbolizer.frame(c.handler) : { function: null, module: '', offset: 0 };
        const obj = c.handler ? objectAt(objects, c.handler) : undefined;
        info = { handler: c.handler, function: f.function, object: f.module, module: nginxModuleFor(obj, f.function), data: 0 };
        cleanupCache.set(c.handler, info);
      }
      cleanups[i] = { handler: info.handler, function: info.function, object: info.object, module: info.module, data: c.data };
      if (creator === null && info.module) creator = info.module;
    }
    let blockBytes = 0, usedBytes = 0, largeBytes = 0;
    for (const b of read.blocks) { blockBytes += b.chunkSize; usedBytes += b.used; }
    for (const l of read.large) largeBytes += l.chunkSize;
    const pool: NginxPool = {
      address: addr, size: read.size, blocks: read.blocks, large: read.large, cleanups,
      blockBytes, usedBytes, largeBytes, bytes: blockBytes + largeBytes, foundBy,
      owner: 'unreferenced', module: null, creator, referencedFrom: null, references: none,
    };
    const rr = rootRefs.get(addr) ?? none;
    if (rr.length > 1) rr.sort((a, b) => a.rank - b.rank);
    const sr = staticRefs.get(addr) ?? none;
    const hr = heapRefs.get(addr) ?? none;
    const refs: string[] = [];
    if (rr.length === 1) refs.push(rr[0]!.ref);
    else if (rr.length > 1) for (const r of new Set(rr.map((x) => x.ref))) refs.push(r);
    for (const x of sr) refs.push(x.ref);
    for (const x of hr) refs.push(x);
    pool.references = refs;
    if (rr.length) { pool.owner = rr[0]!.owner; pool.referencedFrom = rr[0]!.ref; }
    else if (sr.length) {
      pool.owner = 'static';
      const withModule = sr.find((s) => s.module) ?? sr[0]!;
      pool.module = withModule.module;
      pool.referencedFrom = withModule.symbol ?? withModule.ref.replace(/\+0x[0-9a-f]+$/, '');
    } else if (hr.length) { pool.owner = 'heap'; pool.referencedFrom = hr[0]!.startsWith('pool') ? 'pool' : 'heap chunk'; }
    if (sr.length && !pool.module) pool.module = sr.find((s) => s.module)?.module ?? null;
    out.push(pool);
  }
  // Heap references from another pool's memory name that pool's owner.
  const poolOwnerKind = new Map<number, PoolOwner>();
  if (out.some((p) => p.owner === 'heap')) for (const p of out) poolOwnerKind.set(p.address, p.owner);
  for (const p of out) {
    if (p.owner !== 'heap') continue;
    const via = (heapRefs.get(p.address) ?? []).find((r) => r.startsWith('pool '));
    if (via) p.referencedFrom = `pool of ${poolOwnerKind.get(parseInt(via.slice(5), 16)) ?? 'unknown'}`;
  }
  out.sort((a, b) => b.bytes - a.bytes || a.address - b.address);

  const tAttr = performance.now();
  // ---- groups ----
  // group key (owner, module, creator, referencedFrom): nested maps, no key strings built per pool
  type Level<T> = Map<string | null, T>;
  const groupIndex = new Map<PoolOwner, Level<Level<Level<number>>>>();
  const level = <T>(m: Map<string | null, T>, k: string | null): T => {
    let v = m.get(k);
    if (v === undefined) m.set(k, (v = new Map() as T));
    return v;
  };
  const groups: PoolGroup[] = [];
  const poolGroup: number[] = [];
  for (const p of out) {
    const byRef = level(level(level(groupIndex as Level<Level<Level<Level<number>>>>, p.owner), p.module), p.creator);
    let gi = byRef.get(p.referencedFrom);
    if (gi === undefined) {
      gi = groups.length;
      byRef.set(p.referencedFrom, gi);
      groups.push({ owner: p.owner, module: p.module, creator: p.creator, referencedFrom: p.referencedFrom, pools: 0, blocks: 0, blockBytes: 0, usedBytes: 0, largeAllocs: 0, largeBytes: 0, bytes: 0 });
    }
    const g = groups[gi]!;
    g.pools++; g.blocks += p.blocks.length; g.blockBytes += p.blockBytes; g.usedBytes += p.usedBytes;
    g.largeAllocs += p.large.length; g.largeBytes += p.largeBytes; g.bytes += p.bytes;
    poolGroup.push(gi);
  }
  // sort groups by bytes, remapping indices
  const order = groups.map((_, i) => i).sort((a, b) => groups[b]!.bytes - groups[a]!.bytes || a - b);
  const newIndex = new Int32Array(order.length);
  order.forEach((old, i) => { newIndex[old] = i; });
  const sortedGroups = order.map((i) => groups[i]!);

  // ---- census buckets split by group ----
  const split = new Map<number, PoolBucketSplit>();
  const bySize = new Map<number, PoolBucketSplit>(); // chunk size -> its bucket (few distinct sizes)
  const bucket = (size: number) => {
    let b = bySize.get(size);
    if (b) return b;
    const { minBytes, maxBytes } = bucketOf(size);
    b = split.get(minBytes);
    if (!b) split.set(minBytes, (b = { minBytes, maxBytes, censusInUseChunks: 0, censusInUseBytes: 0, poolChunks: 0, poolBytes: 0, groups: [] }));
    bySize.set(size, b);
    return b;
  };
  const shares = new Map<PoolBucketSplit, Map<number, PoolBucketGroupShare>>();
  const share = (b: PoolBucketSplit, g: number) => {
    let m = shares.get(b);
    if (!m) shares.set(b, (m = new Map()));
    let s = m.get(g);
    if (!s) { b.groups.push((s = { group: g, blockChunks: 0, blockBytes: 0, largeChunks: 0, largeBytes: 0 })); m.set(g, s); }
    return s;
  };
  out.forEach((p, i) => {
    const g = newIndex[poolGroup[i]!]!;
    for (const bl of p.blocks) { const b = bucket(bl.chunkSize); const s = share(b, g); s.blockChunks++; s.blockBytes += bl.chunkSize; b.poolChunks++; b.poolBytes += bl.chunkSize; }
    for (const l of p.large) { const b = bucket(l.chunkSize); const s = share(b, g); s.largeChunks++; s.largeBytes += l.chunkSize; b.poolChunks++; b.poolBytes += l.chunkSize; }
  });
  if (opts.histogram) {
    for (const h of opts.histogram) { const b = split.get(h.minBytes); if (b) { b.censusInUseChunks = h.inUseChunks; b.censusInUseBytes = h.inUseBytes; } }
  } else {
    for (const [min, t] of bucketTotals) { const b = split.get(min); if (b) { b.censusInUseChunks = t.chunks; b.censusInUseBytes = t.bytes; } }
  }
  for (const b of split.values()) {
    b.groups.sort((x, y) => x.group - y.group);
    if (b.poolChunks > b.censusInUseChunks) problem({ kind: 'bucket-exceeds-census', address: 0, detail: `bucket ${b.minBytes}: ${b.poolChunks} pool chunks but the census has ${b.censusInUseChunks} in use` });
  }
  const buckets = [...split.values()].sort((a, b) => a.minBytes - b.minBytes);

  const totals = { pools: out.length, blocks: 0, bytes: 0, largeAllocs: 0, largeBytes: 0, blockBytes: 0, usedBytes: 0 };
  for (const g of sortedGroups) {
    totals.blocks += g.blocks; totals.bytes += g.bytes; totals.largeAllocs += g.largeAllocs; totals.largeBytes += g.largeBytes;
    totals.blockBytes += g.blockBytes; totals.usedBytes += g.usedBytes;
  }
  const tEnd = performance.now();
  return {
    pid: space.pid,
    target: space.description,
    nginxVersion: roots.layouts.version,
    layoutSource: roots.layouts.source,
    layoutDetail: roots.layouts.sourceDetail,
    totals,
    groups: sortedGroups,
    pools: out,
    buckets,
    modules,
    roots: {
      cycle: cyc?.address ?? null, connectionsInUse: inUse, requests, upstreams, oldCycles: cyc?.oldCycles.length ?? 0,
      cycleSymbolSource: roots.cycleSymbolSource ?? null,
    },
    inconsistencies: problems,
    inconsistencyCount: problemCount,
    inconsistencyKinds: kinds,
    stats: {
      elapsedMs: tEnd - t0, chunksSeen, candidates, signatureMatches: matches.length, bytesRead,
      phasesMs: { roots: tRoots - t0, scan: tScan - tRoots, validate: tValidate - tScan, staticRefs: tStatic - tValidate, heapRefs: tHeap - tStatic, attribute: tAttr - tHeap, group: tEnd - tAttr },
    },
  };
}
