// For unit tests: an AddressSpace over one region of bytes at `base`, read like a core file's
// (a read past the region is short; nothing else is mapped, no modules, no threads, no files).

import type { Mapping, MappingWithUsage, Module, OpenedFile, TargetFileKind } from '../model/memory.js';
import { LeakscopeError } from '../model/errors.js';
import type { AddressSpace, ThreadState } from './address-space.js';

export class ImageSpace implements AddressSpace {
  readonly kind = 'core' as const;
  readonly pid = 1;
  readonly command = 'image';
  /** Called once, right after the next read at this address has filled the caller's buffer (reentrancy tests). */
  after: { addr: number; run: () => void } | null = null;
  constructor(
    readonly base: number,
    readonly bytes: Buffer,
    readonly description = 'memory image',
  ) {}
  mappings(): Mapping[] {
    return [];
  }
  usage(): MappingWithUsage[] {
    return [];
  }
  residentBytes(): { rss: number; swap: number } {
    return { rss: 0, swap: 0 };
  }
  modules(): Module[] {
    return [];
  }
  exeHostPath(): string {
    return '';
  }
  openTargetFile(p: string, _kind: TargetFileKind): OpenedFile {
    throw new LeakscopeError('not-found', `image: no file ${p}`);
  }
  threads(): ThreadState[] {
    return [];
  }
  readInto(addr: number, buf: Uint8Array, off: number, len: number): number {
    const at = addr - this.base;
    if (at < 0 || at >= this.bytes.length) return 0;
    const n = Math.min(len, this.bytes.length - at);
    this.bytes.copy(buf, off, at, at + n);
    const hook = this.after;
    if (hook && hook.addr === addr) {
      this.after = null;
      hook.run();
    }
    return n;
  }
  read(addr: number, len: number): Buffer {
    const b = Buffer.alloc(len);
    if (this.readInto(addr, b, 0, len) !== len)
      throw new LeakscopeError('unreadable', `image: ${len} bytes at 0x${addr.toString(16)}`);
    return b;
  }
  readU64(addr: number): number {
    const b = this.read(addr, 8);
    return b.readUInt32LE(4) * 4294967296 + b.readUInt32LE(0);
  }
  close(): void {}
}
