// Growth over time for `leakscope watch`: per followed worker and series (chunk-size bucket, pool
// group, RSS category) a bounded window of (seconds, bytes) points, the rate fitted by
// growth-rate.ts (the same least squares and confidence interval as analyze's verdict), and the
// trigger decision: a series whose growth is steady with the interval's low end above the
// --trigger threshold of its kind. The gate allows one analysis at a time, at most one per
// cooldown. Pure: time is passed in.

import { growsSteadily, growthRate } from './growth-rate.js';
import type { RatePoint } from './growth-rate.js';
import type { GrowthSeries, WatchGrowth } from '../contract/watch.js';
import { LeakscopeError } from '../model/errors.js';

export interface GrowthWindow {
  /** Points older than this before the newest are dropped, seconds. */
  windowSeconds: number;
  /** At most this many points per series (oldest dropped first). */
  maxPoints: number;
}

/** Trigger thresholds by series kind, bytes per hour (absent: that kind never triggers). */
export type TriggerThresholds = Partial<Record<GrowthSeries['kind'], number>>;

export interface TriggerCandidate {
  series: GrowthSeries;
  bytesPerHour: number;
  lowBytesPerHour: number;
  threshold: number;
}

export function seriesKey(s: GrowthSeries): string {
  switch (s.kind) {
    case 'bucket':
      return `bucket:${s.minBytes}`;
    case 'pool':
      return `pool:${s.owner}:${s.module}`;
    case 'category':
      return `category:${s.category}`;
  }
}

interface Series {
  series: GrowthSeries;
  points: RatePoint[];
  lastSeen: number;
}

/** How a series that a census did not list counts: an empty bucket or category is 0 bytes; a pool
 *  group past the top N (or gone) is unknown, so it gets no point. */
function absentIsZero(s: GrowthSeries): boolean {
  return s.kind !== 'pool';
}

/** The windows of one worker. */
export class WorkerGrowth {
  private series = new Map<string, Series>();

  constructor(private readonly window: GrowthWindow) {}

  /**
   * Adds one census's points at time `seconds`. `observed`: the kinds this census measured (a
   * failed heap walk measured no bucket: its buckets get no point rather than a false 0).
   * Returns the rates of the series present now.
   */
  add(
    seconds: number,
    points: ReadonlyArray<{ series: GrowthSeries; bytes: number }>,
    observed?: ReadonlySet<GrowthSeries['kind']>,
  ): WatchGrowth[] {
    const seen = new Set<string>();
    for (const p of points) {
      const key = seriesKey(p.series);
      if (seen.has(key)) continue;
      seen.add(key);
      let s = this.series.get(key);
      if (!s) {
        s = { series: p.series, points: [], lastSeen: seconds };
        this.series.set(key, s);
      }
      s.points.push({ seconds, bytes: p.bytes });
      s.lastSeen = seconds;
    }
    for (const [key, s] of this.series) {
      if (!seen.has(key) && absentIsZero(s.series) && (!observed || observed.has(s.series.kind)))
        s.points.push({ seconds, bytes: 0 });
      // Trim the window; forget series not seen for a whole window.
      const from = seconds - this.window.windowSeconds;
      let drop = 0;
      while (
        drop < s.points.length &&
        (s.points[drop]!.seconds < from || s.points.length - drop > this.window.maxPoints)
      )
        drop++;
      if (drop) s.points.splice(0, drop);
      if (s.lastSeen < from || !s.points.length) this.series.delete(key);
    }
    const out: WatchGrowth[] = [];
    for (const [key, s] of this.series) {
      if (!seen.has(key)) continue;
      const r = growthRate(s.points);
      if (!r) continue;
      out.push({
        series: s.series,
        bytesPerHour: r.bytesPerHour,
        lowBytesPerHour: r.lowBytesPerHour,
        highBytesPerHour: r.highBytesPerHour,
        samples: r.samples,
        spanSeconds: r.spanSeconds,
      });
    }
    return out;
  }

  /** Series whose growth is steady (growsSteadily) with the interval's low end above their kind's threshold, largest excess first. */
  candidates(thresholds: TriggerThresholds, minSamples: number): TriggerCandidate[] {
    const out: TriggerCandidate[] = [];
    for (const s of this.series.values()) {
      const threshold = thresholds[s.series.kind];
      if (threshold === undefined || s.points.length < minSamples) continue;
      const d = growsSteadily(s.points, { minSamples, minBytesPerHour: threshold, minSpanSeconds: 0 });
      if (d.steady && d.rate)
        out.push({
          series: s.series,
          bytesPerHour: d.rate.bytesPerHour,
          lowBytesPerHour: d.rate.lowBytesPerHour,
          threshold,
        });
    }
    return out.sort((a, b) => b.lowBytesPerHour - b.threshold - (a.lowBytesPerHour - a.threshold));
  }

  /** Points held (for the bounded-memory check). */
  size(): number {
    let n = 0;
    for (const s of this.series.values()) n += s.points.length;
    return n;
  }
}

export type GateDecision = 'run' | 'cooldown' | 'busy';

/** One analysis at a time, at most one start per `cooldownSeconds`. */
export class TriggerGate {
  private lastStart = -Infinity;
  private running = false;

  constructor(private readonly cooldownSeconds: number) {}

  decide(nowSeconds: number): GateDecision {
    if (this.running) return 'busy';
    if (nowSeconds - this.lastStart < this.cooldownSeconds) return 'cooldown';
    return 'run';
  }

  started(nowSeconds: number): void {
    this.lastStart = nowSeconds;
    this.running = true;
  }
  finished(): void {
    this.running = false;
  }
  get isRunning(): boolean {
    return this.running;
  }
}

/** "module=5Mi,bucket=20Mi,category=100Mi" or one value for every kind; sizes with Ki/Mi/Gi suffixes, bytes per hour. */
export function parseTriggerThresholds(text: string): TriggerThresholds {
  const bad = (why: string) => new LeakscopeError('usage', `--trigger: ${why}`);
  const kinds: Array<GrowthSeries['kind']> = ['bucket', 'pool', 'category'];
  const aliases: Record<string, GrowthSeries['kind']> = {
    bucket: 'bucket',
    pool: 'pool',
    pools: 'pool',
    module: 'pool',
    category: 'category',
    rss: 'category',
  };
  const out: TriggerThresholds = {};
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const m = /^(?:([a-z]+)=)?([0-9]*\.?[0-9]+)\s*(Ki|Mi|Gi)?$/.exec(part);
    if (!m)
      throw bad(`cannot read ${JSON.stringify(part)}: expected [bucket=|module=|rss=]BYTES_PER_HOUR (e.g. module=5Mi)`);
    const value = Number(m[2]) * ({ Ki: 1024, Mi: 1 << 20, Gi: 1 << 30 }[m[3] as 'Ki'] ?? 1);
    if (m[1] === undefined) {
      for (const k of kinds) out[k] = value;
      continue;
    }
    const kind = aliases[m[1]];
    if (!kind) throw bad(`unknown series kind ${JSON.stringify(m[1])} (bucket, module, rss)`);
    out[kind] = value;
  }
  if (!Object.keys(out).length) throw bad('no threshold given');
  return out;
}
