// readSlabPool on zone images built here the way ngx_slab_init (nginx src/core/ngx_slab.c) lays a
// zone out, then allocated from by hand (free runs split), and on hostile variants: a free list
// that loops, points outside the page array or claims more pages than exist; a header of another
// build; bytes that are no slab pool at all. Every answer is bounded and says what did not add up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ImageSpace } from '../target/test-image-space.js';
import { readSlabPool, SLAB_PAGE, SLAB_POOL_LAYOUTS, SLAB_STAT } from './slab.js';
import type { SlabPoolLayout } from './slab.js';

const BASE = 0x7f00_0000_0000;
const PAGE = 4096;

/** A zone of `size` bytes after ngx_slab_init (min_shift 3): one free run of every page. */
function zone(size: number, L: SlabPoolLayout = SLAB_POOL_LAYOUTS[0]!) {
  const b = Buffer.alloc(size);
  const put = (off: number, v: number) => b.writeBigUInt64LE(BigInt(v), off);
  const get = (off: number) => Number(b.readBigUInt64LE(off));
  const n = 12 - 3;
  const slots = L.sizeof;
  const stats = slots + n * SLAB_PAGE.sizeof;
  const pagesOff = stats + n * SLAB_STAT.sizeof;
  let pages = Math.floor((size - slots - n * (SLAB_PAGE.sizeof + SLAB_STAT.sizeof)) / (PAGE + SLAB_PAGE.sizeof));
  const start = Math.ceil((BASE + pagesOff + pages * SLAB_PAGE.sizeof) / PAGE) * PAGE;
  const m = pages - Math.floor((BASE + size - start) / PAGE);
  if (m > 0) pages -= m;
  put(L.min_shift, 3);
  put(L.pages, BASE + pagesOff);
  put(L.last, BASE + pagesOff + pages * SLAB_PAGE.sizeof);
  put(L.free + SLAB_PAGE.next, BASE + pagesOff);
  put(L.stats, BASE + stats);
  put(L.pfree, pages);
  put(L.start, start);
  put(L.end, BASE + size);
  put(L.addr, BASE);
  put(pagesOff + SLAB_PAGE.slab, pages);
  put(pagesOff + SLAB_PAGE.next, BASE + L.free);
  const page = (i: number) => pagesOff + i * SLAB_PAGE.sizeof;
  return { b, put, get, L, pages, page, pagesOff, stats, space: new ImageSpace(BASE, b, 'zone image') };
}

test('a fresh zone: every page free, one run, the free list agrees with pfree', () => {
  const z = zone(1 << 20);
  const s = readSlabPool(z.space, BASE, 1 << 20);
  assert.ok(typeof s !== 'string', String(s));
  assert.equal(s.layout, 'posix-sem');
  assert.equal(s.pages, z.pages);
  assert.ok(s.pages >= 250 && s.pages <= 256, `${s.pages}`);
  assert.deepEqual([s.freePages, s.usedPages, s.freeListPages, s.freeListRuns], [z.pages, 0, z.pages, 1]);
  assert.deepEqual(s.slots, []);
  assert.deepEqual(s.problems, []);
});

test('pages allocated from the front and the middle: two free runs, used = pages - pfree, slot stats', () => {
  const z = zone(1 << 20);
  // pages 0-9 used; run A = pages 10-99 (90), 100-119 used, run B = 120-end
  const runA = 90,
    runB = z.pages - 120;
  z.put(z.page(10) + SLAB_PAGE.slab, runA);
  z.put(z.page(10) + SLAB_PAGE.next, BASE + z.pagesOff + 120 * SLAB_PAGE.sizeof);
  z.put(z.page(120) + SLAB_PAGE.slab, runB);
  z.put(z.page(120) + SLAB_PAGE.next, BASE + z.L.free);
  z.put(z.page(0) + SLAB_PAGE.slab, 0);
  z.put(z.L.free + SLAB_PAGE.next, BASE + z.pagesOff + 10 * SLAB_PAGE.sizeof);
  z.put(z.L.pfree, runA + runB);
  // slot 5 (256-byte chunks): 16 chunks in one page, 7 used, 9 requests
  z.put(z.stats + 5 * SLAB_STAT.sizeof + SLAB_STAT.total, 16);
  z.put(z.stats + 5 * SLAB_STAT.sizeof + SLAB_STAT.used, 7);
  z.put(z.stats + 5 * SLAB_STAT.sizeof + SLAB_STAT.reqs, 9);
  const s = readSlabPool(z.space, BASE, 1 << 20);
  assert.ok(typeof s !== 'string', String(s));
  assert.deepEqual([s.freePages, s.usedPages, s.freeListPages, s.freeListRuns], [runA + runB, 30, runA + runB, 2]);
  assert.deepEqual(s.slots, [{ chunkBytes: 256, total: 16, used: 7, reqs: 9, fails: 0 }]);
  assert.deepEqual(s.problems, []);
});

