// Address -> (module, function, offset) and name -> runtime address, across a target's modules.
// Sources per module: the object's .symtab/.dynsym, then its debug file's .symtab.
// A frame with no covering symbol keeps function = null (shown as module+0xOFFSET), never
// a misleading nearest name.

import { basename } from 'node:path';
import type { ElfFile, ElfSymbol } from '../formats/elf/index.js';
import { loadElf } from '../formats/elf/index.js';
import type { Frame, Module } from '../model/index.js';
import { LeakscopeError } from '../model/errors.js';
import { findDebugFile } from './debug-files.js';
import { calledFunction } from './called-function.js';
import { demangle } from './demangle.js';
import { lineAt, parseDebugLine } from '../formats/dwarf/line.js';
import type { LineTable } from '../formats/dwarf/line.js';
import { inlinedAt, parseInlines } from '../formats/dwarf/inlines.js';
import type { InlineIndex } from '../formats/dwarf/inlines.js';

export interface ModuleSymbols {
  module: Module;
  elf: ElfFile;
  debug?: { path: string; elf: ElfFile };
}

/** Where a symbol came from: the object itself or its debug file. */
export type SymbolSource = 'symtab' | 'dynsym' | 'debug-file';

export interface ResolvedSymbol {
  name: string;
  runtimeAddr: number;
  size: number;
  module: Module;
  source: SymbolSource;
}

export class Symbolizer {
  private info = new Map<string, ModuleSymbols | null>();
  constructor(readonly modules: readonly Module[]) {}

  /** Parsed ELF and debug file of a module (cached; null when unreadable). */
  symbolsOf(mod: Module): ModuleSymbols | null {
    let s = this.info.get(mod.path);
    if (s === undefined) {
      try {
        const elf = loadElf(mod.hostPath, { label: mod.path });
        s = { module: mod, elf, debug: findDebugFile(elf, mod.path, mod.files) };
      } catch {
        s = null;
      }
      this.info.set(mod.path, s);
    }
    return s;
  }

  private lines = new Map<string, LineTable | null>();
  /** The file whose .debug_line gave a module's line table (its .debug_info holds the inlined calls). */
  private lineElf = new Map<string, ElfFile>();
  private inlines = new Map<string, InlineIndex | null>();

  /**
   * Source file and line of a runtime address from the module's DWARF line table (its debug file's,
   * found by build ID / debuglink, else its own .debug_line), or undefined.
   */
  lineOf(addr: number): { file: string; line: number } | undefined {
    const mod = this.moduleAt(addr);
    if (!mod) return undefined;
    let t = this.lines.get(mod.path);
    if (t === undefined) {
      t = null;
      const s = this.symbolsOf(mod);
      for (const elf of [s?.debug?.elf, s?.elf]) {
        if (!elf?.section('.debug_line')) continue;
        try {
          t = parseDebugLine(elf);
        } catch {
          t = null;
        }
        if (t?.rows.length) {
          this.lineElf.set(mod.path, elf);
          break;
        }
      }
      this.lines.set(mod.path, t);
    }
    const row = t ? lineAt(t, addr - mod.loadBias) : undefined;
    return row ? { file: row.file, line: row.line } : undefined;
  }

  /**
   * The inlined calls holding a runtime address, innermost first (DWARF .debug_info of the file that
   * gave the line table): each inlined function's name and the file:line it was called from. Empty
   * without DWARF or outside inlined code.
   */
  inlinedAt(addr: number): Array<{ name: string | undefined; callFile: string; callLine: number }> {
    const mod = this.moduleAt(addr);
    if (!mod || !this.lineOf(addr)) return [];
    let idx = this.inlines.get(mod.path);
    if (idx === undefined) {
      const elf = this.lineElf.get(mod.path);
      const files = this.lines.get(mod.path)?.files;
      idx = null;
      if (elf && files) {
        try {
          idx = parseInlines(elf, files);
        } catch {
          idx = null;
        }
      }
      this.inlines.set(mod.path, idx);
    }
    return idx ? inlinedAt(idx, addr - mod.loadBias) : [];
  }

