// Human-readable paths from the GC roots to an object, from the BFS parents of reach.ts:
//   [registry]._LOADED.acme.cache
//   [registry][lightud ngx_http_lua_code_cache_key][4]
//   [_G].handlers<upvalue seen>
// Keys read from the target are hostile: strings are cut to 60 characters and escaped as JSON.

import type { AddressSpace } from '../target/address-space.js';
import type { HeapImage } from './image.js';
import type { LuajitLayouts } from './layouts.js';
import type { LuaCensus } from './census.js';
import { tvGcPtr, TYPE_NAMES } from './census.js';
import type { Reach } from './reach.js';
import { Edge, OPEN_UPVALUE, ROOT_NAMES } from './reach.js';
import { GCT } from './state.js';

export interface PathContext {
  img: HeapImage;
  layouts: LuajitLayouts;
  census: LuaCensus;
  reach: Reach;
  /** Names a lightuserdata pointer (an exported static of a loaded object), if it can. */
  symbolize?: (addr: number) => string | undefined;
  /** The target, to re-read key strings whose image blocks were released (heap.ts). */
  space?: AddressSpace;
}

const MAX_KEY = 60,
  MAX_DEPTH = 256;
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The text of the string object at p (cut to `max` characters), or undefined if it is not one. */
export function stringAt(img: HeapImage, L: LuajitLayouts, p: number, max = MAX_KEY): string | undefined {
  const S = L.structs.GCstr!;
  if (!img.has(p, S.sizeof!) || img.u8(p + L.structs.GChead!.gct!) !== GCT.str) return undefined;
  const len = img.u32(p + S.len!);
  const b = img.slice(p + S.sizeof!, Math.min(len, max));
  if (!b) return undefined;
  const t = b.toString('latin1');
  return len > max ? t + '…' : t;
}

/**
 * stringAt, or for a census string whose image block was released, its text re-read from the
 * target: accepted only when the header there still says string with the census's size.
 */
function textOf(ctx: PathContext, p: number, max = MAX_KEY): string | undefined {
  const { img, layouts: L } = ctx;
  if (!ctx.space || !img.released(p)) return stringAt(img, L, p, max);
  const i = ctx.census.index.get(p);
  if (i < 0 || ctx.census.gct[i] !== GCT.str) return undefined;
  const S = L.structs.GCstr!;
  try {
    const h = ctx.space.read(p, S.sizeof!);
    const len = h.readUInt32LE(S.len!);
    if (h[L.structs.GChead!.gct!] !== GCT.str || S.sizeof! + ((len + 4) & ~3) !== ctx.census.size[i]) return undefined;
    const t = len ? ctx.space.read(p + S.sizeof!, Math.min(len, max)).toString('latin1') : '';
    return len > max ? t + '…' : t;
  } catch {
    return undefined;
  }
}

/** A key as a path step: `.name`, `["text"]`, `[42]`, `[true]`, `[lightud sym]`, `[table 0x…]`. */
export function keyLabel(ctx: PathContext, at: number): string {
  const { img } = ctx;
  const hi = img.i32(at + 4),
    it = hi >> 15;
  if (it < -13 || it >= 0 || it === -14) {
    const v = img.slice(at, 8);
    if (!v) return '[?]';
    const d = v.readDoubleLE(0);
    return `[${Number.isInteger(d) ? d.toFixed(0) : String(d)}]`;
  }
  if (it === -1) return '[nil]';
  if (it === -2) return '[false]';
  if (it === -3) return '[true]';
  if (it === -4) {
    const seg = (hi >>> 7) & 0xff;
    const up = ctx.census.lightudSegments[seg];
    const p = up === undefined ? undefined : up * 4294967296 + (hi & 0x7f) * 4294967296 + img.u32(at);
    const sym = p === undefined ? undefined : ctx.symbolize?.(p);
    return `[lightud ${sym ?? (p === undefined ? '?' : '0x' + p.toString(16))}]`;
  }
  const p = tvGcPtr(img, at);
  if (it === -5) {
    const t = textOf(ctx, p);
    if (t === undefined) return '[?]';
    return IDENT.test(t) ? `.${t}` : `[${JSON.stringify(t)}]`;
  }
  return `[${TYPE_NAMES[~it] ?? 'object'} 0x${p.toString(16)}]`;
}

