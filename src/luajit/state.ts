// Finding a process's Lua VMs (global_State) without symbols, and the validation gate every
// candidate passes before anything is believed (shared/reference/luajit.md §3.1, §4).
// LuaJIT keeps no global pointer to its state. Ways in:
//   A. nginx: ngx_cycle -> conf_ctx[ngx_http_module.index] -> main_conf[ngx_http_lua_module.ctx_index]
//      = ngx_http_lua_main_conf_t, whose first field `lua` is the main lua_State (same for
//      ngx_stream_lua_module with ngx_stream_module). Needs only .dynsym.
//   B. allocator probe: GG_State is lj_alloc's first allocation, at a fixed offset from the
//      first mmap (tbase + 16 + sizeof(malloc_state) rounded + 16 header): probe every page of
//      the anonymous rw mappings for L->glref == L + (GG.g - GG.L).
//   C. full scan: every 8-aligned word of anonymous rw memory that looks like a thread header
//      whose glref g has g->mainthref == it (any allocator; ~1 s/GiB).

import type { AddressSpace } from '../target/address-space.js';
import { findMapping } from '../target/address-space.js';
import type { Symbolizer } from '../symbols/index.js';
import { basename } from 'node:path';
import { layoutCandidates } from './layouts.js';
import type { LuajitLayouts } from './layouts.js';
import { anonymousRw } from './alloc.js';
import { pageAlignedBuffer } from '../target/aligned-buffer.js';

/** gct values (~LJ_T*), lj_obj.h. */
export const GCT = { str: 4, upval: 5, thread: 6, proto: 7, func: 8, trace: 9, cdata: 10, tab: 11, udata: 12 } as const;
/** gc.state values, lj_obj.h GCSpause.. */
export const GC_STATES = ['pause', 'propagate', 'atomic', 'sweepstring', 'sweep', 'finalize'] as const;

/** The libluajit object a process maps (its path and build-id), if any. */
export function luajitLibrary(
  space: AddressSpace,
): { path: string; buildId?: string; loadBias: number; textStart: number; textEnd: number } | undefined {
  const mods = space.modules();
  const lib =
    mods.find((m) => /^libluajit[^/]*\.so/.test(basename(m.path))) ??
    mods.find((m) => /^luajit(-[0-9.]+(-beta[0-9]+)?)?$/.test(basename(m.path)));
  for (const m of lib ? [lib] : []) {
    const text = m.mappings.find((x) => x.perms.startsWith('r-x'));
    return {
      path: m.path,
      buildId: m.buildId,
      loadBias: m.loadBias,
      textStart: text?.start ?? 0,
      textEnd: text?.end ?? 0,
    };
  }
  return undefined;
}

export interface VmCandidate {
  /** Main thread (lua_State) address. */
  mainThread: number;
  /** global_State address. */
  globalState: number;
  /** How it was found: 'nginx-http-lua', 'nginx-stream-lua', 'alloc-probe', 'scan'. */
  foundBy: string[];
}

export interface ValidatedVm extends VmCandidate {
  layouts: LuajitLayouts;
  checks: number;
}

const hex = (n: number) => '0x' + n.toString(16);

function u64(space: AddressSpace, addr: number): number | undefined {
  try {
    return space.readU64(addr);
  } catch {
    return undefined;
  }
}

/** A. The main lua_State of ngx_http_lua_module / ngx_stream_lua_module through nginx's module configuration. */
export function vmsFromNginx(space: AddressSpace, symbolizer: Symbolizer, problems: string[]): VmCandidate[] {
  const cycleSym = symbolizer.lookup('ngx_cycle');
  if (!cycleSym) return [];
  // ngx_cycle_t.conf_ctx and ngx_module_t.{ctx_index,index} are at 0 and 8 in every nginx >= 1.9.11
  // (ngx_cycle.h, ngx_module.h: NGX_MODULE_V1 starts with ctx_index, index).
  const cycle = u64(space, cycleSym.runtimeAddr);
  if (!cycle) {
    problems.push('ngx_cycle unreadable');
    return [];
  }
  const confCtx = u64(space, cycle);
  const out: VmCandidate[] = [];
  for (const [core, lua, tag] of [
    ['ngx_http_module', 'ngx_http_lua_module', 'nginx-http-lua'],
    ['ngx_stream_module', 'ngx_stream_lua_module', 'nginx-stream-lua'],
  ] as const) {
    const coreSym = symbolizer.lookup(core),
      luaSym = symbolizer.lookup(lua);
    if (!coreSym || !luaSym || !confCtx) continue;
    const index = u64(space, coreSym.runtimeAddr + 8),
      ctxIndex = u64(space, luaSym.runtimeAddr);
    if (index === undefined || ctxIndex === undefined || index > 4096 || ctxIndex > 4096) {
      problems.push(`${lua}: module indices unreadable`);
      continue;
    }
    const ctx = u64(space, confCtx + 8 * index); // ngx_http_conf_ctx_t *
    const mainConf = ctx ? u64(space, ctx) : undefined; // ->main_conf (offset 0)
    const lmcf = mainConf ? u64(space, mainConf + 8 * ctxIndex) : undefined;
    const L = lmcf ? u64(space, lmcf) : undefined; // ngx_http_lua_main_conf_t.lua (offset 0)
    if (!L) {
      problems.push(`${lua}: no Lua VM in its main configuration (module loaded but not initialised?)`);
      continue;
    }
    const g = u64(space, L + 16);
    if (g) out.push({ mainThread: L, globalState: g, foundBy: [tag] });
  }
  return out;
}

