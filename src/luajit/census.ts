// Census of one Lua VM's GC objects over a HeapImage: every object, its type and the exact
// size its free function passes to lj_mem_free, plus the memory gc.total counts that is not
// an object. Σ objects + Σ non-object == g->gc.total exactly when the heap is at rest.
// Upstream (luajit2 v2.1-20230119): lists from lj_gc.c gc_sweep / gc_sweepstr, lj_func.c,
// lj_udata.c; sizes from lj_str.h lj_str_size, lj_tab.c lj_tab_free, lj_state.c lj_state_free /
// close_state, lj_func.c, lj_udata.c, lj_cdata.c lj_cdata_free, lj_trace.c trace_free /
// lj_trace_freestate, lj_ctype.c lj_ctype_freestate, lib_buffer.c (string.buffer storage).
// Two passes: the lists are walked once to mark each object's address in an ObjectIndex (one
// bit per 8 bytes of the image; a bit set twice is an object on two lists), then the objects
// are typed and sized in address order (a sequential sweep over the image) into exactly sized
// parallel typed arrays (no per-object JS object); nothing read from the
// image is trusted: every object must lie inside the image, loops are bounded, and failures
// become problems (the census is then `partial`), never exceptions.

import type { HeapImage } from './image.js';
import type { LuajitLayouts } from './layouts.js';
import { GCT } from './state.js';
import { ObjectIndex } from './object-index.js';

export const TYPE_NAMES: Record<number, string> = {
  4: 'string',
  5: 'upvalue',
  6: 'thread',
  7: 'proto',
  8: 'function',
  9: 'trace',
  10: 'cdata',
  11: 'table',
  12: 'udata',
};
export const TYPE_ORDER = [4, 11, 8, 5, 6, 7, 10, 12, 9] as const;

export interface TypeTotal {
  type: string;
  count: number;
  bytes: number;
  maxBytes: number;
}
export interface NonObjectPart {
  what: string;
  bytes: number;
}

export interface GcHeader {
  total: number;
  threshold: number;
  state: number;
  currentWhite: number;
  strNum: number;
  strMask: number;
  strTab: number;
  root: number;
  mmudata: number;
  registry: number;
  mainThread: number;
  vmstate: number;
}

export interface LuaCensus {
  globalState: number;
  header: GcHeader;
  /** Parallel arrays, `count` entries in address order (= `index` numbers): address, gct, size (bytes), marked. */
  count: number;
  addr: Float64Array;
  gct: Uint8Array;
  size: Float64Array;
  marked: Uint8Array;
  index: ObjectIndex;
  /** Offset of `gct` in an object header. */
  gctOffset: number;
  types: TypeTotal[];
  nonObject: NonObjectPart[];
  objectBytes: number;
  nonObjectBytes: number;
  /** objectBytes + nonObjectBytes - gc.total: 0 when exact. */
  delta: number;
  problems: string[];
  /** J->trace[1..sizetrace) (trace objects by number, for trace links). */
  traces: number[];
  ctsFinalizer: number;
  ctsMiscmap: number;
  /** g->gc.lightudseg segment map (for lightuserdata keys). */
  lightudSegments: number[];
}

/** Bit 0 cleared (JS bit operators would truncate a 47-bit pointer to 32 bits). */
const clearBit0 = (v: number) => v - (v & 1);

/** TValue helpers (GC64): itype = hi >> 15 (arithmetic); GC objects have itype -5 (str) .. -13 (udata). */
export function tvGcPtr(img: HeapImage, at: number): number {
  const hi = img.i32(at + 4);
  const it = hi >> 15;
  if (it > -5 || it < -13) return 0;
  return (hi & 0x7fff) * 4294967296 + img.u32(at);
}

export interface CensusRelease {
  /**
   * Called once pass 2 is done with image region ri (objects are typed and sized in address
   * order, region by region): heap.ts releases the region's string-only pages there, so the
   * copy shrinks while the census arrays fill.
   */
  afterRegion?: (ri: number, index: ObjectIndex, strTab: number) => void;
  /** Release the string hash table's pages as pass 1 leaves them behind (nothing reads them later). */
  stringTable?: boolean;
}

