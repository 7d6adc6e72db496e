// For unit tests: an AddressSpace over regions of bytes, read like a core file's (a read past a
// region is short unless the next region starts right there; nothing else is readable). By
// default one region at `base`, no mappings, no modules, no threads, no files; options add more
// regions, the mappings and modules of the process the bytes came from, and a way to open the
// files those modules name (e.g. through hostRoot(), for their symbols).

import type { Mapping, MappingWithUsage, Module, OpenedFile, TargetFileKind } from '../model/memory.js';
import { LeakscopeError } from '../model/errors.js';
import type { AddressSpace, ThreadState } from './address-space.js';

export interface ImageRegion {
  start: number;
  bytes: Buffer;
}

export interface ImageSpaceOptions {
  description?: string;
  /** Default 1. */
  pid?: number;
  /** Regions besides the first (`base`, `bytes`). */
  regions?: ImageRegion[];
  mappings?: Mapping[];
  modules?: Module[];
  /** Opens a file the modules name; default: none (`not-found`). */
  openTargetFile?: (path: string, kind: TargetFileKind) => OpenedFile;
}

export class ImageSpace implements AddressSpace {
  readonly kind = 'core' as const;
  readonly pid: number;
  readonly command = 'image';
  readonly description: string;
  /** Every readable region, the first being (`base`, `bytes`); tests may mutate their bytes. */
  readonly regions: ImageRegion[];
  /** Called once, right after the next read at this address has filled the caller's buffer (reentrancy tests). */
  after: { addr: number; run: () => void } | null = null;
  private readonly opts: ImageSpaceOptions;
  constructor(
    readonly base: number,
    readonly bytes: Buffer,
    options: string | ImageSpaceOptions = 'memory image',
  ) {
    this.opts = typeof options === 'string' ? { description: options } : options;
    this.description = this.opts.description ?? 'memory image';
    this.pid = this.opts.pid ?? 1;
    this.regions = [{ start: base, bytes }, ...(this.opts.regions ?? [])];
  }
  /** An image of several regions (the first is `base`, `bytes`). */
  static ofRegions(regions: readonly ImageRegion[], options: ImageSpaceOptions = {}): ImageSpace {
    const [first, ...rest] = regions;
    return new ImageSpace(first?.start ?? 0, first?.bytes ?? Buffer.alloc(0), { ...options, regions: rest });
  }
  mappings(): Mapping[] {
    return this.opts.mappings ?? [];
  }
  usage(): MappingWithUsage[] {
    return this.opts.mappings ?? [];
  }
  residentBytes(): { rss: number; swap: number } {
    return { rss: 0, swap: 0 };
  }
  modules(): Module[] {
    return this.opts.modules ?? [];
  }
  exeHostPath(): string {
    return this.opts.modules?.[0]?.hostPath ?? '';
  }
  openTargetFile(p: string, kind: TargetFileKind): OpenedFile {
    if (this.opts.openTargetFile) return this.opts.openTargetFile(p, kind);
    throw new LeakscopeError('not-found', `image: no file ${p}`);
  }
  threads(): ThreadState[] {
    return [];
  }
  readInto(addr: number, buf: Uint8Array, off: number, len: number): number {
    if (!Number.isSafeInteger(addr) || addr < 0) return 0;
    let done = 0;
    while (done < len) {
      const a = addr + done;
      const r = this.regions.find((x) => a >= x.start && a < x.start + x.bytes.length);
      if (!r) break;
      const n = Math.min(len - done, r.start + r.bytes.length - a);
      r.bytes.copy(buf, off + done, a - r.start, a - r.start + n);
      done += n;
    }
    const hook = this.after;
    if (hook && hook.addr === addr) {
      this.after = null;
      hook.run();
    }
    return done;
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
