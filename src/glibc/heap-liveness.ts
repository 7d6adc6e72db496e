// Is an allocation still in use? Decided by reading the target's heap, without a probe on free
// (issue 18: sampled malloc mode's --heap-liveness). Read-only; a read that fails (memory unmapped
// since) is an answer, not an error. For a chunk at user address u, requested size n (request2size nb):
//   freed if  u - 8 (the size field) is unreadable (munmapped),
//             or the chunk lies inside an arena's top chunk (merged into top),
//             or its size is not what malloc gives n (heap: nb .. nb + MINSIZE, glibc 2.36 _int_malloc /
//             _int_realloc / _int_memalign keep remainders < MINSIZE; mmapped: >= nb) (consolidated),
//             or u + 8 == tcache_key (tcache_entry.key, 2.34+: tcache_put),
//             or it is on a fastbin chain (fastbins keep PREV_INUSE set and write no key),
//             or the next chunk's PREV_INUSE is clear (bins; consolidated into a free neighbour).
// What it cannot tell: a chunk freed and handed out again at a similar size (a "ghost"), or whose
// stale header survives inside a larger chunk handed out since, looks in use. A caller keyed by
// address keeps at most one ghost per sampled address, but a ghost sits on someone's live chunk: in
// a leak that reuses freed chunks (its own, or another path's of the same size) the sampled path
// is over-counted or the leak misattributed (bench/README.md, issue 18).

import { basename } from 'node:path';
import type { AddressSpace } from '../target/address-space.js';
import type { Symbolizer } from '../symbols/symbolizer.js';
import { LeakscopeError } from '../model/errors.js';
import { locateGlibc, type GlibcLocation } from './locate.js';
import { readArenas, readMallocParams, type MallocParams } from './arenas.js';
import { IS_MMAPPED, MINSIZE, PREV_INUSE, requestToChunkSize } from './layout.js';

/** Fastbin chain entries followed per bin and check (a longer chain is cut; its rest looks in use). */
const FASTBIN_CHAIN_MAX = 4096;
const TWO32 = 2 ** 32;

export interface LivenessQuery {
  /** User pointer (chunk + 16). */
  address: number;
  /** Requested bytes. */
  size: number;
}

export interface LivenessCheck {
  /** Same order as the query: true = still in use as far as the heap tells. */
  live: boolean[];
  /** Bytes read from the target. */
  bytesRead: number;
  /** Why chunks were found freed: unreadable, size, tcache, fastbin, top, prev-inuse. */
  freedBy: Record<string, number>;
}

export class HeapLiveness {
  private readonly mp: MallocParams | null;
  private readonly scratch = Buffer.alloc(24);

  private constructor(
    private readonly space: AddressSpace,
    readonly loc: GlibcLocation,
    /** Runtime address of tcache_key (debug file), or null: the key is inferred from the main thread's tcache. */
    private readonly keyAddr: number | null,
    /** Where the key comes from (for the trace's notes). */
    readonly keySource: string,
  ) {
    this.mp = readMallocParams(space, loc);
  }

  /**
   * Opens the checker on a glibc process. Throws LeakscopeError('not-supported') when liveness
   * cannot be told from the heap: tcache entries without a recognisable key (glibc 2.26-2.33), or
   * a random key that is neither in libc's debug file nor in the main thread's tcache.
   */
  static open(space: AddressSpace, symbolizer: Symbolizer): HeapLiveness {
    const loc = locateGlibc(space, symbolizer);
    const T = loc.layout.tcache;
    if (T.key === 'none' || T.key === 'perthread')
      throw new LeakscopeError(
        'not-supported',
        `glibc ${loc.version.text}: tcache entries carry no random key, a freed chunk cannot be told from a live one`,
      );
    const sym = symbolizer.lookup('tcache_key', { module: basename(loc.libc.path) });
    if (sym) return new HeapLiveness(space, loc, sym.runtimeAddr, 'debug-file symbol tcache_key');
    if (!loc.heapMapping)
      throw new LeakscopeError(
        'not-supported',
        `no tcache_key: libc's debug file does not name it and there is no [heap] holding the main thread's tcache to read it from`,
      );
    return new HeapLiveness(space, loc, null, "the main thread's tcache entries (no debug file)");
  }

  private key: number | null = null;
  /**
   * tcache_key, read until it is set: glibc draws it at the process's first malloc
   * (tcache_key_initialize), so a trace may start before it exists. Null: no tcache entry can exist yet
   * (or, inferred, none shows it): the key check is skipped for this round.
   */
  tcacheKey(): number | null {
    if (this.key !== null) return this.key;
    const k = this.keyAddr !== null ? this.u64(this.keyAddr) : inferTcacheKey(this.space, this.loc);
    if (k !== null && k !== 0) this.key = k;
    return this.key;
  }

