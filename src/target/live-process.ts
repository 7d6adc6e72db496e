// AddressSpace of a live process: /proc/PID/mem (pread, never write), maps, smaps, status, exe.
// Mapped objects are opened through /proc/PID/map_files (the inode mapped, in any namespace or
// chroot); other files the target names inside /proc/PID/root (target-files.ts).
// Reading never stops the target (no ptrace attach); the kernel checks PTRACE_MODE_ATTACH.

import { closeSync, openSync, readFileSync, readSync, readlinkSync, existsSync, readdirSync } from 'node:fs';
import { LeakscopeError } from '../model/errors.js';
import type { Mapping, MappingWithUsage, Module, OpenedFile, TargetFileKind } from '../model/memory.js';
import { parseMaps, parseSmaps, parseStatus } from '../formats/procfs/index.js';
import type { AddressSpace, ThreadState } from './address-space.js';
import { readExactly, readU64Via } from './address-space.js';
import { buildModules } from './modules.js';
import { TargetRoot, mapFilesPath, mapFilesPermitted } from './target-files.js';
import { innermostPid } from './pid-namespace.js';

export class LiveProcess implements AddressSpace {
  readonly kind = 'live' as const;
  readonly command: string;
  private fd: number;
  private cachedMaps?: Mapping[];
  private cachedModules?: Module[];
  private scratch = Buffer.alloc(8);
  private pagemapFd = -1;
  /** 64 KiB of pagemap entries (8192 pages) per read. */
  private pagemapBuf = Buffer.allocUnsafe(8192 * 8);
  /** The target's root directory (/proc/PID/root): its mount namespace and chroot. */
  private readonly root: TargetRoot;
  /** Whether /proc/PID/map_files can be opened (decided on the first module). */
  private mapFiles?: boolean;
  /** The target's pid in its own pid namespace (NSpid's last field; = pid in leakscope's namespace). */
  nsPid: number;

  private constructor(
    readonly pid: number,
    fd: number,
    command: string,
  ) {
    this.fd = fd;
    this.command = command;
    this.nsPid = pid;
    this.root = new TargetRoot(`/proc/${pid}/root`, `pid ${pid}`);
  }

  get description(): string {
    return `pid ${this.pid} (${this.command})`;
  }

