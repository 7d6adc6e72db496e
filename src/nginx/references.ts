// Reverse pointer search: where in the target is the 8-byte value V (a pool address) stored?
// Over (a) every loaded object's writable PT_LOAD segments (.data, .bss, including the
// anonymous tail of .bss), and (b) in-use heap chunks. Aligned 8-byte slots only (x86-64
// pointers in C structs and arrays are 8-aligned). Reads go in bounded windows.

import type { Module } from '../model/memory.js';
import { PF_W, PT_LOAD } from '../formats/elf/index.js';
import type { Symbolizer } from '../symbols/index.js';
import type { AddressSpace } from '../target/index.js';
import { readBatched } from './read-batch.js';

const TWO32 = 4294967296;

export interface StaticRegion {
  object: Module;
  start: number;
  end: number;
}

/** Runtime ranges of every object's writable PT_LOAD segments ([vaddr, vaddr + memsz) + load bias). */
export function writableRegions(symbolizer: Symbolizer, objects: readonly Module[]): StaticRegion[] {
  const out: StaticRegion[] = [];
  for (const object of objects) {
    const s = symbolizer.symbolsOf(object);
    if (!s) continue;
    for (const seg of s.elf.segments) {
      if (seg.type !== PT_LOAD || !(seg.flags & PF_W) || seg.memsz === 0) continue;
      const first = seg.vaddr + object.loadBias;
      const start = first - (first % 8);
      out.push({ object, start, end: seg.vaddr + seg.memsz + object.loadBias });
    }
  }
  return out;
}

/** 32-bit words of the last ArrayBuffer scanned (one buffer retained at most). */
let lastBuffer: ArrayBufferLike | undefined;
let lastWords: Uint32Array | undefined;
/** Where a range whose slots are not 4-aligned in its ArrayBuffer is copied first (grown as needed). */
let alignedCopy = Buffer.alloc(0);

/**
 * Called for each slot holding a target value: `tag` is the caller's (e.g. the range index),
 * `slotAddr` the slot's runtime address, `target` the value's index in PointerTargets.
 */
export type PointerHit = (tag: number, slotAddr: number, target: number) => void;

/**
 * Scans the 8-aligned slots of `buf[off .. off+len)` (whose first byte is at runtime address
 * `addr`) for values in `targets`, calling `hit(tag, slotAddr, targetIndex)`.
 * Slots are read as two 32-bit words through a Uint32Array over the whole ArrayBuffer (an
 * element load is far cheaper than a DataView call before the JIT has optimized this loop);
 * windows and census copies start 8-aligned, any other range is copied to an aligned buffer
 * first. Host and target are both little-endian x86-64.
 */
export function scanForPointers(
  buf: Uint8Array,
  off: number,
  len: number,
  addr: number,
  targets: PointerTargets,
  hit: PointerHit,
  tag: number,
): void {
  // Align the first slot to 8 in the target's address space.
  const skip = (8 - (addr % 8)) % 8;
  // Offsets into the whole ArrayBuffer (many small ranges share one).
  const start = buf.byteOffset + off;
  if (((start + skip) & 3) !== 0) {
    // Copy from the first slot on: in the copy it sits at offset 0, and the recursion takes the aligned path.
    const n = Math.max(0, len - skip);
    if (alignedCopy.length < n) alignedCopy = Buffer.alloc(Math.max(n, alignedCopy.length * 2, 4096));
    alignedCopy.set(buf.subarray(off + skip, off + skip + n), 0);
    scanForPointers(alignedCopy, 0, n, addr + skip, targets, hit, tag);
    return;
  }
  if (lastBuffer !== buf.buffer) {
    lastBuffer = buf.buffer;
    lastWords = new Uint32Array(buf.buffer, 0, buf.buffer.byteLength >>> 2);
  }
  const w = lastWords!;
  const { min, max, minHi, maxHi } = targets;
  const last = ((start + len) >>> 2) - 2; // last word index a slot may start at
  for (let i = (start + skip) >>> 2; i <= last; i += 2) {
    const hi = w[i + 1]!;
    if (hi > maxHi || hi < minHi) continue;
    const lo = w[i]!;
    const v = hi * TWO32 + lo;
    if (v < min || v > max) continue;
    const t = targets.find(lo, v);
    if (t >= 0) hit(tag, addr + (i * 4 - start), t);
  }
}

