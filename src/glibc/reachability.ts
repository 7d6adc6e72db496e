// Live reachability of glibc's in-use chunks: a conservative mark, as valgrind's memcheck does
// at exit (coregrind / memcheck/mc_leakcheck.c, valgrind 3.19), over a live process or a core,
// read-only and without stopping it.
//
// Blocks: every chunk the heap census finally counts as in use (heap and mmapped chunks), minus
// glibc's own tcache_perthread_structs (allocator metadata; valgrind never sees them). A block's
// words are [user, user + usable): usable = chunk size - 8 (heap chunk: the next chunk's prev_size
// field is user data while this one is in use) or - 16 (mmapped). Only 8-aligned words are looked
// at. A word equal to a block's user pointer is a start pointer, one inside it an interior pointer.
//
// Roots (read through AddressSpace only; aggregated into `roots` of the result):
//  - every thread's stack from its stack pointer minus the 128-byte red zone to the end of the
//    mapping holding it (live: /proc/PID/task/TID/syscall gives sp while the thread is blocked in
//    a syscall; a running thread's sp is unknown, so its whole stack mapping is scanned: for the
//    main thread [stack], for another thread its mapping is scanned whole as anonymous memory);
//  - every other readable mapping that is writable or anonymous, minus glibc's heaps and mmapped
//    chunks: modules' .data/.bss (and the anonymous .bss tail), shared memory (nginx zones), other
//    allocators' memory (LuaJIT's heap), ld.so's allocations. TLS: a pthread's static TLS and TCB
//    lie at the top of its stack mapping (above sp); the main thread's in ld.so's anonymous memory;
//    dynamic TLS blocks are chunks reached through the DTV. Non-resident windows are skipped;
//  - registers: known in a core file (its notes) and scanned; a live process's registers cannot be
//    read without stopping it (ptrace), so they are not: the result says so and relies on stability.
//
// Classes (valgrind's names): reachable = a chain of start pointers from a root; possibly lost =
// reached from the roots only through some interior pointer; the rest is lost and split into
// cliques in address order: the lowest unreached block leads the blocks it reaches (indirectly
// lost); a later leader that reaches an earlier one absorbs its clique; leaders left are definitely
// lost (one per unreferenced group, lost cycles included).
//
// Live consistency: a chunk whose header changed between the census and the content read is not
// classified (unknown); with `scans: 2` (default) a chunk counts as lost only when it was lost in
// both scans at the same address and size; otherwise unknown (reachable when the last scan
// reached it).
//
// How, without storing the graph between blocks (issue 18: leakscope's own memory): the census
// walk records the chunks (ChunkTable); the roots are scanned (hits in the state bytes); the
// reachable blocks are found by a depth-first walk from the roots' start pointers that reads each
// block it reaches from the target (a window of the heap around the walk, on the side it moves to,
// grown while the walk stays in it: a linked list is followed window by window, in either
// direction), checking its header as it goes; an interior pointer from a reachable block marks its
// target (S_ROOT_INTERIOR), so the possibly-lost step needs nothing of the reachable blocks. Then
// only the blocks left unreached are read again in address order, and their edges stored (u32:
// target index * 2 + interior, de-duplicated per source) for the possibly-lost step and the
// cliques. Past `maxEdges` the remaining blocks' edges are not stored but read again when reached.
//
// Cost: per scan the census walk and about one more read of the in-use chunks' words (the reached
// blocks once each; the unreached ones again). Per chunk ~2.3 bytes: a size byte (ChunkTable: no
// addresses stored, one per 32 chunks), the state byte, the lookup table (2 bytes per 512 heap
// bytes); plus the exceptions (the large, mmapped and gap-followed chunks, ~25 bytes each), the
// walk's stack (as deep as it gets) and the unreached blocks' edges. Large per-chunk arrays are
// made bigger than glibc's mmap threshold: zero-filled virtual memory, resident only where
// written, given back when freed (releaseMemory runs a collection between scans, so a dead scan's
// tables are gone before the next allocates).

import type { AddressSpace } from '../target/address-space.js';
import { findMapping } from '../target/address-space.js';
import { pageAlignedBuffer } from '../target/aligned-buffer.js';
import type { Mapping } from '../model/memory.js';
import { memoryCheckpoint, releaseMemory } from '../model/release-memory.js';
import { Symbolizer } from '../symbols/symbolizer.js';
import type { HeapCensus } from './census-types.js';
import { heapCensus } from './census.js';
import { locateGlibc, type GlibcLocation } from './locate.js';
import { grownTo } from '../model/typed-arrays.js';

const TWO32 = 4294967296;
/**
 * Bytes above glibc's largest dynamic mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX: 32 MiB on 64-bit,
 * malloc/malloc.c): an array this big is always mmapped by node's calloc, so its pages go back to
 * the system when it is freed. A smaller one may land in the brk heap once freed mmapped blocks
 * raised the threshold, and stay resident after it is freed (only the top of the heap is trimmed).
 */
const ALWAYS_MMAPPED = 33 << 20;
/** A zero-filled per-chunk array; large ones over-allocated virtually so they are mmapped (untouched pages cost no RSS). */
function perChunk<T extends Uint8Array | Uint16Array | Int32Array | Uint32Array | Float64Array>(
  C: { new (n: number): T; BYTES_PER_ELEMENT: number },
  n: number,
): T {
  if (n * C.BYTES_PER_ELEMENT < 1 << 20) return new C(n);
  return new C(Math.max(n, Math.ceil(ALWAYS_MMAPPED / C.BYTES_PER_ELEMENT))).subarray(0, n) as T;
}
/** Sorts edges a[0 .. len) (target * 2 + interior) and keeps one per target; returns how many are left. */
function uniqueTargets(a: Uint32Array, len: number): number {
  if (len <= 1) return len;
  if (len <= 16)
    for (let p = 1; p < len; p++) {
      const v = a[p]!;
      let q = p - 1;
      while (q >= 0 && a[q]! > v) {
        a[q + 1] = a[q]!;
        q--;
      }
      a[q + 1] = v;
    }
  else a.subarray(0, len).sort();
  let w = 1;
  for (let p = 1; p < len; p++) if (a[p]! >>> 1 !== a[w - 1]! >>> 1) a[w++] = a[p]!;
  return w;
}
/** x86-64 System V red zone below sp that leaf code may use (valgrind's VG_STACK_REDZONE_SZB). */
export const STACK_RED_ZONE = 128;
const WINDOW = 4 << 20;
/** Default cap on stored edges (4 bytes each). */
export const DEFAULT_MAX_EDGES = 24 << 20;
/** Most chunk-table entries allocated up front (9 bytes each, virtual until written). */
const MAX_PRESIZED = 1 << 24;

export type ReachClass = 'definitelyLost' | 'indirectlyLost' | 'possiblyLost' | 'reachable' | 'unknown';
export const REACH_CLASSES: readonly ReachClass[] = [
  'definitelyLost',
  'indirectlyLost',
  'possiblyLost',
  'reachable',
  'unknown',
];

// Per-chunk states of one scan.
const S_UNREACHED = 0,
  S_REACHABLE = 1,
  S_POSSIBLE = 2,
  S_DEFINITE = 3,
  S_INDIRECT = 4,
  S_UNKNOWN = 5,
  S_ALLOCATOR = 6,
  /** During the mark only: unreached so far, an interior pointer from a root. */
  S_ROOT_INTERIOR = 7;
/**
 * State bits: the S_* value; before the reach walk also the root hits; during it PEND on a
 * reachable block whose words are still to be read (on the walk's stack).
 */
const S_MASK = 0x1f,
  PEND = 0x20,
  H_START = 0x40,
  H_INTERIOR = 0x80;

/** Chunks per edge-offset entry (Scan.edgeBlock). */
const EDGE_BLOCK = 32;
const M_POSSIBLE = 1,
  M_CLIQUE = 2;

export interface ClassCount {
  chunks: number;
  bytes: number;
}

export interface ReachBucket {
  /** Chunk-size bucket [minBytes, maxBytes), as the census histogram. */
  minBytes: number;
  maxBytes: number;
  definitelyLost: ClassCount;
  indirectlyLost: ClassCount;
  possiblyLost: ClassCount;
  reachable: ClassCount;
  unknown: ClassCount;
}

export interface ReachRoot {
  /** 'stack' (from sp), 'stack-whole' (thread running: whole mapping), 'module' (.data/.bss), 'anonymous', 'shared', 'file', 'registers'. */
  kind: string;
  /** Module path, `thread TID`, or '' for anonymous memory. */
  name: string;
  ranges: number;
  /** Bytes scanned. */
  bytes: number;
  /** Words found pointing to the start / into the interior of a block. */
  startPointers: number;
  interiorPointers: number;
}

export interface LostChunk {
  address: number;
  chunkSize: number;
  class: ReachClass;
  /** Definitely lost: the blocks of its group (itself + the blocks it leads) and their bytes. */
  groupChunks: number;
  groupBytes: number;
  /** The first bytes at the user pointer, hex, and as ASCII ('.' for non-printable). */
  hex: string;
  ascii: string;
}

