// Built-in ptmalloc2 struct layouts for x86-64 (SIZE_SZ 8, MALLOC_ALIGNMENT 16), per glibc
// version, read off bminor/glibc tags glibc-2.27 .. glibc-2.42 and master (2.43 development):
//   malloc/malloc.c  struct malloc_state, struct malloc_par, tcache_perthread_struct, tcache_entry
//   malloc/arena.c   heap_info, HEAP_MAX_SIZE / heap_max_size()
// Offsets are in bytes. The raw layouts stay in src/glibc; other layers see the census model.

import { LeakscopeError } from '../model/errors.js';

export interface GlibcVersion {
  major: number;
  minor: number;
  text: string;
}

export interface MallocStateLayout {
  /** fastbinsY[] offset, or null when the version has no fastbins (2.43+). */
  fastbinsY: number | null;
  nfastbins: number;
  top: number;
  lastRemainder: number;
  /** bins[254]: bin i (1..127) has fd at bins + (i-1)*16, bk at +8; bin_at(i) = bins + (i-1)*16 - 16. */
  bins: number;
  next: number;
  nextFree: number;
  attachedThreads: number;
  systemMem: number;
  maxSystemMem: number;
  size: number;
}

export interface MallocParLayout {
  trimThreshold: number;
  topPad: number;
  mmapThreshold: number;
  arenaTest: number;
  arenaMax: number;
  /** hp_pagesize (2.35+, HAVE_TUNABLES): non-zero makes heaps 4 * hp_pagesize. */
  hpPagesize: number | null;
  nMmaps: number;
  nMmapsMax: number;
  maxNMmaps: number;
  noDynThreshold: number;
  mmappedMem: number;
  maxMmappedMem: number;
  sbrkBase: number;
  tcacheBins: number;
  tcacheMaxBytes: number;
  tcacheCount: number;
  tcacheUnsortedLimit: number;
  size: number;
}

export interface HeapInfoLayout {
  arPtr: number;
  prev: number;
  size: number;
  mprotectSize: number;
  sizeof: number;
}

export interface TcacheLayout {
  bins: number;
  /** 1 (char counts, < 2.30) or 2 (uint16_t). */
  countBytes: 1 | 2;
  /** 'count': counts[i] = entries in bin i (< 2.42). 'free-slots': num_slots[i] = slots left (2.42+). */
  countMeaning: 'count' | 'free-slots';
  entries: number;
  /** Chunk size of the tcache_perthread_struct allocation. */
  structChunkSize: number;
  /** tcache_entry.key: absent (< 2.29), the owning tcache (2.29-2.33), the random tcache_key (2.34+). */
  key: 'none' | 'perthread' | 'random';
}

export interface GlibcLayout {
  version: GlibcVersion;
  mstate: MallocStateLayout;
  mpar: MallocParLayout;
  heapInfo: HeapInfoLayout;
  tcache: TcacheLayout;
  /** PROTECT_PTR on tcache next / fastbin fd (2.32+): stored = (&field >> 12) ^ ptr. */
  safeLinking: boolean;
  /** HEAP_MAX_SIZE with no huge-page tunable: 2 * DEFAULT_MMAP_THRESHOLD_MAX = 64 MiB on 64-bit. */
  heapMaxSize: number;
}

export const SIZE_SZ = 8;
export const MALLOC_ALIGNMENT = 16;
export const MINSIZE = 32;
export const PREV_INUSE = 1,
  IS_MMAPPED = 2,
  NON_MAIN_ARENA = 4;
/** First large-bin chunk size (MIN_LARGE_SIZE, 64 small bins of 16 bytes). */
export const MIN_LARGE_SIZE = 1024;
export const NBINS = 128;

/** Parses "2.36" / "2.36.9000" into a version. */
export function parseGlibcVersion(text: string): GlibcVersion {
  const m = /^(\d+)\.(\d+)/.exec(text);
  if (!m) throw new LeakscopeError('malformed', `not a glibc version: "${text}"`);
  return { major: Number(m[1]), minor: Number(m[2]), text };
}

function atLeast(v: GlibcVersion, minor: number): boolean {
  return v.major > 2 || (v.major === 2 && v.minor >= minor);
}

