// Plain types for call stacks and leak profiles. No imports.

/** One frame of a symbolized stack. */
export interface Frame {
  /** Function name, or null when no symbol covers the address (renderers show `module+0xOFFSET`). */
  function: string | null;
  /** Basename of the module (ELF object) holding the address, or "[unknown]". */
  module: string;
  /** Offset of the address from the module's load bias (i.e. the ELF virtual address). */
  offset: number;
  /** Source file and line, when debug info gave them. */
  file?: string;
  line?: number;
  /** The symbol as the object names it, when `function` is its demangled (C++ / Rust) form. */
  mangled?: string;
  /** Offset of the address from the start of its symbol (call sites of one function differ by it). */
  functionOffset?: number;
  /** True for a frame of a function inlined into the next (outer) frame. */
  inlined?: boolean;
  /** The module's path as seen from the target's root, its build ID, and the runtime mapping holding the address (pprof mappings). */
  modulePath?: string;
  buildId?: string;
  mapping?: { start: number; end: number; fileOffset: number };
  /** Runtime address of the frame (return addresses as captured). */
  address?: number;
}

/** Outstanding (or allocated) memory attributed to one call path. */
export interface StackSample {
  /** Leaf first (the allocator), root last (main / thread start). */
  frames: Frame[];
  /** Bytes still outstanding at the end of the window (estimated when sampled). */
  bytes: number;
  /** Allocations still outstanding (estimated when sampled). */
  count: number;
  /** Bytes and count allocated during the window, outstanding or not (when known). */
  allocBytes?: number;
  allocCount?: number;
  /** With `leaks --reach`: how the outstanding memory of this path stood at the end (reachability scan). */
  reach?: StackReach;
  /** Malloc mode: bytes of this path's window allocations outstanding at each of the trace's
   *  `seriesSeconds` (estimated when sampled); absent when no per-second record was kept. */
  series?: number[];
}

/**
 * Outstanding memory of one call path by reachability at the end of the window (estimated like
 * bytes / count): lost = definitely + indirectly lost (nothing points to it: a leak); possibly lost
 * (only interior pointers); reachable (still referenced: a cache or live data); unknown (changed or
 * freed while scanned, or lost in only one of the scans).
 */
export interface StackReach {
  lostBytes: number;
  lostCount: number;
  possiblyLostBytes: number;
  possiblyLostCount: number;
  reachableBytes: number;
  reachableCount: number;
  unknownBytes: number;
  unknownCount: number;
}

/** The name a frame is shown under in folded stacks, flame graphs and pprof. */
export function frameLabel(f: Frame): string {
  return f.function ?? `${f.module}+0x${f.offset.toString(16)}`;
}
