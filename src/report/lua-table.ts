// `leakscope lua`: terminal text and versioned JSON (`leakscope.lua/1`) of a process's Lua
// heaps and, when two snapshots were taken, the tables that grew. The renderer never reads
// the target; paths and keys come from the target and are escaped (safeText) for the terminal.
import type { LuaHeaps, LuaTable, LuaVm } from '../luajit/heap.js';
import type { TableGrowth } from '../luajit/compare.js';
import { LeakscopeError } from '../model/errors.js';
import { formatBytes, safeText, textTable } from './text-format.js';

const hex = (n: number) => `0x${n.toString(16)}`;

export interface LuaGrowthReport {
  /** Where the first snapshot came from: "baseline FILE" or "pause 5 s". */
  baseline: string;
  /** Per VM (by globalState): gc.total before, tables that grew. */
  vms: Array<{ globalState: number; gcTotalBefore: number; gcTotalAfter: number; tables: TableGrowth[] }>;
}

export function renderLuaText(h: LuaHeaps, growth?: LuaGrowthReport): string {
  const out: string[] = [];
  const regions = h.vms.reduce((a, v) => a + v.alloc.segments.length, 0);
  out.push(`${safeText(h.target)}: ${h.vms.length} Lua VM(s)${h.library ? `, ${safeText(h.library)}${h.libraryBuildId ? ` (build-id ${h.libraryBuildId})` : ''}` : ', no LuaJIT library mapped'}`);
  if (!h.vms.length) { out.push('no Lua VM found'); for (const p of h.problems) out.push(`  problem: ${safeText(p)}`); return out.join('\n'); }
  out.push(`lj_alloc regions ${formatBytes(h.regionBytes)} (${regions} segment(s), ${h.directChunks.length} direct chunk(s)), copied in ${h.copySeconds.toFixed(2)} s${h.frozenSeconds !== undefined ? ` (worker stopped ${h.frozenSeconds.toFixed(3)} s)` : ''}; ` +
    `consistency: ${h.consistency.quiescent ? 'quiescent' : h.consistency.sweepFree ? 'sweep-free' : 'not proved'} (${safeText(h.consistency.detail)})`);
  for (const p of h.problems) out.push(`  problem: ${safeText(p)}`);
  for (const vm of h.vms) out.push('', ...renderVm(vm, growth?.vms.find((g) => g.globalState === vm.globalState), growth?.baseline));
  return out.join('\n');
}

function renderVm(vm: LuaVm, growth: LuaGrowthReport['vms'][number] | undefined, baseline: string | undefined): string[] {
  const out: string[] = [];
  out.push(`VM ${hex(vm.globalState)} (main thread ${hex(vm.mainThread)}, found by ${vm.foundBy.join(' + ')}; layouts ${safeText(vm.layouts)})`);
  const census = vm.objectBytes + vm.nonObjectBytes;
  out.push(`  gc.total ${vm.gcTotal} B (${formatBytes(vm.gcTotal)}), gc.state ${vm.gcState}; census ${census} B: ${vm.delta === 0 ? 'exact' : `off by ${vm.delta} B`}${vm.partial ? ' [PARTIAL]' : ''}`);
  const rows = vm.types.filter((t) => t.count > 0).map((t) => [t.type, String(t.count), formatBytes(t.bytes), String(t.bytes)]);
  rows.push(['non-object', '', formatBytes(vm.nonObjectBytes), String(vm.nonObjectBytes)]);
  out.push(textTable(['type', 'objects', 'size', 'bytes'], rows).split('\n').map((l) => '  ' + l).join('\n'));
  if (vm.reachedObjects) out.push(`  reached from the roots: ${vm.reachedObjects} objects; pending garbage (unreached, freed by the next GC cycle): ${vm.pendingGarbage.count} objects, ${formatBytes(vm.pendingGarbage.bytes)}`);
  const segBytes = vm.alloc.segments.reduce((a, s) => a + s.end - s.start, 0);
  out.push(`  lj_alloc: ${vm.alloc.segments.length} segment(s), ${formatBytes(segBytes)}: chunks in use ${formatBytes(vm.alloc.usedBytes)}, free ${formatBytes(vm.alloc.freeBytes)}`);
  if (vm.tables.length) {
    out.push('  largest tables (own = shallow + payload: the table and the objects first reached through it):');
    out.push(textTable(['own', 'shallow', 'payload', 'retained', 'array', 'hash', 'path'], vm.tables.map((t) => tableRow(t))).split('\n').map((l) => '    ' + l).join('\n'));
  }
  if (growth) {
    out.push(`  growth since ${safeText(baseline ?? 'the first snapshot')}: gc.total ${formatBytes(growth.gcTotalBefore)} -> ${formatBytes(growth.gcTotalAfter)} (${growth.gcTotalAfter - growth.gcTotalBefore >= 0 ? '+' : ''}${growth.gcTotalAfter - growth.gcTotalBefore} B)`);
    if (!growth.tables.length) out.push('    no table grew');
    else out.push(textTable(['growth', 'own before', 'own after', 'array', 'hash', 'path'], growth.tables.map((g) => [
      `+${formatBytes(g.growthBytes)}`, g.isNew ? '(new)' : formatBytes(g.ownBytesBefore), formatBytes(g.ownBytesAfter),
      `${g.arraySizeBefore}->${g.arraySizeAfter}`, `${g.hashSizeBefore}->${g.hashSizeAfter}`, safeText(g.path),
    ])).split('\n').map((l) => '    ' + l).join('\n'));
  }
  for (const p of vm.problems) out.push(`  problem: ${safeText(p)}`);
  return out;
}

