// One snapshot of a process's Lua heaps: locate every VM (state.ts), find lj_alloc's regions
// (alloc.ts), copy them (image.ts) while proving the copy consistent, then census, reach and
// rank tables over the copy. The consistency of a live copy (shared/reference/luajit.md §8):
//   quiescent: every thread stayed blocked with unchanged CPU time / switches across the copy;
//   sweep-free: gc.state in {pause, propagate} before and after with the same currentwhite,
//     threshold and string table (nothing was freed, lists only grew);
//   exact: the census of the copy sums to its own gc.total and no list was malformed.
// A result is `partial` (with the reasons in problems) unless it is exact and quiescent or
// sweep-free; a core file is at rest by construction.

import type { AddressSpace } from '../target/address-space.js';
import { sampleActivity, stayedIdle } from '../target/thread-activity.js';
import { freezeInEventWait } from '../target/freeze.js';
import type { Frozen } from '../target/freeze.js';
import type { Symbolizer } from '../symbols/index.js';
import { HeapImage, PAGE } from './image.js';
import { findDirectChunks, readSegments, walkSegment } from './alloc.js';
import type { AllocSegment, DirectChunk } from './alloc.js';
import { locateVms, GCT, GC_STATES } from './state.js';
import type { ValidatedVm } from './state.js';
import { luaCensus } from './census.js';
import type { LuaCensus, NonObjectPart, TypeTotal } from './census.js';
import { reachability } from './reach.js';
import type { Reach } from './reach.js';
import { objectPath } from './paths.js';
import type { PathContext } from './paths.js';
import { LeakscopeError } from '../model/errors.js';

export interface LuaTable {
  path: string;
  address: number;
  shallowBytes: number;
  payloadBytes: number;
  retainedBytes: number;
  arraySize: number;
  hashSize: number;
  /**
   * Position in g->gc.root at this read, 0 = the newest object. LuaJIT prepends every new
   * object to that list (lj_gc.h lj_mem_newgco) and the sweep only unlinks dead ones, so two
   * live tables keep their order for life: compare.ts uses it to tell a new table at a reused
   * address from the same table. Absent when unknown (a saved document); not in the JSON.
   */
  gcOrder?: number;
}

export interface LuaVm {
  globalState: number;
  mainThread: number;
  foundBy: string[];
  layouts: string;
  gcTotal: number;
  gcState: string;
  gcThreshold: number;
  types: TypeTotal[];
  nonObject: NonObjectPart[];
  objectBytes: number;
  nonObjectBytes: number;
  /** census total - gc.total (0 when exact). */
  delta: number;
  tables: LuaTable[];
  reachedObjects: number;
  pendingGarbage: { count: number; bytes: number };
  alloc: { segments: AllocSegment[]; usedBytes: number; freeBytes: number };
  partial: boolean;
  problems: string[];
  /** Kept for growth comparison and call paths; not serialised. */
  census?: LuaCensus;
  reach?: Reach;
  pathContext?: PathContext;
}

export interface LuaHeaps {
  target: string;
  pid: number;
  library?: string;
  libraryBuildId?: string;
  vms: LuaVm[];
  directChunks: DirectChunk[];
  /** Bytes of every lj_alloc region (segments + direct chunks) and their resident part. */
  regionBytes: number;
  copySeconds: number;
  /** --freeze: how long the thread was stopped (s), or undefined. */
  frozenSeconds?: number;
  consistency: { quiescent: boolean; sweepFree: boolean; detail: string };
  problems: string[];
}

export interface LuaHeapOptions {
  symbolizer: Symbolizer;
  /** Full scan for states too (finds VMs of any allocator). */
  scan?: boolean;
  /** How many tables to list per VM (largest own bytes first). */
  tables?: number;
  /** Compute reachability, paths and table sizes (default true). */
  paths?: boolean;
  /** Keep census / reach / image for later use (growth). */
  keep?: boolean;
  /** Stop the main thread (PTRACE_SEIZE + INTERRUPT, only while it waits for events) from finding the regions to the end of the copy. */
  freeze?: boolean;
  /** Live copies tried until one is consistent (default 3). */
  attempts?: number;
}

/** How long a live copy waits for the collector to leave its sweep phases (ms). */
const SWEEP_WAIT_MS = 1000;

interface GcMark {
  state: number;
  white: number;
  threshold: number;
  strTab: number;
  strMask: number;
  total: number;
}

