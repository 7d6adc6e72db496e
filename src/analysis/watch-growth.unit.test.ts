// The watch's growth windows, trigger decision and gate (pure: no root, no target). The rates
// themselves are growth-rate.ts's, tested against the t table in growth-rate.test.ts; here the
// ground truth is the series each case is built from.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TriggerGate, WorkerGrowth, parseTriggerThresholds, seriesKey } from './watch-growth.js';
import type { GrowthSeries } from '../contract/watch.js';
import { isLeakscopeError } from '../model/errors.js';

const MiB = 1 << 20;
const leak: GrowthSeries = { kind: 'pool', owner: 'static', module: 'ngx_http_leak_module' };
const bucket: GrowthSeries = { kind: 'bucket', minBytes: 262144 };
const heap: GrowthSeries = { kind: 'category', category: 'glibc-main-heap' };

test('a steady 1 MiB/minute series: rate 60 MiB/hour, above a 10 MiB/hour trigger', () => {
  const g = new WorkerGrowth({ windowSeconds: 3600, maxPoints: 360 });
  let last = g.add(0, [{ series: leak, bytes: 0 }]);
  for (let i = 1; i <= 10; i++) last = g.add(i * 60, [{ series: leak, bytes: i * MiB + (i % 2) * 1000 }]);
  const r = last.find((x) => seriesKey(x.series) === seriesKey(leak))!;
  assert.ok(Math.abs(r.bytesPerHour - 60 * MiB) < 0.01 * 60 * MiB, `${r.bytesPerHour}`);
  assert.ok(r.lowBytesPerHour <= r.bytesPerHour && r.bytesPerHour <= r.highBytesPerHour);
  assert.equal(r.samples, 11);
  const c = g.candidates({ pool: 10 * MiB }, 5);
  assert.equal(c.length, 1);
  assert.deepEqual(c[0]!.series, leak);
  assert.deepEqual(g.candidates({ pool: 100 * MiB }, 5), [], '60 MiB/h is below a 100 MiB/h trigger');
  assert.deepEqual(g.candidates({ bucket: 1 }, 5), [], 'no threshold for pools: no trigger');
  assert.deepEqual(g.candidates({ pool: 10 * MiB }, 20), [], 'too few samples');
});

test('a one-off step, a flat series and noise do not trigger', () => {
  const g = new WorkerGrowth({ windowSeconds: 3600, maxPoints: 360 });
  const noise = [3, -1, 4, -1, -5, 9, -2, 6, -5, 3, -5, 8, -9, 7, -9, 3, -2, 3, -8, 4];
  for (let i = 0; i < 20; i++) {
    g.add(i * 60, [
      { series: leak, bytes: i < 5 ? 0 : 100 * MiB }, // step at minute 5, then flat
      { series: heap, bytes: 50 * MiB }, // flat
      { series: bucket, bytes: 10 * MiB + noise[i]! * 100 * 1024 }, // noise around a level
    ]);
  }
  assert.deepEqual(g.candidates({ pool: 1, bucket: 1, category: 1 }, 5), []);
});

test('an absent bucket counts as empty; an absent pool group has no point; the window is bounded', () => {
  const g = new WorkerGrowth({ windowSeconds: 100, maxPoints: 5 });
  g.add(0, [
    { series: bucket, bytes: 1000 },
    { series: leak, bytes: 1000 },
  ]);
  g.add(10, [
    { series: bucket, bytes: 2000 },
    { series: leak, bytes: 2000 },
  ]);
  const r = g.add(20, []);
  assert.deepEqual(r, [], 'rates only for series present in this census');
  assert.equal(g.size(), 3 + 2, 'bucket got a 0 point, the pool group none');
  g.add(25, [], new Set(['category']));
  assert.equal(g.size(), 5, 'a census that measured no bucket adds no bucket point');
  for (let t = 30; t <= 300; t += 10) g.add(t, [{ series: bucket, bytes: t }]);
  assert.equal(g.size(), 5, 'at most maxPoints; the pool group is forgotten after a window unseen');
});

test('the gate: one analysis at a time, at most one start per cooldown', () => {
  const gate = new TriggerGate(3600);
  assert.equal(gate.decide(1000), 'run');
  gate.started(1000);
  assert.equal(gate.decide(1001), 'busy');
  gate.finished();
  assert.equal(gate.decide(1002), 'cooldown');
  assert.equal(gate.decide(4599), 'cooldown');
  assert.equal(gate.decide(4600), 'run');
});

test('--trigger thresholds', () => {
  assert.deepEqual(parseTriggerThresholds('10Mi'), { bucket: 10 * MiB, pool: 10 * MiB, category: 10 * MiB });
  assert.deepEqual(parseTriggerThresholds('module=5Mi,rss=1Gi'), { pool: 5 * MiB, category: 1 << 30 });
  assert.deepEqual(parseTriggerThresholds('bucket=2048'), { bucket: 2048 });
  for (const bad of ['', 'x=1', 'module=', '5 MB', 'module=-1']) {
    assert.throws(
      () => parseTriggerThresholds(bad),
      (e) => isLeakscopeError(e) && e.code === 'usage',
      bad,
    );
  }
});