export interface Reachability {
  definitelyLost: ClassCount;
  indirectlyLost: ClassCount;
  possiblyLost: ClassCount;
  reachable: ClassCount;
  unknown: ClassCount;
  /** glibc's own chunks (tcache_perthread_struct): in use, never classified. */
  allocator: ClassCount;
  /** Per chunk-size bucket, ascending, non-empty only. */
  buckets: ReachBucket[];
  roots: ReachRoot[];
  /** The largest lost chunks (definitely lost first by group bytes, then the others by size). */
  largestLost: LostChunk[];
  /** Scans made; a chunk is lost only when it was lost in every one (stability). */
  scans: number;
  notes: string[];
  stats: {
    elapsedMs: number;
    bytesRead: number;
    chunks: number;
    edges: number;
    edgesStored: boolean;
    rootBytes: number;
    phasesMs: Record<string, number>;
  };
}

export interface ReachOptions {
  symbolizer?: Symbolizer;
  location?: GlibcLocation;
  /** Scans (1 or more; default 2): lost only when lost in each. */
  scans?: number;
  /** Pause between scans, ms (default 100). */
  intervalMs?: number;
  /** Cap on stored edges (default DEFAULT_MAX_EDGES). */
  maxEdges?: number;
  /** How many lost chunks to list with a preview (default 10). */
  largest?: number;
  /** Preview bytes per listed chunk (default 64). */
  previewBytes?: number;
  /**
   * An earlier call's last scan: this call's first scan is confirmed against it (lost only when
   * lost in both), so a caller can spread the scans out (e.g. over an observation pause).
   */
  previous?: PreviousScan;
}

export interface ReachResult {
  reachability: Reachability;
  /** The census of the last scan. */
  census: HeapCensus;
  /** The class of the chunk holding `addr` (user pointer or inside the block), undefined when no in-use chunk does. */
  classOf(addr: number): ReachClass | 'allocator' | undefined;
  /** This result's last scan, to confirm against in a later call (ReachOptions.previous). */
  lastScan: PreviousScan;
}

/**
 * What stability needs of an earlier scan: its lost chunks (possibly / definitely / indirectly),
 * ascending: user pointer, chunk size / 16, 1 when mmapped, and the hash of the chunk's first
 * bytes (lostFingerprint; -1 unreadable). Only those: a chunk not listed was not lost then (the
 * earlier scan's whole chunk table is not kept while the next one runs).
 */
export interface PreviousScan {
  addr: Float64Array;
  size16: Uint32Array;
  mmapped: Uint8Array;
  print: Float64Array;
}

/** Bytes of a lost chunk hashed to tell it from a new chunk at the same address. */
const FINGERPRINT_BYTES = 64;

/**
 * FNV-1a of a lost chunk's first bytes as read now (-1 when unreadable). A chunk lost in two scans
 * is the same chunk only if these did not change: glibc hands a freed chunk to the next malloc of
 * its size at once, so a short-lived chunk caught "lost" (its pointer in a register) in two scans
 * can be two allocations at one address; nothing writes a chunk nothing points to.
 */
function lostFingerprint(space: AddressSpace, addr: number, len: number, buf: Buffer): number {
  const n = Math.min(len, FINGERPRINT_BYTES);
  if (space.readInto(addr, buf, 0, n) !== n) return -1;
  let h = 0x811c9dc5;
  for (let i = 0; i < n; i++) h = Math.imul(h ^ buf[i]!, 0x01000193) >>> 0;
  return h;
}

/** ChunkTable.code of a chunk listed among the exceptions (size 4080 bytes or more, mmapped, or followed by a gap). */
const EXC = 255;
/** Chunks per address anchor. */
const ANCHOR = 32;
/** Lookup-table entries per absolute base (the entries themselves are u16 offsets from it). */
const TAB_BLOCK = 64;

/**
 * In-use chunks of one census in address order, with an address -> chunk lookup; ~1.3 bytes per
 * chunk. A chunk's address is not stored: chunks tile the heap, so chunk i + 1 starts where chunk
 * i ends, plus a gap where free chunks (or another heap) lie between; one absolute address per
 * ANCHOR chunks, the rest summed from there. Per chunk one byte: size / 16 when below EXC and the
 * chunk is a heap chunk followed by the next without a gap; else EXC and the chunk is among the
 * exceptions (sorted by index: size / 16, gap to the next chunk's user pointer, mmapped), which are
 * few: the large chunks, the mmapped ones and one per free run.
 */
export class ChunkTable {
  n = 0;
  private code: Uint8Array;
  private anchor: Float64Array;
  private excIdx: Float64Array = new Float64Array(64);
  private excSize16: Float64Array = new Float64Array(64);
  private excGap: Float64Array = new Float64Array(64);
  private excMm: Uint8Array = new Uint8Array(64);
  private excN = 0;
  /** Last exception found (sequential lookups). */
  private excCur = 0;
  /** Last address computed: chunk lastI at lastA. */
  private lastI = -1;
  private lastA = 0;
  /** Builder state: the previous chunk pushed. */
  private prevAddr = 0;
  private prevSize = 0;
  private regStart = new Float64Array(0);
  private regEnd = new Float64Array(0);
  private regGran = new Float64Array(0);
  private regTab = new Int32Array(0);
  /** Region r's chunks: [regFirst[r], regFirst[r + 1]). */
  private regFirst = new Int32Array(0);
  /** Lookup table: entry e = tabBase[e / TAB_BLOCK] + tabRel[e] (0xffff: in tabWide). */
  private tabBase = new Int32Array(0);
  private tabRel = new Uint16Array(0);
  private tabWide = new Map<number, number>();
  /** Where the chunk is that `find` returned: its user pointer. */
  lastStart = 0;
  min = Infinity;
  max = -Infinity;
  minHi = 0;
  maxHi = 0;
  /** Indices where the pushed addresses went down (a new run). */
  private runs: number[] = [0];

  constructor(capacity: number) {
    const cap = Math.max(16, capacity);
    this.code = perChunk(Uint8Array, cap);
    this.anchor = new Float64Array(Math.ceil(cap / ANCHOR) + 1);
  }

  private addExc(i: number, size16: number, gap: number, mm: boolean): void {
    const k = this.excN;
    if (k === this.excIdx.length) {
      const len = Math.max(64, k * 2);
      this.excIdx = grownTo(this.excIdx, len);
      this.excSize16 = grownTo(this.excSize16, len);
      this.excGap = grownTo(this.excGap, len);
      this.excMm = grownTo(this.excMm, len);
    }
    this.excIdx[k] = i;
    this.excSize16[k] = size16;
    this.excGap[k] = gap;
    this.excMm[k] = mm ? 1 : 0;
    this.excN = k + 1;
  }

  /** A chunk the census walk saw in use (its words are read after the walk, once every chunk is known). */
  push(userAddr: number, chunkSize: number, mmapped: boolean): void {
    const n = this.n;
    if (n === this.code.length) this.code = grownTo(this.code, n * 2);
    if (n % ANCHOR === 0) {
      if (n / ANCHOR >= this.anchor.length) this.anchor = grownTo(this.anchor, Math.max(64, this.anchor.length * 2));
      this.anchor[n / ANCHOR] = userAddr;
    }
    if (n > 0) {
      if (userAddr < this.prevAddr) this.runs.push(n);
      const gap = userAddr - (this.prevAddr + this.prevSize);
      if (gap !== 0) {
        // The previous chunk is followed by a gap: an exception (it is the last one when it already is).
        const last = this.excN - 1;
        if (last >= 0 && this.excIdx[last] === n - 1) this.excGap[last] = gap;
        else {
          this.addExc(n - 1, this.code[n - 1]!, gap, false);
          this.code[n - 1] = EXC;
        }
      }
    }
    const z = Math.floor(chunkSize / 16);
    if (!mmapped && z < EXC) this.code[n] = z;
    else {
      this.code[n] = EXC;
      this.addExc(n, z, 0, mmapped);
    }
    this.prevAddr = userAddr;
    this.prevSize = z * 16;
    this.n = n + 1;
  }

