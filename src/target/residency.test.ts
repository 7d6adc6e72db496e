// Reading must not change what residency reports, and every census sees fresh maps.
// Ground truth: the fixture's own allocation (64 MiB malloc'd, one page written) and smaps'
// Rss (which does not count the shared zero page); the growth-cases fixture's own counter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { LiveProcess } from './index.js';
import { startFixture } from '../../test/helpers/fixture.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { heapCensus, compareCensus } from '../glibc/index.js';

interface GrowthCasesTruth {
  pid: number;
  mode: string;
  leakBytesPerSecond: number;
  untouchedAddress: number;
}

function smapsRss(pid: number, addr: number): number {
  const lines = readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(lines[i]!);
    if (!m || addr < parseInt(m[1]!, 16) || addr >= parseInt(m[2]!, 16)) continue;
    for (let j = i + 1; j < lines.length; j++) {
      const r = /^Rss:\s+(\d+) kB/.exec(lines[j]!);
      if (r) return Number(r[1]) * 1024;
    }
  }
  throw new Error(`no mapping holds 0x${addr.toString(16)}`);
}

test('residency: reading never-touched pages through /proc/PID/mem does not make them resident (zero page excluded)', async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root: pagemap PFNs and /proc/kpageflags');
    return;
  }
  await ensureFixturesBuilt();
  const fx = await startFixture<GrowthCasesTruth>('growth-cases', ['untouched']);
  const space = LiveProcess.open(fx.pid);
  try {
    const addr = fx.truth.untouchedAddress;
    const size = 64 << 20;
    const before = space.residentBytes(addr, addr + size).rss;
    assert.ok(before <= 4 * 4096, `one page written, ${before} bytes resident`);
    // Read all of it, as a pool / pointer scan would.
    const buf = Buffer.alloc(1 << 20);
    for (let off = 0; off < size; off += buf.length)
      assert.equal(space.readInto(addr + off, buf, 0, buf.length), buf.length);
    const rssAfter = smapsRss(fx.pid, addr);
    const after = space.residentBytes(addr, addr + size).rss;
    assert.ok(rssAfter <= 4 * 4096, `smaps Rss stays small: ${rssAfter}`);
    assert.ok(
      after <= before + 4096,
      `pagemap residency after reading 64 MiB: ${after} (was ${before}); smaps says ${rssAfter}`,
    );
  } finally {
    space.close();
    await fx.stop();
  }
});

test('census: mmapped chunks created after the process was opened are seen (fresh maps per census)', async () => {
  await ensureFixturesBuilt();
  const fx = await startFixture<GrowthCasesTruth>('growth-cases', ['mmap-leak']);
  const space = LiveProcess.open(fx.pid);
  try {
    const a = heapCensus(space);
    const s0 = await fx.command<{ leakedBytes: number }>('status');
    await new Promise((r) => setTimeout(r, 1500));
    const s1 = await fx.command<{ leakedBytes: number }>('status');
    const b = heapCensus(space);
    const grew = s1.leakedBytes - s0.leakedBytes;
    const cmp = compareCensus(a, b);
    const mmappedGrowth = b.totals.mmappedBytes - a.totals.mmappedBytes;
    // The fixture's own counter says how much it leaked between the two status lines; the censuses
    // were taken just outside them, so they must see at least that much (up to one 20 ms step less).
    assert.ok(mmappedGrowth >= grew - 2 * 307200, `census mmapped growth ${mmappedGrowth} vs fixture's ${grew}`);
    const bucket = cmp.buckets.find((x) => x.minBytes === 256 * 1024)!;
    assert.ok(bucket && bucket.inUseBytes >= grew - 2 * 307200, JSON.stringify(bucket));
  } finally {
    space.close();
    await fx.stop();
  }
});
