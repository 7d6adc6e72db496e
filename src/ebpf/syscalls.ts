// Raw system calls for the eBPF runtime, through koffi (no libbpf, no native addon of ours).
// Numbers and layouts: x86-64, kernel include/uapi/linux/bpf.h and perf_event.h
// (verified on 6.18, see shared/reference/ebpf.md).
//
// Memory passed to the kernel (attrs, keys, values, paths) lives in `NativeBuffer`s: memory
// from koffi.alloc with a Buffer view over it, so the address is known and never moves.
import koffi from 'koffi';
import { LeakscopeError, type ErrorCode } from '../model/errors.js';

export const SYS_MMAP = 9;
export const SYS_MUNMAP = 11;
export const SYS_IOCTL = 16;
export const SYS_PERF_EVENT_OPEN = 298;
export const SYS_BPF = 321;
export const SYS_PIDFD_OPEN = 434;
export const SYS_PIDFD_GETFD = 438;

/** bpf(2) commands (enum bpf_cmd). */
export const BpfCmd = {
  MAP_CREATE: 0,
  MAP_LOOKUP_ELEM: 1,
  MAP_UPDATE_ELEM: 2,
  MAP_DELETE_ELEM: 3,
  MAP_GET_NEXT_KEY: 4,
  PROG_LOAD: 5,
  PROG_GET_NEXT_ID: 11,
  MAP_GET_NEXT_ID: 12,
  PROG_GET_FD_BY_ID: 13,
  OBJ_GET_INFO_BY_FD: 15,
  BTF_LOAD: 18,
  LINK_CREATE: 28,
  LINK_GET_FD_BY_ID: 30,
  LINK_GET_NEXT_ID: 31,
} as const;

/** Size we pass for `union bpf_attr`: large enough for every command we use; the rest is zero. */
export const BPF_ATTR_SIZE = 128;

export const PERF_EVENT_IOC_ENABLE = 0x2400;
export const PERF_EVENT_IOC_DISABLE = 0x2401;
export const PERF_EVENT_IOC_SET_BPF = 0x40042408;
export const PERF_FLAG_FD_CLOEXEC = 8;
/** sizeof(struct perf_event_attr) as of PERF_ATTR_SIZE_VER8 (kernel 6.x accepts >= 72). */
export const PERF_ATTR_SIZE = 128;

export const PROT_READ = 1,
  PROT_WRITE = 2;
export const MAP_SHARED = 1;
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EINVAL: 22,
  ENOSPC: 28,
  ENOSYS: 38,
  EOPNOTSUPP: 95,
} as const;
const ERRNO_NAMES = new Map<number, string>(Object.entries(Errno).map(([k, v]) => [v, k]));

export const PERMISSION_HINT =
  'run as root, or grant CAP_BPF and CAP_PERFMON (kernel >= 5.8); check kernel.unprivileged_bpf_disabled and kernel.perf_event_paranoid';

/** A failed system call: a LeakscopeError that also carries the errno. */
export class SyscallError extends LeakscopeError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly errno: number,
  ) {
    super(code, message);
    this.name = 'SyscallError';
  }
}

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

/**
 * Turns an errno into a LeakscopeError. EPERM / EACCES become 'permission' with a hint;
 * errnos listed in `notSupported` (the caller knows they mean "feature missing") become
 * 'not-supported'; everything else is 'io'.
 */
export function errnoError(what: string, errno: number, notSupported: readonly number[] = []): SyscallError {
  const name = errnoName(errno);
  if (errno === Errno.EPERM || errno === Errno.EACCES) {
    return new SyscallError('permission', `${what}: ${name} (${PERMISSION_HINT})`, errno);
  }
  if (errno === Errno.ENOSYS || errno === Errno.EOPNOTSUPP || notSupported.includes(errno)) {
    return new SyscallError('not-supported', `${what}: ${name} (kernel lacks this feature)`, errno);
  }
  return new SyscallError('io', `${what}: ${name}`, errno);
}

interface Libc {
  syscall: (
    nr: number,
    a: number | bigint,
    b: number | bigint,
    c: number | bigint,
    d: number | bigint,
    e: number | bigint,
  ) => number;
  ioctl: (fd: number, req: number, arg: number | bigint) => number;
  close: (fd: number) => number;
  mmap: (addr: null, len: number, prot: number, flags: number, fd: number, off: number) => bigint;
  munmap: (addr: bigint, len: number) => number;
}
let libcCache: Libc | undefined;

function libc(): Libc {
  if (libcCache) return libcCache;
  const lib = koffi.load('libc.so.6');
  // glibc's syscall() and ioctl() are thin assembly wrappers that only move integer
  // registers, so fixed integer prototypes are exact (and much faster than variadic calls).
  libcCache = {
    syscall: lib.func('long syscall(long nr, long a, long b, long c, long d, long e)'),
    ioctl: lib.func('int ioctl(int fd, unsigned long req, long arg)'),
    close: lib.func('int close(int fd)'),
    mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
    munmap: lib.func('int munmap(void *addr, size_t length)'),
  } as unknown as Libc;
  return libcCache;
}

