// Uprobes and uretprobes through the uprobe PMU (perf_event_open), attached with
// BPF_LINK_CREATE (kernel >= 5.15 for perf links), falling back to PERF_EVENT_IOC_SET_BPF +
// ENABLE. References: libbpf src/libbpf.c (perf_event_open_probe, elf_sym_offset),
// cilium/ebpf link/uprobe.go, kernel kernel/trace/trace_uprobe.c.
//
// Scope of a probe:
// - `pid: N` (one process): perf_event_open(pid = N, cpu = -1). The kernel's uprobe filter
//   for a per-task perf event matches on the *mm* (trace_uprobe.c, uprobe_perf_filter),
//   so every thread of the process, including threads created later, fires it; and the
//   breakpoint is only written into that process's memory. Because perf's pid is really a
//   thread id and another consumer of the same (file, offset) makes the breakpoint fire
//   in other processes, programs must also check the tgid themselves: `asm.tgidFilter`.
// - no pid (system-wide): perf_event_open(pid = -1, cpu = 0), like libbpf: one event, the
//   program runs on every CPU for every process that maps the file.
// Detach closes the link and perf fds; if leakscope is killed the kernel closes them.
import { readFileSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { loadElf } from '../formats/elf/index.js';
import { LeakscopeError, isLeakscopeError } from '../model/errors.js';
import { resources, Stage, type Resource } from './cleanup.js';
import type { Program } from './prog.js';
import {
  BpfCmd,
  Errno,
  NativeBuffer,
  PERF_ATTR_SIZE,
  PERF_EVENT_IOC_ENABLE,
  PERF_EVENT_IOC_SET_BPF,
  PERF_FLAG_FD_CLOEXEC,
  SyscallError,
  attrBuffer,
  bpfRaw,
  closeFd,
  errnoError,
  ioctl,
  perfEventOpen,
} from './syscalls.js';

const UPROBE_PMU = '/sys/bus/event_source/devices/uprobe';
/** enum bpf_attach_type BPF_PERF_EVENT. */
const BPF_PERF_EVENT = 41;

export interface UprobePmu {
  /** perf_event_attr.type for uprobes (dynamic). */
  type: number;
  /** Bit of perf_event_attr.config that makes a return probe. */
  retprobeBit: number;
}

let pmuCache: UprobePmu | undefined;
/** Reads the uprobe PMU's type and retprobe bit from sysfs. 'not-supported' when absent. */
export function uprobePmu(): UprobePmu {
  if (pmuCache) return pmuCache;
  let typeText: string, fmt: string;
  try {
    typeText = readFileSync(`${UPROBE_PMU}/type`, 'utf8');
    fmt = readFileSync(`${UPROBE_PMU}/format/retprobe`, 'utf8');
  } catch {
    throw new LeakscopeError(
      'not-supported',
      `${UPROBE_PMU} is missing: kernel without CONFIG_UPROBE_EVENTS or older than 4.17`,
    );
  }
  const m = /^config:(\d+)/.exec(fmt.trim());
  const type = Number.parseInt(typeText, 10);
  if (!m || !Number.isInteger(type)) {
    throw new LeakscopeError(
      'malformed',
      `${UPROBE_PMU}: unexpected type "${typeText.trim()}" / retprobe format "${fmt.trim()}"`,
    );
  }
  pmuCache = { type, retprobeBit: Number(m[1]) };
  return pmuCache;
}

export interface UprobeTarget {
  /** The ELF file (executable or shared library) holding the probed code. */
  binaryPath: string;
  /** Symbol name (from .symtab, else .dynsym) ... */
  symbol?: string;
  /** ... or an ELF virtual address in that file ... */
  vaddr?: number;
  /** ... or the file offset itself. */
  fileOffset?: number;
  /** Added to the symbol's / vaddr's location (bytes into the function). */
  offset?: number;
}

/** File offset of the probed instruction (what the uprobe PMU wants in config2). */
export function resolveUprobeOffset(t: UprobeTarget): number {
  if (t.fileOffset !== undefined) return t.fileOffset + (t.offset ?? 0);
  try {
    const elf = loadElf(t.binaryPath);
    let vaddr: number;
    if (t.symbol !== undefined) {
      const sym = elf.findSymbol(t.symbol);
      if (!sym) throw new LeakscopeError('not-found', `symbol ${t.symbol} not found in .symtab or .dynsym`);
      if (sym.value === 0) throw new LeakscopeError('not-found', `symbol ${t.symbol} is not defined here (value 0)`);
      vaddr = sym.value;
    } else if (t.vaddr !== undefined) {
      vaddr = t.vaddr;
    } else {
      throw new LeakscopeError('usage', 'uprobe target needs a symbol, a vaddr or a fileOffset');
    }
    vaddr += t.offset ?? 0;
    const off = elf.vaddrToFileOffset(vaddr);
    if (off === undefined)
      throw new LeakscopeError('not-found', `address 0x${vaddr.toString(16)} is in no PT_LOAD segment`);
    return off;
  } catch (e) {
    if (isLeakscopeError(e)) throw e.wrap(`uprobe ${t.binaryPath}:${t.symbol ?? t.vaddr}`);
    throw e;
  }
}

export interface AttachOptions {
  retprobe?: boolean;
  /** Process (tgid) to probe; omit for every process. The program should check the tgid too. */
  pid?: number;
  /** Force the pre-5.15 attach path (ioctl SET_BPF + ENABLE); for tests. */
  useIoctl?: boolean;
}

/** A live probe. `detach()` removes it; so does process exit, including SIGKILL. */
export class UprobeLink {
  private handles: Resource[] = [];
  constructor(
    readonly description: string,
    readonly perfFd: number,
    readonly linkFd: number | undefined,
    readonly fileOffset: number,
  ) {
    if (perfFd >= 0)
      this.handles.push(resources.addFd(perfFd, Stage.PerfEvent, `perf event ${description} fd ${perfFd}`));
    if (linkFd !== undefined)
      this.handles.push(resources.addFd(linkFd, Stage.Link, `link ${description} fd ${linkFd}`));
  }
  /** False after detach() and after the cleanup registry detached everything (signal, exit). */
  get attached(): boolean {
    return this.handles.some((h) => resources.has(h));
  }
  /** Closes the link, then the perf event: the breakpoint is gone when this returns. */
  detach(): void {
    for (const h of [...this.handles].reverse()) resources.release(h);
    this.handles = [];
  }
}

/** Attaches `prog` (a KPROBE-type program) as a uprobe or uretprobe on `target`. */
export function attachUprobe(prog: Program, target: UprobeTarget, opts: AttachOptions = {}): UprobeLink {
  const pmu = uprobePmu();
  const path = resolvePath(target.binaryPath);
  const fileOffset = resolveUprobeOffset({ ...target, binaryPath: path });
  const kind = opts.retprobe ? 'uretprobe' : 'uprobe';
  const desc = `${kind} ${path}:${target.symbol ?? `0x${fileOffset.toString(16)}`}${opts.pid !== undefined ? ` pid ${opts.pid}` : ''}`;
  const pathBuf = new NativeBuffer(Buffer.byteLength(path) + 1);
  pathBuf.buf.write(`${path}\0`, 0, 'utf8');
  let perfFd: number;
  try {
    // struct perf_event_attr (include/uapi/linux/perf_event.h): type 0, size 4, config 8,
    // config1 (uprobe_path) 56, config2 (probe_offset) 64.
    const a = attrBuffer();
    a.buf.writeUInt32LE(pmu.type, 0);
    a.buf.writeUInt32LE(PERF_ATTR_SIZE, 4);
    a.buf.writeBigUInt64LE(opts.retprobe ? 1n << BigInt(pmu.retprobeBit) : 0n, 8);
    a.buf.writeBigUInt64LE(pathBuf.addr, 56);
    a.buf.writeBigUInt64LE(BigInt(fileOffset), 64);
    const pid = opts.pid ?? -1;
    const cpu = opts.pid === undefined ? 0 : -1;
    try {
      perfFd = perfEventOpen(a, pid, cpu, -1, PERF_FLAG_FD_CLOEXEC, `perf_event_open ${desc}`);
    } catch (e) {
      if (e instanceof SyscallError && e.errno === Errno.ESRCH)
        throw new LeakscopeError('no-such-process', `${desc}: no process ${pid}`);
      throw e;
    }
  } finally {
    pathBuf.free();
  }
  return attachPerfEvent(prog, perfFd, desc, fileOffset, opts.useIoctl ?? false);
}

function attachPerfEvent(
  prog: Program,
  perfFd: number,
  desc: string,
  fileOffset: number,
  useIoctl: boolean,
): UprobeLink {
  if (!useIoctl) {
    // LINK_CREATE: prog_fd 0, target_fd 4, attach_type 8, flags 12.
    const a = attrBuffer();
    a.buf.writeUInt32LE(prog.fd, 0);
    a.buf.writeUInt32LE(perfFd, 4);
    a.buf.writeUInt32LE(BPF_PERF_EVENT, 8);
    const linkFd = bpfRaw(BpfCmd.LINK_CREATE, a);
    if (linkFd >= 0) return new UprobeLink(desc, perfFd, linkFd, fileOffset);
    const errno = -linkFd;
    if (errno !== Errno.EINVAL && errno !== Errno.EOPNOTSUPP && errno !== Errno.ENOSYS) {
      closeFd(perfFd);
      throw errnoError(`attach ${prog.name} to ${desc} (BPF_LINK_CREATE)`, errno);
    }
    // Kernel < 5.15: no perf links. Fall through to the ioctl path.
  }
  try {
    ioctl(perfFd, PERF_EVENT_IOC_SET_BPF, prog.fd, `attach ${prog.name} to ${desc} (PERF_EVENT_IOC_SET_BPF)`);
    ioctl(perfFd, PERF_EVENT_IOC_ENABLE, 0, `enable ${desc}`);
  } catch (e) {
    closeFd(perfFd);
    throw e;
  }
  return new UprobeLink(desc, perfFd, undefined, fileOffset);
}

export interface UprobeMultiOptions {
  /** Process (tgid) whose probes fire; the kernel filters by its address space. */
  pid?: number;
  /**
   * Session (kernel >= 6.13, BPF_TRACE_UPROBE_SESSION): the program runs at entry and, only when the
   * entry run returned 0, again at return; the return probe's trap and return-address hijack are
   * skipped for calls the entry declined. The program tells the two runs apart itself.
   */
  session?: boolean;
}

/**
 * Attaches `prog` at several file offsets of one binary with one uprobe_multi link
 * (BPF_LINK_CREATE, attach type BPF_TRACE_UPROBE_MULTI or _SESSION). `prog` must have been loaded
 * with the matching expectedAttachType. 'not-supported' on kernels without uprobe_multi (< 6.6)
 * or sessions (< 6.13).
 */
export function attachUprobeMulti(
  prog: Program,
  binaryPath: string,
  fileOffsets: readonly number[],
  opts: UprobeMultiOptions = {},
): UprobeLink {
  const path = resolvePath(binaryPath);
  const kind = opts.session ? 'uprobe session' : 'uprobe multi';
  const desc = `${kind} ${path}:[${fileOffsets.map((o) => '0x' + o.toString(16)).join(',')}]${opts.pid !== undefined ? ` pid ${opts.pid}` : ''}`;
  const pathBuf = new NativeBuffer(Buffer.byteLength(path) + 1);
  pathBuf.buf.write(`${path}\0`, 0, 'utf8');
  const offs = new NativeBuffer(8 * Math.max(1, fileOffsets.length));
  fileOffsets.forEach((o, i) => {
    offs.buf.writeBigUInt64LE(BigInt(o), i * 8);
  });
  try {
    // link_create: prog_fd 0, target_fd 4, attach_type 8, flags 12, then uprobe_multi at 16:
    // path 16, offsets 24, ref_ctr_offsets 32, cookies 40, cnt 48, flags 52, pid 56 (uapi bpf.h).
    const a = attrBuffer();
    a.buf.writeUInt32LE(prog.fd, 0);
    a.buf.writeUInt32LE(opts.session ? 57 : 48, 8);
    a.buf.writeBigUInt64LE(pathBuf.addr, 16);
    a.buf.writeBigUInt64LE(offs.addr, 24);
    a.buf.writeUInt32LE(fileOffsets.length, 48);
    a.buf.writeUInt32LE(opts.pid ?? 0, 56);
    const fd = bpfRaw(BpfCmd.LINK_CREATE, a);
    if (fd < 0) {
      const errno = -fd;
      if (errno === Errno.ESRCH) throw new LeakscopeError('no-such-process', `${desc}: no process ${opts.pid}`);
      throw errnoError(`attach ${prog.name} as ${desc}`, errno, [Errno.EINVAL, Errno.EOPNOTSUPP, Errno.ENOSYS]);
    }
    return new UprobeLink(desc, -1, fd, fileOffsets[0] ?? 0);
  } finally {
    pathBuf.free();
    offs.free();
  }
}
