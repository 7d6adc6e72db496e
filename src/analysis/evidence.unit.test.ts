// Evidence (evidence.ts) over recorded observations, table-driven: which comparison and bucket
// the analysis rests on, the trace mode it aims, the function a stack blames; and the whole
// pure half of `analyze` (judge) from observations to a document the contract accepts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAnalyze } from '../contract/analyze.js';
import type { ComparisonKind } from '../contract/analyze.js';
import type { BucketSpec } from '../contract/test-samples.js';
import { sampleCensus, sampleMem, samplePools, sampleStack, sampleTrace } from '../contract/test-samples.js';
import { compareCensus } from '../glibc/compare.js';
import type { StackSample } from '../model/stacks.js';
import { judge } from './analyze.js';
import {
  byLeakingFunction,
  chooseTraceMode,
  findings,
  leakingFunction,
  pickGrowth,
  requestRange,
  steps,
} from './evidence.js';
import type { Observations } from './observe.js';

const KiB = 1024,
  MiB = 1 << 20;
/** 2000 small chunks and 1000 of 4 KiB: about 5 MiB of heap. */
const BASE: BucketSpec[] = [
  [32, 2000],
  [4096, 1000, 4112],
];

function cmp(kind: ComparisonKind, before: BucketSpec[], after: BucketSpec[]) {
  return { kind, label: `${kind} comparison`, cmp: compareCensus(sampleCensus(before), sampleCensus(after)) };
}

interface GrowthRow {
  name: string;
  comparisons: Array<ReturnType<typeof cmp>>;
  current: BucketSpec[];
  want: { kind: ComparisonKind | null; anomalousMin: number | null };
}

const growthRows: GrowthRow[] = [
  { name: 'nothing compared', comparisons: [], current: BASE, want: { kind: null, anomalousMin: null } },
  {
    name: 'no growth over the pause',
    comparisons: [cmp('pause', BASE, BASE)],
    current: BASE,
    want: { kind: 'pause', anomalousMin: null },
  },
  {
    name: '+1.3 MiB in 4 chunks of 256 KiB over the pause: too few chunks',
    comparisons: [cmp('pause', BASE, [...BASE, [256 * KiB, 4, 327696]])],
    current: [...BASE, [256 * KiB, 4, 327696]],
    want: { kind: 'pause', anomalousMin: null },
  },
  {
    name: '+3.1 MiB in 10 chunks over the pause: anomalous',
    comparisons: [cmp('pause', BASE, [...BASE, [256 * KiB, 10, 327696]])],
    current: [...BASE, [256 * KiB, 10, 327696]],
    want: { kind: 'pause', anomalousMin: 256 * KiB },
  },
  {
    name: 'the same growth against a sibling is not enough (8 MiB and 10% needed)',
    comparisons: [cmp('sibling', BASE, [...BASE, [256 * KiB, 10, 327696]])],
    current: [...BASE, [256 * KiB, 10, 327696]],
    want: { kind: 'sibling', anomalousMin: null },
  },
  {
    name: '+16 MiB against a saved baseline: anomalous',
    comparisons: [cmp('baseline-file', BASE, [...BASE, [256 * KiB, 52, 327696]])],
    current: [...BASE, [256 * KiB, 52, 327696]],
    want: { kind: 'baseline-file', anomalousMin: 256 * KiB },
  },
  {
    name: 'fewer than 8 more chunks is never anomalous, whatever the bytes',
    comparisons: [cmp('pause', BASE, [...BASE, [8 * MiB, 7, 8 * MiB + 4096]])],
    current: [...BASE, [8 * MiB, 7, 8 * MiB + 4096]],
    want: { kind: 'pause', anomalousMin: null },
  },
  {
    name: 'of two comparisons the larger significant growth wins (sibling over pause)',
    comparisons: [
      cmp('pause', [...BASE, [256 * KiB, 40, 327696]], [...BASE, [256 * KiB, 52, 327696]]),
      cmp('sibling', BASE, [...BASE, [256 * KiB, 52, 327696]]),
    ],
    current: [...BASE, [256 * KiB, 52, 327696]],
    want: { kind: 'sibling', anomalousMin: 256 * KiB },
  },
  {
    name: 'with nothing significant, the first comparison is the one reported',
    comparisons: [cmp('sibling', BASE, BASE), cmp('pause', BASE, BASE)],
    current: BASE,
    want: { kind: 'sibling', anomalousMin: null },
  },
];

for (const row of growthRows) {
  test(`evidence: growth: ${row.name}`, () => {
    const g = pickGrowth(row.comparisons, sampleCensus(row.current));
    assert.equal(g.kind, row.want.kind);
    assert.equal(g.anomalous?.minBytes ?? null, row.want.anomalousMin);
    if (g.kind) assert.equal(g.source, `${g.kind} comparison`);
  });
}

