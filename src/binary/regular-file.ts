// Bounded reads of regular files: the one way leakscope reads a file whose name it did not choose
// (a target's libraries, debug files, cores, a --baseline). A path may name a FIFO (open or read
// would block forever), a device (/dev/zero never ends), a directory, or a file larger than anything
// leakscope should hold: so open O_NONBLOCK | O_NOCTTY, fstat the descriptor (not the path), accept
// regular files up to a size cap only, and read at most the size fstat gave.
// Where the path is resolved (host root, target root, /proc/PID/map_files) is the caller's choice.

import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { LeakscopeError } from '../model/errors.js';
import type { OpenedFile } from '../model/memory.js';

/** open(2) flags for every read-only open of a file a target or a user named (libuv adds O_CLOEXEC). */
export const SAFE_OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;
/** O_PATH (x86-64 asm-generic/fcntl.h 010000000): a descriptor that names an inode, opens nothing. */
export const O_PATH = 0o10000000;

/** A regular file opened for reading, with the size and identity (dev:ino:size:mtime) fstat gave at open time. */
export type RegularFile = OpenedFile;

/** "a FIFO", "a directory", ...: what a non-regular file is, for one-line errors. */
export function fileTypeName(st: Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

export function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(1)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} bytes`;
}

/** A LeakscopeError for a failed open(2) / openat2(2) of `label`. */
export function openError(
  label: string,
  e: NodeJS.ErrnoException | { code?: string; message: string },
): LeakscopeError {
  const code = e.code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return new LeakscopeError('not-found', `${label}: no such file`);
  if (code === 'EACCES' || code === 'EPERM') return new LeakscopeError('permission', `${label}: permission denied`);
  if (code === 'EISDIR') return new LeakscopeError('malformed', `${label}: not a regular file (a directory)`);
  if (code === 'ELOOP' || code === 'EXDEV')
    return new LeakscopeError(
      'not-found',
      `${label}: refused (the path leaves the target's root or uses a magic link)`,
    );
  if (code === 'ENXIO') return new LeakscopeError('malformed', `${label}: not a regular file`);
  return new LeakscopeError('io', `${label}: ${e.message}`);
}

/**
 * Checks an O_PATH descriptor: a regular file of at most `maxBytes`. Returns it (kept open, e.g. to
 * name the inode as /proc/self/fd/N); closes it and throws LeakscopeError('malformed') otherwise.
 */
export function checkPathFd(pathFd: number, label: string, maxBytes: number, what = 'a file'): number {
  let st: Stats;
  try {
    st = fstatSync(pathFd);
  } catch (e) {
    closeSync(pathFd);
    throw openError(label, e as NodeJS.ErrnoException);
  }
  if (!st.isFile()) {
    closeSync(pathFd);
    throw new LeakscopeError('malformed', `${label}: not a regular file (${fileTypeName(st)})`);
  }
  if (st.size > maxBytes) {
    closeSync(pathFd);
    throw new LeakscopeError(
      'malformed',
      `${label}: ${formatBytes(st.size)}, more than the ${formatBytes(maxBytes)} leakscope reads for ${what}`,
    );
  }
  return pathFd;
}

/**
 * Turns an O_PATH descriptor into a readable regular file of at most `maxBytes`: fstat, then reopen
 * the same inode through /proc/self/fd/N. Always closes `pathFd`; throws LeakscopeError('malformed')
 * for anything but a regular file within the cap.
 */
export function reopenRegular(pathFd: number, label: string, maxBytes: number, what = 'a file'): RegularFile {
  checkPathFd(pathFd, label, maxBytes, what);
  let fd: number;
  try {
    fd = openSync(`/proc/self/fd/${pathFd}`, SAFE_OPEN_FLAGS);
  } catch (e) {
    throw openError(label, e as NodeJS.ErrnoException);
  } finally {
    closeSync(pathFd);
  }
  return checkRegular(fd, label, maxBytes, what);
}

/** Checks an open descriptor: a regular file of at most `maxBytes`. Closes `fd` and throws otherwise. */
export function checkRegular(fd: number, label: string, maxBytes: number, what = 'a file'): RegularFile {
  let st: Stats;
  try {
    st = fstatSync(fd);
  } catch (e) {
    closeSync(fd);
    throw openError(label, e as NodeJS.ErrnoException);
  }
  if (!st.isFile()) {
    closeSync(fd);
    throw new LeakscopeError('malformed', `${label}: not a regular file (${fileTypeName(st)})`);
  }
  if (st.size > maxBytes) {
    closeSync(fd);
    throw new LeakscopeError(
      'malformed',
      `${label}: ${formatBytes(st.size)}, more than the ${formatBytes(maxBytes)} leakscope reads for ${what}`,
    );
  }
  return { fd, size: st.size, identity: `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`, label };
}

/** Opens `path` (resolved as this process sees it) as a regular file of at most `maxBytes`. */
export function openRegularFile(
  path: string,
  maxBytes: number,
  opts: { label?: string; what?: string } = {},
): RegularFile {
  const label = opts.label ?? path;
  let pathFd: number;
  try {
    pathFd = openSync(path, O_PATH);
  } catch (e) {
    throw openError(label, e as NodeJS.ErrnoException);
  }
  return reopenRegular(pathFd, label, maxBytes, opts.what);
}

/**
 * Reads [offset, offset + len) of an open regular file, clamped to the size fstat gave: at most
 * `len` bytes however the file changes meanwhile. Returns the bytes read (short at end of file).
 */
export function readRange(file: RegularFile, offset: number, len: number): Buffer {
  const n = Math.max(0, Math.min(len, file.size - offset));
  const buf = Buffer.allocUnsafe(n);
  let done = 0;
  while (done < n) {
    let got: number;
    try {
      got = readSync(file.fd, buf, done, n - done, offset + done);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'EAGAIN') break; // cannot happen for a regular file; never spin on it
      throw new LeakscopeError('io', `${file.label}: read at ${offset + done}: ${err.message}`);
    }
    if (got <= 0) break;
    done += got;
  }
  return done === n ? buf : buf.subarray(0, done);
}

/** The whole file (as fstat sized it at open), then closes it. */
export function readWholeAndClose(file: RegularFile): Buffer {
  try {
    return readRange(file, 0, file.size);
  } finally {
    closeSync(file.fd);
  }
}

/** Opens, checks and reads a regular file of at most `maxBytes` bytes. */
export function readRegularFile(path: string, maxBytes: number, opts: { label?: string; what?: string } = {}): Buffer {
  return readWholeAndClose(openRegularFile(path, maxBytes, opts));
}