/** B. lj_alloc probe: GG_State at the allocator's first chunk, found on any page of anonymous rw memory. */
export function vmsFromAllocProbe(space: AddressSpace, layouts: LuajitLayouts): VmCandidate[] {
  const s = layouts.structs;
  const msChunk = roundUp(s.malloc_state!.sizeof! + 8, 8); // pad_request(sizeof(struct malloc_state))
  const lOff = 16 + msChunk; // tbase + chunk2mem(msp) + msChunk + header
  const gOff = s.GG_State!.g! - s.GG_State!.L!;
  const glref = s.lua_State!.glref!;
  const out: VmCandidate[] = [];
  const buf = Buffer.alloc(8);
  for (const m of anonymousRw(space)) {
    for (let page = m.start; page + lOff + glref + 8 <= m.end; page += 4096) {
      if (space.readInto(page + lOff + glref, buf, 0, 8) !== 8) continue;
      const v = buf.readUInt32LE(4) * 4294967296 + buf.readUInt32LE(0);
      if (v === page + lOff + gOff) out.push({ mainThread: page + lOff, globalState: v, foundBy: ['alloc-probe'] });
    }
  }
  return out;
}

function roundUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/** C. Full scan of anonymous rw memory for a thread header whose global_State points back to it as main thread. */
export function vmsFromScan(space: AddressSpace, layouts: LuajitLayouts): VmCandidate[] {
  const s = layouts.structs;
  const gct = s.GChead!.gct!,
    glref = s.lua_State!.glref!,
    mainth = s.global_State!.mainthref!;
  const out: VmCandidate[] = [];
  const WINDOW = 4 << 20;
  const buf = pageAlignedBuffer(WINDOW);
  for (const m of anonymousRw(space)) {
    for (let base = m.start; base < m.end; base += WINDOW) {
      const n = space.readInto(base, buf, 0, Math.min(WINDOW, m.end - base));
      for (let o = 0; o + glref + 8 <= n; o += 8) {
        if (buf[o + gct] !== GCT.thread) continue;
        const g = buf.readUInt32LE(o + glref + 4) * 4294967296 + buf.readUInt32LE(o + glref);
        const A = base + o;
        if (g <= A || g - A > 4096) continue;
        if (u64(space, g + mainth) === A) out.push({ mainThread: A, globalState: g, foundBy: ['scan'] });
      }
    }
  }
  return out;
}

/**
 * The validation gate (reference §3.1): the candidate's thread and global state agree with
 * each other and with the layouts. Returns the failed check, or undefined when all pass.
 */
