// The inputs of the memory breakdown from the models: glibc's regions and nginx's shm zones.
import type { AddressSpace } from '../target/address-space.js';
import type { Symbolizer } from '../symbols/index.js';
import type { BreakdownInputs } from './memory-breakdown.js';
import { glibcRegions } from '../glibc/index.js';
import { nginxShmZones } from '../nginx/index.js';
import { luajitRegions } from '../luajit/index.js';
import { isLeakscopeError } from '../model/errors.js';

/** The inputs of the memory breakdown: glibc's regions and nginx's shm zones, when found. */
export function breakdownInputsFor(space: AddressSpace, symbolizer: Symbolizer): BreakdownInputs {
  const inputs: BreakdownInputs = { notes: [] };
  const lj = luajitRegions(space, symbolizer);
  if (lj.vms)
    inputs.luajit = {
      regions: lj.regions,
      gcTotalBytes: lj.gcTotalBytes,
      source: `lj_alloc segments and direct chunks of ${lj.vms} Lua VM(s); in use = Σ gc.total`,
    };
  try {
    const g = glibcRegions(space, symbolizer, undefined, lj.regions);
    const libc = symbolizer.lookup('main_arena', { module: 'libc.so' });
    inputs.glibc = {
      ...g,
      source: libc
        ? `arena ring from main_arena (${libc.source}); mmapped chunks by validated headers`
        : 'arena ring located without symbols (top-chunk search); mmapped chunks by validated headers',
    };
  } catch (e) {
    if (!isLeakscopeError(e)) throw e;
    inputs.notes!.push(`glibc allocator state not found: ${e.message}`);
  }
  if (symbolizer.lookup('ngx_cycle')) {
    try {
      inputs.shmZones = nginxShmZones(space, symbolizer).map((z) => ({
        name: z.name,
        address: z.address,
        size: z.size,
        module: z.module ?? undefined,
        slab: z.slab
          ? {
              pageSize: z.slab.pageSize,
              pages: z.slab.pages,
              freePages: z.slab.freePages,
              usedPages: z.slab.usedPages,
              freeListPages: z.slab.freeListPages,
              slots: z.slab.slots,
              problems: z.slab.problems,
            }
          : null,
        ...(z.slabProblem !== undefined ? { slabProblem: z.slabProblem } : {}),
      }));
    } catch (e) {
      if (!isLeakscopeError(e)) throw e;
      inputs.notes!.push(`nginx shared memory zones not read: ${e.message}`);
    }
  }
  return inputs;
}
