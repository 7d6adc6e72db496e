// The one interface every analyzer reads target memory through. A live process
// (/proc/PID/mem) and an ELF core file both implement it, so live and post-mortem
// analysis are the same code. Analyzers never touch /proc directly.

import type { Mapping, MappingWithUsage, Module, TargetFiles } from '../model/memory.js';
import { LeakscopeError } from '../model/errors.js';

export interface ThreadState {
  tid: number;
  /** Registers by x86-64 user_regs_struct name (rip, rsp, rbp, ...), when known (core files). */
  regs?: Record<string, number>;
}

export interface AddressSpace extends TargetFiles {
  readonly kind: 'live' | 'core';
  /** Process id (from the core's notes for a core file). */
  readonly pid: number;
  /**
   * The pid as the target knows itself (getpid() in its own pid namespace: /proc/PID/status NSpid's
   * last field) where it differs from `pid`; names its /tmp/perf-PID.map. Live processes only.
   */
  readonly nsPid?: number;
  /** "pid 1234 (nginx)" or "core /tmp/x.core (nginx, pid 1234)". */
  readonly description: string;
  /** Command name (comm). */
  readonly command: string;
  /** Memory mappings, sorted by address. Live: re-read from /proc on each call with refresh. */
  mappings(opts?: { refresh?: boolean }): Mapping[];
  /** Mappings with RSS / PSS / swap (live: smaps; core: bytes present in the dump as RSS). */
  usage(): MappingWithUsage[];
  /**
   * Resident bytes of [start, end) (page granularity). Live: /proc/PID/pagemap (present or swapped bits);
   * core: bytes present in the dump. Used to split one VMA between categories.
   */
  residentBytes(start: number, end: number): { rss: number; swap: number };
  /** Loaded ELF objects with load bias (executable first). */
  modules(): Module[];
  /** Path of the main executable as leakscope can open it (names exactly its inode; '' when unavailable). */
  exeHostPath(): string;
  // openTargetFile(targetPath, kind) (from TargetFiles): a file the target names that is not one of
  // its mappings (debug files, perf maps), opened inside its root (live: /proc/PID/root; core: the
  // host's root) as a regular file within the kind's size cap. Mapped objects are `modules()`.
  threads(): ThreadState[];
  /**
   * Reads up to `len` bytes at runtime address `addr` into `buf[bufOffset..]`.
   * Returns how many bytes were read: short (possibly 0) at the first unreadable byte. Never throws for unmapped memory.
   */
  readInto(addr: number, buf: Uint8Array, bufOffset: number, len: number): number;
  /**
   * A file descriptor whose pread at offset = address reads the target's memory as readInto does
   * (a live process's /proc/PID/mem), for a reader thread (target/read-ahead.ts); undefined otherwise.
   */
  memoryFd?(): number | undefined;
  /** The process whose memory memoryFd reads, for process_vm_readv by the reader thread; undefined otherwise. */
  memoryPid?(): number | undefined;
  /** Exactly `len` bytes at `addr`, or LeakscopeError('unreadable'). */
  read(addr: number, len: number): Buffer;
  /** A u64 at addr (number, exact below 2^53), or 'unreadable'. */
  readU64(addr: number): number;
  /** Releases file descriptors. */
  close(): void;
}

/** The range holding addr, by binary search over ranges sorted by start ([start, end), disjoint). */
export function findMapping<T extends { start: number; end: number } = Mapping>(
  mappings: readonly T[],
  addr: number,
): T | undefined {
  let lo = 0,
    hi = mappings.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = mappings[mid]!;
    if (addr < m.start) hi = mid - 1;
    else if (addr >= m.end) lo = mid + 1;
    else return m;
  }
  return undefined;
}

type Readable = Pick<AddressSpace, 'readInto' | 'description'>;

/** `AddressSpace.read` for any implementation: exactly `len` bytes or LeakscopeError('unreadable'). */
export function readExactly(space: Readable, addr: number, len: number): Buffer {
  const buf = Buffer.allocUnsafe(len);
  const n = space.readInto(addr, buf, 0, len);
  if (n !== len)
    throw new LeakscopeError(
      'unreadable',
      `${space.description}: cannot read ${len} bytes at 0x${addr.toString(16)} (only ${n} readable)`,
    );
  return buf;
}

/** `AddressSpace.readU64` for any implementation, through an 8-byte scratch buffer. */
export function readU64Via(space: Readable, scratch: Buffer, addr: number): number {
  if (space.readInto(addr, scratch, 0, 8) !== 8)
    throw new LeakscopeError('unreadable', `${space.description}: cannot read 8 bytes at 0x${addr.toString(16)}`);
  return scratch.readUInt32LE(4) * 4294967296 + scratch.readUInt32LE(0);
}
