// The leak tracers (step 5): which C call paths allocated memory that is still outstanding at
// the end of a window.
//
//   --mode malloc  probes libc's allocation functions (entry, sampled + return) and free; the
//                  outstanding set lives in a BPF hash map; byte-weighted sampling decided in BPF.
//   --mode pool    one probe per pool creation at each call site of ngx_create_pool, after the
//                  call (rax = pool), except the sites whose pools nginx owns and destroys itself
//                  (pool-sites.ts); with --all-pool-sites (or when the sites are not all proven),
//                  at the instruction after ngx_create_pool's call to ngx_memalign. No uretprobe,
//                  no ngx_destroy_pool probe.
//                  Which pools are still alive, and how many bytes each holds, is read from
//                  memory at the end (the pool census), so the cost is one probe hit per pool.
//                  Probes may run on a duty cycle (attached part of each second).

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import type { AddressSpace } from '../target/address-space.js';
import { pidNamespaceFilter } from '../target/pid-namespace.js';
import type { Frame, LeakTrace, StackSample, TraceMode } from '../model/index.js';
import type { StackReach } from '../model/stacks.js';
import { LeakscopeError } from '../model/errors.js';
import { Symbolizer } from '../symbols/index.js';
import { loadElf } from '../formats/elf/index.js';
import { TraceSession, luaAllocProbes, mallocProbes, outstandingEntry, poolProbe } from './session.js';
import type { CapturedEvent } from './capture.js';
import { decodeCapture } from './capture.js';
import { StackResolver } from './stacks.js';
import { entryProbeOffsetAt, resultTestJumpVaddr, returnSiteOfCall } from './call-sites.js';
import { luajitLibrary } from '../luajit/index.js';
import { luaPathFrames, luaPathRecord, walkableLuaVms } from './lua-growth.js';
import type { LuaPathRecord } from './lua-growth.js';
import { LuaFrameResolver } from './lua-stack.js';
import { type PoolSitePlan, planPoolSites } from './pool-sites.js';
import type { PoolSiteReport } from '../model/leaks.js';
import { measureHitCost } from './hit-cost.js';
import { watchExit } from './exit-watch.js';
import { HeapLiveness } from '../glibc/heap-liveness.js';
import { isLeakscopeError } from '../model/errors.js';

/** tcmalloc's default sampling period (bytes). */
export const DEFAULT_SAMPLE_BYTES = 512 * 1024;
/**
 * Cost of one probe hit in the target, µs, measured on the 2-core VM (bench/README.md): a trap on
 * an emulated instruction (push / jcc, where leakscope puts its entry probes) plus the program
 * ~1.2; a return probe ~4. A single-stepped site costs ~10 (shared/reference/ebpf.md).
 * Each trace measures the per-hit cost on its machine first (hit-cost.ts); these are the fallback,
 * and a return hit is counted at RETURN_HIT_MICROS / DEFAULT_PER_HIT_MICROS entry hits.
 */
export const DEFAULT_PER_HIT_MICROS = 1.2;
export const RETURN_HIT_MICROS = 4;
/** A 4 KiB stack capture's extra cost (µs), measured with the pool program on the same VM (bench/README.md: 2.2 - 1.2). */
export const DEFAULT_COPY_MICROS = 1;
/** Above this many sampled allocations outstanding, the per-second record stops (each read walks the map). */
const SERIES_MAX_OUTSTANDING = 50_000;

export interface TraceProgress {
  elapsedSeconds: number;
  durationSeconds: number;
  events: number;
  probeHits: number;
}

export interface LeakTraceOptions {
  mode: TraceMode;
  durationSeconds: number;
  /** Byte-weighted sampling period for malloc mode; 0 traces every allocation. */
  sampleBytes?: number;
  minAgeSeconds?: number;
  /** Malloc mode: trace only requests of [min, max) bytes (e.g. the anomalous bucket). */
  sizeRange?: { min: number; max: number };
  /** Pool mode: bytes of stack copied per pool creation (4096 or 8192; default 4096: nginx's request paths need < 3 KiB). */
  stackBytes?: 4096 | 8192;
  /**
   * Share of each second the sampling probes are attached (0 < duty <= 1): ngx_create_pool's in
   * pool mode; the allocation functions' in malloc mode (free stays attached). Estimates are scaled
   * by 1 / the share of the window they were attached.
   */
  dutyCycle?: number;
  /** Pool mode: live pools at the end of the window, address -> bytes held (the pool census). */
  livePools?: () => Map<number, number>;
  /**
   * `--reach`: run at the end of the window (after the probes are detached); returns the
   * reachability class of the chunk holding an address (src/glibc reachability), by which each
   * call path's outstanding memory is split (StackSample.reach).
   */
  reachAtEnd?: () => Promise<(addr: number) => string | undefined>;
  perHitMicros?: number;
  onProgress?: (p: TraceProgress) => void;
  /** Ends the window early (SIGINT): the result covers what was traced so far. */
  signal?: AbortSignal;
  /** Ring buffer bytes (power of two >= 4096). Default 64 MiB unsampled, 16 MiB sampled; tests shrink it to force a loss. */
  ringBytes?: number;
  /** Exact mode: records the kernel keeps per stash map (default 262144 small, 16384 large); tests shrink it to force a loss. */
  stashEntries?: number;
  /** Keep the allocator's internal frames below the API the program called (default: the leaf is the API). */
  showInternal?: boolean;
  /** Malloc mode: read the Lua frames of allocations made inside a Lua VM (default true when libluajit is loaded). */
  luaFrames?: boolean;
  /**
   * Pool mode: probe ngx_create_pool itself (every pool, nginx's own included) instead of its call
   * sites minus those whose pools nginx owns and destroys (trace/pool-sites.ts).
   */
  allPoolSites?: boolean;
  /**
   * Sampled malloc mode: no probe on free (one trap less per free); each sampled allocation's
   * liveness is read from the heap instead (glibc/heap-liveness.ts), before each per-second record
   * and at the end. Biased (bench/README.md, issue 18): a sampled chunk freed and given to another
   * allocation of a similar size before a check ("ghost") still counts, under the sampled
   * allocation's path, so leaks that reuse their own or other paths' freed chunks are over-counted
   * or misattributed. Opt-in; exact mode (sampleBytes 0) always probes free.
   */
  heapLiveness?: boolean;
  /**
   * A cost budget instead of a fixed duty: each second the sampling probes' duty is set so that
   * their estimated cost (the per-hit cost measured before the window x the hits of the last
   * attached period, stack copies included; always-on probes such as free counted as fixed) stays
   * under this share of the CPU the target used itself (/proc/PID/stat). 0 < maxOverhead < 1.
   */
  maxOverhead?: number;
}

