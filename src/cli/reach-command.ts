// `leakscope heap --reach`: the census of the last scan plus the reachability of its in-use chunks.
import type { AddressSpace } from '../target/address-space.js';
import { Symbolizer } from '../symbols/index.js';
import { reachability } from '../glibc/index.js';
import { heapJson, renderHeapTable } from '../report/heap-table.js';
import { reachJson, renderReachTable } from '../report/reach-table.js';
import type { CommandResult } from './commands.js';

export interface ReachCliOptions { scans?: number; largest?: number }

export async function runHeapReach(space: AddressSpace, o: ReachCliOptions): Promise<CommandResult> {
  const symbolizer = new Symbolizer(space.modules());
  const r = await reachability(space, { symbolizer, scans: o.scans, largest: o.largest });
  return {
    text: () => `${renderHeapTable(r.census)}\n\n${renderReachTable(r.reachability)}`,
    json: () => ({ ...heapJson(r.census), reachability: reachJson(r.reachability) }),
  };
}
