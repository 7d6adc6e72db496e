// The LuaJIT step of the guided analysis (between nginx pools and chunk sizes) and its part
// of the verdict. Observed: two snapshots of every Lua VM (luajit/heap.ts) around the
// observation pause; evidence: the tables whose own bytes (the table plus the objects first
// reached through it) grew, which garbage cannot do (unreached objects are in no table's
// payload); verdict: a Lua table that grew significantly during the analysis is a leak in the
// Lua heap, named by its path.

import type { AnalyzeConclusion, AnalyzeStep } from '../contract/analyze.js';
import type { LuaHeaps } from '../luajit/heap.js';
import type { TableGrowth } from '../luajit/compare.js';
import { tableGrowth } from '../luajit/compare.js';
import { formatBytes } from '../model/units.js';
import type { LuaGrowthTrace } from '../trace/lua-growth.js';

/** A table growing by at least this much (bytes) during the analysis is a leak. */
export const MIN_LUA_TABLE_GROWTH = 64 * 1024;

export interface LuaObservation {
  before: LuaHeaps;
  after: LuaHeaps;
  /** What the two snapshots are ("the same process 2 s earlier"). */
  label: string;
  /** Seconds between the snapshots (0: one snapshot only). */
  seconds: number;
  /** Lua heap growth by call path between the snapshots (mmap / mremap from libluajit), when traced. */
  growth?: LuaGrowthTrace | null;
  /** Why the growth probes could not run. */
  growthError?: string;
}

export interface LuaFinding {
  vms: number;
  gcTotalBefore: number;
  gcTotalAfter: number;
  /** Tables that grew, largest growth first (all VMs). */
  grew: TableGrowth[];
  label: string;
  seconds: number;
  partial: boolean;
  /** Where Lua code grew the heap while traced: "chunk:line" by mapped bytes, largest first. */
  growthSites: Array<{ location: string; bytes: number; count: number; path: string }>;
  /** maps / bytes seen by the growth probes (null: not traced), and why not. */
  growthTraced: { maps: number; bytes: number; seconds: number } | null;
  growthError?: string;
}

export function luaFinding(o: LuaObservation | null): LuaFinding | null {
  if (!o?.after.vms.length) return null;
  const grew: TableGrowth[] = [];
  for (const vm of o.after.vms) {
    const b = o.before.vms.find((x) => x.globalState === vm.globalState);
    if (b && o.seconds > 0) grew.push(...tableGrowth(b.tables, vm.tables, 10));
  }
  grew.sort((a, b) => b.growthBytes - a.growthBytes);
  const sum = (h: LuaHeaps) => h.vms.reduce((a, v) => a + v.gcTotal, 0);
  return {
    vms: o.after.vms.length,
    gcTotalBefore: sum(o.before),
    gcTotalAfter: sum(o.after),
    grew,
    label: o.label,
    seconds: o.seconds,
    partial: o.after.vms.some((v) => v.partial) || o.before.vms.some((v) => v.partial),
    growthSites: growthSites(o.growth),
    growthTraced: o.growth ? { maps: o.growth.maps, bytes: o.growth.bytes, seconds: o.growth.seconds } : null,
    ...(o.growthError ? { growthError: o.growthError } : {}),
  };
}

/** Growth sites merged by their innermost Lua location. */
function growthSites(g: LuaGrowthTrace | null | undefined): LuaFinding['growthSites'] {
  const by = new Map<string, { location: string; bytes: number; count: number; path: string }>();
  for (const s of g?.sites ?? []) {
    if (!s.luaLocation) continue;
    const b = by.get(s.luaLocation);
    if (b) {
      b.bytes += s.bytes;
      b.count += s.count;
    } else
      by.set(s.luaLocation, {
        location: s.luaLocation,
        bytes: s.bytes,
        count: s.count,
        path: s.frames
          .slice(0, 8)
          .map((f) => f.function ?? `${f.module}+0x${f.offset.toString(16)}`)
          .join(' <- '),
      });
  }
  return [...by.values()].sort((a, b) => b.bytes - a.bytes);
}

