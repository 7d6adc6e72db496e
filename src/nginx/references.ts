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

export interface StaticRegion { object: Module; start: number; end: number }

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

/** DataView of the last ArrayBuffer scanned (one buffer retained at most). */
let lastBuffer: ArrayBufferLike | undefined;
let lastView: DataView | undefined;

/**
 * Scans the 8-aligned slots of `buf[off .. off+len)` (whose first byte is at runtime address
 * `addr`) for values in `targets`, calling `hit(slotAddr, value)`.
 */
export function scanForPointers(buf: Uint8Array, off: number, len: number, addr: number, targets: PointerTargets, hit: (slotAddr: number, value: number) => void): void {
  // Align the first slot to 8 in the target's address space.
  const skip = (8 - (addr % 8)) % 8;
  // Offsets into the whole ArrayBuffer: one DataView per ArrayBuffer (many small ranges share one).
  const base = buf.byteOffset;
  let p = base + off + skip;
  const end = base + off + len;
  off += base;
  if (lastBuffer !== buf.buffer) { lastBuffer = buf.buffer; lastView = new DataView(buf.buffer); }
  const view = lastView!;
  const { min, max, set } = targets;
  for (; p + 8 <= end; p += 8) {
    const hi = view.getUint32(p + 4, true);
    if (hi > targets.maxHi || hi < targets.minHi) continue;
    const v = hi * TWO32 + view.getUint32(p, true);
    if (v >= min && v <= max && set.has(v)) hit(addr + (p - off), v);
  }
}

export class PointerTargets {
  readonly set: Set<number>;
  readonly min: number; readonly max: number; readonly minHi: number; readonly maxHi: number;
  constructor(values: Iterable<number>) {
    this.set = new Set(values);
    let min = Infinity, max = -Infinity;
    for (const v of this.set) { if (v < min) min = v; if (v > max) max = v; }
    this.min = min; this.max = max;
    this.minHi = Math.floor(min / TWO32); this.maxHi = Math.floor(max / TWO32);
  }
  get size(): number { return this.set.size; }
}

/** Searches ranges [starts[i], starts[i] + lens[i]) for target values; `hit(rangeIndex, slotAddr, value)`. Returns bytes read. */
export function searchRanges(space: AddressSpace, starts: ArrayLike<number>, lens: ArrayLike<number>, targets: PointerTargets,
  hit: (rangeIndex: number, slotAddr: number, value: number) => void): number {
  if (targets.size === 0) return 0;
  let bytes = 0;
  // Split big ranges so one window stays <= 4 MiB.
  const s: number[] = [], l: number[] = [], owner: number[] = [];
  const W = 4 << 20;
  for (let i = 0; i < starts.length; i++) {
    for (let o = 0; o < lens[i]!; o += W) { s.push(starts[i]! + o); l.push(Math.min(W, lens[i]! - o)); owner.push(i); }
  }
  readBatched(space, s, l, (k, buf, off, got) => {
    bytes += got;
    scanForPointers(buf, off, got, s[k]!, targets, (slot, v) => hit(owner[k]!, slot, v));
  }, { gap: 4096, maxWindow: W });
  return bytes;
}