  /**
   * Opens a process for reading. One-line errors: no such process (also a zombie: "has exited"),
   * kernel thread, permission. `mapFiles: false` (tests) opens mapped objects inside the target's
   * root as when /proc/PID/map_files is not permitted.
   */
  static open(pid: number, opts: { mapFiles?: boolean } = {}): LiveProcess {
    if (!Number.isInteger(pid) || pid <= 0) throw new LeakscopeError('usage', `not a process id: ${pid}`);
    const dir = `/proc/${pid}`;
    if (!existsSync(dir)) throw new LeakscopeError('no-such-process', `no such process: ${pid}`);
    let status: Map<string, string>;
    try {
      status = parseStatus(readFileSync(`${dir}/status`, 'utf8'));
    } catch {
      throw new LeakscopeError('no-such-process', `process ${pid} has exited`);
    }
    const command = status.get('Name') ?? '?';
    // A zombie (or a task being reaped) has no address space left: it has exited, whatever its maps say.
    if (/^[ZX]/.test(status.get('State') ?? ''))
      throw new LeakscopeError('no-such-process', `process ${pid} has exited (${command})`);
    // Kernel threads have no user address space: empty maps, no exe, PF_KTHREAD.
    let maps = '';
    try {
      maps = readFileSync(`${dir}/maps`, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') throw permissionError(pid, command);
      throw new LeakscopeError('no-such-process', `process ${pid} has exited`);
    }
    // "Kthread: 1" (Linux >= 6.0) says it outright; older kernels: no maps and no VmSize.
    if (status.get('Kthread') === '1' || (!status.has('Kthread') && !maps.trim() && !status.has('VmSize'))) {
      throw new LeakscopeError(
        'kernel-thread',
        `pid ${pid} (${command}) is a kernel thread: it has no user memory to analyze`,
      );
    }
    if (!maps.trim())
      throw new LeakscopeError('no-such-process', `process ${pid} has exited (${command}): no memory mappings left`);
    let fd: number;
    try {
      fd = openSync(`${dir}/mem`, 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') throw permissionError(pid, command);
      if (code === 'ENOENT' || code === 'ESRCH')
        throw new LeakscopeError('no-such-process', `process ${pid} has exited`);
      throw new LeakscopeError('io', `open /proc/${pid}/mem: ${(e as Error).message}`);
    }
    const live = new LiveProcess(pid, fd, command);
    live.nsPid = innermostPid(`NSpid:\t${status.get('NSpid') ?? pid}\n`, pid);
    if (opts.mapFiles === false) live.mapFiles = false;
    return live;
  }

  mappings(opts: { refresh?: boolean } = {}): Mapping[] {
    if (!this.cachedMaps || opts.refresh) {
      this.cachedModules = undefined; // rebuilt from the new mappings (dlopen / dlclose)
      try {
        this.cachedMaps = parseMaps(readFileSync(`/proc/${this.pid}/maps`, 'utf8'));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ESRCH' || (e as NodeJS.ErrnoException).code === 'ENOENT') {
          throw new LeakscopeError('no-such-process', `process ${this.pid} has exited`);
        }
        throw e;
      }
    }
    return this.cachedMaps;
  }

  usage(): MappingWithUsage[] {
    return parseSmaps(readFileSync(`/proc/${this.pid}/smaps`, 'utf8'));
  }

  exeTargetPath(): string {
    try {
      return readlinkSync(`/proc/${this.pid}/exe`).replace(/ \(deleted\)$/, '');
    } catch {
      return '';
    }
  }

  exeHostPath(): string {
    return `/proc/${this.pid}/exe`;
  }

  openTargetFile(targetPath: string, kind: TargetFileKind): OpenedFile {
    return this.root.openTargetFile(targetPath, kind);
  }

  /**
   * The path to open for the object mapped at `first`: /proc/PID/map_files/START-END (the inode the
   * target mapped, however its namespace, chroot or symlinks name it); when that is not permitted
   * (no CAP_SYS_ADMIN / CAP_CHECKPOINT_RESTORE), the path resolved inside the target's root, pinned.
   */
  private objectPath(targetPath: string, first: Mapping): string {
    this.mapFiles ??= mapFilesPermitted(this.pid, first);
    if (this.mapFiles) return mapFilesPath(this.pid, first);
    // Pinned once per mapped inode (modules are rebuilt on every maps refresh).
    const key = `${targetPath}\0${first.dev}\0${first.inode}`;
    let pinned = this.pinnedObjects.get(key);
    if (!pinned)
      this.pinnedObjects.set(key, (pinned = this.root.pinTargetFile(this.insideRoot(targetPath), 'object', first)));
    return pinned;
  }
  private pinnedObjects = new Map<string, string>();

  /**
   * /proc/PID/maps prints paths as leakscope's root sees them: for a chrooted target, with the
   * chroot directory in front. That prefix (readlink /proc/PID/root) is taken off to name the
   * file inside the target's root.
   */
  private insideRoot(mapsPath: string): string {
    if (this.rootPrefix === undefined) {
      try {
        this.rootPrefix = readlinkSync(`/proc/${this.pid}/root`).replace(/\/+$/, '');
      } catch {
        this.rootPrefix = '';
      }
    }
    const pre = this.rootPrefix;
    return pre && mapsPath.startsWith(`${pre}/`) ? mapsPath.slice(pre.length) : mapsPath;
  }
  private rootPrefix?: string;

  modules(): Module[] {
    if (!this.cachedModules) {
      const exe = this.exeTargetPath();
      this.cachedModules = buildModules(this.mappings(), (p, first) => this.objectPath(p, first), exe, this);
    }
    return this.cachedModules;
  }

  threads(): ThreadState[] {
    try {
      // /proc/PID/task/TID/syscall ends with "sp pc" while the thread is in a syscall (or "running").
      return readdirSync(`/proc/${this.pid}/task`).map((t) => {
        const th: ThreadState = { tid: Number(t) };
        try {
          const f = readFileSync(`/proc/${this.pid}/task/${t}/syscall`, 'utf8').trim().split(' ');
          if (f.length >= 3 && f[0] !== 'running')
            th.regs = { rsp: parseInt(f[f.length - 2]!, 16), rip: parseInt(f[f.length - 1]!, 16) };
        } catch {
          /* thread gone or not permitted */
        }
        return th;
      });
    } catch {
      return [];
    }
  }

  residentBytes(start: number, end: number): { rss: number; swap: number } {
    // pagemap: one u64 per 4 KiB page; bit 63 present, bit 62 swapped, bits 0-54 the PFN (root
    // only) (Documentation/admin-guide/mm/pagemap.rst). A never-touched anonymous page that
    // someone read (leakscope's own heap reads through /proc/PID/mem) maps the shared zero page:
    // present in pagemap, not in smaps' Rss. Such pages are not counted: a PFN that recurs in the
    // range is looked up in /proc/kpageflags and skipped when it is KPF_ZERO_PAGE (bit 24).
    // The descriptor and buffer are kept between calls: a breakdown asks once per region (hundreds).
    const first = Math.floor(start / 4096),
      last = Math.ceil(end / 4096);
    let rss = 0,
      swap = 0;
    if (this.pagemapFd < 0) {
      try {
        this.pagemapFd = openSync(`/proc/${this.pid}/pagemap`, 'r');
      } catch {
        return { rss: 0, swap: 0 };
      }
    }
    const buf = this.pagemapBuf;
    const CHUNK = buf.length / 8; // pages per read
    const seen = new Map<number, number>(); // PFN -> present pages mapping it
    try {
      for (let p = first; p < last; p += CHUNK) {
        const n = Math.min(CHUNK, last - p);
        const got = readSync(this.pagemapFd, buf, 0, n * 8, p * 8) / 8;
        for (let i = 0; i < got; i++) {
          const hi = buf.readUInt32LE(i * 8 + 4);
          if (hi & 0x80000000) {
            rss += 4096;
            const pfn = (hi & 0x7fffff) * 4294967296 + buf.readUInt32LE(i * 8);
            if (pfn !== 0) seen.set(pfn, (seen.get(pfn) ?? 0) + 1);
          } else if (hi & 0x40000000) swap += 4096;
        }
      }
    } catch {
      /* process gone */
    }
    for (const [pfn, pages] of seen) {
      if (pages > 1 && isZeroPage(pfn)) rss -= pages * 4096;
    }
    return { rss, swap };
  }

  readInto(addr: number, buf: Uint8Array, bufOffset: number, len: number): number {
    let done = 0;
    while (done < len) {
      let n: number;
      try {
        n = readSync(this.fd, buf, bufOffset + done, len - done, addr + done);
      } catch {
        // EIO: the first byte is unmapped; a short read already stopped at the boundary.
        return done;
      }
      if (n <= 0) return done;
      done += n;
    }
    return done;
  }

  memoryFd(): number | undefined {
    return this.fd >= 0 ? this.fd : undefined;
  }

  memoryPid(): number | undefined {
    return this.fd >= 0 ? this.pid : undefined;
  }

  read(addr: number, len: number): Buffer {
    return readExactly(this, addr, len);
  }

  readU64(addr: number): number {
    return readU64Via(this, this.scratch, addr);
  }

  close(): void {
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = -1;
    }
    if (this.pagemapFd >= 0) {
      try {
        closeSync(this.pagemapFd);
      } catch {
        /* already closed */
      }
      this.pagemapFd = -1;
    }
    this.root.close();
  }
}

/** KPF_ZERO_PAGE (include/uapi/linux/kernel-page-flags.h) of a PFN, from /proc/kpageflags (root). */
const zeroPages = new Map<number, boolean>();
function isZeroPage(pfn: number): boolean {
  let z = zeroPages.get(pfn);
  if (z !== undefined) return z;
  z = false;
  try {
    const fd = openSync('/proc/kpageflags', 'r');
    try {
      const b = Buffer.alloc(8);
      if (readSync(fd, b, 0, 8, pfn * 8) === 8) z = (b.readUInt32LE(0) & (1 << 24)) !== 0;
    } finally {
      closeSync(fd);
    }
  } catch {
    /* not root / no kpageflags: count the page */
  }
  if (zeroPages.size < 64) zeroPages.set(pfn, z);
  return z;
}

function permissionError(pid: number, command: string): LeakscopeError {
  return new LeakscopeError(
    'permission',
    `not permitted to read the memory of pid ${pid} (${command}): run as root or with CAP_SYS_PTRACE`,
  );
}
