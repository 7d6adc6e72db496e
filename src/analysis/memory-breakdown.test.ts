// `leakscope mem` against ground truth: a fixture that knows how much glibc memory it holds
// (and touched), the same figures from a gcore of it, and a real nginx leaking through a module.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFixture } from '../../test/helpers/fixture.js';
import { startNginx, driveRequests } from '../../test/helpers/nginx.js';
import { CoreFile, LiveProcess } from '../target/index.js';
import type { AddressSpace } from '../target/index.js';
import { Symbolizer } from '../symbols/index.js';
import { memoryBreakdown } from './memory-breakdown.js';
import { breakdownInputsFor } from './breakdown-inputs.js';
import { sh } from '../../test/helpers/proc.js';
import type { MemBreakdown, MemCategoryName } from '../model/index.js';

function breakdown(space: AddressSpace): MemBreakdown {
  return memoryBreakdown(space, breakdownInputsFor(space, new Symbolizer(space.modules())));
}
const rss = (b: MemBreakdown, n: MemCategoryName) => b.categories.find((c) => c.name === n)!.rssBytes;
function within(actual: number, expected: number, ratio: number, what: string) {
  assert.ok(
    Math.abs(actual - expected) <= expected * ratio,
    `${what}: ${actual} vs expected ${expected} (±${ratio * 100}%)`,
  );
}

test('mem on a fixture with known glibc memory: each glibc category within 2% of what it holds', async () => {
  const fx = await startFixture('mem-known');
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-mem-'));
  try {
    const t = fx.truth;
    const live = LiveProcess.open(fx.pid);
    const b = breakdown(live);
    live.close();
    // The fixture touched every byte it allocated, so chunk bytes are resident.
    within(rss(b, 'glibc-main-heap'), t.mainHeap.chunkBytes, 0.02, 'main heap');
    within(rss(b, 'glibc-thread-arenas'), t.threadArena.chunkBytes, 0.02, 'thread arena');
    within(rss(b, 'glibc-mmapped-chunks'), t.mmapped.chunkBytes, 0.02, 'mmapped chunks');
    assert.equal(
      b.categories.find((c) => c.name === 'glibc-mmapped-chunks')!.mappings,
      t.mmapped.count,
      'one region per mmapped chunk',
    );
    // glibc's own view: arena (sum of system_mem) + hblkhd
    const glibcRss = rss(b, 'glibc-main-heap') + rss(b, 'glibc-thread-arenas') + rss(b, 'glibc-mmapped-chunks');
    within(glibcRss, t.mallinfo2.arena + t.mallinfo2.hblkhd, 0.02, 'glibc total vs mallinfo2 arena + hblkhd');
    assert.ok(b.glibcShare > 0.9, `glibc share ${b.glibcShare}`);

    // The same figures from a core file of the same process.
    const r = sh('gcore', ['-o', join(dir, 'core'), String(fx.pid)]);
    assert.equal(r.status, 0, r.stderr);
    const core = CoreFile.open(join(dir, `core.${fx.pid}`));
    const c = breakdown(core);
    core.close();
    for (const n of ['glibc-main-heap', 'glibc-thread-arenas', 'glibc-mmapped-chunks'] as const) {
      within(rss(c, n), rss(b, n), 0.02, `core ${n}`);
    }
  } finally {
    await fx.stop();
  }
});

test("mem on real nginx: glibc share grows with the leaking module's requests", async () => {
  const ngx = await startNginx({ workers: 1 });
  try {
    const [worker] = ngx.workerPids();
    await driveRequests(ngx, '/ok', 20, 4);
    const before = breakdown(LiveProcess.open(worker!));
    const N = 60;
    const res = await driveRequests(ngx, '/leak-keep', N, 4);
    assert.equal(res.ok, N);
    const after = breakdown(LiveProcess.open(worker!));
    const glibc = (b: MemBreakdown) =>
      rss(b, 'glibc-main-heap') + rss(b, 'glibc-thread-arenas') + rss(b, 'glibc-mmapped-chunks');
    const grown = glibc(after) - glibc(before);
    const leaked = N * 300 * 1024; // leak_size 300k, touched
    assert.ok(grown >= leaked * 0.95 && grown <= leaked * 1.3, `glibc RSS grew ${grown}, leaked ${leaked}`);
    assert.ok(after.glibcShare > before.glibcShare, `share ${before.glibcShare} -> ${after.glibcShare}`);
    const shm = after.categories.find((c) => c.name === 'nginx-shm')!;
    assert.ok(
      shm.top.some((r) => r.label.includes('leakscope_zone')),
      `shm zones: ${shm.top.map((r) => r.label)}`,
    );
  } finally {
    await ngx.stop();
  }
});
