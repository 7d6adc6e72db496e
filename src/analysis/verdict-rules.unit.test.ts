// The verdict vocabulary (verdict.ts), one table row per rule: findings in, verdict out.
// Pure (unit tier): findings are built here as plain values; growth rates come from growth-rate.ts
// over series whose truth is known (a line of a known slope, churn around a constant).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AnalyzeBucketGrowth, AnalyzeConclusion, ComparisonKind, Verdict } from '../contract/analyze.js';
import type { Findings, LeakingFunction, SteadyPath, UnexplainedGrowth } from './evidence.js';
import { unexplainedGrowth, detectionFloor } from './evidence.js';
import { conclude, NO_LEAK_FLOOR } from './verdict.js';
import { growthRate } from './growth-rate.js';
import type { MemBreakdown } from '../model/index.js';

const KiB = 1024,
  MiB = 1 << 20;
const bucket256k: AnalyzeBucketGrowth = {
  minBytes: 256 * KiB,
  maxBytes: 512 * KiB,
  baselineInUseChunks: 10,
  currentInUseChunks: 70,
  chunkGrowth: 60,
  byteGrowth: 60 * 300 * KiB,
};

function growth(kind: ComparisonKind | null, anomalous: AnalyzeBucketGrowth | null): Findings['growth'] {
  const label =
    kind === 'pause'
      ? 'the same process 2 s earlier'
      : kind === 'trace-window'
        ? 'the same process before the 20 s trace window'
        : kind === 'sibling'
          ? 'sibling pid 7'
          : kind === 'baseline-file'
            ? 'baseline pid 7'
            : '';
  return { kind, source: label, buckets: kind ? (anomalous ? [anomalous] : []) : [], anomalous };
}
const fnOf = (bytes: number, fn: string | null = 'leak_session_record'): LeakingFunction => ({
  fn,
  module: '/usr/bin/app',
  bytes,
  count: 10,
});
/** A steady path: `perSecond` bytes/s over 20 one-second points (exact line). */
function steadyPath(perSecond: number, fn = 'leak_session_record'): SteadyPath {
  const rate = growthRate(Array.from({ length: 21 }, (_, s) => ({ seconds: s, bytes: perSecond * s })))!;
  return { fn, module: '/usr/bin/app', rate, outstandingBytes: perSecond * 19 };
}
const otherAnon: UnexplainedGrowth = {
  category: 'other-anon',
  growthBytes: 90 * MiB,
  seconds: 8,
  startBytes: 20 * MiB,
  endBytes: 110 * MiB,
};

/** A live process observed 22 s, traced 20 s in malloc mode sampling 16 KiB (floor 6.4 KiB/s). */
function live(p: Partial<Findings> = {}): Findings {
  return {
    heapError: null,
    isNginx: false,
    mainModule: 'app',
    growth: growth('pause', null),
    trace: { durationSeconds: 20, outstandingBytes: 0, top: null },
    pools: null,
    targetKind: 'live',
    observedSeconds: 22,
    steady: [],
    traceHeapGrowth: 0,
    detectionFloor: (8 * 16 * KiB) / 20,
    unexplained: [],
    asked: { pauseSeconds: 2, traceSeconds: 20, sampleBytes: 16 * KiB, baseline: false },
    ...p,
  };
}

interface Row {
  name: string;
  f: Findings;
  verdict: Verdict;
  want?: Partial<Omit<AnalyzeConclusion, 'summary'>>;
  summary?: RegExp;
}

