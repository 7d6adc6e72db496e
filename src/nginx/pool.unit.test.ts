// readPool over a memory image laid out as nginx's ngx_palloc.c lays pools out (two blocks,
// large allocations, a cleanup), and reentrancy: a read started while another is in progress
// (from inside the first one's memory read) gives both the same results as reads one after another.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ImageSpace } from '../target/test-image-space.js';
import { ChunkList } from './chunks.js';
import { POOL, POOL_CLEANUP, POOL_LARGE, PoolReader, readPool, request2size } from './pool.js';
import type { PoolInconsistency, PoolRead } from './pool.js';

const BASE = 0x5555_0000_0000;
const SIZE = 1024;
const CHUNK = request2size(SIZE);
const LOG = 0x5555_0010_0000;

/** Writes a pool at user pointer `p` (chunk at p - 16) with a second block at `b2`, two large allocations and one cleanup. */
function writePool(img: Buffer, p: number, b2: number, large: [number, number], handler: number): void {
  const u64 = (addr: number, v: number) => img.writeBigUInt64LE(BigInt(v), addr - BASE);
  const l1 = p + POOL.sizeof,
    l2 = l1 + POOL_LARGE.sizeof,
    c1 = l2 + POOL_LARGE.sizeof;
  u64(p + POOL.last, c1 + POOL_CLEANUP.sizeof);
  u64(p + POOL.end, p + SIZE);
  u64(p + POOL.next, b2);
  u64(p + POOL.failed, 0);
  u64(p + POOL.max, Math.min(SIZE - POOL.sizeof, 4095));
  u64(p + POOL.current, p);
  u64(p + POOL.chain, 0);
  u64(p + POOL.large, l1);
  u64(p + POOL.cleanup, c1);
  u64(p + POOL.log, LOG);
  u64(l1 + POOL_LARGE.next, l2);
  u64(l1 + POOL_LARGE.alloc, large[0]);
  u64(l2 + POOL_LARGE.next, 0);
  u64(l2 + POOL_LARGE.alloc, large[1]);
  u64(c1 + POOL_CLEANUP.handler, handler);
  u64(c1 + POOL_CLEANUP.data, 0x1234);
  u64(c1 + POOL_CLEANUP.next, 0);
  // second block: ngx_pool_data_t only
  u64(b2 + 0, b2 + 32 + 200);
  u64(b2 + 8, b2 + SIZE);
  u64(b2 + 16, 0);
  u64(b2 + 24, 1);
}

function image() {
  const img = Buffer.alloc(64 * 1024);
  const at = (k: number) => BASE + 16 + k * 0x2000; // chunks do not overlap (the largest is 4112 bytes)
  const pools = [
    { p: at(0), b2: at(1), large: [at(2), at(3)] as [number, number], handler: 0x5555_0000_9000 },
    { p: at(4), b2: at(5), large: [at(6), at(7)] as [number, number], handler: 0x5555_0000_9100 },
  ];
  for (const x of pools) writePool(img, x.p, x.b2, x.large, x.handler);
  const chunks = new ChunkList(
    pools.flatMap((x) => [
      { userAddr: x.p, chunkSize: CHUNK },
      { userAddr: x.b2, chunkSize: CHUNK },
      { userAddr: x.large[0], chunkSize: 4112 },
      { userAddr: x.large[1], chunkSize: 2064 },
    ]),
  );
  return { space: new ImageSpace(BASE, img, 'pool image'), chunks, pools };
}

function check(r: PoolRead | string, x: ReturnType<typeof image>['pools'][number]): void {
  assert.notEqual(typeof r, 'string', String(r));
  const pool = r as PoolRead;
  assert.equal(pool.address, x.p);
  assert.equal(pool.size, SIZE);
  assert.deepEqual(
    pool.blocks.map((b) => [b.address, b.chunkSize]),
    [
      [x.p, CHUNK],
      [x.b2, CHUNK],
    ],
  );
  assert.deepEqual(pool.large, [
    { address: x.large[0], chunkSize: 4112 },
    { address: x.large[1], chunkSize: 2064 },
  ]);
  assert.deepEqual(
    pool.cleanups.map((c) => [c.handler, c.data]),
    [[x.handler, 0x1234]],
  );
}

test('readPool: blocks, large allocations and cleanups of a pool laid out as ngx_palloc.c does', () => {
  const { space, chunks, pools } = image();
  const problems: PoolInconsistency[] = [];
  for (const x of pools) check(readPool(space, x.p, chunks, problems), x);
  assert.deepEqual(problems, []);
  assert.match(String(readPool(space, pools[0]!.b2, chunks, problems)), /signature/);
  const reader = new PoolReader();
  for (let i = 0; i < 3; i++) for (const x of pools) check(reader.read(space, x.p, chunks, problems), x);
});

test('readPool is reentrant: a read started inside another read changes neither result', () => {
  const { space, chunks, pools } = image();
  const problems: PoolInconsistency[] = [];
  let inner: PoolRead | string | undefined;
  // Right after the outer read has read its second block's header, a read of the other pool
  // runs (as a second analysis running in a callback would); with scratch shared between calls,
  // the outer read would then parse the inner pool's bytes as its own block.
  space.after = {
    addr: pools[0]!.b2,
    run: () => {
      inner = readPool(space, pools[1]!.p, chunks, problems);
    },
  };
  const outer = readPool(space, pools[0]!.p, chunks, problems);
  assert.ok(inner, 'the inner read ran');
  check(outer, pools[0]!);
  check(inner, pools[1]!);
  assert.deepEqual(problems, []);
});