  moduleAt(addr: number): Module | undefined {
    for (const mod of this.modules) for (const m of mod.mappings) if (addr >= m.start && addr < m.end) return mod;
    return undefined;
  }

  /** Modules whose basename starts with `prefix` ("libc.so", "nginx"). */
  modulesNamed(prefix: string): Module[] {
    return this.modules.filter((m) => basename(m.path).startsWith(prefix));
  }

  /** One frame for a runtime address. */
  frame(addr: number): Frame {
    const mod = this.moduleAt(addr);
    if (!mod) return { function: null, module: '[unknown]', offset: addr, address: addr };
    const m = mod.mappings.find((x) => addr >= x.start && addr < x.end);
    const vaddr = addr - mod.loadBias;
    const s = this.symbolsOf(mod);
    let sym: ElfSymbol | undefined;
    if (s) sym = s.elf.symbolAt(vaddr) ?? s.debug?.elf.symbolAt(vaddr);
    const raw = sym ? sym.name.split('@')[0]! : null;
    const shown = raw === null ? null : demangle(raw);
    return {
      function: shown,
      module: basename(mod.path),
      offset: vaddr,
      ...(raw !== null && shown !== raw ? { mangled: raw } : {}),
      ...(sym ? { functionOffset: vaddr - sym.value } : {}),
      modulePath: mod.path,
      ...(mod.buildId ? { buildId: mod.buildId } : {}),
      address: addr,
      ...(m ? { mapping: { start: m.start, end: m.end, fileOffset: m.offset } } : {}),
    };
  }

  /**
   * When the function holding `calleeAddr` goes by several names (aliases at one address: glibc
   * 2.36's aligned_alloc and memalign), the name the call returning to `returnAddr` used, decoded
   * from the caller's ELF file (called-function.ts); undefined when the function has one name or
   * the call site cannot tell.
   */
  calledAlias(calleeAddr: number, returnAddr: number): string | undefined {
    const callee = this.moduleAt(calleeAddr);
    const caller = this.moduleAt(returnAddr);
    if (!callee || !caller) return undefined;
    const cs = this.symbolsOf(callee);
    const sym = cs?.elf.symbolAt(calleeAddr - callee.loadBias);
    if (!cs || !sym) return undefined;
    const key = `${callee.path}:${sym.value}`;
    let names = this.aliases.get(key);
    if (!names) {
      names = new Set();
      for (const s of cs.elf.symbols())
        if (s.value === sym.value && s.shndx !== 0 && s.type === 'func' && s.name) names.add(s.name.split('@')[0]!);
      this.aliases.set(key, names);
    }
    if (names.size < 2) return undefined;
    const elf = this.symbolsOf(caller)?.elf;
    const c = elf ? calledFunction(elf, returnAddr - caller.loadBias, names) : undefined;
    return c && names.has(c.name) ? c.name : undefined;
  }
  private aliases = new Map<string, Set<string>>();

  /** Resolves a symbol by name in the given modules (default: all), object first, then its debug file. */
  lookup(name: string, opts: { module?: string } = {}): ResolvedSymbol | undefined {
    const mods = opts.module ? this.modulesNamed(opts.module) : this.modules;
    for (const mod of mods) {
      const s = this.symbolsOf(mod);
      if (!s) continue;
      const own = s.elf.findSymbol(name);
      if (own) return { name, runtimeAddr: own.value + mod.loadBias, size: own.size, module: mod, source: own.source };
      const dbg = s.debug?.elf.findSymbol(name);
      if (dbg)
        return { name, runtimeAddr: dbg.value + mod.loadBias, size: dbg.size, module: mod, source: 'debug-file' };
    }
    return undefined;
  }

  /** Like lookup, but a missing symbol is a LeakscopeError('not-found'). */
  require(name: string, opts: { module?: string } = {}): ResolvedSymbol {
    const r = this.lookup(name, opts);
    if (!r)
      throw new LeakscopeError('not-found', `symbol ${name} not found${opts.module ? ` in ${opts.module}*` : ''}`);
    return r;
  }
}
