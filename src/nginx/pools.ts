// nginx pool analysis: finds every ngx_pool_t of a worker from the roots (cycle,
// connections, requests, upstream connections, old cycles) and by scanning every in-use
// chunk of the glibc census for the pool signature (pool.ts), then attributes each pool:
//   owner        the structure that holds it (cycle, connection, request, upstream, old-cycle),
//                else 'static' (a module's .data/.bss points at it), else 'heap' (another in-use
//                chunk, not one of the pool's own, points at it), else 'unreferenced' (a leak suspect);
//   module       the nginx module (ngx_module_t.name) whose static data refers to it;
//   creator      the nginx module whose code its cleanup handlers are (evidence of who made it),
//                for pools no root owns only (a module's cleanup on the cycle pool names no creator).
// Byte counts are glibc chunk sizes (from the census), so they reconcile with `heap` totals:
// a pool's bytes = its blocks' chunk sizes + its live large allocations' chunk sizes.

import { basename } from 'node:path';
import { ByteReader } from '../binary/byte-reader.js';
import type { Module } from '../model/memory.js';
import { LIFECYCLE_POOL_OWNERS } from '../model/pools.js';
import { Symbolizer } from '../symbols/index.js';
import type { AddressSpace } from '../target/index.js';
import { bucketOf, CHUNK_HEADER, POOL_SCAN_BYTES } from './chunks.js';
import type { InUseChunks } from './chunks.js';
import { HTTP_REQUEST_SIGNATURE, objectAt, readRoots } from './cycle.js';
import type { NginxModuleInfo, NginxRoots } from './cycle.js';
import type { NginxLayouts } from './layouts.js';
import { chunkFitsBlock, POOL, poolSignatureAt, PoolReader } from './pool.js';
import type { PoolBlock, PoolCleanup, PoolInconsistency, PoolLargeAlloc, PoolRead } from './pool.js';
import { readBatched } from './read-batch.js';
import { PointerTargets, scanForPointers, searchRanges, writableRegions } from './references.js';
import { pageAlignedBuffer } from '../target/aligned-buffer.js';
import { grownTo } from '../model/typed-arrays.js';

export type PoolOwner =
  | 'cycle'
  | 'old-cycle'
  | 'connection'
  | 'request'
  | 'upstream'
  | 'static'
  | 'heap'
  | 'unreferenced';

/** A pool cleanup with its handler's symbol, loaded object and nginx module. */
export type PoolCleanupInfo = PoolCleanup;

/** Owners whose pools live as long as their owner: never leak suspects (model/pools.ts). */
export const LIFECYCLE_OWNERS = LIFECYCLE_POOL_OWNERS as ReadonlySet<PoolOwner>;

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
  /**
   * Pools of suspect owners (not LIFECYCLE_OWNERS) only, else null: the first block's bytes
   * [pool + 72, pool + min(d.last - pool, 80 + 4096)) as the pool's read saw them (its `log`
   * pointer and first allocations: a request's ngx_http_request_t with its start time, a
   * connection's peer sockaddr, a module's session). A new pool in the same chunk (glibc hands
   * a freed chunk to the next malloc of its size at once) writes other values there; a leaked
   * pool nobody touches keeps them (analysis/pool-suspects.ts). Not in JSON.
   */
  firstBytes: Uint8Array | null;
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

