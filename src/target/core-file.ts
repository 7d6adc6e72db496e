// AddressSpace of an ELF core file (kernel core dump or gdb `gcore`). Memory comes from the
// core's PT_LOAD segments; bytes a segment did not dump (filesz < memsz: read-only file
// mappings) come from the mapped file itself, found through NT_FILE, as gdb does.
// The core is read with pread in pieces, never loaded whole (cores can be GBs).

import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { LeakscopeError, isLeakscopeError } from '../model/errors.js';
import type { Mapping, MappingWithUsage, Module } from '../model/memory.js';
import { ElfFile, PT_NOTE, PF_R, PF_W, PF_X } from '../formats/elf/elf.js';
import { parseCore } from '../formats/elf/core.js';
import type { CoreModel } from '../formats/elf/core.js';
import type { AddressSpace, ThreadState } from './address-space.js';
import { findMapping, readExactly, readU64Via } from './address-space.js';
import { buildModules } from './modules.js';

/** brk starts within 1 GiB above the executable's end (x86-64 ASLR, arch_randomize_brk: SZ_1G for 64-bit). */
const BRK_RANDOM_RANGE = 0x40000000;

interface Piece { start: number; end: number; source: 'core' | 'file' | 'zero'; fileOffset: number; fd?: number }

export class CoreFile implements AddressSpace {
  readonly kind = 'core' as const;
  readonly pid: number;
  readonly command: string;
  readonly model: CoreModel;
  private fd: number;
  private pieces: Piece[] = [];
  private maps: Mapping[];
  private fileFds = new Map<string, number>();
  private cachedModules?: Module[];
  private scratch = Buffer.alloc(8);

  private constructor(readonly path: string, fd: number, model: CoreModel, private readonly exeOverride?: string) {
    this.fd = fd;
    this.model = model;
    this.pid = model.pid;
    this.command = model.command;
    this.maps = this.buildMappings();
  }

  get description(): string { return `core ${this.path} (${this.command}, pid ${this.pid})`; }

