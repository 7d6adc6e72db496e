// growth-rate: least squares and Student's t against published reference values (no root, no I/O).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  growthRate,
  growsSteadily,
  studentTQuantile,
  studentTCdf,
  extrapolateBytes,
  formatRatePerHour,
  type RatePoint,
} from './growth-rate.js';

function near(actual: number, expected: number, tol: number, what: string): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (tol ${tol})`);
}

// Two-sided 95% / 99% critical values of Student's t (scipy.stats.t.ppf(0.975 / 0.995, df),
// which agree with any printed t table to its 3 decimals).
const T_TABLE: Array<[df: number, q975: number, q995: number]> = [
  [1, 12.706204736174694, 63.656741162871526],
  [2, 4.302652729749462, 9.924843200918287],
  [3, 3.1824463052837078, 5.840909309733355],
  [5, 2.5705818356363146, 4.032142983555228],
  [10, 2.228138851986274, 3.16927267261695],
  [18, 2.1009220402410382, 2.8784404727386077],
  [30, 2.0422724563012378, 2.7499956535672254],
  [100, 1.9839715185235518, 2.6258905214380173],
];

test('studentTQuantile matches the t table', () => {
  for (const [df, q975, q995] of T_TABLE) {
    near(studentTQuantile(0.975, df), q975, 1e-6 * q975, `t(0.975, ${df})`);
    near(studentTQuantile(0.995, df), q995, 1e-6 * q995, `t(0.995, ${df})`);
    near(studentTQuantile(0.025, df), -q975, 1e-6 * q975, `t(0.025, ${df})`);
    near(studentTCdf(q975, df), 0.975, 1e-9, `cdf(${q975}, ${df})`);
  }
  assert.equal(studentTQuantile(0.5, 7), 0);
  assert.throws(() => studentTQuantile(1, 3), RangeError);
  assert.throws(() => studentTQuantile(0.9, 0), RangeError);
});

test("growthRate on Anscombe's quartet I (slope 0.5001, intercept 3.0001, R² 0.6665, SE 0.1179)", () => {
  const x = [10, 8, 13, 9, 11, 14, 6, 4, 12, 7, 5];
  const y = [8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68];
  const r = growthRate(x.map((s, i) => ({ seconds: s, bytes: y[i] })));
  assert.ok(r);
  near(r.bytesPerSecond, 0.5000909090909091, 1e-12, 'slope');
  // interceptBytes is the fitted value at the first time (x = 4): intercept + 4 * slope.
  near(r.interceptBytes, 3.0000909090909103 + 4 * 0.5000909090909091, 1e-9, 'fitted at first time');
  near(r.rSquared, 0.666542459508775, 1e-12, 'R²');
  near(r.standardError, 0.11790550059563408, 1e-12, 'SE');
  const t = 2.262157162798205; // t(0.975, 9), scipy
  near(r.lowBytesPerSecond, 0.5000909090909091 - t * 0.11790550059563408, 1e-6, 'CI low');
  near(r.highBytesPerSecond, 0.5000909090909091 + t * 0.11790550059563408, 1e-6, 'CI high');
  assert.equal(r.samples, 11);
  assert.equal(r.spanSeconds, 10);
});

test('growthRate: too few points or one instant -> null; a perfect line has a zero-width interval', () => {
  assert.equal(growthRate([]), null);
  assert.equal(
    growthRate([
      { seconds: 0, bytes: 1 },
      { seconds: 1, bytes: 2 },
    ]),
    null,
  );
  assert.equal(
    growthRate([
      { seconds: 5, bytes: 1 },
      { seconds: 5, bytes: 2 },
      { seconds: 5, bytes: 3 },
    ]),
    null,
  );
  assert.equal(
    growthRate([
      { seconds: NaN, bytes: 1 },
      { seconds: 1, bytes: 2 },
      { seconds: 2, bytes: Infinity },
    ]),
    null,
  );
  const line = Array.from({ length: 21 }, (_, s) => ({ seconds: s, bytes: 1000 + 30_000 * s }));
  const r = growthRate(line)!;
  near(r.bytesPerSecond, 30_000, 1e-9, 'slope');
  near(r.lowBytesPerSecond, 30_000, 1e-6, 'low');
  near(r.bytesPerHour, 108_000_000, 1e-3, 'per hour');
  assert.equal(r.netBytes, 600_000);
  assert.equal(r.rSquared, 1);
  near(extrapolateBytes(r, 3600), 108_000_000, 1e-3, 'extrapolated');
  const flat = growthRate(Array.from({ length: 5 }, (_, s) => ({ seconds: s, bytes: 7 })))!;
  assert.equal(flat.bytesPerSecond, 0);
  assert.equal(flat.rSquared, 1);
});

// A deterministic noise source (LCG) so the churn cases are reproducible.
function noise(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

test('growsSteadily: table of series', () => {
  const rnd = noise(42);
  const cases: Array<{ name: string; points: RatePoint[]; steady: boolean }> = [
    {
      name: '30 KB/s leak under ±200 KB churn, 20 s',
      points: Array.from({ length: 21 }, (_, s) => ({ seconds: s, bytes: 5e6 + 30_000 * s + 400_000 * rnd() })),
      steady: true,
    },
    {
      name: 'churn only, ±200 KB around 5 MB',
      points: Array.from({ length: 21 }, (_, s) => ({ seconds: s, bytes: 5e6 + 400_000 * rnd() })),
      steady: false,
    },
    {
      name: 'cache filling for 5 s then full for 15 s',
      points: Array.from({ length: 21 }, (_, s) => ({ seconds: s, bytes: 1e6 * Math.min(s, 5) + 20_000 * rnd() })),
      steady: false,
    },
    {
      name: 'one step (a burst) halfway',
      points: Array.from({ length: 21 }, (_, s) => ({ seconds: s, bytes: (s < 10 ? 1e6 : 3e6) + 1000 * rnd() })),
      steady: false,
    },
    {
      name: 'shrinking',
      points: Array.from({ length: 21 }, (_, s) => ({ seconds: s, bytes: 9e6 - 50_000 * s })),
      steady: false,
    },
    {
      name: 'three points only',
      points: [0, 1, 2].map((s) => ({ seconds: s, bytes: 1000 * s })),
      steady: false,
    },
    {
      name: 'slow but perfectly steady 1 KB/s over 10 s',
      points: Array.from({ length: 11 }, (_, s) => ({ seconds: s, bytes: 1024 * s })),
      steady: true,
    },
  ];
  for (const c of cases) {
    const d = growsSteadily(c.points);
    assert.equal(d.steady, c.steady, `${c.name}: ${d.reasons.join('; ')}`);
    if (!d.steady) assert.ok(d.reasons.length > 0, c.name);
  }
  // A floor on the rate: 1 KB/s (3.6 MB/h) is not enough when 10 MB/h is asked for.
  const slow = Array.from({ length: 11 }, (_, s) => ({ seconds: s, bytes: 1024 * s }));
  assert.equal(growsSteadily(slow, { minBytesPerHour: 10e6 }).steady, false);
});

test('formatRatePerHour', () => {
  assert.equal(formatRatePerHour(108_000_000), '+103 MiB/hour');
  assert.equal(formatRatePerHour(5 * 1024 * 1024), '+5.0 MiB/hour');
  assert.equal(formatRatePerHour(-2048), '-2.0 KiB/hour');
  assert.equal(formatRatePerHour(12), '+12 B/hour');
});
