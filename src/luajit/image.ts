// A copy of a LuaJIT heap's memory regions (lj_alloc segments and direct chunks), read once
// from the target and then walked in leakscope's memory. Every GC object lives in these
// regions (GG_State, the main thread, the string table and big arrays included), so a walk
// over the copy never reads the target again: on a running worker the copy is the one
// moment whose consistency has to be proved (heap.ts). Accessors return 0 for addresses
// outside the copy: callers check `has` first, and an address outside every region is a
// validation failure of the object that pointed there.
// Storage: one private anonymous mapping per region (target/anon-memory.ts), so pages whose
// bytes are no longer needed (string bodies once the census has sized them) can be handed
// back to the kernel (`releasePages`); `has` is false on them afterwards. `dispose` unmaps
// (luaHeaps does it unless the image is kept; a FinalizationRegistry unmaps a kept image once
// it is garbage). No view of the mappings leaves this class: `slice` returns copies.
// Each region also has `base`, its offset in one linear space of all regions (256-byte
// aligned): object-index.ts keeps one bit per 8 bytes of that space.

import type { AddressSpace } from '../target/address-space.js';
import { AnonMemory } from '../target/anon-memory.js';

export const PAGE = 4096;
/** Region lookup granule (1 MiB) and the most granules a directory may have (else binary search). */
const GRANULE = 1 << 20,
  MAX_GRANULES = 1 << 22;
/** Read window: large enough to amortise a pread. */
const READ_WINDOW = 8 << 20;

export interface ImageRegion {
  start: number;
  end: number;
  kind: 'segment' | 'direct';
  /** Offset of `start` in the linear space of all regions (multiple of 256). */
  base: number;
}

interface Storage {
  mem: AnonMemory;
  u8: Uint8Array;
  dv: DataView;
  /** Per page: 1 when released (undefined while nothing is). */
  gone?: Uint8Array;
}
type Region = ImageRegion & Storage;

const EMPTY = new Uint8Array(0);
const unmapLater = new FinalizationRegistry<AnonMemory[]>((mems) => {
  for (const m of mems) m.free();
});

export class HeapImage {
  readonly regions: readonly ImageRegion[];
  /** Bytes that could not be read from the target (left as zeros). */
  unreadableBytes = 0;
  /** Bytes handed back by `releasePages`. */
  releasedBytes = 0;
  /** Size of the linear space (Σ region sizes rounded up to 256). */
  readonly linearBytes: number;
  /** Σ region sizes. */
  readonly bytes: number;
  private readonly rs: Region[];
  private last: Region | undefined;
  private readonly token = {};
  /** Region lookup by 1 MiB granule of [lo, hi): index of the first region that ends above the granule. */
  private dir: Int32Array | undefined;
  private lo = 0;

  private constructor(regions: Array<Omit<Region, 'base'>>) {
    let base = 0,
      bytes = 0;
    this.rs = [...regions]
      .sort((a, b) => a.start - b.start)
      .map((r) => {
        const out = { ...r, base };
        base += Math.ceil((r.end - r.start) / 256) * 256;
        bytes += r.end - r.start;
        return out;
      });
    this.regions = this.rs;
    this.linearBytes = base;
    this.bytes = bytes;
    const rs = this.rs;
    if (rs.length) {
      this.lo = Math.floor(rs[0]!.start / GRANULE) * GRANULE;
      const n = Math.ceil((rs[rs.length - 1]!.end - this.lo) / GRANULE);
      if (n <= MAX_GRANULES) {
        const dir = new Int32Array(n);
        let i = 0;
        for (let g = 0; g < n; g++) {
          while (rs[i]!.end <= this.lo + g * GRANULE) i++;
          dir[g] = i;
        }
        this.dir = dir;
      }
    }
    unmapLater.register(
      this,
      this.rs.map((r) => r.mem),
      this.token,
    );
  }

  /** Copies [start, end) ranges from the target. Unreadable parts are zero-filled and counted. */
  static copy(
    space: AddressSpace,
    ranges: ReadonlyArray<{ start: number; end: number; kind: ImageRegion['kind'] }>,
  ): HeapImage {
    const regions: Array<Omit<Region, 'base'>> = [];
    let unreadable = 0;
    try {
      for (const r of ranges) {
        const len = r.end - r.start;
        const mem = new AnonMemory(len);
        const u8 = new Uint8Array(mem.buffer, 0, len);
        regions.push({ start: r.start, end: r.end, kind: r.kind, mem, u8, dv: new DataView(mem.buffer, 0, len) });
        const buf = Buffer.from(mem.buffer, 0, len);
        for (let off = 0; off < len; off += READ_WINDOW) {
          const n = Math.min(READ_WINDOW, len - off);
          const got = space.readInto(r.start + off, buf, off, n);
          if (got < n) unreadable += n - got;
        }
      }
    } catch (e) {
      for (const r of regions) r.mem.free();
      throw e;
    }
    const img = new HeapImage(regions);
    img.unreadableBytes = unreadable;
    return img;
  }

  /** Unmaps the copy (idempotent); every read afterwards sees nothing. */
  dispose(): void {
    unmapLater.unregister(this.token);
    this.last = undefined;
    for (const r of this.rs) {
      r.u8 = EMPTY;
      r.dv = new DataView(EMPTY.buffer);
      r.end = r.start;
      r.mem.free();
    }
  }

  /** The region holding [addr, addr+len) with none of its pages released, or undefined. */
  private region(addr: number, len: number): Region | undefined {
    let r = this.last;
    if (!(r && addr >= r.start && addr + len <= r.end)) {
      r = this.findRegion(addr);
      if (!r || addr + len > r.end) return undefined;
      this.last = r;
    }
    const gone = r.gone;
    if (gone) {
      const o = addr - r.start;
      const p1 = Math.floor((o + Math.max(len, 1) - 1) / PAGE);
      for (let p = Math.floor(o / PAGE); p <= p1; p++) if (gone[p]) return undefined;
    }
    return r;
  }