  /** Position of chunk i among the exceptions (it is one). */
  private exc(i: number): number {
    const c = this.excCur;
    const idx = this.excIdx;
    if (c < this.excN && idx[c] === i) return c;
    if (c + 1 < this.excN && idx[c + 1] === i) return (this.excCur = c + 1);
    let lo = 0,
      hi = this.excN - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = idx[mid]!;
      if (v < i) lo = mid + 1;
      else if (v > i) hi = mid - 1;
      else return (this.excCur = mid);
    }
    throw new Error(`chunk table: no exception for chunk ${i}`);
  }

  /** Bytes from chunk i's user pointer to chunk i + 1's. */
  private step(i: number): number {
    const c = this.code[i]!;
    if (c !== EXC) return c * 16;
    const e = this.exc(i);
    return this.excSize16[e]! * 16 + this.excGap[e]!;
  }

  /** User pointer of chunk i (after finish; in push order before). */
  address(i: number): number {
    const l = this.lastI;
    let a: number;
    if (l >= 0 && i >= l && i - l < ANCHOR) {
      a = this.lastA;
      for (let q = l; q < i; q++) a += this.step(q);
    } else if (l >= 0 && i < l && l - i < ANCHOR) {
      a = this.lastA;
      for (let q = l - 1; q >= i; q--) a -= this.step(q);
    } else {
      const b = Math.floor(i / ANCHOR);
      a = this.anchor[b]!;
      for (let q = b * ANCHOR; q < i; q++) a += this.step(q);
    }
    this.lastI = i;
    this.lastA = a;
    return a;
  }
  /** Chunk size / 16 of chunk i. */
  s16(i: number): number {
    const c = this.code[i]!;
    return c !== EXC ? c : this.excSize16[this.exc(i)]!;
  }
  size(i: number): number {
    return this.s16(i) * 16;
  }
  isMmapped(i: number): boolean {
    return this.code[i] === EXC && this.excMm[this.exc(i)] === 1;
  }
  /** End of block i's words (exclusive). */
  end(i: number): number {
    const c = this.code[i]!;
    if (c !== EXC) return this.address(i) + c * 16 - 8;
    const e = this.exc(i);
    return this.address(i) + this.excSize16[e]! * 16 - (this.excMm[e] === 1 ? 16 : 8);
  }
  /** Chunk k's user pointer, size / 16 and kind at once (into la, lz, lm). */
  la = 0;
  lz = 0;
  lm = false;
  load(k: number): void {
    this.la = this.address(k);
    const c = this.code[k]!;
    if (c !== EXC) {
      this.lz = c;
      this.lm = false;
    } else {
      const e = this.exc(k);
      this.lz = this.excSize16[e]!;
      this.lm = this.excMm[e] === 1;
    }
  }
  /** Calls cb for every mmapped chunk (user pointer, chunk size). */
  forEachMmapped(cb: (userAddr: number, chunkSize: number) => void): void {
    for (let e = 0; e < this.excN; e++)
      if (this.excMm[e] === 1) {
        const z = this.excSize16[e]!;
        cb(this.address(this.excIdx[e]!), z * 16);
      }
  }

  /** User pointers of chunks reported in use by the walk and found on a free list afterwards. */
  readonly freed: number[] = [];

  /**
   * Puts the chunks in address order (the census reports ascending runs: one per heap, then mmapped
   * chunks; runs are ordered by their first address, a full sort only if they overlap) without the
   * chunks found on a free list, and builds the lookup table. Rebuilt into new columns only when
   * something moves (~1.3 bytes per chunk while both exist).
   */
  finish(): void {
    const n = this.n;
    const runs = this.runs;
    const fr = Float64Array.from(this.freed).sort();
    if (runs.length === 1 && fr.length > 0) {
      // One run: compacted in place (a chunk is written at or below where it was read; the
      // exceptions into new columns), walking the old chunks' addresses along.
      const next = new ChunkTable(0);
      next.code = this.code;
      next.anchor = this.anchor;
      let a = this.anchor[0]!,
        x = 0,
        q = 0;
      for (let i = 0; i < n; i++) {
        const c = this.code[i]!;
        let z = c,
          gap = 0,
          mm = false;
        if (c === EXC) {
          z = this.excSize16[x]!;
          gap = this.excGap[x]!;
          mm = this.excMm[x++] === 1;
        }
        const v = a;
        a += z * 16 + gap;
        while (q < fr.length && fr[q]! < v) q++;
        if (q < fr.length && fr[q] === v) continue;
        next.push(v, z * 16, mm);
      }
      this.adopt(next);
    } else if (runs.length > 1) {
      const next = new ChunkTable(n);
      let q = 0;
      const put = (i: number) => {
        const v = this.address(i);
        while (q < fr.length && fr[q]! < v) q++;
        if (q < fr.length && fr[q] === v) return;
        next.push(v, this.s16(i) * 16, this.isMmapped(i));
      };
      const rs = runs
        .map((s, k) => ({ s, e: k + 1 < runs.length ? runs[k + 1]! : n }))
        .sort((x, y) => this.address(x.s) - this.address(y.s));
      let disjoint = true;
      for (let k = 1; k < rs.length && disjoint; k++)
        if (this.address(rs[k]!.s) <= this.end(rs[k - 1]!.e - 1)) disjoint = false;
      if (disjoint) {
        for (const r of rs) for (let i = r.s; i < r.e; i++) put(i);
      } else {
        // Overlapping runs (not seen from glibc's walk): a full sort by address.
        const addrs = new Float64Array(n);
        for (let i = 0; i < n; i++) addrs[i] = this.address(i);
        const o = new Uint32Array(n);
        for (let i = 0; i < n; i++) o[i] = i;
        o.sort((x, y) => addrs[x]! - addrs[y]!);
        for (let k = 0; k < n; k++) put(o[k]!);
      }
      this.adopt(next);
    }
    this.code = this.code.subarray(0, this.n);
    this.buildLookup();
  }

  /** Takes over another table's chunks (finish). */
  private adopt(next: ChunkTable): void {
    this.n = next.n;
    this.code = next.code;
    this.anchor = next.anchor;
    this.excIdx = next.excIdx;
    this.excSize16 = next.excSize16;
    this.excGap = next.excGap;
    this.excMm = next.excMm;
    this.excN = next.excN;
    this.excCur = 0;
    this.lastI = -1;
  }

  /**
   * Regions of chunks (a gap of more than 1 MiB starts a new one), each with a table: granule ->
   * first chunk ending past it.
   */
  private buildLookup(): void {
    const n = this.n;
    if (n === 0) return;
    const starts: number[] = [],
      ends: number[] = [],
      firsts: number[] = [];
    let rs = this.address(0),
      re = this.end(0),
      first = 0;
    for (let i = 1; i <= n; i++) {
      const ai = i < n ? this.address(i) : 0;
      if (i === n || ai - 16 - re > 1 << 20) {
        starts.push(rs);
        ends.push(re);
        firsts.push(first);
        if (i === n) break;
        rs = ai;
        first = i;
      }
      re = Math.max(re, this.end(i));
    }
    const R = starts.length;
    this.regStart = Float64Array.from(starts);
    this.regEnd = Float64Array.from(ends);
    this.regFirst = Int32Array.from([...firsts, n]);
    this.regGran = new Float64Array(R);
    this.regTab = new Int32Array(R + 1);
    let total = 0;
    for (let r = 0; r < R; r++) {
      const count = (r + 1 < R ? firsts[r + 1]! : n) - firsts[r]!;
      const bytes = ends[r]! - starts[r]!;
      let gran = 512;
      while (bytes / gran > Math.max(64, count * 4)) gran *= 2;
      this.regGran[r] = gran;
      this.regTab[r] = total;
      total += Math.ceil(bytes / gran) + 1;
    }
    this.regTab[R] = total;
    this.tabBase = new Int32Array(Math.ceil(total / TAB_BLOCK) + 1);
    this.tabRel = perChunk(Uint16Array, total); // mmapped when large: given back when the scan is dropped
    this.tabWide = new Map();
    const base = this.tabBase,
      rel = this.tabRel;
    for (let r = 0; r < R; r++) {
      const gran = this.regGran[r]!,
        t0 = this.regTab[r]!,
        cnt = this.regTab[r + 1]! - t0,
        start = starts[r]!;
      let k = firsts[r]!;
      const last = r + 1 < R ? firsts[r + 1]! : n;
      let kEnd = this.end(k);
      for (let g = 0; g < cnt; g++) {
        const at = start + g * gran;
        while (k < last - 1 && kEnd <= at) {
          k++;
          kEnd = this.end(k);
        }
        const e = t0 + g;
        if (e % TAB_BLOCK === 0) base[e / TAB_BLOCK] = k;
        const d = k - base[Math.floor(e / TAB_BLOCK)]!;
        if (d < 0xffff) rel[e] = d;
        else {
          rel[e] = 0xffff;
          this.tabWide.set(e, k);
        }
      }
    }
    this.min = starts[0]!;
    this.max = ends[R - 1]!;
    this.minHi = Math.floor(this.min / TWO32);
    this.maxHi = Math.floor(this.max / TWO32);
  }

  /** The bytes of chunk k's region (chunks less than 1 MiB apart): its first user pointer and last block end. */
  regionAround(k: number): { start: number; end: number } {
    const f = this.regFirst;
    let lo = 0,
      hi = f.length - 2;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (f[mid]! <= k) lo = mid;
      else hi = mid - 1;
    }
    return { start: this.regStart[lo]!, end: this.regEnd[lo]! };
  }

  /** Index of the block whose words [user, end) hold v, or -1; its user pointer in lastStart. */
  find(v: number): number {
    if (v < this.min || v >= this.max) return -1;
    const rs = this.regStart;
    let lo = 0,
      hi = rs.length - 1,
      r = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (rs[mid]! <= v) {
        r = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (r < 0 || v >= this.regEnd[r]!) return -1;
    const e = this.regTab[r]! + Math.floor((v - rs[r]!) / this.regGran[r]!);
    const d = this.tabRel[e]!;
    let k = d !== 0xffff ? this.tabBase[Math.floor(e / TAB_BLOCK)]! + d : this.tabWide.get(e)!;
    const last = this.regFirst[r + 1]!,
      code = this.code;
    let a = this.address(k);
    while (k < last) {
      if (a > v) return -1;
      const c = code[k]!;
      let blockEnd: number, next: number;
      if (c !== EXC) {
        blockEnd = a + c * 16 - 8;
        next = a + c * 16;
      } else {
        const x = this.exc(k);
        const z = this.excSize16[x]! * 16;
        blockEnd = a + z - (this.excMm[x] === 1 ? 16 : 8);
        next = a + z + this.excGap[x]!;
      }
      if (v < blockEnd) {
        this.lastI = k;
        this.lastA = a;
        this.lastStart = a;
        return k;
      }
      k++;
      a = next;
    }
    return -1;
  }

  /** Index of the chunk whose user pointer is exactly `userAddr`, or -1. */
  indexOf(userAddr: number): number {
    const k = this.find(userAddr);
    return k >= 0 && this.lastStart === userAddr ? k : -1;
  }
}

