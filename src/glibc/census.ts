// The glibc heap census: every chunk of every arena heap and every mmapped chunk,
// classified as in use, tcache, fastbin, bin (unsorted / small / large), top or mmapped.
//
// How (glibc 2.36 malloc/malloc.c):
//  - Each heap is walked chunk by chunk from its first chunk (next = chunk + chunksize).
//    A chunk is free in a bin iff the NEXT chunk's PREV_INUSE bit is clear; tcache and
//    fastbin chunks keep that bit set, so the walk first counts them as in use and the
//    free lists reclassify them afterwards (they are few; each is checked: header size
//    matches its bin, it lies in a walked heap, no chunk is listed twice).
//  - tcaches: tcache_perthread_struct is an ordinary in-use chunk (0x290 bytes in
//    2.30-2.41) of the arena a thread first allocated from. Every in-use chunk of that
//    size is a candidate; a candidate is a tcache when its counts/entries validate and
//    its chains have the right length, sizes and key (tcache_key, 2.34+).
//  - Memory is read in windows (1 MiB, one buffer reused, page-aligned starts); chunk headers are parsed
//    with DataView reads from the window, numbers only, no per-chunk allocation. On a live process
//    with big heaps reader threads read the next windows (a page of overlap each; process_vm_readv)
//    into other buffers while the walk parses the current one (target/read-ahead.ts): reading and
//    parsing overlap, and two readers read in parallel.
//  - Every loop is bounded: a heap walk advances by >= 16 bytes per chunk and stops at
//    the heap end; free-list walks are bounded by counts and detect cycles (Brent).
//    Anything that does not validate becomes an inconsistency {address, kind, detail},
//    and the walk of that heap (or list) stops there: a partial census, never a hang.

import type { AddressSpace } from '../target/address-space.js';
import { findMapping } from '../target/address-space.js';
import { Symbolizer } from '../symbols/symbolizer.js';
import type {
  ArenaCensus,
  ClassTotals,
  ExactSize,
  HeapCensus,
  HistogramBucket,
  Inconsistency,
} from './census-types.js';
import { locateGlibc, type GlibcLocation } from './locate.js';
import { readArenas, readMallocParams, type RawArena, type RawHeap } from './arenas.js';
import { mmapCandidateRanges, scanMmappedChunks } from './mmapped.js';
import { fastbinChunkSize, MIN_LARGE_SIZE, tcacheBinChunkSize } from './layout.js';
import { ReadAhead } from '../target/read-ahead.js';
import { pageAlignedBuffer } from '../target/aligned-buffer.js';
import { grownTo } from '../model/typed-arrays.js';

export interface CensusOptions {
  /** Window size for streaming reads (default 1 MiB). */
  windowBytes?: number;
  /** How many exact sizes to keep in topSizes (default 20). */
  topSizes?: number;
  /** Skip the mmapped-chunk scan. */
  skipMmapped?: boolean;
  /** A symbolizer over space.modules() (made when absent). */
  symbolizer?: Symbolizer;
  /** A location from locateGlibc (made when absent). */
  location?: GlibcLocation;
  /**
   * The generic chunk visitor: called once per chunk finally counted as in use (after tcache /
   * fastbin chunks are moved out), in address order per heap, then per mmapped chunk: user pointer
   * (chunk + 16), chunk size, mmapped, the tag `peek` gave the chunk (NOT_PEEKED without a peek,
   * when its bytes were not in the walk's window, and for mmapped chunks), and the chunk's first
   * user bytes when `peek` asked for them.
   */
  onInUseChunk?: (userAddr: number, chunkSize: number, mmapped: boolean, tag: number, userBytes?: Uint8Array) => void;
  /** With onInUseChunk: a look at each in-use heap chunk's bytes while the walk has them in its window. */
  peek?: ChunkPeek;
  /**
   * Called once per validated tcache_perthread_struct (user pointer): allocator metadata that
   * onInUseChunk also reports as an in-use chunk (the program never asked for it).
   */
  onTcacheStruct?: (userAddr: number) => void;
  /**
   * A cheaper alternative to onInUseChunk (no list kept inside the census): called during the walk
   * for every chunk the walk sees in use (user pointer, chunk size; ascending within each heap),
   * then `onFreeListChunk` for each of those found in a tcache or fastbin afterwards (so not in use),
   * then `onWalkInUse(.., true)` for every mmapped chunk. When the walk's window holds the whole
   * chunk and the next chunk's header, `words` is the window (little-endian u32) and `userWord` the
   * index of the chunk's first user word in it (valid during the call only): the bytes the walk
   * judged the chunk by, so a caller reads no chunk twice.
   */
  onWalkInUse?: (userAddr: number, chunkSize: number, mmapped: boolean, words?: Uint32Array, userWord?: number) => void;
  onFreeListChunk?: (userAddr: number) => void;
  /**
   * Read ahead with a reader thread (target/read-ahead.ts) on a live process whose heaps total at
   * least READ_AHEAD_MIN bytes (default true; false: every window read in turn by the walk).
   */
  readAhead?: boolean;
}

/** The tag of an in-use chunk no ChunkPeek looked at (bytes not in the window, mmapped, no peek). */
export const NOT_PEEKED = 255;

/**
 * A caller's look at in-use heap chunks during the walk, which reads their bytes anyway: a
 * classification (saves the caller reading them again) and optionally a copy of their first bytes.
 * The census gives the tags no meaning of its own.
 */
export interface ChunkPeek {
  /**
   * Tag 0..254 of the chunk at window word `chunkWord` (its prev_size field; user data starts at
   * word chunkWord + 4, user pointer `userAddr`). `words` is the walk's window as little-endian
   * u32 words and holds all of [chunk, chunk + chunkSize + 16). Runs in the walk's hot loop: keep it small.
   */
  tag(words: Uint32Array, chunkWord: number, userAddr: number, chunkSize: number): number;
  /** Chunks tagged `copyTag` also get their first `copyBytes` user bytes (<= 4096) as the walk read
   * them, when the window held them all (they may run into the next chunks). Copied once, at most
   * IN_USE_BYTES_BUDGET per census; the views stay valid after the census returns. */
  copyTag?: number;
  copyBytes?: number;
}

