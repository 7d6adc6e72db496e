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

test('chunk table: addresses summed from sizes and gaps (large chunks, free runs, freed chunks in one run)', () => {
  // One heap walked upwards: sizes from 32 bytes to 64 KiB (4080 and up are listed apart), free
  // gaps between some chunks, three chunks found on a free list afterwards (compacted in place).
  const heap = 0x55aa00000000;
  const chunks: { user: number; size: number }[] = [];
  let p = heap + 16;
  for (let i = 0; i < 500; i++) {
    const size = i % 37 === 5 ? 65536 : i % 11 === 3 ? 4080 : 32 + 16 * ((i * 7) % 40);
    chunks.push({ user: p, size });
    p += size + (i % 13 === 0 ? 48 * ((i % 5) + 1) : 0); // a free chunk after some
  }
  const t = new ChunkTable(8);
  for (const c of chunks) t.push(c.user, c.size, false);
  const freed = [chunks[0]!, chunks[77]!, chunks[499]!];
  for (const f of freed) t.freed.push(f.user);
  t.finish();
  const kept = chunks.filter((c) => !freed.includes(c));
  assert.equal(t.n, kept.length);
  // In order, backwards, and at random: the same addresses and sizes.
  for (let i = 0; i < kept.length; i++) assert.equal(t.address(i), kept[i]!.user, `address ${i}`);
  for (let i = kept.length - 1; i >= 0; i--) assert.equal(t.size(i), kept[i]!.size, `size ${i}`);
  for (const i of [400, 3, 250, 251, 249, 0, 496, 64, 31, 32, 33]) {
    assert.equal(t.address(i), kept[i]!.user, `address ${i} (random)`);
    assert.equal(t.end(i), kept[i]!.user + kept[i]!.size - 8, `end ${i}`);
  }
  for (let i = 0; i < kept.length; i += 7) {
    const c = kept[i]!;
    assert.equal(t.indexOf(c.user), i, `start ${i}`);
    assert.equal(t.find(c.user + c.size - 9), i, `last usable byte ${i}`);
  }
  for (const f of freed) assert.equal(t.find(f.user), -1, 'a freed chunk is no block');
  assert.equal(t.find(chunks[13]!.user + chunks[13]!.size + 8), -1, 'inside a free gap');
});
