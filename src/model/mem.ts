// Plain types for the process memory breakdown (step 1). No imports.

export type MemCategoryName =
  | 'glibc-main-heap'
  | 'glibc-thread-arenas'
  | 'glibc-mmapped-chunks'
  | 'nginx-shm'
  | 'luajit'
  | 'code'
  | 'file'
  | 'stack'
  | 'other-anon';

export interface MemRegion {
  start: number;
  end: number;
  rssBytes: number;
  swapBytes: number;
  /** What the region is: a path, a zone name, "mmapped chunk 0x...". */
  label: string;
}

export interface MemCategory {
  name: MemCategoryName;
  rssBytes: number;
  pssBytes: number;
  swapBytes: number;
  /** Number of mappings (or parts of mappings) counted here. */
  mappings: number;
  /** Largest regions of the category, for the report (at most 10). */
  top: MemRegion[];
  /** Where the classification came from ("arena ring from main_arena (debug-file symbol)", ...). */
  source: string;
  /** Bytes in use / free inside the category's regions by its allocator's own accounting (luajit: Σ gc.total), when known. */
  usedBytes?: number;
  freeBytes?: number;
}

/** One nginx shared memory zone with its slab allocator's pages (src/nginx/slab.ts). */
export interface ShmZoneMem {
  name: string;
  address: number;
  /** Zone bytes (shm.size). */
  size: number;
  module: string | null;
  /** Resident bytes of the zone's mapping in this process. */
  rssBytes: number;
  /** The slab pool at the zone's start, or null (slabProblem says why). */
  slab: {
    pageSize: number;
    /** Pages the slab manages; used = pages - free. */
    pages: number;
    /** pfree: nginx's free page count (ngx.shared.DICT:free_space() = freePages * pageSize). */
    freePages: number;
    usedPages: number;
    /** Free pages by a walk of the free list, null when the walk broke (the pool changed while read). */
    freeListPages: number | null;
    /** Small-allocation slots with any chunk or request: chunk size, chunks total / used, requests, failures. */
    slots: Array<{ chunkBytes: number; total: number; used: number; reqs: number; fails: number }>;
    problems: string[];
  } | null;
  slabProblem?: string;
}

export interface MemBreakdown {
  target: string; // description of the address space
  pid: number;
  rssBytes: number;
  pssBytes: number;
  swapBytes: number;
  categories: MemCategory[];
  /** Share of RSS held by glibc (main heap + thread arenas + mmapped chunks), 0..1. */
  glibcShare: number;
  /** Per-module code/data RSS, largest first. */
  modules: Array<{ path: string; rssBytes: number }>;
  notes: string[];
  /** nginx shm zones with their slab pages, when the nginx model read them. */
  shmZones?: ShmZoneMem[];
}