/** Bytes above the outermost frame's sp still copied for a thread whose stack top is known (its CFA rules read up to ~CFA + 8). */
export const STACK_TOP_MARGIN = 256;

/** The allocation functions a program calls (glibc's public API); the leaf frame is named after one of them. */
export const ALLOC_API = new Set([
  'malloc',
  'calloc',
  'realloc',
  'reallocarray',
  'free',
  'posix_memalign',
  'aligned_alloc',
  'memalign',
  'valloc',
  'pvalloc',
  '__libc_malloc',
  '__libc_calloc',
  '__libc_realloc',
  '__libc_memalign',
  '__libc_valloc',
  '__libc_pvalloc',
  '__posix_memalign',
]);
const API_ALIASES: Record<string, string> = {
  __libc_malloc: 'malloc',
  __libc_calloc: 'calloc',
  __libc_realloc: 'realloc',
  __libc_memalign: 'memalign',
  __libc_valloc: 'valloc',
  __libc_pvalloc: 'pvalloc',
  __posix_memalign: 'posix_memalign',
};

/** Index of the outermost allocation-API frame of the allocator's own module (the leaf's module), or -1. */
function apiFrameIndex(frames: readonly Frame[]): number {
  if (!frames.length) return -1;
  const mod = frames[0]!.module;
  let leaf = -1;
  for (let i = 0; i < frames.length && frames[i]!.module === mod; i++) {
    const f = frames[i]!.function;
    if (f !== null && ALLOC_API.has(f)) leaf = i;
  }
  return leaf;
}

/**
 * The call path as the program sees it: frames below the outermost allocation-API frame of the
 * allocator's own module (posix_memalign -> _mid_memalign -> malloc, relayed by glibc) are dropped,
 * and the leaf carries the public name. Other paths are returned unchanged.
 * `calledName(api, caller)`: the name the caller's call instruction used, for functions with
 * several names at one address (StackResolver.calledApi); it wins when it is an allocation API.
 * `keepInternal`: only rename, keep the frames below (--show-internal).
 */
export function apiLeaf(
  frames: readonly Frame[],
  calledName?: (api: Frame, caller: Frame) => string | undefined,
  opts: { keepInternal?: boolean } = {},
): Frame[] {
  const leaf = apiFrameIndex(frames);
  if (leaf < 0) return [...frames];
  const f = frames[leaf]!;
  const caller = frames[leaf + 1];
  const called = caller && calledName ? calledName(f, caller) : undefined;
  const raw = called !== undefined && ALLOC_API.has(called) ? called : f.function!;
  const name = API_ALIASES[raw] ?? raw;
  const named = name === f.function ? f : { ...f, function: name };
  return opts.keepInternal
    ? [...frames.slice(0, leaf), named, ...frames.slice(leaf + 1)]
    : [named, ...frames.slice(leaf + 1)];
}

/** utime + stime of a process (all threads), seconds; undefined when /proc/PID/stat cannot be read. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 (utime, stime; 1-based, counted from pid) are 11 and 12 after the state (field 3), in USER_HZ (100).
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return undefined;
  }
}

/** True while the process exists and is not a zombie (/proc/PID/stat state after the last ')'). */
export function processAlive(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const state = st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X' && state !== 'x';
  } catch {
    return false;
  }
}

interface EventRecord {
  pcs: number[];
  size: number;
  timeNs: number;
  complete: boolean;
  /** Made inside a Lua VM: its frames, where they go in the native path, the VM's native callers. */
  lua?: EventLua;
}

/** A path with Lua frames (lua-growth.ts luaPathRecord). */
type EventLua = LuaPathRecord;

/** Aggregation key of an event's call path (native pcs, plus the Lua frames when it has them). */
function pathKey(pcs: readonly number[], lua?: EventLua): string {
  return lua ? lua.key : pcs.join(',');
}

