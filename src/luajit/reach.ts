// Reachability and paths over a census: a breadth-first walk from the GC roots (lj_gc.c
// gc_mark_start + atomic: registry, main thread and its env, gcroot[], the running thread,
// live traces, the FFI finalizer / misc tables, the mmudata ring, then FIXED objects), along
// the edges gc_traverse_* follows. Each reached object keeps its BFS parent and the edge that
// reached it, so a path is a parent walk. Only edges to census objects are followed (a torn
// read cannot invent objects). Weak tables are walked as strong ones.
// Sizes per table: shallow (the table's own allocation), payload (objects first reached
// through the table: its BFS-tree children), retained (the BFS subtree, an approximation of
// the dominator-tree size: the first path wins).

import type { HeapImage } from './image.js';
import type { LuajitLayouts } from './layouts.js';
import type { LuaCensus } from './census.js';
import { tvGcPtr } from './census.js';
import { GCT } from './state.js';

/** Edge kinds; `aux` says which slot. */
export enum Edge {
  Root = 1,
  Array,
  HashValue,
  HashKey,
  Metatable,
  Env,
  Upvalue,
  Proto,
  Const,
  ChunkName,
  Stack,
  UpvalueValue,
  TraceConst,
  TraceLink,
  TraceStart,
  UdataEnv,
}

/** aux of an Edge.Stack edge to an open upvalue (not a stack slot). */
export const OPEN_UPVALUE = 0xffffffff;

export const ROOT_NAMES = [
  'registry',
  'main thread',
  '_G',
  'gcroot',
  'running thread',
  'trace',
  'ffi finalizers',
  'ffi miscmap',
  'pending finalizer',
  'fixed',
] as const;

export interface Reach {
  parent: Int32Array; // -1 unreached, -2 root
  edge: Uint8Array;
  aux: Uint32Array; // array index, node index, upvalue / slot number (OPEN_UPVALUE: an open upvalue), root kind * 65536 + n
  order: Int32Array; // BFS order of reached objects
  reached: number;
  payload: Float64Array; // per object: Σ sizes of BFS children
  retained: Float64Array; // per object: BFS subtree size
  pendingGarbage: { count: number; bytes: number };
}