export function luaStep(f: LuaFinding, after: LuaHeaps): AnalyzeStep {
  const top = f.grew[0];
  const leaking = !!top && top.growthBytes >= MIN_LUA_TABLE_GROWTH;
  const types = new Map<string, number>();
  for (const vm of after.vms) for (const t of vm.types) types.set(t.type, (types.get(t.type) ?? 0) + t.bytes);
  const evidence = [
    `${f.vms} Lua VM(s), gc.total ${formatBytes(f.gcTotalBefore)} -> ${formatBytes(f.gcTotalAfter)} (${f.label})`,
    `by type: ${[...types]
      .filter(([, b]) => b > 0)
      .sort((a, b) => b[1] - a[1])
      .slice(0, 5)
      .map(([t, b]) => `${t} ${formatBytes(b)}`)
      .join(', ')}`,
    ...f.grew
      .slice(0, 4)
      .map(
        (g) =>
          `${g.path}: +${formatBytes(g.growthBytes)} (own ${formatBytes(g.ownBytesBefore)} -> ${formatBytes(g.ownBytesAfter)}, array ${g.arraySizeBefore} -> ${g.arraySizeAfter}, hash ${g.hashSizeBefore} -> ${g.hashSizeAfter})`,
      ),
    ...after.vms.flatMap((v) =>
      v.tables
        .slice(0, 2)
        .map(
          (t) =>
            `largest: ${t.path}: ${formatBytes(t.shallowBytes + t.payloadBytes)} own, ${formatBytes(t.retainedBytes)} retained`,
        ),
    ),
    ...(f.growthTraced
      ? [
          `Lua heap growth traced for ${f.growthTraced.seconds.toFixed(1)} s (mmap / mremap by lj_alloc): ${f.growthTraced.maps} maps, ${formatBytes(f.growthTraced.bytes)}` +
            (f.growthSites.length
              ? `; by Lua code: ${f.growthSites
                  .slice(0, 3)
                  .map((g) => `${g.location} ${formatBytes(g.bytes)} (${g.count})`)
                  .join(', ')}`
              : ''),
          ...f.growthSites.slice(0, 2).map((g) => `growth path: ${g.path}`),
        ]
      : f.growthError
        ? [`Lua heap growth not traced: ${f.growthError}`]
        : []),
    ...(f.partial
      ? ['a snapshot was taken while the worker ran and is marked partial (see `leakscope lua --freeze`)']
      : []),
  ];
  return {
    id: 'luajit',
    title: 'LuaJIT heap',
    finding: leaking
      ? `the Lua table ${top.path} grew by ${formatBytes(top.growthBytes)} in ${f.seconds} s`
      : f.seconds > 0
        ? `no Lua table grew significantly in ${f.seconds} s (gc.total ${formatBytes(f.gcTotalAfter)})`
        : `gc.total ${formatBytes(f.gcTotalAfter)}; one snapshot only, no growth measured`,
    evidence,
    status: leaking ? 'anomaly' : 'ok',
  };
}

/** The conclusion when a Lua table grew significantly during the analysis, else null. */
export function luaVerdict(f: LuaFinding | null | undefined): AnalyzeConclusion | null {
  const top = f?.grew[0];
  if (!f || !top || top.growthBytes < MIN_LUA_TABLE_GROWTH) return null;
  const mod = /^\[registry\]\._LOADED(?:\.([A-Za-z_][A-Za-z0-9_]*)|\["([^"]+)"\])/.exec(top.path);
  const module = mod ? (mod[1] ?? mod[2]!) : null;
  const site = f.growthSites[0];
  return {
    verdict: 'leak',
    leak: true,
    module: module ? `Lua module ${module}` : 'Lua heap',
    bucket: null,
    function: site ? site.location : null,
    confidence: f.partial ? 'low' : 'medium',
    summary:
      `Leak in the Lua heap: the table ${top.path} grew by ${formatBytes(top.growthBytes)} in ${f.seconds} s ` +
      `(array ${top.arraySizeBefore} -> ${top.arraySizeAfter}, hash ${top.hashSizeBefore} -> ${top.hashSizeAfter}); gc.total ${formatBytes(f.gcTotalBefore)} -> ${formatBytes(f.gcTotalAfter)}.` +
      (site
        ? ` The Lua heap grew (lj_alloc mapped ${formatBytes(site.bytes)} in ${site.count} maps) in Lua code at ${site.location}.`
        : ''),
  };
}
