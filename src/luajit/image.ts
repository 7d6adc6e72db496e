// A copy of a LuaJIT heap's memory regions (lj_alloc segments and direct chunks), read once
// from the target and then walked in leakscope's memory. Every GC object lives in these
// regions (GG_State, the main thread, the string table and big arrays included), so a walk
// over the copy never reads the target again: on a running worker the copy is the one
// moment whose consistency has to be proved (snapshot.ts). Accessors return 0 / NaN-free
// numbers only for addresses inside a region: callers check `has` first, and an address
// outside every region is a validation failure of the object that pointed there.

import type { AddressSpace } from '../target/address-space.js';

export interface ImageRegion {
  start: number;
  end: number;
  buf: Buffer;
  kind: 'segment' | 'direct';
}

/** Read window: large enough to amortise a pread, small enough not to double peak memory. */
const READ_WINDOW = 8 << 20;

export class HeapImage {
  readonly regions: ImageRegion[];
  /** Bytes that could not be read from the target (left as zeros). */
  unreadableBytes = 0;
  private last: ImageRegion | undefined;

  constructor(regions: ImageRegion[]) {
    this.regions = [...regions].sort((a, b) => a.start - b.start);
  }

  /** Copies [start, end) ranges from the target. Unreadable parts are zero-filled and counted. */
  static copy(
    space: AddressSpace,
    ranges: ReadonlyArray<{ start: number; end: number; kind: ImageRegion['kind'] }>,
  ): HeapImage {
    const regions: ImageRegion[] = [];
    let unreadable = 0;
    for (const r of ranges) {
      const len = r.end - r.start;
      const buf = Buffer.alloc(len);
      for (let off = 0; off < len; off += READ_WINDOW) {
        const n = Math.min(READ_WINDOW, len - off);
        const got = space.readInto(r.start + off, buf, off, n);
        if (got < n) unreadable += n - got;
      }
      regions.push({ start: r.start, end: r.end, buf, kind: r.kind });
    }
    const img = new HeapImage(regions);
    img.unreadableBytes = unreadable;
    return img;
  }

  get bytes(): number {
    let n = 0;
    for (const r of this.regions) n += r.end - r.start;
    return n;
  }

  /** The region holding [addr, addr+len), or undefined. */
  region(addr: number, len: number): ImageRegion | undefined {
    const l = this.last;
    if (l && addr >= l.start && addr + len <= l.end) return l;
    const rs = this.regions;
    let lo = 0,
      hi = rs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = rs[mid]!;
      if (addr < r.start) hi = mid - 1;
      else if (addr >= r.end) lo = mid + 1;
      else {
        if (addr + len > r.end) return undefined;
        this.last = r;
        return r;
      }
    }
    return undefined;
  }

  has(addr: number, len: number): boolean {
    return this.region(addr, len) !== undefined;
  }

  u8(addr: number): number {
    const r = this.region(addr, 1);
    return r ? r.buf[addr - r.start]! : 0;
  }
  i8(addr: number): number {
    const r = this.region(addr, 1);
    return r ? r.buf.readInt8(addr - r.start) : 0;
  }
  u16(addr: number): number {
    const r = this.region(addr, 2);
    return r ? r.buf.readUInt16LE(addr - r.start) : 0;
  }
  u32(addr: number): number {
    const r = this.region(addr, 4);
    return r ? r.buf.readUInt32LE(addr - r.start) : 0;
  }
  i32(addr: number): number {
    const r = this.region(addr, 4);
    return r ? r.buf.readInt32LE(addr - r.start) : 0;
  }
  /** A u64 as a number (exact below 2^53; LuaJIT pointers are below 2^47). */
  u64(addr: number): number {
    const r = this.region(addr, 8);
    if (!r) return 0;
    const o = addr - r.start;
    return r.buf.readUInt32LE(o + 4) * 4294967296 + r.buf.readUInt32LE(o);
  }
  /** Bytes [addr, addr+len) (a view, not a copy), or undefined. */
  slice(addr: number, len: number): Buffer | undefined {
    const r = this.region(addr, len);
    return r ? r.buf.subarray(addr - r.start, addr - r.start + len) : undefined;
  }
}