export interface PoolBucketGroupShare {
  group: number;
  blockChunks: number;
  blockBytes: number;
  largeChunks: number;
  largeBytes: number;
}
export interface PoolBucketSplit {
  minBytes: number;
  maxBytes: number;
  /** The census's in-use chunks in this bucket (mmapped included). */
  censusInUseChunks: number;
  censusInUseBytes: number;
  /** Of which pool blocks and large allocations (all groups). */
  poolChunks: number;
  poolBytes: number;
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
  groups: PoolGroup[];
  /** Every pool, largest bytes first. */
  pools: NginxPool[];
  buckets: PoolBucketSplit[];
  modules: NginxModuleInfo[];
  roots: {
    cycle: number | null;
    connectionsInUse: number;
    requests: number;
    upstreams: number;
    oldCycles: number;
    cycleSymbolSource: string | null;
  };
  /** The first 100 inconsistencies; all are counted in inconsistencyCount and by kind. */
  inconsistencies: PoolInconsistency[];
  inconsistencyCount: number;
  inconsistencyKinds: Record<string, number>;
  stats: {
    elapsedMs: number;
    chunksSeen: number;
    candidates: number;
    signatureMatches: number;
    bytesRead: number;
    phasesMs: {
      roots: number;
      scan: number;
      validate: number;
      staticRefs: number;
      heapRefs: number;
      attribute: number;
      group: number;
    };
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
/** The heap-reference search: bytes read at most per window, and the largest gap between two chunks read in one window. */
const SEARCH_WINDOW = 4 << 20;
const SEARCH_GAP = 4096;
/** The heap-reference search's window, one per process (reused: no multi-MiB allocation per analysis). */
let searchBuffer: Buffer | undefined;
/** Bytes read at each candidate chunk by the scan. */
const SCAN_BYTES = POOL_SCAN_BYTES;

/** Inconsistencies: the first MAX_LISTED_INCONSISTENCIES listed, all counted (in total and by kind). */
class ProblemLog {
  readonly listed: PoolInconsistency[] = [];
  readonly kinds: Record<string, number> = {};
  count = 0;
  add(p: PoolInconsistency): void {
    this.count++;
    this.kinds[p.kind] = (this.kinds[p.kind] ?? 0) + 1;
    if (this.listed.length < MAX_LISTED_INCONSISTENCIES) this.listed.push(p);
  }
}

interface RootRef {
  owner: PoolOwner;
  ref: string;
  rank: number;
}

/** Pools referenced by the roots: pool address -> every root reference to it. */
function rootReferences(roots: NginxRoots): {
  refs: Map<number, RootRef[]>;
  connectionsInUse: number;
  requests: number;
  upstreams: number;
} {
  const refs = new Map<number, RootRef[]>();
  const add = (pool: number, owner: PoolOwner, ref: string, rank: number) => {
    if (!pool) return;
    let l = refs.get(pool);
    if (!l) refs.set(pool, (l = []));
    l.push({ owner, ref, rank });
  };
  const cyc = roots.cycle;
  let requests = 0,
    upstreams = 0,
    connectionsInUse = 0;
  if (cyc) {
    add(cyc.pool, 'cycle', 'ngx_cycle->pool', 0);
    cyc.oldCycles.forEach((o, i) => {
      add(o.pool, 'old-cycle', `ngx_cycle->old_cycle${i ? `(${i + 1})` : ''}->pool`, 1);
    });
    for (const c of cyc.connections) {
      connectionsInUse++;
      if (c.requestPool) {
        requests++;
        add(c.requestPool, 'request', 'ngx_cycle->connections[].data (request)->pool', 2);
      }
      if (c.upstreamOf) {
        upstreams++;
        add(c.pool, 'upstream', 'ngx_cycle->connections[].pool (upstream)', 3);
      } else add(c.pool, 'connection', 'ngx_cycle->connections[].pool', 4);
    }
  }
  return { refs, connectionsInUse, requests, upstreams };
}

/** Chunks whose first bytes carry the pool signature, in address order. */
interface SignatureMatches {
  /** User pointers of the matching chunks. */
  addr: Float64Array;
  /** The bytes read at each match (its first SCAN_BYTES, or fewer where the read stopped). */
  prefix: Uint8Array[];
  chunksSeen: number;
  candidates: number;
  bytesRead: number;
  /** Census bucket totals counted from the chunks (when the caller gave no histogram). */
  bucketTotals: Map<number, { chunks: number; bytes: number }> | null;
}

/**
 * Scans the census's pool candidates (chunks its look at the bytes did not rule out) for the pool
 * signature: the census's bytes where it kept them, one batched read of SCAN_BYTES per other
 * candidate. Each candidate's first SCAN_BYTES hold the header and, for most pools, the whole used
 * part of the first block with its large / cleanup records (a read costs about the same either way).
 */
function scanChunks(space: AddressSpace, chunks: InUseChunks, countBuckets: boolean): SignatureMatches {
  let bucketTotals: Map<number, { chunks: number; bytes: number }> | null = null;
  if (countBuckets) {
    const totals = new Map<number, { chunks: number; bytes: number }>();
    chunks.forEach((_a, chunkSize) => {
      const b = bucketOf(chunkSize).minBytes;
      const e = totals.get(b);
      if (e) {
        e.chunks++;
        e.bytes += chunkSize;
      } else totals.set(b, { chunks: 1, bytes: chunkSize });
    });
    bucketTotals = totals;
  }
  let candidates = 0,
    bytesRead = 0;
  // Candidates the census gave no bytes for (user pointer, chunk size, mmapped), read after the loop.
  let toRead = new Float64Array(1024),
    toReadSize = new Float64Array(1024),
    toReadMm = new Uint8Array(1024);
  let nToRead = 0;
  // Matches: user pointer and bytes. The census's bytes are kept as they are (views of its own
  // copy; arenaOff -1); bytes read here are copied into one arena (views made once the scan is
  // done: the arena may still grow).
  let m = 0;
  let mAddr = new Float64Array(1 << 10),
    mArenaOff = new Float64Array(1 << 10),
    mLen = new Int32Array(1 << 10);
  const mPrefix: Array<Uint8Array | undefined> = [];
  let arena = Buffer.allocUnsafe(1 << 16),
    arenaLen = 0;
  // One reader per underlying ArrayBuffer (the census's copy, the read window), not one per candidate.
  let reader: ByteReader | undefined;
  const examine = (
    addr: number,
    chunkSize: number,
    mmapped: boolean,
    buf: Uint8Array,
    off: number,
    got: number,
    keep: boolean,
  ) => {
    if (got < POOL.sizeof) return;
    if (!reader || reader.bytes.buffer !== buf.buffer)
      reader = new ByteReader(new Uint8Array(buf.buffer), { label: 'chunk' });
    const r = reader,
      at = buf.byteOffset + off;
    // Cheap pre-check on d.end before the signature: d.end - addr must fit the chunk.
    const size = r.u64At(at + POOL.end) - addr;
    if (!(size > POOL.sizeof) || !chunkFitsBlock(size, chunkSize, mmapped)) return;
    if (!poolSignatureAt(r, at, addr)) return;
    if (m === mAddr.length) {
      const c2 = new Float64Array(m * 2);
      c2.set(mAddr);
      mAddr = c2;
      const o2 = new Float64Array(m * 2);
      o2.set(mArenaOff);
      mArenaOff = o2;
      const l2 = new Int32Array(m * 2);
      l2.set(mLen);
      mLen = l2;
    }
    mAddr[m] = addr;
    mLen[m] = got;
    if (keep) {
      mPrefix.push(buf.byteLength === got && off === 0 ? buf : buf.subarray(off, off + got));
      mArenaOff[m++] = -1;
      return;
    }
    if (arenaLen + got > arena.length) {
      const a2 = Buffer.allocUnsafe(Math.max(arena.length * 2, arenaLen + got));
      arena.copy(a2, 0, 0, arenaLen);
      arena = a2;
    }
    arena.set(buf.subarray(off, off + got), arenaLen);
    mPrefix.push(undefined);
    mArenaOff[m++] = arenaLen;
    arenaLen += (got + 7) & ~7; // copies stay 8-aligned, as the pointer search reads them
  };
  chunks.forEachCandidate((addr, chunkSize, mmapped, userBytes) => {
    if (chunkSize < MIN_POOL_CHUNK) return;
    candidates++;
    if (userBytes && userBytes.byteLength === SCAN_BYTES)
      examine(addr, chunkSize, mmapped, userBytes, 0, SCAN_BYTES, true);
    else {
      if (nToRead === toRead.length) {
        toRead = grownTo(toRead, toRead.length * 2);
        toReadSize = grownTo(toReadSize, toRead.length);
        toReadMm = grownTo(toReadMm, toRead.length);
      }
      toRead[nToRead] = addr;
      toReadSize[nToRead] = chunkSize;
      toReadMm[nToRead++] = mmapped ? 1 : 0;
    }
  });
  const fromCensus = m;
  readBatched(
    space,
    toRead.subarray(0, nToRead),
    SCAN_BYTES,
    (i, buf, off, got) => {
      bytesRead += got;
      examine(toRead[i]!, toReadSize[i]!, toReadMm[i] === 1, buf, off, got, false);
    },
    { gap: 4096, maxWindow: 4 << 20 },
  );
  // Address order: merge the two runs, each already in order (matches on the census's bytes, in
  // the loop's order; then those read, in readBatched's address order).
  const order = new Uint32Array(m);
  for (let i = 0, a = 0, b = fromCensus; i < m; i++)
    order[i] = b >= m || (a < fromCensus && mAddr[a]! < mAddr[b]!) ? a++ : b++;
  const addr = new Float64Array(m),
    prefix: Uint8Array[] = new Array(m);
  for (let j = 0; j < m; j++) {
    const i = order[j]!,
      off = mArenaOff[i]!;
    addr[j] = mAddr[i]!;
    prefix[j] = off >= 0 ? arena.subarray(off, off + mLen[i]!) : mPrefix[i]!;
  }
  return { addr, prefix, chunksSeen: chunks.length, candidates, bytesRead, bucketTotals };
}

/**
 * The validated pools, as parallel arrays indexed by pool number (no object per pool until the
 * output), sized for `capacity` pools up front (the scan's matches plus the root pools).
 */
class PoolSet {
  length = 0;
  /** The pool's address: the user pointer of its first block's chunk. */
  readonly addr: Float64Array;
  /** 0 once dropped (a pool that is another pool's block). */
  readonly alive: Uint8Array;
  readonly read: PoolRead[];
  readonly foundBy: Array<NginxPool['foundBy']>;
  /** The scan's bytes at the pool (its first SCAN_BYTES, as read), when it was found by the scan. */
  readonly prefix: Array<Uint8Array | undefined>;
  readonly roots: Array<RootRef[] | undefined>;
  /** chunk (user pointer) -> pool whose first block it is (absent: none). Maps: pools' chunks are few, the heap's many. */
  readonly firstOf = new Map<number, number>();
  /** chunk (user pointer) -> live pool that has it as a block or large allocation (absent: none); set once validated. */
  readonly ownerOf = new Map<number, number>();
  /** chunk (user pointer) -> bytes handed out (d.last - block) when it is a live pool's block (absent: not one). */
  readonly usedOf = new Map<number, number>();
  constructor(capacity: number) {
    this.addr = new Float64Array(capacity);
    this.alive = new Uint8Array(capacity);
    this.read = new Array(capacity);
    this.foundBy = new Array(capacity);
    this.prefix = new Array(capacity);
    this.roots = new Array(capacity);
  }
  add(
    addr: number,
    read: PoolRead,
    foundBy: NginxPool['foundBy'],
    prefix: Uint8Array | undefined,
    roots: RootRef[] | undefined,
  ): void {
    const p = this.length++;
    this.firstOf.set(addr, p);
    this.addr[p] = addr;
    this.alive[p] = 1;
    this.read[p] = read;
    this.foundBy[p] = foundBy;
    this.prefix[p] = prefix;
    this.roots[p] = roots;
  }
  /** Pool numbers still alive, in pool order. */
  live(): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.length; p++) if (this.alive[p]) out.push(p);
    return out;
  }
}