interface Range {
  start: number;
  end: number;
}

/** One window buffer per process, page-aligned (the kernel's copy into it is ~2.6x faster), with a u32 view. */
let sharedBuf: Buffer | undefined;
let sharedU32: Uint32Array | undefined;
function window(): { buf: Buffer; u32: Uint32Array } {
  if (!sharedBuf) {
    sharedBuf = pageAlignedBuffer(WINDOW);
    sharedU32 = new Uint32Array(sharedBuf.buffer, sharedBuf.byteOffset, WINDOW >>> 2);
  }
  return { buf: sharedBuf, u32: sharedU32! };
}

/** One scan: census, chunk table, roots, edges, mark. */
class Scan {
  readonly t: ChunkTable;
  /** Per chunk: S_* in the low bits; before the mark, root hits too (H_START, H_INTERIOR). */
  state: Uint8Array;
  /**
   * Where each block's edges are: the blocks' edges lie in address order in `edges`; per block of
   * EDGE_BLOCK chunks the offset of its first chunk's edges, per chunk its edge count (u8; 255: in
   * bigCount). 1.125 bytes per chunk instead of a u32 offset each.
   */
  edgeBlock: Uint32Array;
  edgeCount: Uint8Array;
  bigCount = new Map<number, number>();
  edges: Uint32Array;
  edgeLen = 0;
  /** Blocks without stored edges (edge budget exhausted: read again whenever the mark reaches them), a bit each; allocated when needed. */
  private noEdges: Uint8Array | null = null;
  private setNoEdges(k: number): void {
    const b = (this.noEdges ??= new Uint8Array((this.t.n >>> 3) + 1));
    b[k >>> 3] = b[k >>> 3]! | (1 << (k & 7));
  }
  private hasNoEdges(k: number): boolean {
    const b = this.noEdges;
    return b !== null && (b[k >>> 3]! & (1 << (k & 7))) !== 0;
  }
  /** How many blocks have no stored edges. */
  unstored = 0;
  /** Clique leaders of the lost blocks (mark's third step; zero-filled: resident only where written). */
  leader = new Int32Array(0);
  /** Work stack of the mark, grown as needed. */
  private stack = new Int32Array(1 << 12);
  bytesRead = 0;
  rootBytes = 0;
  roots = new Map<string, ReachRoot>();
  notes: string[] = [];
  phasesMs: Record<string, number> = {};

  constructor(
    readonly space: AddressSpace,
    readonly census: HeapCensus,
    table: ChunkTable,
    allocator: number[],
    readonly maxEdges: number,
  ) {
    this.t = table;
    const n = table.n;
    this.state = perChunk(Uint8Array, n);
    this.edgeBlock = new Uint32Array(Math.ceil(n / EDGE_BLOCK) + 1);
    this.edgeCount = perChunk(Uint8Array, n);
    // Presized to the budget (zero-filled: only the entries written cost RSS; no growth copies).
    this.edges = new Uint32Array(Math.max(16, maxEdges));
    for (const a of allocator) {
      const i = table.indexOf(a);
      if (i >= 0) this.state[i] = S_ALLOCATOR;
    }
  }

  /** Offset in `edges` of the block being read's first edge. */
  private from = 0;

  private setCount(k: number, c: number): void {
    if (c === 0) return;
    if (c < 255) this.edgeCount[k] = c;
    else {
      this.edgeCount[k] = 255;
      this.bigCount.set(k, c);
    }
  }

  countOf(k: number): number {
    const c = this.edgeCount[k]!;
    return c < 255 ? c : this.bigCount.get(k)!;
  }

  /** Offset of block k's first edge: its EDGE_BLOCK block's offset plus the counts before it. */
  firstEdge(k: number): number {
    let p = this.edgeBlock[Math.floor(k / EDGE_BLOCK)]!;
    for (let q = k - (k % EDGE_BLOCK); q < k; q++) p += this.countOf(q);
    return p;
  }

  /**
   * Sorts the edges of the block being read (edges[from .. edgeLen)) by target and keeps one per
   * target: a start pointer's (even) before an interior one's (odd). Returns false when less than
   * 1/8 of the budget is left afterwards. A block bigger than a window is sorted once, at its end
   * (or when it fills the budget), not after each window.
   */
  private dedupe(from: number): boolean {
    const e = this.edges,
      len = this.edgeLen - from;
    if (len > 1) {
      if (len <= 16) {
        for (let p = from + 1; p < this.edgeLen; p++) {
          const v = e[p]!;
          let q = p - 1;
          while (q >= from && e[q]! > v) {
            e[q + 1] = e[q]!;
            q--;
          }
          e[q + 1] = v;
        }
      } else e.subarray(from, this.edgeLen).sort();
      let w = from + 1;
      for (let p = from + 1; p < this.edgeLen; p++) if (e[p]! >>> 1 !== e[w - 1]! >>> 1) e[w++] = e[p]!;
      this.edgeLen = w;
    }
    // Room for at least 1/8 of the budget more: a block that fills it again and again is given up
    // (its edges are read again when reached) rather than sorted over and over.
    return this.edgeLen <= e.length - Math.max(1, e.length >>> 3);
  }

  /**
   * Edges of the block whose words are u32[w0 .. w1) (pointers to other blocks, one per target).
   * Returns false when the edge budget ran out (the block's edges are then dropped).
   */
  private blockEdges(k: number, u32: Uint32Array, w0: number, w1: number, last = true): boolean {
    const t = this.t,
      minHi = t.minHi,
      maxHi = t.maxHi,
      min = t.min,
      max = t.max,
      edges = this.edges;
    const from = this.from;
    for (let w = w0; w + 1 < w1; w += 2) {
      const h = u32[w + 1]!;
      if (h < minHi || h > maxHi) continue;
      const v = h * TWO32 + u32[w]!;
      if (v < min || v >= max) continue;
      const tgt = t.find(v);
      if (tgt < 0 || tgt === k) continue;
      const e = tgt * 2 + (v !== t.lastStart ? 1 : 0);
      if (this.edgeLen > from && edges[this.edgeLen - 1] === e) continue; // the same pointer again
      if (this.edgeLen === edges.length && !this.dedupe(from)) {
        this.edgeLen = from;
        return false;
      }
      edges[this.edgeLen++] = e;
    }
    if (last) this.dedupe(from);
    return true;
  }

  /** Set by checkInWindow: block k's words are u32[cw0 .. cwEnd). */
  private cw0 = 0;
  private cwEnd = 0;

  /**
   * Checks block k, whose header page starts at winStart in a window holding `got` bytes: readable,
   * the size field (user - 8) still the census's size and kind, not freed since (the next chunk's
   * PREV_INUSE clear: bins; tcache_key at user + 8: tcache, 2.34+). False: the block is unknown.
   * Else its words are u32[cw0 .. cwEnd).
   */
  private checkInWindow(k: number, u32: Uint32Array, winStart: number, got: number): boolean {
    const t = this.t;
    t.load(k);
    return this.checkLoaded(u32, winStart, got);
  }
  /** checkInWindow for the chunk last loaded (ChunkTable.load). */
  private checkLoaded(u32: Uint32Array, winStart: number, got: number): boolean {
    const t = this.t;
    const mm = t.lm;
    const off = t.la - winStart;
    const z = t.lz;
    const offEnd = off + z * 16 - (mm ? 16 : 8);
    if (offEnd > got) return false;
    const hw = (off - 8) >>> 2;
    const lo = u32[hw]!,
      hi = u32[hw + 1]!;
    if ((hi !== 0 ? hi * TWO32 + (lo - (lo & 7)) !== z * 16 : lo >>> 4 !== z) || ((lo & 2) !== 0) !== mm) return false;
    const w0 = off >>> 2,
      wEnd = offEnd >>> 2;
    if (!mm && offEnd + 8 <= got && (u32[wEnd]! & 1) === 0) return false;
    if (this.keyOn && wEnd - w0 >= 4 && u32[w0 + 2] === this.keyLo && u32[w0 + 3] === this.keyHi) return false;
    this.cw0 = w0;
    this.cwEnd = wEnd;
    return true;
  }
  private keyOn = false;
  private keyLo = 0;
  private keyHi = 0;
  private setKey(key: number | null): void {
    this.keyOn = key !== null;
    this.keyLo = key === null ? 0 : key % TWO32;
    this.keyHi = key === null ? 0 : Math.floor(key / TWO32);
  }

