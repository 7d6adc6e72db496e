// Lua heap growth by call path: a probe on libc mmap / mremap taken only when libluajit's code
// called it (lj_alloc mapping a new segment or direct chunk, or growing one), with the native
// stack and the Lua frames (lua-stack.ts). lj_alloc maps memory only when no free chunk fits, so
// the probe fires rarely (near-zero cost); a leak that fills free chunks first maps nothing
// until the free space is used up (shared/reference/luajit.md §7).

import { basename } from 'node:path';
import type { AddressSpace } from '../target/address-space.js';
import { pidNamespaceFilter } from '../target/pid-namespace.js';
import type { Frame } from '../model/index.js';
import { LeakscopeError } from '../model/errors.js';
import type { Symbolizer } from '../symbols/index.js';
import { loadElf } from '../formats/elf/index.js';
import { locateVms, luajitLibrary } from '../luajit/index.js';
import type { LuajitLayouts } from '../luajit/index.js';
import type { CapturedEvent } from './capture.js';
import { EventKind } from './capture.js';
import { TraceSession } from './session.js';
import { luaGrowthProgram } from './programs.js';
import { StackResolver } from './stacks.js';
import { LUA_MODULE, LuaFrameResolver, decodeLuaBlock, luaKey, luaWalkConfig, spliceLuaFrames } from './lua-stack.js';
import type { LuaCapture, LuaWalkConfig } from './lua-stack.js';

export interface LuaGrowthSite {
  /** Leaf first: mmap, libluajit's allocator (hidden), the Lua frames, the VM's native callers. */
  frames: Frame[];
  /** The innermost Lua frame with a line: "chunk:line", "[trace N] chunk:line" for JIT code (the trace's start; null: no Lua frame). */
  luaLocation: string | null;
  bytes: number;
  count: number;
}

export interface LuaGrowthTrace {
  seconds: number;
  /** mmap / mremap calls from libluajit seen, and the bytes they mapped. */
  maps: number;
  bytes: number;
  sites: LuaGrowthSite[];
  probes: string[];
  notes: string[];
}

/** Everything of one event the result needs after the stack copy is gone. */
export interface LuaPathRecord {
  pcs: number[];
  capture?: LuaCapture;
  cut: number;
  outer: number[];
  spOffsets: readonly number[];
  cfOffset: number;
  /** True when `outer` is pcs[cut..] (the native walk got past the VM's frame by itself). */
  outerNative?: boolean;
  key: string;
  stopReason: ReturnType<StackResolver['unwind']>['stopReason'];
}

/** Unwinds a capture and places its Lua block (cut at the VM's C frame, its native callers). */
export function luaPathRecord(resolver: StackResolver, e: CapturedEvent): LuaPathRecord {
  const u = resolver.unwind(e);
  const capture = e.lua ? decodeLuaBlock(e.lua) : undefined;
  if (!capture?.frames.length)
    return {
      pcs: u.pcs,
      cut: u.pcs.length,
      outer: [],
      spOffsets: u.spOffsets,
      cfOffset: 0,
      key: u.pcs.join(','),
      stopReason: u.stopReason,
    };
  const cfOffset = capture.cframe - e.regs.rsp;
  let cut = u.pcs.length;
  let restart = false;
  for (let i = 0; i < u.pcs.length; i++) {
    if ((u.spOffsets[i] ?? Infinity) > cfOffset) {
      cut = i;
      break;
    }
    // JIT code (no unwind info): what the walk found past it is a guess; restart at the VM's frame.
    if (i > 0 && !resolver.inModule(u.pcs[i]! - 1)) {
      cut = i + 1;
      restart = true;
      break;
    }
  }
  const outer = cut < u.pcs.length && !restart ? u.pcs.slice(cut) : resolver.unwindFromVmFrame(e, capture.cframe);
  return {
    pcs: u.pcs,
    capture,
    cut,
    outer,
    outerNative: cut < u.pcs.length && !restart,
    spOffsets: u.spOffsets,
    cfOffset,
    key: `${u.pcs.slice(0, cut).join(',')}|${luaKey(capture)}|${outer.join(',')}`,
    stopReason: u.stopReason,
  };
}

/** The frames of a record: native, with the Lua frames spliced in. */
export function luaPathFrames(
  resolver: StackResolver,
  /** undefined: native frames only (inner + the VM's callers). */
  lua: LuaFrameResolver | undefined,
  r: LuaPathRecord,
  luajitModule: string | undefined,
  showInternal = false,
): Frame[] {
  const f = resolver.frames(r.pcs);
  if (!r.capture) return f;
  const outer = r.outerNative ? f.slice(r.cut) : resolver.frames([0, ...r.outer]).slice(1);
  return spliceLuaFrames(
    f.slice(0, r.cut),
    r.spOffsets,
    r.cfOffset,
    lua ? lua.frames(r.capture) : [],
    outer,
    luajitModule,
    showInternal,
  );
}