  /** Reads the arenas once, then each queried chunk's header, key word and next size field. */
  check(q: readonly LivenessQuery[]): LivenessCheck {
    let bytesRead = 0;
    const arenas = readArenas(this.space, this.loc, this.mp, () => {}).arenas;
    // Top chunks [top, top + size): a chunk consolidated into top lies inside one.
    const tops: Array<[number, number]> = [];
    const fast = new Set<number>();
    const safe = this.loc.layout.safeLinking;
    for (const a of arenas) {
      const ts = this.u64(a.top + 8);
      bytesRead += 8;
      if (ts !== null) tops.push([a.top, a.top + (ts - (ts % 8))]);
      for (const head of a.fastbins) {
        let c = head;
        for (let n = 0; c !== 0 && c % 16 === 0 && n < FASTBIN_CHAIN_MAX && !fast.has(c); n++) {
          fast.add(c);
          const fd = this.u64(c + 16);
          bytesRead += 8;
          if (fd === null) break;
          c = safe ? xor48(fd, Math.floor((c + 16) / 4096)) : fd;
        }
      }
    }
    const key = this.tcacheKey();
    const live: boolean[] = [];
    const freedBy: Record<string, number> = {};
    const freed = (why: string) => {
      freedBy[why] = (freedBy[why] ?? 0) + 1;
      live.push(false);
    };
    const buf = this.scratch;
    for (const { address: u, size } of q) {
      const got = this.space.readInto(u - 8, buf, 0, 24);
      bytesRead += got;
      if (got < 8) {
        freed('unreadable');
        continue;
      }
      const raw = buf.readUInt32LE(4) * TWO32 + buf.readUInt32LE(0);
      const csize = raw - (raw % 8);
      const nb = requestToChunkSize(size);
      if ((raw & IS_MMAPPED) !== 0) {
        // sysmalloc: ALIGN_UP(nb + SIZE_SZ, page) (minus a memalign's lead); freed = munmapped (unreadable).
        if (csize >= nb && csize <= 2 * nb + (64 << 10)) live.push(true);
        else freed('size');
        continue;
      }
      const chunk = u - 16;
      if (tops.some(([s, e]) => chunk >= s && chunk < e)) {
        freed('top');
        continue;
      }
      if (csize < nb || csize > nb + MINSIZE) {
        freed('size');
        continue;
      }
      if (key !== null && got === 24 && buf.readUInt32LE(16) + buf.readUInt32LE(20) * TWO32 === key) {
        freed('tcache');
        continue;
      }
      if (fast.has(chunk)) {
        freed('fastbin');
        continue;
      }
      const next = this.u64(chunk + csize + 8);
      bytesRead += 8;
      if (next !== null && (next & PREV_INUSE) !== 0) live.push(true);
      else freed('prev-inuse');
    }
    return { live, bytesRead, freedBy };
  }

  private u64(addr: number): number | null {
    const b = this.scratch;
    if (this.space.readInto(addr, b, 0, 8) !== 8) return null;
    return b.readUInt32LE(4) * TWO32 + b.readUInt32LE(0);
  }
}

/** a ^ b for values below 2^53 (addresses: 48 bits). */
function xor48(a: number, b: number): number {
  const aHi = Math.floor(a / TWO32),
    bHi = Math.floor(b / TWO32);
  return ((aHi ^ bHi) >>> 0) * TWO32 + (((a >>> 0) ^ (b >>> 0)) >>> 0);
}

/**
 * tcache_key without the debug file: the key word (entry + 8) of the main thread's tcache entries.
 * The main thread's tcache_perthread_struct is the first chunk of [heap] (its first malloc);
 * it is trusted when its chunk size is the struct's and at least one entry shows a key, the most
 * common one winning.
 */
function inferTcacheKey(space: AddressSpace, loc: GlibcLocation): number | null {
  const T = loc.layout.tcache;
  const h = loc.heapMapping;
  if (!h) return null;
  const first = Math.ceil(h.start / 16) * 16;
  const structBytes = T.entries + T.bins * 8;
  const buf = Buffer.alloc(structBytes + 16);
  if (space.readInto(first, buf, 0, buf.length) !== buf.length) return null;
  const size = buf.readUInt32LE(8) + buf.readUInt32LE(12) * TWO32;
  if (size - (size % 8) !== T.structChunkSize) return null;
  const votes = new Map<number, number>();
  const w = Buffer.alloc(8);
  for (let i = 0; i < T.bins; i++) {
    const o = 16 + T.entries + i * 8;
    const e = buf.readUInt32LE(o) + buf.readUInt32LE(o + 4) * TWO32;
    if (e === 0 || e % 16 !== 0) continue;
    if (space.readInto(e + 8, w, 0, 8) !== 8) continue;
    const k = w.readUInt32LE(0) + w.readUInt32LE(4) * TWO32;
    votes.set(k, (votes.get(k) ?? 0) + 1);
  }
  let best: number | null = null,
    n = 0;
  for (const [k, c] of votes)
    if (c > n) {
      n = c;
      best = k;
    }
  return best;
}