test('evidence: trace mode and request range', () => {
  const census = sampleCensus([...BASE, [256 * KiB, 52, 327696]]);
  const anomalous = pickGrowth([cmp('pause', BASE, [...BASE, [256 * KiB, 52, 327696]])], census).anomalous!;
  const poolsHoldIt = samplePools([{ owner: 'unreferenced', module: 'm', pools: 52, blockChunk: 327696 }], { census });
  const poolsElsewhere = samplePools([{ owner: 'connection', pools: 52 }], { census });
  const rows: Array<[boolean, typeof poolsHoldIt | null, typeof anomalous | null, 'pool' | 'malloc']> = [
    [false, null, anomalous, 'malloc'],
    [true, null, anomalous, 'malloc'],
    [true, poolsHoldIt, null, 'pool'],
    [true, poolsHoldIt, anomalous, 'pool'],
    [true, poolsElsewhere, anomalous, 'malloc'],
  ];
  for (const [isNginx, pools, a, want] of rows)
    assert.equal(chooseTraceMode(isNginx, pools, a), want, `${isNginx} ${!!pools} ${!!a}`);
  assert.deepEqual(requestRange({ minBytes: 256 * KiB, maxBytes: 512 * KiB }), {
    min: 256 * KiB - 4096 - 16,
    max: 512 * KiB,
  });
  assert.deepEqual(requestRange({ minBytes: 32, maxBytes: 64 }), { min: 0, max: 64 });
});

test('evidence: the leaking function skips allocators, their clones and unsymbolized frames', () => {
  const rows: Array<[Array<string | null>, string | null]> = [
    [['malloc', 'leaky', 'main'], 'leaky'],
    [['__libc_malloc', '_int_malloc', 'leaky'], 'leaky'],
    [
      [null, 'malloc', null, 'ngx_alloc', 'ngx_create_pool', 'ngx_http_leak_create_session'],
      'ngx_http_leak_create_session',
    ],
    [
      [
        '_mid_memalign.constprop.0',
        'posix_memalign',
        'ngx_memalign',
        'ngx_palloc_large',
        'ngx_palloc',
        'mod_fn.isra.0',
      ],
      'mod_fn.isra.0',
    ],
    [['_Znwm', 'Foo::Foo'], 'Foo::Foo'],
    [['lj_alloc_malloc', 'CRYPTO_zalloc', 'ssl_thing'], 'ssl_thing'],
    [['malloc', null], null],
    [[], null],
  ];
  for (const [frames, want] of rows)
    assert.equal(leakingFunction(sampleStack(frames, 1, 1)), want, frames.join(' <- '));
  const stacks: StackSample[] = [
    sampleStack(['malloc', 'a', 'main'], 100, 1),
    sampleStack(['malloc', 'a', 'other', 'main'], 50, 2),
    sampleStack(['malloc', 'b', 'main'], 120, 3),
  ];
  assert.deepEqual(
    byLeakingFunction(stacks).map((x) => [x.fn, x.bytes, x.count]),
    [
      ['a', 150, 3],
      ['b', 120, 3],
    ],
  );
});

/** Recorded observations of a leaking nginx worker: pause growth in 256 KiB pool blocks, a pool-mode trace. */
function leakingNginx(): Observations {
  const beforeSpec: BucketSpec[] = [...BASE, [256 * KiB, 10, 327696]];
  const afterSpec: BucketSpec[] = [...BASE, [256 * KiB, 60, 327696]];
  const before = sampleCensus(beforeSpec),
    after = sampleCensus(afterSpec);
  const poolsBefore = samplePools(
    [
      {
        owner: 'unreferenced',
        module: 'ngx_http_leak_module',
        creator: 'ngx_http_leak_create_session',
        pools: 10,
        blockChunk: 327696,
      },
      { owner: 'connection', pools: 4 },
    ],
    { census: before },
  );
  const poolsAfter = samplePools(
    [
      {
        owner: 'unreferenced',
        module: 'ngx_http_leak_module',
        creator: 'ngx_http_leak_create_session',
        pools: 60,
        blockChunk: 327696,
      },
      { owner: 'connection', pools: 4 },
    ],
    { census: after },
  );
  const trace = sampleTrace(
    [
      sampleStack(
        ['ngx_create_pool', 'ngx_http_leak_create_session', 'ngx_http_core_content_phase', 'main'],
        20 * 327696,
        20,
      ),
      sampleStack(['ngx_create_pool', 'ngx_event_accept', 'main'], 4112, 1),
    ],
    { mode: 'pool' },
  );
  return {
    target: { description: 'pid 4242 (nginx: worker process)', pid: 4242, kind: 'live', mainModule: '/usr/sbin/nginx' },
    isNginx: true,
    startedAt: Date.UTC(2026, 0, 1, 12, 0, 0),
    mem: sampleMem(after.totals.inUseBytes + 1 * MiB, 8 * MiB),
    heapError: null,
    before: { census: before, pools: poolsBefore, censusMs: 1, poolsMs: 1 },
    final: { census: after, pools: poolsAfter, censusMs: 1, poolsMs: 1 },
    comparisons: [
      { kind: 'pause', label: 'the same process 2 s earlier', cmp: compareCensus(before, after) },
      {
        kind: 'trace-window',
        label: 'the same process before the 5 s trace window',
        cmp: compareCensus(before, after),
      },
    ],
    trace,
    traceMode: 'pool',
    traceStart: before,
    observedSeconds: 9,
    memEnd: null,
    // A second read that confirms the suspects (the same pools, read again).
    poolsConfirm: poolsAfter,
    asked: { pauseSeconds: 2, traceSeconds: 5, sampleBytes: null, baseline: false },
  };
}

