// The verdict rules (verdict.ts), one table row each: findings in, conclusion out.
// Two tables: conclusions (module, function, bucket, confidence, summary wording) of a short
// observation (2 s pause + 5 s trace), and the verdict vocabulary (leak / no-leak / cannot-tell,
// the command that would tell) of a longer one (20 s trace). Pure (unit tier): findings are built
// here as plain values; growth rates come from growth-rate.ts over series whose truth is known (a
// line of a known slope, churn around a constant).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AnalyzeBucketGrowth, AnalyzeConclusion, ComparisonKind, Verdict } from '../contract/analyze.js';
import type { Findings, LeakingFunction, SteadyPath, UnexplainedGrowth } from './evidence.js';
import { unexplainedGrowth, detectionFloor } from './evidence.js';
import { conclude, MIN_TRACED_BYTES, NO_LEAK_FLOOR } from './verdict.js';
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
const flat: AnalyzeBucketGrowth = {
  minBytes: 1024,
  maxBytes: 2048,
  baselineInUseChunks: 40,
  currentInUseChunks: 41,
  chunkGrowth: 1,
  byteGrowth: 1100,
};

/** Growth found by a comparison of `kind`; `others`: buckets besides the anomalous one (a flat one by default). */
function growth(
  kind: ComparisonKind | null,
  anomalous: AnalyzeBucketGrowth | null,
  o: { traceSeconds?: number; others?: AnalyzeBucketGrowth[] } = {},
): Findings['growth'] {
  const label =
    kind === 'pause'
      ? 'the same process 2 s earlier'
      : kind === 'trace-window'
        ? `the same process before the ${o.traceSeconds ?? 5} s trace window`
        : kind === 'sibling'
          ? 'sibling pid 7'
          : kind === 'baseline-file'
            ? 'baseline pid 7 (saved)'
            : '';
  return { kind, source: label, buckets: kind ? [...(o.others ?? [flat]), ...(anomalous ? [anomalous] : [])] : [], anomalous };
}
const leakFn = (
  bytes: number,
  fn: string | null = 'leaky_alloc',
  module: string | null = '/usr/lib/libleaky.so.1',
): LeakingFunction => ({ fn, module, bytes, count: 10 });
const trace = (top: LeakingFunction | null, outstanding = top?.bytes ?? 0) => ({
  durationSeconds: 5,
  outstandingBytes: outstanding,
  top,
});

function findings(p: Partial<Findings>): Findings {
  // A live process observed 7 s (2 s pause + 5 s trace), the trace sampling 16 KiB (floor 26 KiB/s
  // over 5 s, above NO_LEAK_FLOOR: no row here says no-leak unless it lowers the floor).
  return {
    heapError: null,
    isNginx: false,
    mainModule: 'app',
    growth: growth(null, null),
    trace: null,
    pools: null,
    targetKind: 'live',
    observedSeconds: 7,
    steady: [],
    traceHeapGrowth: 0,
    detectionFloor: (8 * 16 * KiB) / 20,
    unexplained: [],
    asked: { pauseSeconds: 2, traceSeconds: 5, sampleBytes: 16 * KiB, baseline: false },
    ...p,
  };
}

interface ConclusionRow {
  name: string;
  f: Findings;
  want: Omit<Partial<AnalyzeConclusion>, 'summary'> & { summary?: RegExp };
}