/**
 * The values searched for (pool addresses), each known by its index in the constructor's list:
 * an open-addressing hash table in typed arrays (load <= 1/2; no boxing, no Map entry per
 * probe: the scan asks once per in-range slot, millions of times per analysis).
 */
export class PointerTargets {
  readonly min: number;
  readonly max: number;
  readonly minHi: number;
  readonly maxHi: number;
  readonly size: number;
  private readonly keys: Float64Array;
  /** Index in the constructor's list, -1 for an empty slot. */
  private readonly slots: Int32Array;
  private readonly mask: number;
  constructor(values: ArrayLike<number>) {
    let cap = 16;
    while (cap < values.length * 2) cap *= 2;
    this.keys = new Float64Array(cap);
    this.slots = new Int32Array(cap).fill(-1);
    this.mask = cap - 1;
    let min = Infinity,
      max = -Infinity,
      size = 0;
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      let h = PointerTargets.hash(v % TWO32) & this.mask;
      let dup = false;
      while (this.slots[h] !== -1) {
        if (this.keys[h] === v) {
          dup = true;
          break;
        }
        h = (h + 1) & this.mask;
      }
      if (dup) continue; // the first occurrence keeps its index
      this.keys[h] = v;
      this.slots[h] = i;
      size++;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    this.size = size;
    this.min = min;
    this.max = max;
    this.minHi = Math.floor(min / TWO32);
    this.maxHi = Math.floor(max / TWO32);
  }
  /** Hash of a value's low 32 bits (targets are 16-aligned heap addresses: drop the zero bits). */
  private static hash(lo: number): number {
    return Math.imul((lo >>> 4) ^ (lo >>> 20), 0x9e3779b1) >>> 8;
  }
  /** The index of `v` (whose low 32 bits are `lo`), or -1. */
  find(lo: number, v: number): number {
    const { keys, slots, mask } = this;
    let h = PointerTargets.hash(lo) & mask;
    for (let t = slots[h]!; t !== -1; t = slots[h]!) {
      if (keys[h] === v) return t;
      h = (h + 1) & mask;
    }
    return -1;
  }
}

/** Bytes of target memory read per window (big ranges are split into pieces of at most this). */
const SEARCH_WINDOW = 4 << 20;

/**
 * Searches ranges [starts[i], starts[i] + lens[i]) for target values; `hit(rangeIndex, slotAddr,
 * targetIndex)`. Returns bytes read.
 */
export function searchRanges(
  space: AddressSpace,
  starts: ArrayLike<number>,
  lens: ArrayLike<number>,
  targets: PointerTargets,
  hit: PointerHit,
): number {
  if (targets.size === 0) return 0;
  let bytes = 0;
  // Split big ranges so one window stays <= SEARCH_WINDOW.
  let pieces = 0;
  for (let i = 0; i < starts.length; i++) pieces += Math.max(1, Math.ceil(lens[i]! / SEARCH_WINDOW));
  const s = new Float64Array(pieces),
    l = new Float64Array(pieces),
    owner = new Int32Array(pieces);
  let k = 0;
  for (let i = 0; i < starts.length; i++) {
    for (let o = 0; o < lens[i]!; o += SEARCH_WINDOW) {
      s[k] = starts[i]! + o;
      l[k] = Math.min(SEARCH_WINDOW, lens[i]! - o);
      owner[k] = i;
      k++;
    }
  }
  readBatched(
    space,
    s.subarray(0, k),
    l.subarray(0, k),
    (j, buf, off, got) => {
      bytes += got;
      scanForPointers(buf, off, got, s[j]!, targets, hit, owner[j]!);
    },
    { gap: 4096, maxWindow: SEARCH_WINDOW },
  );
  return bytes;
}