  /** Index of the region whose range contains addr, or -1. */
  regionIndex(addr: number): number {
    const rs = this.rs,
      dir = this.dir;
    if (dir) {
      const g = Math.floor((addr - this.lo) / GRANULE);
      if (!(g >= 0 && g < dir.length)) return -1;
      for (let i = dir[g]!; i < rs.length; i++) {
        const r = rs[i]!;
        if (addr < r.start) return -1;
        if (addr < r.end) return i;
      }
      return -1;
    }
    let lo = 0,
      hi = rs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = rs[mid]!;
      if (addr < r.start) hi = mid - 1;
      else if (addr >= r.end) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /**
   * Flat tables for hot loops that resolve addresses themselves: region i is
   * [starts[i], ends[i]) with bytes u8s[i] / dvs[i]; for an address a with
   * g = floor((a - lo) / granule) in [0, dir.length), the region holding a (if any) is the first
   * i >= dir[g] with a < ends[i] (and starts[i] <= a). `dir` is undefined when the regions span
   * too much address space (use regionIndex). `anyGone`: some page was released (then use has()).
   */
  hot(): {
    lo: number;
    granule: number;
    dir: Int32Array | undefined;
    starts: Float64Array;
    ends: Float64Array;
    u8s: Uint8Array[];
    dvs: DataView[];
    anyGone: boolean;
  } {
    const rs = this.rs;
    return {
      lo: this.lo,
      granule: GRANULE,
      dir: this.dir,
      starts: Float64Array.from(rs, (r) => r.start),
      ends: Float64Array.from(rs, (r) => r.end),
      u8s: rs.map((r) => r.u8),
      dvs: rs.map((r) => r.dv),
      anyGone: rs.some((r) => !!r.gone),
    };
  }

  /** Storage of region ri for hot loops: its start, bytes and DataView; `gone` pages must be checked by the caller (see `intact`). */
  storage(ri: number): { start: number; end: number; base: number; u8: Uint8Array; dv: DataView; gone?: Uint8Array } {
    return this.rs[ri]!;
  }

  private findRegion(addr: number): Region | undefined {
    const i = this.regionIndex(addr);
    return i < 0 ? undefined : this.rs[i];
  }

  /** The region whose range contains addr (released pages or not), or undefined. */
  find(addr: number): ImageRegion | undefined {
    return this.findRegion(addr);
  }

  has(addr: number, len: number): boolean {
    return this.region(addr, len) !== undefined;
  }

  /** True when addr is inside a region but its page was released. */
  released(addr: number): boolean {
    const r = this.findRegion(addr);
    return !!r && !!r.gone?.[Math.floor((addr - r.start) / PAGE)];
  }

  u8(addr: number): number {
    const r = this.region(addr, 1);
    return r ? r.u8[addr - r.start]! : 0;
  }
  i8(addr: number): number {
    const r = this.region(addr, 1);
    return r ? r.dv.getInt8(addr - r.start) : 0;
  }
  u16(addr: number): number {
    const r = this.region(addr, 2);
    return r ? r.dv.getUint16(addr - r.start, true) : 0;
  }
  u32(addr: number): number {
    const r = this.region(addr, 4);
    return r ? r.dv.getUint32(addr - r.start, true) : 0;
  }
  i32(addr: number): number {
    const r = this.region(addr, 4);
    return r ? r.dv.getInt32(addr - r.start, true) : 0;
  }
  /** A u64 as a number (exact below 2^53; LuaJIT pointers are below 2^47). */
  u64(addr: number): number {
    const r = this.region(addr, 8);
    if (!r) return 0;
    const o = addr - r.start;
    return r.dv.getUint32(o + 4, true) * 4294967296 + r.dv.getUint32(o, true);
  }
  /** Bytes [addr, addr+len) (a copy), or undefined. */
  slice(addr: number, len: number): Buffer | undefined {
    const r = this.region(addr, len);
    return r ? Buffer.from(r.u8.subarray(addr - r.start, addr - r.start + len)) : undefined;
  }

  /** Releases the whole pages inside [from, to) (one region's range; memory the caller no longer reads). */
  releaseRange(from: number, to: number): number {
    const ri = this.regionIndex(from);
    if (ri < 0) return 0;
    const r = this.rs[ri]!;
    const a = Math.ceil((from - r.start) / PAGE),
      b = Math.floor((Math.min(to, r.end) - r.start) / PAGE);
    if (b <= a) return 0;
    const need = new Uint8Array(Math.ceil((r.end - r.start) / PAGE)).fill(1);
    need.fill(0, a, b);
    return this.releasePages(ri, need);
  }

  /**
   * Hands back the pages of region `ri` (index into `regions`) whose need[page] is 0: their
   * memory goes back to the kernel and `has` is false on them. Returns the bytes released.
   */
  releasePages(ri: number, need: Uint8Array): number {
    const r = this.rs[ri]!;
    const pages = Math.ceil((r.end - r.start) / PAGE);
    let n = 0;
    for (let p = 0; p < pages; ) {
      if (need[p] || r.gone?.[p]) {
        p++;
        continue;
      }
      let q = p;
      while (q < pages && !need[q] && !r.gone?.[q]) q++;
      r.gone ??= new Uint8Array(pages);
      r.gone.fill(1, p, q);
      n += r.mem.discard(p * PAGE, (q - p) * PAGE);
      p = q;
    }
    this.releasedBytes += n;
    return n;
  }
}
