// Buffers for large reads of a target's memory, their first byte on a page boundary.
//
// Why: the kernel copies /proc/PID/mem and process_vm_readv(2) reads with copy_to_user one page at
// a time, and that copy is ~2.6x slower when the destination is not 64-byte aligned (measured on
// this machine: 824 MiB read in 1 MiB windows, 268-301 ms into a page-aligned buffer, 706-794 ms
// at page offset 16). A Node Buffer or (Shared)ArrayBuffer of more than glibc's mmap threshold is
// a malloc'd chunk: its data starts 16 bytes into a page, the slow case.
//
// So the backing store is one page larger and the view starts at the first page boundary inside it
// (the address comes from koffi). Where koffi cannot load, the view starts at offset 0: correct,
// only slower.

import koffi from 'koffi';

const PAGE = 4096;

/** The first offset inside `backing` at which a view starts on a page boundary (0 when unknown). */
function pageOffset(backing: ArrayBuffer | SharedArrayBuffer): number {
  try {
    const addr = Number(koffi.address(new Uint8Array(backing, 0, 1)) as bigint);
    return (PAGE - (addr % PAGE)) % PAGE;
  } catch {
    return 0;
  }
}

/** A zero-filled Buffer of `bytes` whose first byte is page-aligned (an ArrayBuffer one page larger behind it). */
export function pageAlignedBuffer(bytes: number): Buffer {
  const backing = new ArrayBuffer(bytes + PAGE);
  return Buffer.from(backing, pageOffset(backing), bytes);
}

/**
 * `count` Buffers of `bytes` each (a multiple of the page size), back to back in one
 * SharedArrayBuffer (shareable with worker threads), each starting on a page boundary.
 */
export function pageAlignedSharedSlots(
  count: number,
  bytes: number,
): { data: SharedArrayBuffer; offset: number; slots: Buffer[] } {
  const data = new SharedArrayBuffer(count * bytes + PAGE);
  const offset = pageOffset(data);
  const slots: Buffer[] = [];
  for (let i = 0; i < count; i++) slots.push(Buffer.from(data, offset + i * bytes, bytes));
  return { data, offset, slots };
}
