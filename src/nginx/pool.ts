// ngx_pool_t: layout, signature, and reading one pool with all its blocks, large
// allocations and cleanups, each validated against the data and the glibc census.
// Layout: nginx src/core/ngx_palloc.h (stable since 1.x; x86-64):
//   ngx_pool_data_t { u_char *last 0; u_char *end 8; ngx_pool_t *next 16; ngx_uint_t failed 24; }   32 bytes
//   ngx_pool_s { d 0; size_t max 32; current 40; chain 48; large 56; cleanup 64; log 72; }        80 bytes
//   ngx_pool_large_s { next 0; alloc 8; }   ngx_pool_cleanup_s { handler 0; data 8; next 16; }
// Behaviour (src/core/ngx_palloc.c): ngx_create_pool(size) = posix_memalign(16, size) (a plain
// malloc for alignment 16), d.last = p + 80, d.end = p + size, max = min(size - 80,
// NGX_MAX_ALLOC_FROM_POOL = pagesize - 1), current = p. Further blocks have the same size and
// only a valid ngx_pool_data_t; their data starts at b + 32. Large allocations are plain
// mallocs recorded in {next, alloc} records inside the pool (alloc = NULL once freed).

import { ByteReader } from '../binary/byte-reader.js';
import type { AddressSpace } from '../target/index.js';
import { CHUNK_HEADER } from './chunks.js';
import type { InUseChunks } from './chunks.js';

export const POOL = { last: 0, end: 8, next: 16, failed: 24, max: 32, current: 40, chain: 48, large: 56, cleanup: 64, log: 72, sizeof: 80 } as const;
export const POOL_DATA_SIZE = 32;
export const POOL_LARGE = { next: 0, alloc: 8, sizeof: 16 } as const;
export const POOL_CLEANUP = { handler: 0, data: 8, next: 16, sizeof: 24 } as const;
/** NGX_MAX_ALLOC_FROM_POOL = ngx_pagesize - 1 (4 KiB pages on x86-64). */
export const MAX_ALLOC_FROM_POOL = 4095;
/** Bounds on target data (a corrupted or concurrently-changing heap must not hang us). */
export const LIMITS = { maxPoolSize: 1 << 30, maxBlocks: 1 << 16, maxLarge: 1 << 20, maxCleanups: 1 << 16, maxFailed: 64 };

/** User-address range (x86-64 canonical user space). */
export function isUserPointer(v: number): boolean { return v >= 0x1000 && v < 0x800000000000; }

/** glibc request2size: the chunk size malloc(n) asks for (x86-64: SIZE_SZ 8, alignment 16, MINSIZE 32). */
export function request2size(n: number): number { return Math.max(32, (n + 8 + 15) & ~15); }

/**
 * Whether a chunk of `chunkSize` could hold a pool block of `size` bytes: the chunk malloc
 * gives for `size` (possibly 16 bytes more when a split remainder was too small to keep),
 * or an mmapped chunk (request rounded up to pages).
 */
export function chunkFitsBlock(size: number, chunkSize: number, mmapped: boolean): boolean {
  const nb = request2size(size);
  if (mmapped) return chunkSize >= nb && chunkSize <= nb + 4096 + CHUNK_HEADER;
  return chunkSize === nb || chunkSize === nb + 16;
}

export interface PoolHeader {
  last: number; end: number; next: number; failed: number; max: number;
  current: number; chain: number; large: number; cleanup: number; log: number;
}

export function parsePoolHeader(r: ByteReader, off: number): PoolHeader {
  return {
    last: r.u64At(off + POOL.last), end: r.u64At(off + POOL.end), next: r.u64At(off + POOL.next),
    failed: r.u64At(off + POOL.failed), max: r.u64At(off + POOL.max), current: r.u64At(off + POOL.current),
    chain: r.u64At(off + POOL.chain), large: r.u64At(off + POOL.large), cleanup: r.u64At(off + POOL.cleanup),
    log: r.u64At(off + POOL.log),
  };
}

/**
 * Pure, cheap test of the first block's header (used to scan every in-use chunk):
 * d.end - pool = size in (80, 1 GiB], d.last in [pool + 80, d.end], max = min(size - 80, 4095),
 * failed small, log a non-null aligned user pointer, the other pointers null or user pointers.
 * Pointers into the pool's own blocks are checked once the blocks are known (readPool).
 */
