// Command implementations: build the models for a target and hand back renderers.
import type { AddressSpace } from '../target/address-space.js';
import { Symbolizer } from '../symbols/index.js';
import { memoryBreakdown } from '../analysis/memory-breakdown.js';
import type { BreakdownInputs } from '../analysis/memory-breakdown.js';
import { memJson, renderMemTable } from '../report/mem-table.js';
import { glibcRegions } from '../glibc/index.js';
import { nginxShmZones } from '../nginx/index.js';
import { isLeakscopeError } from '../model/errors.js';

export interface CommandResult { text: () => string; json: () => object }

/** The inputs of the memory breakdown: glibc's regions and nginx's shm zones, when found. */
export function breakdownInputs(space: AddressSpace, symbolizer: Symbolizer): BreakdownInputs {
  const inputs: BreakdownInputs = { notes: [] };
  try {
    const g = glibcRegions(space, symbolizer);
    const libc = symbolizer.lookup('main_arena', { module: 'libc.so' });
    inputs.glibc = { ...g, source: libc ? `arena ring from main_arena (${libc.source}); mmapped chunks by validated headers` : 'arena ring located without symbols (top-chunk search); mmapped chunks by validated headers' };
  } catch (e) {
    if (!isLeakscopeError(e)) throw e;
    inputs.notes!.push(`glibc allocator state not found: ${e.message}`);
  }
  if (symbolizer.lookup('ngx_cycle')) {
    try {
      inputs.shmZones = nginxShmZones(space, symbolizer).map((z) => ({ name: z.name, address: z.address, size: z.size, module: z.module ?? undefined }));
    } catch (e) {
      if (!isLeakscopeError(e)) throw e;
      inputs.notes!.push(`nginx shared memory zones not read: ${e.message}`);
    }
  }
  return inputs;
}

export function runMem(space: AddressSpace): CommandResult {
  const symbolizer = new Symbolizer(space.modules());
  const b = memoryBreakdown(space, breakdownInputs(space, symbolizer));
  return { text: () => renderMemTable(b), json: () => memJson(b) };
}