  /**
   * Reads the words of the blocks `only` accepts (all when absent) in address order, windows of
   * 4 MiB (gaps < 64 KiB read through), checking each (checkInWindow; unknown when it fails), and
   * calls `visit` with each good block's words u32[w0 .. wEnd) (`big` for a block larger than a
   * window, whose header was checked directly: read its words piece by piece).
   */
  private checkedBlocks(
    tcacheKey: number | null,
    only: ((k: number) => boolean) | null,
    visit: (k: number, u32: Uint32Array, w0: number, wEnd: number) => void,
    big: (k: number) => void,
  ): void {
    const t = this.t,
      n = t.n,
      space = this.space,
      state = this.state;
    this.setKey(tcacheKey);
    const { buf, u32 } = window();
    const addr = (k: number) => t.address(k);
    const endOf = (k: number) => t.end(k);
    const wanted = (k: number) => (state[k]! & S_MASK) !== S_ALLOCATOR && (!only || only(k));
    let i = 0;
    while (i < n) {
      if (!wanted(i)) {
        i++;
        continue;
      }
      // A window from the page of the first chunk's header over the following chunks (gaps < 64 KiB
      // read through); + 8: the next chunk's size field (PREV_INUSE).
      const winStart = Math.floor((addr(i) - 16) / 4096) * 4096;
      const winLimit = winStart + WINDOW - 8;
      let winEnd = endOf(i);
      let j = i + 1,
        jEnd = i + 1;
      while (j < n) {
        if (addr(j) - 16 - winEnd >= 64 << 10) break;
        if (wanted(j)) {
          const e = endOf(j);
          if (e > winLimit) break;
          winEnd = e;
          jEnd = j + 1;
        }
        j++;
      }
      j = jEnd;
      const isBig = winEnd > winLimit; // one chunk bigger than a window: read in pieces
      const got = isBig ? 0 : space.readInto(winStart, buf, 0, winEnd + 8 - winStart);
      this.bytesRead += got;
      for (let k = i; k < j; k++) {
        if (!wanted(k)) continue;
        if (isBig) {
          if (!this.checkHeaderDirect(k)) this.setUnknown(k);
          else big(k);
        } else if (!this.checkInWindow(k, u32, winStart, got)) this.setUnknown(k);
        else visit(k, u32, this.cw0, this.cwEnd);
      }
      i = j;
    }
  }

  /** Block k is not classified (changed, freed or unreadable since the census). */
  private setUnknown(k: number): void {
    this.state[k] = S_UNKNOWN;
  }

  /**
   * Stores the edges of the blocks `only` accepts (the blocks no chain of start pointers reached:
   * what the possibly-lost and clique steps walk) in address order (edgeBlock, edgeCount),
   * de-duplicated per source, checked as the reach walk checks the blocks it reads. Past the edge
   * budget, blocks keep no edges (noEdges: read again when the mark reaches them).
   */
  readEdges(tcacheKey: number | null, only: ((k: number) => boolean) | null = null): void {
    const n = this.t.n;
    let full = false;
    this.checkedBlocks(
      tcacheKey,
      only,
      (k, u32, w0, wEnd) => {
        this.from = this.edgeLen;
        if (full) this.setNoEdges(k);
        else if (!this.blockEdges(k, u32, w0, wEnd)) {
          this.setNoEdges(k);
          full = true;
        }
        this.setCount(k, this.edgeLen - this.from);
      },
      (k) => {
        this.from = this.edgeLen;
        if (full) this.setNoEdges(k);
        else if (!this.bigEdges(k)) {
          this.setNoEdges(k);
          full = true;
        }
        this.setCount(k, this.edgeLen - this.from);
      },
    );
    // Offsets per EDGE_BLOCK chunks from the counts (blocks not read have none).
    let p = 0;
    for (let b = 0; b * EDGE_BLOCK < n; b++) {
      this.edgeBlock[b] = p;
      for (let k = b * EDGE_BLOCK, e = Math.min(n, k + EDGE_BLOCK); k < e; k++)
        if (this.edgeCount[k]) p += this.countOf(k);
    }
    this.edgeBlock[Math.ceil(n / EDGE_BLOCK)] = this.edgeLen;
    let unstored = 0;
    for (let k = 0; this.noEdges && k < n; k++) if (this.hasNoEdges(k)) unstored++;
    this.unstored = unstored;
    if (unstored)
      this.notes.push(
        `too many pointers between chunks to keep: the pointers of ${unstored} chunks were read again when reached`,
      );
  }

  // ---- Reach without a stored graph: a walk that reads the reached blocks again ----

  /** Pointers between blocks found from reachable blocks (de-duplicated per source). */
  reachEdges = 0;
  private distinct = new Uint32Array(1 << 10);
  private distinctLen = 0;
  /** Work stack of the reach walk: reachable blocks whose words are still to be read (state PEND). */
  private pendLen = 0;

  /** Block j reached from a reachable block or a root: a start pointer makes it reachable (its words pending), an interior one possibly lost unless reached later. */
  private touch(j: number, interior: boolean): void {
    const state = this.state;
    const s = state[j]!;
    if (interior) {
      if (s === S_UNREACHED) state[j] = S_ROOT_INTERIOR;
      return;
    }
    if (s !== S_UNREACHED && s !== S_ROOT_INTERIOR) return;
    state[j] = S_REACHABLE | PEND;
    this.pendLen = this.push(this.pendLen, j);
  }

  /** A pointer of the block being read (edge: target * 2 + interior; counted once per target: stats.edges). */
  private noteEdge(e: number): void {
    if (this.distinctLen > 0 && this.distinct[this.distinctLen - 1] === e) return;
    if (this.distinctLen === this.distinct.length) {
      this.distinctLen = uniqueTargets(this.distinct, this.distinctLen);
      if (this.distinctLen > this.distinct.length >>> 1) {
        const d = new Uint32Array(this.distinct.length * 2);
        d.set(this.distinct);
        this.distinct = d;
      }
    }
    this.distinct[this.distinctLen++] = e;
  }
  private endBlock(): void {
    this.reachEdges += uniqueTargets(this.distinct, this.distinctLen);
    this.distinctLen = 0;
  }

  /** Reachable block k's words u32[w0 .. w1): every pointer to another block touches it. */
  private reachFrom(k: number, u32: Uint32Array, w0: number, w1: number): void {
    const t = this.t,
      minHi = t.minHi,
      maxHi = t.maxHi,
      min = t.min,
      max = t.max;
    for (let w = w0; w + 1 < w1; w += 2) {
      const h = u32[w + 1]!;
      if (h < minHi || h > maxHi) continue;
      const v = h * TWO32 + u32[w]!;
      if (v < min || v >= max) continue;
      const tgt = t.find(v);
      if (tgt < 0 || tgt === k) continue;
      const interior = v !== t.lastStart;
      this.touch(tgt, interior);
      this.noteEdge(tgt * 2 + (interior ? 1 : 0));
    }
    this.endBlock();
  }

