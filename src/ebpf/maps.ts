// BPF maps: creation and element operations from TypeScript, with typed key / value codecs.
// Attr layouts: `union bpf_attr` in include/uapi/linux/bpf.h (offsets in shared/reference/ebpf.md).
import { readFileSync } from 'node:fs';
import { LeakscopeError } from '../model/errors.js';
import { resources, Stage, type Resource } from './cleanup.js';
import { BpfCmd, Errno, NativeBuffer, attrBuffer, bpf, bpfRaw, closeFd, errnoError, parseCpuList } from './syscalls.js';

/** Map types (enum bpf_map_type). */
export const MapType = {
  hash: 1,
  array: 2,
  'percpu-array': 6,
  'stack-trace': 7,
  'lru-hash': 9,
  ringbuf: 27,
} as const;
export type MapTypeName = keyof typeof MapType;

/** MAP_UPDATE_ELEM flags. */
export const UpdateFlag = { ANY: 0, NOEXIST: 1, EXIST: 2 } as const;

/** bpf_map_create name is 16 bytes with the NUL; the kernel accepts [A-Za-z0-9_.]. */
const BPF_OBJ_NAME_LEN = 16;

// --- codecs --------------------------------------------------------------------------------
/** Fixed-size little-endian encoding of a key or value. */
export interface Codec<T> {
  readonly size: number;
  encode(value: T, buf: Buffer, offset: number): void;
  decode(buf: Buffer, offset: number): T;
}
export const u8: Codec<number> = {
  size: 1,
  encode: (v, b, o) => void b.writeUInt8(v, o),
  decode: (b, o) => b.readUInt8(o),
};
export const u32: Codec<number> = {
  size: 4,
  encode: (v, b, o) => void b.writeUInt32LE(v, o),
  decode: (b, o) => b.readUInt32LE(o),
};
export const u64: Codec<bigint> = {
  size: 8,
  encode: (v, b, o) => void b.writeBigUInt64LE(BigInt.asUintN(64, v), o),
  decode: (b, o) => b.readBigUInt64LE(o),
};
/** u64 as a JS number: exact below 2^53 (addresses, sizes, counters); throws above. */
export const u64n: Codec<number> = {
  size: 8,
  encode: (v, b, o) => {
    b.writeUInt32LE((v % 0x1_0000_0000) >>> 0, o);
    b.writeUInt32LE(Math.floor(v / 0x1_0000_0000) >>> 0, o + 4);
  },
  decode: (b, o) => {
    const hi = b.readUInt32LE(o + 4);
    if (hi >= 0x20_0000) throw new LeakscopeError('malformed', `u64 at ${o}: ${b.readBigUInt64LE(o)} exceeds 2^53`);
    return hi * 0x1_0000_0000 + b.readUInt32LE(o);
  },
};
/** Raw bytes of a fixed size (a copy on decode). */
export function bytes(size: number): Codec<Uint8Array> {
  return {
    size,
    encode: (v, b, o) => {
      if (v.length !== size) throw new LeakscopeError('usage', `bytes codec: expected ${size} bytes, got ${v.length}`);
      b.set(v, o);
    },
    decode: (b, o) => new Uint8Array(b.subarray(o, o + size)), // a plain copy, not a Buffer
  };
}
/** A C struct of codec fields laid out with natural alignment (like the C compiler does for u8/u32/u64). */
export function record<T extends Record<string, unknown>>(fields: { [K in keyof T]: Codec<T[K]> }): Codec<T> {
  const layout: Array<[keyof T, Codec<unknown>, number]> = [];
  let off = 0;
  let align = 1;
  for (const name of Object.keys(fields) as Array<keyof T>) {
    const c = fields[name] as Codec<unknown>;
    const a = Math.min(c.size, 8);
    off = Math.ceil(off / a) * a;
    align = Math.max(align, a);
    layout.push([name, c, off]);
    off += c.size;
  }
  const size = Math.ceil(off / align) * align;
  return {
    size,
    encode: (v, b, o) => {
      b.fill(0, o, o + size);
      for (const [name, c, fo] of layout) c.encode(v[name], b, o + fo);
    },
    decode: (b, o) => {
      const out: Record<string, unknown> = {};
      for (const [name, c, fo] of layout) out[name as string] = c.decode(b, o + fo);
      return out as T;
    },
  };
}
/** No key or value (ring buffers). */
export const none: Codec<never> = {
  size: 0,
  encode: () => undefined,
  decode: () => {
    throw new LeakscopeError('usage', 'map has no values');
  },
};