const conclusionRows: ConclusionRow[] = [
  {
    name: 'heap not walked: cannot tell',
    f: findings({ heapError: 'no arena' }),
    want: {
      verdict: 'cannot-tell',
      leak: false,
      confidence: 'none',
      module: null,
      bucket: null,
      function: null,
      summary: /could not be walked/,
    },
  },
  {
    name: 'one snapshot, no trace: cannot tell',
    f: findings({ observedSeconds: 0, steady: null, detectionFloor: null }),
    want: { verdict: 'cannot-tell', leak: false, confidence: 'none', summary: /^Cannot tell yet: one snapshot/ },
  },
  {
    name: 'compared with a baseline, nothing grew, no trace: cannot tell',
    f: findings({ growth: growth('baseline-file', null), observedSeconds: 0, steady: null, detectionFloor: null }),
    want: { verdict: 'cannot-tell', leak: false, confidence: 'none', summary: /no trace ran/ },
  },
  {
    name: 'nothing grew, the trace left nothing: no leak',
    f: findings({ growth: growth('pause', null), trace: trace(null) }),
    want: { verdict: 'no-leak', leak: false, summary: /nothing allocated during the 5 s window outlived it/ },
  },
  {
    name: 'nothing grew, the trace left memory, none of it growing steadily: no leak',
    f: findings({ growth: growth('pause', null), trace: trace(leakFn(4 * MiB)) }),
    want: {
      verdict: 'no-leak',
      leak: false,
      function: null,
      summary: /4\.00 MiB allocated during the 5 s window is still outstanding, none of it growing steadily/,
    },
  },
  {
    name: 'growth over the pause, no trace, half of the growth unreachable: high',
    f: findings({
      growth: growth('pause', bucket256k),
      unreachable: { lostChunks: 40, lostBytes: 40 * 300 * KiB, bucketLostChunks: 40, bucketLostBytes: 40 * 300 * KiB },
    }),
    want: {
      leak: true,
      confidence: 'high',
      function: null,
      summary: /40 chunks of that size \(11\.7 MiB\) are unreachable/,
    },
  },
  {
    name: 'growth over the pause, little of it unreachable: medium',
    f: findings({
      growth: growth('pause', bucket256k),
      unreachable: { lostChunks: 2, lostBytes: 600 * KiB, bucketLostChunks: 2, bucketLostBytes: 600 * KiB },
    }),
    want: { leak: true, confidence: 'medium' },
  },
  {
    name: 'growth over the pause, traced path: high',
    f: findings({ growth: growth('pause', bucket256k), trace: trace(leakFn(4 * MiB)) }),
    want: {
      leak: true,
      confidence: 'high',
      module: 'libleaky',
      function: 'leaky_alloc',
      bucket: { minBytes: 256 * KiB, maxBytes: 512 * KiB },
      summary:
        /^Leak in libleaky, allocated by leaky_alloc: 60 more chunks of 256 KiB–512 KiB .* than the same process 2 s earlier; 4\.00 MiB allocated by leaky_alloc in libleaky/,
    },
  },
  {
    name: 'growth over the trace window, nothing traced: medium',
    f: findings({ growth: growth('trace-window', bucket256k), trace: trace(null) }),
    want: {
      leak: true,
      confidence: 'medium',
      module: null,
      function: null,
      summary:
        /The evidence is partial: no call path traced during the window explains the growth \(is the leak active now\?\)/,
    },
  },
  {
    name: 'growth over the pause, trace too small to explain it: medium',
    f: findings({ growth: growth('pause', bucket256k), trace: trace(leakFn(MIN_TRACED_BYTES - 1)) }),
    want: { leak: true, confidence: 'medium', function: 'leaky_alloc' },
  },
  {
    name: 'exactly the traced minimum: high',
    f: findings({ growth: growth('pause', bucket256k), trace: trace(leakFn(MIN_TRACED_BYTES)) }),
    want: { leak: true, confidence: 'high' },
  },
  {
    name: 'difference from a sibling, no trace: low',
    f: findings({ growth: growth('sibling', bucket256k) }),
    want: {
      leak: true,
      confidence: 'low',
      summary: /the growth is a difference from sibling pid 7, not growth seen during the analysis/,
    },
  },
  {
    name: 'difference from a saved baseline (core file), no trace: low',
    f: findings({ growth: growth('baseline-file', bucket256k) }),
    want: { leak: true, confidence: 'low', summary: /difference from baseline pid 7 \(saved\)/ },
  },
  {
    name: 'difference from a sibling explained by a trace: high',
    f: findings({ growth: growth('sibling', bucket256k), trace: trace(leakFn(2 * MiB)) }),
    want: {
      leak: true,
      confidence: 'high',
      summary: /^Leak in libleaky, allocated by leaky_alloc: .* of what the window left behind\)\.$/,
    },
  },
  {
    name: "nginx: the executable's own frame gives way to the unowned pools' module",
    f: findings({
      isNginx: true,
      mainModule: 'nginx',
      growth: growth('pause', bucket256k),
      trace: trace(leakFn(4 * MiB, 'ngx_http_leak_create_session', '/usr/sbin/nginx')),
      pools: {
        transientPools: 0,
        stable: null,
        suspectPools: 60,
        attributedSuspect: { module: 'ngx_http_leak_module', creator: 'ngx_http_leak_create_session' },
      },
    }),
    want: {
      leak: true,
      confidence: 'high',
      module: 'ngx_http_leak_module',
      function: 'ngx_http_leak_create_session',
      summary: /; 60 nginx pools are held by no connection or request in two reads\.$/,
    },
  },
  {
    name: "nginx: a dynamic module's own frame is kept",
    f: findings({
      isNginx: true,
      mainModule: 'nginx',
      growth: growth('pause', bucket256k),
      trace: trace(leakFn(4 * MiB, 'ngx_http_x_alloc', '/usr/lib/nginx/modules/ngx_http_x_module.so')),
      pools: {
        transientPools: 0,
        stable: null,
        suspectPools: 3,
        attributedSuspect: { module: 'ngx_http_leak_module', creator: null },
      },
    }),
    want: { module: 'ngx_http_x_module' },
  },
  {
    name: 'nginx without a trace: the pools name the module (creator when no module)',
    f: findings({
      isNginx: true,
      mainModule: 'nginx',
      growth: growth('pause', bucket256k),
      pools: {
        transientPools: 0,
        stable: null,
        suspectPools: 5,
        attributedSuspect: { module: null, creator: 'ngx_http_leak_create_session' },
      },
    }),
    want: { leak: true, confidence: 'medium', module: 'ngx_http_leak_create_session', function: null },
  },
  {
    name: 'nginx, pools but no bucket grew: no module from the pools',
    f: findings({
      isNginx: true,
      mainModule: 'nginx',
      growth: growth('pause', null),
      trace: trace(null),
      pools: {
        transientPools: 0,
        stable: null,
        suspectPools: 5,
        attributedSuspect: { module: 'ngx_http_leak_module', creator: null },
      },
    }),
    want: { leak: false, module: null },
  },
  {
    name: 'unsymbolized leaking frame: no function, no module from the frame',
    f: findings({ growth: growth('pause', bucket256k), trace: trace(leakFn(4 * MiB, null)) }),
    want: { leak: true, confidence: 'high', function: null, module: null, summary: /^Leak: 60 more chunks/ },
  },
];

