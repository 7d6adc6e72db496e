// Plain types for a leak trace (step 5). No imports but model siblings.
import type { StackSample } from './stacks.js';

/** lua: LuaJIT's allocator lj_alloc_f (opt-in, short windows: every Lua allocation traps). */
export type TraceMode = 'pool' | 'malloc' | 'lua';

export interface TraceCost {
  /** Probe hits in the target during the window, per probe. */
  probeHits: Record<string, number>;
  totalProbeHits: number;
  /** Estimated CPU time the probes cost the target (hits x per-hit cost), seconds. */
  estimatedCpuSeconds: number;
  /** Per-hit cost used for the estimate, microseconds (entry hits; return hits count ~4 µs). */
  perHitMicros: number;
  /** Share of the window the probes were attached (duty cycle), 0..1. */
  dutyCycle: number;
  /** Events lost (ring buffer full, outstanding map full). */
  lostEvents: number;
}

export interface LeakTrace {
  mode: TraceMode;
  target: string;
  pid: number;
  durationSeconds: number;
  /** Byte-weighted sampling period (0 = every allocation traced). */
  sampleBytes: number;
  /** Allocations younger than this at the end are not counted (seconds). */
  minAgeSeconds: number;
  /** Outstanding memory by call path, heaviest first. */
  stacks: StackSample[];
  totals: {
    /** Outstanding (estimated) bytes / allocations at the end of the window. */
    outstandingBytes: number;
    outstandingCount: number;
    /** Allocated during the window (estimated). */
    allocatedBytes: number;
    allocatedCount: number;
    /** Sampled events captured, and how many stacks unwound to main / a thread start. */
    sampledEvents: number;
    completeStacks: number;
  };
  cost: TraceCost;
  /** Malloc mode: seconds since the window start at which each StackSample.series value was
   *  taken (about one per second, the last at the end); absent when none was kept. */
  seriesSeconds?: number[];
  /** Where the probes were attached ("libc.so.6:malloc", "nginx:ngx_create_pool+0x1c"). */
  probes: string[];
  notes: string[];
  /**
   * False when events were lost (ring buffer full, outstanding map full): per-path figures are then
   * lower bounds, and a verdict must not be "high" on them. Absent in older documents (= unknown).
   */
  complete?: boolean;
  /** What was lost (malloc mode). */
  lost?: {
    /** Records the full ring refused, and the bytes those allocations requested. */
    events: number;
    requestedBytes: number;
    /** Of those, still outstanding at the end (counted under the "[stack lost ...]" path). */
    outstandingCount: number;
    outstandingBytes: number;
    /** Allocations not tracked at all (outstanding map full): totals are lower bounds too. */
    untracked: number;
  };
  /** Seconds into the window at which the target exited (the result covers up to then). */
  targetExitedAfterSeconds?: number;
  /** Pool mode: which ngx_create_pool call sites were probed and which left alone (nginx's own pools). */
  poolSites?: PoolSiteReport;
}

/** One call site of ngx_create_pool (an ELF vaddr in `module`). */
export interface PoolSiteEntry {
  /** Path of the object as the target maps it. */
  module: string;
  /** The calling function's name; for an unnamed (static) one `module+0xSTART`. */
  function: string;
  /** ELF vaddr of the call instruction. */
  callVaddr: number;
  via: 'direct' | 'plt' | 'got';
  /** ELF vaddr probed (after the call, rax = the pool), and whether the kernel emulates the instruction there. */
  probeVaddr: number;
  emulated: boolean;
  /** Skipped sites: who owns and destroys the pools (connection, request, upstream, http2, cycle) and the nginx source. */
  owner?: string;
  source?: string;
}

export interface PoolSiteReport {
  /** `call-sites`: probes at the probed sites only; `body`: one probe inside ngx_create_pool (every pool). */
  placement: 'call-sites' | 'body';
  /** Why the body was probed (`--all-pool-sites`, or a reference to ngx_create_pool not proven a call site). */
  reason?: string;
  probed: PoolSiteEntry[];
  skipped: PoolSiteEntry[];
}
