// `leakscope heap --reach`: the census of the last scan plus the reachability of its in-use chunks.
import type { AddressSpace } from '../target/address-space.js';
import { Symbolizer } from '../symbols/index.js';
import { reachability } from '../glibc/index.js';
import { encodeHeap } from '../contract/index.js';
import { renderHeapTable } from '../report/heap-table.js';
import { renderReachTable } from '../report/reach-table.js';
import type { CommandResult } from './commands.js';

export interface ReachCliOptions {
  scans?: number;
  largest?: number;
}

export async function runHeapReach(space: AddressSpace, o: ReachCliOptions): Promise<CommandResult> {
  const symbolizer = new Symbolizer(space.modules());
  const r = await reachability(space, { symbolizer, scans: o.scans, largest: o.largest });
  const doc = encodeHeap(r.census, { reachability: r.reachability });
  return { text: () => `${renderHeapTable(doc)}\n\n${renderReachTable(doc.reachability!)}`, json: () => doc };
}