export function poolHeaderPlausible(addr: number, h: PoolHeader): boolean {
  const size = h.end - addr;
  if (!(size > POOL.sizeof && size <= LIMITS.maxPoolSize)) return false;
  if (h.last < addr + POOL.sizeof || h.last > h.end) return false;
  if (h.max !== Math.min(size - POOL.sizeof, MAX_ALLOC_FROM_POOL)) return false;
  if (h.failed > LIMITS.maxFailed) return false;
  if (!isUserPointer(h.log) || h.log % 8 !== 0) return false;
  if (!isUserPointer(h.current) || h.current % 16 !== 0) return false;
  if (!nullOrAlignedPointer(h.next) || !nullOrAlignedPointer(h.chain) || !nullOrAlignedPointer(h.large) || !nullOrAlignedPointer(h.cleanup)) return false;
  if (h.next === addr) return false;
  return true;
}

function nullOrAlignedPointer(p: number): boolean { return p === 0 || (isUserPointer(p) && p % 8 === 0); }

export interface PoolBlock {
  address: number;
  /** Block size (d.end - block), bytes. */
  size: number;
  /** Bytes handed out or reserved so far (d.last - block), bytes. */
  used: number;
  /** glibc chunk size of the block (from the census). */
  chunkSize: number;
}
export interface PoolLargeAlloc { address: number; chunkSize: number }
export interface PoolCleanup { handler: number; data: number }

export interface PoolInconsistency { kind: string; address: number; detail: string }

export interface PoolRead {
  address: number;
  size: number;
  header: PoolHeader;
  blocks: PoolBlock[];
  large: PoolLargeAlloc[];
  cleanups: PoolCleanup[];
  /** Freed large slots (alloc == NULL) still in the list. */
  freedLargeSlots: number;
}

export type PoolReadResult = { ok: true; pool: PoolRead; problems: PoolInconsistency[] } | { ok: false; reason: string };

const hex = (n: number) => '0x' + n.toString(16);

/** Scratch for block headers and records read from the target (readPool is synchronous): 32 bytes. */
const scratch = Buffer.alloc(Math.max(POOL_DATA_SIZE, POOL_CLEANUP.sizeof));
const scratchReader = new ByteReader(scratch, { label: 'ngx_pool_t record' });
const LIST_FIELDS = ['chain', 'large', 'cleanup'] as const;
/** Bytes of a chain link, a large record, a cleanup record. */
const LIST_RECORD_BYTES = [16, POOL_LARGE.sizeof, POOL_CLEANUP.sizeof] as const;

/** Readers over the ArrayBuffers of callers' prefixes (the census's copy): one per buffer, not one per pool. */
let prefixReader: ByteReader | undefined;

/** Whether [p, p + len) lies inside one of the blocks. */
function inBlocks(blocks: readonly PoolBlock[], p: number, len: number): boolean {
  for (const b of blocks) if (p >= b.address && p + len <= b.address + b.size) return true;
  return false;
}

/** Addresses visited by a list walk: a short array, a Set once past 16 (lists are bounded by LIMITS). */
class Visited {
  private readonly arr = new Float64Array(16);
  private n = 0;
  private set: Set<number> | null = null;
  /** Empties it for the next walk (instances are reused: readPool is synchronous). */
  reset(first?: number): this { this.n = 0; this.set = null; if (first !== undefined) this.arr[this.n++] = first; return this; }
  get size(): number { return this.set ? this.set.size : this.n; }
  has(v: number): boolean {
    if (this.set) return this.set.has(v);
    for (let i = 0; i < this.n; i++) if (this.arr[i] === v) return true;
    return false;
  }
  add(v: number): void {
    if (this.set) this.set.add(v);
    else if (this.has(v)) return;
    else if (this.n < this.arr.length) this.arr[this.n++] = v;
    else { this.set = new Set(this.arr); this.set.add(v); }
  }
}
const visitedBlocks = new Visited(), visitedLarge = new Visited(), visitedCleanups = new Visited();