/**
 * Window size for streaming reads: 1 MiB. Reading and parsing one window at a time keeps the
 * window in the CPU cache while its headers are parsed; measured on the 900 MiB bench heap,
 * 1 MiB windows walk ~12% faster than 16 MiB ones, and pread throughput is the same.
 */
export const DEFAULT_WINDOW = 1 << 20;
/** Heaps smaller than this are walked without the reader thread (its start costs ~30 ms once per process). */
export const READ_AHEAD_MIN = 32 << 20;
const MAX_LISTED_INCONSISTENCIES = 100;
const TWO32 = 4294967296;
/** Exact in-use sizes below this are counted in a flat array (index size >> 4). */
const EXACT_FLAT_LIMIT = 1 << 16;

let sharedWindow: Buffer | undefined;
/** One window buffer per process, reused by every census (bounded RSS), on its own ArrayBuffer (4-aligned). */
function windowBuffer(bytes: number): Buffer {
  const len = Math.max(4096, bytes - (bytes % 4096));
  if (!sharedWindow || sharedWindow.length !== len) sharedWindow = pageAlignedBuffer(len);
  return sharedWindow;
}

function emptyTotals(): ClassTotals {
  return {
    inUseChunks: 0,
    inUseBytes: 0,
    freeChunks: 0,
    freeBytes: 0,
    tcacheChunks: 0,
    tcacheBytes: 0,
    fastbinChunks: 0,
    fastbinBytes: 0,
    binChunks: 0,
    binBytes: 0,
    topBytes: 0,
    mmappedChunks: 0,
    mmappedBytes: 0,
    systemBytes: 0,
  };
}

function bucketOf(size: number): number {
  return size < TWO32 ? 31 - Math.clz32(size) : 63 - Math.clz32(Math.floor(size / TWO32));
}

interface Segment {
  start: number;
  end: number;
  walkedEnd: number;
  arena: ArenaCensus;
  free0: number;
  free1: number;
}

/**
 * Free (bin) chunks indexed while walking: address, size, bk, in walk order (ascending per heap),
 * so the unsorted-bin walk follows bk without a read per chunk. At most FREE_INDEX_MAX entries
 * (24 bytes each); chunks past the cap are read from the target instead.
 */
const FREE_INDEX_MAX = 1 << 20;

/** Cap on the bytes copied for ChunkPeek.copyBytes (per census). */
const IN_USE_BYTES_BUDGET = 64 << 20;

/** Counts and bytes of free chunks found by the walk below / above MIN_LARGE_SIZE, per arena. */
interface ArenaScratch {
  freeSmallN: number;
  freeLargeN: number;
  unsortedSmallN: number;
  unsortedLargeN: number;
}

class Census {
  readonly inconsistencies: Inconsistency[] = [];
  inconsistencyCount = 0;
  complete = true;
  bytesRead = 0;
  chunksWalked = 0;
  // histogram (all arenas + mmapped), by bucket k = floor(log2(size))
  readonly hFreeN = new Float64Array(64);
  readonly hFreeB = new Float64Array(64);
  readonly exactFlat = new Float64Array(EXACT_FLAT_LIMIT >> 4);
  readonly exactMap = new Map<number, number>();
  /** In-use chunks whose size is that of a tcache_perthread_struct. */
  readonly tcacheCandidates: number[] = [];
  readonly segments: Segment[] = [];
  readonly reclassified = new Set<number>();
  freeAddr = new Float64Array(1024);
  freeSize = new Float64Array(1024);
  freeBk = new Float64Array(1024);
  freeLen = 0;
  /** In-use heap chunks (address, size) as walked, when a caller asked for them (onInUseChunk). */
  collect = false;
  /** CensusOptions.onWalkInUse / onFreeListChunk. */
  onWalk?: (userAddr: number, chunkSize: number, mmapped: boolean, words?: Uint32Array, userWord?: number) => void;
  onFreeList?: (userAddr: number) => void;
  usedAddr = new Float64Array(0);
  usedSize = new Float64Array(0);
  /** Per collected chunk: its ChunkPeek tag (NOT_PEEKED when none). */
  usedTag = new Uint8Array(0);
  usedLen = 0;
  peek: ChunkPeek | undefined;
  /** Chunks with this tag get their first prefixBytes copied (-1: none). */
  copyTag = -1;
  /** With ChunkPeek.copyBytes: per collected chunk, offset of its bytes in usedBytes (-1: none). */
  prefixBytes = 0;
  usedBytesOff = new Float64Array(0);
  usedBytes = Buffer.alloc(0);
  usedBytesLen = 0;
  private buf: Buffer;
  /** The window as little-endian u32 words (x86-64 hosts and targets only): chunk headers are 8-aligned. */
  private u32: Uint32Array;
  /** With a reader thread: its two windows (the walk parses one while the next is read into the other). */
  private ra: ReadAhead | undefined;
  private raFd = -1;
  private raPid = 0;
  private raSlot = 0;
  private raU32: Uint32Array[] = [];
  /** Windows being read ahead, in address order: slot, start, length asked. */
  private aheadSlot: number[] = [];
  private aheadAt: number[] = [];
  private aheadLen: number[] = [];
  /** Scratch for free-list reads (readSmall). */
  readonly small = Buffer.alloc(64);

  constructor(
    readonly space: AddressSpace,
    readonly loc: GlibcLocation,
    windowBytes: number,
  ) {
    this.buf = windowBuffer(windowBytes);
    this.u32 = new Uint32Array(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength >>> 2);
  }

  /** Walks with a reader thread reading ahead through `fd` (a live process's memory). */
  useReadAhead(fd: number, pid = 0): void {
    const ra = ReadAhead.get(this.buf.length);
    if (!ra) return;
    this.ra = ra;
    this.raFd = fd;
    this.raPid = pid;
    ra.newTarget();
    this.raSlot = 0;
    this.raU32 = ra.slots.map((b) => new Uint32Array(b.buffer, b.byteOffset, b.byteLength >>> 2));
    this.buf = ra.slots[0];
    this.u32 = this.raU32[0]!;
  }

