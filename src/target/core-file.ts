// AddressSpace of an ELF core file (kernel core dump or gdb `gcore`). Memory comes from the
// core's PT_LOAD segments; bytes a segment did not dump (filesz < memsz: read-only file
// mappings) come from the mapped file itself, found through NT_FILE, as gdb does.
// The core is read with pread in pieces, never loaded whole (cores can be GBs).

import { closeSync, openSync, readSync } from 'node:fs';
import { LeakscopeError, isLeakscopeError } from '../model/errors.js';
import type { Mapping, MappingWithUsage, Module, OpenedFile, TargetFileKind } from '../model/memory.js';
import { ByteReader } from '../binary/byte-reader.js';
import { formatBytes, readRange } from '../binary/regular-file.js';
import { ET_CORE, PT_LOAD, PT_NOTE, PF_R, PF_W, PF_X, notesIn } from '../formats/elf/elf.js';
import type { ElfSegment } from '../formats/elf/elf.js';
import { parseCoreParts } from '../formats/elf/core.js';
import type { CoreModel } from '../formats/elf/core.js';
import { type TargetRoot, hostRoot, openUserFile } from './target-files.js';
import type { AddressSpace, ThreadState } from './address-space.js';
import { findMapping, readExactly, readU64Via } from './address-space.js';
import { buildModules } from './modules.js';

/** brk starts within 1 GiB above the executable's end (x86-64 ASLR, arch_randomize_brk: SZ_1G for 64-bit). */
const BRK_RANDOM_RANGE = 0x40000000;
/** e_phnum meaning "see section header 0's sh_info" (gABI). */
const PN_XNUM = 0xffff;
/** Program headers read (56 bytes each): 1M segments, far above vm.max_map_count's default 65530. */
const MAX_PHDR_BYTES = 56 << 20;
/** Note bytes read (threads' registers, NT_FILE): a core with 100k threads and 100k mappings needs ~50 MiB. */
const MAX_NOTE_BYTES = 64 << 20;

/** A second descriptor of the same open file (loadElfFrom closes the one it is given). */
function dupFd(fd: number): number {
  return openSync(`/proc/self/fd/${fd}`, 'r');
}

