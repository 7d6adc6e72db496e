// openat2(2) through koffi (the target layer's one system call that Node lacks; the eBPF layer,
// above this one, has its own bindings). Kernel >= 5.6. Layout: include/uapi/linux/openat2.h
// (struct open_how { u64 flags; u64 mode; u64 resolve; }, 24 bytes); x86-64 syscall number 437.
import koffi from 'koffi';

const SYS_OPENAT2 = 437;
/** RESOLVE_* (uapi/linux/openat2.h). */
export const RESOLVE_NO_XDEV = 0x01,
  RESOLVE_NO_MAGICLINKS = 0x02,
  RESOLVE_NO_SYMLINKS = 0x04,
  RESOLVE_BENEATH = 0x08,
  RESOLVE_IN_ROOT = 0x10;
const ENOSYS = 38;

/** errno -> the code Node uses in its errors, for the few openat2 can return here. */
const ERRNO_CODES: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  13: 'EACCES',
  18: 'EXDEV',
  20: 'ENOTDIR',
  21: 'EISDIR',
  22: 'EINVAL',
  24: 'EMFILE',
  36: 'ENAMETOOLONG',
  40: 'ELOOP',
  6: 'ENXIO',
  11: 'EAGAIN',
  38: 'ENOSYS',
};

type SyscallFn = (nr: number, dirfd: number, path: string, how: Buffer, size: number) => number;
let syscallFn: SyscallFn | undefined;
let unavailable = false;

function fn(): SyscallFn {
  // glibc's syscall() only moves integer registers: a fixed prototype is exact.
  syscallFn ??= koffi
    .load('libc.so.6')
    .func('long syscall(long nr, int dirfd, const char *path, void *how, size_t size)') as unknown as SyscallFn;
  return syscallFn;
}

export class Openat2Error extends Error {
  constructor(
    readonly code: string,
    readonly errno: number,
    path: string,
  ) {
    super(`openat2 ${path}: ${code}`);
  }
}

/**
 * openat2(dirfd, path, {flags, resolve}). Returns the fd; throws Openat2Error (code like Node's).
 * Returns undefined when the kernel lacks openat2 (ENOSYS, < 5.6): the caller falls back.
 */
export function openat2(dirfd: number, path: string, flags: number, resolve: number): number | undefined {
  if (unavailable) return undefined;
  const how = Buffer.alloc(24);
  how.writeBigUInt64LE(BigInt(flags), 0);
  how.writeBigUInt64LE(BigInt(resolve), 16);
  const r = fn()(SYS_OPENAT2, dirfd, path, how, 24);
  if (r >= 0) return r;
  const errno = koffi.errno();
  if (errno === ENOSYS) {
    unavailable = true;
    return undefined;
  }
  throw new Openat2Error(ERRNO_CODES[errno] ?? `errno ${errno}`, errno, path);
}
