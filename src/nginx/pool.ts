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
import { CHUNK_HEADER, POOL_HINT } from './chunks.js';
import type { InUseChunks } from './chunks.js';

export const POOL = {
  last: 0,
  end: 8,
  next: 16,
  failed: 24,
  max: 32,
  current: 40,
  chain: 48,
  large: 56,
  cleanup: 64,
  log: 72,
  sizeof: 80,
} as const;
export const POOL_DATA_SIZE = 32;
export const POOL_LARGE = { next: 0, alloc: 8, sizeof: 16 } as const;
export const POOL_CLEANUP = { handler: 0, data: 8, next: 16, sizeof: 24 } as const;
/** NGX_MAX_ALLOC_FROM_POOL = ngx_pagesize - 1 (4 KiB pages on x86-64). */
export const MAX_ALLOC_FROM_POOL = 4095;
/** Bounds on target data (a corrupted or concurrently-changing heap must not hang us). */
export const LIMITS = {
  maxPoolSize: 1 << 30,
  maxBlocks: 1 << 16,
  maxLarge: 1 << 20,
  maxCleanups: 1 << 16,
  maxFailed: 64,
};

/** User-address range (x86-64 canonical user space). */
export function isUserPointer(v: number): boolean {
  return v >= 0x1000 && v < 0x800000000000;
}

/** glibc request2size: the chunk size malloc(n) asks for (x86-64: SIZE_SZ 8, alignment 16, MINSIZE 32). */
export function request2size(n: number): number {
  return Math.max(32, (n + 8 + 15) & ~15);
}

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

/**
 * The pool-candidate test on a chunk's bytes as the census walk reads them (ChunkPeek.tag):
 * the chunk's header is at window word `w`, so its user data's second word (d.end, user + 8) is
 * at words w + 6, w + 7 (little-endian). Candidate iff 80 < d.end - userAddr <= chunkSize.
 */
export function poolCandidateTag(words: Uint32Array, w: number, userAddr: number, chunkSize: number): number {
  const d = words[w + 7]! * 4294967296 + words[w + 6]! - userAddr;
  return d > POOL.sizeof && d <= chunkSize ? POOL_HINT.yes : POOL_HINT.no;
}

/**
 * Pure, cheap test of a first block's header at r[off ..] for a pool at `addr` (used to scan
 * every in-use chunk; reads the fields in place, no object per candidate):
 * d.end - pool = size in (80, 1 GiB], d.last in [pool + 80, d.end], max = min(size - 80, 4095),
 * failed small, log a non-null aligned user pointer, the other pointers null or user pointers.
 * Pointers into the pool's own blocks are checked once the blocks are known (readPool).
 */
export function poolSignatureAt(r: ByteReader, off: number, addr: number): boolean {
  const end = r.u64At(off + POOL.end);
  const size = end - addr;
  if (!(size > POOL.sizeof && size <= LIMITS.maxPoolSize)) return false;
  const last = r.u64At(off + POOL.last);
  if (last < addr + POOL.sizeof || last > end) return false;
  if (r.u64At(off + POOL.max) !== Math.min(size - POOL.sizeof, MAX_ALLOC_FROM_POOL)) return false;
  if (r.u64At(off + POOL.failed) > LIMITS.maxFailed) return false;
  const log = r.u64At(off + POOL.log);
  if (!isUserPointer(log) || log % 8 !== 0) return false;
  const current = r.u64At(off + POOL.current);
  if (!isUserPointer(current) || current % 16 !== 0) return false;
  const next = r.u64At(off + POOL.next);
  if (!nullOrAlignedPointer(next) || next === addr) return false;
  return (
    nullOrAlignedPointer(r.u64At(off + POOL.chain)) &&
    nullOrAlignedPointer(r.u64At(off + POOL.large)) &&
    nullOrAlignedPointer(r.u64At(off + POOL.cleanup))
  );
}

function nullOrAlignedPointer(p: number): boolean {
  return p === 0 || (isUserPointer(p) && p % 8 === 0);
}

