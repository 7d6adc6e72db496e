// ELF core files (as written by the kernel or gdb's `gcore`): memory segments (PT_LOAD),
// mapped files (NT_FILE), threads' registers (NT_PRSTATUS), process info (NT_PRPSINFO).
// Layouts: linux/include/uapi/linux/elfcore.h and elf.h, x86-64 `struct user_regs_struct`.

import { ByteReader } from '../../binary/byte-reader.js';
import { LeakscopeError } from '../../model/errors.js';
import { type ElfFile, PT_LOAD, ET_CORE } from './elf.js';
import type { ElfNote, ElfSegment } from './elf.js';

/** x86-64 user space ends at 2^47 (4-level paging; 5-level reaches 2^56). Above: the vsyscall page. */
const USER_ADDRESS_LIMIT = 2 ** 56;
const TWO64 = 2 ** 64;

export const NT_PRSTATUS = 1,
  NT_PRPSINFO = 3,
  NT_AUXV = 6,
  NT_FILE = 0x46494c45;

/** x86-64 user_regs_struct order (27 u64s), as in NT_PRSTATUS pr_reg and ptrace. */
export const USER_REGS = [
  'r15',
  'r14',
  'r13',
  'r12',
  'rbp',
  'rbx',
  'r11',
  'r10',
  'r9',
  'r8',
  'rax',
  'rcx',
  'rdx',
  'rsi',
  'rdi',
  'orig_rax',
  'rip',
  'cs',
  'eflags',
  'rsp',
  'ss',
  'fs_base',
  'gs_base',
  'ds',
  'es',
  'fs',
  'gs',
] as const;
export type UserRegs = Record<(typeof USER_REGS)[number], number>;

export interface CoreSegment {
  vaddr: number;
  memsz: number;
  fileOffset: number;
  filesz: number; // filesz < memsz: the rest was not dumped (read it from the mapped file)
  flags: number; // PF_R/W/X
}
export interface CoreFileMapping {
  start: number;
  end: number;
  fileOffset: number;
  path: string;
}
export interface CoreThread {
  tid: number;
  regs: UserRegs;
}

export interface CoreModel {
  pid: number;
  command: string; // pr_fname
  args: string; // pr_psargs
  segments: CoreSegment[];
  files: CoreFileMapping[];
  threads: CoreThread[];
  auxv: Map<number, number>;
}

/** Parses the parts of a core file leakscope needs from a parsed ELF (tests, small cores). Throws 'not-elf', 'truncated' or 'malformed'. */
export function parseCore(elf: ElfFile, fileSize = elf.bytes.byteLength): CoreModel {
  return parseCoreParts({
    label: elf.label,
    type: elf.header.type,
    segments: elf.segments,
    notes: elf.eachNote(),
    fileSize,
  });
}

/** A core's ELF type, program headers and notes (read by the caller in bounded pieces); `fileSize` for the truncation checks. */
export interface CoreParts {
  label: string;
  type: number;
  segments: readonly ElfSegment[];
  notes: Iterable<ElfNote>;
  fileSize: number;
}

