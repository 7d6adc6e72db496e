// A leak-trace session: creates the maps, loads the programs, attaches the probes to one
// process, streams capture records to a callback, and at the end detaches and reads what is
// still outstanding. Probes are fd-based: they vanish if leakscope dies, even by SIGKILL.

import { basename } from 'node:path';
import { BpfMap, PerCpuArrayMap, RingBufMap, bytes, u64, u64n, record } from '../ebpf/maps.js';
import { SCRATCH_BYTES } from './capture.js';
import { AttachType, loadProgram } from '../ebpf/prog.js';
import type { Program } from '../ebpf/prog.js';
import { openRingBuffer } from '../ebpf/ringbuf.js';
import type { RingBufferReader } from '../ebpf/ringbuf.js';
import { RingRecord } from '../ebpf/ringbuf.js';
import { attachUprobe, attachUprobeMulti, resolveUprobeOffset } from '../ebpf/uprobe.js';
import type { UprobeLink } from '../ebpf/uprobe.js';
import type { Body, PidNamespace } from '../ebpf/asm.js';
import { LeakscopeError, isLeakscopeError } from '../model/errors.js';
import { decodeCapture } from './capture.js';
import type { CapturedEvent } from './capture.js';
import {
  STASH_SMALL_BYTES,
  STAT_COUNT,
  Stat,
  allocEntryProgram,
  allocReturnProgram,
  allocSessionProgram,
  freeProgram,
  poolCreateProgram,
} from './programs.js';
import type { AllocConvention, TracerMaps } from './programs.js';
import type { LuaWalkConfig } from './lua-stack.js';

/** A probe to attach: a file, where in it, and the program. */
export interface ProbeSpec {
  /** Shown in results: "libc.so.6:malloc". */
  name: string;
  binaryPath: string;
  /** ELF vaddr of the probed instruction. */
  vaddr: number;
  retprobe: boolean;
  body: Body;
  /** A uprobe session program (entry + return in one, BPF_TRACE_UPROBE_SESSION) replacing `fallback`. */
  session?: boolean;
  /**
   * Attached as a uprobe_multi link (BPF_TRACE_UPROBE_MULTI, kernel >= 6.6) instead of a perf-event
   * uprobe, replacing `fallback`: a hit skips the trace_uprobe / perf dispatch (bench/README.md).
   */
  multi?: boolean;
  /** Used instead of this spec when the kernel has no uprobe sessions (< 6.13). */
  fallback?: ProbeSpec[];
  /** Stays attached through duty-cycle pauses (free: a missed free would look like a leak). */
  alwaysOn?: boolean;
  /** Specs with the same key share one loaded program (default: derived from the name). */
  programKey?: string;
}

export interface OutstandingEntry {
  address: number;
  timeNs: number;
  size: number;
  tid: number;
  pidTgid: number;
}

/** An outstanding map entry (value: time, size, pid_tgid in `aux`) as an OutstandingEntry. */
export function outstandingEntry(address: number, v: { timeNs: number; size: number; aux: number }): OutstandingEntry {
  return { address, timeNs: v.timeNs, size: v.size, tid: v.aux % 0x100000000, pidTgid: v.aux };
}

export interface SessionOptions {
  pid: number;
  /** Ring buffer data size in bytes (power of two). Default 16 MiB. */
  ringBytes?: number;
  /** Maximum outstanding sampled allocations tracked in the kernel. Default 262144. */
  maxOutstanding?: number;
  /** Exact mode: keep each outstanding allocation's record in the kernel (programs.ts TracerMaps.stashSmall). */
  stash?: boolean;
  /** Entries per stash map (default 262144 small, 16384 large). */
  stashEntries?: number;
  /** Called on Node's thread for each record; `e.stack` is valid only during the call. */
  onEvent: (e: CapturedEvent) => void;
  /**
   * The programs wake the reader only when the ring is filling (pool mode: poolProbe's
   * `wakeAtBytes`): the reader waits in epoll, no drain timer; the caller drains when it needs
   * the records (`drain()`). Default: drained every 10 ms, programs never wake it.
   */
  drainOnFill?: boolean;
}

const stashKey = record<{ pidTgid: number; timeNs: number }>({ pidTgid: u64n, timeNs: u64n });
const valueCodec = record<{ timeNs: number; size: number; aux: number }>({ timeNs: u64n, size: u64n, aux: u64n });

