// The watch's Prometheus text (no root, no target): escaping of hostile label values, one family
// block per name, bounded series, a gone worker simply absent. promtool's own check of a real
// scrape is in src/cli/watch.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PrometheusText, escapeLabelValue, formatValue } from './prometheus-text.js';
import { bucketLabel, renderWatchMetrics } from './watch-metrics.js';
import { WATCH_SCHEMA } from '../contract/watch.js';
import type { WatchDocument, WatchWorker } from '../contract/watch.js';

function worker(pid: number, slot: string, module = 'ngx_http_leak_module'): WatchWorker {
  return {
    pid,
    worker: slot,
    command: 'nginx',
    startTimeSeconds: 1_700_000_000,
    census: {
      timestampSeconds: 1_700_000_100,
      durationSeconds: 0.05,
      phases: { memSeconds: 0.01, heapSeconds: 0.03, poolsSeconds: 0.01 },
      ok: true,
      errors: 0,
      lastError: null,
    },
    rss: [
      { category: 'glibc-main-heap', rssBytes: 4096 },
      { category: 'code', rssBytes: 8192 },
    ],
    glibc: {
      buckets: [{ minBytes: 262144, inUseChunks: 3, inUseBytes: 800000, freeChunks: 1, freeBytes: 270000 }],
      inUseBytes: 800000,
      freeBytes: 270000,
      topBytes: 1000,
      mmappedChunks: 0,
      mmappedBytes: 0,
      systemBytes: 2000000,
      arenas: 1,
      complete: true,
      inconsistencies: 0,
    },
    pools: {
      groups: [
        { owner: 'static', module, pools: 3, bytes: 250000 },
        { owner: 'cycle', module: 'unknown', pools: 1, bytes: 16384 },
      ],
      pools: 4,
      bytes: 266384,
    },
    lua: null,
    growth: [
      {
        series: { kind: 'pool', owner: 'static', module },
        bytesPerHour: 1e6,
        lowBytesPerHour: 5e5,
        highBytesPerHour: 1.5e6,
        samples: 10,
        spanSeconds: 9,
      },
      {
        series: { kind: 'bucket', minBytes: 262144 },
        bytesPerHour: 2e6,
        lowBytesPerHour: 1e6,
        highBytesPerHour: 3e6,
        samples: 10,
        spanSeconds: 9,
      },
    ],
  };
}

function doc(workers: WatchWorker[]): WatchDocument {
  return {
    schema: WATCH_SCHEMA,
    generatedAt: '2026-12-01T00:00:00Z',
    self: {
      startedAtSeconds: 1_700_000_000,
      intervalSeconds: 60,
      cycles: 3,
      cyclesDelayed: 0,
      lastCycleSeconds: 0.1,
      lastCycleCpuSeconds: 0.05,
      budget: 0.05,
      lastCycleDuty: 0.002,
      cpuSeconds: 1.5,
      residentBytes: 80e6,
      reports: 0,
      analysisRunning: false,
      triggersSuppressed: { cooldown: 0, busy: 0 },
      analysisErrors: 0,
    },
    workers,
    lastReport: null,
  };
}

/** name{labels} value lines, parsed back (labels unescaped). */
function parse(text: string): Array<{ name: string; labels: Record<string, string>; value: string }> {
  const out: Array<{ name: string; labels: Record<string, string>; value: string }> = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `sample line: ${line}`);
    const labels: Record<string, string> = {};
    let rest = m[2] ?? '';
    while (rest) {
      const l = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\[\\"n])*)",?/.exec(rest);
      assert.ok(l, `labels: ${m[2]}`);
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(l[0].length);
    }
    out.push({ name: m[1]!, labels, value: m[3]! });
  }
  return out;
}

test('bucket labels name the power-of-two range', () => {
  assert.equal(bucketLabel(16), '16B-32B');
  assert.equal(bucketLabel(512), '512B-1KiB');
  assert.equal(bucketLabel(262144), '256KiB-512KiB');
  assert.equal(bucketLabel(1 << 30), '1GiB-2GiB');
});

test('label values from the target are escaped and read back intact', () => {
  const hostile = 'evil"} leakscope_fake 1\n# TYPE x counter\\';
  const text = renderWatchMetrics(doc([worker(10, '0', hostile)]));
  const s = parse(text).filter((x) => x.name === 'leakscope_nginx_pool_bytes' && x.labels.owner === 'static');
  assert.equal(s.length, 1);
  assert.equal(s[0]!.labels.module, hostile);
  assert.ok(!text.split('\n').some((l) => l.startsWith('leakscope_fake')), 'no injected sample line');
  assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
});

