// The verdict rules (verdict.ts), one table row each: findings in, conclusion out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AnalyzeBucketGrowth, AnalyzeConclusion, ComparisonKind } from '../contract/analyze.js';
import type { Findings, LeakingFunction } from './evidence.js';
import { conclude, MIN_TRACED_BYTES } from './verdict.js';

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

function growth(kind: ComparisonKind | null, anomalous: AnalyzeBucketGrowth | null): Findings['growth'] {
  const label =
    kind === 'pause'
      ? 'the same process 2 s earlier'
      : kind === 'trace-window'
        ? 'the same process before the 5 s trace window'
        : kind === 'sibling'
          ? 'sibling pid 7'
          : kind === 'baseline-file'
            ? 'baseline pid 7 (saved)'
            : '';
  return { kind, source: label, buckets: kind ? [flat, ...(anomalous ? [anomalous] : [])] : [], anomalous };
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

interface Row {
  name: string;
  f: Findings;
  want: Omit<Partial<AnalyzeConclusion>, 'summary'> & { summary?: RegExp };
}

const rows: Row[] = [
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

for (const row of rows) {
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
