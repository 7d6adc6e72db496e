// From captured registers + stack bytes to symbolized call paths: DWARF CFI unwinding over the
// target's modules (cached per module), then symbolization. A pc that no symbol covers stays
// `module+0xOFFSET` (frameLabel), never a misleading nearest name.

import type { AddressSpace } from '../target/address-space.js';
import type { Frame, Module } from '../model/index.js';
import { Symbolizer } from '../symbols/index.js';
import { CfiCache, ModuleMap, unwindStack } from '../unwind/index.js';
import type { StopReason } from '../unwind/index.js';
import type { CapturedEvent } from './capture.js';

/** Functions that mark a complete stack: the program's main or a thread's start. */
const ROOTS = new Set(['main', 'start_thread', 'clone', 'clone3', '__libc_start_main', '__libc_start_call_main', '_start']);

export interface UnwoundStack { pcs: number[]; stopReason: StopReason }

export class StackResolver {
  private modules: Module[];
  private symbolizer: Symbolizer;
  private moduleMap: ModuleMap;
  private readonly cfi = new CfiCache();
  private trampoline?: { start: number; end: number };
  private frameCache = new Map<number, Frame>();

  constructor(private readonly space: AddressSpace) {
    this.modules = space.modules();
    this.symbolizer = new Symbolizer(this.modules);
    this.moduleMap = this.makeMap();
  }

  private makeMap(): ModuleMap {
    const u = this.space.mappings().find((m) => m.path === '[uprobes]');
    this.trampoline = u ? { start: u.start, end: u.end } : undefined;
    return new ModuleMap(this.modules, this.cfi, { debugFileFor: (m) => this.symbolizer.symbolsOf(m)?.debug?.path });
  }

  /** Re-reads the target's modules (after dlopen) keeping parsed CFI. */
  refresh(): void {
    if (this.space.kind !== 'live') return;
    this.space.mappings({ refresh: true });
    const mods = this.space.modules();
    this.modules = mods;
    this.symbolizer = new Symbolizer(mods);
    this.moduleMap = this.makeMap();
    this.frameCache.clear();
  }

  unwind(e: CapturedEvent): UnwoundStack {
    const r = unwindStack({ ...e.regs }, e.stack, e.regs.rsp, this.moduleMap, { trampolineRange: this.trampoline });
    return { pcs: r.pcs, stopReason: r.stopReason };
  }

  /** Symbolized frames, leaf first. Return addresses are looked up at pc - 1 (the call instruction). */
  frames(pcs: readonly number[]): Frame[] {
    return pcs.map((pc, i) => {
      const lookup = i === 0 ? pc : pc - 1;
      let f = this.frameCache.get(lookup);
      if (!f) {
        f = this.symbolizer.frame(lookup);
        if (i > 0) f = { ...f, offset: f.offset + 1 };
        this.frameCache.set(lookup, f);
      }
      return f;
    });
  }

  /** True when the frames reach main or a thread start. */
  static complete(frames: readonly Frame[]): boolean {
    return frames.some((f) => f.function !== null && ROOTS.has(f.function));
  }
}
