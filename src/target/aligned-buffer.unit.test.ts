import { test } from 'node:test';
import assert from 'node:assert/strict';
import koffi from 'koffi';
import { pageAlignedBuffer, pageAlignedSharedSlots } from './aligned-buffer.js';

const addressOf = (b: Buffer): number => Number(koffi.address(b) as bigint);

test('pageAlignedBuffer: the first byte on a page boundary, the length asked, zero-filled, for sizes around the mmap threshold', () => {
  for (const bytes of [4096, 65536, 1 << 20, 16 << 20, 33 << 20]) {
    const b = pageAlignedBuffer(bytes);
    assert.equal(b.length, bytes);
    assert.equal(addressOf(b) % 4096, 0, `${bytes} bytes`);
    assert.equal(b[0], 0);
    assert.equal(b[bytes - 1], 0);
  }
});

test('pageAlignedSharedSlots: every slot page-aligned, back to back, not overlapping, in one SharedArrayBuffer', () => {
  const { data, offset, slots } = pageAlignedSharedSlots(3, 1 << 20);
  assert.ok(data instanceof SharedArrayBuffer);
  assert.equal(slots.length, 3);
  for (const [i, s] of slots.entries()) {
    assert.equal(s.buffer, data);
    assert.equal(s.byteOffset, offset + i * (1 << 20));
    assert.equal(s.length, 1 << 20);
    assert.equal(addressOf(s) % 4096, 0);
  }
  slots[0]!.fill(1);
  assert.equal(slots[1]![0], 0);
});