export async function traceLeaks(space: AddressSpace, opts: LeakTraceOptions): Promise<LeakTrace> {
  if (space.kind !== 'live') throw new LeakscopeError('usage', 'tracing needs a live process, not a core file');
  if (!(opts.durationSeconds > 0))
    throw new LeakscopeError('usage', `--duration must be positive (got ${opts.durationSeconds})`);
  // lua mode is exact: its point is every Lua allocation's path (and its cost is the trap, sampled or not).
  const sampleBytes = opts.mode === 'malloc' ? Math.floor(opts.sampleBytes ?? DEFAULT_SAMPLE_BYTES) : 0;
  if (sampleBytes < 0 || sampleBytes >= 2 ** 31)
    throw new LeakscopeError('usage', `--sample-bytes must be in [0, 2^31) (got ${sampleBytes})`);
  let duty = Math.min(1, Math.max(0.01, opts.dutyCycle ?? 1));
  const budget = opts.maxOverhead;
  if (budget !== undefined && !(budget > 0 && budget < 1))
    throw new LeakscopeError('usage', `--max-overhead must be in (0, 1) (got ${budget})`);
  // With a budget the first second runs at half duty (its cost is not known yet), then adapts.
  if (budget !== undefined) duty = Math.min(duty, 0.5);
  const minAgeNs = (opts.minAgeSeconds ?? 0) * 1e9;
  const notes: string[] = [];

  const resolver = new StackResolver(space);
  const events = new Map<string, EventRecord>(); // malloc: `${tid}:${timeNs}`; pool: `${address}`
  let sampledEvents = 0,
    complete = 0;
  // Threads whose stack top is known copy only down to it (capture.ts StackTopLookup).
  const stackTopKnown = new Set<number>();
  let luaEvents = 0;
  const eventRecord = (e: CapturedEvent): { rec: EventRecord; u: LuaPathRecord } => {
    const u = luaPathRecord(resolver, e);
    // A pool-creation call site probed in its caller: the leaf is ngx_create_pool (pool-sites.ts).
    if (callSitePcs.has(e.regs.rip)) u.pcs = withLeaf(u.pcs, poolLeafPc);
    const lua = u.capture ? u : undefined;
    if (lua) luaEvents++;
    const nativeFrames = lua ? luaPathFrames(resolver, undefined, u, undefined) : resolver.frames(u.pcs);
    const rec: EventRecord = {
      pcs: u.pcs,
      size: e.size,
      timeNs: e.timeNs,
      complete: StackResolver.complete(nativeFrames),
      ...(lua ? { lua } : {}),
    };
    return { rec, u };
  };
  const onEvent = (e: CapturedEvent) => {
    sampledEvents++;
    const { rec, u } = eventRecord(e);
    const frames = resolver.frames(u.pcs);
    if (rec.complete) complete++;
    if (opts.mode !== 'pool') {
      const key = e.tgid * 2 ** 32 + e.tid;
      const top =
        !stackTopKnown.has(e.tid) && rec.complete ? StackResolver.stackTopOffset(frames, u.spOffsets) : undefined;
      if (top !== undefined) {
        stackTopKnown.add(e.tid);
        session.maps.stackTops.update(key, e.regs.rsp + top + STACK_TOP_MARGIN);
      } else if (stackTopKnown.has(e.tid) && !rec.complete && u.stopReason === 'stack-end') {
        // The copy ended before the root: this thread now runs on another stack (or the tid was reused).
        stackTopKnown.delete(e.tid);
        session.maps.stackTops.delete(key);
      }
    }
    if (opts.mode === 'pool') {
      const prev = events.get(String(e.address));
      if (!prev || prev.timeNs <= e.timeNs) events.set(String(e.address), rec);
    } else {
      events.set(`${e.tid}:${e.timeNs}`, rec);
    }
  };

  // Records are ~12 KiB (8 KiB of stack): unsampled tracing needs room for bursts.
  // Exact malloc mode keeps each outstanding allocation's record in the kernel (stash): the ring
  // only carries what the stash could not hold.
  const stash = opts.mode !== 'pool' && sampleBytes === 0;
  const session = new TraceSession({
    pid: space.pid,
    onEvent,
    stash,
    stashEntries: opts.stashEntries,
    ringBytes: opts.ringBytes ?? (sampleBytes === 0 ? 64 << 20 : 16 << 20),
    // Pool mode: records are rare (module pools); Node sleeps until the ring is a quarter full or the second ends.
    drainOnFill: opts.mode === 'pool',
  });
  const poolWakeBytes = session.maps.events.size / 4;
  const symbolizer = new Symbolizer(space.modules());
  const luaVms =
    opts.mode === 'lua' || (opts.mode === 'malloc' && opts.luaFrames !== false)
      ? walkableLuaVms(space, symbolizer)
      : [];
  // Inside a pid namespace (a container), filter on the target's tgid there, not on the initial namespace's.
  const pidns = space.kind === 'live' ? pidNamespaceFilter(space.pid) : undefined;
  const probes: string[] = [];
  // Pool mode at call sites: the runtime pcs of those probes, and ngx_create_pool's pc put back as their leaf.
  const callSitePcs = new Set<number>();
  let poolLeafPc = 0;
  const poolObjects = new Set<string>(); // the objects pool mode probes (their CFI is read before attaching)
  let poolSiteReport: PoolSiteReport | undefined;
  // Sampled malloc mode without a free probe: liveness read from the heap (heap-liveness.ts).
  let heap: HeapLiveness | undefined;
  const heapFreed = { count: 0, checks: 0, bytesRead: 0, by: {} as Record<string, number> };
  try {
    if (opts.mode === 'malloc' && sampleBytes > 0 && opts.heapLiveness === true) {
      try {
        heap = HeapLiveness.open(space, symbolizer);
        notes.push(
          `liveness from the heap: free is not probed; each sampled allocation's chunk is read (header, tcache key from ${heap.keySource}, next chunk's PREV_INUSE, top, fastbins) before each per-second record and at the end; a chunk freed and reallocated at a similar size before a check ("ghost") still counts under the sampled path, at most one per sampled address: per-path figures may be over-counted or misattributed`,
        );
      } catch (e) {
        if (!isLeakscopeError(e)) throw e;
        notes.push(`free probed: liveness cannot be read from this heap (${e.message})`);
      }
    }
    if (opts.mode === 'malloc') {
      const libc = symbolizer.modulesNamed('libc.so')[0];
      if (!libc)
        throw new LeakscopeError('not-found', `${space.description}: libc.so is not loaded: malloc mode needs glibc`);
      const elf = loadElf(libc.hostPath);
      const debugElf = symbolizer.symbolsOf(libc)?.debug?.elf;
      // Exported functions from libc itself; glibc internals (_int_memalign) from its debug file.
      const symbolVaddr = (n: string) => {
        const v = elf.findSymbol(n)?.value ?? (n.startsWith('_int_') ? debugElf?.findSymbol(n)?.value : undefined);
        return v === undefined ? undefined : v + entryProbeOffsetAt(elf, v);
      };
      for (const p of mallocProbes(session.tracerMaps, {
        pid: space.pid,
        pidns,
        sampleBytes,
        libcPath: libc.hostPath,
        symbolVaddr,
        sizeRange: opts.sizeRange,
        loadBias: libc.loadBias,
        lua: luaVms.map((v) => v.cfg),
        freeProbe: heap === undefined,
      }))
        session.add(p);
    } else if (opts.mode === 'lua') {
      const lib = luajitLibrary(space);
      if (!lib || !luaVms.length)
        throw new LeakscopeError('not-found', `${space.description}: no Lua VM found: lua mode needs a LuaJIT process`);
      // g->allocf: lj_alloc_f (not exported by a stripped library), the same for every VM.
      const allocf = space.read(luaVms[0]!.cfg.globalState + (luaVms[0]!.layouts.structs.global_State!.allocf ?? 0), 8);
      const addr = Number(allocf.readBigUInt64LE(0));
      const libMod = space.modules().find((m) => m.path === lib.path);
      if (!libMod || addr < lib.textStart || addr >= lib.textEnd)
        throw new LeakscopeError(
          'not-supported',
          `${space.description}: g->allocf 0x${addr.toString(16)} is not in ${lib.path}`,
        );
      for (const p of luaAllocProbes(session.tracerMaps, {
        pid: space.pid,
        pidns,
        libPath: libMod.hostPath,
        vaddr: addr - lib.loadBias,
        loadBias: lib.loadBias,
        lua: luaVms.map((v) => v.cfg),
      }))
        session.add(p);
      notes.push(
        `lua mode: every LuaJIT allocation and free traps into lj_alloc_f's probe (measured ~${LUA_ALLOC_HIT_MICROS} µs per Lua allocation + its free on the 2-core VM, against 0.1 µs untraced: bench/lua-frames.ts); allocation-heavy Lua runs up to ~300x slower during the window: keep it short. Outstanding = not freed yet, which includes garbage the GC has not swept`,
      );
    } else {
      const create = symbolizer.lookup('ngx_create_pool');
      if (!create)
        throw new LeakscopeError('not-found', `${space.description}: no ngx_create_pool symbol: pool mode needs nginx`);
      const elf = loadElf(create.module.hostPath);
      const site = returnSiteOfCall(elf, 'ngx_create_pool', ['ngx_memalign', 'ngx_alloc']);
      // Prefer the (emulated) null-check jump after the call: rax still holds the pool there.
      const bodyVaddr = resultTestJumpVaddr(elf, site) ?? site.returnVaddr;
      const bodyLabel = `${basename(create.module.path)}:ngx_create_pool+0x${(bodyVaddr - elf.findSymbol('ngx_create_pool')!.value).toString(16)}`;
      // Call-site probes see the caller's frame first: ngx_create_pool's frame (at the body probe's pc) is put
      // back as the leaf, so stacks read as with the body probe.
      poolLeafPc = create.module.loadBias + bodyVaddr;
      poolObjects.add(create.module.path);
      const plan: PoolSitePlan = opts.allPoolSites
        ? {
            report: { placement: 'body', reason: '--all-pool-sites', probed: [], skipped: [] },
            probes: [],
          }
        : planPoolSites(symbolizer, create.module);
      poolSiteReport = plan.report;
      if (plan.report.placement === 'body') {
        if (bodyVaddr === site.returnVaddr)
          notes.push('no null check after ngx_memalign found: probing the (single-stepped) return site');
        if (!opts.allPoolSites) notes.push(`ngx_create_pool probed in its body: ${plan.report.reason}`);
        session.add(
          poolProbe(session.tracerMaps, {
            pid: space.pid,
            pidns,
            binaryPath: create.module.hostPath,
            returnSiteVaddr: bodyVaddr,
            stackBytes: opts.stackBytes ?? 4096,
            wakeAtBytes: poolWakeBytes,
            label: bodyLabel,
          }),
        );
      } else {
        for (const p of plan.probes) {
          callSitePcs.add(p.mod.loadBias + p.probeVaddr);
          poolObjects.add(p.mod.path);
          session.add(
            poolProbe(session.tracerMaps, {
              pid: space.pid,
              pidns,
              binaryPath: p.mod.hostPath,
              returnSiteVaddr: p.probeVaddr,
              stackBytes: opts.stackBytes ?? 4096,
              wakeAtBytes: poolWakeBytes,
              label: `${basename(p.module)}:ngx_create_pool call in ${p.function} (0x${p.probeVaddr.toString(16)})`,
            }),
          );
        }
        const single = plan.report.probed.filter((p) => !p.emulated).length;
        notes.push(
          `ngx_create_pool probed at ${plan.report.probed.length} call sites; ${plan.report.skipped.length} left alone (pools nginx owns and destroys: ${[...new Set(plan.report.skipped.map((p) => p.owner))].join(', ') || 'none'}); --all-pool-sites probes every pool` +
            (single ? `; ${single} single-stepped (no emulated instruction after the call)` : ''),
        );
      }
    }
    // Pool mode: the CFI and symbols its stacks pass through (the probed objects, libc's start-up
    // frames) are read before the probes attach, not by the window's first events.
    if (opts.mode === 'pool') resolver.preload((m) => poolObjects.has(m.path) || /\/libc\.so/.test(m.path));
    // A cost budget needs the per-hit cost before the window (hit-cost.ts, ~0.1-0.5 s).
    const measuredBefore =
      budget !== undefined && opts.perHitMicros === undefined ? measureHitCost({ multi: true }) : undefined;
    session.start();
    // The [uprobes] trampoline page exists once uretprobes are attached (pool mode has none: its preloaded symbols stay).
    if (opts.mode !== 'pool') resolver.refresh();
    if (stash) resolver.preload();
    probes.push(...session.probeNames());
    if (opts.mode !== 'pool')
      notes.push(
        session.usesSessions
          ? 'uprobe sessions: return probes only for sampled calls'
          : 'no uprobe sessions (kernel < 6.13): a return probe on every allocation',
      );
    if (opts.sizeRange) notes.push(`only requests of ${opts.sizeRange.min} to ${opts.sizeRange.max - 1} bytes traced`);

    // Per-second outstanding bytes per call path (malloc mode): after each drain, the outstanding
    // map is read (leakscope's cost, not the target's: no extra probe hit) and its sampled
    // allocations summed per stack. Skipped once the map holds more than SERIES_MAX_OUTSTANDING.
    const t0 = Date.now();
    const t0Ns = monotonicNs();
    const snapshots: Array<{ seconds: number; byKey: Map<string, number> }> = [];
    let seriesOff = opts.mode === 'pool';
    // Without a free probe: drops the sampled allocations the heap shows freed from the outstanding
    // map (leakscope's reads, not the target's time) and returns the rest. An entry rewritten since
    // it was read (its address sampled again) is kept.
    const sweep = (out: ReturnType<typeof session.outstanding>) => {
      if (!heap || !out.length) return out;
      let r: ReturnType<HeapLiveness['check']>;
      try {
        r = heap.check(out);
      } catch {
        return out; // the arenas could not be read (the target exiting): nothing is dropped
      }
      heapFreed.checks++;
      heapFreed.bytesRead += r.bytesRead;
      for (const [k, n] of Object.entries(r.freedBy)) heapFreed.by[k] = (heapFreed.by[k] ?? 0) + n;
      const kept: typeof out = [];
      for (const [i, o] of out.entries()) {
        if (r.live[i]) {
          kept.push(o);
          continue;
        }
        const now = session.maps.outstanding.lookup(o.address);
        if (now && now.timeNs === o.timeNs) {
          session.maps.outstanding.delete(o.address);
          heapFreed.count++;
        } else if (now) kept.push(outstandingEntry(o.address, now));
      }
      return kept;
    };
    const snapshot = () => {
      if (seriesOff && !heap) return;
      const all = session.outstanding();
      if (seriesOff) {
        if (all.length <= SERIES_MAX_OUTSTANDING) sweep(all);
        return;
      }
      const out = all.length > SERIES_MAX_OUTSTANDING ? all : sweep(all);
      if (out.length > SERIES_MAX_OUTSTANDING) {
        seriesOff = true;
        notes.push(`per-second outstanding record stopped: ${out.length} sampled allocations outstanding`);
        return;
      }
      const byKey = new Map<string, number>();
      // The map is walked while free() deletes from it: a walk whose current key was deleted
      // restarts from the first key (bpf_map_get_next_key), so an address may come twice.
      const seen = new Set<number>();
      for (const o of out) {
        if (seen.has(o.address)) continue;
        seen.add(o.address);
        const ev = events.get(`${o.tid}:${o.timeNs}`);
        if (!ev) continue;
        const k = pathKey(ev.pcs, ev.lua);
        byKey.set(k, (byKey.get(k) ?? 0) + (sampleBytes > 0 && o.size < sampleBytes ? sampleBytes : o.size));
      }
      snapshots.push({ seconds: (monotonicNs() - t0Ns) / 1e9, byKey });
    };

    // The window: progress each second; duty cycle; early end on abort.
    const end = t0 + opts.durationSeconds * 1000;
    // The target may exit during the window: noticed through a pidfd (or checked every 100 ms); the
    // result covers up to then.
    let exitedAfter: number | undefined;
    const exitWatch = new AbortController();
    const onAbort = () => exitWatch.abort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    const unwatch = watchExit(space.pid, processAlive, () => {
      if (exitedAfter === undefined) exitedAfter = (Date.now() - t0) / 1000;
      exitWatch.abort();
    });
    const stop = exitWatch.signal;
    // The budget's controller: the last period's costs (µs) against the target's own CPU.
    const hitMicros = opts.perHitMicros ?? measuredBefore?.perHitMicros ?? DEFAULT_PER_HIT_MICROS;
    const copyBefore = measuredBefore?.copyMicrosPer4KiB ?? DEFAULT_COPY_MICROS;
    let last = {
      st: session.stats(),
      attachedNs: session.attachedNsNow(),
      cpu: processCpuSeconds(space.pid),
      at: Date.now(),
    };
    const dutyHistory: number[] = [];
    const adapt = () => {
      const st = session.stats();
      const attachedNs = session.attachedNsNow();
      const cpu = processCpuSeconds(space.pid);
      const now = Date.now();
      const d = (k: keyof typeof st) => st[k] - last.st[k];
      const sampling =
        (d('entryHits') + d('poolHits')) * hitMicros +
        d('returnHits') * hitMicros * (RETURN_HIT_MICROS / DEFAULT_PER_HIT_MICROS) +
        (opts.mode === 'malloc' ? d('sampled') : d('poolHits')) * copyBefore;
      const fixed = d('freeHits') * hitMicros;
      const attachedSec = (attachedNs - last.attachedNs) / 1e9;
      const wallSec = (now - last.at) / 1000;
      if (cpu !== undefined && last.cpu !== undefined && attachedSec > 0.02 && wallSec > 0.1) {
        const own = Math.max(0, cpu - last.cpu - (sampling + fixed) / 1e6) / wallSec; // target CPU-s per s
        const room = budget! * own - fixed / 1e6 / wallSec; // CPU-s per s the sampling probes may cost
        const spent = sampling / 1e6 / wallSec;
        // Scaled by what the last period really cost per wall second (attaching and detaching take time
        // on a loaded host, so the probes stay attached longer than the duty says); at most doubled per step.
        duty = spent > 0 ? Math.min(1, 2 * duty, Math.max(0.01, (duty * room) / spent)) : Math.min(1, 2 * duty);
      }
      dutyHistory.push(duty);
      last = { st, attachedNs, cpu, at: now };
    };
    try {
      while (Date.now() < end && !stop.aborted) {
        const second = Math.min(1000, end - Date.now());
        if (duty < 1) {
          await sleep(second * duty, stop);
          session.pauseSampling();
          await sleep(second * (1 - duty), stop);
          if (Date.now() < end && !stop.aborted) session.attach();
        } else {
          await sleep(second, stop);
        }
        session.drain();
        snapshot();
        if (budget !== undefined) adapt();
        if (opts.onProgress) {
          const st = session.stats();
          opts.onProgress({
            elapsedSeconds: (Date.now() - t0) / 1000,
            durationSeconds: opts.durationSeconds,
            events: sampledEvents,
            probeHits: st.entryHits + st.freeHits + st.returnHits + st.poolHits,
          });
        }
      }
    } finally {
      unwatch();
      opts.signal?.removeEventListener('abort', onAbort);
    }
    if (exitedAfter === undefined && !processAlive(space.pid)) exitedAfter = (Date.now() - t0) / 1000;
    const endNs = monotonicNs();
    session.detach();
    session.drain();
    if (snapshots.length && snapshots[snapshots.length - 1]!.seconds < (endNs - t0Ns) / 1e9 - 0.2) snapshot();
    const elapsed = (Date.now() - t0) / 1000;
    const st = session.stats();
    // The cost printed with the trace: hits x the per-hit cost measured on this machine now, once the
    // probes are detached (hit-cost.ts; ~0.1-0.5 s, so it never delays the window).
    const measured = measuredBefore ?? (opts.perHitMicros === undefined ? measureHitCost({ multi: true }) : undefined);
    // lua mode: ~3 hits (entry, return, the free's entry) per Lua allocation of LUA_ALLOC_HIT_MICROS (bench).
    const perHit =
      opts.perHitMicros ??
      (opts.mode === 'lua' ? LUA_ALLOC_HIT_MICROS / 3 : undefined) ??
      measured?.perHitMicros ??
      DEFAULT_PER_HIT_MICROS;
    const returnHit = perHit * (RETURN_HIT_MICROS / DEFAULT_PER_HIT_MICROS);
    // Each captured stack (pool creation, sampled allocation) also copies ~4 KiB of stack.
    const copyMicros = measured?.copyMicrosPer4KiB ?? DEFAULT_COPY_MICROS;
    notes.push(
      measured
        ? `cost per probe hit measured ${measuredBefore ? 'before' : 'after'} the window: ${measured.perHitMicros} µs, +${measured.copyMicrosPer4KiB} µs per captured stack (${measured.hits} hits of a ${measured.kind} probe in leakscope's own process)`
        : `cost per probe hit not measured here: ${perHit} µs assumed, +${copyMicros} µs per captured stack`,
    );
    const attachedShare = elapsed > 0 ? Math.min(1, session.attachedNs / 1e9 / elapsed) : 1;

    // Outstanding at the end, by call path.
    const byStack = new Map<
      string,
      {
        pcs: number[];
        lua?: EventLua;
        key: string;
        bytes: number;
        count: number;
        allocBytes: number;
        allocCount: number;
        reach?: StackReach;
      }
    >();
    const bucket = (pcs: number[], lua?: EventLua) => {
      const k = pathKey(pcs, lua);
      let b = byStack.get(k);
      if (!b) byStack.set(k, (b = { pcs, lua, key: k, bytes: 0, count: 0, allocBytes: 0, allocCount: 0 }));
      return b;
    };
    const classOf = opts.reachAtEnd ? await opts.reachAtEnd() : undefined;
    if (classOf)
      notes.push(
        'reachability: outstanding memory split by a scan of the heap at the end of the window (lost = definitely or indirectly lost)',
      );
    const addReach = (b: { reach?: StackReach }, addr: number, w: { bytes: number; count: number }) => {
      if (!classOf) return;
      const r = (b.reach ??= {
        lostBytes: 0,
        lostCount: 0,
        possiblyLostBytes: 0,
        possiblyLostCount: 0,
        reachableBytes: 0,
        reachableCount: 0,
        unknownBytes: 0,
        unknownCount: 0,
      });
      const c = classOf(addr);
      if (c === 'definitelyLost' || c === 'indirectlyLost') {
        r.lostBytes += w.bytes;
        r.lostCount += w.count;
      } else if (c === 'possiblyLost') {
        r.possiblyLostBytes += w.bytes;
        r.possiblyLostCount += w.count;
      } else if (c === 'reachable') {
        r.reachableBytes += w.bytes;
        r.reachableCount += w.count;
      } else {
        r.unknownBytes += w.bytes;
        r.unknownCount += w.count;
      }
    };
    let outBytes = 0,
      outCount = 0,
      allocBytes = 0,
      allocCount = 0;
    const lostOutstanding = { count: 0, bytes: 0 };
    // Only a duty cycle samples in time; without one the probes were attached all along.
    const dutyScale = duty < 1 || budget !== undefined ? 1 / Math.max(attachedShare, 0.01) : 1;
    const scale = (size: number) =>
      sampleBytes > 0 && size < sampleBytes
        ? { bytes: sampleBytes * dutyScale, count: (sampleBytes / Math.max(1, size)) * dutyScale }
        : { bytes: size * dutyScale, count: dutyScale };
    const stashed = { count: 0, bytes: 0 };
    if (opts.mode !== 'pool') {
      if (stash) {
        allocBytes = st.sampledBytes;
        allocCount = st.sampled;
      }
      for (const ev of events.values()) {
        const w = scale(ev.size);
        const b = bucket(ev.pcs, ev.lua);
        b.allocBytes += w.bytes;
        b.allocCount += w.count;
        if (!stash) {
          allocBytes += w.bytes;
          allocCount += w.count;
        }
      }
      // Allocations whose record the full ring refused still sit in the outstanding map with
      // their size: their bytes count, under one path that says their stack was lost.
      const lostPcs = [LOST_STACK_PC];
      if (st.ringFull) {
        const w = { bytes: st.ringFullBytes * dutyScale, count: st.ringFull * dutyScale };
        if (sampleBytes === 0) {
          const b = bucket(lostPcs);
          b.allocBytes += w.bytes;
          b.allocCount += w.count;
          if (!stash) {
            allocBytes += w.bytes;
            allocCount += w.count;
          }
        }
      }
      // Probes are detached: what the heap shows freed now is dropped for good.
      const finalOut = heap ? sweep(session.outstanding()) : session.outstanding();
      if (heap)
        notes.push(
          `liveness from the heap: ${heapFreed.count} sampled allocations found freed in ${heapFreed.checks} reads of the heap (${heapFreed.bytesRead} bytes read; by ${JSON.stringify(heapFreed.by)}); ${finalOut.length} still in use`,
        );
      for (const o of finalOut) {
        if (endNs - o.timeNs < minAgeNs) continue;
        let ev = events.get(`${o.tid}:${o.timeNs}`);
        if (!ev && stash) {
          // Read from the stash and unwound now: the modules were loaded while the target ran.
          const r = session.stashedRecord(o.pidTgid, o.timeNs);
          if (r) {
            const e = decodeCapture(r);
            sampledEvents++;
            ev = eventRecord(e).rec;
            if (ev.complete) complete++;
            stashed.count++;
            stashed.bytes += o.size;
            const b = bucket(ev.pcs, ev.lua);
            b.allocBytes += o.size;
            b.allocCount += 1;
          }
        }
        if (!ev) {
          lostOutstanding.count++;
          lostOutstanding.bytes += o.size;
        }
        const w = scale(o.size);
        const b = ev ? bucket(ev.pcs, ev.lua) : bucket(lostPcs);
        b.bytes += w.bytes;
        b.count += w.count;
        outBytes += w.bytes;
        outCount += w.count;
        addReach(b, o.address, w);
      }
      if (st.outstandingFull)
        notes.push(`${st.outstandingFull} sampled allocations were not tracked: the outstanding map was full`);
    } else {
      const live = opts.livePools?.() ?? new Map<number, number>();
      for (const [addr, ev] of events) {
        const bytes = live.get(Number(addr));
        const b = bucket(ev.pcs);
        b.allocCount += dutyScale;
        allocCount += dutyScale;
        if (bytes === undefined || endNs - ev.timeNs < minAgeNs) continue;
        b.bytes += bytes * dutyScale;
        b.count += dutyScale;
        outBytes += bytes * dutyScale;
        outCount += dutyScale;
        addReach(b, Number(addr), { bytes: bytes * dutyScale, count: dutyScale });
      }
      if (!opts.livePools) notes.push('pool liveness not checked: no pool census');
    }
    if (budget !== undefined)
      notes.push(
        `cost budget ${(budget * 100).toFixed(1)}% of the target's own CPU: duty per second ${dutyHistory.map((x) => x.toFixed(2)).join(' ')}`,
      );
    if (duty < 1 || budget !== undefined)
      notes.push(
        `sampling probes attached ${(attachedShare * 100).toFixed(0)}% of the window; estimates scaled by ${dutyScale.toFixed(2)}`,
      );
    if (st.ringFull)
      notes.push(
        `${st.ringFull} events (${st.ringFullBytes} requested bytes) lost their stacks: ring buffer full; their ${lostOutstanding.count} still outstanding (${lostOutstanding.bytes} B) are under "${LOST_STACK_FRAME.function}", so per-path figures are lower bounds`,
      );
    if (stash)
      notes.push(
        `exact mode: records of allocations freed during the window stayed in the kernel (allocated per path counts only what is still outstanding); ${stashed.count} outstanding stacks read from the kernel at the end`,
      );
    if (luaVms.length)
      notes.push(
        `Lua frames read in the probe for ${luaVms.length} Lua VM(s) (global_State ${luaVms.map((v) => '0x' + v.cfg.globalState.toString(16)).join(', ')}); ${luaEvents} sampled allocations were made inside Lua`,
      );
    if (exitedAfter !== undefined) notes.push(`target exited after ${exitedAfter.toFixed(1)} s; results cover that`);
    const lossless = st.ringFull === 0 && st.outstandingFull === 0;

    resolver.withLines = true;
    // Lua frames resolve with the layouts only (the same library for every VM of a process).
    const luaResolver = luaVms.length ? new LuaFrameResolver(space, luaVms[0]!.layouts, symbolizer) : undefined;
    const luaModule = luajitLibrary(space)?.path;
    const luaModuleBase = luaModule ? basename(luaModule) : undefined;
    const framesOf = (pcs: number[], lua?: EventLua): Frame[] => {
      if (pcs === lostPcsOf(byStack)) return [LOST_STACK_FRAME];
      const f = lua
        ? luaPathFrames(resolver, luaResolver, lua, luaModule ? basename(luaModule) : undefined, opts.showInternal)
        : resolver.frames(pcs);
      if (opts.mode === 'lua') return [LJ_ALLOC_LEAF, ...f.filter((x, i) => i > 0 || x.module !== luaModuleBase)];
      if (opts.mode !== 'malloc') return f;
      return apiLeaf(f, (api, caller) => resolver.calledApi(api, caller), { keepInternal: opts.showInternal });
    };
    const withSeries = snapshots.length >= 2;
    const stacks: StackSample[] = [...byStack.values()]
      .filter((b) => b.bytes > 0 || b.count > 0 || (withSeries && snapshots.some((sn) => sn.byKey.has(b.key))))
      .map((b) => {
        const s: StackSample = {
          frames: framesOf(b.pcs, b.lua),
          bytes: Math.round(b.bytes),
          count: Math.round(b.count * 100) / 100,
          allocBytes: Math.round(b.allocBytes),
          allocCount: Math.round(b.allocCount * 100) / 100,
        };
        if (withSeries) {
          const k = b.key;
          s.series = snapshots.map((sn) => Math.round((sn.byKey.get(k) ?? 0) * dutyScale));
        }
        if (b.reach) s.reach = roundReach(b.reach);
        return s;
      })
      .sort((a, b) => b.bytes - a.bytes);
    const probeHits: Record<string, number> =
      opts.mode !== 'pool'
        ? { 'alloc entry': st.entryHits, 'alloc return': st.returnHits, free: st.freeHits }
        : { 'pool create': st.poolHits };
    const totalHits = Object.values(probeHits).reduce((a, b) => a + b, 0);
    return {
      mode: opts.mode,
      target: space.description,
      pid: space.pid,
      durationSeconds: elapsed,
      sampleBytes,
      minAgeSeconds: opts.minAgeSeconds ?? 0,
      stacks,
      totals: {
        outstandingBytes: Math.round(outBytes),
        outstandingCount: Math.round(outCount),
        allocatedBytes: Math.round(allocBytes),
        allocatedCount: Math.round(allocCount),
        sampledEvents,
        completeStacks: complete,
      },
      cost: {
        probeHits,
        totalProbeHits: totalHits,
        estimatedCpuSeconds:
          ((totalHits - (probeHits['alloc return'] ?? 0)) * perHit +
            (probeHits['alloc return'] ?? 0) * returnHit +
            (opts.mode === 'malloc' ? st.sampled : st.poolHits) * copyMicros) /
          1e6,
        perHitMicros: perHit,
        dutyCycle: attachedShare,
        lostEvents: st.ringFull + st.outstandingFull,
      },
      ...(withSeries ? { seriesSeconds: snapshots.map((sn) => Math.round(sn.seconds * 1000) / 1000) } : {}),
      probes,
      notes,
      complete: lossless,
      lost: {
        events: st.ringFull,
        requestedBytes: st.ringFullBytes,
        outstandingCount: lostOutstanding.count,
        outstandingBytes: lostOutstanding.bytes,
        untracked: st.outstandingFull,
      },
      ...(exitedAfter !== undefined ? { targetExitedAfterSeconds: Math.round(exitedAfter * 10) / 10 } : {}),
      ...(poolSiteReport ? { poolSites: poolSiteReport } : {}),
    };
  } finally {
    session.close();
  }
}