// --- possible CPUs ---------------------------------------------------------------------------
let possibleCpus: number | undefined;
/** Number of possible CPUs: per-CPU maps hold one value slot for each (kernel num_possible_cpus()). */
export function possibleCpuCount(): number {
  if (possibleCpus === undefined) {
    const cpus = parseCpuList(readFileSync('/sys/devices/system/cpu/possible', 'utf8'));
    possibleCpus = Math.max(...cpus) + 1;
  }
  return possibleCpus;
}

// --- maps --------------------------------------------------------------------------------------
export interface MapSpec<K, V> {
  name: string;
  type: MapTypeName;
  key: Codec<K>;
  value: Codec<V>;
  maxEntries: number;
  flags?: number;
  /** Adopt this map fd instead of creating a map. */
  fd?: number;
}

/** Raw map: fd plus scratch buffers for one key, one next key and one (possibly per-CPU) value. */
function createMapFd(
  name: string,
  type: MapTypeName,
  keySize: number,
  valueSize: number,
  maxEntries: number,
  flags: number,
): number {
  const a = attrBuffer();
  a.buf.writeUInt32LE(MapType[type], 0);
  a.buf.writeUInt32LE(keySize, 4);
  a.buf.writeUInt32LE(valueSize, 8);
  a.buf.writeUInt32LE(maxEntries, 12);
  a.buf.writeUInt32LE(flags, 16);
  a.buf.write(name.replace(/[^A-Za-z0-9_.]/g, '_').slice(0, BPF_OBJ_NAME_LEN - 1), 28, 'latin1');
  const what = `create ${type} map "${name}" (key ${keySize} B, value ${valueSize} B, ${maxEntries} entries)`;
  return bpf(BpfCmd.MAP_CREATE, a, what, type === 'ringbuf' ? [Errno.EINVAL] : []);
}

export class RawMap {
  readonly fd: number;
  readonly type: MapTypeName;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  /** Bytes the kernel copies for one lookup: valueSize, or nCpus * round_up(valueSize, 8) per-CPU. */
  readonly valueBytes: number;
  protected readonly keyBuf: NativeBuffer;
  protected readonly nextKeyBuf: NativeBuffer;
  protected readonly valueBuf: NativeBuffer;
  private handle: Resource | undefined;

  /**
   * Creates the map, or adopts `existingFd` (an fd for a map of this shape obtained elsewhere,
   * e.g. with pidfd_getfd); the map then owns and closes that fd.
   */
  constructor(
    readonly name: string,
    type: MapTypeName,
    keySize: number,
    valueSize: number,
    maxEntries: number,
    flags = 0,
    existingFd?: number,
  ) {
    this.type = type;
    this.keySize = keySize;
    this.valueSize = valueSize;
    this.maxEntries = maxEntries;
    this.valueBytes = type === 'percpu-array' ? possibleCpuCount() * Math.ceil(valueSize / 8) * 8 : valueSize;
    if (existingFd !== undefined) {
      this.fd = existingFd;
    } else {
      this.fd = createMapFd(name, type, keySize, valueSize, maxEntries, flags);
    }
    this.keyBuf = new NativeBuffer(keySize);
    this.nextKeyBuf = new NativeBuffer(keySize);
    this.valueBuf = new NativeBuffer(this.valueBytes);
    this.handle = resources.add({ stage: Stage.Map, what: `map ${name} fd ${this.fd}`, close: () => this.destroy() });
  }

