// Bounds-checked little-endian reader over bytes. Running out of bytes is an error that
// carries the offset (unlike readers that silently return 0 past the end).
//
// Two styles share one class:
//   - cursor reads (`u32()`, `uleb()`, `cstring()`) advance `pos`;
//   - random-access reads (`u64At(off)`) leave `pos` alone; hot loops (heap walks) use these.
// 64-bit values come as `number` (exact below 2^53, which covers every x86-64 user
// address and size) or as `bigint` (`u64n`).

import { LeakscopeError } from '../model/errors.js';

const TWO32 = 4294967296;

export class ByteReader {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  /** Cursor, relative to the start of `bytes`. */
  pos: number;
  /** Added to offsets in error messages (e.g. the file offset or address of bytes[0]). */
  readonly base: number;
  readonly label: string;

  constructor(bytes: Uint8Array, opts: { pos?: number; base?: number; label?: string } = {}) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = opts.pos ?? 0;
    this.base = opts.base ?? 0;
    this.label = opts.label ?? 'data';
  }

  get length(): number {
    return this.bytes.byteLength;
  }
  get remaining(): number {
    return this.bytes.byteLength - this.pos;
  }
  get eof(): boolean {
    return this.pos >= this.bytes.byteLength;
  }

  private fail(off: number, n: number): never {
    throw new LeakscopeError(
      'truncated',
      `${this.label}: need ${n} byte(s) at offset 0x${(this.base + off).toString(16)}, have ${Math.max(0, this.bytes.byteLength - off)}`,
    );
  }
  /** Throws unless [off, off+n) lies inside the bytes. */
  check(off: number, n: number): void {
    if (off < 0 || n < 0 || off + n > this.bytes.byteLength || !Number.isInteger(off)) this.fail(off, n);
  }

  // ---- random access ----
  u8At(off: number): number {
    this.check(off, 1);
    return this.bytes[off]!;
  }
  u16At(off: number): number {
    this.check(off, 2);
    return this.view.getUint16(off, true);
  }
  u32At(off: number): number {
    this.check(off, 4);
    return this.view.getUint32(off, true);
  }
  i32At(off: number): number {
    this.check(off, 4);
    return this.view.getInt32(off, true);
  }
  /** u64 as number; exact below 2^53. */
  u64At(off: number): number {
    this.check(off, 8);
    return this.view.getUint32(off + 4, true) * TWO32 + this.view.getUint32(off, true);
  }
  i64At(off: number): number {
    this.check(off, 8);
    return this.view.getInt32(off + 4, true) * TWO32 + this.view.getUint32(off, true);
  }
  u64nAt(off: number): bigint {
    this.check(off, 8);
    return this.view.getBigUint64(off, true);
  }
  /** NUL-terminated string starting at off (latin1 / utf-8), at most `max` bytes. */
  cstringAt(off: number, max = 4096): string {
    this.check(off, 0);
    const lim = Math.min(this.bytes.byteLength, off + max);
    let end = off;
    while (end < lim && this.bytes[end] !== 0) end++;
    if (end >= this.bytes.byteLength) this.fail(end, 1);
    return Buffer.from(this.bytes.buffer, this.bytes.byteOffset + off, end - off).toString('utf8');
  }
  bytesAt(off: number, n: number): Uint8Array {
    this.check(off, n);
    return this.bytes.subarray(off, off + n);
  }

  // ---- cursor reads ----
  u8(): number {
    const v = this.u8At(this.pos);
    this.pos += 1;
    return v;
  }
  i8(): number {
    const v = this.u8();
    return v > 127 ? v - 256 : v;
  }
  u16(): number {
    const v = this.u16At(this.pos);
    this.pos += 2;
    return v;
  }
  i16(): number {
    this.check(this.pos, 2);
    const v = this.view.getInt16(this.pos, true);
    this.pos += 2;
    return v;
  }
  u32(): number {
    const v = this.u32At(this.pos);
    this.pos += 4;
    return v;
  }
  i32(): number {
    const v = this.i32At(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): number {
    const v = this.u64At(this.pos);
    this.pos += 8;
    return v;
  }
  i64(): number {
    const v = this.i64At(this.pos);
    this.pos += 8;
    return v;
  }
  u64n(): bigint {
    const v = this.u64nAt(this.pos);
    this.pos += 8;
    return v;
  }
  skip(n: number): void {
    this.check(this.pos, n);
    this.pos += n;
  }
  seek(off: number): void {
    this.check(off, 0);
    this.pos = off;
  }
  take(n: number): Uint8Array {
    const b = this.bytesAt(this.pos, n);
    this.pos += n;
    return b;
  }
  /** A reader over the next n bytes (advances past them). */
  split(n: number, label = this.label): ByteReader {
    const base = this.base + this.pos;
    return new ByteReader(this.take(n), { base, label });
  }
  cstring(max = 4096): string {
    const s = this.cstringAt(this.pos, max);
    this.pos += Buffer.byteLength(s, 'utf8') + 1;
    return s;
  }
  /** Unsigned LEB128; exact up to 2^53. */
  uleb(): number {
    let result = 0,
      mul = 1,
      b: number;
    do {
      b = this.u8();
      result += (b & 0x7f) * mul;
      mul *= 128;
      if (mul > 2 ** 63)
        throw new LeakscopeError(
          'malformed',
          `${this.label}: ULEB128 too long at offset 0x${(this.base + this.pos).toString(16)}`,
        );
    } while (b & 0x80);
    return result;
  }
  /** Unsigned LEB128 as a bigint: at most 10 bytes, wrapped to 64 bits (DWARF expression operands). */
  ulebn(): bigint {
    let result = 0n,
      shift = 0n;
    for (let i = 0; i < 10; i++) {
      const b = this.u8();
      result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if (!(b & 0x80)) return BigInt.asUintN(64, result);
    }
    throw new LeakscopeError(
      'malformed',
      `${this.label}: ULEB128 longer than 10 bytes at offset 0x${(this.base + this.pos).toString(16)}`,
    );
  }
  /** Signed LEB128 as a bigint: at most 10 bytes, wrapped to 64 bits. */
  slebn(): bigint {
    let result = 0n,
      shift = 0n;
    for (let i = 0; i < 10; i++) {
      const b = this.u8();
      result |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if (!(b & 0x80)) {
        if (b & 0x40) result -= 1n << shift;
        return BigInt.asIntN(64, result);
      }
    }
    throw new LeakscopeError(
      'malformed',
      `${this.label}: SLEB128 longer than 10 bytes at offset 0x${(this.base + this.pos).toString(16)}`,
    );
  }
  /** Signed LEB128; exact up to +-2^53. */
  sleb(): number {
    let result = 0,
      mul = 1,
      b: number;
    do {
      b = this.u8();
      result += (b & 0x7f) * mul;
      mul *= 128;
      if (mul > 2 ** 63)
        throw new LeakscopeError(
          'malformed',
          `${this.label}: SLEB128 too long at offset 0x${(this.base + this.pos).toString(16)}`,
        );
    } while (b & 0x80);
    if (b & 0x40) result -= mul;
    return result;
  }
}