/**
 * Full read of every signature match and every root pool (one PoolReader), then the cross-pool checks:
 * a later block of one pool can never be the first block of another (that one is dropped), and
 * a large allocation listed by two pools stays with the first. Fills the chunk ownership
 * (PoolSet.ownerOf / usedOf) of the pools that remain.
 */
function validatePools(
  space: AddressSpace,
  chunks: InUseChunks,
  matches: SignatureMatches,
  rootRefs: Map<number, RootRef[]>,
  log: ProblemLog,
): PoolSet {
  const pools = new PoolSet(matches.addr.length + rootRefs.size);
  const readProblems: PoolInconsistency[] = [];
  const reader = new PoolReader();
  for (let j = 0; j < matches.addr.length; j++) {
    const addr = matches.addr[j]!,
      prefix = matches.prefix[j]!;
    const res = reader.read(space, addr, chunks, readProblems, prefix, true);
    if (typeof res === 'string') continue; // signature-alike data, or a pool that changed under us
    pools.add(addr, res, 'scan', prefix, undefined);
  }
  rootRefs.forEach((refs, addr) => {
    const inUse = chunks.sizeOf(addr) !== undefined;
    const have = inUse ? (pools.firstOf.get(addr) ?? -1) : -1;
    if (have >= 0) {
      pools.foundBy[have] = 'both';
      pools.roots[have] = refs;
      return;
    }
    const res = inUse ? reader.read(space, addr, chunks, readProblems) : `${hex(addr)} is not an in-use chunk`;
    if (typeof res === 'string') {
      log.add({ kind: 'root-pool-invalid', address: addr, detail: `${refs[0]!.ref} = ${hex(addr)}: ${res}` });
      return;
    }
    pools.add(addr, res, 'root', undefined, refs);
  });
  for (let i = 0; i < readProblems.length; i++) log.add(readProblems[i]!);

  const n = pools.length;
  // chunk -> pool that lists it as a later block (-1: none)
  const laterBlockOf = new Map<number, number>();
  for (let p = 0; p < n; p++) {
    const bl = pools.read[p]!.blocks;
    for (let i = 1; i < bl.length; i++) laterBlockOf.set(bl[i]!.address, p);
  }
  if (laterBlockOf.size) {
    for (let p = 0; p < n; p++) {
      const other = laterBlockOf.get(pools.addr[p]!);
      if (other === undefined) continue;
      log.add({
        kind: 'pool-overlap',
        address: pools.addr[p]!,
        detail: `pool ${hex(pools.addr[p]!)} is also a block of pool ${hex(pools.addr[other]!)}`,
      });
      pools.alive[p] = 0;
    }
  }
  // chunk -> pool that lists it as a large allocation (-1: none)
  const largeOf = new Map<number, number>();
  for (let p = 0; p < n; p++) {
    if (!pools.alive[p]) continue;
    const read = pools.read[p]!,
      large = read.large;
    let kept: PoolLargeAlloc[] | null = null; // copy made at the first shared allocation
    for (let i = 0; i < large.length; i++) {
      const l = large[i]!;
      const k = l.address;
      const other = largeOf.get(k);
      if (other !== undefined) {
        log.add({
          kind: 'large-shared',
          address: pools.addr[p]!,
          detail: `large allocation ${hex(l.address)} also listed by pool ${hex(pools.addr[other]!)}`,
        });
        if (!kept) kept = large.slice(0, i);
        continue;
      }
      largeOf.set(k, p);
      pools.ownerOf.set(k, p);
      if (kept) kept.push(l);
    }
    if (kept) read.large = kept;
    const bl = read.blocks;
    const first = pools.addr[p]!;
    pools.ownerOf.set(first, p);
    pools.usedOf.set(first, bl[0]!.used);
    for (let i = 1; i < bl.length; i++) {
      const k = bl[i]!.address;
      pools.ownerOf.set(k, p);
      pools.usedOf.set(k, bl[i]!.used);
    }
  }
  return pools;
}