test('the build without POSIX semaphores is recognised by its own header', () => {
  const L = SLAB_POOL_LAYOUTS.find((l) => l.name === 'no-posix-sem')!;
  const z = zone(256 << 10, L);
  const s = readSlabPool(z.space, BASE, 256 << 10);
  assert.ok(typeof s !== 'string', String(s));
  assert.equal(s.layout, 'no-posix-sem');
  assert.equal(s.freePages, z.pages);
});

test('hostile free lists: a loop, a pointer outside the pages, runs past the end: reported, bounded', () => {
  const loop = zone(1 << 20);
  loop.put(loop.page(0) + SLAB_PAGE.slab, 1);
  loop.put(loop.page(0) + SLAB_PAGE.next, BASE + loop.pagesOff); // points at itself
  loop.put(loop.L.pfree, 1);
  const a = readSlabPool(loop.space, BASE, 1 << 20);
  assert.ok(typeof a !== 'string');
  assert.equal(a.freeListPages, null);
  assert.match(a.problems.join(), /loops at page 0/);

  const outside = zone(1 << 20);
  outside.put(outside.page(0) + SLAB_PAGE.next, BASE + 8); // into the header
  const b = readSlabPool(outside.space, BASE, 1 << 20);
  assert.ok(typeof b !== 'string');
  assert.equal(b.freeListPages, null);
  assert.match(b.problems.join(), /not a page descriptor/);

  const big = zone(1 << 20);
  big.put(big.page(0) + SLAB_PAGE.slab, 2 ** 40);
  const c = readSlabPool(big.space, BASE, 1 << 20);
  assert.ok(typeof c !== 'string');
  assert.match(c.problems.join(), /does not fit/);

  const moved = zone(1 << 20);
  moved.put(moved.L.pfree, 3); // the list and pfree disagree (changed while read)
  const d = readSlabPool(moved.space, BASE, 1 << 20);
  assert.ok(typeof d !== 'string');
  assert.equal(d.freePages, 3);
  assert.equal(d.freeListPages, moved.pages);
  assert.match(d.problems.join(), /pfree says 3/);
});

test('not a slab pool: wrong sp->addr, sp->end, misplaced arrays, pfree above the page count, unreadable', () => {
  for (const [what, edit] of [
    ['addr', (z: ReturnType<typeof zone>) => z.put(z.L.addr, BASE + PAGE)],
    ['end', (z: ReturnType<typeof zone>) => z.put(z.L.end, BASE + 10 * PAGE)],
    ['stats', (z: ReturnType<typeof zone>) => z.put(z.L.stats, BASE + 8)],
    ['pfree', (z: ReturnType<typeof zone>) => z.put(z.L.pfree, 1e9)],
    ['min_shift', (z: ReturnType<typeof zone>) => z.put(z.L.min_shift, 40)],
  ] as const) {
    const z = zone(1 << 20);
    edit(z);
    assert.equal(typeof readSlabPool(z.space, BASE, 1 << 20), 'string', what);
  }
  assert.match(String(readSlabPool(new ImageSpace(BASE, Buffer.alloc(64), 'zone image'), BASE, 1 << 20)), /unreadable/);
});
