// Report directories of `leakscope watch --reports` (no root): naming, retention that touches
// nothing else, the pprof of an analysis's trace; --listen parsing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { createReportDirectory, enforceRetention, listReportDirectories, pprofOfAnalysis } from './watch-reports.js';
import { nextCycle, parseListen } from './watch-command.js';
import type { AnalyzeDocument } from '../contract/analyze.js';
import { isLeakscopeError } from '../model/errors.js';

test('report directories: named by UTC time and pid, 0700, unique within a second', () => {
  const root = join(mkdtempSync(join(os.tmpdir(), 'leakscope-rt-')), 'reports');
  try {
    const when = new Date(Date.UTC(2026, 11, 1, 20, 30, 5));
    const a = createReportDirectory(root, 1234, when);
    const b = createReportDirectory(root, 1234, when);
    assert.equal(a, join(root, '20261201T203005Z-pid1234'));
    assert.equal(b, join(root, '20261201T203005Z-pid1234-1'));
    assert.equal(statSync(a).mode & 0o777, 0o700);
    assert.equal(statSync(root).mode & 0o777, 0o700);
  } finally {
    rmSync(join(root, '..'), { recursive: true, force: true });
  }
});

test('retention keeps the newest N report directories and touches nothing else', () => {
  const root = mkdtempSync(join(os.tmpdir(), 'leakscope-rt-'));
  try {
    const names = [
      '20261201T100000Z-pid1',
      '20261201T110000Z-pid2',
      '20261201T120000Z-pid1',
      '20261201T120000Z-pid1-1',
      '20261202T000000Z-pid9',
    ];
    for (const n of [...names].reverse()) mkdirSync(join(root, n));
    mkdirSync(join(root, 'notes'));
    writeFileSync(join(root, '20261130T000000Z-pid1.txt'), 'not a report directory name');
    assert.deepEqual(listReportDirectories(root), names);
    assert.deepEqual(enforceRetention(root, 2), names.slice(0, 3));
    assert.deepEqual(readdirSync(root).sort(), [
      '20261130T000000Z-pid1.txt',
      '20261201T120000Z-pid1-1',
      '20261202T000000Z-pid9',
      'notes',
    ]);
    assert.deepEqual(enforceRetention(root, 2), []);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("the pprof of an analysis: the trace's stacks as inuse_space, none without a trace", () => {
  const base = {
    schema: 'leakscope.analyze/1',
    target: 't',
    pid: 1,
    generatedAt: '2026-12-01T20:30:10.000Z',
    durationSeconds: 12,
  } as unknown as AnalyzeDocument;
  assert.equal(pprofOfAnalysis({ ...base, leaks: null }), null);
  const doc = {
    ...base,
    leaks: {
      durationSeconds: 10,
      sampling: { sampleBytes: 0 },
      stacks: [
        {
          frames: [
            { function: 'ngx_create_pool', module: 'nginx', offset: 0x100 },
            { function: 'ngx_http_leak_handler', module: 'ngx_http_leak_module.so', offset: 0x40 },
          ],
          bytes: 3 * 65536,
          count: 3,
          allocBytes: 3 * 65536,
          allocCount: 3,
        },
        {
          frames: [{ function: null, module: 'libx.so', offset: 0x10 }],
          bytes: 100,
          count: 1,
          allocBytes: 0,
          allocCount: 0,
        },
      ],
    },
  } as unknown as AnalyzeDocument;
  const p = Profile.decode(gunzipSync(pprofOfAnalysis(doc)!));
  const strings = p.stringTable.strings as string[];
  assert.deepEqual(
    p.sampleType.map((t) => strings[Number(t.type)]),
    ['inuse_space', 'inuse_objects', 'alloc_space', 'alloc_objects'],
  );
  assert.deepEqual(
    p.sample.map((s) => Number(s.value[0])),
    [3 * 65536, 100],
  );
  assert.ok(strings.includes('ngx_http_leak_handler'));
  assert.equal(Number(p.durationNanos), 10e9);
  assert.equal(
    Number(p.timeNanos),
    Date.UTC(2026, 11, 1, 20, 30, 0) * 1e6,
    'the window ends when the document was generated',
  );
});

test('--listen', () => {
  assert.deepEqual(parseListen('127.0.0.1:9465'), { host: '127.0.0.1', port: 9465 });
  assert.deepEqual(parseListen('[::1]:80'), { host: '::1', port: 80 });
  assert.deepEqual(parseListen(':9465'), { host: '127.0.0.1', port: 9465 });
  assert.deepEqual(parseListen('9465'), { host: '127.0.0.1', port: 9465 });
  assert.deepEqual(parseListen('0.0.0.0:0'), { host: '0.0.0.0', port: 0 });
  for (const bad of ['', 'host', '1.2.3.4:99999', '::1:80', 'a b:1']) {
    assert.throws(
      () => parseListen(bad),
      (e) => isLeakscopeError(e) && e.code === 'usage',
      bad,
    );
  }
});

test("cycles: every --interval, spaced out when the censuses' CPU exceeds --budget of one core", () => {
  const near = (
    got: { sleepSeconds: number; delayed: boolean; duty: number },
    want: { sleepSeconds: number; delayed: boolean; duty: number },
  ) => {
    assert.equal(got.delayed, want.delayed);
    assert.ok(
      Math.abs(got.sleepSeconds - want.sleepSeconds) < 1e-9 && Math.abs(got.duty - want.duty) < 1e-12,
      `${JSON.stringify(got)} vs ${JSON.stringify(want)}`,
    );
  };
  // 0.3 s of census CPU at 5% of a core: at most one cycle per 6 s.
  near(nextCycle(60, 0.05, 0.5, 0.3), { sleepSeconds: 59.5, delayed: false, duty: 0.3 / 60 });
  near(nextCycle(5, 0.05, 0.5, 0.3), { sleepSeconds: 5.5, delayed: true, duty: 0.05 });
  // Wall time longer than the period (a loaded host): start again at once, the duty from CPU.
  near(nextCycle(1, 0.5, 3, 0.2), { sleepSeconds: 0, delayed: false, duty: 0.2 / 3 });
  // A multi-GiB heap: 1.5 s CPU at 1% -> one cycle per 150 s.
  near(nextCycle(60, 0.01, 2, 1.5), { sleepSeconds: 148, delayed: true, duty: 0.01 });
});