/** nginx module names (ngx_module_t.name from cycle->modules) by loaded object and symbol. */
class ModuleNamer {
  private readonly byObject = new Map<string, NginxModuleInfo[]>();
  constructor(modules: readonly NginxModuleInfo[]) {
    for (const m of modules) {
      let l = this.byObject.get(m.object);
      if (!l) this.byObject.set(m.object, (l = []));
      l.push(m);
    }
  }
  /** The module an object's symbol belongs to: the object's only module, else the one whose name (minus "_module") is the longest prefix of the symbol. */
  moduleFor(object: Module | undefined, symbol: string | null): string | null {
    if (!object) return null;
    const mods = this.byObject.get(object.path) ?? [];
    if (mods.length === 1) return mods[0]!.name;
    if (!symbol) return null;
    let best: string | null = null,
      bestLen = 0;
    for (const m of mods) {
      const stem = m.name.replace(/_module$/, '');
      if ((symbol === stem || symbol.startsWith(stem + '_')) && stem.length > bestLen) {
        best = m.name;
        bestLen = stem.length;
      }
    }
    return best;
  }
}

interface StaticRef {
  ref: string;
  module: string | null;
  symbol: string | null;
}

/** References to live pools from the writable segments (.data, .bss) of every loaded object: per pool number. */
function staticReferences(
  space: AddressSpace,
  symbolizer: Symbolizer,
  objects: readonly Module[],
  pools: PoolSet,
  live: readonly number[],
  namer: ModuleNamer,
): { refs: Array<StaticRef[] | undefined>; bytesRead: number } {
  const refs: Array<StaticRef[] | undefined> = new Array(pools.length);
  // target index t -> pool live[t]
  const targets = new PointerTargets(live.map((p) => pools.addr[p]!));
  const regions = writableRegions(symbolizer, objects);
  // Per region and symbol: the symbol's address and size, nginx module and display name (looked
  // up once); per region the last symbol hit, reused while slots stay inside it (a table of
  // pools is one symbol: one lookup for all its hits).
  interface SymInfo {
    sym: string | null;
    start: number;
    end: number;
    runtimeAddr: number | undefined;
    module: string | null;
    symbol: string | null;
  }
  const regionNames = regions.map((r) => basename(r.object.path));
  const symInfo = regions.map(() => new Map<string | null, SymInfo>());
  const lastSym: Array<SymInfo | undefined> = new Array(regions.length);
  const bytesRead = searchRanges(
    space,
    regions.map((r) => r.start),
    regions.map((r) => r.end - r.start),
    targets,
    (ri, slot, t) => {
      const region = regions[ri]!,
        name = regionNames[ri]!;
      let si = lastSym[ri];
      if (!si || slot < si.start || slot >= si.end) {
        const sym = symbolizer.frame(slot).function;
        si = symInfo[ri]!.get(sym);
        if (!si) {
          const resolved = sym ? symbolizer.lookup(sym, { module: name }) : undefined;
          const start = resolved?.runtimeAddr ?? 0;
          si = {
            sym,
            start,
            end: resolved && resolved.size > 0 ? start + resolved.size : 0,
            runtimeAddr: resolved?.runtimeAddr,
            module: namer.moduleFor(region.object, sym),
            symbol: sym ? `${name}:${sym}` : null,
          };
          symInfo[ri]!.set(sym, si);
        }
        lastSym[ri] = si;
      }
      const sym = si.sym;
      const where = sym
        ? `${sym}${si.runtimeAddr !== undefined && slot !== si.runtimeAddr ? `+${hex(slot - si.runtimeAddr)}` : ''}`
        : hex(slot - region.object.loadBias);
      const r: StaticRef = { ref: `${name}:${where}`, module: si.module, symbol: si.symbol };
      const l = refs[live[t]!];
      if (l) l.push(r);
      else refs[live[t]!] = [r];
    },
  );
  return { refs, bytesRead };
}

