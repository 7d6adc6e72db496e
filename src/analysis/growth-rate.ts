// Growth judged as a rate over the observed time: ordinary least squares over a time series of
// (seconds, bytes), the slope's confidence interval from Student's t distribution, and an
// extrapolation to bytes per hour. Pure: no I/O, no clock. Used by the verdict (outstanding bytes
// per call path per second) and by `watch` (RSS / category samples over time).

/** One observation: `seconds` since any fixed origin, `bytes` outstanding (or resident) then. */
export interface RatePoint {
  seconds: number;
  bytes: number;
}

export interface GrowthRate {
  /** Points used (finite ones only). */
  samples: number;
  /** Last minus first time, seconds. */
  spanSeconds: number;
  /** Least-squares slope, bytes per second. */
  bytesPerSecond: number;
  /** Fitted bytes at the first point's time. */
  interceptBytes: number;
  /** Standard error of the slope, bytes per second (0 for a perfect line). */
  standardError: number;
  /** Two-sided confidence level of [low, high], e.g. 0.95. */
  confidence: number;
  /** Confidence interval of the slope, bytes per second. */
  lowBytesPerSecond: number;
  highBytesPerSecond: number;
  /** Slope and interval times 3600. */
  bytesPerHour: number;
  lowBytesPerHour: number;
  highBytesPerHour: number;
  /** Coefficient of determination, 0..1 (1 when bytes never vary: a flat line fits perfectly). */
  rSquared: number;
  /** Net change first -> last point, bytes. */
  netBytes: number;
}

/**
 * Least-squares slope of bytes over seconds with a two-sided `confidence` interval.
 * null when fewer than 3 finite points or all points share one time (no slope and no
 * degrees of freedom for an interval).
 */