export class TraceSession {
  readonly maps: {
    events: RingBufMap;
    pending: BpfMap<number, { timeNs: number; size: number; aux: number }>;
    outstanding: BpfMap<number, { timeNs: number; size: number; aux: number }>;
    stats: PerCpuArrayMap<bigint>;
    scratch: PerCpuArrayMap<Uint8Array>;
    stackTops: BpfMap<number, number>;
    stashSmall?: BpfMap<{ pidTgid: number; timeNs: number }, Uint8Array>;
    stashLarge?: BpfMap<{ pidTgid: number; timeNs: number }, Uint8Array>;
  };
  private programs = new Map<string, Program>();
  private links: Array<{ spec: ProbeSpec; link: UprobeLink }> = [];
  private reader?: RingBufferReader;
  private specs: ProbeSpec[] = [];
  attachedNs = 0;
  private attachedSince = 0;

  constructor(readonly opts: SessionOptions) {
    this.maps = {
      events: new RingBufMap('ls_events', opts.ringBytes ?? 16 << 20),
      pending: new BpfMap({ name: 'ls_pending', type: 'lru-hash', key: u64n, value: valueCodec, maxEntries: 16384 }),
      outstanding: new BpfMap({
        name: 'ls_outstanding',
        type: 'hash',
        key: u64n,
        value: valueCodec,
        maxEntries: opts.maxOutstanding ?? 262144,
      }),
      stats: new PerCpuArrayMap({ name: 'ls_stats', value: u64, maxEntries: STAT_COUNT }),
      stackTops: new BpfMap({ name: 'ls_stack_tops', type: 'lru-hash', key: u64n, value: u64n, maxEntries: 65536 }),
      scratch: new PerCpuArrayMap({ name: 'ls_scratch', value: bytes(SCRATCH_BYTES), maxEntries: 1 }),
      // BPF_F_NO_PREALLOC (1): memory only for what is outstanding, not for maxEntries values.
      ...(opts.stash
        ? {
            stashSmall: new BpfMap({
              name: 'ls_stash_small',
              type: 'hash',
              key: stashKey,
              value: bytes(STASH_SMALL_BYTES),
              maxEntries: opts.stashEntries ?? 262144,
              flags: 1,
            }),
            stashLarge: new BpfMap({
              name: 'ls_stash_large',
              type: 'hash',
              key: stashKey,
              value: bytes(SCRATCH_BYTES),
              maxEntries: opts.stashEntries ?? 16384,
              flags: 1,
            }),
          }
        : {}),
    };
  }

  get tracerMaps(): TracerMaps {
    return this.maps;
  }

  add(spec: ProbeSpec): void {
    this.specs.push(spec);
  }

  /** True when the probes use uprobe sessions (return probes only for sampled calls). */
  usesSessions = false;

  /** Loads every program and attaches every probe; starts streaming events. */
  start(): void {
    // Records are written without wakeups (BPF_RB_NO_WAKEUP): drain every 10 ms. The ring holds
    // 10 ms of ~4-12 KiB records at well over 100k events/s.
    this.reader = openRingBuffer(
      this.maps.events,
      (r) => this.opts.onEvent(decodeCapture(r)),
      this.opts.drainOnFill ? { wakeup: 'poll', intervalMs: 0 } : { wakeup: 'timer', intervalMs: 10 },
    );
    const sessions = this.specs.some((s) => s.session || s.multi);
    try {
      this.loadAll(this.specs);
      this.attach();
      this.usesSessions = sessions;
    } catch (e) {
      if (!sessions || !isLeakscopeError(e) || (e.code !== 'not-supported' && e.code !== 'malformed')) throw e;
      // Kernel without uprobe sessions: entry uprobes plus uretprobes on every call.
      for (const p of this.programs.values()) p.close();
      this.programs.clear();
      this.specs = this.specs.flatMap((s) => (s.session || s.multi ? (s.fallback ?? []) : [s]));
      this.loadAll(this.specs);
      this.attach();
    }
  }

  private loadAll(specs: ProbeSpec[]): void {
    for (const s of specs) {
      const key = JSON.stringify([
        s.retprobe,
        s.session ?? false,
        s.multi ?? false,
        s.programKey ?? s.name.split(':')[1],
      ]);
      let prog = this.programs.get(key);
      if (!prog) {
        prog = loadProgram({
          name: `ls_${basename(s.name).replace(/[^A-Za-z0-9_]/g, '_')}`.slice(0, 15),
          body: s.body,
          expectedAttachType: s.session ? AttachType.uprobeSession : s.multi ? AttachType.uprobeMulti : undefined,
        });
        this.programs.set(key, prog);
      }
      (s as ProbeSpec & { prog: Program }).prog = prog;
    }
  }