  /**
   * Reachable: chains of start pointers from the roots, marked without storing the graph. The root
   * hits become states (H_START: reachable, its words pending; H_INTERIOR only: S_ROOT_INTERIOR).
   * Then a depth-first walk: each pending block is checked (checkInWindow, as readEdges checks the
   * blocks it reads: unknown when changed or freed) and its words read from a window of the heap
   * around it, read when the block is not in the current one: placed on the side the walk is
   * moving to (a linked list is followed window by window, either way), grown while the walk stays
   * in its windows and shrunk while it jumps about (down to the block's own bytes). Each reachable
   * block's words are read once; an interior pointer from a reachable block leaves an unreached
   * target S_ROOT_INTERIOR, so the possibly-lost step needs no edges of reachable blocks.
   */
  reachWalk(tcacheKey: number | null): void {
    const t = this.t,
      n = t.n,
      state = this.state,
      space = this.space;
    this.setKey(tcacheKey);
    this.pendLen = 0;
    for (let i = n - 1; i >= 0; i--) {
      // pushed downwards: popped in address order
      const v = state[i]!;
      const s = v & S_MASK;
      if (s !== S_UNREACHED) state[i] = s;
      else if ((v & H_START) !== 0) {
        state[i] = S_REACHABLE | PEND;
        this.pendLen = this.push(this.pendLen, i);
      } else state[i] = (v & H_INTERIOR) !== 0 ? S_ROOT_INTERIOR : S_UNREACHED;
    }
    const { buf, u32 } = window();
    let winStart = 0,
      got = 0,
      size = 64 << 10,
      served = 0;
    while (this.pendLen > 0) {
      const k = this.stack[--this.pendLen]!;
      state[k] = state[k]! & ~PEND;
      t.load(k);
      const a = t.la,
        e = a + t.lz * 16 - (t.lm ? 16 : 8);
      const hdrPage = Math.floor((a - 16) / 4096) * 4096;
      if (e + 8 - hdrPage > WINDOW) {
        // Bigger than a window (as readEdges): header read directly, words piece by piece.
        if (!this.checkHeaderDirect(k)) state[k] = S_UNKNOWN;
        else {
          this.wordsOf(k, (tgt, interior) => {
            this.touch(tgt, interior);
            this.noteEdge(tgt * 2 + (interior ? 1 : 0));
            return true;
          });
          this.endBlock();
        }
        continue;
      }
      if (!(a - 16 >= winStart && e + 8 <= winStart + got)) {
        // A new window: grown when the last one served a good part of its bytes, else shrunk.
        const was = got;
        if (was > 0) size = served * 4 >= was ? Math.min(WINDOW, size * 2) : Math.max(8192, size >>> 1);
        served = 0;
        const down = was > 0 && a < winStart;
        const reg = t.regionAround(k);
        const margin = Math.min(64 << 10, size >>> 2);
        // Moving down: the window ends a margin above the block; else it starts a margin below it.
        let s0 = down ? e + 8 + margin - size : a - 16 - margin;
        s0 = Math.max(s0, reg.start - 16, e + 8 + 4096 - WINDOW);
        s0 = Math.min(Math.floor(s0 / 4096) * 4096, hdrPage);
        const s1 = Math.max(e + 8, Math.min(s0 + size, reg.end + 8, s0 + WINDOW));
        winStart = s0;
        got = space.readInto(s0, buf, 0, s1 - s0);
        this.bytesRead += got;
        if (a - 16 < winStart || e > winStart + got) {
          // Came short before the block (an unreadable page in front): from its header's page, as readEdges.
          winStart = hdrPage;
          got = space.readInto(hdrPage, buf, 0, Math.min(e + 8 - hdrPage + size, WINDOW));
          this.bytesRead += got;
        }
      }
      served += e - a;
      if (!this.checkLoaded(u32, winStart, got)) {
        state[k] = S_UNKNOWN;
        continue;
      }
      this.reachFrom(k, u32, this.cw0, this.cwEnd);
    }
  }

  /**
   * Block k's words read a window at a time: fn(u32, wordEnd, last) per window (last: the block's
   * end, or a short read). Stops at a short read; false as soon as fn returns false.
   */
  private windowsOf(k: number, fn: (u32: Uint32Array, wordEnd: number, last: boolean) => boolean): boolean {
    const { buf, u32 } = window();
    const e = this.t.end(k);
    for (let p = this.t.address(k); p < e; p += WINDOW) {
      const want = Math.min(WINDOW, e - p);
      const got = this.space.readInto(p, buf, 0, want);
      this.bytesRead += got;
      if (!fn(u32, got >>> 2, got < want || p + want >= e)) return false;
      if (got < want) break;
    }
    return true;
  }

  /** Edges of a block bigger than a window, read piece by piece; false when the budget ran out. */
  private bigEdges(k: number): boolean {
    return this.windowsOf(k, (u32, wordEnd, last) => this.blockEdges(k, u32, 0, wordEnd, last));
  }

  private checkHeaderDirect(k: number): boolean {
    const t = this.t;
    let sz: number;
    try {
      sz = this.space.readU64(t.address(k) - 8);
    } catch {
      return false;
    }
    this.bytesRead += 8;
    const flags = sz % 8;
    return sz - flags === t.size(k) && ((flags & 2) !== 0) === t.isMmapped(k);
  }

  /** Words of block k read piece by piece; calls visit(target, interior) per pointer to another block. */
  private wordsOf(k: number, visit: (tgt: number, interior: boolean) => boolean): void {
    const t = this.t;
    this.windowsOf(k, (u32, wordEnd) => {
      for (let w = 0; w + 1 < wordEnd; w += 2) {
        const h = u32[w + 1]!;
        if (h < t.minHi || h > t.maxHi) continue;
        const v = h * TWO32 + u32[w]!;
        const tgt = t.find(v);
        if (tgt < 0 || tgt === k) continue;
        if (!visit(tgt, v !== t.lastStart)) return false;
      }
      return true;
    });
  }

  /** Scans one root range; marks root hits. */
  scanRoot(kind: string, name: string, r: Range, skipNonResident: boolean): void {
    const key = `${kind}\0${name}`;
    let root = this.roots.get(key);
    if (!root) this.roots.set(key, (root = { kind, name, ranges: 0, bytes: 0, startPointers: 0, interiorPointers: 0 }));
    root.ranges++;
    const t = this.t;
    if (t.n === 0) return;
    const { buf, u32 } = window();
    const { min, max, minHi, maxHi } = t;
    let p = r.start - (r.start % 8);
    while (p < r.end) {
      const len = Math.min(WINDOW - (p % 4096), r.end - p);
      if (skipNonResident && len >= 64 << 10) {
        const res = this.space.residentBytes(p, p + len);
        if (res.rss + res.swap === 0) {
          p += len;
          continue;
        }
      }
      const got = this.space.readInto(p, buf, 0, len);
      this.bytesRead += got;
      this.rootBytes += got;
      root.bytes += got;
      const wEnd = got >>> 2;
      for (let w = 0; w + 1 < wEnd; w += 2) {
        const h = u32[w + 1]!;
        if (h < minHi || h > maxHi) continue;
        const v = h * TWO32 + u32[w]!;
        if (v < min || v >= max) continue;
        const tgt = t.find(v);
        if (tgt < 0) continue;
        if (v === t.lastStart) {
          this.state[tgt] |= H_START;
          root.startPointers++;
        } else {
          this.state[tgt] |= H_INTERIOR;
          root.interiorPointers++;
        }
      }
      if (got < len)
        p = Math.floor((p + got) / 4096) * 4096 + 4096; // skip the unreadable page
      else p += len;
    }
  }

  /** A register value (core files) as a root word. */
  rootWord(v: number): void {
    const key = 'registers\0';
    let root = this.roots.get(key);
    if (!root)
      this.roots.set(
        key,
        (root = { kind: 'registers', name: '', ranges: 0, bytes: 0, startPointers: 0, interiorPointers: 0 }),
      );
    root.bytes += 8;
    const tgt = this.t.find(v);
    if (tgt < 0) return;
    if (v === this.t.lastStart) {
      this.state[tgt] |= H_START;
      root.startPointers++;
    } else {
      this.state[tgt] |= H_INTERIOR;
      root.interiorPointers++;
    }
  }

  /**
   * Marks one target `j` reached over an edge in `mode` (M_POSSIBLE: any pointer makes them possibly lost; M_CLIQUE: unreached blocks
   * join the clique of `leader`, an earlier leader is absorbed). Returns true when j is to be scanned.
   */
  private accept(mode: number, j: number, leader: number): boolean {
    const state = this.state;
    const s = state[j]!;
    if (mode === M_POSSIBLE) {
      if (s !== S_UNREACHED) return false;
      state[j] = S_POSSIBLE;
      return true;
    }
    if (j === leader) return false;
    if (s === S_UNREACHED) {
      state[j] = S_INDIRECT;
      this.leader[j] = leader;
      return true;
    }
    if (s === S_DEFINITE) {
      state[j] = S_INDIRECT;
      this.leader[j] = leader;
    } // an earlier leader, absorbed
    return false;
  }

  private push(len: number, j: number): number {
    if (len === this.stack.length) {
      const s = new Int32Array(len * 2);
      s.set(this.stack);
      this.stack = s;
    }
    this.stack[len] = j;
    return len + 1;
  }

  /**
   * Propagates from the blocks on `stack[0..len)` over their edges (see accept). Blocks without
   * stored edges are read again, in address order, once the stored ones are done.
   */
  private propagate(len: number, mode: number, leader: number): void {
    const edges = this.edges;
    let pending: number[] | undefined;
    for (;;) {
      while (len > 0) {
        const i = this.stack[--len]!;
        if (this.hasNoEdges(i)) {
          (pending ??= []).push(i);
          continue;
        }
        const p0 = this.firstEdge(i);
        for (let p = p0, q = p0 + this.countOf(i); p < q; p++) {
          const e = edges[p]!;
          const j = e >>> 1;
          if (this.accept(mode, j, leader)) len = this.push(len, j);
        }
      }
      if (!pending?.length) return;
      pending.sort((x, y) => x - y);
      for (const i of pending.splice(0))
        this.wordsOf(i, (tgt) => {
          if (this.accept(mode, tgt, leader)) len = this.push(len, tgt);
          return true;
        });
    }
  }

