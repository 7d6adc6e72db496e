// Object index of one Lua VM over a HeapImage: one bit per 8 bytes of the image's linear
// space (objects are 8-aligned) says "an object starts here", and a rank directory turns an
// address into the object's number = how many objects start below it. Objects are therefore
// numbered in address order (census.ts fills its arrays in that order), and the index costs
// 1/64 of the image (8 MB for a 500 MB heap) instead of a hash of 2–4 slots per object.
// Setting a bit twice is how a census notices an object on two lists.

import { LeakscopeError } from '../model/errors.js';
import type { HeapImage } from './image.js';

/** Bits set in a 32-bit word. */
export function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}

/** Words per rank-directory entry (256 bits = 2 KiB of image). */
const DIR_WORDS = 8;

export class ObjectIndex {
  /** bit b of the linear space: an object starts at linear offset 8·b. */
  readonly bits: Uint32Array;
  /** objects starting before word DIR_WORDS·k (after `finish`). */
  private dir: Uint32Array | undefined;
  count = 0;

  constructor(private readonly img: HeapImage) {
    // bit numbers are used as uint32: images up to 32 GiB
    if (img.linearBytes / 8 >= 2 ** 32)
      throw new LeakscopeError('not-supported', 'Lua heap regions larger than 32 GiB are not supported');
    this.bits = new Uint32Array(Math.ceil(img.linearBytes / 256) + 1);
  }

  /** Bit number of addr, or -1 (outside the image or not 8-aligned). */
  bitOf(addr: number): number {
    const ri = this.img.regionIndex(addr);
    if (ri < 0) return -1;
    const r = this.img.regions[ri]!;
    const lin = r.base + (addr - r.start);
    return lin % 8 ? -1 : lin / 8;
  }

  /** True when an object starts at addr. */
  has(addr: number): boolean {
    const b = this.bitOf(addr);
    return b >= 0 && ((this.bits[b >>> 5]! >>> (b & 31)) & 1) === 1;
  }

  /** Marks an object at addr; false when addr is not indexable or was marked before. */
  add(addr: number): boolean {
    const b = this.bitOf(addr);
    return b >= 0 && this.setBit(b);
  }

  /** add() for the object at byte offset o of region ri (o 8-aligned and inside: the caller checked). */
  addAt(ri: number, o: number): boolean {
    return this.setBit((this.img.regions[ri]!.base + o) / 8);
  }

  /** Sets bit b; false when it was set before. */
  private setBit(b: number): boolean {
    const w = b >>> 5,
      m = 1 << (b & 31);
    if (this.bits[w]! & m) return false;
    this.bits[w]! |= m;
    this.count++;
    return true;
  }

  /** Builds the rank directory; `get` works from here on. */
  finish(): void {
    const bits = this.bits;
    const dir = new Uint32Array(Math.ceil(bits.length / DIR_WORDS) + 1);
    let c = 0;
    for (let w = 0; w < bits.length; w++) {
      if (w % DIR_WORDS === 0) dir[w / DIR_WORDS] = c;
      if (bits[w]) c += popcount32(bits[w]!);
    }
    this.dir = dir;
  }

  /** The number of the object starting at addr, or -1. */
  get(addr: number): number {
    if (addr === 0) return -1;
    const b = this.bitOf(addr);
    if (b < 0) return -1;
    const bits = this.bits;
    const w = b >>> 5,
      s = b & 31,
      x = bits[w]!;
    if (!((x >>> s) & 1)) return -1;
    let n = this.dir![(w / DIR_WORDS) | 0]!;
    for (let j = w - (w % DIR_WORDS); j < w; j++) n += popcount32(bits[j]!);
    return n + popcount32(x & ((1 << s) - 1));
  }

  /** Calls f(addr, region index) for every object, in address order (= object number order). */
  forEach(f: (addr: number, ri: number) => void): void {
    const bits = this.bits;
    for (let ri = 0; ri < this.img.regions.length; ri++) {
      const r = this.img.regions[ri]!;
      const w0 = r.base / 256,
        w1 = Math.ceil((r.base + (r.end - r.start)) / 256);
      const at = r.start - r.base; // address = at + 8·bit
      for (let w = w0; w < w1; w++) {
        let x = bits[w]!;
        while (x) {
          const t = x & -x;
          x ^= t;
          f(at + 8 * (w * 32 + 31 - Math.clz32(t)), ri);
        }
      }
    }
  }
}