  /** Opens a core file. `exe` is the executable that produced it (used when NT_FILE names a path that moved). */
  static open(path: string, opts: { exe?: string } = {}): CoreFile {
    let fd: number;
    try { fd = openSync(path, 'r'); } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new LeakscopeError(code === 'ENOENT' ? 'not-found' : code === 'EACCES' ? 'permission' : 'io', `${path}: ${code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
    try {
      const size = fstatSync(fd).size;
      const head = Buffer.alloc(Math.min(size, 64));
      readSync(fd, head, 0, head.length, 0);
      if (head.length < 4 || head.readUInt32BE(0) !== 0x7f454c46) throw new LeakscopeError('not-elf', `${path}: not an ELF core file (no \\x7fELF magic)`);
      if (head.length < 64) throw new LeakscopeError('truncated', `${path}: ELF header needs 64 bytes, file has ${size}`);
      const phoff = Number(head.readBigUInt64LE(32)), phnum = head.readUInt16LE(56);
      // Read the prefix holding the program headers and every note segment.
      let prefixEnd = phoff + phnum * 56;
      if (prefixEnd > size) throw new LeakscopeError('truncated', `${path}: program headers end at ${prefixEnd}, file has ${size} bytes (truncated core)`);
      const ph = Buffer.alloc(phnum * 56);
      readSync(fd, ph, 0, ph.length, phoff);
      for (let i = 0; i < phnum; i++) {
        if (ph.readUInt32LE(i * 56) === PT_NOTE) {
          const end = Number(ph.readBigUInt64LE(i * 56 + 8)) + Number(ph.readBigUInt64LE(i * 56 + 32));
          if (end > size) throw new LeakscopeError('truncated', `${path}: notes end at ${end}, file has ${size} bytes (truncated core)`);
          prefixEnd = Math.max(prefixEnd, end);
        }
      }
      if (prefixEnd > 256 * 1024 * 1024) throw new LeakscopeError('malformed', `${path}: headers and notes claim ${prefixEnd} bytes`);
      const prefix = Buffer.alloc(prefixEnd);
      readSync(fd, prefix, 0, prefixEnd, 0);
      const elf = new ElfFile(prefix, path);
      const model = parseCore(elf, size);
      return new CoreFile(path, fd, model, opts.exe);
    } catch (e) {
      closeSync(fd);
      if (isLeakscopeError(e)) throw e.message.startsWith(path) ? e : e.wrap(path);
      throw e;
    }
  }

  private buildMappings(): Mapping[] {
    const files = this.model.files;
    const out: Mapping[] = [];
    for (const seg of this.model.segments) {
      const perms = `${seg.flags & PF_R ? 'r' : '-'}${seg.flags & PF_W ? 'w' : '-'}${seg.flags & PF_X ? 'x' : '-'}p`;
      const f = files.find((x) => x.start <= seg.vaddr && seg.vaddr < x.end);
      out.push({ start: seg.vaddr, end: seg.vaddr + seg.memsz, perms, offset: f ? f.fileOffset + (seg.vaddr - f.start) : 0,
        dev: '00:00', inode: 0, path: f ? f.path : '' });
      // Pieces: dumped bytes from the core, the rest from the file (or unreadable).
      if (seg.filesz > 0) this.pieces.push({ start: seg.vaddr, end: seg.vaddr + Math.min(seg.filesz, seg.memsz), source: 'core', fileOffset: seg.fileOffset });
      if (seg.filesz < seg.memsz && f) {
        const s = seg.vaddr + seg.filesz;
        this.pieces.push({ start: s, end: seg.vaddr + seg.memsz, source: 'file', fileOffset: f.fileOffset + (s - f.start), fd: undefined });
        (this.pieces[this.pieces.length - 1] as Piece & { path: string }).path = f.path;
      }
    }
    // File mappings the dump left out entirely (gcore skips unmodified code): readable from the file.
    for (const f of files) {
      let cursor = f.start;
      const covering = out.filter((m) => m.end > f.start && m.start < f.end).sort((a, b) => a.start - b.start);
      const gaps: Array<[number, number]> = [];
      for (const m of covering) { if (m.start > cursor) gaps.push([cursor, m.start]); cursor = Math.max(cursor, m.end); }
      if (cursor < f.end) gaps.push([cursor, f.end]);
      for (const [a, b] of gaps) {
        out.push({ start: a, end: b, perms: 'r-xp', offset: f.fileOffset + (a - f.start), dev: '00:00', inode: 0, path: f.path });
        this.pieces.push(Object.assign({ start: a, end: b, source: 'file' as const, fileOffset: f.fileOffset + (a - f.start) }, { path: f.path }));
      }
    }
    out.sort((a, b) => a.start - b.start);
    this.pieces.sort((a, b) => a.start - b.start);
    // Name anonymous regions as /proc/PID/maps would: [stack] holds a thread's sp; [heap] starts
    // within BRK_RANDOM_RANGE above the executable's end.
    let exeEnd = Math.max(0, ...out.filter((m) => m.path && m.path === this.exeTargetPath()).map((m) => m.end));
    // The executable's .bss continues in an anonymous mapping right after its last file page.
    const bss = out.find((m) => !m.path && m.start === exeEnd);
    if (bss) exeEnd = bss.end;
    for (const m of out) {
      if (m.path) continue;
      if (this.model.threads.some((t) => t.regs.rsp >= m.start && t.regs.rsp < m.end)) {
        m.path = this.model.threads[0] && this.model.threads[0].regs.rsp >= m.start && this.model.threads[0].regs.rsp < m.end ? '[stack]' : '';
      } else if (exeEnd && m.start >= exeEnd && m.start < exeEnd + BRK_RANDOM_RANGE + 4096 && m.perms.startsWith('rw') &&
        !out.some((o) => o !== m && !o.path && o.start >= exeEnd && o.start < m.start)) {
        m.path = '[heap]';
      }
    }
    return out;
  }

  mappings(): Mapping[] { return this.maps; }

  /** A core has no RSS: bytes dumped for a mapping count as resident (gcore dumps what is mapped and readable). */
  usage(): MappingWithUsage[] {
    return this.maps.map((m) => {
      const seg = this.model.segments.find((s) => s.vaddr === m.start);
      const dumped = seg ? Math.min(seg.filesz, seg.memsz) : 0;
      return { ...m, usage: { rss: dumped, pss: dumped, swap: 0, anonymous: m.path && !m.path.startsWith('[') ? 0 : dumped, privateDirty: dumped } };
    });
  }

  residentBytes(start: number, end: number): { rss: number; swap: number } {
    let rss = 0;
    for (const p of this.pieces) {
      if (p.source !== 'core') continue;
      const a = Math.max(start, p.start), b = Math.min(end, p.end);
      if (b > a) rss += b - a;
    }
    return { rss, swap: 0 };
  }

  exeTargetPath(): string {
    if (this.exeOverride) return this.exeOverride;
    // The executable is the NT_FILE entry mapped at the lowest address with file offset 0 whose name matches the command.
    const cand = this.model.files.filter((f) => f.fileOffset === 0);
    const byName = cand.find((f) => f.path.split('/').pop()!.startsWith(this.command));
    return (byName ?? cand[0])?.path ?? '';
  }

  exeHostPath(): string { return this.exeTargetPath(); }

  hostPath(targetPath: string): string {
    if (this.exeOverride && targetPath === this.model.files.find((f) => f.fileOffset === 0 && f.path.split('/').pop()!.startsWith(this.command))?.path) {
      return this.exeOverride;
    }
    return targetPath;
  }

  modules(): Module[] {
    if (!this.cachedModules) this.cachedModules = buildModules(this.maps, (p) => this.hostPath(p), this.exeTargetPath());
    return this.cachedModules;
  }

  threads(): ThreadState[] {
    return this.model.threads.map((t) => ({ tid: t.tid, regs: { ...t.regs } }));
  }

  private fileFd(path: string): number | undefined {
    if (this.fileFds.has(path)) return this.fileFds.get(path)!;
    let fd = -1;
    try { fd = openSync(this.hostPath(path), 'r'); } catch { /* file gone: unreadable */ }
    this.fileFds.set(path, fd);
    return fd >= 0 ? fd : undefined;
  }

  readInto(addr: number, buf: Uint8Array, bufOffset: number, len: number): number {
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const p = findMapping(this.pieces, a) as (Piece & { path?: string }) | undefined;
      if (!p) return done;
      const n = Math.min(len - done, p.end - a);
      let fd: number | undefined = this.fd;
      if (p.source === 'file') fd = p.path ? this.fileFd(p.path) : undefined;
      if (fd === undefined) return done;
      let got = 0;
      try { got = readSync(fd, buf, bufOffset + done, n, p.fileOffset + (a - p.start)); } catch { return done; }
      done += got;
      if (got < n) return done;
    }
    return done;
  }

  read(addr: number, len: number): Buffer { return readExactly(this, addr, len); }

  readU64(addr: number): number { return readU64Via(this, this.scratch, addr); }

  close(): void {
    try { closeSync(this.fd); } catch { /* closed */ }
    for (const fd of this.fileFds.values()) if (fd >= 0) try { closeSync(fd); } catch { /* closed */ }
    this.fileFds.clear();
  }
}