function gcMark(space: AddressSpace, vm: ValidatedVm): GcMark | undefined {
  const G = vm.layouts.structs.global_State!;
  try {
    const b = space.read(vm.globalState, G.sizeof!);
    const q = (o: number) => b.readUInt32LE(o + 4) * 4294967296 + b.readUInt32LE(o);
    return {
      state: b[G['gc.state']!]!,
      white: b[G['gc.currentwhite']!]!,
      threshold: q(G['gc.threshold']!),
      strTab: q(G['str.tab']!),
      strMask: b.readUInt32LE(G['str.mask']!),
      total: q(G['gc.total']!),
    };
  } catch {
    return undefined;
  }
}

function sweepFree(a: GcMark | undefined, b: GcMark | undefined): boolean {
  return (
    !!a &&
    !!b &&
    a.state <= 1 &&
    b.state <= 1 &&
    a.white === b.white &&
    a.threshold === b.threshold &&
    a.strTab === b.strTab &&
    a.strMask === b.strMask
  );
}

/**
 * Snapshot of every Lua heap of the target. A live copy that cannot be proved consistent is
 * retried (`attempts`, default 3, a few ms apart) before a partial result is returned.
 */
export function luaHeaps(space: AddressSpace, opts: LuaHeapOptions): LuaHeaps {
  const attempts = space.kind === 'live' && !opts.freeze ? Math.max(1, opts.attempts ?? 3) : 1;
  let r = luaHeapsOnce(space, opts);
  for (let a = 1; a < attempts && r.vms.some((v) => v.partial); a++) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    r = luaHeapsOnce(space, opts);
  }
  return r;
}