  private destroy(): void {
    closeFd(this.fd);
    this.keyBuf.free();
    this.nextKeyBuf.free();
    this.valueBuf.free();
    (this as { fd: number }).fd = -1;
  }

  close(): void {
    resources.release(this.handle);
    this.handle = undefined;
  }

  /** Throws once closed: the scratch buffers are freed then and must not be written. */
  protected open(): void {
    if (this.fd < 0) throw new LeakscopeError('usage', `map ${this.name} is closed`);
  }

  private elemAttr(key: NativeBuffer | null, value: NativeBuffer | null, flags: number): NativeBuffer {
    this.open();
    const a = attrBuffer();
    a.buf.writeUInt32LE(this.fd, 0);
    if (key) a.buf.writeBigUInt64LE(key.addr, 8);
    if (value) a.buf.writeBigUInt64LE(value.addr, 16);
    a.buf.writeBigUInt64LE(BigInt(flags), 24);
    return a;
  }

  /** Looks up the key in `keyBuf`; fills `valueBuf`. Returns false when absent. */
  protected lookupRaw(): boolean {
    const r = bpfRaw(BpfCmd.MAP_LOOKUP_ELEM, this.elemAttr(this.keyBuf, this.valueBuf, 0));
    if (r === -Errno.ENOENT) return false;
    if (r < 0) throw errnoError(`lookup in map ${this.name}`, -r);
    return true;
  }
  protected updateRaw(flags: number): void {
    const r = bpfRaw(BpfCmd.MAP_UPDATE_ELEM, this.elemAttr(this.keyBuf, this.valueBuf, flags));
    if (r < 0) throw errnoError(`update map ${this.name}`, -r);
  }
  protected deleteRaw(): boolean {
    const r = bpfRaw(BpfCmd.MAP_DELETE_ELEM, this.elemAttr(this.keyBuf, null, 0));
    if (r === -Errno.ENOENT) return false;
    if (r < 0) throw errnoError(`delete from map ${this.name}`, -r);
    return true;
  }
  /** Next key after `keyBuf` (or the first when `first`), into `nextKeyBuf`. False at the end. */
  protected nextKeyRaw(first: boolean): boolean {
    const r = bpfRaw(BpfCmd.MAP_GET_NEXT_KEY, this.elemAttr(first ? null : this.keyBuf, this.nextKeyBuf, 0));
    if (r === -Errno.ENOENT) return false;
    if (r < 0) throw errnoError(`iterate map ${this.name}`, -r);
    return true;
  }
  /** Iterates raw keys: calls `each` with `keyBuf` holding the key (GET_NEXT_KEY walk). */
  protected walkKeys(each: () => void): void {
    this.open();
    let first = true;
    while (this.nextKeyRaw(first)) {
      first = false;
      this.nextKeyBuf.buf.copy(this.keyBuf.buf, 0, 0, this.keySize);
      each();
    }
  }
}

/** A hash / LRU hash / array map with typed keys and values. */
export class BpfMap<K, V> extends RawMap {
  constructor(readonly spec: MapSpec<K, V>) {
    super(spec.name, spec.type, spec.key.size, spec.value.size, spec.maxEntries, spec.flags ?? 0, spec.fd);
  }
  lookup(key: K): V | undefined {
    this.open();
    this.spec.key.encode(key, this.keyBuf.buf, 0);
    return this.lookupRaw() ? this.spec.value.decode(this.valueBuf.buf, 0) : undefined;
  }
  update(key: K, value: V, flags: number = UpdateFlag.ANY): void {
    this.open();
    this.spec.key.encode(key, this.keyBuf.buf, 0);
    this.spec.value.encode(value, this.valueBuf.buf, 0);
    this.updateRaw(flags);
  }
  /** Returns false when the key was absent. */
  delete(key: K): boolean {
    this.open();
    this.spec.key.encode(key, this.keyBuf.buf, 0);
    return this.deleteRaw();
  }
  keys(): K[] {
    const out: K[] = [];
    this.walkKeys(() => out.push(this.spec.key.decode(this.keyBuf.buf, 0)));
    return out;
  }
  /** All entries (keys deleted concurrently by BPF are skipped). */
  entries(): Array<[K, V]> {
    const out: Array<[K, V]> = [];
    this.walkKeys(() => {
      if (this.lookupRaw())
        out.push([this.spec.key.decode(this.keyBuf.buf, 0), this.spec.value.decode(this.valueBuf.buf, 0)]);
    });
    return out;
  }
}

