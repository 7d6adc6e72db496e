// Batched reads of many small ranges of target memory: ranges closer than `gap` bytes are
// read with one pread-sized window (a syscall costs about as much as copying ~4 KiB here),
// windows are capped at `maxWindow` bytes so leakscope's own memory stays bounded.

import type { AddressSpace } from '../target/index.js';
import { pageAlignedBuffer } from '../target/aligned-buffer.js';

export interface BatchOptions {
  gap?: number;
  maxWindow?: number;
}

/**
 * The window buffer, shared by every call (one process-wide buffer, at most the largest
 * maxWindow asked for, 4 MiB by default): a fresh multi-MiB buffer per call costs an
 * allocation and adds external-memory pressure that triggers V8 collections.
 * `buf` given to a callback is valid only during that callback.
 */
let sharedWindow: Buffer | undefined;

/**
 * For each [addr, addr+len) (any order), calls `cb(index, buf, off, got)` with the bytes at
 * buf[off .. off+got); `got` < len when the range is (partly) unreadable. Returns the number
 * of read calls made.
 */
export function readBatched(
  space: AddressSpace,
  addrs: ArrayLike<number>,
  lens: ArrayLike<number> | number,
  cb: (index: number, buf: Buffer, off: number, got: number) => void,
  opts: BatchOptions = {},
): number {
  const gap = opts.gap ?? 4096,
    maxWindow = opts.maxWindow ?? 4 << 20;
  const n = addrs.length;
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  order.sort((a, b) => addrs[a]! - addrs[b]!);
  const lenOf = typeof lens === 'number' ? () => lens : (i: number) => lens[i]!;
  let buf = sharedWindow ?? (sharedWindow = pageAlignedBuffer(1 << 16));
  let calls = 0;
  let i = 0;
  while (i < n) {
    const first = order[i]!;
    const start = addrs[first]!;
    let end = start + lenOf(first);
    let j = i + 1;
    while (j < n) {
      const k = order[j]!;
      const a = addrs[k]!,
        e = a + lenOf(k);
      if (a > end + gap || Math.max(end, e) - start > maxWindow) break;
      if (e > end) end = e;
      j++;
    }
    const size = end - start;
    if (buf.length < size) buf = sharedWindow = pageAlignedBuffer(Math.max(size, Math.min(maxWindow, buf.length * 2)));
    let got = space.readInto(start, buf, 0, size);
    calls++;
    if (got < size && j - i > 1) {
      // Partly unreadable window: fall back to one read per range so each gets what exists.
      for (let t = i; t < j; t++) {
        const k = order[t]!;
        const a = addrs[k]!,
          l = lenOf(k);
        const off = a - start;
        if (off + l <= got) {
          cb(k, buf, off, l);
          continue;
        }
        const one = Buffer.allocUnsafe(l);
        const g = space.readInto(a, one, 0, l);
        calls++;
        cb(k, one, 0, g);
      }
    } else {
      for (let t = i; t < j; t++) {
        const k = order[t]!;
        const off = addrs[k]! - start;
        const l = lenOf(k);
        cb(k, buf, off, Math.max(0, Math.min(l, got - off)));
      }
    }
    i = j;
    got = 0;
  }
  return calls;
}