  /** Waits out the windows still being read ahead (not used); the bytes they read. */
  private dropAhead(): number {
    let n = 0;
    for (const slot of this.aheadSlot) n += this.ra!.wait(slot);
    this.aheadSlot.length = this.aheadAt.length = this.aheadLen.length = 0;
    return n;
  }

  report(i: Inconsistency): void {
    this.inconsistencyCount++;
    if (this.inconsistencies.length < MAX_LISTED_INCONSISTENCIES) this.inconsistencies.push(i);
  }

  /** Reads `len` bytes at addr into the small scratch buffer; false when unreadable. */
  readSmall(addr: number, len: number): boolean {
    if (!(addr > 0) || !Number.isSafeInteger(addr)) return false;
    const n = this.space.readInto(addr, this.small, 0, len);
    this.bytesRead += n;
    return n === len;
  }
  u64(off: number): number {
    return this.small.readUInt32LE(off + 4) * TWO32 + this.small.readUInt32LE(off);
  }

  /** Where the window (this.buf) starts in the target: set by fill. */
  private winAt = 0;

  /**
   * Makes the window hold the chunk header at p (a heap ending at max(end, limit) + 16): the next
   * window read ahead when it holds p, else p's page read in turn; then the windows after it are
   * asked of the reader threads. Sets this.buf / this.u32 / this.winAt; returns the bytes in the
   * window (fewer than p + 16 - winAt when unreadable). Apart from walkHeap's loop so that the
   * loop stays small for the JIT (this runs once per window, the loop once per chunk).
   */
  private fill(p: number, end: number, limit: number): number {
    const ra = this.ra;
    const winCap = this.buf.length;
    // Windows start on a page boundary: /proc/PID/mem copies page by page, and an
    // unaligned start makes every copy span two pages (about 2x slower).
    let at = p - (p % 4096);
    let n = -1;
    while (n < 0 && this.aheadSlot.length > 0) {
      // Windows read ahead start a page before the one before them ends: the first holds p
      // unless a chunk larger than a window took the walk past it (then the next may).
      const slot = this.aheadSlot.shift()!,
        wAt = this.aheadAt.shift()!,
        wLen = this.aheadLen.shift()!;
      const got = ra!.wait(slot);
      this.bytesRead += got;
      if (wAt <= p && wAt + got >= p + 16) {
        this.raSlot = slot;
        this.buf = ra!.slots[slot]!;
        this.u32 = this.raU32[slot]!;
        at = wAt;
        n = got;
      }
      // A short window: the ones after it were asked for past its end; the walk reads on itself.
      if (got < wLen) this.bytesRead += this.dropAhead();
    }
    if (n < 0) {
      const want = Math.min(winCap, Math.max(end, limit) + 16 - at);
      n = this.space.readInto(at, this.buf, 0, want);
      this.bytesRead += n;
    }
    this.winAt = at;
    if (at + n < p + 16) return n;
    if (ra && n === winCap) {
      // The next windows, one per reader thread, into free slots while this one is parsed; each
      // starts a page before the one before it ends (as a full read of it would).
      const stop = Math.max(end, limit) + 16;
      const q = this.aheadSlot.length;
      let next = (q > 0 ? this.aheadAt[q - 1]! + this.aheadLen[q - 1]! : at + n) - 4096;
      if (q > 0 && this.aheadLen[q - 1]! < winCap) next = stop;
      while (this.aheadSlot.length < ra.parallel && next + 4096 < stop) {
        let slot = 0;
        while (slot === this.raSlot || this.aheadSlot.includes(slot)) slot++;
        const len = Math.min(winCap, stop - next);
        ra.start(this.raFd, slot, next, len, this.raPid);
        this.aheadSlot.push(slot);
        this.aheadAt.push(next);
        this.aheadLen.push(len);
        if (len < winCap) break;
        next += winCap - 4096;
      }
    }
    return n;
  }