export function growthRate(points: readonly RatePoint[], confidence = 0.95): GrowthRate | null {
  if (!(confidence > 0 && confidence < 1)) throw new RangeError(`confidence ${confidence} not in (0, 1)`);
  const pts = points.filter((p) => Number.isFinite(p.seconds) && Number.isFinite(p.bytes));
  const n = pts.length;
  if (n < 3) return null;
  let t0 = Infinity;
  let t1 = -Infinity;
  let mx = 0;
  let my = 0;
  for (const p of pts) {
    t0 = Math.min(t0, p.seconds);
    t1 = Math.max(t1, p.seconds);
    mx += p.seconds;
    my += p.bytes;
  }
  mx /= n;
  my /= n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (const p of pts) {
    const dx = p.seconds - mx;
    const dy = p.bytes - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  if (!(sxx > 0)) return null;
  const slope = sxy / sxx;
  const intercept = my - slope * mx; // at seconds = 0
  // Residual sum of squares; clamp rounding below zero.
  const sse = Math.max(0, syy - slope * sxy);
  const df = n - 2;
  const standardError = Math.sqrt(sse / df / sxx);
  const t = studentTQuantile(1 - (1 - confidence) / 2, df);
  const half = t * standardError;
  const first = pts.reduce((a, p) => (p.seconds < a.seconds ? p : a));
  const last = pts.reduce((a, p) => (p.seconds >= a.seconds ? p : a));
  return {
    samples: n,
    spanSeconds: t1 - t0,
    bytesPerSecond: slope,
    interceptBytes: intercept + slope * t0,
    standardError,
    confidence,
    lowBytesPerSecond: slope - half,
    highBytesPerSecond: slope + half,
    bytesPerHour: slope * 3600,
    lowBytesPerHour: (slope - half) * 3600,
    highBytesPerHour: (slope + half) * 3600,
    rSquared: syy > 0 ? Math.min(1, Math.max(0, 1 - sse / syy)) : 1,
    netBytes: last.bytes - first.bytes,
  };
}

/** Bytes the fitted line adds over `seconds` more at the fitted rate. */
export function extrapolateBytes(rate: GrowthRate, seconds: number): number {
  return rate.bytesPerSecond * seconds;
}

export interface SteadyGrowthOptions {
  /** Fewest points to decide on (default 5). */
  minSamples?: number;
  /** Shortest observed span, seconds (default 3). */
  minSpanSeconds?: number;
  /** The interval's low end must be at least this, bytes per hour (default 0: significantly > 0). */
  minBytesPerHour?: number;
  /** Least R² (default 0.6): growth that is a line, not a step or noise. */
  minRSquared?: number;
  /** The later half must still grow at no less than this share of the whole slope (default 0.25):
   *  a cache that filled early and then stayed full is not steady growth. */
  minLateShare?: number;
}

export interface SteadyGrowthDecision {
  steady: boolean;
  /** Why not, in words (empty when steady). */
  reasons: string[];
  rate: GrowthRate | null;
  /** Slope over the later half of the span (null when too few points there). */
  lateRate: GrowthRate | null;
}

/**
 * Does the series grow steadily: enough points over enough time, a slope whose whole confidence
 * interval lies above `minBytesPerHour`, a good linear fit, and still growing in the later half.
 */
export function growsSteadily(
  points: readonly RatePoint[],
  options: SteadyGrowthOptions = {},
  confidence = 0.95,
): SteadyGrowthDecision {
  const minSamples = options.minSamples ?? 5;
  const minSpan = options.minSpanSeconds ?? 3;
  const minPerHour = options.minBytesPerHour ?? 0;
  const minR2 = options.minRSquared ?? 0.6;
  const minLate = options.minLateShare ?? 0.25;
  const rate = growthRate(points, confidence);
  const reasons: string[] = [];
  if (!rate) return { steady: false, reasons: ['fewer than 3 points over time'], rate: null, lateRate: null };
  if (rate.samples < minSamples) reasons.push(`${rate.samples} points < ${minSamples}`);
  if (rate.spanSeconds < minSpan) reasons.push(`span ${rate.spanSeconds.toFixed(1)} s < ${minSpan} s`);
  if (!(rate.lowBytesPerHour > minPerHour))
    reasons.push(`slope interval low end ${Math.round(rate.lowBytesPerHour)} B/h not above ${minPerHour} B/h`);
  if (rate.rSquared < minR2) reasons.push(`R² ${rate.rSquared.toFixed(2)} < ${minR2}`);
  const finite = points.filter((p) => Number.isFinite(p.seconds) && Number.isFinite(p.bytes));
  const mid = finite.reduce((a, p) => Math.min(a, p.seconds), Infinity) + rate.spanSeconds / 2;
  const lateRate = growthRate(
    finite.filter((p) => p.seconds >= mid),
    confidence,
  );
  if (lateRate && rate.bytesPerSecond > 0 && lateRate.bytesPerSecond < minLate * rate.bytesPerSecond) {
    reasons.push(
      `later half grows ${Math.round(lateRate.bytesPerSecond)} B/s < ${minLate} x ${Math.round(rate.bytesPerSecond)} B/s`,
    );
  }
  return { steady: reasons.length === 0, reasons, rate, lateRate };
}

/** "+1.2 MiB/hour" style text for a byte-per-hour figure. */
export function formatRatePerHour(bytesPerHour: number): string {
  const sign = bytesPerHour < 0 ? '-' : '+';
  let v = Math.abs(bytesPerHour);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${sign}${v < 10 && u > 0 ? v.toFixed(1) : Math.round(v)} ${units[u]}/hour`;
}

// ---- Student's t distribution ----

/** Quantile of Student's t with `df` degrees of freedom: x with P(T <= x) = p. Bisection on the CDF. */
export function studentTQuantile(p: number, df: number): number {
  if (!(p > 0 && p < 1)) throw new RangeError(`p ${p} not in (0, 1)`);
  if (!(df > 0)) throw new RangeError(`df ${df} not positive`);
  if (p === 0.5) return 0;
  if (p < 0.5) return -studentTQuantile(1 - p, df);
  let lo = 0;
  let hi = 1;
  while (studentTCdf(hi, df) < p) {
    hi *= 2;
    if (hi > 1e12) return Infinity;
  }
  for (let i = 0; i < 200 && hi - lo > 1e-12 * Math.max(1, hi); i++) {
    const m = (lo + hi) / 2;
    if (studentTCdf(m, df) < p) lo = m;
    else hi = m;
  }
  return (lo + hi) / 2;
}

/** P(T <= t) for Student's t with `df` degrees of freedom, via the regularized incomplete beta. */
export function studentTCdf(t: number, df: number): number {
  if (t === 0) return 0.5;
  const x = df / (df + t * t);
  const tail = 0.5 * regularizedIncompleteBeta(x, df / 2, 0.5);
  return t > 0 ? 1 - tail : tail;
}

// Lanczos approximation (g = 7, n = 9), as in Numerical Recipes 3rd ed. §6.1.
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
  12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
];
function logGamma(z: number): number {
  if (z < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * z)) - logGamma(1 - z);
  z -= 1;
  let x = LANCZOS[0];
  for (let i = 1; i < 9; i++) x += LANCZOS[i] / (z + i);
  const t = z + 7.5;
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(x);
}

/** I_x(a, b), Numerical Recipes §6.4 (continued fraction by the modified Lentz method). */
function regularizedIncompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lbt = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x);
  const bt = Math.exp(lbt);
  if (x < (a + 1) / (a + b + 2)) return (bt * betaContinuedFraction(x, a, b)) / a;
  return 1 - (bt * betaContinuedFraction(1 - x, b, a)) / b;
}

function betaContinuedFraction(x: number, a: number, b: number): number {
  const TINY = 1e-300;
  const qab = a + b;
  const qap = a + 1;
  const qam = a - 1;
  let c = 1;
  let d = 1 - (qab * x) / qap;
  if (Math.abs(d) < TINY) d = TINY;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 300; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (qab + m) * x) / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < TINY) d = TINY;
    c = 1 + aa / c;
    if (Math.abs(c) < TINY) c = TINY;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 3e-16) break;
  }
  return h;
}
