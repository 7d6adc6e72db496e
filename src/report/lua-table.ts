// `leakscope lua`: terminal text of a `leakscope.lua/1` document (contract/lua.ts): a process's
// Lua heaps and, when two snapshots were taken, the tables that grew. Paths and keys come from
// the target and are escaped (safeText) for the terminal.
import type { LuaDocument, LuaTableEntry, LuaVmEntry } from '../contract/lua.js';
import { formatBytes, safeText, textTable } from './text-format.js';

const hex = (n: number) => `0x${n.toString(16)}`;

export function renderLuaText(d: LuaDocument): string {
  const out: string[] = [];
  const regions = d.vms.reduce((a, v) => a + v.alloc.segments.length, 0);
  out.push(
    `${safeText(d.target)}: ${d.vms.length} Lua VM(s)${d.library ? `, ${safeText(d.library)}${d.libraryBuildId ? ` (build-id ${safeText(d.libraryBuildId)})` : ''}` : ', no LuaJIT library mapped'}`,
  );
  if (!d.vms.length) {
    out.push('no Lua VM found');
    for (const p of d.problems) out.push(`  problem: ${safeText(p)}`);
    return out.join('\n');
  }
  out.push(
    `lj_alloc regions ${formatBytes(d.regionBytes)} (${regions} segment(s), ${d.directChunks.length} direct chunk(s)), copied in ${d.copySeconds.toFixed(2)} s${d.frozenSeconds !== null ? ` (worker stopped ${d.frozenSeconds.toFixed(3)} s)` : ''}; ` +
      `consistency: ${d.consistency.quiescent ? 'quiescent' : d.consistency.sweepFree ? 'sweep-free' : 'not proved'} (${safeText(d.consistency.detail)})`,
  );
  for (const p of d.problems) out.push(`  problem: ${safeText(p)}`);
  for (const vm of d.vms) out.push('', ...renderVm(vm, d.baseline));
  return out.join('\n');
}

function renderVm(vm: LuaVmEntry, baseline: string | null): string[] {
  const out: string[] = [];
  out.push(
    `VM ${hex(vm.globalState)} (main thread ${hex(vm.mainThread)}, found by ${vm.foundBy.map(safeText).join(' + ')}; layouts ${safeText(vm.layouts)})`,
  );
  const census = vm.objectBytes + vm.nonObjectBytes;
  out.push(
    `  gc.total ${vm.gcTotal} B (${formatBytes(vm.gcTotal)}), gc.state ${safeText(vm.gcState)}; census ${census} B: ${vm.censusDelta === 0 ? 'exact' : `off by ${vm.censusDelta} B`}${vm.partial ? ' [PARTIAL]' : ''}`,
  );
  const rows = vm.types
    .filter((t) => t.count > 0)
    .map((t) => [safeText(t.type), String(t.count), formatBytes(t.bytes), String(t.bytes)]);
  rows.push(['non-object', '', formatBytes(vm.nonObjectBytes), String(vm.nonObjectBytes)]);
  out.push(indent(textTable(['type', 'objects', 'size', 'bytes'], rows), 2));
  if (vm.reachedObjects)
    out.push(
      `  reached from the roots: ${vm.reachedObjects} objects; pending garbage (unreached, freed by the next GC cycle): ${vm.pendingGarbage.count} objects, ${formatBytes(vm.pendingGarbage.bytes)}`,
    );
  const segBytes = vm.alloc.segments.reduce((a, s) => a + s.bytes, 0);
  out.push(
    `  lj_alloc: ${vm.alloc.segments.length} segment(s), ${formatBytes(segBytes)}: chunks in use ${formatBytes(vm.alloc.usedBytes)}, free ${formatBytes(vm.alloc.freeBytes)}`,
  );
  if (vm.tables.length) {
    out.push('  largest tables (own = shallow + payload: the table and the objects first reached through it):');
    out.push(
      indent(textTable(['own', 'shallow', 'payload', 'retained', 'array', 'hash', 'path'], vm.tables.map(tableRow)), 4),
    );
  }
  const g = vm.growth;
  if (g) {
    const d = g.gcTotalAfter - g.gcTotalBefore;
    out.push(
      `  growth since ${safeText(baseline ?? 'the first snapshot')}: gc.total ${formatBytes(g.gcTotalBefore)} -> ${formatBytes(g.gcTotalAfter)} (${d >= 0 ? '+' : ''}${d} B)`,
    );
    if (!g.tables.length) out.push('    no table grew');
    else
      out.push(
        indent(
          textTable(
            ['growth', 'own before', 'own after', 'array', 'hash', 'path'],
            g.tables.map((t) => [
              `+${formatBytes(t.growthBytes)}`,
              t.isNew ? '(new)' : formatBytes(t.ownBytesBefore),
              formatBytes(t.ownBytesAfter),
              `${t.arraySizeBefore}->${t.arraySizeAfter}`,
              `${t.hashSizeBefore}->${t.hashSizeAfter}`,
              safeText(t.path),
            ]),
          ),
          4,
        ),
      );
  }
  for (const p of vm.problems) out.push(`  problem: ${safeText(p)}`);
  return out;
}

function indent(s: string, n: number): string {
  const pad = ' '.repeat(n);
  return s
    .split('\n')
    .map((l) => pad + l)
    .join('\n');
}

function tableRow(t: LuaTableEntry): string[] {
  return [
    formatBytes(t.shallowBytes + t.payloadBytes),
    formatBytes(t.shallowBytes),
    formatBytes(t.payloadBytes),
    formatBytes(t.retainedBytes),
    String(t.arraySize),
    String(t.hashSize),
    safeText(t.path),
  ];
}
