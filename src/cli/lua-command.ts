// `leakscope lua PID`: every Lua VM of the target, GC objects by type, the largest tables by
// path; with --baseline FILE (a saved `lua --json`) or --pause S (two snapshots S seconds
// apart), the tables that grew.
import type { AddressSpace } from '../target/address-space.js';
import { readUserFile } from '../target/target-files.js';
import { Symbolizer } from '../symbols/index.js';
import { LeakscopeError, isLeakscopeError } from '../model/errors.js';
import { luaHeaps, tableGrowth } from '../luajit/index.js';
import type { LuaGrowth, LuaTable } from '../luajit/index.js';
import { encodeLua, parseJsonText, parseLua } from '../contract/index.js';
import { renderLuaText } from '../report/lua-table.js';
import type { CommandResult } from './commands.js';

export interface LuaCliOptions {
  tables: number;
  baseline?: string;
  pause?: number;
  scan?: boolean;
  freeze?: boolean;
}

/** Tables compared between two snapshots (more than are listed, so a table that grew into the list is matched). */
const COMPARED_TABLES = 1000;

type Snapshot = Array<{ globalState: number; gcTotal: number; tables: LuaTable[] }>;

export async function runLua(space: AddressSpace, o: LuaCliOptions): Promise<CommandResult> {
  if (o.baseline && o.pause !== undefined) throw new LeakscopeError('usage', '--baseline and --pause are exclusive');
  const symbolizer = new Symbolizer(space.modules());
  const opts = {
    symbolizer,
    scan: o.scan,
    freeze: o.freeze,
    tables: Math.max(o.tables, o.pause !== undefined ? COMPARED_TABLES : 0),
  };
  let first: Snapshot | undefined;
  if (o.baseline) first = readBaseline(o.baseline);
  else if (o.pause !== undefined) {
    first = luaHeaps(space, opts).vms;
    await new Promise((r) => setTimeout(r, o.pause! * 1000));
  }
  const h = luaHeaps(space, opts);
  if (!h.vms.length)
    throw new LeakscopeError(
      'not-found',
      `${space.description}: no Lua VM found (no LuaJIT state validated${h.problems.length ? `: ${h.problems[0]}` : ''})${o.scan ? '' : '; try --scan'}`,
    );
  let growth: LuaGrowth | undefined;
  if (first) {
    growth = {
      baseline: o.baseline ? `baseline ${o.baseline}` : `${o.pause} s pause`,
      vms: h.vms.map((vm) => {
        const b = first!.find((x) => x.globalState === vm.globalState);
        return {
          globalState: vm.globalState,
          gcTotalBefore: b?.gcTotal ?? 0,
          gcTotalAfter: vm.gcTotal,
          tables: tableGrowth(b?.tables ?? [], vm.tables, o.tables),
        };
      }),
    };
  }
  for (const vm of h.vms) vm.tables = vm.tables.slice(0, o.tables);
  const doc = encodeLua(h, growth);
  return { text: () => renderLuaText(doc), json: () => doc };
}

function readBaseline(path: string): Snapshot {
  // A regular file within the baseline size cap, bounded read (never a FIFO, /dev/zero or a directory).
  const text = readUserFile(path, 'baseline').toString('utf8');
  try {
    return parseLua(parseJsonText(text)).vms;
  } catch (e) {
    throw isLeakscopeError(e) && !e.message.startsWith(path) ? e.wrap(path) : e;
  }
}
