// Growth between two snapshots of a Lua heap, by table. LuaJIT's GC never moves objects, so
// a table keeps its address for its whole life; a table is the same in both snapshots when
// its address and its path agree (an address reused by a new table after a collection has
// a different path, or no path agreement, and counts as new).

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
  const out: TableGrowth[] = [];
  for (const t of after) {
    const b = prev.get(`${t.address}\u0000${t.path}`);
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

/** Growth of each VM between two snapshots (a saved `lua --json` or a pause). */
export interface LuaGrowth {
  /** Where the first snapshot came from: "baseline FILE" or "5 s pause". */
  baseline: string;
  vms: Array<{ globalState: number; gcTotalBefore: number; gcTotalAfter: number; tables: TableGrowth[] }>;
}
