// Opening files a target names, safely: leakscope runs as root and a target may be hostile.
//   - A mapped file is opened through /proc/PID/map_files/START-END: the inode actually mapped,
//     whatever the target's mount namespace, chroot or symlinks say (needs CAP_SYS_ADMIN or
//     CAP_CHECKPOINT_RESTORE; else the path is opened inside the target's root, below).
//   - Every other path the target names (debuglink and build-id files, perf maps, a core's NT_FILE
//     entries) is resolved inside the target's root: openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
//     on a /proc/PID/root directory fd, so an absolute symlink or `..` cannot leave it (kernel < 5.6:
//     resolved component by component here, clamping `..` and absolute links at the root).
//   - Whatever the path, only a regular file within the kind's size cap is read, with bounded reads
//     (binary/regular-file.ts: O_PATH, fstat, reopen O_NONBLOCK | O_NOCTTY): never a FIFO, a device,
//     a directory.
// Files the user names (--core, --exe, --baseline) are checked the same way (regular, size cap).

import { closeSync, fstatSync, lstatSync, openSync, readlinkSync } from 'node:fs';
import { LeakscopeError } from '../model/errors.js';
import type { Mapping, OpenedFile, TargetFileKind, TargetFiles } from '../model/memory.js';
import {
  O_PATH,
  checkPathFd,
  openError,
  openRegularFile,
  readWholeAndClose,
  reopenRegular,
} from '../binary/regular-file.js';
import { Openat2Error, RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2 } from './openat2.js';

const O_DIRECTORY = 0o200000,
  O_NOFOLLOW = 0o400000,
  O_CLOEXEC = 0o2000000;
/** Linux's own limit on symlinks followed in one lookup (MAXSYMLINKS, include/linux/namei.h). */
const MAX_SYMLINKS = 40;
const PATH_MAX = 4096;

/** Size caps per kind of file (bytes). An ELF object or debug file is read whole into memory. */
export const SIZE_CAPS: Record<TargetFileKind, number> = {
  object: 1 << 30, // a mapped executable or library (Chromium's is ~250 MiB)
  'debug-file': 1 << 30, // separate debug info (libc6-dbg's is ~6 MiB; large C++ programs reach GiBs)
  'perf-map': 64 << 20, // /tmp/perf-PID.map text
  core: Number.MAX_SAFE_INTEGER, // read in bounded pieces, never whole; its headers and notes have their own caps
  executable: 1 << 30, // --exe
  baseline: 64 << 20, // a saved `heap --json` document
};

const WHAT: Record<TargetFileKind, string> = {
  object: 'a mapped object',
  'debug-file': 'a debug file',
  'perf-map': 'a perf map',
  core: 'a core file',
  executable: 'an executable',
  baseline: 'a baseline document',
};

/** Validates a path a target names: absolute, no NUL, at most PATH_MAX. Throws LeakscopeError('not-found'). */
function checkTargetPath(targetPath: string, label: string): void {
  if (!targetPath.startsWith('/') || targetPath.includes('\0') || targetPath.length >= PATH_MAX) {
    throw new LeakscopeError('not-found', `${label}: not an absolute path a target can name`);
  }
}

/**
 * The directory a target's paths are resolved in: /proc/PID/root for a live process (its mount
 * namespace and chroot), "/" for a core file. Holds an O_PATH directory fd until close().
 */
export class TargetRoot implements TargetFiles {
  private dirFd = -1;
  /** Tests set it to exercise the fallback used on kernels without openat2. */
  forceFallback = false;

  constructor(
    readonly dir: string,
    readonly description: string,
  ) {}

  private rootFd(): number {
    if (this.dirFd < 0) {
      try {
        this.dirFd = openSync(this.dir, O_PATH | O_DIRECTORY);
      } catch (e) {
        throw openError(`${this.description}: root ${this.dir}`, e as NodeJS.ErrnoException);
      }
    }
    return this.dirFd;
  }