test('evidence + verdict over recorded observations: leaking nginx worker', () => {
  const o = leakingNginx();
  const f = findings(o);
  assert.equal(f.growth.kind, 'pause');
  assert.equal(f.growth.anomalous?.chunkGrowth, 50);
  assert.equal(f.pools?.suspectPools, 60);
  assert.equal(f.pools?.transientPools, 0);
  // Cleanup handlers do not name a creator: only a module's static reference attributes a pool.
  assert.deepEqual(f.pools?.attributedSuspect, { module: 'ngx_http_leak_module', creator: null });
  assert.equal(f.trace?.top?.fn, 'ngx_http_leak_create_session');
  const s = steps(o, f);
  // The allocator holds the grown bucket: its step is an anomaly too.
  assert.deepEqual(
    s.map((x) => [x.id, x.status]),
    [
      ['memory', 'anomaly'],
      ['allocator', 'anomaly'],
      ['pools', 'anomaly'],
      ['buckets', 'anomaly'],
      ['code-path', 'anomaly'],
    ],
  );
  assert.match(s[2]!.evidence.join('\n'), /pools: 14 -> 64 \(\+50\) during the analysis/);
  assert.match(s[3]!.finding, /^50 more chunks of 256 KiB–512 KiB than the same process 2 s earlier/);

  const doc = judge(o, new Date(o.startedAt + 9500));
  assert.equal(doc.durationSeconds, 9.5);
  assert.deepEqual(
    { ...doc.conclusion, summary: '' },
    {
      verdict: 'leak',
      leak: true,
      module: 'ngx_http_leak_module',
      bucket: { minBytes: 256 * KiB, maxBytes: 512 * KiB },
      function: 'ngx_http_leak_create_session',
      confidence: 'high',
      summary: '',
    },
  );
  assert.equal(doc.heapComparison?.kind, 'pause');
  const text = JSON.parse(JSON.stringify(doc));
  assert.deepEqual(JSON.parse(JSON.stringify(parseAnalyze(text))), text);
});

test('evidence + verdict over recorded observations: core file without baseline, heap not walked', () => {
  const o = leakingNginx();
  const core: Observations = {
    ...o,
    target: { ...o.target, kind: 'core' },
    final: o.before,
    comparisons: [],
    trace: null,
    traceMode: null,
    traceStart: null,
    observedSeconds: 0,
    poolsConfirm: 'frozen',
    asked: { pauseSeconds: 0, traceSeconds: 0, sampleBytes: null, baseline: false },
  };
  const doc = judge(core, new Date(o.startedAt));
  assert.equal(doc.conclusion.leak, false);
  assert.equal(doc.conclusion.verdict, 'cannot-tell');
  assert.match(doc.conclusion.summary, /^Cannot tell yet: a core file is one snapshot/);
  assert.deepEqual(
    doc.steps.map((x) => [x.id, x.status]),
    [
      ['memory', 'anomaly'],
      ['allocator', 'ok'],
      ['pools', 'anomaly'],
      ['buckets', 'skipped'],
      ['code-path', 'skipped'],
    ],
  );
  assert.match(doc.steps[4]!.finding, /a core file cannot be traced/);
  assert.equal(doc.heapComparison, null);

  const broken: Observations = {
    ...o,
    heapError: 'main_arena not found',
    before: null,
    final: null,
    comparisons: [],
    trace: null,
    traceMode: null,
  };
  const d2 = judge(broken, new Date(o.startedAt));
  assert.deepEqual(
    d2.steps.map((x) => [x.id, x.status]),
    [
      ['memory', 'anomaly'],
      ['allocator', 'error'],
    ],
  );
  assert.equal(d2.heap, null);
  assert.equal(d2.pools, null);
  assert.match(d2.conclusion.summary, /could not be walked/);
  parseAnalyze(JSON.parse(JSON.stringify(d2)));
});