export function luaCensus(
  img: HeapImage,
  L: LuajitLayouts,
  globalState: number,
  mainThread: number,
  release: CensusRelease = {},
): LuaCensus {
  const { afterRegion } = release;
  const s = L.structs;
  const G = s.global_State!,
    H = s.GChead!,
    T = s.lua_State!;
  const problems: string[] = [];
  const g = globalState;
  const header: GcHeader = {
    total: img.u64(g + G['gc.total']!),
    threshold: img.u64(g + G['gc.threshold']!),
    state: img.u8(g + G['gc.state']!),
    currentWhite: img.u8(g + G['gc.currentwhite']!),
    strNum: img.u32(g + G['str.num']!),
    strMask: img.u32(g + G['str.mask']!),
    strTab: img.u64(g + G['str.tab']!),
    root: img.u64(g + G['gc.root']!),
    mmudata: img.u64(g + G['gc.mmudata']!),
    registry: tvGcPtr(img, g + G.registrytv!),
    mainThread,
    vmstate: img.i32(g + G.vmstate!),
  };
  if (!img.has(g, G.sizeof!)) problems.push('global_State is not inside the copied heap regions');
  // Upper bound on objects: every object is at least 16 bytes of gc.total.
  const maxObjects = Math.floor(header.total / 16) + 64;
  const index = new ObjectIndex(img);
  let tooMany = false;
  const room = () => {
    if (index.count >= maxObjects) {
      if (!tooMany) problems.push(`more objects than gc.total allows (${maxObjects}): a list loops or the heap moved`);
      tooMany = true;
      return false;
    }
    return true;
  };
  // An object on two lists (or a list that loops) means a list was read torn.
  let twice = false;
  const add = (p: number): boolean => {
    if (index.add(p)) return true;
    if (!twice) problems.push(`object 0x${p.toString(16)} is on two lists`);
    twice = true;
    return false;
  };

  let stackBytesMain = 0;
  const threads: number[] = [];

  // Pass 1: the lists. 1. g->gc.root: every non-string object (the main thread is the GG-embedded one).
  for (let p = header.root; p && room(); p = img.u64(p)) {
    if (!img.has(p, 16) || p % 8) {
      problems.push(`root list leads outside the heap at 0x${p.toString(16)}`);
      break;
    }
    const t = img.u8(p + H.gct!);
    if (t < GCT.upval || t > GCT.udata || t === GCT.str) {
      problems.push(`root list object 0x${p.toString(16)} has type ${t}`);
      break;
    }
    if (t === GCT.thread) threads.push(p);
    if (p === mainThread) {
      stackBytesMain = 8 * img.u32(p + T.stacksize!);
      continue;
    }
    if (!add(p)) break;
  }
  // 2. string table chains (anchor bit 0 = secondary-hash flag).
  const tab = header.strTab,
    mask = header.strMask;
  let strings = 0;
  if (!img.has(tab, 8 * (mask + 1))) problems.push('string table is not inside the copied heap regions');
  else {
    let badChains = 0,
      firstBad = '';
    const GCT_OFF = H.gct!,
      STR = GCT.str,
      maxStrings = Math.min(header.strNum + 1024, maxObjects);
    // The hot loop (every string, random addresses): chains are walked BATCH at a time, one step
    // per round, so the header loads of different chains are independent and overlap in the CPU
    // (memory-level parallelism) instead of one cache miss after the other. Region by
    // directory, header straight from the region's DataView; released pages take the slow path.
    const BATCH = 512;
    const cur = new Float64Array(BATCH),
      curChain = new Int32Array(BATCH);
    const hot = img.hot();
    const { lo, granule, dir, starts, ends, u8s, dvs } = hot;
    const fastOk = !!dir && !hot.anyGone,
      nr = starts.length,
      dirLen = dir ? dir.length : 0;
    let nCur = 0,
      next = 0;
    walk: while ((next <= mask || nCur) && !tooMany) {
      for (; nCur < BATCH && next <= mask; next++) {
        const h = clearBit0(img.u64(tab + 8 * next));
        if (h) {
          cur[nCur] = h;
          curChain[nCur++] = next;
        }
        if (release.stringTable && (next & 0xfffff) === 0xfffff) img.releaseRange(tab, tab + 8 * (next + 1)); // every 8 MiB read
      }
      let m = 0;
      for (let j = 0; j < nCur; j++) {
        const p = cur[j]!;
        let ri = -1;
        if (fastOk) {
          const gi = Math.floor((p - lo) / granule);
          if (gi >= 0 && gi < dirLen)
            for (let k = dir![gi]!; k < nr; k++) {
              if (p < starts[k]!) break;
              if (p < ends[k]!) {
                ri = k;
                break;
              }
            }
        }
        let o = 0,
          ok: boolean;
        if (ri >= 0) {
          o = p - starts[ri]!;
          ok = p % 8 === 0 && p + 24 <= ends[ri]! && u8s[ri]![o + GCT_OFF] === STR;
        } else ok = img.has(p, 24) && img.u8(p + GCT_OFF) === STR;
        if (!ok) {
          if (!badChains++) firstBad = `string chain ${curChain[j]} leads to 0x${p.toString(16)}, not a string`;
          continue;
        }
        if (++strings > maxStrings) {
          problems.push(`the string table holds more strings than str.num (${header.strNum}) allows`);
          break walk;
        }
        if (ri >= 0 ? !index.addAt(ri, o) : !index.add(p)) {
          add(p);
          break walk;
        }
        if (index.count >= maxObjects && !room()) break walk;
        let q: number;
        if (ri >= 0) {
          const dv = dvs[ri]!;
          q = dv.getUint32(o + 4, true) * 4294967296 + dv.getUint32(o, true);
        } else q = img.u64(p);
        if (q) {
          cur[m] = q;
          curChain[m++] = curChain[j]!;
        }
      }
      nCur = m;
    }
    if (release.stringTable && !tooMany && next > mask) img.releaseRange(tab, tab + 8 * (mask + 1));
    if (badChains) problems.push(`${firstBad}${badChains > 1 ? ` (and ${badChains - 1} more malformed chains)` : ''}`);
  }
  if (strings !== header.strNum && !problems.length)
    problems.push(`${strings} strings in the table, str.num says ${header.strNum}`);
  // 3. open upvalues of every thread (not on the root list).
  for (const th of threads) {
    if (tooMany) break;
    let k = 0;
    for (let p = img.u64(th + T.openupval!); p; p = img.u64(p)) {
      if (!img.has(p, 48) || img.u8(p + H.gct!) !== GCT.upval || ++k > 1 << 20 || !room()) {
        problems.push(`open upvalue list of thread 0x${th.toString(16)} is malformed`);
        break;
      }
      if (!add(p)) break;
    }
  }
  // 4. g->gc.mmudata: circular list of udata / cdata awaiting __gc.
  if (header.mmudata && img.has(header.mmudata, 16) && !tooMany) {
    const last = header.mmudata;
    let k = 0;
    for (let p = img.u64(last); ; p = img.u64(p)) {
      if (!img.has(p, 16) || ++k > maxObjects || !room()) {
        problems.push('mmudata ring is malformed');
        break;
      }
      const t = img.u8(p + H.gct!);
      if (t !== GCT.udata && t !== GCT.cdata) {
        problems.push(`mmudata object 0x${p.toString(16)} has type ${t}`);
        break;
      }
      if (!add(p)) break;
      if (p === last) break;
    }
  }
  index.finish();

  // Pass 2: type, size and mark of every object, in address order.
  const n = index.count;
  const addr = new Float64Array(n),
    gct = new Uint8Array(n),
    size = new Float64Array(n),
    marked = new Uint8Array(n);
  const sz = objectSizer(img, L, g, problems);
  {
    const GCT_OFF = H.gct!,
      MARKED = H.marked!,
      LEN = s.GCstr!.len!,
      STR = GCT.str;
    // Address order: a sequential sweep of the bitmap and the image (strings inline, the rest by the sizer).
    const bits = index.bits;
    let i = 0;
    for (let ri = 0; ri < img.regions.length; ri++) {
      const r = img.storage(ri);
      const u8 = r.u8,
        dv = r.dv,
        len = r.end - r.start;
      const w0 = r.base / 256,
        w1 = Math.ceil((r.base + len) / 256);
      for (let w = w0; w < w1; w++) {
        let x = bits[w]!;
        while (x) {
          const t1 = x & -x;
          x ^= t1;
          const o = 8 * ((w - w0) * 32 + 31 - Math.clz32(t1)),
            p = r.start + o;
          const t = u8[o + GCT_OFF]!;
          addr[i] = p;
          gct[i] = t;
          marked[i] = u8[o + MARKED]!;
          size[i] = t === STR && o + 24 <= len ? 24 + ((dv.getUint32(o + LEN, true) + 4) & ~3) : Math.max(0, sz(p, t));
          i++;
        }
      }
      afterRegion?.(ri, index, header.strTab);
    }
  }

  // Non-object memory counted in gc.total.
  const nonObject: NonObjectPart[] = [];
  nonObject.push({ what: 'GG_State (global_State, main thread, JIT state, dispatch)', bytes: s.GG_State!.sizeof! });
  nonObject.push({ what: 'main thread stack', bytes: stackBytesMain });
  nonObject.push({ what: 'string hash table', bytes: 8 * (mask + 1) });
  nonObject.push({
    what: 'temporary buffer',
    bytes: Math.max(0, img.u64(g + G['tmpbuf.e']!) - img.u64(g + G['tmpbuf.b']!)),
  });
  const J = mainThread - s.GG_State!.L! + s.GG_State!.J!,
    JS = s.jit_State!;
  const sizetrace = img.u32(J + JS.sizetrace!);
  nonObject.push({
    what: 'JIT compiler buffers',
    bytes:
      8 * sizetrace +
      12 * img.u32(J + JS.sizesnap!) +
      4 * img.u32(J + JS.sizesnapmap!) +
      8 * (img.u32(J + JS.irtoplim!) - img.u32(J + JS.irbotlim!)),
  });
  const cts = img.u64(g + G.ctype_state!);
  let ctsFinalizer = 0,
    ctsMiscmap = 0;
  if (cts) {
    const C = s.CTState!;
    nonObject.push({
      what: 'FFI type state',
      bytes: C.sizeof! + s.CType!.sizeof! * img.u32(cts + C.sizetab!) + 2 * img.u32(cts + C['cb.sizeid']!),
    });
    ctsFinalizer = img.u64(cts + C.finalizer!);
    ctsMiscmap = img.u64(cts + C.miscmap!);
  }
  const segmap = img.u64(g + G['gc.lightudseg']!);
  const lightudSegments: number[] = [];
  if (segmap) {
    const num = img.u8(g + G['gc.lightudnum']!);
    const cap2 = num ? 2 << (31 - Math.clz32(num)) : 2;
    nonObject.push({ what: 'lightuserdata segment map', bytes: 4 * cap2 });
    for (let i = 0; i <= num; i++) lightudSegments.push(img.u32(segmap + 4 * i));
  }
  nonObject.push({ what: 'string.buffer storage', bytes: sz.bufferBytes() });
  const traces: number[] = [];
  const tr = img.u64(J + JS.trace!);
  for (let i = 0; i < sizetrace && i < 65536; i++) traces.push(i === 0 ? 0 : img.u64(tr + 8 * i));

  // Per-type totals.
  const byType = new Map<number, TypeTotal>();
  for (const t of TYPE_ORDER) byType.set(t, { type: TYPE_NAMES[t]!, count: 0, bytes: 0, maxBytes: 0 });
  let objectBytes = 0;
  for (let i = 0; i < n; i++) {
    const tt = byType.get(gct[i]!)!;
    const b = size[i]!;
    tt.count++;
    tt.bytes += b;
    if (b > tt.maxBytes) tt.maxBytes = b;
    objectBytes += b;
  }
  let nonObjectBytes = 0;
  for (const x of nonObject) nonObjectBytes += x.bytes;
  const delta = objectBytes + nonObjectBytes - header.total;
  if (delta !== 0)
    problems.push(
      `census total ${objectBytes + nonObjectBytes} != gc.total ${header.total} (${delta > 0 ? '+' : ''}${delta} bytes)`,
    );
  return {
    globalState: g,
    header,
    count: n,
    addr,
    gct,
    size,
    marked,
    index,
    gctOffset: H.gct!,
    types: [...byType.values()],
    nonObject,
    objectBytes,
    nonObjectBytes,
    delta,
    problems,
    traces,
    ctsFinalizer,
    ctsMiscmap,
    lightudSegments,
  };
}