function tableRow(t: LuaTable): string[] {
  return [formatBytes(t.shallowBytes + t.payloadBytes), formatBytes(t.shallowBytes), formatBytes(t.payloadBytes), formatBytes(t.retainedBytes), String(t.arraySize), String(t.hashSize), safeText(t.path)];
}

export function luaJson(h: LuaHeaps, growth?: LuaGrowthReport): object {
  return {
    schema: 'leakscope.lua/1',
    target: h.target, pid: h.pid, library: h.library ?? null, libraryBuildId: h.libraryBuildId ?? null,
    regionBytes: h.regionBytes, copySeconds: h.copySeconds, frozenSeconds: h.frozenSeconds ?? null, consistency: h.consistency, problems: h.problems,
    directChunks: h.directChunks.map((d) => ({ address: d.start, bytes: d.end - d.start, chunkBytes: d.chunkBytes })),
    vms: h.vms.map((vm) => ({
      globalState: vm.globalState, mainThread: vm.mainThread, foundBy: vm.foundBy, layouts: vm.layouts,
      gcTotal: vm.gcTotal, gcState: vm.gcState, gcThreshold: vm.gcThreshold,
      types: vm.types.map((t) => ({ type: t.type, count: t.count, bytes: t.bytes, maxBytes: t.maxBytes })),
      nonObject: vm.nonObject, objectBytes: vm.objectBytes, nonObjectBytes: vm.nonObjectBytes, censusDelta: vm.delta,
      tables: vm.tables, reachedObjects: vm.reachedObjects, pendingGarbage: vm.pendingGarbage,
      alloc: { segments: vm.alloc.segments.map((s) => ({ address: s.start, bytes: s.end - s.start, usedBytes: s.usedBytes ?? 0, freeBytes: s.freeBytes ?? 0 })), usedBytes: vm.alloc.usedBytes, freeBytes: vm.alloc.freeBytes },
      growth: growth?.vms.find((g) => g.globalState === vm.globalState) ?? null,
      partial: vm.partial, problems: vm.problems,
    })),
    ...(growth ? { baseline: growth.baseline } : {}),
  };
}

/** The tables of each VM of a saved `lua --json` document (the baseline of `lua --baseline`), validated. */
export function luaTablesFromJson(doc: unknown): Array<{ globalState: number; gcTotal: number; tables: LuaTable[] }> {
  const d = doc as { schema?: unknown; vms?: unknown };
  if (!d || d.schema !== 'leakscope.lua/1' || !Array.isArray(d.vms)) throw new LeakscopeError('malformed', 'not a leakscope.lua/1 document');
  return d.vms.map((v: unknown, i: number) => {
    const vm = v as { globalState?: unknown; gcTotal?: unknown; tables?: unknown };
    if (typeof vm.globalState !== 'number' || typeof vm.gcTotal !== 'number' || !Array.isArray(vm.tables)) throw new LeakscopeError('malformed', `vms[${i}]: missing globalState / gcTotal / tables`);
    const tables = vm.tables.map((t: unknown, j: number) => {
      const x = t as Record<string, unknown>;
      for (const k of ['address', 'shallowBytes', 'payloadBytes', 'retainedBytes', 'arraySize', 'hashSize']) if (typeof x[k] !== 'number') throw new LeakscopeError('malformed', `vms[${i}].tables[${j}].${k} is not a number`);
      if (typeof x.path !== 'string') throw new LeakscopeError('malformed', `vms[${i}].tables[${j}].path is not a string`);
      return x as unknown as LuaTable;
    });
    return { globalState: vm.globalState, gcTotal: vm.gcTotal, tables };
  });
}
