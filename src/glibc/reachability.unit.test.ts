// The chunk table of the reachability scan (pure): runs in any order, free-list chunks dropped,
// address -> block lookup for start, interior and outside pointers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkTable } from './reachability.js';

test('chunk table: runs sorted, freed chunks dropped, start / interior / header / gap lookups', () => {
  const t = new ChunkTable(4); // grows past its first capacity
  const heapA = 0x7f0000000000,
    heapB = 0x55aa00000000,
    mm = 0x7f1000000000;
  // Two heaps walked in the "wrong" order, then an mmapped chunk; chunk size 48 (user 16 .. 56).
  for (let i = 0; i < 10; i++) t.push(heapA + 16 + i * 48, 48, false);
  for (let i = 0; i < 10; i++) t.push(heapB + 16 + i * 48, 48, false);
  t.push(mm + 16, 1 << 20, true);
  t.freed.push(heapB + 16 + 3 * 48); // found in a tcache afterwards
  t.finish();
  assert.equal(t.n, 20);
  for (let i = 1; i < t.n; i++) assert.ok(t.address(i) > t.address(i - 1), 'ascending');
  assert.equal(t.indexOf(heapB + 16 + 3 * 48), -1, 'the freed chunk is gone');
  const b0 = t.indexOf(heapB + 16);
  assert.equal(b0, 0);
  assert.equal(t.find(heapB + 16), 0, 'start pointer');
  assert.equal(t.find(heapB + 16 + 39), 0, 'interior: the last byte of the usable part (48 - 8 = 40 bytes)');
  assert.equal(t.find(heapB + 16 + 40), -1, "the next chunk's size field belongs to no block");
  assert.equal(t.find(heapB + 16 + 3 * 48 + 8), -1, 'inside the freed chunk');
  assert.equal(t.find(heapA + 16 + 9 * 48 + 20), t.indexOf(heapA + 16 + 9 * 48));
  assert.equal(t.find(mm + 16 + (1 << 20) - 17), t.indexOf(mm + 16), 'mmapped: usable = size - 16');
  assert.equal(t.find(mm + 16 + (1 << 20) - 16), -1);
  assert.equal(t.find(heapA - 4096), -1, 'between regions');
  assert.equal(t.find(0x1000), -1);
  assert.equal(t.end(0), heapB + 16 + 40);
});