  /** Attaches all probes (also after a `detach()` or `pauseSampling()`). */
  attach(): void {
    // Deduplicate probes at the same file offset (aliases such as memalign / aligned_alloc).
    const seen = new Set<string>(this.links.map(({ spec: s }) => `${s.binaryPath}:${s.vaddr}:${s.retprobe}`));
    if (seen.size && this.attachedSince) return;
    try {
      for (const s of this.specs) {
        const k = `${s.binaryPath}:${s.vaddr}:${s.retprobe}`;
        if (seen.has(k)) continue;
        seen.add(k);
        const prog = (s as ProbeSpec & { prog: Program }).prog;
        const link =
          s.session || s.multi
            ? attachUprobeMulti(
                prog,
                s.binaryPath,
                [resolveUprobeOffset({ binaryPath: s.binaryPath, vaddr: s.vaddr })],
                { pid: this.opts.pid, session: s.session ?? false },
              )
            : attachUprobe(
                prog,
                { binaryPath: s.binaryPath, vaddr: s.vaddr },
                { pid: this.opts.pid, retprobe: s.retprobe },
              );
        this.links.push({ spec: s, link });
      }
    } catch (e) {
      this.detach();
      throw e;
    }
    this.attachedSince = Number(process.hrtime.bigint());
  }

  /** Detaches every probe; maps stay readable. */
  detach(): void {
    for (const { link } of this.links.reverse()) link.detach();
    if (this.links.length && this.attachedSince)
      this.attachedNs += Number(process.hrtime.bigint()) - this.attachedSince;
    this.links = [];
    this.attachedSince = 0;
  }

  /**
   * Duty cycle: detaches the sampling probes but keeps `alwaysOn` ones (free), so allocations
   * sampled while attached are still seen freed. Calls caught between entry and return lose their
   * return: their pending entries are dropped so they do not block the thread's next samples.
   * `resumeSampling()` (= attach) re-attaches. attachedNs counts the sampling probes' time.
   */
  pauseSampling(): void {
    const keep: typeof this.links = [];
    for (const l of this.links.reverse()) {
      if (l.spec.alwaysOn) keep.push(l);
      else l.link.detach();
    }
    if (this.attachedSince) this.attachedNs += Number(process.hrtime.bigint()) - this.attachedSince;
    this.links = keep.reverse();
    this.attachedSince = 0;
    for (const k of this.maps.pending.keys()) this.maps.pending.delete(k);
  }

  /** attachedNs including the attached period under way. */
  attachedNsNow(): number {
    return this.attachedNs + (this.attachedSince ? Number(process.hrtime.bigint()) - this.attachedSince : 0);
  }

  get attached(): boolean {
    return this.links.length > 0;
  }

  /** Drains the ring buffer now. */
  drain(): void {
    this.reader?.drain();
  }

  stats(): Record<keyof typeof Stat, number> {
    const out = {} as Record<keyof typeof Stat, number>;
    for (const [name, idx] of Object.entries(Stat) as Array<[keyof typeof Stat, number]>) {
      out[name] = (this.maps.stats.lookup(idx) ?? []).reduce((s, v) => s + Number(v), 0);
    }
    return out;
  }

  outstanding(): OutstandingEntry[] {
    return this.maps.outstanding.entries().map(([address, v]) => outstandingEntry(address, v));
  }

  /** Exact mode: the capture record stashed for an outstanding allocation, as a ring record, or undefined. */
  stashedRecord(pidTgid: number, timeNs: number): RingRecord | undefined {
    const key = { pidTgid, timeNs };
    const v = this.maps.stashSmall?.lookup(key) ?? this.maps.stashLarge?.lookup(key);
    if (!v) return undefined;
    const r = new RingRecord();
    r.u8 = v;
    r.view = new DataView(v.buffer, v.byteOffset, v.byteLength);
    r.offset = 0;
    r.length = v.byteLength;
    return r;
  }

  probeNames(): string[] {
    return [...new Set(this.specs.map((s) => `${s.name}${s.session ? ' (session)' : s.retprobe ? ' (return)' : ''}`))];
  }

  /** Detaches, drains and releases everything. Safe to call twice. */
  close(): void {
    this.detach();
    try {
      this.reader?.drain();
    } catch {
      /* closed */
    }
    this.reader?.close();
    this.reader = undefined;
    for (const p of this.programs.values()) p.close();
    this.programs.clear();
    for (const m of Object.values(this.maps)) m?.close();
  }
}

