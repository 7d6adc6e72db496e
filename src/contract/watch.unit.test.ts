// leakscope.watch/1 read back (no root): a snapshot round-trips; a malformed one is `malformed`
// with the JSON path of the first problem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WATCH_SCHEMA, parseWatch } from './watch.js';
import type { WatchDocument } from './watch.js';
import { parseDocument } from './parse.js';
import { isLeakscopeError } from '../model/errors.js';

const doc: WatchDocument = {
  schema: WATCH_SCHEMA,
  generatedAt: '2026-12-01T20:00:00.000Z',
  self: {
    startedAtSeconds: 1.7e9,
    intervalSeconds: 60,
    cycles: 2,
    cyclesDelayed: 0,
    lastCycleSeconds: 0.2,
    lastCycleCpuSeconds: 0.1,
    budget: 0.05,
    lastCycleDuty: 0.002,
    cpuSeconds: 1.2,
    residentBytes: 9e7,
    reports: 1,
    analysisRunning: false,
    triggersSuppressed: { cooldown: 3, busy: 0 },
    analysisErrors: 0,
  },
  workers: [
    {
      pid: 42,
      worker: '0',
      command: 'nginx',
      startTimeSeconds: 1.7e9,
      census: {
        timestampSeconds: 1.7e9 + 5,
        durationSeconds: 0.1,
        phases: { memSeconds: 0.03, heapSeconds: 0.05, poolsSeconds: 0.02 },
        ok: true,
        errors: 0,
        lastError: null,
      },
      rss: [{ category: 'glibc-main-heap', rssBytes: 4096 }],
      glibc: {
        buckets: [{ minBytes: 32, inUseChunks: 1, inUseBytes: 32, freeChunks: 0, freeBytes: 0 }],
        inUseBytes: 32,
        freeBytes: 0,
        topBytes: 100,
        mmappedChunks: 0,
        mmappedBytes: 0,
        systemBytes: 135168,
        arenas: 1,
        complete: true,
        inconsistencies: 0,
      },
      pools: {
        groups: [{ owner: 'static', module: 'ngx_http_leak_module', pools: 2, bytes: 160000 }],
        pools: 2,
        bytes: 160000,
      },
      lua: null,
      growth: [
        {
          series: { kind: 'pool', owner: 'static', module: 'ngx_http_leak_module' },
          bytesPerHour: 1e6,
          lowBytesPerHour: -5,
          highBytesPerHour: 2e6,
          samples: 5,
          spanSeconds: 240,
        },
        {
          series: { kind: 'bucket', minBytes: 32 },
          bytesPerHour: 0,
          lowBytesPerHour: 0,
          highBytesPerHour: 0,
          samples: 5,
          spanSeconds: 240,
        },
        {
          series: { kind: 'category', category: 'glibc-main-heap' },
          bytesPerHour: -3,
          lowBytesPerHour: -4,
          highBytesPerHour: -2,
          samples: 5,
          spanSeconds: 240,
        },
      ],
    },
  ],
  lastReport: {
    directory: '/r/20261201T200000Z-pid42',
    pid: 42,
    worker: '0',
    timestampSeconds: 1.7e9,
    trigger: { kind: 'pool', owner: 'static', module: 'ngx_http_leak_module' },
    triggerBytesPerHour: 1e6,
    verdict: 'leak',
    module: 'ngx_http_leak_module',
    bucketMinBytes: 262144,
    function: 'ngx_http_leak_handler',
    confidence: 'high',
    summary: 'leak',
  },
};

test('a watch snapshot round-trips through its parser (and parseDocument)', () => {
  const back = JSON.parse(JSON.stringify(doc)) as unknown;
  assert.deepEqual(parseWatch(back), doc);
  assert.deepEqual(parseDocument(back), doc);
});

test('a malformed snapshot is malformed, naming the path', () => {
  // biome-ignore lint/suspicious/noExplicitAny: mutations of a JSON copy, any path
  const cases: Array<[(d: any) => void, RegExp]> = [
    [
      (d) => {
        d.workers[0].pid = -1;
      },
      /\$\.workers\[0\]\.pid/,
    ],
    [
      (d) => {
        d.workers[0].growth[1].series.kind = 'table';
      },
      /\$\.workers\[0\]\.growth\[1\]\.series\.kind/,
    ],
    [
      (d) => {
        d.workers[0].pools.groups[0].owner = 'nobody';
      },
      /owner/,
    ],
    [
      (d) => {
        d.lastReport.verdict = 'maybe';
      },
      /\$\.lastReport\.verdict/,
    ],
    [
      (d) => {
        d.schema = 'leakscope.watch/2';
      },
      /version 1/,
    ],
  ];
  for (const [mutate, path] of cases) {
    const d = JSON.parse(JSON.stringify(doc));
    mutate(d);
    assert.throws(
      () => parseWatch(d),
      (e) => isLeakscopeError(e) && e.code === 'malformed' && path.test(e.message),
      String(mutate),
    );
  }
});
