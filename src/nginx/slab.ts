// The slab allocator at the start of every nginx shared memory zone: ngx_init_zone_pool
// (src/core/ngx_cycle.c) makes each zone's memory an ngx_slab_pool_t (src/core/ngx_slab.h,
// ngx_slab.c) before the owning module's init: sp->end = addr + size, sp->min_shift = 3,
// sp->addr = addr; ngx_slab_init lays out, after the header,
//   slots[n] (ngx_slab_page_t, n = pagesize_shift - min_shift), stats[n] (ngx_slab_stat_t),
//   pages[count] (ngx_slab_page_t, one per page), then the pages themselves from `start`
//   (page-aligned) to `end`; last = pages + count, pfree = free pages.
// Free pages form runs: pool->free.next -> the first page descriptor of a run, whose slab is the
// run's length in pages, next -> the next run, until next == &pool->free. pfree is the count
// nginx keeps (ngx_slab_alloc_pages / ngx_slab_free_pages); lua-nginx-module's
// ngx.shared.DICT:free_space() returns pfree * ngx_pagesize (ngx_http_lua_ffi_shdict_free_space).
// stats[i] counts chunks of 2^(min_shift + i) bytes: total in the slot's pages, used, requests
// and failures (nginx >= 1.11.7, as pfree).
// Other worker processes change the pool while it is read (we take no lock: read-only), so the
// free-list walk is bounded by the page count and checked against pfree; a walk that disagrees or
// breaks is reported, never trusted silently.

import type { AddressSpace } from '../target/index.js';
import { ByteReader } from '../binary/byte-reader.js';

/** Field offsets of ngx_slab_pool_t (x86-64). */
export interface SlabPoolLayout {
  /** Which build: ngx_shmtx_sh_t has `wait` only with NGX_HAVE_POSIX_SEM. */
  name: 'posix-sem' | 'no-posix-sem';
  min_shift: number;
  pages: number;
  last: number;
  free: number;
  stats: number;
  pfree: number;
  start: number;
  end: number;
  data: number;
  addr: number;
  sizeof: number;
}

/**
 * Layouts by build, tried in order; the data picks (sp->addr == the zone's address, sp->end ==
 * its end, the arrays where ngx_slab_init puts them). 'posix-sem' is Debian's (NGX_HAVE_POSIX_SEM,
 * NGX_HAVE_ATOMIC_OPS), re-derived by src/nginx/layouts.test.ts with offsets.c; 'no-posix-sem'
 * drops ngx_shmtx_sh_t.wait (8 bytes) and ngx_shmtx_t's wait, semaphore and sem_t (48 bytes).
 */
export const SLAB_POOL_LAYOUTS: readonly SlabPoolLayout[] = [
  {
    name: 'posix-sem',
    min_shift: 24,
    pages: 32,
    last: 40,
    free: 48,
    stats: 72,
    pfree: 80,
    start: 88,
    end: 96,
    data: 184,
    addr: 192,
    sizeof: 200,
  },
  {
    name: 'no-posix-sem',
    min_shift: 16,
    pages: 24,
    last: 32,
    free: 40,
    stats: 64,
    pfree: 72,
    start: 80,
    end: 88,
    data: 128,
    addr: 136,
    sizeof: 144,
  },
];
/** ngx_slab_page_t { uintptr_t slab; ngx_slab_page_t *next; uintptr_t prev; } */
export const SLAB_PAGE = { slab: 0, next: 8, prev: 16, sizeof: 24 } as const;
/** ngx_slab_stat_t { total; used; reqs; fails; } (ngx_uint_t each) */
export const SLAB_STAT = { total: 0, used: 8, reqs: 16, fails: 24, sizeof: 32 } as const;
/** ngx_pagesize on x86-64 Linux. */
export const SLAB_PAGE_SIZE = 4096;
const PAGE_SHIFT = 12;
/** The page descriptor array is read in one piece up to this many bytes (a 2.7 GiB zone); larger: no walk. */
const MAX_PAGE_ARRAY_BYTES = 16 << 20;

export interface SlabSlot {
  /** Chunk size of the slot: 2^(min_shift + slot), bytes. */
  chunkBytes: number;
  /** Chunks in the slot's pages, of which in use. */
  total: number;
  used: number;
  /** Allocation requests of this size, and those that failed (no memory). */
  reqs: number;
  fails: number;
}

export interface SlabPool {
  layout: SlabPoolLayout['name'];
  pageSize: number;
  /** Pages the pool manages (last - pages). */
  pages: number;
  /** pfree: nginx's own count of free pages (free_space() = freePages * pageSize). */
  freePages: number;
  /** pages - freePages. */
  usedPages: number;
  /** Free pages found by walking the free list (runs' lengths), or null when the walk broke. */
  freeListPages: number | null;
  freeListRuns: number;
  /** Slots with any request or chunk (small allocations), smallest first. */
  slots: SlabSlot[];
  /** What did not add up (a walk that broke or disagrees with pfree: the pool changed while read). */
  problems: string[];
}

const hex = (n: number) => '0x' + n.toString(16);

/**
 * Reads the slab pool at the start of the shm zone [addr, addr + size). Returns why not (a
 * string) when no layout validates: the zone is not (or no longer) a slab pool.
 */
export function readSlabPool(space: AddressSpace, addr: number, size: number): SlabPool | string {
  const maxHeader = Math.max(...SLAB_POOL_LAYOUTS.map((l) => l.sizeof));
  const hb = Buffer.alloc(maxHeader);
  if (space.readInto(addr, hb, 0, maxHeader) !== maxHeader) return `slab pool header at ${hex(addr)} unreadable`;
  const h = new ByteReader(hb, { base: addr, label: 'ngx_slab_pool_t' });
  let why = '';
  for (const L of SLAB_POOL_LAYOUTS) {
    const r = validate(h, L, addr, size);
    if (typeof r === 'string') {
      why ||= r;
      continue;
    }
    return walk(space, L, addr, r);
  }
  return why;
}