/** The malloc-family probes of one libc, deduplicated by address. */
export const ALLOC_FUNCTIONS: Array<{ symbol: string; conv: AllocConvention }> = [
  { symbol: 'malloc', conv: 'size0' },
  { symbol: 'calloc', conv: 'calloc' },
  { symbol: 'realloc', conv: 'realloc' },
  { symbol: 'posix_memalign', conv: 'posix_memalign' },
  { symbol: 'aligned_alloc', conv: 'size1' },
  { symbol: 'memalign', conv: 'size1' },
  { symbol: 'valloc', conv: 'size0' },
  { symbol: 'pvalloc', conv: 'size0' },
  // reallocarray(old, n, size) calls realloc internally (glibc malloc/reallocarray.c), whose probe sees it.
];

/** symbolVaddr: where to probe a function: its address, or past a leading flag-only test (call-sites.ts). */
export interface MallocProbeOptions {
  pid: number;
  sampleBytes: number;
  libcPath: string;
  symbolVaddr: (name: string) => number | undefined;
  sizeRange?: { min: number; max: number };
  /** Set when leakscope runs inside a pid namespace: the in-kernel filter compares tgids there. */
  pidns?: PidNamespace;
  /** libc's load bias in the target: enables uprobe sessions (the program compares rip with the probe's runtime address). */
  loadBias?: number;
  /** Lua VMs of the target: sampled allocations made inside one carry its Lua frames (lua-stack.ts). */
  lua?: LuaWalkConfig[];
  /**
   * Probe free (default true). Sampled mode without it (issue 18) tells liveness from the heap
   * (glibc/heap-liveness.ts): one trap less per free, a freed chunk reused at its size may look alive.
   */
  freeProbe?: boolean;
}

/** The memalign family: every one of them goes through glibc 2.36's _mid_memalign (small alignments relay to malloc). */
const MEMALIGN_FAMILY = new Set(['posix_memalign', 'aligned_alloc', 'memalign', 'valloc', 'pvalloc']);

/*
 * Exact mode (sampleBytes 0) probes the memalign family at its public entry points, never in
 * glibc's _int_memalign: the caller's request (pvalloc(30000) = 30000, not the page-rounded 32768
 * glibc passes on) and the API's name are only there. Alignments <= 16 are relayed to malloc
 * (glibc 2.36 malloc.c _mid_memalign), whose probe sees them with the same size; the API's frame is
 * then the leaf's caller, and the leak tracer names the leaf after it (apiLeaf in leak-tracer.ts).
 *
 * Sampled mode, when libc's debug file names _int_memalign, probes that instead of the family
 * (issue 18): a posix_memalign(16, n) — every nginx pool and buffer, ngx_memalign — then costs one
 * trap (malloc's) instead of two. _int_memalign is reached only from _mid_memalign with alignments
 * > 16 and takes the caller's size (pvalloc's rounded up to a page); the leaf is still named after
 * the API frame above it.
 */