interface Piece {
  start: number;
  end: number;
  source: 'core' | 'file' | 'zero';
  fileOffset: number;
  fd?: number;
}

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

  /** A core names files of the machine it is read on: resolved in the host's root (no magic links). */
  private readonly root: TargetRoot = hostRoot();
  private objectPaths = new Map<string, string | undefined>();

  private constructor(
    readonly path: string,
    fd: number,
    model: CoreModel,
    private readonly exeOverride?: string,
    private readonly exeFile?: OpenedFile,
  ) {
    this.fd = fd;
    this.model = model;
    this.pid = model.pid;
    this.command = model.command;
    this.maps = this.buildMappings();
  }

  get description(): string {
    return `core ${this.path} (${this.command}, pid ${this.pid})`;
  }

  /**
   * Opens a core file. `exe` is the executable that produced it (used when NT_FILE names a path that
   * moved). Both are files the user named: regular files only; the core is read in bounded pieces
   * (ELF header, program headers, each note segment within MAX_NOTE_BYTES), every size, offset and
   * address checked against the file before use. Errors: not-found, permission, not-elf (not an ELF
   * core, e.g. an executable), truncated, malformed (not a regular file, out-of-range values).
   */
  static open(path: string, opts: { exe?: string } = {}): CoreFile {
    const file = openUserFile(path, 'core');
    const fd = file.fd;
    let exe: OpenedFile | undefined;
    try {
      const size = file.size;
      const head = readRange(file, 0, 64);
      if (head.length < 4 || head.readUInt32BE(0) !== 0x7f454c46)
        throw new LeakscopeError('not-elf', `${path}: not an ELF core file (no \\x7fELF magic)`);
      if (head.length < 64)
        throw new LeakscopeError('truncated', `${path}: ELF header needs 64 bytes, file has ${size}`);
      if (head[4] !== 2 || head[5] !== 1)
        throw new LeakscopeError('not-supported', `${path}: only 64-bit little-endian cores are supported`);
      const type = head.readUInt16LE(16);
      if (type !== ET_CORE) parseCoreParts({ label: path, type, segments: [], notes: [], fileSize: size }); // throws "not a core file"
      const phoff = Number(head.readBigUInt64LE(32)),
        phentsize = head.readUInt16LE(54);
      let phnum = head.readUInt16LE(56);
      if (phnum && phentsize !== 56)
        throw new LeakscopeError('malformed', `${path}: e_phentsize ${phentsize}, expected 56`);
      if (phnum === PN_XNUM) {
        // More than 65534 segments: the real count is section header 0's sh_info (gABI extended numbering).
        const shoff = Number(head.readBigUInt64LE(40));
        if (shoff + 64 > size)
          throw new LeakscopeError(
            'truncated',
            `${path}: section header 0 (extended segment count) at ${shoff}, file has ${size} bytes`,
          );
        phnum = readRange(file, shoff + 44, 4).readUInt32LE(0);
      }
      if (phnum * 56 > MAX_PHDR_BYTES)
        throw new LeakscopeError(
          'malformed',
          `${path}: ${phnum} program headers, more than leakscope reads (${MAX_PHDR_BYTES / 56})`,
        );
      if (phoff + phnum * 56 > size)
        throw new LeakscopeError(
          'truncated',
          `${path}: program headers end at ${phoff + phnum * 56}, file has ${size} bytes (truncated core)`,
        );
      const phr = new ByteReader(readRange(file, phoff, phnum * 56), { label: path, base: phoff });
      const segments: ElfSegment[] = [];
      for (let i = 0; i < phnum; i++) {
        const o = i * 56;
        // Checked exactly (bigint) here: as numbers, addresses near 2^64 round.
        const vaddr = phr.u64nAt(o + 16),
          memsz = phr.u64nAt(o + 40);
        if (phr.u32At(o) === PT_LOAD && memsz > 0n && vaddr + memsz > 1n << 64n) {
          throw new LeakscopeError(
            'malformed',
            `${path}: core segment at 0x${vaddr.toString(16)} (+${memsz} bytes) ends past the 64-bit address space`,
          );
        }
        segments.push({
          type: phr.u32At(o),
          flags: phr.u32At(o + 4),
          offset: phr.u64At(o + 8),
          vaddr: phr.u64At(o + 16),
          filesz: phr.u64At(o + 32),
          memsz: phr.u64At(o + 40),
          align: phr.u64At(o + 48),
        });
      }
      // Note segments: checked against the file and a total cap before any is read.
      const notes = segments.filter((sg) => sg.type === PT_NOTE);
      let noteBytes = 0;
      for (const sg of notes) {
        if (sg.offset + sg.filesz > size)
          throw new LeakscopeError(
            'truncated',
            `${path}: notes end at ${sg.offset + sg.filesz}, file has ${size} bytes (truncated core)`,
          );
        noteBytes += sg.filesz;
      }
      if (noteBytes > MAX_NOTE_BYTES)
        throw new LeakscopeError(
          'malformed',
          `${path}: note segments hold ${formatBytes(noteBytes)}, more than the ${formatBytes(MAX_NOTE_BYTES)} leakscope reads`,
        );
      function* eachNote() {
        for (const sg of notes) {
          const r = new ByteReader(readRange(file, sg.offset, sg.filesz), { label: path, base: sg.offset });
          yield* notesIn(r, 0, sg.filesz, path);
        }
      }
      const model = parseCoreParts({ label: path, type, segments, notes: eachNote(), fileSize: size });
      if (opts.exe !== undefined) {
        exe = openUserFile(opts.exe, 'executable');
        const eh = readRange(exe, 0, 64);
        if (eh.length < 18 || eh.readUInt32BE(0) !== 0x7f454c46)
          throw new LeakscopeError('not-elf', `${opts.exe}: not an ELF executable (--exe)`);
        if (eh.readUInt16LE(16) === ET_CORE)
          throw new LeakscopeError('not-elf', `${opts.exe}: a core file, not an executable (--exe)`);
      }
      return new CoreFile(path, fd, model, opts.exe, exe);
    } catch (e) {
      closeSync(fd);
      if (exe) closeSync(exe.fd);
      if (isLeakscopeError(e))
        throw e.message.startsWith(path) || (opts.exe && e.message.startsWith(opts.exe)) ? e : e.wrap(path);
      throw e;
    }
  }

  private buildMappings(): Mapping[] {
    const files = this.model.files;
    const out: Mapping[] = [];
    for (const seg of this.model.segments) {
      const perms = `${seg.flags & PF_R ? 'r' : '-'}${seg.flags & PF_W ? 'w' : '-'}${seg.flags & PF_X ? 'x' : '-'}p`;
      const f = files.find((x) => x.start <= seg.vaddr && seg.vaddr < x.end);
      out.push({
        start: seg.vaddr,
        end: seg.vaddr + seg.memsz,
        perms,
        offset: f ? f.fileOffset + (seg.vaddr - f.start) : 0,
        dev: '00:00',
        inode: 0,
        path: f ? f.path : '',
      });
      // Pieces: dumped bytes from the core, the rest from the file (or unreadable).
      if (seg.filesz > 0)
        this.pieces.push({
          start: seg.vaddr,
          end: seg.vaddr + Math.min(seg.filesz, seg.memsz),
          source: 'core',
          fileOffset: seg.fileOffset,
        });
      if (seg.filesz < seg.memsz && f) {
        const s = seg.vaddr + seg.filesz;
        this.pieces.push({
          start: s,
          end: seg.vaddr + seg.memsz,
          source: 'file',
          fileOffset: f.fileOffset + (s - f.start),
          fd: undefined,
        });
        (this.pieces[this.pieces.length - 1] as Piece & { path: string }).path = f.path;
      }
    }
    // File mappings the dump left out entirely (gcore skips unmodified code): readable from the file.
    for (const f of files) {
      let cursor = f.start;
      const covering = out.filter((m) => m.end > f.start && m.start < f.end).sort((a, b) => a.start - b.start);
      const gaps: Array<[number, number]> = [];
      for (const m of covering) {
        if (m.start > cursor) gaps.push([cursor, m.start]);
        cursor = Math.max(cursor, m.end);
      }
      if (cursor < f.end) gaps.push([cursor, f.end]);
      for (const [a, b] of gaps) {
        out.push({
          start: a,
          end: b,
          perms: 'r-xp',
          offset: f.fileOffset + (a - f.start),
          dev: '00:00',
          inode: 0,
          path: f.path,
        });
        this.pieces.push(
          Object.assign(
            { start: a, end: b, source: 'file' as const, fileOffset: f.fileOffset + (a - f.start) },
            { path: f.path },
          ),
        );
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
        m.path =
          this.model.threads[0] && this.model.threads[0].regs.rsp >= m.start && this.model.threads[0].regs.rsp < m.end
            ? '[stack]'
            : '';
      } else if (
        exeEnd &&
        m.start >= exeEnd &&
        m.start < exeEnd + BRK_RANDOM_RANGE + 4096 &&
        m.perms.startsWith('rw') &&
        !out.some((o) => o !== m && !o.path && o.start >= exeEnd && o.start < m.start)
      ) {
        m.path = '[heap]';
      }
    }
    return out;
  }

  mappings(): Mapping[] {
    return this.maps;
  }

  /** A core has no RSS: bytes dumped for a mapping count as resident (gcore dumps what is mapped and readable). */
  usage(): MappingWithUsage[] {
    return this.maps.map((m) => {
      const seg = this.model.segments.find((s) => s.vaddr === m.start);
      const dumped = seg ? Math.min(seg.filesz, seg.memsz) : 0;
      return {
        ...m,
        usage: {
          rss: dumped,
          pss: dumped,
          swap: 0,
          anonymous: m.path && !m.path.startsWith('[') ? 0 : dumped,
          privateDirty: dumped,
        },
      };
    });
  }

  residentBytes(start: number, end: number): { rss: number; swap: number } {
    let rss = 0;
    for (const p of this.pieces) {
      if (p.source !== 'core') continue;
      const a = Math.max(start, p.start),
        b = Math.min(end, p.end);
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

  exeHostPath(): string {
    return this.objectPath(this.exeTargetPath()) ?? '';
  }

  /** Whether an NT_FILE path is the executable that --exe replaces. */
  private isOverriddenExe(targetPath: string): boolean {
    return (
      !!this.exeFile &&
      (targetPath === this.exeOverride ||
        targetPath ===
          this.model.files.find((f) => f.fileOffset === 0 && f.path.split('/').pop()!.startsWith(this.command))?.path)
    );
  }

  /** The path to open for an object the core maps: --exe's file, or the NT_FILE path checked and pinned. */
  private objectPath(targetPath: string): string | undefined {
    if (this.isOverriddenExe(targetPath)) return `/proc/self/fd/${this.exeFile!.fd}`;
    if (!this.objectPaths.has(targetPath)) {
      let p: string | undefined;
      try {
        p = this.root.pinTargetFile(targetPath, 'object');
      } catch {
        /* gone, not regular, too large: unreadable */
      }
      this.objectPaths.set(targetPath, p);
    }
    return this.objectPaths.get(targetPath);
  }

  openTargetFile(targetPath: string, kind: TargetFileKind): OpenedFile {
    return this.root.openTargetFile(targetPath, kind);
  }

  modules(): Module[] {
    if (!this.cachedModules)
      this.cachedModules = buildModules(this.maps, (p) => this.objectPath(p), this.exeTargetPath(), this);
    return this.cachedModules;
  }

  threads(): ThreadState[] {
    return this.model.threads.map((t) => ({ tid: t.tid, regs: { ...t.regs } }));
  }

  private fileFd(path: string): number | undefined {
    if (this.fileFds.has(path)) return this.fileFds.get(path)!;
    let fd = -1;
    try {
      fd = this.isOverriddenExe(path) ? dupFd(this.exeFile!.fd) : this.root.openTargetFile(path, 'object').fd;
    } catch {
      /* gone, not a regular file, too large: unreadable */
    }
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
      try {
        got = readSync(fd, buf, bufOffset + done, n, p.fileOffset + (a - p.start));
      } catch {
        return done;
      }
      done += got;
      if (got < n) return done;
    }
    return done;
  }

  read(addr: number, len: number): Buffer {
    return readExactly(this, addr, len);
  }

  readU64(addr: number): number {
    return readU64Via(this, this.scratch, addr);
  }

  close(): void {
    try {
      closeSync(this.fd);
    } catch {
      /* closed */
    }
    for (const fd of this.fileFds.values())
      if (fd >= 0)
        try {
          closeSync(fd);
        } catch {
          /* closed */
        }
    this.fileFds.clear();
    if (this.exeFile)
      try {
        closeSync(this.exeFile.fd);
      } catch {
        /* closed */
      }
    this.root.close();
  }
}