  /**
   * Walks one heap from heap.firstChunk. Counts in-use and bin chunks into `a`, the top
   * chunk when the heap holds it. Returns the address where the walk stopped.
   */
  walkHeap(heap: RawHeap, a: ArenaCensus, s: ArenaScratch, tcacheStructSize: number): number {
    let u32 = this.u32;
    const hFreeN = this.hFreeN,
      hFreeB = this.hFreeB,
      exactFlat = this.exactFlat;
    const collect = this.collect,
      peek = this.peek,
      copyTag = this.copyTag;
    const onWalk = this.onWalk;
    const limit = heap.top >= 0 ? heap.top : heap.end;
    const end = heap.end;
    let winStart = 0,
      winEnd = 0;
    let p = heap.firstChunk;
    let prevSize = 0;
    let inUseN = 0,
      inUseB = 0,
      binN = 0,
      binB = 0,
      freeSmallN = 0,
      freeLargeN = 0,
      largestFree = a.largestFreeChunk;
    let chunks = 0;
    let stopped = false;
    let bytesRead = 0;
    const free0 = this.freeLen;
    while (p < limit) {
      if (p + 16 > winEnd) {
        const n = this.fill(p, end, limit);
        if (this.winAt + n < p + 16) {
          this.report({
            address: p,
            kind: 'unreadable',
            detail: `chunk header unreadable inside heap 0x${heap.start.toString(16)}`,
          });
          stopped = true;
          break;
        }
        u32 = this.u32;
        winStart = this.winAt;
        winEnd = winStart + n;
      }
      const w = (p - winStart + 8) >>> 2;
      const lo = u32[w]!;
      const hi = u32[w + 1]!;
      const sz = hi * TWO32 + (lo - (lo & 7));
      if (prevSize !== 0) {
        if ((lo & 1) !== 0) {
          inUseN++;
          inUseB += prevSize;
          if (prevSize < EXACT_FLAT_LIMIT) exactFlat[prevSize >>> 4]++;
          else this.exactMap.set(prevSize, (this.exactMap.get(prevSize) ?? 0) + 1);
          if (prevSize === tcacheStructSize) this.tcacheCandidates.push(p - prevSize);
          if (onWalk !== undefined) {
            const c = p - prevSize;
            if (c >= winStart) onWalk(c + 16, prevSize, false, u32, (c + 16 - winStart) >>> 2);
            else onWalk(c + 16, prevSize, false);
          }
          if (collect) {
            // The chunk's user words 0..1 (chunk + 16 .. + 32) lie before p, so in this window
            // unless the chunk starts in an earlier one.
            const c = p - prevSize;
            const tag = peek && c >= winStart ? peek.tag(u32, (c - winStart) >>> 2, c + 16, prevSize) : NOT_PEEKED;
            this.collectInUse(c, prevSize, tag);
            if (tag === copyTag) this.collectBytes(c + 16 - winStart, winEnd - winStart);
          }
        } else {
          binN++;
          binB += prevSize;
          const k = prevSize < TWO32 ? 31 - Math.clz32(prevSize) : bucketOf(prevSize);
          hFreeN[k]++;
          hFreeB[k] += prevSize;
          if (prevSize < MIN_LARGE_SIZE) freeSmallN++;
          else freeLargeN++;
          if (prevSize > largestFree) largestFree = prevSize;
          const prevAddr = p - prevSize;
          this.indexFree(
            prevAddr,
            prevSize,
            prevAddr + 16 >= winStart
              ? u32[(prevAddr - winStart + 24) >>> 2]! + u32[(prevAddr - winStart + 28) >>> 2]! * TWO32
              : -1,
          );
        }
      }
      if (sz < 32 || (lo & 10) !== 0 || p + sz > limit) {
        // A heap that is not the current one ends with fenceposts: a 16-byte chunk, then a
        // 0-size header (sysmalloc, when the arena moved on to a new heap).
        if (heap.top < 0 && (sz === 16 || sz === 0) && (lo & 2) === 0 && p + 16 <= end && end - p <= 64) {
          prevSize = 0;
          break;
        }
        this.report({
          address: p,
          kind: 'bad-chunk',
          detail: `chunk header 0x${(hi * TWO32 + lo).toString(16)} at 0x${p.toString(16)}: ${sz < 32 ? 'size below 32' : (lo & 8) !== 0 ? 'size not a multiple of 16' : (lo & 2) !== 0 ? 'IS_MMAPPED inside a heap' : `runs past 0x${limit.toString(16)}`}`,
        });
        prevSize = 0;
        stopped = true;
        break;
      }
      chunks++;
      prevSize = sz;
      p += sz;
    }
    // Windows read ahead past where the walk stopped: wait for them (the readers are free again).
    bytesRead += this.dropAhead();
    if (!stopped && heap.top >= 0) {
      // p == top: its header classifies the last chunk and gives the top size.
      if (p === heap.top && this.readSmall(p, 16)) {
        const lo = this.small.readUInt32LE(8);
        const tsz = this.u64(8) - (lo & 7);
        if (prevSize !== 0) {
          if ((lo & 1) !== 0) {
            inUseN++;
            inUseB += prevSize;
            if (prevSize < EXACT_FLAT_LIMIT) exactFlat[prevSize >>> 4]++;
            else this.exactMap.set(prevSize, (this.exactMap.get(prevSize) ?? 0) + 1);
            if (prevSize === tcacheStructSize) this.tcacheCandidates.push(p - prevSize);
            if (onWalk !== undefined) {
              const c = p - prevSize;
              if (c >= winStart && p + 16 <= winEnd) onWalk(c + 16, prevSize, false, u32, (c + 16 - winStart) >>> 2);
              else onWalk(c + 16, prevSize, false);
            }
            if (collect) {
              const c = p - prevSize;
              const tag =
                peek && c >= winStart && p <= winEnd
                  ? peek.tag(u32, (c - winStart) >>> 2, c + 16, prevSize)
                  : NOT_PEEKED;
              this.collectInUse(c, prevSize, tag);
              if (tag === copyTag) this.collectBytes(c + 16 - winStart, winEnd - winStart);
            }
          } else {
            binN++;
            binB += prevSize;
            const k = bucketOf(prevSize);
            hFreeN[k]++;
            hFreeB[k] += prevSize;
            if (prevSize < MIN_LARGE_SIZE) freeSmallN++;
            else freeLargeN++;
            if (prevSize > largestFree) largestFree = prevSize;
            this.indexFree(p - prevSize, prevSize, -1);
          }
        }
        a.topBytes += tsz;
        if (p + tsz !== heap.end) {
          this.report({
            address: p,
            kind: 'top-size',
            detail: `top chunk ends at 0x${(p + tsz).toString(16)}, heap ends at 0x${heap.end.toString(16)}`,
          });
        }
        p += tsz;
      } else {
        this.report({
          address: p,
          kind: 'top-not-reached',
          detail: `walk ended at 0x${p.toString(16)}, top chunk is 0x${heap.top.toString(16)}`,
        });
        stopped = true;
      }
    }
    if (stopped) this.complete = false;
    a.inUseChunks += inUseN;
    a.inUseBytes += inUseB;
    a.binChunks += binN;
    a.binBytes += binB;
    a.largestFreeChunk = largestFree;
    s.freeSmallN += freeSmallN;
    s.freeLargeN += freeLargeN;
    this.chunksWalked += chunks;
    this.bytesRead += bytesRead;
    const walkedEnd = stopped ? p : heap.end;
    a.heaps.push({ start: heap.start, end: heap.end, walkedEnd, chunks });
    this.segments.push({ start: heap.firstChunk, end: heap.end, walkedEnd, arena: a, free0, free1: this.freeLen });
    return walkedEnd;
  }

  collectInUse(addr: number, size: number, tag: number): void {
    const n = this.usedLen;
    if (n === this.usedAddr.length) {
      const len = Math.max(1024, n * 2);
      this.usedAddr = grownTo(this.usedAddr, len);
      this.usedSize = grownTo(this.usedSize, len);
      this.usedTag = grownTo(this.usedTag, len);
    }
    this.usedAddr[n] = addr;
    this.usedSize[n] = size;
    this.usedTag[n] = tag;
    this.usedLen = n + 1;
  }

