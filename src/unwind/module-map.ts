// A ModuleResolver over a process's modules (model `Module`s, as the target layer builds them from
// /proc/PID/maps or a core file's NT_FILE): runtime address -> module, CFI loaded lazily through a
// shared CfiCache.

import type { Module } from '../model/index.js';
import type { ElfFile } from '../formats/elf/index.js';
import type { CfiCache } from './cfi-cache.js';
import type { ModuleResolver, UnwindModule } from './unwinder.js';

interface Range {
  start: number;
  end: number;
  module: Module;
  entry?: UnwindModule;
}

export interface ModuleMapOptions {
  /** Separate debug file for a module, parsed (the symbols layer finds it inside the target's root). */
  debugElfFor?: (m: Module) => ElfFile | undefined;
}

export class ModuleMap implements ModuleResolver {
  private readonly ranges: Range[];
  private last?: Range;

  constructor(
    modules: readonly Module[],
    private readonly cache: CfiCache,
    private readonly opts: ModuleMapOptions = {},
  ) {
    this.ranges = [];
    for (const m of modules) for (const mp of m.mappings) this.ranges.push({ start: mp.start, end: mp.end, module: m });
    this.ranges.sort((a, b) => a.start - b.start);
  }

  moduleAt(runtimeAddr: number): UnwindModule | undefined {
    let hit = this.last && runtimeAddr >= this.last.start && runtimeAddr < this.last.end ? this.last : undefined;
    if (!hit) {
      let lo = 0,
        hi = this.ranges.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const r = this.ranges[mid]!;
        if (runtimeAddr < r.start) hi = mid - 1;
        else if (runtimeAddr >= r.end) lo = mid + 1;
        else {
          hit = r;
          break;
        }
      }
    }
    if (!hit) return undefined;
    this.last = hit;
    if (!hit.entry) {
      const m = hit.module;
      // One UnwindModule per Module, shared by its ranges.
      const shared = this.ranges.find((r) => r.module === m && r.entry)?.entry;
      hit.entry = shared ?? {
        loadBias: m.loadBias,
        path: m.path,
        cfi: this.cache.get(m.hostPath, { buildId: m.buildId, debugElf: this.opts.debugElfFor?.(m) }),
      };
    }
    return hit.entry;
  }
}
