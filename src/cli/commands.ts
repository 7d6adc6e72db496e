// Command implementations: build the models for a target and hand back renderers.
import type { AddressSpace } from '../target/address-space.js';
import { Symbolizer } from '../symbols/index.js';
import { memoryBreakdown } from '../analysis/memory-breakdown.js';
import type { BreakdownInputs } from '../analysis/memory-breakdown.js';
import { memJson, renderMemTable } from '../report/mem-table.js';

export interface CommandResult { text: () => string; json: () => object }

export function runMem(space: AddressSpace): CommandResult {
  const symbolizer = new Symbolizer(space.modules());
  const inputs: BreakdownInputs = { notes: [] };
  void symbolizer;
  const b = memoryBreakdown(space, inputs);
  return { text: () => renderMemTable(b), json: () => memJson(b) };
}