/** The Lua VMs a probe can walk (layouts with the walk's fields; at most 4). */
export function walkableLuaVms(
  space: AddressSpace,
  symbolizer: Symbolizer,
): Array<{ cfg: LuaWalkConfig; layouts: LuajitLayouts }> {
  if (!luajitLibrary(space)) return [];
  try {
    const out: Array<{ cfg: LuaWalkConfig; layouts: LuajitLayouts }> = [];
    for (const vm of locateVms(space, symbolizer).vms.slice(0, 4)) {
      const cfg = luaWalkConfig(vm.globalState, vm.layouts);
      if (cfg) out.push({ cfg, layouts: vm.layouts });
    }
    return out;
  } catch {
    return [];
  }
}

/**
 * Starts the growth probes on a live process with Lua VMs. `stop()` detaches them and returns
 * the growth by call path. Throws a LeakscopeError when the probes cannot be attached.
 */
export function startLuaGrowthTrace(space: AddressSpace, symbolizer: Symbolizer): { stop: () => LuaGrowthTrace } {
  if (space.kind !== 'live') throw new LeakscopeError('usage', 'Lua growth tracing needs a live process');
  const lib = luajitLibrary(space);
  if (!lib?.textEnd) throw new LeakscopeError('not-found', `${space.description}: no libluajit text mapping`);
  const vms = walkableLuaVms(space, symbolizer);
  if (!vms.length) throw new LeakscopeError('not-found', `${space.description}: no Lua VM to walk`);
  const libc = symbolizer.modulesNamed('libc.so')[0];
  if (!libc) throw new LeakscopeError('not-found', `${space.description}: libc.so is not loaded`);
  const libcElf = loadElf(libc.hostPath);
  const resolver = new StackResolver(space);
  const records = new Map<string, { rec: LuaPathRecord; bytes: number; count: number }>();
  let maps = 0,
    bytes = 0;
  const onEvent = (e: CapturedEvent) => {
    if (e.kind !== EventKind.luaGrowth) return;
    maps++;
    bytes += e.size;
    const rec = luaPathRecord(resolver, e);
    const b = records.get(rec.key);
    if (b) {
      b.bytes += e.size;
      b.count++;
    } else records.set(rec.key, { rec, bytes: e.size, count: 1 });
  };
  const session = new TraceSession({ pid: space.pid, onEvent, ringBytes: 1 << 20, maxOutstanding: 16 });
  const pidns = pidNamespaceFilter(space.pid);
  const probes: string[] = [];
  try {
    for (const call of ['mmap', 'mremap'] as const) {
      const sym = libcElf.findSymbol(call);
      if (!sym) continue;
      session.add({
        name: `libc:${call}`,
        binaryPath: libc.hostPath,
        vaddr: sym.value,
        retprobe: false,
        body: luaGrowthProgram(session.tracerMaps, {
          tgid: space.pid,
          pidns,
          call,
          callerStart: lib.textStart,
          callerEnd: lib.textEnd,
          lua: vms.map((v) => v.cfg),
        }),
      });
    }
    session.start();
    probes.push(...session.probeNames());
  } catch (e) {
    session.close();
    throw e;
  }
  const t0 = performance.now();
  return {
    stop: (): LuaGrowthTrace => {
      const seconds = (performance.now() - t0) / 1000;
      session.detach();
      session.drain();
      session.close();
      resolver.withLines = true;
      const lua = new LuaFrameResolver(space, vms[0]!.layouts, symbolizer);
      const ljModule = basename(lib.path);
      const sites: LuaGrowthSite[] = [...records.values()]
        .map(({ rec, bytes: b, count }) => {
          const frames = luaPathFrames(resolver, lua, rec, ljModule);
          const at = frames.find((f) => f.module === LUA_MODULE && f.line !== undefined);
          return { frames, luaLocation: at ? at.function : null, bytes: b, count };
        })
        .sort((a, b) => b.bytes - a.bytes);
      return {
        seconds,
        maps,
        bytes,
        sites,
        probes,
        notes: [
          `libc mmap / mremap probed, kept only when called from ${ljModule} (lj_alloc growing the Lua heap); a leak that fills free chunks maps nothing until they run out`,
        ],
      };
    },
  };
}
