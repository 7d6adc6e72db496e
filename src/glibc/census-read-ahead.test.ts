// The census of a heap big enough for the reader threads (target/read-ahead.ts: process_vm_readv,
// a ring of windows read ahead by two threads) against the fixture's own mallinfo2() and chunk
// counts, and against the census that reads every window in turn (readAhead: false).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveProcess } from '../target/index.js';
import { heapCensus, READ_AHEAD_MIN } from './census.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { type BigheapTruth, startFixture } from '../../test/helpers/fixture.js';

test('census with reader threads of glibc-bigheap (~110 MiB) agrees with its mallinfo2() and with the census read in turn', async () => {
  await ensureFixturesBuilt();
  const fx = await startFixture<BigheapTruth>('glibc-bigheap', ['500000', '50000'], { timeoutMs: 60_000 });
  try {
    const space = LiveProcess.open(fx.pid);
    const ahead = heapCensus(space, { topSizes: 100 });
    const inTurn = heapCensus(space, { topSizes: 100, readAhead: false });
    space.close();
    const t = fx.truth;
    const heapBytes = ahead.arenas.reduce((n, a) => n + a.heaps.reduce((m, h) => m + (h.end - h.start), 0), 0);
    assert.ok(heapBytes >= 2 * READ_AHEAD_MIN, `heaps of ${heapBytes} bytes are read ahead`);
    assert.equal(ahead.inconsistencyCount, 0);
    assert.ok(ahead.complete);
    assert.equal(ahead.totals.systemBytes, t.mallinfo2.arena, 'system bytes = mallinfo2.arena');
    const ofSize = ahead.topSizes.find((x) => x.size === t.chunkSize)?.count ?? 0;
    assert.equal(ofSize, t.mainChunks + 2 * t.threadChunks - t.freed, 'in-use chunks of the pattern size');
    // bytesRead differs: windows read ahead overlap by a page, windows read in turn start at the chunk's page.
    const strip = (c: typeof ahead) => ({ ...c, stats: { ...c.stats, elapsedMs: 0, bytesRead: 0 } });
    assert.deepEqual(strip(ahead), strip(inTurn), 'the same census read ahead and in turn');
  } finally {
    await fx.stop();
  }
});