test('one HELP / TYPE block per family, each family contiguous, no duplicate series', () => {
  const text = renderWatchMetrics(doc([worker(10, '0'), worker(11, '1')]));
  const lines = text.split('\n').filter(Boolean);
  const typeLines = lines.filter((l) => l.startsWith('# TYPE '));
  const names = typeLines.map((l) => l.split(' ')[2]!);
  assert.equal(new Set(names).size, names.length, 'each family declared once');
  let current = '';
  const seen = new Set<string>(),
    closed = new Set<string>();
  for (const l of lines) {
    if (l.startsWith('# TYPE ')) {
      if (current) closed.add(current);
      current = l.split(' ')[2]!;
      continue;
    }
    if (l.startsWith('#')) continue;
    const name = /^[^{ ]+/.exec(l)![0];
    assert.equal(name, current, `sample ${l} inside family ${current}`);
    assert.ok(!closed.has(name));
    assert.ok(!seen.has(l.replace(/ \S+$/, '')), `duplicate series ${l}`);
    seen.add(l.replace(/ \S+$/, ''));
  }
  for (const n of names) {
    assert.match(n, /^leakscope_/);
    if (typeLines.find((l) => l.split(' ')[2] === n)!.endsWith('counter')) assert.match(n, /_total$/);
  }
  const samples = parse(text);
  assert.deepEqual([...new Set(samples.filter((s) => s.labels.pid).map((s) => s.labels.pid))].sort(), ['10', '11']);
  const rss = samples.filter((s) => s.name === 'leakscope_rss_bytes' && s.labels.pid === '11');
  assert.deepEqual(
    rss.map((s) => [s.labels.category, s.value]),
    [
      ['glibc-main-heap', '4096'],
      ['code', '8192'],
    ],
  );
  const growth = samples.filter((s) => s.name === 'leakscope_growth_bytes_per_hour' && s.labels.pid === '10');
  assert.deepEqual(
    growth.map((s) => s.labels.module ?? s.labels.bucket),
    ['ngx_http_leak_module', '256KiB-512KiB'],
  );
});

test('a gone worker is absent from the text (its series go stale)', () => {
  const text = renderWatchMetrics(doc([worker(11, '1')]));
  assert.ok(!parse(text).some((s) => s.labels.pid === '10'));
  assert.ok(parse(text).some((s) => s.name === 'leakscope_watch_workers' && s.value === '1'));
});

test('the last report is one verdict series', () => {
  const d = doc([worker(10, '0')]);
  d.lastReport = {
    directory: '/r/x',
    pid: 10,
    worker: '0',
    timestampSeconds: 1_700_000_200,
    trigger: { kind: 'pool', owner: 'static', module: 'm' },
    triggerBytesPerHour: 1e6,
    verdict: 'leak',
    module: 'ngx_http_leak_module',
    bucketMinBytes: 262144,
    function: 'f',
    confidence: 'high',
    summary: 's',
  };
  const v = parse(renderWatchMetrics(d)).filter((s) => s.name === 'leakscope_last_report_verdict');
  assert.deepEqual(v, [
    {
      name: 'leakscope_last_report_verdict',
      labels: { pid: '10', worker: '0', verdict: 'leak', module: 'ngx_http_leak_module', bucket: '256KiB-512KiB' },
      value: '1',
    },
  ]);
});

test('names and values follow the exposition format', () => {
  const p = new PrometheusText();
  assert.throws(() => p.family('bad-name', 'gauge', 'x'));
  assert.throws(() => p.family('leakscope_x', 'counter', 'x'), /_total/);
  assert.throws(() => p.family('leakscope_y', 'gauge', 'x')({ 'bad-label': 1 }, 1));
  assert.equal(formatValue(NaN), 'NaN');
  assert.equal(formatValue(Infinity), '+Inf');
  assert.equal(formatValue(-Infinity), '-Inf');
  assert.equal(formatValue(0.25), '0.25');
  const q = new PrometheusText();
  q.family('leakscope_empty', 'gauge', 'never sampled');
  q.family('leakscope_help', 'gauge', 'a \\ b\nc')({}, 1);
  assert.equal(q.text(), '# HELP leakscope_help a \\\\ b\\nc\n# TYPE leakscope_help gauge\nleakscope_help 1\n');
});