  /** Copies the collected chunk's first prefixBytes user bytes from the window (at `off`), when wanted and in budget. */
  collectBytes(off: number, winLen: number): void {
    const n = this.usedLen - 1;
    if (this.usedBytesOff.length < this.usedAddr.length) {
      const o = new Float64Array(this.usedAddr.length).fill(-1);
      o.set(this.usedBytesOff);
      this.usedBytesOff = o;
    }
    const len = this.prefixBytes;
    if (off < 0 || off + len > winLen || this.usedBytesLen + len > IN_USE_BYTES_BUDGET) return;
    if (this.usedBytesLen + len > this.usedBytes.length) {
      const b = Buffer.allocUnsafe(
        Math.min(IN_USE_BYTES_BUDGET, Math.max(1 << 16, this.usedBytes.length * 2, this.usedBytesLen + len)),
      );
      this.usedBytes.copy(b, 0, 0, this.usedBytesLen);
      this.usedBytes = b;
    }
    this.buf.copy(this.usedBytes, this.usedBytesLen, off, off + len);
    this.usedBytesOff[n] = this.usedBytesLen;
    this.usedBytesLen += len;
  }

  indexFree(addr: number, size: number, bk: number): void {
    const n = this.freeLen;
    if (n >= FREE_INDEX_MAX) return;
    if (n === this.freeAddr.length) {
      const len = Math.min(FREE_INDEX_MAX, n * 2);
      this.freeAddr = grownTo(this.freeAddr, len);
      this.freeSize = grownTo(this.freeSize, len);
      this.freeBk = grownTo(this.freeBk, len);
    }
    this.freeAddr[n] = addr;
    this.freeSize[n] = size;
    this.freeBk[n] = bk;
    this.freeLen = n + 1;
  }