export function reachability(img: HeapImage, L: LuajitLayouts, c: LuaCensus): Reach {
  const s = L.structs;
  const n = c.count;
  const q = new BfsQueue(n, c);
  const { parent, edge, aux, order } = q;
  let head = 0;
  const visit = (p: number, from: number, e: Edge, a: number) => q.visit(p, from, e, a);
  const visitTv = (at: number, from: number, e: Edge, a: number) => {
    const p = tvGcPtr(img, at);
    if (p) q.visit(p, from, e, a);
  };
  const G = s.global_State!,
    T = s.lua_State!,
    TB = s.GCtab!,
    ND = s.Node!,
    FL = s.GCfuncL!,
    FC = s.GCfuncC!,
    UV = s.GCupval!;
  const PR = s.GCproto!,
    UD = s.GCudata!,
    TR = s.GCtrace!,
    IR = s.IRIns!,
    H = s.GChead!;
  const g = c.globalState;
  const root = (k: number, m = 0) => k * 65536 + m;
  const threadEdges = (th: number, from: number) => {
    const stack = img.u64(th + T.stack!),
      top = img.u64(th + T.top!);
    const slots = Math.min(Math.max(0, (top - stack) / 8), img.u32(th + T.stacksize!));
    for (let k = 0; k < slots; k++) visitTv(stack + 8 * k, from, Edge.Stack, k);
    let m = 0;
    for (let u = img.u64(th + T.openupval!); u && m < 1 << 20; u = img.u64(u), m++) visit(u, from, Edge.Stack, OPEN_UPVALUE);
  };
  // Roots, in the order a user reads paths from: registry first.
  visitTv(g + G.registrytv!, -2, Edge.Root, root(0));
  const mainEnv = img.u64(c.header.mainThread + T.env!);
  visit(mainEnv, -2, Edge.Root, root(2));
  for (let k = 0; k < G.gcrootCount!; k++) visit(img.u64(g + G.gcroot! + 8 * k), -2, Edge.Root, root(3, k));
  const drain = () => {
    while (head < q.tail) {
      const i = order[head++]!;
      const p = c.addr[i]!;
      switch (c.gct[i]) {
        case GCT.tab: {
          const mt = img.u64(p + TB.metatable!);
          if (mt) visit(mt, i, Edge.Metatable, 0);
          const asize = img.u32(p + TB.asize!),
            arr = img.u64(p + TB.array!);
          if (asize && img.has(arr, 8 * asize)) for (let k = 0; k < asize; k++) visitTv(arr + 8 * k, i, Edge.Array, k);
          const hmask = img.u32(p + TB.hmask!),
            node = img.u64(p + TB.node!);
          if (hmask && img.has(node, ND.sizeof! * (hmask + 1))) {
            for (let k = 0; k <= hmask; k++) {
              const nd = node + ND.sizeof! * k;
              if (img.i32(nd + ND.val! + 4) === -1) continue; // nil value: empty or dead key
              visitTv(nd + ND.key!, i, Edge.HashKey, k);
              visitTv(nd + ND.val!, i, Edge.HashValue, k);
            }
          }
          break;
        }
        case GCT.func: {
          visit(img.u64(p + FL.env!), i, Edge.Env, 0);
          const nup = img.u8(p + FL.nupvalues!);
          if (img.u8(p + FL.ffid!) === 0) {
            visit(img.u64(p + FL.pc!) - PR.sizeof!, i, Edge.Proto, 0);
            for (let k = 0; k < nup; k++) visit(img.u64(p + FL.uvptr! + 8 * k), i, Edge.Upvalue, k);
          } else for (let k = 0; k < nup; k++) visitTv(p + FC.upvalue! + 8 * k, i, Edge.Upvalue, k);
          break;
        }
        case GCT.upval:
          if (img.u8(p + UV.closed!)) visitTv(p + UV.tv!, i, Edge.UpvalueValue, 0);
          break;
        case GCT.proto: {
          const k0 = img.u64(p + PR.k!),
            nk = img.u32(p + PR.sizekgc!);
          if (img.has(k0 - 8 * nk, 8 * nk)) for (let k = 1; k <= nk; k++) visit(img.u64(k0 - 8 * k), i, Edge.Const, k);
          visit(img.u64(p + PR.chunkname!), i, Edge.ChunkName, 0);
          break;
        }
        case GCT.thread:
          threadEdges(p, i);
          visit(img.u64(p + T.env!), i, Edge.Env, 0);
          break;
        case GCT.udata: {
          const mt = img.u64(p + UD.metatable!);
          if (mt) visit(mt, i, Edge.Metatable, 0);
          visit(img.u64(p + UD.env!), i, Edge.UdataEnv, 0);
          break;
        }
        case GCT.trace: {
          const ir = img.u64(p + TR.ir!),
            nk = img.u32(p + TR.nk!);
          for (let ref = nk; ref < IR.REF_TRUE!; ref++) {
            const ins = ir + IR.sizeof! * ref;
            if (!img.has(ins, 16)) break;
            const o = img.u8(ins + IR.o!);
            if (o === IR.IR_KGC!) visit(img.u64(ins + IR.sizeof!), i, Edge.TraceConst, ref);
            if ((1 << (img.u8(ins + IR.t!) & 31)) & 0x605fd9 && o !== 27) ref++; // irt_is64 && !IR_KNULL: two slots
          }
          for (const off of [TR.link!, TR.nextroot!, TR.nextside!]) {
            const no = img.u16(p + off);
            if (no && no < c.traces.length) visit(c.traces[no]!, i, Edge.TraceLink, no);
          }
          visit(img.u64(p + TR.startpt!), i, Edge.TraceStart, 0);
          break;
        }
        default:
          break;
      }
    }
  };
  drain();
  // The main thread's stack (it is not a census object: its struct is part of GG_State).
  threadEdgesRoot();
  function threadEdgesRoot(): void {
    const th = c.header.mainThread,
      stack = img.u64(th + T.stack!),
      top = img.u64(th + T.top!);
    const slots = Math.min(Math.max(0, (top - stack) / 8), img.u32(th + T.stacksize!));
    for (let k = 0; k < slots; k++) visitTv(stack + 8 * k, -2, Edge.Root, root(1, k));
    let m = 0;
    for (let u = img.u64(th + T.openupval!); u && m < 1 << 20; u = img.u64(u), m++)
      visit(u, -2, Edge.Root, root(1, 65535));
  }
  drain();
  const curL = img.u64(g + G.cur_L!);
  if (curL !== c.header.mainThread) visit(curL, -2, Edge.Root, root(4));
  drain();
  for (let k = 1; k < c.traces.length; k++) if (c.traces[k]) visit(c.traces[k]!, -2, Edge.Root, root(5, k));
  if (c.ctsFinalizer) visit(c.ctsFinalizer, -2, Edge.Root, root(6));
  if (c.ctsMiscmap) visit(c.ctsMiscmap, -2, Edge.Root, root(7));
  drain();
  if (c.header.mmudata) {
    let m = 0;
    for (let p = img.u64(c.header.mmudata); m < c.count; p = img.u64(p), m++) {
      visit(p, -2, Edge.Root, root(8));
      if (p === c.header.mmudata) break;
    }
  }
  drain();
  for (let i = 0; i < n; i++) if (parent[i] === -1 && c.marked[i]! & 0x60) visit(c.addr[i]!, -2, Edge.Root, root(9));
  drain();
  void H;
  // Payload and retained sizes along the BFS tree (children after parents in `order`).
  const payload = new Float64Array(n),
    retained = new Float64Array(n);
  const tail = q.tail;
  for (let k = tail - 1; k >= 0; k--) {
    const i = order[k]!;
    retained[i]! += c.size[i]!;
    const pa = parent[i]!;
    if (pa >= 0) {
      retained[pa]! += retained[i]!;
      payload[pa]! += c.size[i]!;
    }
  }
  let gc = 0,
    gb = 0;
  for (let i = 0; i < n; i++)
    if (parent[i] === -1) {
      gc++;
      gb += c.size[i]!;
    }
  return {
    parent,
    edge,
    aux,
    order: order.subarray(0, tail),
    reached: tail,
    payload,
    retained,
    pendingGarbage: { count: gc, bytes: gb },
  };
}

/** BFS state: per object its parent (-1 unreached, -2 root), the edge that reached it, and the visit order. */
class BfsQueue {
  readonly parent: Int32Array;
  readonly edge: Uint8Array;
  readonly aux: Uint32Array;
  readonly order: Int32Array;
  tail = 0;
  constructor(
    n: number,
    private readonly c: LuaCensus,
  ) {
    this.parent = new Int32Array(n).fill(-1);
    this.edge = new Uint8Array(n);
    this.aux = new Uint32Array(n);
    this.order = new Int32Array(n);
  }
  visit(p: number, from: number, e: Edge, a: number): void {
    const i = this.c.index.get(p);
    if (i < 0 || this.parent[i] !== -1) return;
    this.parent[i] = from;
    this.edge[i] = e;
    this.aux[i] = a;
    this.order[this.tail++] = i;
  }
}