/** Native memory with a fixed address and a Buffer view over it. Freed only by `free()`. */
export class NativeBuffer {
  readonly addr: bigint;
  readonly buf: Buffer;
  private freed = false;
  constructor(readonly size: number) {
    this.addr = koffi.alloc('uint8_t', Math.max(size, 8)) as unknown as bigint;
    this.buf = Buffer.from(koffi.view(this.addr, Math.max(size, 8)), 0, size);
    this.buf.fill(0);
  }
  /** Address of byte `offset`. */
  at(offset: number): bigint {
    return this.addr + BigInt(offset);
  }
  free(): void {
    if (this.freed) return;
    this.freed = true;
    koffi.free(this.addr);
  }
}

/** One shared attr buffer: JS is single-threaded and no call below re-enters. */
let attrScratch: NativeBuffer | undefined;
export function attrBuffer(): NativeBuffer {
  attrScratch ??= new NativeBuffer(256);
  attrScratch.buf.fill(0, 0, 256);
  return attrScratch;
}

/** Last errno of the calling thread (valid right after a failed call). */
export function lastErrno(): number {
  return koffi.errno();
}

/** bpf(cmd, attr, size). Returns the result (an fd or 0); throws on failure. */
export function bpf(cmd: number, attr: NativeBuffer, what: string, notSupported: readonly number[] = []): number {
  const r = libc().syscall(SYS_BPF, cmd, attr.addr, BPF_ATTR_SIZE, 0, 0);
  if (r < 0) throw errnoError(what, koffi.errno(), notSupported);
  return r;
}

/** bpf() that returns -errno instead of throwing (lookups, iteration, feature probes). */
export function bpfRaw(cmd: number, attr: NativeBuffer): number {
  const r = libc().syscall(SYS_BPF, cmd, attr.addr, BPF_ATTR_SIZE, 0, 0);
  return r < 0 ? -koffi.errno() : r;
}

export function perfEventOpen(
  attr: NativeBuffer,
  pid: number,
  cpu: number,
  groupFd: number,
  flags: number,
  what: string,
): number {
  const r = libc().syscall(SYS_PERF_EVENT_OPEN, attr.addr, pid, cpu, groupFd, flags);
  if (r < 0) throw errnoError(what, koffi.errno(), [Errno.ENOENT]);
  return r;
}

export function ioctl(fd: number, request: number, arg: number | bigint, what: string): number {
  const r = libc().ioctl(fd, request, arg);
  if (r < 0) throw errnoError(what, koffi.errno());
  return r;
}

export function closeFd(fd: number): void {
  if (fd >= 0) libc().close(fd);
}

/** mmap(NULL, len, prot, MAP_SHARED, fd, offset). Returns the address. */
export function mmapShared(fd: number, length: number, prot: number, offset: number, what: string): bigint {
  const addr = libc().mmap(null, length, prot, MAP_SHARED, fd, offset);
  if (addr === MAP_FAILED || addr === 0n) throw errnoError(what, koffi.errno());
  return addr;
}

export function munmap(addr: bigint, length: number): void {
  libc().munmap(addr, length);
}

/** A zero-copy ArrayBuffer over native memory (e.g. an mmapped region). Invalid after munmap. */
export function viewOf(addr: bigint, length: number): ArrayBuffer {
  return koffi.view(addr, length);
}

/** pidfd_open(pid, 0) (kernel >= 5.3). */
export function pidfdOpen(pid: number): number {
  const r = libc().syscall(SYS_PIDFD_OPEN, pid, 0, 0, 0, 0);
  if (r < 0) throw errnoError(`pidfd_open(${pid})`, koffi.errno());
  return r;
}

/** pidfd_getfd(pidfd, targetfd, 0) (kernel >= 5.6): duplicates another process's fd into ours. */
export function pidfdGetfd(pidfd: number, targetFd: number): number {
  const r = libc().syscall(SYS_PIDFD_GETFD, pidfd, targetFd, 0, 0, 0);
  if (r < 0) throw errnoError(`pidfd_getfd(${targetFd})`, koffi.errno());
  return r;
}

/** Possible CPUs, from /sys/devices/system/cpu/possible ("0-1", "0,2-3"); per-CPU maps size by this. */
export function parseCpuList(text: string): number[] {
  const cpus: number[] = [];
  for (const part of text.trim().split(',')) {
    if (!part) continue;
    const [a, b] = part.split('-').map((s) => Number.parseInt(s, 10));
    if (!Number.isInteger(a)) throw new LeakscopeError('malformed', `cpu list "${text.trim()}": bad range "${part}"`);
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  return cpus;
}
