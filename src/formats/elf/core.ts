// ELF core files (as written by the kernel or gdb's `gcore`): memory segments (PT_LOAD),
// mapped files (NT_FILE), threads' registers (NT_PRSTATUS), process info (NT_PRPSINFO).
// Layouts: linux/include/uapi/linux/elfcore.h and elf.h, x86-64 `struct user_regs_struct`.

import { ByteReader } from '../../binary/byte-reader.js';
import { LeakscopeError } from '../../model/errors.js';
import { ElfFile, PT_LOAD, ET_CORE } from './elf.js';

export const NT_PRSTATUS = 1, NT_PRPSINFO = 3, NT_AUXV = 6, NT_FILE = 0x46494c45;

/** x86-64 user_regs_struct order (27 u64s), as in NT_PRSTATUS pr_reg and ptrace. */
export const USER_REGS = ['r15', 'r14', 'r13', 'r12', 'rbp', 'rbx', 'r11', 'r10', 'r9', 'r8', 'rax', 'rcx', 'rdx', 'rsi', 'rdi',
  'orig_rax', 'rip', 'cs', 'eflags', 'rsp', 'ss', 'fs_base', 'gs_base', 'ds', 'es', 'fs', 'gs'] as const;
export type UserRegs = Record<typeof USER_REGS[number], number>;

export interface CoreSegment {
  vaddr: number; memsz: number;
  fileOffset: number; filesz: number;   // filesz < memsz: the rest was not dumped (read it from the mapped file)
  flags: number;                        // PF_R/W/X
}
export interface CoreFileMapping { start: number; end: number; fileOffset: number; path: string }
export interface CoreThread { tid: number; regs: UserRegs }

export interface CoreModel {
  pid: number;
  command: string;      // pr_fname
  args: string;         // pr_psargs
  segments: CoreSegment[];
  files: CoreFileMapping[];
  threads: CoreThread[];
  auxv: Map<number, number>;
}

/** Parses the parts of a core file leakscope needs. `elf` may hold only the file's prefix up to its
 *  notes (cores can be GBs); `fileSize` is the whole file's size, for the truncation check. Throws 'not-elf', 'truncated' or 'malformed'. */
export function parseCore(elf: ElfFile, fileSize = elf.bytes.byteLength): CoreModel {
  if (elf.header.type !== ET_CORE) throw new LeakscopeError('malformed', `${elf.label}: not a core file (e_type ${elf.header.type})`);
  const size = fileSize;
  const segments: CoreSegment[] = [];
  for (const s of elf.segments) {
    if (s.type !== PT_LOAD) continue;
    if (s.filesz > 0 && s.offset + s.filesz > size) {
      throw new LeakscopeError('truncated', `${elf.label}: core segment at 0x${s.vaddr.toString(16)} needs file bytes up to ${s.offset + s.filesz}, file has ${size} (truncated core)`);
    }
    segments.push({ vaddr: s.vaddr, memsz: s.memsz, fileOffset: s.offset, filesz: s.filesz, flags: s.flags });
  }
  const model: CoreModel = { pid: 0, command: '', args: '', segments, files: [], threads: [], auxv: new Map() };
  for (const n of elf.notes()) {
    if (n.name !== 'CORE') continue;
    const r = new ByteReader(n.desc, { label: `${elf.label} note ${n.type}`, base: n.descOffset });
    if (n.type === NT_PRSTATUS) {
      // elf_prstatus: pr_pid at 32, pr_reg (27 x u64) at 112.
      const regs = {} as UserRegs;
      USER_REGS.forEach((name, i) => { regs[name] = r.u64At(112 + i * 8); });
      model.threads.push({ tid: r.u32At(32), regs });
    } else if (n.type === NT_PRPSINFO) {
      // elf_prpsinfo: pr_pid at 24, pr_fname[16] at 40, pr_psargs[80] at 56.
      model.pid = r.u32At(24);
      model.command = Buffer.from(r.bytesAt(40, 16)).toString('latin1').replace(/\0.*$/s, '');
      model.args = Buffer.from(r.bytesAt(56, 80)).toString('latin1').replace(/\0.*$/s, '').trim();
    } else if (n.type === NT_FILE) {
      // count, page_size, then count x {start, end, page offset}, then count NUL-terminated names.
      const count = r.u64At(0), pageSize = r.u64At(8);
      if (count > 1e6) throw new LeakscopeError('malformed', `${elf.label}: NT_FILE claims ${count} entries`);
      let p = 16 + count * 24;
      for (let i = 0; i < count; i++) {
        const o = 16 + i * 24;
        const path = r.cstringAt(p, 4096);
        p += Buffer.byteLength(path) + 1;
        model.files.push({ start: r.u64At(o), end: r.u64At(o + 8), fileOffset: r.u64At(o + 16) * pageSize, path });
      }
    } else if (n.type === NT_AUXV) {
      for (let o = 0; o + 16 <= n.desc.byteLength; o += 16) model.auxv.set(r.u64At(o), r.u64At(o + 8));
    }
  }
  if (!model.pid && model.threads.length) model.pid = model.threads[0]!.tid;
  return model;
}