/**
 * Reads and validates the pool at `addr`: header signature, every block (same size,
 * d.last inside, each an in-use chunk of the right size), current/large/cleanup/chain
 * pointing into its own blocks (or null), the large and cleanup lists (bounded, cycle-safe).
 * `ok: false` means "not a pool" (or no longer one). A pool whose later parts fail is kept
 * with what was valid, and each failure is returned in `problems`.
 */
export function readPool(space: AddressSpace, addr: number, chunks: InUseChunks, header?: PoolHeader, prefix?: Uint8Array): PoolReadResult {
  let h = header;
  if (!h) {
    const buf = Buffer.allocUnsafe(POOL.sizeof);
    if (space.readInto(addr, buf, 0, POOL.sizeof) !== POOL.sizeof) return { ok: false, reason: `header at ${hex(addr)} unreadable` };
    h = parsePoolHeader(new ByteReader(buf, { base: addr, label: 'ngx_pool_t' }), 0);
  }
  if (!poolHeaderPlausible(addr, h)) return { ok: false, reason: `header at ${hex(addr)} fails the ngx_pool_t signature` };
  const size = h.end - addr;
  const firstChunk = chunks.sizeOf(addr);
  if (firstChunk === undefined) return { ok: false, reason: `${hex(addr)} is not an in-use chunk` };
  if (!chunkFitsBlock(size, firstChunk, false) && !chunkFitsBlock(size, firstChunk, true)) {
    return { ok: false, reason: `pool size ${size} does not fit its chunk size ${firstChunk}` };
  }
  const problems: PoolInconsistency[] = [];
  const blocks: PoolBlock[] = [{ address: addr, size, used: h.last - addr, chunkSize: firstChunk }];
  const seen = visitedBlocks.reset(addr);
  const hdr = scratch;
  let next = h.next;
  while (next !== 0) {
    if (blocks.length >= LIMITS.maxBlocks) { problems.push({ kind: 'too-many-blocks', address: addr, detail: `more than ${LIMITS.maxBlocks} blocks` }); break; }
    if (seen.has(next)) { problems.push({ kind: 'block-cycle', address: addr, detail: `d.next loops back to ${hex(next)}` }); break; }
    seen.add(next);
    if (space.readInto(next, hdr, 0, POOL_DATA_SIZE) !== POOL_DATA_SIZE) { problems.push({ kind: 'block-unreadable', address: addr, detail: `block ${hex(next)} unreadable` }); break; }
    const r = scratchReader;
    const last = r.u64At(0), end = r.u64At(8), nxt = r.u64At(16), failed = r.u64At(24);
    if (end - next !== size || last < next + POOL_DATA_SIZE || last > end || failed > LIMITS.maxFailed || (nxt !== 0 && !isUserPointer(nxt))) {
      problems.push({ kind: 'block-invalid', address: addr, detail: `block ${hex(next)}: d.end - block = ${end - next} (pool size ${size}), d.last = ${hex(last)}` });
      break;
    }
    const cs = chunks.sizeOf(next);
    if (cs === undefined || (!chunkFitsBlock(size, cs, false) && !chunkFitsBlock(size, cs, true))) {
      problems.push({ kind: 'block-not-in-use-chunk', address: addr, detail: `block ${hex(next)} is ${cs === undefined ? 'not an in-use chunk' : `a chunk of ${cs} bytes`}` });
      break;
    }
    blocks.push({ address: next, size, used: last - next, chunkSize: cs });
    next = nxt;
  }
  let isBlock = false;
  for (const b of blocks) if (b.address === h.current) { isBlock = true; break; }
  if (!isBlock) {
    // current is always one of the pool's blocks; a mismatch on the first block means "not a pool".
    if (blocks.length === 1 && h.next === 0) return { ok: false, reason: `current ${hex(h.current)} is not a block of ${hex(addr)}` };
    problems.push({ kind: 'current-outside', address: addr, detail: `current ${hex(h.current)} is not one of its ${blocks.length} blocks` });
  }
  for (let k = 0; k < LIST_FIELDS.length; k++) {
    const name = LIST_FIELDS[k]!, len = LIST_RECORD_BYTES[k]!;
    const p = k === 0 ? h.chain : k === 1 ? h.large : h.cleanup;
    if (p !== 0 && !inBlocks(blocks, p, len)) {
      if (blocks.length === 1 && h.next === 0) return { ok: false, reason: `${name} ${hex(p)} lies outside the pool's block` };
      problems.push({ kind: `${name}-outside`, address: addr, detail: `${name} ${hex(p)} lies outside its blocks` });
    }
  }

  // The used part of the first block holds most large / cleanup records: read it once.
  // (`prefix`: bytes at addr the caller already read, e.g. the scan's window.)
  const firstUsed = Math.min(h.last - addr, 1 << 16);
  // `first` holds the block's bytes from offset firstAt.
  let first: ByteReader, firstAt: number, firstGot: number;
  if (prefix && prefix.byteLength >= firstUsed) {
    if (!prefixReader || prefixReader.bytes.buffer !== prefix.buffer) prefixReader = new ByteReader(new Uint8Array(prefix.buffer), { label: 'ngx_pool_t block' });
    first = prefixReader; firstAt = prefix.byteOffset; firstGot = firstUsed;
  } else { const b = Buffer.allocUnsafe(firstUsed); firstGot = space.readInto(addr, b, 0, firstUsed); first = new ByteReader(b, { base: addr, label: 'ngx_pool_t block' }); firstAt = 0; }
  // A record's bytes: in `first` (recReader = first, recOff = its offset) or read into the scratch.
  let recReader = first, recOff = 0;
  const readRecord = (at: number, len: number): boolean => {
    if (at >= addr && at + len <= addr + firstGot) { recReader = first; recOff = firstAt + at - addr; return true; }
    recReader = scratchReader; recOff = 0;
    return space.readInto(at, scratch, 0, len) === len;
  };

  const large: PoolLargeAlloc[] = [];
  let freedLargeSlots = 0;
  const seenRec = visitedLarge.reset();
  for (let l = h.large; l !== 0;) {
    if (seenRec.size >= LIMITS.maxLarge) { problems.push({ kind: 'too-many-large', address: addr, detail: `more than ${LIMITS.maxLarge} large records` }); break; }
    if (seenRec.has(l) || !inBlocks(blocks, l, POOL_LARGE.sizeof)) { problems.push({ kind: 'large-list-broken', address: addr, detail: `large record ${hex(l)} ${seenRec.has(l) ? 'repeats' : 'lies outside the pool'}` }); break; }
    seenRec.add(l);
    if (!readRecord(l, POOL_LARGE.sizeof)) { problems.push({ kind: 'large-list-broken', address: addr, detail: `large record ${hex(l)} unreadable` }); break; }
    const alloc = recReader.u64At(recOff + POOL_LARGE.alloc);
    const nextRec = recReader.u64At(recOff + POOL_LARGE.next);
    if (alloc === 0) freedLargeSlots++;
    else {
      const cs = chunks.sizeOf(alloc);
      if (cs === undefined) problems.push({ kind: 'large-not-in-use-chunk', address: addr, detail: `large allocation ${hex(alloc)} is not an in-use chunk` });
      else large.push({ address: alloc, chunkSize: cs });
    }
    l = nextRec;
  }

  const cleanups: PoolCleanup[] = [];
  const seenCln = visitedCleanups.reset();
  for (let c = h.cleanup; c !== 0;) {
    if (seenCln.size >= LIMITS.maxCleanups) { problems.push({ kind: 'too-many-cleanups', address: addr, detail: `more than ${LIMITS.maxCleanups} cleanups` }); break; }
    if (seenCln.has(c) || !inBlocks(blocks, c, POOL_CLEANUP.sizeof)) { problems.push({ kind: 'cleanup-list-broken', address: addr, detail: `cleanup ${hex(c)} ${seenCln.has(c) ? 'repeats' : 'lies outside the pool'}` }); break; }
    seenCln.add(c);
    if (!readRecord(c, POOL_CLEANUP.sizeof)) { problems.push({ kind: 'cleanup-list-broken', address: addr, detail: `cleanup ${hex(c)} unreadable` }); break; }
    cleanups.push({ handler: recReader.u64At(recOff + POOL_CLEANUP.handler), data: recReader.u64At(recOff + POOL_CLEANUP.data) });
    c = recReader.u64At(recOff + POOL_CLEANUP.next);
  }
  return { ok: true, pool: { address: addr, size, header: h, blocks, large, cleanups, freedLargeSlots }, problems };
}