/** Name of upvalue k of the Lua function at fn (from its proto's uvinfo), or its number. */
function upvalueName(ctx: PathContext, fn: number, k: number): string {
  const { img } = ctx,
    s = ctx.layouts.structs;
  if (img.u8(fn + s.GCfuncL!.ffid!) !== 0) return String(k + 1);
  const pt = img.u64(fn + s.GCfuncL!.pc!) - s.GCproto!.sizeof!;
  let q = img.u64(pt + s.GCproto!.uvinfo!);
  if (!q || k >= img.u8(pt + s.GCproto!.sizeuv!)) return String(k + 1);
  for (let j = 0; j < k; j++) {
    const b = img.slice(q, 256);
    const z = b ? b.indexOf(0) : -1;
    if (z < 0) return String(k + 1);
    q += z + 1;
  }
  const b = img.slice(q, 64);
  const z = b ? b.indexOf(0) : -1;
  return z > 0 ? b!.subarray(0, z).toString('latin1') : String(k + 1);
}

/** Chunk name and first line of a Lua function, "acme.lua:12", or the fast function / C function. */
export function functionLabel(ctx: PathContext, fn: number): string {
  const { img } = ctx,
    s = ctx.layouts.structs;
  const ffid = img.u8(fn + s.GCfuncL!.ffid!);
  if (ffid === 1) {
    const f = img.u64(fn + s.GCfuncC!.f!);
    return `C:${ctx.symbolize?.(f) ?? '0x' + f.toString(16)}`;
  }
  if (ffid > 1) return `builtin#${ffid}`;
  const pt = img.u64(fn + s.GCfuncL!.pc!) - s.GCproto!.sizeof!;
  const name = textOf(ctx, img.u64(pt + s.GCproto!.chunkname!), 80) ?? '?';
  return `${name.replace(/^[@=]/, '')}:${img.u32(pt + s.GCproto!.firstline!)}`;
}

function rootLabel(aux: number): string {
  const kind = Math.floor(aux / 65536),
    m = aux % 65536;
  const name = ROOT_NAMES[kind] ?? 'root';
  if (kind === 0 || kind === 2) return `[${name}]`;
  if (kind === 1) return m === 65535 ? '[main thread open upvalue]' : `[main thread stack ${m}]`;
  if (kind === 3 || kind === 5) return `[${name} ${m}]`;
  return `[${name}]`;
}

/** Address of hash node k of the table at tab. */
function nodeAt(ctx: PathContext, tab: number, k: number): number {
  const s = ctx.layouts.structs;
  return ctx.img.u64(tab + s.GCtab!.node!) + s.Node!.sizeof! * k;
}

/** The path of object i from its root, or "(unreached)" for pending garbage. */
export function objectPath(ctx: PathContext, i: number): string {
  const { reach, census, img } = ctx;
  if (reach.parent[i] === -1) return '(unreached)';
  const steps: string[] = [];
  let j = i;
  for (let d = 0; d < MAX_DEPTH; d++) {
    const e = reach.edge[j]!,
      a = reach.aux[j]!,
      pa = reach.parent[j]!;
    if (e === Edge.Root) {
      steps.push(rootLabel(a));
      break;
    }
    const pAddr = census.addr[pa]!;
    switch (e) {
      case Edge.Array:
        steps.push(`[${a}]`);
        break;
      case Edge.HashValue:
        steps.push(keyLabel(ctx, nodeAt(ctx, pAddr, a) + ctx.layouts.structs.Node!.key!));
        break;
      case Edge.HashKey:
        steps.push(`{key ${keyLabel(ctx, nodeAt(ctx, pAddr, a) + ctx.layouts.structs.Node!.key!)}}`);
        break;
      case Edge.Metatable:
        steps.push('<metatable>');
        break;
      case Edge.Env:
      case Edge.UdataEnv:
        steps.push('<env>');
        break;
      case Edge.Upvalue:
        steps.push(`<${functionLabel(ctx, pAddr)} upvalue ${upvalueName(ctx, pAddr, a)}>`);
        break;
      case Edge.UpvalueValue:
        break;
      case Edge.Proto:
        steps.push('<proto>');
        break;
      case Edge.Const:
        steps.push(`<const ${a}>`);
        break;
      case Edge.ChunkName:
        steps.push('<chunkname>');
        break;
      case Edge.Stack:
        steps.push(a === OPEN_UPVALUE ? '<open upvalue>' : `<stack ${a}>`);
        break;
      case Edge.TraceConst:
        steps.push('<trace const>');
        break;
      case Edge.TraceLink:
        steps.push(`<trace ${a}>`);
        break;
      case Edge.TraceStart:
        steps.push('<trace start>');
        break;
      default:
        steps.push('<?>');
    }
    if (pa < 0) break;
    j = pa;
  }
  void img;
  return steps.reverse().join('');
}