  /** An O_PATH fd of `targetPath` resolved inside the root (not yet checked: may be any type). */
  private openPath(targetPath: string, label: string): number {
    checkTargetPath(targetPath, label);
    const rel = targetPath.replace(/^\/+/, '') || '.';
    // EAGAIN: a rename or mount raced the lookup (RESOLVE_IN_ROOT refuses to guess): try again, a few times.
    for (let attempt = 0; !this.forceFallback; attempt++) {
      try {
        const fd = openat2(this.rootFd(), rel, O_PATH | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        if (fd === undefined) break; // kernel < 5.6
        return fd;
      } catch (e) {
        if (e instanceof Openat2Error && e.code === 'EAGAIN' && attempt < 3) continue;
        if (e instanceof Openat2Error) throw openError(label, { code: e.code, message: e.message });
        throw e;
      }
    }
    // Kernel < 5.6: resolve here, then open the result without following a final symlink.
    const resolved = resolveInRoot(this.dir, targetPath);
    if (resolved === undefined) throw new LeakscopeError('not-found', `${label}: no such file`);
    try {
      return openSync(this.dir === '/' ? resolved : `${this.dir}${resolved}`, O_PATH | O_NOFOLLOW);
    } catch (e) {
      throw openError(label, e as NodeJS.ErrnoException);
    }
  }

  openTargetFile(targetPath: string, kind: TargetFileKind): OpenedFile {
    const label = this.labelOf(targetPath);
    return reopenRegular(this.openPath(targetPath, label), label, SIZE_CAPS[kind], WHAT[kind]);
  }

  /**
   * `targetPath` checked (regular, within the cap) and pinned: returns /proc/self/fd/N of an O_PATH fd
   * held until close(), a path that names exactly that inode (for loaders and uprobes that take paths).
   */
  pinTargetFile(targetPath: string, kind: TargetFileKind, mapped?: Pick<Mapping, 'dev' | 'inode'>): string {
    const label = this.labelOf(targetPath);
    const fd = checkPathFd(this.openPath(targetPath, label), label, SIZE_CAPS[kind], WHAT[kind]);
    if (mapped && !sameInode(fd, mapped)) {
      closeSync(fd);
      throw new LeakscopeError(
        'not-found',
        `${label}: not the file the target mapped (device ${mapped.dev}, inode ${mapped.inode})`,
      );
    }
    this.pinned.push(fd);
    return `/proc/self/fd/${fd}`;
  }
  private pinned: number[] = [];

  private labelOf(targetPath: string): string {
    return this.dir === '/' ? targetPath : `${targetPath} (in ${this.description}'s root)`;
  }

  close(): void {
    for (const fd of this.pinned)
      try {
        closeSync(fd);
      } catch {
        /* closed */
      }
    this.pinned = [];
    if (this.dirFd >= 0) {
      try {
        closeSync(this.dirFd);
      } catch {
        /* closed */
      }
      this.dirFd = -1;
    }
  }
}

/** Whether an open file is the inode a /proc/PID/maps line names ("fe:01" hex major:minor, inode). */
export function sameInode(fd: number, mapped: Pick<Mapping, 'dev' | 'inode'>): boolean {
  const st = fstatSync(fd);
  const [maj, min] = mapped.dev.split(':').map((x) => parseInt(x, 16));
  // st_dev in glibc's encoding (gnu_dev_major / gnu_dev_minor, sysmacros.h).
  const stMajor = (Math.floor(st.dev / 256) & 0xfff) | (Math.floor(st.dev / 2 ** 32) & ~0xfff);
  const stMinor = (st.dev & 0xff) | (Math.floor(st.dev / 4096) & 0xffffff00);
  return st.ino === mapped.inode && stMajor === maj && stMinor === min;
}

/**
 * Resolves `targetPath` inside `rootDir` component by component, as RESOLVE_IN_ROOT does: `..` at
 * the root stays at the root, an absolute symlink restarts at the root, at most MAX_SYMLINKS links.
 * Returns the resolved path inside the root ("/a/b", every symlink followed), or undefined when a
 * component is missing or there are too many links. The fallback for kernels < 5.6: a concurrent
 * rename inside the root can race it, which openat2 cannot.
 */
export function resolveInRoot(rootDir: string, targetPath: string): string | undefined {
  const host = (p: string) => (rootDir === '/' ? p || '/' : `${rootDir}${p}`);
  let todo = targetPath.split('/').filter((c) => c && c !== '.');
  const done: string[] = [];
  let links = 0;
  while (todo.length) {
    const c = todo.shift()!;
    if (c === '..') {
      done.pop();
      continue;
    }
    const p = `/${[...done, c].join('/')}`;
    let isLink: boolean;
    try {
      isLink = lstatSync(host(p)).isSymbolicLink();
    } catch {
      return undefined;
    }
    if (!isLink) {
      done.push(c);
      continue;
    }
    if (++links > MAX_SYMLINKS) return undefined;
    let target: string;
    try {
      target = readlinkSync(host(p));
    } catch {
      return undefined;
    }
    const parts = target.split('/').filter((x) => x && x !== '.');
    if (target.startsWith('/')) done.length = 0; // absolute: from the target's root, not ours
    todo = [...parts, ...todo];
  }
  return `/${done.join('/')}`;
}

/** The host's own root, for paths in core files (a core names files of the machine it is read on). */
export function hostRoot(): TargetRoot {
  return new TargetRoot('/', 'host');
}

/** /proc/PID/map_files/START-END of a mapping (lowercase hex, no 0x, as the kernel names them). */
export function mapFilesPath(pid: number, m: Pick<Mapping, 'start' | 'end'>): string {
  return `/proc/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`;
}

/**
 * Whether /proc/PID/map_files entries can be opened by us (CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE in
 * the initial user namespace): tried on one file mapping. EPERM / EACCES: no.
 */
export function mapFilesPermitted(pid: number, m: Pick<Mapping, 'start' | 'end'>): boolean {
  try {
    closeSync(openSync(mapFilesPath(pid, m), O_PATH));
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return !(code === 'EPERM' || code === 'EACCES');
  }
}

/** A file the user named (--core, --exe, --baseline): a regular file within the kind's cap. Caller closes. */
export function openUserFile(path: string, kind: TargetFileKind): OpenedFile {
  return openRegularFile(path, SIZE_CAPS[kind], { what: WHAT[kind] });
}

/** The whole of a file the user named (--baseline): regular, within the kind's cap, bounded read. */
export function readUserFile(path: string, kind: TargetFileKind): Buffer {
  return readWholeAndClose(openUserFile(path, kind));
}