export function validateState(
  space: AddressSpace,
  c: VmCandidate,
  layouts: LuajitLayouts,
  lib?: { textStart: number; textEnd: number },
): { failed?: string; checks: number } {
  const s = layouts.structs;
  const G = s.global_State!,
    T = s.lua_State!,
    H = s.GChead!;
  let checks = 0;
  const fail = (why: string) => ({ failed: why, checks });
  const maps = space.mappings();
  const Lm = findMapping(maps, c.mainThread),
    gm = findMapping(maps, c.globalState);
  if (!Lm || !gm) return fail('state not in mapped memory');
  let Lb: Buffer, gb: Buffer;
  try {
    Lb = space.read(c.mainThread, T.sizeof!);
    gb = space.read(c.globalState, G.sizeof!);
  } catch {
    return fail('state unreadable');
  }
  const q = (b: Buffer, o: number) => b.readUInt32LE(o + 4) * 4294967296 + b.readUInt32LE(o);
  const check = (ok: boolean, why: string) => {
    if (ok) checks++;
    return ok ? undefined : why;
  };
  const failures = [
    check(Lb[H.gct!] === GCT.thread, 'main thread gct != thread'),
    check(q(Lb, T.glref!) === c.globalState, 'L->glref != g'),
    check(q(gb, G.mainthref!) === c.mainThread, 'g->mainthref != L'),
    check(c.globalState - c.mainThread === s.GG_State!.g! - s.GG_State!.L!, 'g - L != offsetof(GG_State, g)'),
    check(
      gb[G.strempty! + H.gct!] === GCT.str && gb.readUInt32LE(G.strempty! + s.GCstr!.len!) === 0,
      'g->strempty is not an empty string',
    ),
    check(isPow2(gb.readUInt32LE(G['str.mask']!) + 1), 'str.mask + 1 is not a power of 2'),
    check(gb[G['gc.state']!]! <= 5, 'gc.state out of range'),
    check(gb.readInt32LE(G.registrytv! + 4) >> 15 === -12, 'registry is not a table'),
    check(q(gb, G['gc.total']!) > 0 && q(gb, G['gc.total']!) < 2 ** 46, 'gc.total implausible'),
  ].filter((x) => x !== undefined);
  if (failures.length) return fail(failures[0]!);
  // gcroot[0] is the interned "__index" (metamethod names first, lj_obj.h MMDEF order).
  const mm0 = q(gb, G.gcroot!);
  try {
    const hdr = space.read(mm0, s.GCstr!.sizeof! + 8);
    const len = hdr.readUInt32LE(s.GCstr!.len!);
    if (
      hdr[H.gct!] !== GCT.str ||
      len !== 7 ||
      hdr.subarray(s.GCstr!.sizeof!, s.GCstr!.sizeof! + 7).toString('latin1') !== '__index'
    )
      return fail('gcroot[0] is not "__index"');
    checks++;
  } catch {
    return fail('gcroot[0] unreadable');
  }
  // lj_alloc: allocf in libluajit's text, and malloc_state.prng == &g->prng.
  const allocf = q(gb, G.allocf!),
    allocd = q(gb, G.allocd!);
  if (lib?.textEnd && allocf >= lib.textStart && allocf < lib.textEnd) {
    checks++;
    const prng = u64(space, allocd + s.malloc_state!.prng!);
    if (prng !== c.globalState + G.prng!) return fail('lj_alloc malloc_state.prng != &g->prng');
    checks++;
  }
  return { checks };
}

function isPow2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

export interface LocateResult {
  vms: ValidatedVm[];
  rejected: Array<{ candidate: VmCandidate; why: string }>;
  problems: string[];
  library?: ReturnType<typeof luajitLibrary>;
}

/**
 * Every Lua VM of the target: nginx's module configuration (A) when nginx is there, the
 * allocator probe (B) always, the full scan (C) when asked (or when A and B found nothing and
 * `scanIfNone`). Candidates are merged by global_State and each must pass validateState under
 * one of the layout candidates (exact build-id entry first).
 */
export function locateVms(
  space: AddressSpace,
  symbolizer: Symbolizer,
  opts: { scan?: boolean; scanIfNone?: boolean } = {},
): LocateResult {
  const problems: string[] = [];
  const lib = luajitLibrary(space);
  const layoutsList = layoutCandidates(lib?.buildId);
  const byG = new Map<number, VmCandidate>();
  const add = (cs: VmCandidate[]) => {
    for (const c of cs) {
      const prev = byG.get(c.globalState);
      if (prev) {
        for (const f of c.foundBy) if (!prev.foundBy.includes(f)) prev.foundBy.push(f);
      } else byG.set(c.globalState, { ...c, foundBy: [...c.foundBy] });
    }
  };
  add(vmsFromNginx(space, symbolizer, problems));
  for (const l of layoutsList) add(vmsFromAllocProbe(space, l));
  if (opts.scan || (opts.scanIfNone && byG.size === 0)) for (const l of layoutsList) add(vmsFromScan(space, l));
  const vms: ValidatedVm[] = [];
  const rejected: LocateResult['rejected'] = [];
  for (const c of byG.values()) {
    let why = 'no layouts';
    let ok: ValidatedVm | undefined;
    for (const l of layoutsList) {
      const v = validateState(space, c, l, lib);
      if (!v.failed) {
        ok = { ...c, layouts: l, checks: v.checks };
        break;
      }
      why = `${v.failed} (layouts ${l.source})`;
    }
    if (ok) vms.push(ok);
    else rejected.push({ candidate: c, why });
  }
  for (const r of rejected)
    if (r.candidate.foundBy.some((f) => f.startsWith('nginx')))
      problems.push(
        `${hex(r.candidate.globalState)} from ${r.candidate.foundBy.join('+')} failed validation: ${r.why}`,
      );
  vms.sort((a, b) => a.globalState - b.globalState);
  return { vms, rejected, problems, library: lib };
}
