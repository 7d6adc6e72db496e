// `leakscope.lua/1`: the document of `leakscope lua --json`: every Lua VM of the target, GC
// objects and bytes by type (summing with the non-object parts to gc.total when exact), the
// largest tables by path, and with a baseline or a pause the tables that grew.
// Byte counts are integers in bytes; addresses are runtime addresses.

import type { LuaHeaps } from '../luajit/heap.js';
import type { LuaGrowth } from '../luajit/compare.js';
import {
  address,
  amount,
  array,
  boolean,
  count,
  integer,
  nullable,
  object,
  parseWith,
  schema,
  string,
} from './json-check.js';
import type { Checked } from './json-check.js';

export const LUA_SCHEMA = 'leakscope.lua/1';

const table = object({
  path: string,
  address,
  shallowBytes: count,
  payloadBytes: count,
  retainedBytes: count,
  arraySize: count,
  hashSize: count,
});
const growthRow = object({
  path: string,
  address,
  ownBytesBefore: count,
  ownBytesAfter: count,
  growthBytes: integer,
  retainedBytesBefore: count,
  retainedBytesAfter: count,
  arraySizeBefore: count,
  arraySizeAfter: count,
  hashSizeBefore: count,
  hashSizeAfter: count,
  isNew: boolean,
});
const vm = object({
  globalState: address,
  mainThread: address,
  foundBy: array(string),
  layouts: string,
  gcTotal: count,
  gcState: string,
  gcThreshold: count,
  types: array(object({ type: string, count, bytes: count, maxBytes: count })),
  nonObject: array(object({ what: string, bytes: count })),
  objectBytes: count,
  nonObjectBytes: count,
  /** census total - gc.total: 0 when exact. */
  censusDelta: integer,
  tables: array(table),
  reachedObjects: count,
  pendingGarbage: object({ count, bytes: count }),
  alloc: object({
    segments: array(object({ address, bytes: count, usedBytes: count, freeBytes: count })),
    usedBytes: count,
    freeBytes: count,
  }),
  growth: nullable(object({ gcTotalBefore: count, gcTotalAfter: count, tables: array(growthRow) })),
  partial: boolean,
  problems: array(string),
});
export const luaDocument = object({
  schema: schema(LUA_SCHEMA),
  target: string,
  pid: count,
  library: nullable(string),
  libraryBuildId: nullable(string),
  regionBytes: count,
  copySeconds: amount,
  frozenSeconds: nullable(amount),
  consistency: object({ quiescent: boolean, sweepFree: boolean, detail: string }),
  problems: array(string),
  directChunks: array(object({ address, bytes: count, chunkBytes: count })),
  baseline: nullable(string),
  vms: array(vm),
});

export type LuaDocument = Checked<typeof luaDocument>;
export type LuaVmEntry = LuaDocument['vms'][number];
export type LuaTableEntry = LuaVmEntry['tables'][number];

export function encodeLua(h: LuaHeaps, growth?: LuaGrowth): LuaDocument {
  return {
    schema: LUA_SCHEMA,
    target: h.target,
    pid: h.pid,
    library: h.library ?? null,
    libraryBuildId: h.libraryBuildId ?? null,
    regionBytes: h.regionBytes,
    copySeconds: h.copySeconds,
    frozenSeconds: h.frozenSeconds ?? null,
    consistency: { ...h.consistency },
    problems: h.problems,
    directChunks: h.directChunks.map((d) => ({ address: d.start, bytes: d.end - d.start, chunkBytes: d.chunkBytes })),
    baseline: growth?.baseline ?? null,
    vms: h.vms.map((v) => {
      const g = growth?.vms.find((x) => x.globalState === v.globalState);
      return {
        globalState: v.globalState,
        mainThread: v.mainThread,
        foundBy: v.foundBy,
        layouts: v.layouts,
        gcTotal: v.gcTotal,
        gcState: v.gcState,
        gcThreshold: v.gcThreshold,
        types: v.types.map((t) => ({ type: t.type, count: t.count, bytes: t.bytes, maxBytes: t.maxBytes })),
        nonObject: v.nonObject.map((n) => ({ what: n.what, bytes: n.bytes })),
        objectBytes: v.objectBytes,
        nonObjectBytes: v.nonObjectBytes,
        censusDelta: v.delta,
        tables: v.tables.map(({ gcOrder: _, ...t }) => t),
        reachedObjects: v.reachedObjects,
        pendingGarbage: { ...v.pendingGarbage },
        alloc: {
          segments: v.alloc.segments.map((s) => ({
            address: s.start,
            bytes: s.end - s.start,
            usedBytes: s.usedBytes ?? 0,
            freeBytes: s.freeBytes ?? 0,
          })),
          usedBytes: v.alloc.usedBytes,
          freeBytes: v.alloc.freeBytes,
        },
        growth: g
          ? { gcTotalBefore: g.gcTotalBefore, gcTotalAfter: g.gcTotalAfter, tables: g.tables.map((t) => ({ ...t })) }
          : null,
        partial: v.partial,
        problems: v.problems,
      };
    }),
  };
}

/** A `leakscope.lua/1` document from untrusted JSON (a `lua --baseline`); throws `malformed` with the path of the first problem. */
export function parseLua(doc: unknown): LuaDocument {
  return parseWith(luaDocument, doc);
}