/** The layout for a glibc version; 'not-supported' before 2.27 (no have_fastchunks, different malloc_state). */
export function layoutFor(v: GlibcVersion): GlibcLayout {
  if (v.major !== 2 || v.minor < 27) {
    throw new LeakscopeError(
      'not-supported',
      `glibc ${v.text} is not supported: leakscope knows the malloc layouts of glibc 2.27 and later`,
    );
  }
  // struct malloc_state: int mutex; int flags; [int have_fastchunks; (pad) mfastbinptr fastbinsY[10];]
  // mchunkptr top, last_remainder; mchunkptr bins[254]; unsigned binmap[4]; next; next_free;
  // attached_threads; system_mem; max_system_mem.  (2.43 removed have_fastchunks and fastbinsY.)
  const noFast = atLeast(v, 43);
  const top = noFast ? 8 : 96;
  const mstate: MallocStateLayout = {
    fastbinsY: noFast ? null : 16,
    nfastbins: noFast ? 0 : 10,
    top,
    lastRemainder: top + 8,
    bins: top + 16,
    next: top + 16 + 254 * 8 + 16,
    nextFree: top + 16 + 254 * 8 + 24,
    attachedThreads: top + 16 + 254 * 8 + 32,
    systemMem: top + 16 + 254 * 8 + 40,
    maxSystemMem: top + 16 + 254 * 8 + 48,
    size: top + 16 + 254 * 8 + 56,
  };
  // struct malloc_par: 2.35 added (under HAVE_TUNABLES, on in every distribution build)
  // thp_pagesize, hp_pagesize, hp_flags after arena_max.
  const hp = atLeast(v, 35);
  const b = hp ? 60 : 40; // offset of n_mmaps (four ints follow)
  const s = (b + 16 + 7) & ~7; // mmapped_mem, 8-aligned: 80 (2.35+) or 56
  const mpar: MallocParLayout = {
    trimThreshold: 0,
    topPad: 8,
    mmapThreshold: 16,
    arenaTest: 24,
    arenaMax: 32,
    hpPagesize: hp ? 48 : null,
    nMmaps: b,
    nMmapsMax: b + 4,
    maxNMmaps: b + 8,
    noDynThreshold: b + 12,
    mmappedMem: s,
    maxMmappedMem: s + 8,
    sbrkBase: s + 16,
    tcacheBins: s + 24,
    tcacheMaxBytes: s + 32,
    tcacheCount: s + 40,
    tcacheUnsortedLimit: s + 48,
    size: s + 56,
  };
  // heap_info { ar_ptr; prev; size; mprotect_size; [pagesize (2.35+)]; pad } with
  // sizeof(heap_info) + 2*SIZE_SZ a multiple of 16.
  const heapInfo: HeapInfoLayout = { arPtr: 0, prev: 8, size: 16, mprotectSize: 24, sizeof: hp ? 48 : 32 };
  // tcache_perthread_struct { counts[TCACHE_MAX_BINS]; tcache_entry *entries[TCACHE_MAX_BINS]; }
  const bins = atLeast(v, 42) ? 76 : 64;
  const countBytes: 1 | 2 = atLeast(v, 30) ? 2 : 1;
  const entries = bins * countBytes;
  const structBytes = entries + bins * 8;
  const tcache: TcacheLayout = {
    bins,
    countBytes,
    countMeaning: atLeast(v, 42) ? 'free-slots' : 'count',
    entries,
    structChunkSize: requestToChunkSize(structBytes),
    key: atLeast(v, 34) ? 'random' : atLeast(v, 29) ? 'perthread' : 'none',
  };
  return { version: v, mstate, mpar, heapInfo, tcache, safeLinking: atLeast(v, 32), heapMaxSize: 64 << 20 };
}

/** request2size (malloc/malloc.c): request + SIZE_SZ rounded up to 16, at least MINSIZE. */
export function requestToChunkSize(request: number): number {
  const c = (request + SIZE_SZ + MALLOC_ALIGNMENT - 1) & ~(MALLOC_ALIGNMENT - 1);
  return Math.max(MINSIZE, c);
}

/** Chunk size of tcache bin i (tidx2usize + header): 32 + 16 * i, for the 64 small bins. */
export function tcacheBinChunkSize(i: number): number {
  return MINSIZE + MALLOC_ALIGNMENT * i;
}

/** Chunk size of fastbin i (fastbin_index(sz) = (sz >> 4) - 2). */
export function fastbinChunkSize(i: number): number {
  return (i + 2) * 16;
}
