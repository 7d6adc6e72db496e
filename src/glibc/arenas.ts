// The arena ring and each arena's heaps (no chunk walk): cheap, a few small reads per arena.
//   main_arena -> next -> ... -> main_arena (malloc/arena.c, _int_new_arena links new arenas
//   right after main_arena). A thread arena's heaps: the heap of its top chunk is
//   top & ~(heap_max_size - 1), then heap_info.prev back to the first heap, which holds
//   the malloc_state right after its heap_info (glibc 2.36 malloc/arena.c new_heap,
//   _int_new_arena, sysmalloc).

import type { AddressSpace } from '../target/address-space.js';
import { ByteReader } from '../binary/byte-reader.js';
import { LeakscopeError } from '../model/errors.js';
import type { Inconsistency } from './census-types.js';
import type { GlibcLayout } from './layout.js';
import type { GlibcLocation } from './locate.js';

/** Arenas beyond this are treated as a corrupted ring (default arena_max: 8 * cores). */
export const MAX_ARENAS = 4096;
/** Heaps per thread arena beyond this are treated as a corrupted prev chain. */
export const MAX_HEAPS_PER_ARENA = 1 << 16;

export interface RawArena {
  index: number;
  kind: 'main' | 'thread';
  address: number;
  flags: number;
  top: number;
  attachedThreads: number;
  systemMem: number;
  /** fastbinsY heads (chunk addresses, not mangled). */
  fastbins: number[];
  /** bk of the unsorted bin (bin 1). */
  unsortedBk: number;
  /** Heaps to walk, oldest first: [start, end) holds chunks from `firstChunk`; `top` set on the heap holding the top chunk. */
  heaps: RawHeap[];
}

export interface RawHeap {
  /** heap_info address (thread) or sbrk_base (main). */
  start: number;
  firstChunk: number;
  /** End of the heap's used part (thread: heap_info + size; main: computed from top, else [heap] end). */
  end: number;
  /** mprotect_size end (thread heaps): the part that may hold RSS. */
  mappedEnd: number;
  /** Top chunk address when this heap holds it, else -1 (the heap then ends with fenceposts). */
  top: number;
}

export interface MallocParams {
  mmapThreshold: number;
  nMmaps: number;
  mmappedMem: number;
  sbrkBase: number;
  tcacheBins: number;
  tcacheCount: number;
  hpPagesize: number;
}

export function readMallocParams(space: AddressSpace, loc: GlibcLocation): MallocParams | null {
  if (loc.mp === null) return null;
  const P = loc.layout.mpar;
  let r: ByteReader;
  try {
    r = new ByteReader(space.read(loc.mp, P.size), { base: loc.mp, label: 'mp_' });
  } catch {
    return null;
  }
  return {
    mmapThreshold: r.u64At(P.mmapThreshold),
    nMmaps: r.i32At(P.nMmaps),
    mmappedMem: r.u64At(P.mmappedMem),
    sbrkBase: r.u64At(P.sbrkBase),
    tcacheBins: r.u64At(P.tcacheBins),
    tcacheCount: r.u64At(P.tcacheCount),
    hpPagesize: P.hpPagesize === null ? 0 : r.u64At(P.hpPagesize),
  };
}

/** First chunk at or after addr whose user pointer (chunk + 16) is 16-aligned. */
export function alignChunk(addr: number): number {
  return Math.ceil(addr / 16) * 16;
}

export interface ArenaWalkResult {
  arenas: RawArena[];
  heapMaxSize: number;
}

/**
 * Reads every arena in the ring and lists its heaps. A main arena that cannot be read is
 * a LeakscopeError; later damage (a bad next pointer, a broken heap chain) ends that part
 * with an inconsistency.
 */
export function readArenas(
  space: AddressSpace,
  loc: GlibcLocation,
  mp: MallocParams | null,
  report: (i: Inconsistency) => void,
): ArenaWalkResult {
  const L = loc.layout;
  const heapMaxSize = mp && mp.hpPagesize > 0 && mp.hpPagesize * 4 >= L.heapMaxSize ? mp.hpPagesize * 4 : L.heapMaxSize;
  const arenas: RawArena[] = [];
  const seen = new Set<number>();
  let addr = loc.mainArena;
  while (arenas.length < MAX_ARENAS) {
    if (seen.has(addr)) break;
    seen.add(addr);
    const isMain = addr === loc.mainArena;
    let r: ByteReader;
    try {
      r = new ByteReader(space.read(addr, L.mstate.size), {
        base: addr,
        label: `malloc_state at 0x${addr.toString(16)}`,
      });
    } catch (e) {
      if (isMain)
        throw new LeakscopeError('unreadable', `cannot read main_arena at 0x${addr.toString(16)}`, { cause: e });
      report({ address: addr, kind: 'arena-ring', detail: 'next arena unreadable; ring walk stopped' });
      break;
    }
    const arena = parseArena(r, addr, arenas.length, isMain, L);
    if (isMain) arena.heaps = mainHeaps(space, loc, mp, arena, report);
    else {
      const h = Math.floor(addr / heapMaxSize) * heapMaxSize;
      if (addr !== h + L.heapInfo.sizeof || safeU64(space, h + L.heapInfo.arPtr) !== addr) {
        report({
          address: addr,
          kind: 'arena-ring',
          detail: `arena 0x${addr.toString(16)} is not right after a heap_info pointing back at it; ring walk stopped`,
        });
        break;
      }
      arena.heaps = threadHeaps(space, L, arena, heapMaxSize, report);
    }
    arenas.push(arena);
    const next = r.u64At(L.mstate.next);
    if (next === loc.mainArena) break;
    if (next === 0 || next % 16 !== 0) {
      report({
        address: addr + L.mstate.next,
        kind: 'arena-ring',
        detail: `next = 0x${next.toString(16)} is not an arena; ring walk stopped`,
      });
      break;
    }
    addr = next;
  }
  return { arenas, heapMaxSize };
}

