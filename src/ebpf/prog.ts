// Loading programs (BPF_PROG_LOAD). A *spec* is plain data (name, instructions); loading
// turns it into a live `Program` (an fd). Like libbpf, load without a verifier log first and,
// on failure, load again with log level 1 so the error carries the verifier's explanation.
import type { LeakscopeError } from '../model/errors.js';
import { assemble, disassemble, type Body } from './asm.js';
import { resources, Stage, type Resource } from './cleanup.js';
import {
  BpfCmd,
  Errno,
  NativeBuffer,
  PERMISSION_HINT,
  SyscallError,
  attrBuffer,
  bpfRaw,
  closeFd,
  errnoName,
} from './syscalls.js';

/** Program types (enum bpf_prog_type). Uprobes and kprobes are both KPROBE. */
export const ProgType = { kprobe: 2 } as const;
export type ProgTypeName = keyof typeof ProgType;

export interface ProgramSpec {
  /** Up to 15 characters are kept (BPF_OBJ_NAME_LEN). */
  name: string;
  type?: ProgTypeName;
  body: Body;
  /** "GPL" unless told: probe_read_user, get_stackid and the ring buffer helpers are GPL-only. */
  license?: string;
  /** expected_attach_type (enum bpf_attach_type), e.g. AttachType.uprobeSession; default 0. */
  expectedAttachType?: number;
}

/** enum bpf_attach_type values used here (include/uapi/linux/bpf.h). */
export const AttachType = { perfEvent: 41, uprobeMulti: 48, uprobeSession: 57 } as const;

/** First verifier-log buffer size; doubled on ENOSPC up to the kernel's limit (UINT_MAX >> 2). */
const LOG_SIZE = 1 << 20;
const LOG_SIZE_MAX = 1 << 28;

export class Program {
  private handle: Resource | undefined;
  constructor(
    readonly fd: number,
    readonly name: string,
    readonly insnCount: number,
  ) {
    this.handle = resources.addFd(fd, Stage.Program, `program ${name} fd ${fd}`);
  }
  /** Kernel id (bpf_prog_info.id), e.g. to check with a PROG_GET_NEXT_ID walk that it is gone. */
  id(): number {
    return objectInfo(this.fd, 'program').id;
  }
  close(): void {
    resources.release(this.handle);
    this.handle = undefined;
  }
}

function progAttr(
  type: number,
  code: NativeBuffer,
  insnCount: number,
  license: NativeBuffer,
  name: string,
  log?: NativeBuffer,
  expectedAttachType = 0,
): NativeBuffer {
  const a = attrBuffer();
  a.buf.writeUInt32LE(type, 0);
  a.buf.writeUInt32LE(insnCount, 4);
  a.buf.writeBigUInt64LE(code.addr, 8);
  a.buf.writeBigUInt64LE(license.addr, 16);
  if (log) {
    a.buf.writeUInt32LE(1, 24); // log_level
    a.buf.writeUInt32LE(log.size, 28);
    a.buf.writeBigUInt64LE(log.addr, 32);
  }
  a.buf.write(name.replace(/[^A-Za-z0-9_.]/g, '_').slice(0, 15), 48, 'latin1');
  a.buf.writeUInt32LE(expectedAttachType, 68);
  return a;
}

/**
 * Assembles and loads a program. Errors: 'malformed' with the verifier log when the
 * verifier rejects it, 'permission' without CAP_BPF, 'not-supported' for an unknown
 * program type or helper the kernel lacks.
 */
export function loadProgram(spec: ProgramSpec): Program {
  const { bytes, insnCount } = assemble(spec.body);
  const type = ProgType[spec.type ?? 'kprobe'];
  const code = new NativeBuffer(bytes.length);
  bytes.copy(code.buf);
  const license = new NativeBuffer(32);
  license.buf.write(`${spec.license ?? 'GPL'}\0`, 0, 'latin1');
  const what = `load program ${spec.name} (${insnCount} insns)`;
  try {
    const fd = bpfRaw(
      BpfCmd.PROG_LOAD,
      progAttr(type, code, insnCount, license, spec.name, undefined, spec.expectedAttachType),
    );
    if (fd >= 0) return new Program(fd, spec.name, insnCount);
    const errno = -fd;
    // Retry with the verifier log; grow it while the kernel says it is too small.
    let size = LOG_SIZE;
    for (;;) {
      const log = new NativeBuffer(size);
      try {
        const fd2 = bpfRaw(
          BpfCmd.PROG_LOAD,
          progAttr(type, code, insnCount, license, spec.name, log, spec.expectedAttachType),
        );
        if (fd2 >= 0) return new Program(fd2, spec.name, insnCount); // a transient failure
        const errno2 = -fd2;
        if (errno2 === Errno.ENOSPC && size < LOG_SIZE_MAX) {
          size *= 4;
          continue;
        }
        const end = log.buf.indexOf(0);
        const text = log.buf.toString('utf8', 0, end < 0 ? log.size : end).trim();
        throw loadError(what, errno2 || errno, text, spec.body);
      } finally {
        log.free();
      }
    }
  } finally {
    code.free();
    license.free();
  }
}