/** Every size, offset and address is checked against the file and the address space before use. */
export function parseCoreParts(parts: CoreParts): CoreModel {
  const label = parts.label;
  if (parts.type !== ET_CORE)
    throw new LeakscopeError(
      'not-elf',
      `${label}: not a core file (ELF e_type ${parts.type}${parts.type === 2 ? ', an executable' : parts.type === 3 ? ', a shared object or PIE executable' : ''})`,
    );
  const size = parts.fileSize;
  const segments: CoreSegment[] = [];
  for (const s of parts.segments) {
    if (s.type !== PT_LOAD) continue;
    const at = `core segment at 0x${s.vaddr.toString(16)}`;
    if (s.vaddr + s.memsz > TWO64 || s.vaddr >= TWO64)
      throw new LeakscopeError('malformed', `${label}: ${at} (+${s.memsz} bytes) ends past the 64-bit address space`);
    if (s.filesz > s.memsz)
      throw new LeakscopeError(
        'malformed',
        `${label}: ${at} has ${s.filesz} file bytes for ${s.memsz} bytes of memory`,
      );
    if (s.filesz > 0 && s.offset + s.filesz > size) {
      throw new LeakscopeError(
        'truncated',
        `${label}: ${at} needs file bytes up to ${s.offset + s.filesz}, file has ${size} (truncated core)`,
      );
    }
    // Above user space: the kernel's vsyscall page (x86-64 dumps it); nothing leakscope reads.
    if (s.memsz === 0 || s.vaddr + s.memsz > USER_ADDRESS_LIMIT) continue;
    segments.push({ vaddr: s.vaddr, memsz: s.memsz, fileOffset: s.offset, filesz: s.filesz, flags: s.flags });
  }
  const model: CoreModel = { pid: 0, command: '', args: '', segments, files: [], threads: [], auxv: new Map() };
  for (const n of parts.notes) {
    if (n.name !== 'CORE') continue;
    const r = new ByteReader(n.desc, { label: `${label} note ${n.type}`, base: n.descOffset });
    if (n.type === NT_PRSTATUS) {
      // elf_prstatus: pr_pid at 32, pr_reg (27 x u64) at 112.
      const regs = {} as UserRegs;
      USER_REGS.forEach((name, i) => {
        regs[name] = r.u64At(112 + i * 8);
      });
      model.threads.push({ tid: r.u32At(32), regs });
    } else if (n.type === NT_PRPSINFO) {
      // elf_prpsinfo: pr_pid at 24, pr_fname[16] at 40, pr_psargs[80] at 56.
      model.pid = r.u32At(24);
      model.command = Buffer.from(r.bytesAt(40, 16)).toString('latin1').replace(/\0.*$/s, '');
      model.args = Buffer.from(r.bytesAt(56, 80)).toString('latin1').replace(/\0.*$/s, '').trim();
    } else if (n.type === NT_FILE) {
      // count, page_size, then count x {start, end, page offset}, then count NUL-terminated names.
      const count = r.u64At(0),
        pageSize = r.u64At(8);
      if (count > 1e6) throw new LeakscopeError('malformed', `${label}: NT_FILE claims ${count} entries`);
      if (16 + count * 24 > n.desc.byteLength)
        throw new LeakscopeError(
          'truncated',
          `${label}: NT_FILE claims ${count} entries, its note has ${n.desc.byteLength} bytes`,
        );
      if (pageSize < 1 || pageSize > 1 << 30 || (pageSize & (pageSize - 1)) !== 0)
        throw new LeakscopeError('malformed', `${label}: NT_FILE page size ${pageSize}`);
      let p = 16 + count * 24;
      for (let i = 0; i < count; i++) {
        const o = 16 + i * 24;
        const path = r.cstringAt(p, 4096);
        p += Buffer.byteLength(path) + 1;
        const start = r.u64At(o),
          end = r.u64At(o + 8),
          fileOffset = r.u64At(o + 16) * pageSize;
        if (!(start < end) || end > USER_ADDRESS_LIMIT || fileOffset > Number.MAX_SAFE_INTEGER) {
          if (start >= USER_ADDRESS_LIMIT && start < end && end <= TWO64) continue; // above user space (vsyscall): unused
          throw new LeakscopeError(
            'malformed',
            `${label}: NT_FILE entry ${i} (${path}): range 0x${start.toString(16)}-0x${end.toString(16)} at file offset ${fileOffset}`,
          );
        }
        model.files.push({ start, end, fileOffset, path });
      }
    } else if (n.type === NT_AUXV) {
      for (let o = 0; o + 16 <= n.desc.byteLength; o += 16) model.auxv.set(r.u64At(o), r.u64At(o + 8));
    }
  }
  if (!model.pid && model.threads.length) model.pid = model.threads[0]!.tid;
  return model;
}