function parseArena(r: ByteReader, addr: number, index: number, isMain: boolean, L: GlibcLayout): RawArena {
  const M = L.mstate;
  const fastbins: number[] = [];
  if (M.fastbinsY !== null) for (let i = 0; i < M.nfastbins; i++) fastbins.push(r.u64At(M.fastbinsY + i * 8));
  return {
    index,
    kind: isMain ? 'main' : 'thread',
    address: addr,
    flags: r.u32At(4),
    top: r.u64At(M.top),
    attachedThreads: r.u64At(M.attachedThreads),
    systemMem: r.u64At(M.systemMem),
    fastbins,
    unsortedBk: r.u64At(M.bins + 8),
    heaps: [],
  };
}

function safeU64(space: AddressSpace, addr: number): number {
  try {
    return space.readU64(addr);
  } catch {
    return -1;
  }
}

function mainHeaps(
  space: AddressSpace,
  loc: GlibcLocation,
  mp: MallocParams | null,
  arena: RawArena,
  report: (i: Inconsistency) => void,
): RawHeap[] {
  const L = loc.layout;
  // Before the first sbrk, main_arena.top is initial_top = bin_at(1) (the unsorted bin).
  if (arena.top === arena.address + L.mstate.bins - 16) return [];
  const hm = loc.heapMapping;
  const sbrkBase = mp && mp.sbrkBase > 0 ? mp.sbrkBase : hm ? hm.start : 0;
  if (!sbrkBase) {
    report({
      address: arena.top,
      kind: 'main-heap',
      detail: 'no [heap] mapping and no mp_.sbrk_base: main heap not walked',
    });
    return [];
  }
  if (arena.flags & 2) {
    report({
      address: arena.address,
      kind: 'main-heap-noncontiguous',
      detail:
        'main arena is NONCONTIGUOUS (sbrk failed, mmap fallback): only the region from sbrk_base to top is walked',
    });
  }
  const first = alignChunk(sbrkBase);
  let end = sbrkBase + arena.systemMem;
  const topSize = safeU64(space, arena.top + 8);
  if (topSize > 0) end = arena.top + (topSize - (topSize % 8));
  if (arena.top < first || arena.top >= end) {
    report({
      address: arena.top,
      kind: 'main-heap',
      detail: `main_arena.top 0x${arena.top.toString(16)} is outside sbrk_base 0x${sbrkBase.toString(16)} .. 0x${end.toString(16)}`,
    });
    return [];
  }
  return [
    {
      start: sbrkBase,
      firstChunk: first,
      end,
      mappedEnd: hm && hm.start <= sbrkBase && hm.end >= end ? hm.end : end,
      top: arena.top,
    },
  ];
}

function threadHeaps(
  space: AddressSpace,
  L: GlibcLayout,
  arena: RawArena,
  heapMax: number,
  report: (i: Inconsistency) => void,
): RawHeap[] {
  const H = L.heapInfo;
  const out: RawHeap[] = [];
  const seen = new Set<number>();
  let h = Math.floor(arena.top / heapMax) * heapMax;
  const buf = Buffer.alloc(H.sizeof);
  while (h !== 0 && out.length < MAX_HEAPS_PER_ARENA) {
    if (seen.has(h) || h % heapMax !== 0) {
      report({
        address: h,
        kind: 'heap-chain',
        detail: `heap_info.prev 0x${h.toString(16)} is ${seen.has(h) ? 'a loop' : 'not aligned to the heap size'}`,
      });
      break;
    }
    seen.add(h);
    if (space.readInto(h, buf, 0, H.sizeof) !== H.sizeof) {
      report({ address: h, kind: 'heap-chain', detail: 'heap_info unreadable' });
      break;
    }
    const r = new ByteReader(buf, { base: h, label: 'heap_info' });
    const arPtr = r.u64At(H.arPtr),
      prev = r.u64At(H.prev),
      size = r.u64At(H.size),
      mprot = r.u64At(H.mprotectSize);
    if (arPtr !== arena.address || size > heapMax || size < H.sizeof + 32 || size % 16 !== 0) {
      report({
        address: h,
        kind: 'heap-info',
        detail: `heap_info {ar_ptr 0x${arPtr.toString(16)}, size 0x${size.toString(16)}} does not belong to arena 0x${arena.address.toString(16)}`,
      });
      break;
    }
    const firstChunk = arena.address === h + H.sizeof ? alignChunk(arena.address + L.mstate.size) : h + H.sizeof;
    const holdsTop = arena.top >= h && arena.top < h + size;
    out.push({
      start: h,
      firstChunk,
      end: h + size,
      mappedEnd: h + Math.max(size, Math.min(mprot, heapMax)),
      top: holdsTop ? arena.top : -1,
    });
    h = prev;
  }
  if (out.length && out[0]!.top < 0)
    report({ address: arena.top, kind: 'heap-chain', detail: 'arena top is not inside the heap computed from it' });
  return out.reverse();
}
