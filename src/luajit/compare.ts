// Growth between two snapshots of a Lua heap, by table. LuaJIT's GC never moves objects, so
// a table keeps its address for its whole life; a table is matched across snapshots by its
// address and its path. That alone does not prove it is the same table: one freed by a
// collection and a new one allocated in its place (`M.cache = {}` after the old one died) has
// both, and would read as the old table grown or shrunk. Continuity is checked with the GC's
// allocation order (LuaTable.gcOrder, position in g->gc.root): new objects are prepended to that
// list and never reordered, so two tables that both lived through the interval keep their
// relative order, and a table allocated in between is newer than every table that did. A match
// A is a new table when another match B was newer than A in the first snapshot and is older
// than it in the second (whatever B is: if A lived on, B would be either the same old table,
// still newer, or a new one, newer still). Without such a witness (no other listed table newer
// than A lived on, or no order: a saved baseline), the address + path match stands.

import type { LuaTable } from './heap.js';

export interface TableGrowth {
  path: string;
  address: number;
  /** shallow + payload bytes before / after (before 0 for a table new in the second snapshot). */
  ownBytesBefore: number;
  ownBytesAfter: number;
  growthBytes: number;
  retainedBytesBefore: number;
  retainedBytesAfter: number;
  arraySizeBefore: number;
  arraySizeAfter: number;
  hashSizeBefore: number;
  hashSizeAfter: number;
  /** The table was not among the first snapshot's listed tables (its growth is its whole size). */
  isNew: boolean;
}

/** Tables of `after` that grew (own bytes), largest growth first. */
export function tableGrowth(before: readonly LuaTable[], after: readonly LuaTable[], limit = 20): TableGrowth[] {
  const prev = new Map<string, LuaTable>();
  for (const t of before) prev.set(`${t.address}\u0000${t.path}`, t);
  const matched = new Map<LuaTable, LuaTable>();
  for (const t of after) {
    const b = prev.get(`${t.address}\u0000${t.path}`);
    if (b) matched.set(t, b);
  }
  const replaced = replacedTables(matched);
  const out: TableGrowth[] = [];
  for (const t of after) {
    const b = replaced.has(t) ? undefined : matched.get(t);
    const ownB = b ? b.shallowBytes + b.payloadBytes : 0,
      ownA = t.shallowBytes + t.payloadBytes;
    if (ownA <= ownB) continue;
    out.push({
      path: t.path,
      address: t.address,
      ownBytesBefore: ownB,
      ownBytesAfter: ownA,
      growthBytes: ownA - ownB,
      retainedBytesBefore: b?.retainedBytes ?? 0,
      retainedBytesAfter: t.retainedBytes,
      arraySizeBefore: b?.arraySize ?? 0,
      arraySizeAfter: t.arraySize,
      hashSizeBefore: b?.hashSize ?? 0,
      hashSizeAfter: t.hashSize,
      isNew: !b,
    });
  }
  out.sort((x, y) => y.growthBytes - x.growthBytes);
  return out.slice(0, limit);
}

/**
 * The matched tables (after -> before) that cannot be the table seen before: some other match was
 * newer in the first snapshot and is older in the second (see the top of this file).
 */
export function replacedTables(matched: ReadonlyMap<LuaTable, LuaTable>): Set<LuaTable> {
  const pairs = [...matched]
    .filter(([a, b]) => a.gcOrder !== undefined && b.gcOrder !== undefined)
    .map(([a, b]) => ({ after: a, o1: b.gcOrder!, o2: a.gcOrder! }))
    .sort((x, y) => x.o1 - y.o1);
  const out = new Set<LuaTable>();
  // Walk from the newest in the first snapshot: the largest second-snapshot position among the
  // matches strictly newer than this one (equal positions are one object: never a witness).
  let oldestAfter = -1;
  for (let i = 0; i < pairs.length; ) {
    let j = i;
    while (j < pairs.length && pairs[j]!.o1 === pairs[i]!.o1) j++;
    for (let k = i; k < j; k++) if (oldestAfter > pairs[k]!.o2) out.add(pairs[k]!.after);
    for (let k = i; k < j; k++) oldestAfter = Math.max(oldestAfter, pairs[k]!.o2);
    i = j;
  }
  return out;
}

/** Growth of each VM between two snapshots (a saved `lua --json` or a pause). */
export interface LuaGrowth {
  /** Where the first snapshot came from: "baseline FILE" or "5 s pause". */
  baseline: string;
  vms: Array<{ globalState: number; gcTotalBefore: number; gcTotalAfter: number; tables: TableGrowth[] }>;
}