function loadError(what: string, errno: number, log: string, body: Body): LeakscopeError {
  if (!log && errno === Errno.EPERM) {
    return new SyscallError('permission', `${what}: EPERM (${PERMISSION_HINT})`, errno);
  }
  if (!log && errno === Errno.EINVAL) {
    return new SyscallError(
      'not-supported',
      `${what}: EINVAL without a verifier log (unknown program type or attr field: kernel too old?)`,
      errno,
    );
  }
  // The verifier's last lines say what is wrong; keep the whole log (bounded) for context.
  const lines = log.split('\n');
  const shown = lines.length > 60 ? ['...', ...lines.slice(-60)] : lines;
  let listing = '';
  try {
    listing = `\nprogram:\n${disassemble(body)}`;
  } catch {
    // the listing is a courtesy
  }
  return new SyscallError(
    'malformed',
    `${what}: rejected by the verifier (${errnoName(errno)}):\n${shown.join('\n')}${listing}`,
    errno,
  );
}

/** Common head of bpf_prog_info / bpf_map_info / bpf_link_info. */
export interface ObjectInfo {
  /** bpf_prog_info.type / bpf_link_info.type */
  type: number;
  id: number;
  /** bpf_link_info.prog_id (links only). */
  progId: number;
}

/** BPF_OBJ_GET_INFO_BY_FD: {bpf_fd 0, info_len 4, info ptr 8}. */
export function objectInfo(fd: number, what: string): ObjectInfo {
  const info = new NativeBuffer(256);
  try {
    const a = attrBuffer();
    a.buf.writeUInt32LE(fd, 0);
    a.buf.writeUInt32LE(info.size, 4);
    a.buf.writeBigUInt64LE(info.addr, 8);
    const r = bpfRaw(BpfCmd.OBJ_GET_INFO_BY_FD, a);
    if (r < 0) throw new SyscallError('io', `info of ${what} fd ${fd}: ${errnoName(-r)}`, -r);
    // bpf_prog_info: type u32 0, id u32 4. bpf_link_info: type u32 0, id u32 4, prog_id u32 8.
    return { type: info.buf.readUInt32LE(0), id: info.buf.readUInt32LE(4), progId: info.buf.readUInt32LE(8) };
  } finally {
    info.free();
  }
}

/** All ids of one kind of kernel object (PROG_GET_NEXT_ID, MAP_GET_NEXT_ID, LINK_GET_NEXT_ID). */
export function listObjectIds(kind: 'prog' | 'map' | 'link'): number[] {
  const cmd =
    kind === 'prog' ? BpfCmd.PROG_GET_NEXT_ID : kind === 'map' ? BpfCmd.MAP_GET_NEXT_ID : BpfCmd.LINK_GET_NEXT_ID;
  const ids: number[] = [];
  let id = 0;
  for (let guard = 0; guard < 1_000_000; guard++) {
    const a = attrBuffer();
    a.buf.writeUInt32LE(id, 0); // start_id
    const r = bpfRaw(cmd, a);
    if (r === -Errno.ENOENT) break;
    if (r < 0)
      throw new SyscallError(r === -Errno.EPERM ? 'permission' : 'io', `list ${kind} ids: ${errnoName(-r)}`, -r);
    id = a.buf.readUInt32LE(4); // next_id
    ids.push(id);
  }
  return ids;
}

/** Closes an fd obtained outside a Program (e.g. from an id walk). */
export function closeObjectFd(fd: number): void {
  closeFd(fd);
}
