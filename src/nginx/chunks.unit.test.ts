// ChunkList, the in-use chunk store without a record per chunk: bitmaps of chunk starts / ends in
// 1 MiB pages, the mmapped chunks and pool candidates listed; built in walk order (heaps in any
// order, free-list chunks dropped afterwards).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkList, POOL_HINT } from './chunks.js';

test('chunk list: heaps in any order, far apart, gaps, chunks across pages, dropped free-list chunks, huge sizes', () => {
  const heapA = 0x5555_5555_0000 + 0x10; // brk heap
  const heapB = 0x7f00_0000_0000 + 0x10; // a thread heap, walked first
  const mm = 0x7f10_0000_0000 + 0x10; // mmapped chunks
  const expect: Array<[number, number, boolean, number]> = [];
  const l = new ChunkList();
  const add = (a: number, s: number, m: boolean, h: number) => {
    l.push(a, s, m, h, h === POOL_HINT.yes ? new Uint8Array([a & 0xff]) : undefined);
    expect.push([a, s, m, h]);
  };
  for (let i = 0; i < 100; i++) add(heapB + i * 48, 48, false, i % 3 === 0 ? POOL_HINT.yes : POOL_HINT.no);
  // heapA: in-use chunks with free chunks between some of them, one of 3 MiB (across pages), one
  // ending exactly at a page boundary, then the top.
  let a = heapA;
  for (let i = 0; i < 100; i++) {
    const size = i === 50 ? 3 << 20 : 64;
    add(a, size, false, POOL_HINT.unknown);
    a += size + (i % 7 === 0 ? 4096 : 0);
  }
  const pageEnd = Math.ceil(a / 2 ** 20) * 2 ** 20 + 16 - 256; // a chunk of 256 ends at the next page's first user pointer
  add(pageEnd, 256, false, POOL_HINT.no);
  add(pageEnd + 256, 32, false, POOL_HINT.no);
  add(mm, 2 ** 37, true, POOL_HINT.unknown); // 128 GiB
  add(mm + 2 ** 37 + 4096, 8192, true, POOL_HINT.unknown);
  const freed = [heapB, heapB + 48 * 3, heapA + 64 * 99, mm, heapA + 64 + 4096]; // mm: mmapped chunks are never dropped
  l.finish(Float64Array.from(freed));
  const want = expect.filter(([x, , m]) => m || !freed.includes(x)).sort((x, y) => x[0] - y[0]);
  assert.equal(l.length, want.length);
  const seen: Array<[number, number, boolean, boolean | undefined, number | undefined]> = [];
  l.forEach((x, s, m, c, b) => {
    seen.push([x, s, m, c, b?.[0]]);
  });
  assert.deepEqual(
    seen,
    want.map(([x, s, m, h]) => [
      x,
      s,
      m,
      h === POOL_HINT.no ? false : h === POOL_HINT.yes ? true : undefined,
      h === POOL_HINT.yes ? x & 0xff : undefined,
    ]),
  );
  for (const [x, s, m] of want) {
    assert.equal(l.sizeOf(x), s, `size of 0x${x.toString(16)}`);
    assert.equal(l.isMmapped(x), m);
    assert.equal(l.sizeOf(x + 16), undefined);
  }
  for (const x of freed) if (x !== mm) assert.equal(l.sizeOf(x), undefined, 'dropped');
  assert.equal(l.sizeOf(heapA - 16), undefined);
  const cands: number[] = [];
  l.forEachCandidate((x, s, m, b) => {
    cands.push(x);
    const w = want.find((y) => y[0] === x)!;
    assert.deepEqual([s, m, b?.[0]], [w[1], w[2], w[3] === POOL_HINT.yes ? x & 0xff : undefined]);
  });
  assert.deepEqual(
    cands,
    want.filter((w) => w[3] !== POOL_HINT.no).map((w) => w[0]),
  );
});

test('chunk list from objects: sorted by address, hints from poolCandidate', () => {
  const l = new ChunkList([
    { userAddr: 0x2010, chunkSize: 32, poolCandidate: true },
    { userAddr: 0x1010, chunkSize: 64 },
    { userAddr: 0x7000_0010, chunkSize: 4096, mmapped: true, poolCandidate: false },
  ]);
  const seen: unknown[] = [];
  l.forEach((a, s, m, c) => {
    seen.push([a, s, m, c]);
  });
  assert.deepEqual(seen, [
    [0x1010, 64, false, undefined],
    [0x2010, 32, false, true],
    [0x7000_0010, 4096, true, false],
  ]);
});