function luaHeapsOnce(space: AddressSpace, opts: LuaHeapOptions): LuaHeaps {
  const problems: string[] = [];
  space.mappings({ refresh: true });
  const loc = locateVms(space, opts.symbolizer, { scan: opts.scan, scanIfNone: false });
  problems.push(...loc.problems);
  let frozen: Frozen | undefined;
  if (opts.freeze && loc.vms.length) {
    if (space.kind !== 'live') throw new LeakscopeError('usage', '--freeze applies to a live process only');
    frozen = freezeInEventWait(space.pid);
    space.mappings({ refresh: true });
  }
  const tf = process.hrtime.bigint();
  try {
    const segsByVm = new Map<number, AllocSegment[]>();
    const allSegs: AllocSegment[] = [];
    for (const vm of loc.vms) {
      const allocd = space.readU64(vm.globalState + vm.layouts.structs.global_State!.allocd!);
      let vp: string[] = [];
      let segs = readSegments(space, vm.layouts, allocd, vp);
      if (vp.length) {
        // the heap may have grown since the mappings were read
        space.mappings({ refresh: true });
        vp = [];
        segs = readSegments(space, vm.layouts, allocd, vp);
      }
      problems.push(...vp.map((p) => `VM 0x${vm.globalState.toString(16)}: ${p}`));
      segsByVm.set(vm.globalState, segs);
      allSegs.push(...segs);
    }
    const direct = loc.vms.length ? findDirectChunks(space, allSegs) : [];
    // Copy, bracketed by the consistency samples; on a running process, not while a GC sweep
    // frees objects (wait up to SWEEP_WAIT_MS for the collector to leave the sweep phases).
    if (space.kind === 'live' && !frozen) {
      const until = Date.now() + SWEEP_WAIT_MS;
      while (Date.now() < until && loc.vms.some((vm) => (gcMark(space, vm)?.state ?? 0) > 1))
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
    const before = sampleActivity(space);
    const marksBefore = loc.vms.map((vm) => gcMark(space, vm));
    const t0 = process.hrtime.bigint();
    // Copy order on a running process: the regions holding each global_State first, then those
    // holding its string table, then the rest. Objects on g's lists at the moment g is copied
    // exist before any later region is copied and are not freed unless a sweep runs, so a copy
    // torn by new allocations misses new objects (a census delta) instead of reading stale memory.
    const first = [...loc.vms.map((vm) => vm.globalState), ...marksBefore.map((m) => m?.strTab ?? 0)];
    const rank = (r: { start: number; end: number }) => {
      const i = first.findIndex((a) => a >= r.start && a < r.end);
      return i < 0 ? first.length : i;
    };
    const ranges = [
      ...allSegs.map((s) => ({ start: s.start, end: s.end, kind: 'segment' as const })),
      ...direct.map((d) => ({ start: d.start, end: d.end, kind: 'direct' as const })),
    ];
    ranges.sort((a, b) => rank(a) - rank(b));
    const img = HeapImage.copy(space, ranges);
    const copySeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const marksAfter = loc.vms.map((vm) => gcMark(space, vm));
    const after = sampleActivity(space);
    frozen?.release();
    const frozenSeconds = frozen ? Number(process.hrtime.bigint() - tf) / 1e9 : undefined;
    const idle =
      space.kind === 'core'
        ? { idle: true, why: 'core file' }
        : frozen
          ? {
              idle: true,
              why: `main thread stopped in system call ${frozen.syscall} (event wait) for ${frozenSeconds!.toFixed(3)} s (--freeze)`,
            }
          : stayedIdle(before, after);
    const allSweepFree = loc.vms.every((_, i) => sweepFree(marksBefore[i], marksAfter[i]));
    if (img.unreadableBytes) problems.push(`${img.unreadableBytes} bytes of the heap regions were unreadable`);

    // Census and chunk walk of every VM first; then (for reachability and paths) the pages of
    // the copy that hold nothing but strings, free chunks and string tables are released.
    const release = opts.paths !== false;
    const censuses = loc.vms.map((vm) => {
      const segs = segsByVm.get(vm.globalState) ?? [];
      const ms = vm.layouts.structs.malloc_state!;
      const mstate = img.u64(vm.globalState + vm.layouts.structs.global_State!.allocd!);
      const top = img.u64(mstate + ms.top!),
        topsize = img.u64(mstate + ms.topsize!);
      const gctOff = vm.layouts.structs.GChead!.gct!;
      // segments that are exactly one image region, by region index
      const segOfRegion = new Map<number, AllocSegment>();
      for (const s of segs) {
        const ri = img.regionIndex(s.start);
        if (ri >= 0 && img.regions[ri]!.start === s.start && img.regions[ri]!.end === s.end) segOfRegion.set(ri, s);
      }
      const walked = new Set<AllocSegment>();
      const c = luaCensus(
        img,
        vm.layouts,
        vm.globalState,
        vm.mainThread,
        release
          ? {
              stringTable: true,
              afterRegion: (ri, index, strTab) => {
                const s = segOfRegion.get(ri);
                if (!s) return;
                releaseSegmentStrings(
                  img,
                  ri,
                  s,
                  top,
                  topsize,
                  (user) => user === strTab || (index.has(user) && img.u8(user + gctOff) === GCT.str),
                );
                walked.add(s);
              },
            }
          : {},
      );
      for (const s of segs) if (!walked.has(s)) walkSegment(img, s, top, topsize);
      return c;
    });
    if (release) releaseDirectStrings(img, censuses);

    const vms: LuaVm[] = [];
    for (let v = 0; v < loc.vms.length; v++) {
      const vm = loc.vms[v]!;
      const c = censuses[v]!;
      const segs = segsByVm.get(vm.globalState) ?? [];
      const vp = [...c.problems];
      let reach: Reach | undefined,
        tables: LuaTable[] = [],
        ctx: PathContext | undefined;
      if (opts.paths !== false) {
        reach = reachability(img, vm.layouts, c);
        ctx = {
          img,
          layouts: vm.layouts,
          census: c,
          reach,
          symbolize: (a) => dataSymbol(opts.symbolizer, a),
          space,
        };
        tables = topTables(ctx, opts.tables ?? 20);
      }
      const quiet = idle.idle || sweepFree(marksBefore[v], marksAfter[v]);
      if (!quiet)
        vp.push(
          `heap copied while the process ran (${idle.why}) and the GC may have freed objects meanwhile (gc.state ${GC_STATES[marksBefore[v]?.state ?? 0]} -> ${GC_STATES[marksAfter[v]?.state ?? 0]}); use --freeze for an exact result`,
        );
      vms.push({
        globalState: vm.globalState,
        mainThread: vm.mainThread,
        foundBy: vm.foundBy,
        layouts: `${vm.layouts.source} (${vm.layouts.origin})`,
        gcTotal: c.header.total,
        gcState: GC_STATES[c.header.state] ?? String(c.header.state),
        gcThreshold: c.header.threshold,
        types: c.types,
        nonObject: c.nonObject,
        objectBytes: c.objectBytes,
        nonObjectBytes: c.nonObjectBytes,
        delta: c.delta,
        tables,
        reachedObjects: reach?.reached ?? 0,
        pendingGarbage: reach?.pendingGarbage ?? { count: 0, bytes: 0 },
        alloc: {
          segments: segs,
          usedBytes: segs.reduce((a, s) => a + (s.usedBytes ?? 0), 0),
          freeBytes: segs.reduce((a, s) => a + (s.freeBytes ?? 0), 0),
        },
        partial: vp.length > 0,
        problems: vp,
        ...(opts.keep ? { census: c, reach, pathContext: ctx } : {}),
      });
    }
    if (!opts.keep) img.dispose(); // unmapped now rather than at some later GC
    return {
      target: space.description,
      pid: space.pid,
      library: loc.library?.path,
      libraryBuildId: loc.library?.buildId,
      vms,
      directChunks: direct,
      regionBytes: img.bytes,
      copySeconds,
      frozenSeconds,
      consistency: {
        quiescent: idle.idle,
        sweepFree: allSweepFree,
        detail: idle.idle
          ? idle.why
          : `${idle.why}; ${allSweepFree ? 'no sweep phase during the copy' : 'a sweep phase may have run during the copy'}`,
      },
      problems,
    };
  } finally {
    frozen?.release();
  }
}

/**
 * Chunk walk of segment s (image region ri) that releases the pages in which every in-use chunk
 * is `droppable` (a census string or the string hash table) or free: reachability never reads
 * string bodies, and paths re-read the few key strings they print from the target (paths.ts).
 * Pages the walk did not account for (after a malformed header) are kept.
 */
function releaseSegmentStrings(
  img: HeapImage,
  ri: number,
  s: AllocSegment,
  top: number,
  topsize: number,
  droppable: (user: number) => boolean,
): void {
  const need = new Uint8Array(Math.ceil((s.end - s.start) / PAGE));
  const mark = (from: number, to: number) => {
    if (to <= from) return;
    const k1 = Math.min(need.length - 1, Math.floor((to - 1 - s.start) / PAGE));
    for (let k = Math.floor((from - s.start) / PAGE); k <= k1; k++) need[k] = 1;
  };
  const end = walkSegment(img, s, top, topsize, (p, size) => {
    if (!droppable(p + 16)) mark(p, p + size + 8); // + the next chunk's prev_foot: the last 8 user bytes
  });
  mark(end, s.end);
  img.releasePages(ri, need);
}

/** Releases the direct chunks that hold a census string or a string hash table. */
function releaseDirectStrings(img: HeapImage, cs: readonly LuaCensus[]): void {
  img.regions.forEach((r, ri) => {
    if (r.kind !== 'direct') return;
    const user = r.start + 16;
    if (cs.some((c) => user === c.header.strTab || (c.index.has(user) && img.u8(user + c.gctOffset) === GCT.str)))
      img.releasePages(ri, new Uint8Array(Math.ceil((r.end - r.start) / PAGE)));
  });
}

/** A data or function symbol covering addr, as "name (object)", else "object+0xOFFSET" inside a loaded object. */
function dataSymbol(symbolizer: Symbolizer, addr: number): string | undefined {
  const f = symbolizer.frame(addr);
  if (f.module === '[unknown]') return undefined;
  return f.function ? `${f.function} (${f.module})` : `${f.module}+0x${f.offset.toString(16)}`;
}

/** Shallow size of table object i (its allocation + hash part + separate array). */
export function tableShallow(c: LuaCensus, i: number): number {
  return c.size[i]!;
}

/** The `limit` tables with the most own bytes (shallow + payload), with paths. */
export function topTables(ctx: PathContext, limit: number): LuaTable[] {
  const { census: c, reach, img, layouts } = ctx;
  const TB = layouts.structs.GCtab!;
  const cand: number[] = [];
  for (let i = 0; i < c.count; i++) if (c.gct[i] === GCT.tab) cand.push(i);
  const own = (i: number) => c.size[i]! + reach.payload[i]!;
  cand.sort((a, b) => own(b) - own(a) || reach.retained[b]! - reach.retained[a]!);
  const chosen = cand.slice(0, limit);
  const order = rootListOrder(img, c.header.root, new Set(chosen.map((i) => c.addr[i]!)), c.count);
  return chosen.map((i) => {
    const p = c.addr[i]!;
    const hmask = img.u32(p + TB.hmask!);
    const gcOrder = order.get(p);
    return {
      path: objectPath(ctx, i),
      address: p,
      shallowBytes: c.size[i]!,
      payloadBytes: reach.payload[i]!,
      retainedBytes: reach.retained[i]!,
      arraySize: img.u32(p + TB.asize!),
      hashSize: hmask ? hmask + 1 : 0,
      ...(gcOrder === undefined ? {} : { gcOrder }),
    };
  });
}

/**
 * Positions of `wanted` objects in the root list (nextgc at offset 0 of every GCHeader), newest
 * first. At most `count` + 1 steps (the census's object count: a loop or a list leading outside
 * the copy ends the walk, and what was not reached stays unknown).
 */
function rootListOrder(img: PathContext['img'], root: number, wanted: Set<number>, count: number): Map<number, number> {
  const out = new Map<number, number>();
  let n = 0;
  for (let p = root; p && n <= count && out.size < wanted.size; p = img.u64(p), n++) {
    if (!img.has(p, 16) || p % 8) break;
    if (wanted.has(p)) out.set(p, n);
  }
  return out;
}