export function mallocProbes(m: TracerMaps, o: MallocProbeOptions): ProbeSpec[] {
  const out: ProbeSpec[] = [];
  const seen = new Set<number>();
  const intMemalign = o.sampleBytes > 0 ? o.symbolVaddr('_int_memalign') : undefined;
  const functions =
    intMemalign === undefined
      ? ALLOC_FUNCTIONS
      : [
          ...ALLOC_FUNCTIONS.filter((f) => !MEMALIGN_FAMILY.has(f.symbol)),
          { symbol: '_int_memalign', conv: 'int_memalign' as AllocConvention },
        ];
  for (const f of functions) {
    const vaddr = o.symbolVaddr(f.symbol);
    if (vaddr === undefined || seen.has(vaddr)) continue;
    seen.add(vaddr);
    // Every function but malloc and calloc may call malloc internally (glibc 2.36 _mid_memalign, realloc).
    const mayNest = f.symbol !== 'malloc' && f.symbol !== 'calloc';
    const fallback: ProbeSpec[] = [
      {
        name: `libc:${f.symbol}`,
        binaryPath: o.libcPath,
        vaddr,
        retprobe: false,
        body: allocEntryProgram(m, f.conv, {
          tgid: o.pid,
          pidns: o.pidns,
          sampleBytes: o.sampleBytes,
          mayNest,
          sizeRange: o.sizeRange,
          lua: o.lua,
        }),
      },
      {
        name: `libc:${f.symbol}`,
        binaryPath: o.libcPath,
        vaddr,
        retprobe: true,
        body: allocReturnProgram(m, f.conv === 'posix_memalign' ? 'posix_memalign' : 'rax', {
          tgid: o.pid,
          pidns: o.pidns,
        }),
      },
    ];
    if (o.loadBias === undefined) {
      out.push(...fallback);
      continue;
    }
    out.push({
      name: `libc:${f.symbol}`,
      binaryPath: o.libcPath,
      vaddr,
      retprobe: false,
      session: true,
      fallback,
      body: allocSessionProgram(m, f.conv, {
        tgid: o.pid,
        pidns: o.pidns,
        sampleBytes: o.sampleBytes,
        sizeRange: o.sizeRange,
        entryRuntimeAddr: vaddr + o.loadBias,
        lua: o.lua,
      }),
    });
  }
  if (o.freeProbe === false) return out;
  const free = o.symbolVaddr('free');
  if (free === undefined) throw new LeakscopeError('not-found', `${o.libcPath}: no free symbol`);
  const freeSpec: ProbeSpec = {
    name: 'libc:free',
    binaryPath: o.libcPath,
    vaddr: free,
    retprobe: false,
    alwaysOn: true,
    body: freeProgram(m, { tgid: o.pid, pidns: o.pidns }),
  };
  // Where sessions are used (kernel >= 6.13), free is a uprobe_multi link too: measured ~0.3 µs less
  // per hit than a perf-event uprobe (1.0 vs 1.3 µs, bench/README.md), and nginx frees 4 times a request.
  out.push(o.loadBias === undefined ? freeSpec : { ...freeSpec, multi: true, fallback: [freeSpec] });
  return out;
}

export function poolProbe(
  m: TracerMaps,
  o: {
    pid: number;
    pidns?: PidNamespace;
    binaryPath: string;
    returnSiteVaddr: number;
    label: string;
    stackBytes?: 4096 | 8192;
    /** Wake the ring's reader once this many bytes are unread (sessions with `drainOnFill`). */
    wakeAtBytes?: number;
  },
): ProbeSpec {
  const spec: ProbeSpec = {
    name: o.label,
    programKey: 'pool create',
    binaryPath: o.binaryPath,
    vaddr: o.returnSiteVaddr,
    retprobe: false,
    body: poolCreateProgram(m, { tgid: o.pid, pidns: o.pidns, stackBytes: o.stackBytes, wakeAtBytes: o.wakeAtBytes }),
  };
  // A uprobe_multi link (kernel >= 6.6), not a perf-event uprobe: a perf event opened on the target
  // (pid N, cpu -1) sits in its task context, which the kernel schedules in and out at every context
  // switch of the target whether the probe is hit or not. Measured (bench/README.md, issue 18): +1.0
  // µs per pipe round trip of a process with one such probe never hit, +2.3 µs with 7 (pool mode's
  // call sites); a uprobe_multi link with the same pid filter adds nothing. An nginx worker switches
  // at every epoll_wait that blocks.
  return { ...spec, multi: true, fallback: [spec] };
}

/**
 * LuaJIT's allocator lj_alloc_f (every Lua heap allocation, reallocation and free goes through
 * it: g->allocf), one session probe (entry + return for allocations), or entry + return probes
 * on kernels without sessions. Each allocation carries the Lua frames.
 */
export function luaAllocProbes(
  m: TracerMaps,
  o: { pid: number; pidns?: PidNamespace; libPath: string; vaddr: number; loadBias: number; lua: LuaWalkConfig[] },
): ProbeSpec[] {
  const name = `${basename(o.libPath)}:lj_alloc_f`;
  const fallback: ProbeSpec[] = [
    {
      name,
      binaryPath: o.libPath,
      vaddr: o.vaddr,
      retprobe: false,
      body: allocEntryProgram(m, 'lj_alloc', { tgid: o.pid, pidns: o.pidns, sampleBytes: 0, lua: o.lua }),
    },
    {
      name,
      binaryPath: o.libPath,
      vaddr: o.vaddr,
      retprobe: true,
      body: allocReturnProgram(m, 'rax', { tgid: o.pid, pidns: o.pidns }),
    },
  ];
  return [
    {
      name,
      binaryPath: o.libPath,
      vaddr: o.vaddr,
      retprobe: false,
      session: true,
      fallback,
      body: allocSessionProgram(m, 'lj_alloc', {
        tgid: o.pid,
        pidns: o.pidns,
        sampleBytes: 0,
        entryRuntimeAddr: o.vaddr + o.loadBias,
        lua: o.lua,
      }),
    },
  ];
}