/** A per-CPU array: one value per possible CPU for each index. */
export class PerCpuArrayMap<V> extends RawMap {
  readonly cpus = possibleCpuCount();
  private readonly stride: number;
  constructor(readonly spec: { name: string; value: Codec<V>; maxEntries: number; fd?: number }) {
    super(spec.name, 'percpu-array', 4, spec.value.size, spec.maxEntries, 0, spec.fd);
    this.stride = Math.ceil(spec.value.size / 8) * 8;
  }
  /** Values for each possible CPU, indexed by CPU number. */
  lookup(index: number): V[] | undefined {
    this.open();
    this.keyBuf.buf.writeUInt32LE(index, 0);
    if (!this.lookupRaw()) return undefined;
    const out: V[] = [];
    for (let c = 0; c < this.cpus; c++) out.push(this.spec.value.decode(this.valueBuf.buf, c * this.stride));
    return out;
  }
  /** Sets the value on every CPU (one value each, or the same value for all). */
  update(index: number, values: V | V[]): void {
    this.open();
    this.keyBuf.buf.writeUInt32LE(index, 0);
    this.valueBuf.buf.fill(0);
    for (let c = 0; c < this.cpus; c++) {
      const v = Array.isArray(values) ? values[c] : values;
      if (v === undefined) throw new LeakscopeError('usage', `per-CPU update of ${this.name}: no value for CPU ${c}`);
      this.spec.value.encode(v, this.valueBuf.buf, c * this.stride);
    }
    this.updateRaw(UpdateFlag.ANY);
  }
}

/** PERF_MAX_STACK_DEPTH (include/uapi/linux/perf_event.h / sysctl kernel.perf_event_max_stack default). */
export const MAX_STACK_DEPTH = 127;

/** A stack trace map (bpf_get_stackid): stack id -> instruction pointers, leaf first. */
export class StackTraceMap extends RawMap {
  constructor(
    name: string,
    maxEntries: number,
    readonly depth = MAX_STACK_DEPTH,
  ) {
    super(name, 'stack-trace', 4, depth * 8, maxEntries);
  }
  /** The addresses of a stack (trailing zero slots removed), or undefined. */
  lookup(stackId: number): bigint[] | undefined {
    this.open();
    this.keyBuf.buf.writeUInt32LE(stackId, 0);
    if (!this.lookupRaw()) return undefined;
    const out: bigint[] = [];
    for (let i = 0; i < this.depth; i++) {
      const ip = this.valueBuf.buf.readBigUInt64LE(i * 8);
      if (ip === 0n) break;
      out.push(ip);
    }
    return out;
  }
  delete(stackId: number): boolean {
    this.open();
    this.keyBuf.buf.writeUInt32LE(stackId, 0);
    return this.deleteRaw();
  }
  stackIds(): number[] {
    const out: number[] = [];
    this.walkKeys(() => out.push(this.keyBuf.buf.readUInt32LE(0)));
    return out;
  }
}

/** A ring buffer map (kernel >= 5.8). `size` is the data size: a power of two, a multiple of the page size. */
export class RingBufMap extends RawMap {
  constructor(
    name: string,
    readonly size: number,
  ) {
    if (size <= 0 || (size & (size - 1)) !== 0 || size % 4096 !== 0) {
      throw new LeakscopeError(
        'usage',
        `ring buffer ${name}: size ${size} must be a power of two and a multiple of 4096`,
      );
    }
    super(name, 'ringbuf', 0, 0, size);
  }
}

export function createMap<K, V>(spec: MapSpec<K, V>): BpfMap<K, V> {
  return new BpfMap(spec);
}