  /** Reachable, possibly lost, then cliques of the rest (leader per lost block in `leader`). */
  mark(): void {
    const n = this.t.n,
      state = this.state;
    // 1. Reachable: done by reachSweeps (states: reachable, S_ROOT_INTERIOR when an interior
    // pointer from a root or a reachable block hit it, unreached, unknown, allocator).
    // 2. Possibly lost: reached through some interior pointer (from a root or a reachable block:
    // S_ROOT_INTERIOR), then whatever those reach. Only unreached blocks' edges are walked.
    for (let i = 0; i < n; i++) {
      if (state[i] !== S_ROOT_INTERIOR) continue;
      state[i] = S_POSSIBLE;
      this.stack[0] = i;
      this.propagate(1, M_POSSIBLE, -1);
    }
    // 3. Cliques in address order (valgrind's lc_push_with_clique_if_a_chunk_ptr).
    this.leader = perChunk(Int32Array, n);
    for (let i = 0; i < n; i++) {
      if (state[i] !== S_UNREACHED) continue;
      state[i] = S_DEFINITE;
      this.leader[i] = i;
      this.stack[0] = i;
      this.propagate(1, M_CLIQUE, i);
    }
  }

  /** The definitely lost block leading lost block j's group. */
  leaderOf(j: number): number {
    const c = this.leader;
    let k = j,
      steps = 0;
    while (c[k] !== k && steps++ < 1e6) k = c[k]!;
    return k;
  }
}

/** Readable memory that may hold pointers: writable mappings and anonymous ones; no kernel pages. */
function rootCandidate(m: Mapping): boolean {
  if (m.perms[0] !== 'r') return false;
  if (m.path === '[vvar]' || m.path === '[vdso]' || m.path === '[vsyscall]' || m.path === '[heap]') return false;
  return m.perms[1] === 'w' || m.path === '' || m.path === '[stack]';
}

function subtract(r: Range, ex: readonly Range[]): Range[] {
  // ex sorted by start, disjoint or not
  let lo = 0,
    hi = ex.length - 1,
    first = ex.length;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (ex[mid]!.end > r.start) {
      first = mid;
      hi = mid - 1;
    } else lo = mid + 1;
  }
  const out: Range[] = [];
  let p = r.start;
  for (let k = first; k < ex.length && ex[k]!.start < r.end; k++) {
    const e = ex[k]!;
    if (e.end <= p) continue;
    if (e.start > p) out.push({ start: p, end: e.start });
    p = Math.max(p, e.end);
  }
  if (p < r.end) out.push({ start: p, end: r.end });
  return out;
}

function scanRoots(scan: Scan, space: AddressSpace, census: HeapCensus, loc: GlibcLocation): void {
  const maps = space.mappings();
  const t = scan.t;
  // Excluded: glibc's heaps (their chunks are the blocks; free chunks are not roots), mmapped chunks,
  // and the allocator's own state in libc's data: main_arena (bins, top: pointers to chunk headers,
  // which lie inside the previous chunk's words) and mp_ (sbrk_base).
  const ex: Range[] = [{ start: loc.mainArena, end: loc.mainArena + loc.layout.mstate.size }];
  if (loc.mp !== null) ex.push({ start: loc.mp, end: loc.mp + loc.layout.mpar.size });
  for (const a of census.arenas) {
    for (const h of a.heaps) {
      if (a.kind === 'thread') {
        const m = findMapping(maps, h.start);
        ex.push({
          start: h.start,
          end: Math.max(h.end, Math.min(m ? m.end : h.end, h.start + loc.layout.heapMaxSize)),
        });
      } else ex.push({ start: h.start, end: h.end });
    }
  }
  t.forEachMmapped((a, size) => ex.push({ start: a - 16, end: a - 16 + size }));
  ex.sort((x, y) => x.start - y.start);

  // Thread stacks from sp.
  const handled = new Set<Mapping>();
  const threads = space.threads();
  let running = 0;
  for (const th of threads) {
    const sp = th.regs?.rsp;
    if (sp === undefined) {
      running++;
      continue;
    }
    const m = findMapping(maps, sp);
    if (!m) continue;
    handled.add(m);
    for (const r of subtract({ start: Math.max(m.start, sp - STACK_RED_ZONE), end: m.end }, ex))
      scan.scanRoot('stack', `thread ${th.tid}`, r, false);
  }
  if (space.kind === 'core') {
    for (const th of threads) for (const v of Object.values(th.regs ?? {})) scan.rootWord(v);
  } else {
    scan.notes.push(
      'registers are not read (that needs stopping the process): a pointer held only in a register is missed; lost chunks are confirmed by a second scan',
    );
  }
  if (running > 0)
    scan.notes.push(
      `${running} thread(s) running (no stack pointer without stopping them): their whole stack mappings are scanned`,
    );
  // Everything else: modules' data, anonymous memory, shared memory, the stacks of running threads.
  let prev: Mapping | undefined;
  for (const m of maps) {
    const before = prev;
    prev = m;
    if (handled.has(m) || !rootCandidate(m)) continue;
    let kind: string, name: string;
    if (m.path === '[stack]') {
      kind = 'stack-whole';
      name = 'main thread';
    } else if (m.path === '' && m.perms[3] === 'p') {
      const mod = before && before.end === m.start && before.path.startsWith('/') ? before.path : '';
      kind = mod ? 'module' : 'anonymous';
      name = mod;
    } else if (
      m.perms[3] === 's' ||
      m.path.startsWith('/dev/zero') ||
      m.path.startsWith('/SYSV') ||
      m.path.startsWith('/memfd:')
    ) {
      kind = 'shared';
      name = m.path;
    } else if (m.path.startsWith('/')) {
      kind = 'module';
      name = m.path;
    } else {
      kind = 'anonymous';
      name = m.path;
    }
    for (const r of subtract({ start: m.start, end: m.end }, ex))
      scan.scanRoot(kind, name, r, kind === 'anonymous' || kind === 'shared');
  }
}

function oneScan(
  space: AddressSpace,
  symbolizer: Symbolizer,
  location: GlibcLocation,
  maxEdges: number,
  capacity: number,
): Scan {
  const t0 = performance.now();
  if (space.kind === 'live') space.mappings({ refresh: true });
  // Capacity: at most one chunk per 32 bytes of the brk heap and anonymous rw memory (thread heaps
  // and mmapped chunks live there); zero-filled, so only the entries written cost RSS.
  let bound = capacity;
  for (const m of space.mappings())
    if (m.path === '[heap]' || (m.path === '' && m.perms.startsWith('rw'))) bound += (m.end - m.start) / 32;
  const table = new ChunkTable(Math.min(MAX_PRESIZED, Math.ceil(bound)));
  const allocator: number[] = [];
  const census = heapCensus(space, {
    symbolizer,
    location,
    onWalkInUse: (u, size, mmapped) => table.push(u, size, mmapped),
    onFreeListChunk: (u) => table.freed.push(u),
    onTcacheStruct: (u) => allocator.push(u),
  });
  const t1 = performance.now();
  memoryCheckpoint('scan: after census walk');
  table.finish();
  memoryCheckpoint('scan: after finish');
  const scan = new Scan(space, census, table, allocator, maxEdges);
  const t2 = performance.now();
  scanRoots(scan, space, census, location);
  const t3 = performance.now();
  memoryCheckpoint('scan: after roots');
  scan.reachWalk(location.tcacheKey);
  const t4a = performance.now();
  memoryCheckpoint('scan: after reach walk');
  // The edges of the blocks left unreached only (what the possibly-lost and clique steps walk).
  const st = scan.state;
  scan.readEdges(location.tcacheKey, (k) => st[k] === S_UNREACHED || st[k] === S_ROOT_INTERIOR);
  const t4 = performance.now();
  memoryCheckpoint('scan: after edges');
  scan.mark();
  memoryCheckpoint('scan: after mark');
  const t5 = performance.now();
  scan.phasesMs = { census: t1 - t0, table: t2 - t1, roots: t3 - t2, reach: t4a - t3, blocks: t4 - t4a, mark: t5 - t4 };
  return scan;
}

const LOST = (s: number) => s === S_POSSIBLE || s === S_DEFINITE || s === S_INDIRECT;
const CLASS_OF: Record<number, ReachClass | 'allocator'> = {
  [S_REACHABLE]: 'reachable',
  [S_POSSIBLE]: 'possiblyLost',
  [S_DEFINITE]: 'definitelyLost',
  [S_INDIRECT]: 'indirectlyLost',
  [S_UNKNOWN]: 'unknown',
  [S_ALLOCATOR]: 'allocator',
  [S_UNREACHED]: 'unknown',
};