for (const row of conclusionRows) {
  test(`verdict: ${row.name}`, () => {
    const c = conclude(row.f);
    const { summary, ...fields } = row.want;
    for (const [k, v] of Object.entries(fields))
      assert.deepEqual(c[k as keyof AnalyzeConclusion], v, `${k} (summary: ${c.summary})`);
    if (summary) assert.match(c.summary, summary);
    assert.equal(c.leak, c.verdict === 'leak');
    if (c.verdict === 'cannot-tell') assert.equal(c.confidence, 'none', 'cannot-tell has no confidence');
    if (!c.leak) assert.deepEqual([c.module, c.bucket, c.function], [null, null, null]);
  });
}

test('verdict: the confidence does not depend on the words of the comparison, only on its kind', () => {
  for (const kind of ['pause', 'trace-window', 'sibling', 'baseline-file'] as const) {
    const g = { ...growth(kind, bucket256k), source: 'the same process (a label that says otherwise)' };
    const c = conclude(findings({ growth: g }));
    assert.equal(c.confidence, kind === 'pause' || kind === 'trace-window' ? 'medium' : 'low', kind);
  }
});

// ---- the verdict vocabulary: a live process observed 22 s, traced 20 s ----

/** The vocabulary table's growth: the anomalous bucket alone, a 20 s trace window. */
const growthOnly = (kind: ComparisonKind | null, anomalous: AnalyzeBucketGrowth | null) =>
  growth(kind, anomalous, { traceSeconds: 20, others: [] });
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
    growth: growthOnly('pause', null),
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

interface VocabularyRow {
  name: string;
  f: Findings;
  verdict: Verdict;
  want?: Partial<Omit<AnalyzeConclusion, 'summary'>>;
  summary?: RegExp;
}

const vocabularyRows: VocabularyRow[] = [
  // --- leak ---
  {
    name: 'mmapped chunks grew over the pause, no trace',
    verdict: 'leak',
    f: live({
      growth: growthOnly('pause', bucket256k),
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
      growth: growthOnly('trace-window', bucket256k),
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
    f: live({ growth: growthOnly('sibling', bucket256k), trace: null, steady: null, detectionFloor: null }),
    want: { confidence: 'low' },
  },
  {
    name: 'a core file with a saved baseline that differs',
    verdict: 'leak',
    f: live({
      targetKind: 'core',
      observedSeconds: 0,
      growth: growthOnly('baseline-file', bucket256k),
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
      growth: growthOnly(null, null),
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
      growth: growthOnly(null, null),
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

for (const row of vocabularyRows) {
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
