// Where a process's LuaJIT heaps live, for `leakscope mem` (RSS by category) and to keep the
// glibc mmapped-chunk scan off them: every VM's lj_alloc segments and the direct chunks, and
// the bytes Lua itself accounts for in them (Σ g->gc.total). Cheap: locating the VMs (nginx's
// module configuration, the lj_alloc probe), the segment records, one 16-byte read per page of
// anonymous memory for direct chunks; no heap copy and no object walk.

import type { AddressSpace } from '../target/address-space.js';
import type { Symbolizer } from '../symbols/index.js';
import { findDirectChunks, readSegments } from './alloc.js';
import type { AllocRange } from './alloc.js';
import { locateVms } from './state.js';

export interface LuajitRegions {
  /** lj_alloc segments and direct chunks, sorted by address. */
  regions: Array<AllocRange & { label: string }>;
  /** Σ gc.total of the VMs: the bytes Lua accounts for inside the regions. */
  gcTotalBytes: number;
  vms: number;
  problems: string[];
}

export function luajitRegions(space: AddressSpace, symbolizer: Symbolizer): LuajitRegions {
  space.mappings({ refresh: true }); // the heap may have grown since the target was opened
  const loc = locateVms(space, symbolizer);
  const problems = [...loc.problems];
  const regions: LuajitRegions['regions'] = [];
  let gcTotalBytes = 0;
  for (const vm of loc.vms) {
    const G = vm.layouts.structs.global_State!;
    try {
      gcTotalBytes += space.readU64(vm.globalState + G['gc.total']!);
      const segs = readSegments(space, vm.layouts, space.readU64(vm.globalState + G.allocd!), problems);
      for (const s of segs) regions.push({ ...s, label: `lj_alloc segment (Lua VM 0x${vm.globalState.toString(16)})` });
    } catch {
      problems.push(`Lua VM 0x${vm.globalState.toString(16)}: state unreadable`);
    }
  }
  if (loc.vms.length)
    for (const d of findDirectChunks(space, regions))
      regions.push({ start: d.start, end: d.end, label: `lj_alloc direct chunk (${d.chunkBytes} B)` });
  regions.sort((a, b) => a.start - b.start);
  return { regions, gcTotalBytes, vms: loc.vms.length, problems };
}