const rows: Row[] = [
  // --- leak ---
  {
    name: 'mmapped chunks grew over the pause, no trace',
    verdict: 'leak',
    f: live({
      growth: growth('pause', bucket256k),
      trace: null,
      steady: null,
      traceHeapGrowth: null,
      detectionFloor: null,
      observedSeconds: 2.1,
    }),
    want: { confidence: 'medium', bucket: { minBytes: 256 * KiB, maxBytes: 512 * KiB } },
  },
  {
    name: 'a bucket grew and the trace explains it',
    verdict: 'leak',
    f: live({
      growth: growth('trace-window', bucket256k),
      trace: { durationSeconds: 20, outstandingBytes: 8 * MiB, top: fnOf(8 * MiB) },
    }),
    want: { confidence: 'high', function: 'leak_session_record', module: 'app' },
  },
  {
    name: 'slow leak: 32 KB/s steady path, heap grew with it, no bucket significant',
    verdict: 'leak',
    f: live({
      steady: [steadyPath(32_000)],
      traceHeapGrowth: 600_000,
      trace: { durationSeconds: 20, outstandingBytes: 600_000, top: fnOf(600_000) },
    }),
    want: { confidence: 'high', function: 'leak_session_record' },
    summary: /grew steadily through the 20 s trace.*at this rate \+110 MiB\/hour/,
  },
  {
    name: 'difference from a sibling only',
    verdict: 'leak',
    f: live({ growth: growth('sibling', bucket256k), trace: null, steady: null, detectionFloor: null }),
    want: { confidence: 'low' },
  },
  {
    name: 'a core file with a saved baseline that differs',
    verdict: 'leak',
    f: live({
      targetKind: 'core',
      observedSeconds: 0,
      growth: growth('baseline-file', bucket256k),
      trace: null,
      steady: null,
      traceHeapGrowth: null,
      detectionFloor: null,
    }),
    want: { confidence: 'low' },
  },
  // --- no-leak ---
  {
    name: 'observed 22 s, fine trace, nothing steady, nothing grew',
    verdict: 'no-leak',
    f: live(),
    want: { confidence: 'high', leak: false },
  },
  {
    name: 'churn and a full cache: outstanding memory, none of it steady',
    verdict: 'no-leak',
    f: live({ trace: { durationSeconds: 20, outstandingBytes: 200 * KiB, top: fnOf(200 * KiB, 'cache_insert') } }),
    summary: /none of it growing steadily/,
  },
  {
    name: 'nginx pool-mode trace, no pool outlived the window, no stable suspect',
    verdict: 'no-leak',
    f: live({
      isNginx: true,
      mainModule: 'nginx',
      steady: null,
      detectionFloor: null,
      traceHeapGrowth: 10 * KiB,
      trace: { durationSeconds: 5, outstandingBytes: 0, top: null },
      pools: { suspectPools: 0, transientPools: 3, stable: null, attributedSuspect: null },
    }),
    want: { confidence: 'medium' },
  },
  // --- cannot-tell ---
  {
    name: 'a core file alone',
    verdict: 'cannot-tell',
    f: live({
      targetKind: 'core',
      observedSeconds: 0,
      growth: growth(null, null),
      trace: null,
      steady: null,
      traceHeapGrowth: null,
      detectionFloor: null,
    }),
    summary: /core file is one snapshot.*To tell: leakscope heap --json PID/,
  },
  {
    name: 'a single snapshot (--pause 0 --duration 0)',
    verdict: 'cannot-tell',
    f: live({
      observedSeconds: 0,
      growth: growth(null, null),
      trace: null,
      steady: null,
      traceHeapGrowth: null,
      detectionFloor: null,
    }),
    summary: /one snapshot/,
  },
  {
    name: '--duration 0: nothing grew over the pause, slow leaks unseen',
    verdict: 'cannot-tell',
    f: live({ observedSeconds: 2, trace: null, steady: null, traceHeapGrowth: null, detectionFloor: null }),
    summary: /no trace ran \(--duration 0\).*To tell: leakscope analyze PID --pause \d+ --duration \d+/,
  },
  {
    name: 'trace too coarse for a 20-40 KB/s leak (512 KiB over 10 s)',
    verdict: 'cannot-tell',
    f: live({
      trace: { durationSeconds: 10, outstandingBytes: 0, top: null },
      detectionFloor: detectionFloor({ sampleBytes: 512 * KiB, durationSeconds: 10 }),
      asked: { pauseSeconds: 2, traceSeconds: 10, sampleBytes: 512 * KiB, baseline: false },
    }),
    summary: /steady growth below 410 KiB\/s .* is invisible/,
  },
  {
    name: 'RSS grew where no model looks (Lua heap, a private mmap allocator)',
    verdict: 'cannot-tell',
    f: live({ unexplained: [otherAnon] }),
    summary: /RSS grew 90\.0 MiB in other-anon over 8 s.*no model/,
  },
  {
    name: 'a steady path the heap does not follow (cache slower than the window)',
    verdict: 'cannot-tell',
    f: live({ steady: [steadyPath(30_000, 'cache_insert')], traceHeapGrowth: 20_000 }),
    summary: /cache replacing entries older than the window/,
  },
  {
    name: 'the heap could not be walked',
    verdict: 'cannot-tell',
    f: live({ heapError: 'no main_arena' }),
    summary: /could not be walked/,
  },
  {
    name: 'a trace without a per-second record',
    verdict: 'cannot-tell',
    f: live({ steady: null }),
    summary: /no per-second record/,
  },
  {
    name: 'pool-mode trace: pools created in the window outlived it unowned, heap flat',
    verdict: 'cannot-tell',
    f: live({
      isNginx: true,
      mainModule: 'nginx',
      steady: null,
      detectionFloor: null,
      trace: { durationSeconds: 5, outstandingBytes: 2 * MiB, top: fnOf(2 * MiB, 'ngx_http_x_handler') },
      pools: { suspectPools: 4, transientPools: 0, stable: null, attributedSuspect: null },
    }),
    summary: /outlived it unowned without heap growth/,
  },
];