/**
 * Stability: a chunk lost in this scan stays lost only when it was lost in the previous one at the
 * same address and size, with the same first bytes (the same chunk, not a new one in its place);
 * else it becomes unknown. Returns this scan's lost chunks for the next. A function of its own so
 * the caller's (async, suspended between scans) frame holds no reference into the scan's tables.
 */
function confirmLost(space: AddressSpace, scan: Scan, prev: PreviousScan | undefined, printBuf: Buffer): PreviousScan {
  const t = scan.t,
    st = scan.state;
  // Stability: lost now and lost before at the same address and size, with the same first bytes
  // (the same chunk, not a new one in its place); else unknown (or reachable).
  let nLost = 0;
  const prints = new Map<number, number>();
  for (let i = 0, k = 0; i < t.n; i++) {
    if (!LOST(st[i]!)) continue;
    const print = lostFingerprint(space, t.address(i), t.end(i) - t.address(i), printBuf);
    prints.set(i, print);
    if (prev) {
      const a = t.address(i);
      while (k < prev.addr.length && prev.addr[k]! < a) k++;
      const same =
        k < prev.addr.length &&
        prev.addr[k] === a &&
        prev.size16[k] === t.s16(i) &&
        prev.mmapped[k] === (t.isMmapped(i) ? 1 : 0);
      if (!same || print === -1 || prev.print[k] !== print) {
        st[i] = S_UNKNOWN;
        continue;
      }
    }
    nLost++;
  }
  const lost: PreviousScan = {
    addr: new Float64Array(nLost),
    size16: new Uint32Array(nLost),
    mmapped: new Uint8Array(nLost),
    print: new Float64Array(nLost),
  };
  for (let i = 0, j = 0; i < t.n; i++) {
    if (!LOST(st[i]!)) continue;
    lost.addr[j] = t.address(i);
    lost.size16[j] = t.s16(i);
    lost.print[j] = prints.get(i) ?? -1;
    lost.mmapped[j++] = t.isMmapped(i) ? 1 : 0;
  }
  return lost;
}

/**
 * Reachability of every in-use chunk of a glibc process (live or core). Scans `opts.scans` times
 * (default 2 for a live process, 1 for a core); see the header for the classes and roots.
 */
export async function reachability(space: AddressSpace, opts: ReachOptions = {}): Promise<ReachResult> {
  const t0 = performance.now();
  const symbolizer = opts.symbolizer ?? new Symbolizer(space.modules());
  const location = opts.location ?? locateGlibc(space, symbolizer);
  const scans = Math.max(1, Math.floor(opts.scans ?? (space.kind === 'live' ? 2 : 1)));
  const maxEdges = opts.maxEdges ?? DEFAULT_MAX_EDGES;
  // The previous scan's lost chunks (stability), ascending.
  let prev: PreviousScan | undefined = opts.previous;
  let scan: Scan | undefined;
  const printBuf = Buffer.alloc(FINGERPRINT_BYTES);
  let bytesRead = 0;
  for (let s = 0; s < scans; s++) {
    if (s > 0) await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
    scan = undefined; // the previous scan's tables are garbage before the next scan allocates its own
    releaseMemory(); // ... and freed now, as are the caller's dead arrays (census, pool analysis)
    memoryCheckpoint('reach: before scan');
    scan = oneScan(space, symbolizer, location, maxEdges, 1024);
    bytesRead += scan.bytesRead;
    prev = confirmLost(space, scan, prev, printBuf);
  }
  if (!scan) throw new Error('reachability: no scan');
  const t = scan.t,
    st = scan.state;
  const zero = (): ClassCount => ({ chunks: 0, bytes: 0 });
  // Counts per state x bucket in typed arrays (no object per chunk).
  const cnt = new Float64Array(8 * 64),
    byt = new Float64Array(8 * 64);
  const groupBytes = new Map<number, { chunks: number; bytes: number }>();
  for (let i = 0; i < t.n; i++) {
    const s = st[i]!;
    const size = t.s16(i) * 16;
    const k = size < TWO32 ? 31 - Math.clz32(size) : Math.floor(Math.log2(size));
    cnt[s * 64 + k]++;
    byt[s * 64 + k] += size;
    if (s === S_DEFINITE || s === S_INDIRECT) {
      const leader = scan.leaderOf(i);
      let g = groupBytes.get(leader);
      if (!g) groupBytes.set(leader, (g = { chunks: 0, bytes: 0 }));
      g.chunks++;
      g.bytes += size;
    }
  }
  const totals: Record<ReachClass | 'allocator', ClassCount> = {
    definitelyLost: zero(),
    indirectlyLost: zero(),
    possiblyLost: zero(),
    reachable: zero(),
    unknown: zero(),
    allocator: zero(),
  };
  const buckets: ReachBucket[] = [];
  for (let k = 0; k < 64; k++) {
    let b: ReachBucket | undefined;
    for (let s = 0; s < 8; s++) {
      const c = cnt[s * 64 + k]!;
      if (c === 0) continue;
      const cls = CLASS_OF[s]!;
      totals[cls].chunks += c;
      totals[cls].bytes += byt[s * 64 + k]!;
      if (cls === 'allocator') continue;
      b ??= {
        minBytes: 2 ** k,
        maxBytes: 2 ** (k + 1),
        definitelyLost: zero(),
        indirectlyLost: zero(),
        possiblyLost: zero(),
        reachable: zero(),
        unknown: zero(),
      };
      b[cls].chunks += c;
      b[cls].bytes += byt[s * 64 + k]!;
    }
    if (b) buckets.push(b);
  }
  // Largest lost: definitely lost leaders by group bytes, then possibly lost by size.
  const want = opts.largest ?? 10;
  const cand: { i: number; key: number; g: { chunks: number; bytes: number } }[] = [];
  for (const [leader, g] of groupBytes) if (st[leader] === S_DEFINITE) cand.push({ i: leader, key: g.bytes, g });
  const poss: number[] = [];
  for (let i = 0; i < t.n; i++) if (st[i] === S_POSSIBLE) poss.push(i);
  poss.sort((x, y) => t.size(y) - t.size(x));
  cand.sort((x, y) => y.key - x.key);
  const picked = [
    ...cand.slice(0, want),
    ...poss
      .slice(0, Math.max(0, want - cand.length))
      .map((i) => ({ i, key: t.size(i), g: { chunks: 1, bytes: t.size(i) } })),
  ];
  const pv = opts.previewBytes ?? 64;
  const largestLost: LostChunk[] = picked.map(({ i, g }) => {
    const len = Math.min(pv, t.end(i) - t.address(i));
    const b = Buffer.alloc(len);
    const got = space.readInto(t.address(i), b, 0, len);
    const bytes = b.subarray(0, got);
    return {
      address: t.address(i),
      chunkSize: t.size(i),
      class: CLASS_OF[st[i]!] as ReachClass,
      groupChunks: g.chunks,
      groupBytes: g.bytes,
      hex: bytes.toString('hex'),
      ascii: [...bytes].map((c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.')).join(''),
    };
  });
  const notes = [...scan.notes];
  const confirmed = scans + (opts.previous ? 1 : 0);
  if (opts.previous)
    notes.push(
      `confirmed against an earlier scan: a chunk counts as lost only when lost in ${confirmed} scans, at the same address and size, its first ${FINGERPRINT_BYTES} bytes unchanged`,
    );
  else if (scans > 1)
    notes.push(
      `${scans} scans ${opts.intervalMs ?? 100} ms apart: a chunk counts as lost only when lost in each, at the same address and size, its first ${FINGERPRINT_BYTES} bytes unchanged`,
    );
  else notes.push('one scan: lost chunks are not confirmed by a second scan');
  const reach: Reachability = {
    definitelyLost: totals.definitelyLost,
    indirectlyLost: totals.indirectlyLost,
    possiblyLost: totals.possiblyLost,
    reachable: totals.reachable,
    unknown: totals.unknown,
    allocator: totals.allocator,
    buckets,
    roots: [...scan.roots.values()].sort((a, b) => b.bytes - a.bytes),
    largestLost,
    scans: confirmed,
    notes,
    stats: {
      elapsedMs: Math.round((performance.now() - t0) * 10) / 10,
      bytesRead,
      chunks: t.n,
      edges: scan.reachEdges + scan.edgeLen,
      edgesStored: scan.unstored === 0,
      rootBytes: scan.rootBytes,
      phasesMs: Object.fromEntries(Object.entries(scan.phasesMs).map(([k, v]) => [k, Math.round(v)])),
    },
  };
  return {
    reachability: reach,
    census: scan.census,
    lastScan: prev!,
    classOf: (addr: number) => {
      let i = t.indexOf(addr);
      if (i < 0) {
        i = t.find(addr);
        if (i < 0) return undefined;
      }
      return CLASS_OF[st[i]!];
    },
  };
}
