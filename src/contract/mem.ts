// `leakscope.mem/1`: the document of `leakscope mem --json` (DESIGN.md: categories [{ name,
// rssBytes, pssBytes, swapBytes, mappings }], glibcShare). Byte counts are integers in bytes.

import type { MemBreakdown, MemCategoryName } from '../model/mem.js';
import { formatBytes } from '../model/units.js';
import {
  address,
  array,
  count,
  literal,
  nullable,
  object,
  optional,
  parseWith,
  ratio,
  schema,
  string,
} from './json-check.js';

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

/**
 * An nginx shm zone with its slab allocator's pages (additive in /1; present when nginx's cycle
 * was read). freePages is nginx's pfree (ngx.shared.DICT:free_space() = freePages * pageSize),
 * freeListPages the free list walked (null when it broke: the pool changed while read).
 */
export interface MemShmZoneEntry {
  name: string;
  address: number;
  size: number;
  module: string | null;
  rssBytes: number;
  slab: {
    pageSize: number;
    pages: number;
    freePages: number;
    usedPages: number;
    freeListPages: number | null;
    slots: Array<{ chunkBytes: number; total: number; used: number; reqs: number; fails: number }>;
    problems: string[];
  } | null;
  slabProblem?: string;
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
  shmZones?: MemShmZoneEntry[];
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
    ...(b.shmZones
      ? {
          shmZones: b.shmZones.map((z) => ({
            name: z.name,
            address: z.address,
            size: z.size,
            module: z.module,
            rssBytes: z.rssBytes,
            slab: z.slab
              ? {
                  pageSize: z.slab.pageSize,
                  pages: z.slab.pages,
                  freePages: z.slab.freePages,
                  usedPages: z.slab.usedPages,
                  freeListPages: z.slab.freeListPages,
                  slots: z.slab.slots.map((x) => ({
                    chunkBytes: x.chunkBytes,
                    total: x.total,
                    used: x.used,
                    reqs: x.reqs,
                    fails: x.fails,
                  })),
                  problems: z.slab.problems,
                }
              : null,
            ...(z.slabProblem !== undefined ? { slabProblem: z.slabProblem } : {}),
          })),
        }
      : {}),
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
const shmZone = object({
  name: string,
  address,
  size: count,
  module: nullable(string),
  rssBytes: count,
  slab: nullable(
    object({
      pageSize: count,
      pages: count,
      freePages: count,
      usedPages: count,
      freeListPages: nullable(count),
      slots: array(object({ chunkBytes: count, total: count, used: count, reqs: count, fails: count })),
      problems: array(string),
    }),
  ),
  slabProblem: optional(string),
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
  shmZones: optional(array(shmZone)),
});

/** A `leakscope.mem/1` document from untrusted JSON; throws `malformed` with the path of the first problem. */
export function parseMem(doc: unknown): MemDocument {
  return parseWith(memDocument, doc);
}

/**
 * One line for an nginx shm zone and its slab pages (mem and analyze, text and HTML):
 * `"dict" (ngx_http_lua_module) 10.0 MiB: 2548 pages of 4 KiB, 12 used, 2536 free; chunks 64 B 40/64 used`.
 */
export function describeShmZone(
  z: Pick<MemShmZoneEntry, 'name' | 'module' | 'size' | 'slab' | 'slabProblem'>,
): string {
  const head = `"${z.name}"${z.module ? ` (${z.module})` : ''} ${formatBytes(z.size)}`;
  const s = z.slab;
  if (!s) return `${head}: slab not read (${z.slabProblem ?? 'unknown'})`;
  const slots = s.slots
    .filter((x) => x.total > 0 || x.used > 0)
    .map((x) => `${formatBytes(x.chunkBytes)} ${x.used}/${x.total}`);
  const fails = s.slots.reduce((n, x) => n + x.fails, 0);
  return (
    `${head}: ${s.pages} slab pages of ${formatBytes(s.pageSize)}, ${s.usedPages} used, ${s.freePages} free` +
    (s.freeListPages !== null && s.freeListPages !== s.freePages ? ` (free list ${s.freeListPages})` : '') +
    (slots.length ? `; chunks used/total ${slots.join(', ')}` : '') +
    (fails ? `; ${fails} failed allocations` : '') +
    (s.problems.length ? `; ${s.problems.join('; ')}` : '')
  );
}
