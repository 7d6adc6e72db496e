// Reachability against ground truth: valgrind's own report on its memcheck leak tests, the
// reach-known fixture's own classes (three arenas, stacks, TLS, mmapped chunks), and a churning
// heap (no stable lost chunk the program still holds).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreFile, LiveProcess } from '../target/index.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { startFixture, type ChurnTruth } from '../../test/helpers/fixture.js';
import { ensureValgrindTests, PAUSE_AT_EXIT, valgrindLeakSummary } from '../../test/helpers/valgrind.js';
import { leakscope, sh } from '../../test/helpers/proc.js';
import { reachability, type ClassCount } from './index.js';

interface ReachKnownTruth {
  fixture: 'reach-known';
  pid: number;
  threads: number;
  lostGroups: number;
  classes: Record<
    'definitelyLost' | 'indirectlyLost' | 'possiblyLost' | 'reachable',
    { chunks: number; bytes: number }
  >;
}

for (const name of ['leak-cases', 'leak-tree', 'leak-cycle']) {
  test(`valgrind's memcheck/tests/${name}.c: same blocks per class as valgrind's own run`, async () => {
    await ensureValgrindTests();
    const vg = valgrindLeakSummary(name);
    const fx = await startFixture(`valgrind/${name}`, [], { env: { ...process.env, LD_PRELOAD: PAUSE_AT_EXIT } });
    try {
      const space = LiveProcess.open(fx.pid);
      const r = (await reachability(space)).reachability;
      space.close();
      const got = (c: ClassCount) => c.chunks;
      assert.deepEqual(
        {
          definitelyLost: got(r.definitelyLost),
          indirectlyLost: got(r.indirectlyLost),
          possiblyLost: got(r.possiblyLost),
          reachable: got(r.reachable),
          unknown: r.unknown.chunks,
        },
        {
          definitelyLost: vg.definitelyLost.blocks,
          indirectlyLost: vg.indirectlyLost.blocks,
          possiblyLost: vg.possiblyLost.blocks,
          reachable: vg.stillReachable.blocks,
          unknown: 0,
        },
        `valgrind: ${JSON.stringify(vg)}`,
      );
      // One definitely lost leader per unreferenced group (leak-cycle: 4 groups of 3, 3, 6, 6 blocks).
      assert.equal(
        r.largestLost.filter((c) => c.class === 'definitelyLost').length,
        Math.min(10, vg.definitelyLost.blocks),
      );
      assert.equal(r.allocator.chunks, 1, "the main thread's tcache_perthread_struct is glibc's, not classified");
    } finally {
      await fx.stop();
    }
  });
}

test('reach-known: exact classes over three arenas, thread stacks, TLS and mmapped chunks', async () => {
  await ensureFixturesBuilt();
  const fx = await startFixture<ReachKnownTruth>('reach-known');
  try {
    const space = LiveProcess.open(fx.pid);
    const r = (await reachability(space)).reachability;
    space.close();
    const k = fx.truth.classes;
    assert.deepEqual(r.definitelyLost, k.definitelyLost, 'definitely lost');
    assert.deepEqual(r.indirectlyLost, k.indirectlyLost, 'indirectly lost');
    // glibc's DTV of each created thread is pointed to 16 bytes in (elf/dl-tls.c allocate_dtv,
    // INSTALL_DTV): possibly lost, as valgrind reports it ("possibly lost ... in pthread_create").
    assert.equal(
      r.possiblyLost.chunks,
      k.possiblyLost.chunks + (fx.truth.threads - 1),
      "possibly lost: the fixture's + one DTV per thread",
    );
    assert.ok(
      r.reachable.chunks >= k.reachable.chunks && r.reachable.bytes >= k.reachable.bytes,
      `reachable ${JSON.stringify(r.reachable)} >= ${JSON.stringify(k.reachable)}`,
    );
    assert.ok(
      r.reachable.chunks <= k.reachable.chunks + 4,
      "beyond the fixture's only a few of libc's own chunks are reachable",
    );
    assert.equal(r.unknown.chunks, 0);
    assert.equal(r.allocator.chunks, fx.truth.threads, 'one tcache per thread');
    assert.equal(r.largestLost[0]!.chunkSize >= 1 << 20, true, 'the dropped 1 MiB mmapped chunk is the largest lost');
    assert.match(r.largestLost[0]!.ascii, /^B{16}/);
    const stacks = r.roots.filter((x) => x.kind === 'stack');
    assert.equal(stacks.length, fx.truth.threads, "every blocked thread's stack is scanned from its sp");
    // A tiny candidate / edge budget: most blocks' pointers are read again when the mark reaches
    // them (the path a huge heap takes); the classes stay the fixture's.
    const space2 = LiveProcess.open(fx.pid);
    const small = (await reachability(space2, { maxEdges: 64 })).reachability;
    space2.close();
    assert.equal(small.stats.edgesStored, false, 'the budget was exceeded');
    assert.deepEqual(small.definitelyLost, k.definitelyLost, 'definitely lost (small budget)');
    assert.deepEqual(small.indirectlyLost, k.indirectlyLost, 'indirectly lost (small budget)');
    assert.equal(small.possiblyLost.chunks, r.possiblyLost.chunks, 'possibly lost (small budget)');
    assert.equal(small.unknown.chunks, 0);
  } finally {
    await fx.stop();
  }
});