/** Cost of one Lua allocation + free under lua mode, µs (bench/lua-frames.ts on the 2-core VM). */
export const LUA_ALLOC_HIT_MICROS = 33;
/** Leaf of lua-mode paths (lj_alloc_f is not exported by a stripped libluajit). */
const LJ_ALLOC_LEAF: Frame = { function: 'lj_alloc_f', module: '[lua]', offset: 0 };

/** `pcs` with `leaf` in front; the same array for the same `pcs` (the resolver's caches key on identity). */
const leafPrefixed = new WeakMap<number[], number[]>();
function withLeaf(pcs: number[], leaf: number): number[] {
  let out = leafPrefixed.get(pcs);
  if (!out || out[0] !== leaf) leafPrefixed.set(pcs, (out = [leaf, ...pcs]));
  return out;
}

/** The pcs key of the path holding allocations whose stack was lost (no real pc is 0). */
const LOST_STACK_PC = 0;
function lostPcsOf(byStack: Map<string, { pcs: number[] }>): number[] | undefined {
  return byStack.get(String(LOST_STACK_PC))?.pcs;
}
/** The one frame of that path. */
export const LOST_STACK_FRAME: Frame = { function: '[stack lost: ring buffer full]', module: '[lost]', offset: 0 };

function roundReach(r: StackReach): StackReach {
  const o = { ...r };
  for (const k of Object.keys(o) as (keyof StackReach)[])
    o[k] = k.endsWith('Bytes') ? Math.round(o[k]) : Math.round(o[k] * 100) / 100;
  return o;
}

function monotonicNs(): number {
  // bpf_ktime_get_ns is CLOCK_MONOTONIC; so is process.hrtime.
  return Number(process.hrtime.bigint());
}

/** setTimeout as a promise that an AbortSignal ends early. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