/** The size function of one VM: bytes an object's free function releases (-1 when malformed). */
function objectSizer(
  img: HeapImage,
  L: LuajitLayouts,
  g: number,
  problems: string[],
): ((p: number, t: number) => number) & { bufferBytes: () => number } {
  const s = L.structs;
  const TB = s.GCtab!,
    T = s.lua_State!,
    F = s.GCfuncL!,
    PR = s.GCproto!,
    U = s.GCudata!,
    CD = s.GCcdata!,
    CV = s.GCcdataVar!,
    TR = s.GCtrace!,
    SB = s.SBufExt!;
  const K = s.constants!;
  const cts = img.u64(g + s.global_State!.ctype_state!);
  const ctab = cts ? img.u64(cts + s.CTState!.tab!) : 0,
    csize = cts ? img.u32(cts + s.CTState!.sizetab!) : 0;
  const CT = s.CType!;
  let buffers = 0;
  const f = (p: number, t: number): number => {
    switch (t) {
      case GCT.tab: {
        const colo = img.i8(p + TB.colo!),
          hmask = img.u32(p + TB.hmask!),
          asize = img.u32(p + TB.asize!);
        return (
          (colo ? TB.sizeof! + 8 * (colo & 0x7f) : TB.sizeof!) +
          (hmask ? s.Node!.sizeof! * (hmask + 1) : 0) +
          (asize && colo <= 0 ? 8 * asize : 0)
        );
      }
      case GCT.func: {
        const nup = img.u8(p + F.nupvalues!);
        return img.u8(p + F.ffid!) === 0 ? F.uvptr! + 8 * nup : s.GCfuncC!.upvalue! + 8 * nup;
      }
      case GCT.upval:
        return s.GCupval!.sizeof!;
      case GCT.thread:
        return T.sizeof! + 8 * img.u32(p + T.stacksize!);
      case GCT.proto:
        return img.u32(p + PR.sizept!);
      case GCT.udata: {
        const len = img.u32(p + U.len!);
        if (img.u8(p + U.udtype!) === K.UDTYPE_BUFFER) {
          const sb = p + U.sizeof!;
          const flags = img.u64(sb + SB.L!) & 7;
          if (!(flags & (K.SBUF_FLAG_COW! | K.SBUF_FLAG_BORROW!)))
            buffers += Math.max(0, img.u64(sb + SB.e!) - img.u64(sb + SB.b!));
        }
        return U.sizeof! + len;
      }
      case GCT.cdata: {
        if (img.u8(p + s.GChead!.marked!) & 0x80) {
          const v = p - CV.sizeof!;
          return img.u32(v + CV.len!) + img.u16(v + CV.extra!);
        }
        let id = img.u16(p + CD.ctypeid!);
        for (let k = 0; k < 64; k++) {
          if (id >= csize) {
            problems.push(`cdata 0x${p.toString(16)} has ctype ${id} beyond the ctype table (${csize})`);
            return CD.sizeof! + 8;
          }
          const info = img.u32(ctab + CT.sizeof! * id + CT.info!);
          if (info >>> 28 === 8) {
            id = info & 0xffff;
            continue;
          } // CT_ATTRIB: follow the child
          return CD.sizeof! + (info >>> 28 <= 5 ? img.u32(ctab + CT.sizeof! * id + CT.size!) : 8); // ctype_hassize : CTSIZE_PTR
        }
        return CD.sizeof! + 8;
      }
      case GCT.trace:
        return (
          ((TR.sizeof! + 7) & ~7) +
          8 * (img.u32(p + TR.nins!) - img.u32(p + TR.nk!)) +
          12 * img.u16(p + TR.nsnap!) +
          4 * img.u32(p + TR.nsnapmap!)
        );
      default:
        return -1;
    }
  };
  return Object.assign(f, { bufferBytes: () => buffers });
}
