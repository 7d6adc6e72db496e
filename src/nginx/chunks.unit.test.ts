// ChunkList, the columnar in-use chunk store: addresses as u32 offsets in regions, sizes / 16,
// flags; built in walk order (heaps in any order, free-list chunks dropped afterwards).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkList, POOL_HINT } from './chunks.js';

test('chunk list: regions in any order, far apart, dropped free-list chunks, lookups, huge sizes', () => {
  const heapA = 0x5555_5555_0000 + 0x10; // brk heap
  const heapB = 0x7f00_0000_0000 + 0x10; // a thread heap, walked first
  const mm = 0x7f10_0000_0000 + 0x10; // mmapped chunks, more than 64 GiB above heapB
  const expect: Array<[number, number, boolean, number]> = [];
  const l = new ChunkList(undefined, 4);
  const add = (a: number, s: number, m: boolean, h: number) => {
    l.push(a, s, m, h, h === POOL_HINT.yes ? new Uint8Array([a & 0xff]) : undefined);
    expect.push([a, s, m, h]);
  };
  for (let i = 0; i < 100; i++) add(heapB + i * 48, 48, false, i % 3 === 0 ? POOL_HINT.yes : POOL_HINT.no);
  for (let i = 0; i < 100; i++) add(heapA + i * 64, 64, false, POOL_HINT.unknown);
  add(mm, 2 ** 37, true, POOL_HINT.unknown); // 128 GiB: beyond a u32 of size / 16
  add(mm + 2 ** 37 + 4096, 8192, true, POOL_HINT.unknown);
  const freed = [heapB, heapB + 48 * 3, heapA + 64 * 99, mm]; // mm: mmapped chunks are never dropped
  l.finish(Float64Array.from(freed));
  const want = expect.filter(([a, , m]) => m || !freed.includes(a)).sort((x, y) => x[0] - y[0]);
  assert.equal(l.length, want.length);
  want.forEach(([a, s, m, h], i) => {
    assert.equal(l.addrAt(i), a, `address ${i}`);
    assert.equal(l.sizeAt(i), s, `size ${i}`);
    assert.equal(l.isMmapped(i), m);
    assert.equal(l.hintAt(i), h);
    assert.equal(l.indexOf(a), i);
    assert.equal(l.sizeOf(a), s);
    assert.equal(l.indexOf(a + 16), -1);
    if (h === POOL_HINT.yes) assert.equal(l.bytesOf(i)![0], a & 0xff);
    else assert.equal(l.bytesOf(i), undefined);
  });
  assert.equal(l.indexOf(heapB), -1, 'dropped');
  assert.equal(l.floor(heapA - 16), -1);
  assert.equal(l.floor(heapB + 1), l.indexOf(heapA + 98 * 64), 'heapB itself was dropped: the brk heap last chunk');
  assert.equal(l.floor(heapB + 48 + 5), l.indexOf(heapB + 48));
  assert.equal(l.floor(mm - 1), l.indexOf(heapB + 99 * 48));
  const seen: number[] = [];
  l.forEach((a) => {
    seen.push(a);
  });
  assert.deepEqual(
    seen,
    want.map((w) => w[0]),
  );
});

test('chunk list from objects: sorted by address, hints from poolCandidate', () => {
  const l = new ChunkList([
    { userAddr: 0x2010, chunkSize: 32, poolCandidate: true },
    { userAddr: 0x1010, chunkSize: 64 },
    { userAddr: 0x7000_0010, chunkSize: 4096, mmapped: true, poolCandidate: false },
  ]);
  assert.deepEqual(
    [0, 1, 2].map((i) => [l.addrAt(i), l.sizeAt(i), l.isMmapped(i), l.hintAt(i)]),
    [
      [0x1010, 64, false, POOL_HINT.unknown],
      [0x2010, 32, false, POOL_HINT.yes],
      [0x7000_0010, 4096, true, POOL_HINT.no],
    ],
  );
});