export interface PoolBlock {
  address: number;
  /** Block size (d.end - block), bytes. */
  size: number;
  /** Bytes handed out or reserved so far (d.last - block), bytes. */
  used: number;
  /** glibc chunk size of the block (from the census). */
  chunkSize: number;
}
export interface PoolLargeAlloc {
  address: number;
  chunkSize: number;
}
/**
 * One cleanup record: its handler and data; `function`, `object`, `offset` and `module` (the
 * handler's symbol, loaded object, address in that object's file and nginx module) are filled
 * in by the pool attribution (pools.ts), declared here so the record is created once in its final shape.
 */
export interface PoolCleanup {
  handler: number;
  function: string | null;
  object: string;
  offset: number;
  module: string | null;
  data: number;
}

export interface PoolInconsistency {
  kind: string;
  address: number;
  detail: string;
}

export interface PoolRead {
  address: number;
  size: number;
  blocks: PoolBlock[];
  large: PoolLargeAlloc[];
  cleanups: PoolCleanup[];
  /** Freed large slots (alloc == NULL) still in the list. */
  freedLargeSlots: number;
  /**
   * A copy of the first block's bytes [pool + 72, pool + min(d.last - pool, 80 + 4096)) as this
   * read saw them (the log pointer, then the first allocations): the pool's incarnation
   * fingerprint (NginxPool.firstBytes); null when not read whole.
   */
  firstBytes: Uint8Array | null;
}

const hex = (n: number) => '0x' + n.toString(16);

/** Bytes read at a pool the caller has no bytes for: its header and most pools' whole used part. */
const FIRST_READ = 4096;
const LIST_FIELDS = ['chain', 'large', 'cleanup'] as const;
/** Bytes of a chain link, a large record, a cleanup record. */
const LIST_RECORD_BYTES = [16, POOL_LARGE.sizeof, POOL_CLEANUP.sizeof] as const;
/** Largest used part of a first block read in one piece, bytes. */
const MAX_FIRST_READ = 1 << 16;
/** Bytes of first allocations kept per pool as its fingerprint (after the 8-byte log pointer). */
export const FINGERPRINT_BYTES = 4096;

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
  /** Empties it for the next walk (instances are reused by their PoolReader). */
  reset(first?: number): this {
    this.n = 0;
    this.set = null;
    if (first !== undefined) this.arr[this.n++] = first;
    return this;
  }
  get size(): number {
    return this.set ? this.set.size : this.n;
  }
  has(v: number): boolean {
    if (this.set) return this.set.has(v);
    for (let i = 0; i < this.n; i++) if (this.arr[i] === v) return true;
    return false;
  }
  add(v: number): void {
    if (this.set) this.set.add(v);
    else if (this.has(v)) return;
    else if (this.n < this.arr.length) this.arr[this.n++] = v;
    else {
      this.set = new Set(this.arr);
      this.set.add(v);
    }
  }
}

const H_LAST = 0,
  H_END = 1,
  H_NEXT = 2,
  H_CURRENT = 3,
  H_CHAIN = 4,
  H_LARGE = 5,
  H_CLEANUP = 6;
function readHeader(r: ByteReader, off: number, h: Float64Array): void {
  h[H_LAST] = r.u64At(off + POOL.last);
  h[H_END] = r.u64At(off + POOL.end);
  h[H_NEXT] = r.u64At(off + POOL.next);
  h[H_CURRENT] = r.u64At(off + POOL.current);
  h[H_CHAIN] = r.u64At(off + POOL.chain);
  h[H_LARGE] = r.u64At(off + POOL.large);
  h[H_CLEANUP] = r.u64At(off + POOL.cleanup);
}

/**
 * Reads pools one after another with reused scratch (buffers, readers, visited sets): one
 * PoolReader per analysis, so reads of different analyses never share state (reentrant), and
 * pools of one analysis allocate only their results. `read` is synchronous.
 */
