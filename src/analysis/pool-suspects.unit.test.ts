// samePool / stableSuspects on pools built by hand: a pool is confirmed by an earlier read only
// when it continues that read's pool (same address and size, grown or untouched, the bytes the
// earlier read saw unchanged), never because a new pool took over the freed chunk.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NginxPool, PoolAnalysis } from '../nginx/index.js';
import { samePool, stableSuspects } from './pool-suspects.js';

function pool(o: { used?: number; bytes?: number[]; blocks?: number; cleanups?: number; owner?: NginxPool['owner'] }): NginxPool {
  const addr = 0x5600_0000_1000;
  const used = o.used ?? 200;
  return {
    address: addr,
    size: 4096,
    blocks: Array.from({ length: o.blocks ?? 1 }, (_, i) => ({
      address: addr + i * 0x2000,
      size: 4096,
      used: i === 0 ? used : 64,
      chunkSize: 4112,
    })),
    large: [],
    cleanups: Array.from({ length: o.cleanups ?? 0 }, () => ({
      handler: 0x1234,
      function: null,
      object: '',
      offset: 0,
      module: null,
      data: 0,
    })),
    blockBytes: 4112,
    usedBytes: used,
    largeBytes: 0,
    bytes: 4112,
    foundBy: 'scan',
    owner: o.owner ?? 'unreferenced',
    module: null,
    creator: null,
    referencedFrom: null,
    references: [],
    firstBytes: o.bytes ? Uint8Array.from(o.bytes) : null,
  };
}

const analysis = (pools: NginxPool[]) => ({ pools }) as unknown as PoolAnalysis;

test('a pool untouched between reads is the same pool', () => {
  assert.equal(samePool(pool({ bytes: [1, 2, 3] }), pool({ bytes: [1, 2, 3] })), true);
});

test('a pool that grew past what the earlier read saw, earlier bytes unchanged, is the same pool', () => {
  assert.equal(samePool(pool({ used: 120, bytes: [1, 2] }), pool({ used: 400, bytes: [1, 2, 9, 9], cleanups: 1 })), true);
  assert.equal(samePool(pool({ bytes: [1, 2] }), pool({ bytes: [1, 2], blocks: 2 })), true);
});

test('a new pool in the reused chunk (other bytes at the same address, same size) is not', () => {
  assert.equal(samePool(pool({ bytes: [1, 2, 3] }), pool({ bytes: [1, 2, 4] })), false);
});

test('a pool whose d.last went down, or lost blocks or cleanups, or was not read, is not', () => {
  assert.equal(samePool(pool({ used: 300, bytes: [1] }), pool({ used: 200, bytes: [1] })), false);
  assert.equal(samePool(pool({ blocks: 2, bytes: [1] }), pool({ bytes: [1] })), false);
  assert.equal(samePool(pool({ cleanups: 2, bytes: [1] }), pool({ cleanups: 1, bytes: [1] })), false);
  assert.equal(samePool(pool({ bytes: [1, 2] }), pool({ bytes: [1] })), false);
  assert.equal(samePool(pool({}), pool({})), false);
});

test('stableSuspects counts a reused address as transient, an untouched pool as stable, lifecycle owners never', () => {
  const reused = stableSuspects(analysis([pool({ bytes: [5, 6] })]), analysis([pool({ bytes: [7, 8] })]));
  assert.deepEqual([reused.pools.length, reused.transient], [0, 1]);
  const leaked = stableSuspects(analysis([pool({ bytes: [5, 6] })]), analysis([pool({ bytes: [5, 6] })]));
  assert.deepEqual([leaked.pools.length, leaked.transient, leaked.bytes], [1, 0, 4112]);
  const request = stableSuspects(analysis([pool({ owner: 'request' })]), analysis([pool({ owner: 'request' })]));
  assert.deepEqual([request.pools.length, request.transient], [0, 0]);
  const frozen = stableSuspects(analysis([pool({ bytes: [1] })]), 'frozen');
  assert.equal(frozen.pools.length, 1);
  assert.equal(stableSuspects(analysis([pool({ bytes: [1] })]), null).pools.length, 0);
});