test('heap --reach --json: the reachability contract', async () => {
  await ensureFixturesBuilt();
  const fx = await startFixture<ReachKnownTruth>('reach-known');
  try {
    const r = leakscope(['heap', String(fx.pid), '--reach', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.schema, 'leakscope.heap/1');
    const x = doc.reachability;
    for (const k of ['definitelyLost', 'indirectlyLost', 'possiblyLost', 'reachable', 'unknown']) {
      assert.equal(typeof x[k].chunks, 'number', k);
      assert.equal(typeof x[k].bytes, 'number', k);
    }
    assert.ok(Array.isArray(x.buckets) && Array.isArray(x.roots));
    assert.deepEqual(x.definitelyLost, fx.truth.classes.definitelyLost);
    // Buckets add up to the classes.
    const sum = (k: string) => x.buckets.reduce((n: number, b: Record<string, ClassCount>) => n + b[k]!.bytes, 0);
    assert.equal(sum('definitelyLost'), x.definitelyLost.bytes);
    const text = leakscope(['heap', String(fx.pid), '--reach', '--scans', '1']);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /definitely lost\s+120/);
    assert.match(text.stdout, /registers are not read/);
  } finally {
    await fx.stop();
  }
});

test('churn: 20 scans in a row report no stable lost chunk the program still holds', async (t) => {
  await ensureFixturesBuilt();
  const fx = await startFixture<ChurnTruth>('churn', ['1', '4096']); // one churning thread: leaves leakscope a core
  try {
    const space = LiveProcess.open(fx.pid);
    let unknownSeen = 0;
    const possiblyExtra: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = (await reachability(space, { intervalMs: 50 })).reachability;
      // Every chunk churn allocates stays in its slots: none may be lost.
      assert.equal(
        r.definitelyLost.chunks,
        0,
        `scan ${i}: definitely lost ${JSON.stringify(r.largestLost.slice(0, 3))}`,
      );
      assert.equal(r.indirectlyLost.chunks, 0, `scan ${i}: indirectly lost`);
      // Possibly lost: glibc's DTV of the churning thread (pointed to 16 bytes in, as valgrind
      // reports it); rarely one more, a chunk reused at the same address and size while in flight
      // in both scans and met only by a stale interior pointer (reported, not hidden).
      if (r.possiblyLost.chunks > fx.truth.threads)
        possiblyExtra.push(`scan ${i}: ${r.possiblyLost.chunks} possibly lost`);
      assert.ok(r.possiblyLost.chunks <= fx.truth.threads + 1, `scan ${i}: ${r.possiblyLost.chunks} possibly lost`);
      // Every chunk is accounted for: chunks that changed during the scan are unknown, never lost.
      const classified =
        r.definitelyLost.chunks +
        r.indirectlyLost.chunks +
        r.possiblyLost.chunks +
        r.reachable.chunks +
        r.unknown.chunks +
        r.allocator.chunks;
      assert.equal(classified, r.stats.chunks, `scan ${i}`);
      assert.ok(r.reachable.chunks >= 1, `scan ${i}: the slots array is reachable`);
      unknownSeen += r.unknown.chunks;
    }
    space.close();
    assert.ok(unknownSeen > 0, 'a churning heap changes while it is read: some chunks are not classified');
    if (possiblyExtra.length) t.diagnostic(`possibly lost beyond the DTV: ${possiblyExtra.join('; ')}`);
    // Seen in 0-3 of 20 scans on a loaded 2-core machine (the heap is read at different moments);
    // a quarter of the scans would mean the in-flight explanation no longer holds.
    assert.ok(
      possiblyExtra.length <= 5,
      `possibly lost beyond the DTV in ${possiblyExtra.length} of 20 scans: ${possiblyExtra.join('; ')}`,
    );
  } finally {
    await fx.stop();
  }
});

test('reach-known from a gcore core file: the same classes (one scan, registers from the core)', async () => {
  await ensureFixturesBuilt();
  const fx = await startFixture<ReachKnownTruth>('reach-known');
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-reach-core-'));
  try {
    const g = sh('gcore', ['-o', join(dir, 'core'), String(fx.pid)]);
    assert.equal(g.status, 0, g.stderr);
    const core = CoreFile.open(join(dir, `core.${fx.pid}`));
    const r = (await reachability(core)).reachability;
    core.close();
    assert.equal(r.scans, 1);
    assert.deepEqual(r.definitelyLost, fx.truth.classes.definitelyLost);
    assert.deepEqual(r.indirectlyLost, fx.truth.classes.indirectlyLost);
    assert.equal(r.possiblyLost.chunks, fx.truth.classes.possiblyLost.chunks + (fx.truth.threads - 1));
    assert.ok(
      r.roots.some((x) => x.kind === 'registers'),
      "a core's registers are roots",
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await fx.stop();
  }
});
