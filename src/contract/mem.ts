// `leakscope.mem/1`: the document of `leakscope mem --json` (DESIGN.md: categories [{ name,
// rssBytes, pssBytes, swapBytes, mappings }], glibcShare). Byte counts are integers in bytes.

import type { MemBreakdown, MemCategoryName } from '../model/mem.js';
import { address, array, count, literal, object, optional, parseWith, ratio, schema, string } from './json-check.js';

export const MEM_SCHEMA = 'leakscope.mem/1';

export interface MemRegionEntry {
  start: number;
  end: number;
  rssBytes: number;
  swapBytes: number;
  label: string;
}

export interface MemCategoryEntry {
  name: MemCategoryName;
  rssBytes: number;
  pssBytes: number;
  swapBytes: number;
  /** Mappings (or parts of mappings) counted here. */
  mappings: number;
  /** Where the classification came from. */
  source: string;
  /** Largest regions (at most 10). */
  top: MemRegionEntry[];
  /** In use / free inside the category's regions by its allocator's accounting (luajit: Σ gc.total), when known. */
  usedBytes?: number;
  freeBytes?: number;
}

export interface MemDocument {
  schema: typeof MEM_SCHEMA;
  target: string;
  pid: number;
  rssBytes: number;
  pssBytes: number;
  swapBytes: number;
  /** Share of RSS held by glibc, 0..1. */
  glibcShare: number;
  categories: MemCategoryEntry[];
  /** Per-module code/data RSS, largest first. */
  modules: Array<{ path: string; rssBytes: number }>;
  notes: string[];
}

export function encodeMem(b: MemBreakdown): MemDocument {
  return {
    schema: MEM_SCHEMA,
    target: b.target,
    pid: b.pid,
    rssBytes: b.rssBytes,
    pssBytes: b.pssBytes,
    swapBytes: b.swapBytes,
    glibcShare: b.glibcShare,
    categories: b.categories.map((c) => ({
      name: c.name,
      rssBytes: c.rssBytes,
      pssBytes: c.pssBytes,
      swapBytes: c.swapBytes,
      mappings: c.mappings,
      source: c.source,
      top: c.top.map((r) => ({
        start: r.start,
        end: r.end,
        rssBytes: r.rssBytes,
        swapBytes: r.swapBytes,
        label: r.label,
      })),
      ...(c.usedBytes !== undefined ? { usedBytes: c.usedBytes, freeBytes: c.freeBytes ?? 0 } : {}),
    })),
    modules: b.modules,
    notes: b.notes,
  };
}

const CATEGORY_NAMES: MemCategoryName[] = [
  'glibc-main-heap',
  'glibc-thread-arenas',
  'glibc-mmapped-chunks',
  'nginx-shm',
  'luajit',
  'code',
  'file',
  'stack',
  'other-anon',
];

const region = object({ start: address, end: address, rssBytes: count, swapBytes: count, label: string });
const category = object({
  name: literal(...CATEGORY_NAMES),
  rssBytes: count,
  pssBytes: count,
  swapBytes: count,
  mappings: count,
  source: string,
  top: array(region),
  usedBytes: optional(count),
  freeBytes: optional(count),
});
export const memDocument = object({
  schema: schema(MEM_SCHEMA),
  target: string,
  pid: count,
  rssBytes: count,
  pssBytes: count,
  swapBytes: count,
  glibcShare: ratio,
  categories: array(category),
  modules: array(object({ path: string, rssBytes: count })),
  notes: array(string),
});

/** A `leakscope.mem/1` document from untrusted JSON; throws `malformed` with the path of the first problem. */
export function parseMem(doc: unknown): MemDocument {
  return parseWith(memDocument, doc);
}