export class PoolReader {
  /** Scratch for block headers and records read from the target: 32 bytes. */
  private readonly scratch = Buffer.alloc(Math.max(POOL_DATA_SIZE, POOL_CLEANUP.sizeof));
  private readonly scratchReader = new ByteReader(this.scratch, { label: 'ngx_pool_t record' });
  /** The header and used part of a first block read from the target (grows to 64 KiB at most). */
  private firstScratch = Buffer.alloc(FIRST_READ);
  private firstScratchReader = new ByteReader(this.firstScratch, { label: 'ngx_pool_t block' });
  /** Reader over the ArrayBuffer of callers' prefixes (the census's copy): one per buffer, not one per pool. */
  private prefixReader: ByteReader | undefined;
  private readonly visitedBlocks = new Visited();
  private readonly visitedLarge = new Visited();
  private readonly visitedCleanups = new Visited();
  /** The fields of the header being read (numbers in a Float64Array: kept unboxed). */
  private readonly header = new Float64Array(7);
  /** The bytes of the current pool's first block's used part: [firstAddr, firstAddr + firstGot) at first[firstAt ..]. */
  private first: ByteReader = this.scratchReader;
  private firstAt = 0;
  private firstGot = 0;
  private firstAddr = 0;
  /** Offset in the reader recordReader returned of the record asked for. */
  private recOff = 0;

  /** Reader holding the record [at, at + len) (at this.recOff): `first` when it lies there, else the scratch after a read; null when unreadable. */
  private recordReader(space: AddressSpace, at: number, len: number): ByteReader | null {
    if (at >= this.firstAddr && at + len <= this.firstAddr + this.firstGot) {
      this.recOff = this.firstAt + at - this.firstAddr;
      return this.first;
    }
    this.recOff = 0;
    return space.readInto(at, this.scratch, 0, len) === len ? this.scratchReader : null;
  }

