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
}