/**
 * References to `orphans` (pool numbers) from in-use heap chunks other than the pools' own
 * blocks and large allocations. Per pool number: up to 8 holders ("pool 0x..." or "heap chunk
 * 0x..."), in address order, and `via`, the first holder that is a pool (-1: none).
 *
 * How: runs of in-use chunks (gaps of at most SEARCH_GAP bytes, at most SEARCH_WINDOW bytes a
 * run) are read in one piece and all their 8-aligned words looked up (one tight loop per window,
 * no call per chunk); a hit counts only when its slot lies in the searched range of the chunk
 * holding it (found by binary search: hits are rare), so words of free chunks, headers and
 * never-used block tails in the window are ignored. Memory: one window, whatever the heap's size.
 */
function heapReferences(
  space: AddressSpace,
  chunks: InUseChunks,
  pools: PoolSet,
  orphans: readonly number[],
  searchLarge: boolean,
): { refs: Array<string[] | undefined>; via: Int32Array; bytesRead: number } {
  const refs: Array<string[] | undefined> = new Array(pools.length);
  const via = new Int32Array(pools.length).fill(-1);
  // A pool's references to itself (from its own blocks or large allocations) are ignored; a block
  // is searched only up to d.last (the rest was never handed out: stale bytes). The pools' chunks
  // in address order (the chunks come in address order: one cursor, no lookup per chunk).
  const ownAddr = Float64Array.from(pools.ownerOf.keys()).sort();
  const ownPool = new Int32Array(ownAddr.length),
    ownUsed = new Float64Array(ownAddr.length);
  for (let i = 0; i < ownAddr.length; i++) {
    ownPool[i] = pools.ownerOf.get(ownAddr[i]!)!;
    ownUsed[i] = pools.usedOf.get(ownAddr[i]!) ?? -1;
  }
  let oc = 0;
  const targets = new PointerTargets(orphans.map((p) => pools.addr[p]!));
  // The run being gathered: chunks' user pointers, ends (exclusive) of their searched ranges (their
  // user area plus the next chunk's prev_size field for heap chunks, a block's used part, nothing
  // for a large allocation unless searchLarge) and owning pools (-1: none); read as [start, end).
  let cap = 1 << 14;
  let runAddr = new Float64Array(cap),
    runEnd = new Float64Array(cap),
    runOwner = new Int32Array(cap);
  let n = 0,
    start = 0,
    end = 0;
  // Hits in any order (sorted by slot below): the chunk holding the slot, its owner, the slot, the pool.
  const hitChunk: number[] = [],
    hitHolder: number[] = [],
    hitSlot: number[] = [],
    hitPool: number[] = [];
  // The window's hits, checked against the chunk holding the slot.
  const onWindowHit = (_tag: number, slot: number, t: number) => {
    // last chunk of the run whose user pointer is <= slot
    let lo = 0,
      hi = n - 1,
      k = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (runAddr[mid]! <= slot) {
        k = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (k < 0 || slot + 8 > runEnd[k]!) return; // a header, a free chunk, a block's unused tail, a large allocation
    const p = orphans[t]!;
    if (runOwner[k] === p) return; // referenced from inside its own blocks / large allocations
    hitChunk.push(runAddr[k]!);
    hitHolder.push(runOwner[k]!);
    hitSlot.push(slot);
    hitPool.push(p);
  };
  let bytesRead = 0;
  const buf = searchBuffer ?? (searchBuffer = pageAlignedBuffer(SEARCH_WINDOW));
  const flush = () => {
    if (n === 0) return;
    if (end - start > buf.length) {
      // One chunk larger than the window (a big mmapped chunk): its own pieces.
      bytesRead += searchRanges(space, [start], [end - start], targets, onWindowHit);
    } else if (end > start) {
      const got = space.readInto(start, buf, 0, end - start);
      bytesRead += got;
      if (got === end - start) scanForPointers(buf, 0, got, start, targets, onWindowHit, 0);
      else {
        // Partly unreadable run: each chunk on its own, so each gets what exists.
        const s: number[] = [],
          l: number[] = [];
        for (let i = 0; i < n; i++) {
          if (runEnd[i]! > runAddr[i]!) {
            s.push(runAddr[i]!);
            l.push(runEnd[i]! - runAddr[i]!);
          }
        }
        bytesRead += searchRanges(space, s, l, targets, onWindowHit);
      }
    }
    n = 0;
  };
  chunks.forEach((a, size, mmapped) => {
    while (oc < ownAddr.length && ownAddr[oc]! < a) oc++;
    let e: number,
      own = -1;
    if (oc < ownAddr.length && ownAddr[oc] === a) {
      own = ownPool[oc]!;
      const u = ownUsed[oc]!;
      e = u >= 0 ? a + u : searchLarge ? a + size - CHUNK_HEADER + (mmapped ? 0 : 8) : a;
    } else e = a + size - CHUNK_HEADER + (mmapped ? 0 : 8);
    // A run: chunks at most SEARCH_GAP apart, spanning at most SEARCH_WINDOW.
    if (n > 0 && (a > end + SEARCH_GAP || Math.max(end, e) - start > SEARCH_WINDOW)) flush();
    if (n === 0) {
      start = a;
      end = Math.max(a, e);
    } else if (e > end) end = e;
    if (n === cap) {
      cap *= 2;
      runAddr = grownTo(runAddr, runAddr.length * 2);
      runEnd = grownTo(runEnd, runAddr.length);
      runOwner = grownTo(runOwner, runAddr.length);
    }
    runAddr[n] = a;
    runEnd[n] = e;
    runOwner[n++] = own;
  });
  flush();
  const order = new Uint32Array(hitSlot.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  order.sort((a, b) => hitSlot[a]! - hitSlot[b]!);
  for (let j = 0; j < order.length; j++) {
    const i = order[j]!,
      holder = hitHolder[i]!,
      p = hitPool[i]!;
    if (holder >= 0 && via[p]! < 0) via[p] = holder;
    const l = (refs[p] ??= []);
    if (l.length < 8) l.push(holder >= 0 ? `pool ${hex(pools.addr[holder]!)}` : `heap chunk ${hex(hitChunk[i]!)}`);
  }
  return { refs, via, bytesRead };
}

/** The output pools (pool order): sizes, cleanups with their handlers' symbols and modules, owner, module, creator, references. */
function attributePools(
  pools: PoolSet,
  live: readonly number[],
  staticRefs: Array<StaticRef[] | undefined>,
  heap: { refs: Array<string[] | undefined>; via: Int32Array },
  symbolizer: Symbolizer,
  objects: readonly Module[],
  namer: ModuleNamer,
): NginxPool[] {
  const out: NginxPool[] = new Array(live.length);
  const outOf: Array<NginxPool | undefined> = new Array(pools.length);
  const cleanupCache = new Map<
    number,
    { function: string | null; object: string; offset: number; module: string | null }
  >();
  const none: never[] = [];
  for (let j = 0; j < live.length; j++) {
    const p = live[j]!,
      read = pools.read[p]!;
    const cleanups = read.cleanups;
    let creator: string | null = null; // the first cleanup with a module
    for (let i = 0; i < cleanups.length; i++) {
      const c = cleanups[i]!;
      let info = cleanupCache.get(c.handler);
      if (!info) {
        const f = c.handler ? symbolizer.frame(c.handler) : { function: null, module: '', offset: 0 };
        const obj = c.handler ? objectAt(objects, c.handler) : undefined;
        info = { function: f.function, object: f.module, offset: f.offset, module: namer.moduleFor(obj, f.function) };
        cleanupCache.set(c.handler, info);
      }
      c.function = info.function;
      c.object = info.object;
      c.offset = info.offset;
      c.module = info.module;
      if (creator === null && info.module) creator = info.module;
    }
    let blockBytes = 0,
      usedBytes = 0,
      largeBytes = 0;
    for (let i = 0; i < read.blocks.length; i++) {
      const b = read.blocks[i]!;
      blockBytes += b.chunkSize;
      usedBytes += b.used;
    }
    for (let i = 0; i < read.large.length; i++) largeBytes += read.large[i]!.chunkSize;
    const pool: NginxPool = {
      address: pools.addr[p]!,
      size: read.size,
      blocks: read.blocks,
      large: read.large,
      cleanups,
      blockBytes,
      usedBytes,
      largeBytes,
      bytes: blockBytes + largeBytes,
      foundBy: pools.foundBy[p]!,
      owner: 'unreferenced',
      module: null,
      creator,
      referencedFrom: null,
      references: none,
      firstBytes: null,
    };
    const rr = pools.roots[p] ?? none;
    if (rr.length > 1) rr.sort((a, b) => a.rank - b.rank);
    const sr = staticRefs[p] ?? none;
    const hr = heap.refs[p] ?? none;
    // references: root references (distinct), then static, then heap; built at their exact length
    const rootRefs = rr.length > 1 ? [...new Set(rr.map((x) => x.ref))] : null;
    const nRoot = rootRefs ? rootRefs.length : rr.length;
    const refs: string[] = new Array(nRoot + sr.length + hr.length);
    let k = 0;
    for (let i = 0; i < nRoot; i++) refs[k++] = rootRefs ? rootRefs[i]! : rr[i]!.ref;
    for (let i = 0; i < sr.length; i++) refs[k++] = sr[i]!.ref;
    for (let i = 0; i < hr.length; i++) refs[k++] = hr[i]!;
    pool.references = refs;
    // the first static reference from a known nginx module's data, else the first one
    let withModule: StaticRef | undefined;
    for (let i = 0; i < sr.length && !withModule; i++) if (sr[i]!.module) withModule = sr[i];
    // A root-owned pool (cycle, connection, request) was made by nginx itself: a module's cleanup
    // handler on it (ngx_http_lua_module registers one on the cycle pool) does not make it the creator.
    if (rr.length) {
      pool.owner = rr[0]!.owner;
      pool.referencedFrom = rr[0]!.ref;
      pool.creator = null;
    } else if (sr.length) {
      pool.owner = 'static';
      const ref = withModule ?? sr[0]!;
      pool.referencedFrom = ref.symbol ?? ref.ref.replace(/\+0x[0-9a-f]+$/, '');
    } else if (hr.length) pool.owner = 'heap';
    if (withModule) pool.module = withModule.module;
    if (!LIFECYCLE_OWNERS.has(pool.owner)) pool.firstBytes = read.firstBytes;
    out[j] = pool;
    outOf[p] = pool;
  }
  // Heap references from another pool's memory name that pool's owner.
  for (let j = 0; j < live.length; j++) {
    const p = live[j]!,
      pool = outOf[p]!;
    if (pool.owner !== 'heap') continue;
    const v = heap.via[p]!;
    pool.referencedFrom = v >= 0 ? `pool of ${outOf[v]?.owner ?? 'unknown'}` : 'heap chunk';
  }
  return out;
}

/** Groups by (owner, module, creator, referencedFrom), largest bytes first; groupOf[i]: the group of pools[i]. */
function groupPools(pools: readonly NginxPool[]): { groups: PoolGroup[]; groupOf: Int32Array } {
  // group key: nested maps, no key strings built per pool
  type Level<T> = Map<string | null, T>;
  const index = new Map<PoolOwner, Level<Level<Level<number>>>>();
  const level = <T>(m: Map<string | null, T>, k: string | null): T => {
    let v = m.get(k);
    if (v === undefined) m.set(k, (v = new Map() as T));
    return v;
  };
  const groups: PoolGroup[] = [];
  const first = new Int32Array(pools.length);
  for (let i = 0; i < pools.length; i++) {
    const p = pools[i]!;
    const byRef = level(level(level(index as Level<Level<Level<Level<number>>>>, p.owner), p.module), p.creator);
    let gi = byRef.get(p.referencedFrom);
    if (gi === undefined) {
      gi = groups.length;
      byRef.set(p.referencedFrom, gi);
      groups.push({
        owner: p.owner,
        module: p.module,
        creator: p.creator,
        referencedFrom: p.referencedFrom,
        pools: 0,
        blocks: 0,
        blockBytes: 0,
        usedBytes: 0,
        largeAllocs: 0,
        largeBytes: 0,
        bytes: 0,
      });
    }
    const g = groups[gi]!;
    g.pools++;
    g.blocks += p.blocks.length;
    g.blockBytes += p.blockBytes;
    g.usedBytes += p.usedBytes;
    g.largeAllocs += p.large.length;
    g.largeBytes += p.largeBytes;
    g.bytes += p.bytes;
    first[i] = gi;
  }
  // sort groups by bytes, remapping indices
  const order = new Uint32Array(groups.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  order.sort((a, b) => groups[b]!.bytes - groups[a]!.bytes || a - b);
  const rank = new Int32Array(order.length);
  for (let i = 0; i < order.length; i++) rank[order[i]!] = i;
  const groupOf = new Int32Array(pools.length);
  for (let i = 0; i < pools.length; i++) groupOf[i] = rank[first[i]!]!;
  return { groups: Array.from(order, (i) => groups[i]!), groupOf };
}

/** How the groups split the census's histogram buckets: per bucket, the pool blocks and large allocations of each group. */
function splitBuckets(
  pools: readonly NginxPool[],
  groupOf: Int32Array,
  census: ReadonlyArray<{ minBytes: number; inUseChunks: number; inUseBytes: number }>,
  log: ProblemLog,
): PoolBucketSplit[] {
  const split = new Map<number, PoolBucketSplit>();
  const bySize = new Map<number, PoolBucketSplit>(); // chunk size -> its bucket (few distinct sizes)
  const bucket = (size: number) => {
    let b = bySize.get(size);
    if (b) return b;
    const { minBytes, maxBytes } = bucketOf(size);
    b = split.get(minBytes);
    if (!b)
      split.set(
        minBytes,
        (b = {
          minBytes,
          maxBytes,
          censusInUseChunks: 0,
          censusInUseBytes: 0,
          poolChunks: 0,
          poolBytes: 0,
          groups: [],
        }),
      );
    bySize.set(size, b);
    return b;
  };
  const shares = new Map<PoolBucketSplit, Map<number, PoolBucketGroupShare>>();
  const share = (b: PoolBucketSplit, g: number) => {
    let m = shares.get(b);
    if (!m) shares.set(b, (m = new Map()));
    let s = m.get(g);
    if (!s) {
      b.groups.push((s = { group: g, blockChunks: 0, blockBytes: 0, largeChunks: 0, largeBytes: 0 }));
      m.set(g, s);
    }
    return s;
  };
  for (let i = 0; i < pools.length; i++) {
    const p = pools[i]!,
      g = groupOf[i]!;
    for (let k = 0; k < p.blocks.length; k++) {
      const cs = p.blocks[k]!.chunkSize,
        b = bucket(cs),
        s = share(b, g);
      s.blockChunks++;
      s.blockBytes += cs;
      b.poolChunks++;
      b.poolBytes += cs;
    }
    for (let k = 0; k < p.large.length; k++) {
      const cs = p.large[k]!.chunkSize,
        b = bucket(cs),
        s = share(b, g);
      s.largeChunks++;
      s.largeBytes += cs;
      b.poolChunks++;
      b.poolBytes += cs;
    }
  }
  for (const h of census) {
    const b = split.get(h.minBytes);
    if (b) {
      b.censusInUseChunks = h.inUseChunks;
      b.censusInUseBytes = h.inUseBytes;
    }
  }
  const buckets = [...split.values()].sort((a, b) => a.minBytes - b.minBytes);
  for (const b of buckets) {
    b.groups.sort((x, y) => x.group - y.group);
    if (b.poolChunks > b.censusInUseChunks)
      log.add({
        kind: 'bucket-exceeds-census',
        address: 0,
        detail: `bucket ${b.minBytes}: ${b.poolChunks} pool chunks but the census has ${b.censusInUseChunks} in use`,
      });
  }
  return buckets;
}

export function analyzePools(space: AddressSpace, opts: AnalyzePoolsOptions): PoolAnalysis {
  const t0 = performance.now();
  const chunks = opts.chunks;
  const symbolizer = opts.symbolizer ?? new Symbolizer(space.modules());
  const objects = space.modules();
  const log = new ProblemLog();

  const roots: NginxRoots = readRoots(space, symbolizer, { layouts: opts.layouts });
  for (const p of roots.problems) log.add({ kind: p.kind, address: 0, detail: p.detail });
  const rootRefs = rootReferences(roots);
  const tRoots = performance.now();

  const matches = scanChunks(space, chunks, !opts.histogram);
  const tScan = performance.now();

  const pools = validatePools(space, chunks, matches, rootRefs.refs, log);
  const live = pools.live();
  // The roots again: a live worker creates request / connection pools while the census, the
  // roots and the scan are read at different moments, so a pool created after the first roots
  // read is referenced only in a later one. Its references count too (never a leak suspect).
  if (space.kind === 'live' && roots.cycle) {
    const again = rootReferences(readRoots(space, symbolizer, { layouts: roots.layouts }));
    for (const p of live) if (!pools.roots[p]) pools.roots[p] = again.refs.get(pools.addr[p]!);
    // A request pool by structure: ngx_http_alloc_request makes the ngx_http_request_t the pool's
    // first allocation (at pool + sizeof(ngx_pool_t)), with r->pool == pool and r->signature
    // "HTTP". Such a pool is a request's, being set up or torn down when no connection holds it
    // (the same chunk serves request after request): never a leak suspect.
    const R = roots.layouts.ngx_http_request_t;
    const buf = Buffer.alloc(Math.max(R.signature, R.pool) + 8);
    for (const p of live) {
      if (pools.roots[p]) continue;
      const addr = pools.addr[p]!;
      if (space.readInto(addr + POOL.sizeof, buf, 0, buf.length) !== buf.length) continue;
      const poolField = buf.readUInt32LE(R.pool + 4) * 4294967296 + buf.readUInt32LE(R.pool);
      if (buf.readUInt32LE(R.signature) === HTTP_REQUEST_SIGNATURE && poolField === addr) {
        pools.roots[p] = [
          { owner: 'request', ref: 'ngx_http_request_t at the pool start (request in flight)', rank: 2 },
        ];
      }
    }
  }
  const tValidate = performance.now();

  const modules = roots.cycle?.modules ?? [];
  const namer = new ModuleNamer(modules);
  const statics = staticReferences(space, symbolizer, objects, pools, live, namer);
  const tStatic = performance.now();

  // Heap references, for pools neither a root nor static data holds.
  const orphans = live.filter((p) => !pools.roots[p] && !statics.refs[p]);
  const mode = opts.heapReferences ?? 'default';
  const heap =
    mode !== 'off' && orphans.length
      ? heapReferences(space, chunks, pools, orphans, mode === 'all')
      : { refs: [], via: new Int32Array(0), bytesRead: 0 };
  const tHeap = performance.now();

  const out = attributePools(pools, live, statics.refs, heap, symbolizer, objects, namer);
  out.sort((a, b) => b.bytes - a.bytes || a.address - b.address);
  const tAttr = performance.now();

  const { groups, groupOf } = groupPools(out);
  const censusBuckets =
    opts.histogram ??
    [...matches.bucketTotals!].map(([minBytes, t]) => ({ minBytes, inUseChunks: t.chunks, inUseBytes: t.bytes }));
  const buckets = splitBuckets(out, groupOf, censusBuckets, log);
  const totals = { pools: out.length, blocks: 0, bytes: 0, largeAllocs: 0, largeBytes: 0, blockBytes: 0, usedBytes: 0 };
  for (const g of groups) {
    totals.blocks += g.blocks;
    totals.bytes += g.bytes;
    totals.largeAllocs += g.largeAllocs;
    totals.largeBytes += g.largeBytes;
    totals.blockBytes += g.blockBytes;
    totals.usedBytes += g.usedBytes;
  }
  const tEnd = performance.now();
  const cyc = roots.cycle;
  return {
    pid: space.pid,
    target: space.description,
    nginxVersion: roots.layouts.version,
    layoutSource: roots.layouts.source,
    layoutDetail: roots.layouts.sourceDetail,
    totals,
    groups,
    pools: out,
    buckets,
    modules,
    roots: {
      cycle: cyc?.address ?? null,
      connectionsInUse: rootRefs.connectionsInUse,
      requests: rootRefs.requests,
      upstreams: rootRefs.upstreams,
      oldCycles: cyc?.oldCycles.length ?? 0,
      cycleSymbolSource: roots.cycleSymbolSource ?? null,
    },
    inconsistencies: log.listed,
    inconsistencyCount: log.count,
    inconsistencyKinds: log.kinds,
    stats: {
      elapsedMs: tEnd - t0,
      chunksSeen: matches.chunksSeen,
      candidates: matches.candidates,
      signatureMatches: matches.addr.length,
      bytesRead: matches.bytesRead + statics.bytesRead + heap.bytesRead,
      phasesMs: {
        roots: tRoots - t0,
        scan: tScan - tRoots,
        validate: tValidate - tScan,
        staticRefs: tStatic - tValidate,
        heapRefs: tHeap - tStatic,
        attribute: tAttr - tHeap,
        group: tEnd - tAttr,
      },
    },
  };
}