  /** See readPool. */
  read(
    space: AddressSpace,
    addr: number,
    chunks: InUseChunks,
    problems: PoolInconsistency[],
    prefix?: Uint8Array,
    signatureChecked = false,
  ): PoolRead | string {
    const scratch = this.scratch,
      scratchReader = this.scratchReader;
    // ---- header: the prefix or one read of the first block's start ----
    let hr: ByteReader, ho: number, hgot: number;
    if (prefix && prefix.byteLength >= POOL.sizeof) {
      if (!this.prefixReader || this.prefixReader.bytes.buffer !== prefix.buffer)
        this.prefixReader = new ByteReader(new Uint8Array(prefix.buffer), { label: 'ngx_pool_t block' });
      hr = this.prefixReader;
      ho = prefix.byteOffset;
      hgot = prefix.byteLength;
    } else {
      // The header and, in the same read, the start of the used part (most pools use < 4 KiB).
      hgot = space.readInto(addr, this.firstScratch, 0, FIRST_READ);
      if (hgot < POOL.sizeof) return `header at ${hex(addr)} unreadable`;
      hr = this.firstScratchReader;
      ho = 0;
    }
    if (!(signatureChecked && hr === this.prefixReader) && !poolSignatureAt(hr, ho, addr))
      return `header at ${hex(addr)} fails the ngx_pool_t signature`;
    const header = this.header;
    readHeader(hr, ho, header);
    const hLast = header[H_LAST]!,
      hEnd = header[H_END]!,
      hNext = header[H_NEXT]!;
    const hCurrent = header[H_CURRENT]!,
      hChain = header[H_CHAIN]!,
      hLarge = header[H_LARGE]!,
      hCleanup = header[H_CLEANUP]!;
    const size = hEnd - addr;
    const firstChunk = chunks.sizeOf(addr);
    if (firstChunk === undefined) return `${hex(addr)} is not an in-use chunk`;
    if (!chunkFitsBlock(size, firstChunk, false) && !chunkFitsBlock(size, firstChunk, true)) {
      return `pool size ${size} does not fit its chunk size ${firstChunk}`;
    }
    const problemsBefore = problems.length;

    // ---- the used part of the first block holds most large / cleanup records: have it in one piece ----
    const firstUsed = Math.min(hLast - addr, MAX_FIRST_READ);
    this.firstAddr = addr;
    if (hgot >= firstUsed) {
      this.first = hr;
      this.firstAt = ho;
      this.firstGot = firstUsed;
    } else {
      if (this.firstScratch.length < firstUsed) {
        this.firstScratch = Buffer.alloc(Math.min(MAX_FIRST_READ, Math.max(firstUsed, this.firstScratch.length * 2)));
        this.firstScratchReader = new ByteReader(this.firstScratch, { label: 'ngx_pool_t block' });
      }
      this.first = this.firstScratchReader;
      this.firstAt = 0;
      this.firstGot = space.readInto(addr, this.firstScratch, 0, firstUsed);
    }

    // ---- blocks ----
    const blocks: PoolBlock[] = [{ address: addr, size, used: hLast - addr, chunkSize: firstChunk }];
    const seen = this.visitedBlocks.reset(addr);
    let next = hNext;
    while (next !== 0) {
      if (blocks.length >= LIMITS.maxBlocks) {
        problems.push({ kind: 'too-many-blocks', address: addr, detail: `more than ${LIMITS.maxBlocks} blocks` });
        break;
      }
      if (seen.has(next)) {
        problems.push({ kind: 'block-cycle', address: addr, detail: `d.next loops back to ${hex(next)}` });
        break;
      }
      seen.add(next);
      if (space.readInto(next, scratch, 0, POOL_DATA_SIZE) !== POOL_DATA_SIZE) {
        problems.push({ kind: 'block-unreadable', address: addr, detail: `block ${hex(next)} unreadable` });
        break;
      }
      const r = scratchReader;
      const last = r.u64At(0),
        end = r.u64At(8),
        nxt = r.u64At(16),
        failed = r.u64At(24);
      if (
        end - next !== size ||
        last < next + POOL_DATA_SIZE ||
        last > end ||
        failed > LIMITS.maxFailed ||
        (nxt !== 0 && !isUserPointer(nxt))
      ) {
        problems.push({
          kind: 'block-invalid',
          address: addr,
          detail: `block ${hex(next)}: d.end - block = ${end - next} (pool size ${size}), d.last = ${hex(last)}`,
        });
        break;
      }
      const cs = chunks.sizeOf(next);
      if (cs === undefined || (!chunkFitsBlock(size, cs, false) && !chunkFitsBlock(size, cs, true))) {
        problems.push({
          kind: 'block-not-in-use-chunk',
          address: addr,
          detail: `block ${hex(next)} is ${cs === undefined ? 'not an in-use chunk' : `a chunk of ${cs} bytes`}`,
        });
        break;
      }
      blocks.push({ address: next, size, used: last - next, chunkSize: cs });
      next = nxt;
    }
    // A pool of one block (d.next null) that fails these is "not a pool"; a longer one is kept with the problem.
    const single = blocks.length === 1 && hNext === 0;
    let isBlock = false;
    for (const b of blocks)
      if (b.address === hCurrent) {
        isBlock = true;
        break;
      }
    if (!isBlock) {
      // current is always one of the pool's blocks.
      if (single) {
        problems.length = problemsBefore;
        return `current ${hex(hCurrent)} is not a block of ${hex(addr)}`;
      }
      problems.push({
        kind: 'current-outside',
        address: addr,
        detail: `current ${hex(hCurrent)} is not one of its ${blocks.length} blocks`,
      });
    }
    for (let k = 0; k < LIST_FIELDS.length; k++) {
      const name = LIST_FIELDS[k]!,
        len = LIST_RECORD_BYTES[k]!;
      const p = k === 0 ? hChain : k === 1 ? hLarge : hCleanup;
      if (p !== 0 && !inBlocks(blocks, p, len)) {
        if (single) {
          problems.length = problemsBefore;
          return `${name} ${hex(p)} lies outside the pool's block`;
        }
        problems.push({ kind: `${name}-outside`, address: addr, detail: `${name} ${hex(p)} lies outside its blocks` });
      }
    }

    // ---- large allocations ----
    // Lists start as one-element literals (exact size: most pools have 0-2 of each).
    let large: PoolLargeAlloc[] | null = null;
    let freedLargeSlots = 0;
    const seenRec = this.visitedLarge.reset();
    for (let l = hLarge; l !== 0; ) {
      if (seenRec.size >= LIMITS.maxLarge) {
        problems.push({ kind: 'too-many-large', address: addr, detail: `more than ${LIMITS.maxLarge} large records` });
        break;
      }
      if (seenRec.has(l) || !inBlocks(blocks, l, POOL_LARGE.sizeof)) {
        problems.push({
          kind: 'large-list-broken',
          address: addr,
          detail: `large record ${hex(l)} ${seenRec.has(l) ? 'repeats' : 'lies outside the pool'}`,
        });
        break;
      }
      seenRec.add(l);
      const rr = this.recordReader(space, l, POOL_LARGE.sizeof);
      if (!rr) {
        problems.push({ kind: 'large-list-broken', address: addr, detail: `large record ${hex(l)} unreadable` });
        break;
      }
      const alloc = rr.u64At(this.recOff + POOL_LARGE.alloc);
      const nextRec = rr.u64At(this.recOff + POOL_LARGE.next);
      if (alloc === 0) freedLargeSlots++;
      else {
        const cs = chunks.sizeOf(alloc);
        if (cs === undefined)
          problems.push({
            kind: 'large-not-in-use-chunk',
            address: addr,
            detail: `large allocation ${hex(alloc)} is not an in-use chunk`,
          });
        else if (large === null) large = [{ address: alloc, chunkSize: cs }];
        else large.push({ address: alloc, chunkSize: cs });
      }
      l = nextRec;
    }

    // ---- cleanups ----
    let cleanups: PoolCleanup[] | null = null;
    const seenCln = this.visitedCleanups.reset();
    for (let c = hCleanup; c !== 0; ) {
      if (seenCln.size >= LIMITS.maxCleanups) {
        problems.push({ kind: 'too-many-cleanups', address: addr, detail: `more than ${LIMITS.maxCleanups} cleanups` });
        break;
      }
      if (seenCln.has(c) || !inBlocks(blocks, c, POOL_CLEANUP.sizeof)) {
        problems.push({
          kind: 'cleanup-list-broken',
          address: addr,
          detail: `cleanup ${hex(c)} ${seenCln.has(c) ? 'repeats' : 'lies outside the pool'}`,
        });
        break;
      }
      seenCln.add(c);
      const rr = this.recordReader(space, c, POOL_CLEANUP.sizeof);
      if (!rr) {
        problems.push({ kind: 'cleanup-list-broken', address: addr, detail: `cleanup ${hex(c)} unreadable` });
        break;
      }
      const cln: PoolCleanup = {
        handler: rr.u64At(this.recOff + POOL_CLEANUP.handler),
        function: null,
        object: '',
        offset: 0,
        module: null,
        data: rr.u64At(this.recOff + POOL_CLEANUP.data),
      };
      if (cleanups === null) cleanups = [cln];
      else cleanups.push(cln);
      c = rr.u64At(this.recOff + POOL_CLEANUP.next);
    }
    // The fingerprint: a copy of what `first` holds (no further read).
    const fpEnd = Math.min(hLast - addr, POOL.sizeof + FINGERPRINT_BYTES);
    let firstBytes: Uint8Array | null = null;
    if (this.firstGot >= fpEnd && fpEnd >= POOL.log) {
      const from = this.first.bytes.byteOffset + this.firstAt + POOL.log;
      firstBytes = new Uint8Array(fpEnd - POOL.log);
      firstBytes.set(new Uint8Array(this.first.bytes.buffer, from, fpEnd - POOL.log));
    }
    return {
      address: addr,
      size,
      blocks,
      large: large ?? [],
      cleanups: cleanups ?? [],
      freedLargeSlots,
      firstBytes,
    };
  }
}

/**
 * Reads and validates the pool at `addr`: header signature, every block (same size,
 * d.last inside, each an in-use chunk of the right size), current/large/cleanup/chain
 * pointing into its own blocks (or null), the large and cleanup lists (bounded, cycle-safe).
 * Returns the reason (a string) when it is not a pool (or no longer one). A pool whose later
 * parts fail is returned with what was valid, and each failure is appended to `problems`
 * (nothing is appended for a "not a pool" answer).
 * `prefix`: bytes at `addr` the caller already read (the scan's window), used instead of
 * reading the header and the first block's used part when long enough; `signatureChecked`:
 * the caller has verified poolSignatureAt on those same bytes (not repeated).
 * `reader`: scratch to reuse across the pools of one analysis (default: a fresh one; no state
 * is shared between calls that do not share a reader).
 */
export function readPool(
  space: AddressSpace,
  addr: number,
  chunks: InUseChunks,
  problems: PoolInconsistency[],
  prefix?: Uint8Array,
  signatureChecked = false,
  reader: PoolReader = new PoolReader(),
): PoolRead | string {
  return reader.read(space, addr, chunks, problems, prefix, signatureChecked);
}