for (const row of rows) {
  test(`verdict ${row.verdict}: ${row.name}`, () => {
    const c = conclude(row.f);
    assert.equal(c.verdict, row.verdict, c.summary);
    assert.equal(c.leak, row.verdict === 'leak');
    if (row.verdict === 'cannot-tell') {
      assert.equal(c.confidence, 'none');
      assert.ok(c.nextCommand?.startsWith('leakscope '), 'names the command that would tell');
      assert.doesNotMatch(c.summary, /^No leak/);
    }
    if (row.verdict !== 'cannot-tell') assert.equal(c.nextCommand, undefined);
    for (const [k, v] of Object.entries(row.want ?? {}))
      assert.deepEqual((c as unknown as Record<string, unknown>)[k], v, `${k}: ${c.summary}`);
    if (row.summary) assert.match(c.summary, row.summary);
  });
}

test('verdict: a leak found by rate carries the rate and its interval', () => {
  const c = conclude(live({ steady: [steadyPath(32_000)], traceHeapGrowth: 600_000 }));
  assert.equal(c.growthRate?.bytesPerSecond, 32_000);
  assert.equal(c.growthRate?.bytesPerHour, 115_200_000);
  assert.equal(c.growthRate?.function, 'leak_session_record');
});

test('detection floor: the default analyze sampling (16 KiB) over 10 s sees 20 KiB/s', () => {
  assert.ok(detectionFloor({ sampleBytes: 16 * KiB, durationSeconds: 10 }) <= NO_LEAK_FLOOR);
  assert.ok(detectionFloor({ sampleBytes: 64 * KiB, durationSeconds: 10 }) > NO_LEAK_FLOOR);
  assert.ok(detectionFloor({ sampleBytes: 512 * KiB, durationSeconds: 10 }) > NO_LEAK_FLOOR);
});

test('unexplained growth: other-anon growth above 4 MiB and 2% of RSS, not glibc growth', () => {
  const mem = (otherAnon: number, glibc: number): MemBreakdown =>
    ({
      rssBytes: otherAnon + glibc,
      glibcShare: glibc / (otherAnon + glibc),
      categories: [
        { name: 'other-anon', rssBytes: otherAnon, pssBytes: otherAnon, swapBytes: 0, mappings: 1, regions: [] },
        { name: 'glibc-main-heap', rssBytes: glibc, pssBytes: glibc, swapBytes: 0, mappings: 1, regions: [] },
      ],
    }) as unknown as MemBreakdown;
  assert.deepEqual(
    unexplainedGrowth(mem(20 * MiB, 10 * MiB), mem(110 * MiB, 10 * MiB), 8).map((u) => [u.category, u.growthBytes]),
    [['other-anon', 90 * MiB]],
  );
  assert.deepEqual(
    unexplainedGrowth(mem(20 * MiB, 10 * MiB), mem(20 * MiB, 200 * MiB), 8),
    [],
    'glibc growth is explained by the census',
  );
  assert.deepEqual(unexplainedGrowth(mem(20 * MiB, 10 * MiB), mem(23 * MiB, 10 * MiB), 8), [], 'below 4 MiB');
  assert.deepEqual(
    unexplainedGrowth(mem(20 * MiB, 10 * MiB), mem(110 * MiB, 10 * MiB), 0),
    [],
    'nothing observed over time',
  );
});