  /** Index of a free chunk in the free index, or -1. */
  findFree(addr: number): number {
    const seg = this.segmentOf(addr);
    if (!seg) return -1;
    let lo = seg.free0,
      hi = seg.free1 - 1;
    const a = this.freeAddr;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = a[mid]!;
      if (addr < v) hi = mid - 1;
      else if (addr > v) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  segmentOf(addr: number): Segment | undefined {
    return findMapping(this.segments, addr);
  }

  /** Moves a free-list chunk (counted as in use by the walk) into tcache or fastbin. */
  reclassify(chunk: number, size: number, cls: 'tcache' | 'fastbin', listAddr: number): boolean {
    if (this.reclassified.has(chunk)) {
      this.report({
        address: chunk,
        kind: `${cls}-duplicate`,
        detail: `chunk listed twice in the free lists (seen again in ${cls} list at 0x${listAddr.toString(16)})`,
      });
      return false;
    }
    const seg = this.segmentOf(chunk);
    if (!seg) {
      this.report({
        address: chunk,
        kind: `${cls}-out-of-heap`,
        detail: `${cls} list at 0x${listAddr.toString(16)} points outside every arena heap`,
      });
      return false;
    }
    this.reclassified.add(chunk);
    const a = seg.arena;
    if (chunk < seg.walkedEnd) {
      this.onFreeList?.(chunk + 16);
      // The walk counted it as in use.
      a.inUseChunks--;
      a.inUseBytes -= size;
      if (size < EXACT_FLAT_LIMIT) this.exactFlat[size >>> 4]--;
      else this.exactMap.set(size, (this.exactMap.get(size) ?? 1) - 1);
    }
    const k = bucketOf(size);
    this.hFreeN[k]++;
    this.hFreeB[k] += size;
    if (cls === 'tcache') {
      a.tcacheChunks++;
      a.tcacheBytes += size;
    } else {
      a.fastbinChunks++;
      a.fastbinBytes += size;
    }
    if (size > a.largestFreeChunk) a.largestFreeChunk = size;
    return true;
  }

  /** Walks each fastbin of an arena (fd mangled since 2.32), bounded and cycle-checked. */
  walkFastbins(raw: RawArena, _a: ArenaCensus, maxSteps: number): void {
    const L = this.loc.layout;
    for (let i = 0; i < raw.fastbins.length; i++) {
      let p = raw.fastbins[i]!;
      const want = fastbinChunkSize(i);
      let steps = 0,
        power = 1,
        lam = 0,
        tortoise = p;
      const listAddr = raw.address + (L.mstate.fastbinsY ?? 0) + i * 8;
      while (p !== 0) {
        if (steps++ >= maxSteps) {
          this.report({
            address: p,
            kind: 'fastbin-too-long',
            detail: `fastbin ${i} of arena 0x${raw.address.toString(16)} longer than ${maxSteps}`,
          });
          break;
        }
        if (p % 16 !== 0 || !this.readSmall(p + 8, 16)) {
          this.report({
            address: p,
            kind: 'fastbin-bad-pointer',
            detail: `fastbin ${i} of arena 0x${raw.address.toString(16)}: chunk 0x${p.toString(16)} misaligned or unreadable`,
          });
          break;
        }
        const size = this.u64(0) - (this.small[0]! & 7);
        if (size !== want) {
          this.report({
            address: p,
            kind: 'fastbin-bad-size',
            detail: `fastbin ${i} (chunk size ${want}) holds a chunk of size ${size}`,
          });
          break;
        }
        if (!this.reclassify(p, size, 'fastbin', listAddr)) break;
        p = L.safeLinking ? reveal(this.small.readUInt32LE(8), this.small.readUInt32LE(12), p + 16) : this.u64(8);
        // Brent's cycle detection: O(1) memory.
        if (p === tortoise) {
          this.report({
            address: p,
            kind: 'fastbin-cycle',
            detail: `fastbin ${i} of arena 0x${raw.address.toString(16)} loops`,
          });
          break;
        }
        if (++lam === power) {
          tortoise = p;
          power *= 2;
          lam = 0;
        }
      }
    }
  }

  /** Counts the unsorted bin (bk chain from bin_at(1)), bounded by the bin chunks the walk found. */
  walkUnsorted(raw: RawArena, a: ArenaCensus, s: ArenaScratch): void {
    const L = this.loc.layout;
    const bin = raw.address + L.mstate.bins - 16;
    let p = raw.unsortedBk;
    const max = a.binChunks + 1;
    let steps = 0;
    while (p !== bin) {
      if (steps++ >= max) {
        this.report({
          address: p,
          kind: 'unsorted-loop',
          detail: `unsorted bin of arena 0x${raw.address.toString(16)} longer than the ${a.binChunks} free chunks the walk found`,
        });
        return;
      }
      const i = this.findFree(p);
      let size: number, bk: number;
      if (i >= 0 && this.freeBk[i]! >= 0) {
        size = this.freeSize[i]!;
        bk = this.freeBk[i]!;
      } else {
        if (p % 16 !== 0 || !this.readSmall(p + 8, 24)) {
          this.report({
            address: p,
            kind: 'unsorted-bad-pointer',
            detail: `unsorted bin of arena 0x${raw.address.toString(16)}: 0x${p.toString(16)} misaligned or unreadable`,
          });
          return;
        }
        size = this.u64(0) - (this.small[0]! & 7);
        bk = this.u64(16);
      }
      if (size < MIN_LARGE_SIZE) s.unsortedSmallN++;
      else s.unsortedLargeN++;
      p = bk;
    }
  }
}

/** stored ^ (pos >> 12), 64-bit, from the two 32-bit halves of the stored value (PROTECT_PTR, glibc 2.32+). */
function reveal(storedLo: number, storedHi: number, pos: number): number {
  const shifted = Math.floor(pos / 4096);
  const lo = (storedLo ^ (shifted % TWO32)) >>> 0;
  const hi = (storedHi ^ Math.floor(shifted / TWO32)) >>> 0;
  return hi * TWO32 + lo;
}

/**
 * Starts the census's reader threads (ReadAhead.prepare) when `space` is a live process whose
 * writable anonymous memory is at least READ_AHEAD_MIN bytes: a thread takes ~30-90 ms to start,
 * so a command that will take a census calls this first, and the start overlaps its own start-up
 * (loading modules and symbols). Idempotent; heapCensus calls it too.
 */
export function prepareCensusReadAhead(
  space: AddressSpace,
  opts: { windowBytes?: number } = {},
  maps = space.mappings(),
): void {
  if (space.memoryFd?.() === undefined) return;
  let anon = 0;
  for (const m of maps) if (m.perms.startsWith('rw') && (m.path === '' || m.path === '[heap]')) anon += m.end - m.start;
  if (anon >= READ_AHEAD_MIN) ReadAhead.prepare(windowBuffer(opts.windowBytes ?? DEFAULT_WINDOW).length);
}

/**
 * Census of a glibc heap. Throws LeakscopeError when glibc's state cannot be found or is
 * unsupported; damage found while walking becomes `inconsistencies` (partial census).
 */
export function heapCensus(space: AddressSpace, opts: CensusOptions = {}): HeapCensus {
  const t0 = performance.now();
  // Fresh memory maps for every census: mmapped chunks (and thread heaps, brk growth) created
  // since the last read must be seen, or a census after a pause misses them.
  const maps = space.mappings({ refresh: true });
  // Reader threads for a big heap (below) start now (unless started earlier): their start overlaps locating glibc.
  if (opts.readAhead !== false) prepareCensusReadAhead(space, opts, maps);
  const symbolizer = opts.symbolizer ?? new Symbolizer(space.modules());
  const loc = opts.location ?? locateGlibc(space, symbolizer);
  const L = loc.layout;
  const c = new Census(space, loc, opts.windowBytes ?? DEFAULT_WINDOW);
  const memFd = opts.readAhead === false ? undefined : space.memoryFd?.();
  c.collect = !!opts.onInUseChunk;
  c.onWalk = opts.onWalkInUse;
  c.onFreeList = opts.onFreeListChunk;
  if (c.collect && opts.peek) {
    c.peek = opts.peek;
    const copy = Math.max(0, Math.min(opts.peek.copyBytes ?? 0, 4096));
    if (copy > 0 && opts.peek.copyTag !== undefined) {
      c.prefixBytes = copy;
      c.copyTag = opts.peek.copyTag;
    }
  }
  const mp = readMallocParams(space, loc);
  const sources = { ...loc.sources };
  const { arenas: raws, heapMaxSize } = readArenas(space, loc, mp, (i) => c.report(i));
  sources.heaps = `main heap from ${mp ? 'mp_.sbrk_base' : '[heap] start'} to main_arena.top; thread heaps: top & ~(${heapMaxSize >>> 20} MiB - 1), then heap_info.prev`;

  // A reader thread reads the next window while the walk parses one, on heaps big enough to repay it.
  if (
    memFd !== undefined &&
    raws.reduce((n, r) => n + r.heaps.reduce((m, h) => m + (h.end - h.start), 0), 0) >= READ_AHEAD_MIN
  )
    c.useReadAhead(memFd, space.memoryPid?.() ?? 0);
  const arenas: ArenaCensus[] = [];
  const scratch: ArenaScratch[] = [];
  for (const raw of raws) {
    const a: ArenaCensus = {
      ...emptyTotals(),
      unsortedChunks: 0,
      smallbinChunks: 0,
      largebinChunks: 0,
      index: raw.index,
      kind: raw.kind,
      address: raw.address,
      topChunk: raw.top,
      attachedThreads: raw.attachedThreads,
      heaps: [],
      fragmentation: 0,
      largestFreeChunk: 0,
    };
    a.systemBytes = raw.systemMem;
    const s: ArenaScratch = { freeSmallN: 0, freeLargeN: 0, unsortedSmallN: 0, unsortedLargeN: 0 };
    for (const h of raw.heaps) c.walkHeap(h, a, s, L.tcache.structChunkSize);
    const heapBytes = raw.heaps.reduce((n, h) => n + (h.end - h.start), 0);
    if (raw.heaps.length && raw.kind === 'thread' && heapBytes !== raw.systemMem) {
      c.report({
        address: raw.address,
        kind: 'system-mem',
        detail: `arena system_mem ${raw.systemMem} != sum of heap sizes ${heapBytes}`,
      });
    }
    arenas.push(a);
    scratch.push(s);
  }
  c.segments.sort((x, y) => x.start - y.start);

  // Free lists: fastbins, then every thread's tcache.
  for (let i = 0; i < raws.length; i++) {
    const raw = raws[i]!,
      a = arenas[i]!;
    const maxSteps = Math.max(16, Math.ceil(raw.heaps.reduce((n, h) => n + (h.end - h.start), 0) / 32));
    c.walkFastbins(raw, a, maxSteps);
    c.walkUnsorted(raw, a, scratch[i]!);
  }
  const tcaches = walkTcaches(c, mp, opts.onTcacheStruct);
  if (tcaches.keySource) sources.tcacheKey = tcaches.keySource;
  sources.tcaches = `${tcaches.found} tcache_perthread_struct found among ${c.tcacheCandidates.length} in-use chunks of ${L.tcache.structChunkSize} bytes`;

  if (opts.onInUseChunk) {
    for (let i = 0; i < c.usedLen; i++) {
      const addr = c.usedAddr[i]!;
      if (c.reclassified.has(addr)) continue;
      const tag = c.usedTag[i]!;
      const bo = tag === c.copyTag && i < c.usedBytesOff.length ? c.usedBytesOff[i]! : -1;
      opts.onInUseChunk(
        addr + 16,
        c.usedSize[i]!,
        false,
        tag,
        bo >= 0 ? c.usedBytes.subarray(bo, bo + c.prefixBytes) : undefined,
      );
    }
  }

  // mmapped chunks (no arena): anonymous rw VMAs minus the thread heaps.
  const totals = {
    ...emptyTotals(),
    unsortedChunks: 0,
    smallbinChunks: 0,
    largebinChunks: 0,
    fragmentation: 0,
    largestFreeChunk: 0,
    arenas: arenas.length,
    tcaches: tcaches.found,
  };
  if (!opts.skipMmapped) {
    const exclude = raws
      .filter((r) => r.kind === 'thread')
      .flatMap((r) => r.heaps.map((h) => ({ start: h.start, end: h.start + heapMaxSize })));
    if (loc.heapMapping) exclude.push({ start: loc.heapMapping.start, end: loc.heapMapping.end });
    c.bytesRead += scanMmappedChunks(space, mmapCandidateRanges(space.mappings(), exclude), (m) => {
      opts.onInUseChunk?.(m.address + 16, m.size, true, NOT_PEEKED);
      opts.onWalkInUse?.(m.address + 16, m.size, true);
      totals.mmappedChunks++;
      totals.mmappedBytes += m.mappedBytes;
      if (m.size < EXACT_FLAT_LIMIT) c.exactFlat[m.size >>> 4]++;
      else c.exactMap.set(m.size, (c.exactMap.get(m.size) ?? 0) + 1);
    });
    sources.mmapped = 'scan of anonymous rw mappings (thread heaps excluded), chunk headers validated';
    if (mp && (mp.nMmaps !== totals.mmappedChunks || mp.mmappedMem !== totals.mmappedBytes)) {
      c.report({
        address: loc.mp!,
        kind: 'mmapped-mismatch',
        detail: `scan found ${totals.mmappedChunks} mmapped chunks / ${totals.mmappedBytes} bytes, mp_ says n_mmaps ${mp.nMmaps} / mmapped_mem ${mp.mmappedMem}`,
      });
    }
  }

  for (let i = 0; i < arenas.length; i++) {
    const a = arenas[i]!,
      s = scratch[i]!;
    a.unsortedChunks = s.unsortedSmallN + s.unsortedLargeN;
    a.smallbinChunks = Math.max(0, s.freeSmallN - s.unsortedSmallN);
    a.largebinChunks = Math.max(0, s.freeLargeN - s.unsortedLargeN);
    a.freeChunks = a.tcacheChunks + a.fastbinChunks + a.binChunks + (a.topBytes > 0 ? 1 : 0);
    a.freeBytes = a.tcacheBytes + a.fastbinBytes + a.binBytes + a.topBytes;
    a.fragmentation = fragmentation(a);
    for (const k of [
      'inUseChunks',
      'inUseBytes',
      'freeChunks',
      'freeBytes',
      'tcacheChunks',
      'tcacheBytes',
      'fastbinChunks',
      'fastbinBytes',
      'binChunks',
      'binBytes',
      'topBytes',
      'systemBytes',
      'unsortedChunks',
      'smallbinChunks',
      'largebinChunks',
    ] as const) {
      totals[k] += a[k];
    }
    totals.largestFreeChunk = Math.max(totals.largestFreeChunk, a.largestFreeChunk);
  }
  totals.fragmentation = fragmentation(totals);

  // In-use exact sizes (heap chunks after reclassification, plus mmapped chunks) give the in-use histogram.
  const sizes: ExactSize[] = [];
  for (let i = 0; i < c.exactFlat.length; i++)
    if (c.exactFlat[i]! > 0) sizes.push({ size: i << 4, count: c.exactFlat[i]!, bytes: (i << 4) * c.exactFlat[i]! });
  for (const [size, count] of c.exactMap) if (count > 0) sizes.push({ size, count, bytes: size * count });
  const hInN = new Float64Array(64),
    hInB = new Float64Array(64);
  for (const x of sizes) {
    const k = bucketOf(x.size);
    hInN[k] += x.count;
    hInB[k] += x.bytes;
  }
  const histogram: HistogramBucket[] = [];
  for (let k = 0; k < 64; k++) {
    if (hInN[k] === 0 && c.hFreeN[k] === 0) continue;
    histogram.push({
      minBytes: 2 ** k,
      maxBytes: 2 ** (k + 1),
      inUseChunks: hInN[k]!,
      inUseBytes: hInB[k]!,
      freeChunks: c.hFreeN[k]!,
      freeBytes: c.hFreeB[k]!,
    });
  }
  sizes.sort((x, y) => y.bytes - x.bytes || y.size - x.size);

  return {
    pid: space.pid,
    target: space.description,
    glibcVersion: loc.version.text,
    totals,
    arenas,
    histogram,
    topSizes: sizes.slice(0, opts.topSizes ?? 20),
    sources,
    glibcView: {
      nMmaps: mp ? mp.nMmaps : null,
      mmappedMem: mp ? mp.mmappedMem : null,
      mmapThreshold: mp ? mp.mmapThreshold : null,
      tcacheCount: mp ? mp.tcacheCount : null,
    },
    inconsistencies: c.inconsistencies,
    inconsistencyCount: c.inconsistencyCount,
    complete: c.complete,
    stats: {
      elapsedMs: Math.round((performance.now() - t0) * 10) / 10,
      bytesRead: c.bytesRead,
      chunksWalked: c.chunksWalked,
    },
  };
}

function fragmentation(t: { inUseBytes: number; freeBytes: number; topBytes: number }): number {
  const free = t.freeBytes - t.topBytes;
  const denom = t.inUseBytes + free;
  return denom > 0 ? free / denom : 0;
}

/**
 * Finds the tcache_perthread_structs among the candidates and reclassifies their entries.
 * Validation per candidate: every count <= mp_.tcache_count, count == 0 iff entry == NULL,
 * entries 16-aligned inside a walked heap; then each chain: header size of its bin, key ==
 * tcache_key (2.34+; inferred as the most common key when there is no symbol) or == the
 * tcache itself (2.29-2.33), length == count, next demangled (2.32+).
 */
function walkTcaches(
  c: Census,
  mp: ReturnType<typeof readMallocParams>,
  onStruct?: (userAddr: number) => void,
): { found: number; keySource?: string } {
  const L = c.loc.layout,
    T = L.tcache;
  const structBytes = T.entries + T.bins * 8;
  const maxCount = T.countBytes === 1 ? 255 : mp && mp.tcacheCount > 0 ? mp.tcacheCount : 65535;
  const buf = Buffer.alloc(structBytes);
  type Cand = { chunk: number; counts: number[]; entries: number[] };
  const valid: Cand[] = [];
  for (const chunk of c.tcacheCandidates) {
    const n = c.space.readInto(chunk + 16, buf, 0, structBytes);
    c.bytesRead += n;
    if (n !== structBytes) continue;
    const counts: number[] = [],
      entries: number[] = [];
    let ok = true;
    for (let i = 0; i < T.bins && ok; i++) {
      const cnt = T.countBytes === 1 ? buf[i]! : buf.readUInt16LE(i * 2);
      const e = buf.readUInt32LE(T.entries + i * 8 + 4) * TWO32 + buf.readUInt32LE(T.entries + i * 8);
      if (T.countMeaning === 'count' && (cnt > maxCount || (cnt === 0) !== (e === 0))) ok = false;
      if (e !== 0 && (e % 16 !== 0 || !c.segmentOf(e - 16))) ok = false;
      counts.push(cnt);
      entries.push(e);
    }
    if (ok) valid.push({ chunk, counts, entries });
  }
  // tcache_key: from the debug file, else the most common key among the first entries.
  let key = c.loc.tcacheKey;
  let keySource: string | undefined;
  if (T.key === 'random' && key === null) {
    const votes = new Map<number, number>();
    for (const v of valid)
      for (const e of v.entries) {
        if (e !== 0 && c.readSmall(e + 8, 8)) {
          const k = c.u64(0);
          votes.set(k, (votes.get(k) ?? 0) + 1);
        }
      }
    let best = 0;
    for (const [k, n] of votes)
      if (n > best) {
        best = n;
        key = k;
      }
    if (key !== null)
      keySource = `heuristic: most common tcache_entry.key (${best} of ${[...votes.values()].reduce((x, y) => x + y, 0)} list heads)`;
  }
  let found = 0;
  for (const v of valid) {
    const user = v.chunk + 16;
    // A candidate with entries must show the key in its first entry; else it is user data.
    if (T.key !== 'none') {
      const head = v.entries.find((e) => e !== 0);
      if (head !== undefined) {
        if (!c.readSmall(head + 8, 8)) continue;
        const k = c.u64(0);
        if ((T.key === 'random' && k !== key) || (T.key === 'perthread' && k !== user)) continue;
      }
    }
    found++;
    onStruct?.(user);
    for (let i = 0; i < T.bins; i++) {
      let e = v.entries[i]!;
      const limit = T.countMeaning === 'count' ? v.counts[i]! : maxCount;
      let n = 0;
      const listAddr = user + T.entries + i * 8;
      while (e !== 0) {
        if (n >= limit) {
          report(c, e, 'tcache-count', `tcache 0x${user.toString(16)} bin ${i}: more entries than its count ${limit}`);
          break;
        }
        const chunk = e - 16;
        if (e % 16 !== 0 || !c.readSmall(chunk + 8, 24)) {
          report(
            c,
            e,
            'tcache-bad-pointer',
            `tcache 0x${user.toString(16)} bin ${i}: entry 0x${e.toString(16)} misaligned or unreadable`,
          );
          break;
        }
        const size = c.u64(0) - (c.small[0]! & 7);
        if (i < 64 && size !== tcacheBinChunkSize(i)) {
          report(
            c,
            e,
            'tcache-bad-size',
            `tcache 0x${user.toString(16)} bin ${i} (chunk size ${tcacheBinChunkSize(i)}) holds a chunk of size ${size}`,
          );
          break;
        }
        const k = c.u64(16);
        if ((T.key === 'random' && key !== null && k !== key) || (T.key === 'perthread' && k !== user)) {
          report(
            c,
            e,
            'tcache-bad-key',
            `tcache 0x${user.toString(16)} bin ${i}: entry key 0x${k.toString(16)} is not the tcache key`,
          );
          break;
        }
        if (!c.reclassify(chunk, size, 'tcache', listAddr)) break;
        n++;
        e = L.safeLinking ? reveal(c.small.readUInt32LE(8), c.small.readUInt32LE(12), e) : c.u64(8);
      }
      if (T.countMeaning === 'count' && e === 0 && n !== v.counts[i]) {
        report(
          c,
          listAddr,
          'tcache-count',
          `tcache 0x${user.toString(16)} bin ${i}: count ${v.counts[i]} but ${n} entries`,
        );
      }
    }
  }
  return { found, keySource };
}

function report(c: Census, address: number, kind: string, detail: string): void {
  c.report({ address, kind, detail });
}