interface Header {
  minShift: number;
  slotCount: number;
  pagesAt: number;
  count: number;
  statsAt: number;
  pfree: number;
  freeHead: number;
  start: number;
}

function validate(h: ByteReader, L: SlabPoolLayout, addr: number, size: number): Header | string {
  if (h.u64At(L.addr) !== addr) return `sp->addr is not the zone's address (${L.name} layout)`;
  if (h.u64At(L.end) !== addr + size) return `sp->end is not the zone's end (${L.name} layout)`;
  const minShift = h.u64At(L.min_shift);
  if (!(minShift >= 1 && minShift < PAGE_SHIFT)) return `min_shift ${minShift} implausible`;
  const slotCount = PAGE_SHIFT - minShift;
  const statsAt = h.u64At(L.stats),
    pagesAt = h.u64At(L.pages),
    last = h.u64At(L.last),
    start = h.u64At(L.start),
    pfree = h.u64At(L.pfree);
  // ngx_slab_init: slots right after the header, then stats, then the page descriptors.
  if (statsAt !== addr + L.sizeof + slotCount * SLAB_PAGE.sizeof) return `stats at ${hex(statsAt)} not after the slots`;
  if (pagesAt !== statsAt + slotCount * SLAB_STAT.sizeof) return `pages at ${hex(pagesAt)} not after the stats`;
  if (last < pagesAt || (last - pagesAt) % SLAB_PAGE.sizeof !== 0) return `last ${hex(last)} not a page descriptor`;
  const count = (last - pagesAt) / SLAB_PAGE.sizeof;
  if (start % SLAB_PAGE_SIZE !== 0 || start < last || start + count * SLAB_PAGE_SIZE > addr + size)
    return `start ${hex(start)} with ${count} pages does not fit the zone`;
  if (pfree > count) return `pfree ${pfree} > ${count} pages`;
  return {
    minShift,
    slotCount,
    pagesAt,
    count,
    statsAt,
    pfree,
    freeHead: h.u64At(L.free + SLAB_PAGE.next),
    start,
  };
}

function walk(space: AddressSpace, L: SlabPoolLayout, addr: number, hd: Header): SlabPool {
  const problems: string[] = [];
  // ---- per-slot stats ----
  const slots: SlabSlot[] = [];
  const sb = Buffer.alloc(hd.slotCount * SLAB_STAT.sizeof);
  if (space.readInto(hd.statsAt, sb, 0, sb.length) === sb.length) {
    const s = new ByteReader(sb, { base: hd.statsAt, label: 'ngx_slab_stat_t[]' });
    for (let i = 0; i < hd.slotCount; i++) {
      const o = i * SLAB_STAT.sizeof;
      const slot = {
        chunkBytes: 2 ** (hd.minShift + i),
        total: s.u64At(o + SLAB_STAT.total),
        used: s.u64At(o + SLAB_STAT.used),
        reqs: s.u64At(o + SLAB_STAT.reqs),
        fails: s.u64At(o + SLAB_STAT.fails),
      };
      if (slot.total || slot.used || slot.reqs || slot.fails) slots.push(slot);
    }
  } else problems.push(`stats at ${hex(hd.statsAt)} unreadable`);

  // ---- the free list, over one copy of the page descriptors (bounded by the page count) ----
  const sentinel = addr + L.free;
  let freeListPages: number | null = null;
  let runs = 0;
  const bytes = hd.count * SLAB_PAGE.sizeof;
  if (bytes > MAX_PAGE_ARRAY_BYTES) problems.push(`${hd.count} pages: free list not walked (page array over 16 MiB)`);
  else {
    const pb = Buffer.alloc(bytes);
    if (space.readInto(hd.pagesAt, pb, 0, bytes) !== bytes) problems.push(`page descriptors unreadable`);
    else {
      const p = new ByteReader(pb, { base: hd.pagesAt, label: 'ngx_slab_page_t[]' });
      let sum = 0;
      let at = hd.freeHead;
      let broken = '';
      const seen = new Uint8Array(hd.count);
      while (at !== sentinel) {
        const off = at - hd.pagesAt;
        if (off < 0 || off >= bytes || off % SLAB_PAGE.sizeof !== 0) {
          broken = `free list points at ${hex(at)}, not a page descriptor`;
          break;
        }
        const index = off / SLAB_PAGE.sizeof;
        if (seen[index]) {
          broken = `free list loops at page ${index}`;
          break;
        }
        seen[index] = 1;
        const run = p.u64At(off + SLAB_PAGE.slab);
        if (run < 1 || run > hd.count - index) {
          broken = `free run at page ${index} of ${run} pages does not fit`;
          break;
        }
        sum += run;
        runs++;
        if (sum > hd.count) {
          broken = `free runs add up to more than the ${hd.count} pages`;
          break;
        }
        at = p.u64At(off + SLAB_PAGE.next);
      }
      if (broken) problems.push(`${broken} (the pool changed while read?)`);
      else {
        freeListPages = sum;
        if (sum !== hd.pfree)
          problems.push(`free list holds ${sum} pages, pfree says ${hd.pfree} (the pool changed while read?)`);
      }
    }
  }
  return {
    layout: L.name,
    pageSize: SLAB_PAGE_SIZE,
    pages: hd.count,
    freePages: hd.pfree,
    usedPages: hd.count - hd.pfree,
    freeListPages,
    freeListRuns: runs,
    slots,
    problems,
  };
}
