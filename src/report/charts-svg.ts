// Inline SVG bar charts for the HTML report: a stacked bar (shares of a whole), labelled
// horizontal bars (with group headings), and a chunk-size histogram (power-of-two buckets,
// linear or log scale, optional baseline series, one bucket marked).
//
// Pure functions: data in, one `<svg>` element out (no XML declaration, no script, no external
// resource), so a chart works inline in HTML and as a standalone .svg file. Sizes are CSS
// pixels of the viewBox; the page scales the chart with `width: 100%; height: auto`.
// Every label may come from the target (zone names, paths): all text and attribute values go
// through `escapeXml`; colours and ids are checked against fixed patterns.

import { LeakscopeError } from '../model/errors.js';
import { escapeXml } from './html-escape.js';

export const CHART_FONT = `system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif`;
const TEXT = '#1f2328';
const MUTED = '#59636e';
const GRID = '#e6e9ed';
const AXIS = '#8c959f';

/** 262144 -> "256 KiB", 1572864 -> "1.5 MiB", 1000 -> "1000 B": at most 3 significant digits, no trailing zeros. */
export function shortBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const s = i === 0 || v >= 100 ? String(Math.round(v)) : String(Number(v.toPrecision(3)));
  return `${n < 0 ? '-' : ''}${s} ${units[i]}`;
}

/** The label of a chunk-size bucket `[minBytes, maxBytes)`: "256 KiB – 512 KiB" (en dash). */
export function bucketLabel(minBytes: number, maxBytes: number): string {
  return `${shortBytes(minBytes)} \u2013 ${shortBytes(maxBytes)}`;
}

/** 12345 -> "12,345"; 1234567 -> "1.23 M" when `compact`. */
export function formatCount(n: number, compact = false): string {
  if (compact && Math.abs(n) >= 10_000) {
    const units = ['', 'k', 'M', 'G', 'T'];
    let v = Math.abs(n);
    let i = 0;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i++;
    }
    return `${n < 0 ? '-' : ''}${v >= 100 ? Math.round(v) : Number(v.toPrecision(3))}${units[i]}`;
  }
  return Math.round(n).toLocaleString('en-US');
}

function checkColor(c: string): string {
  if (!/^#[0-9a-fA-F]{3}(?:[0-9a-fA-F]{3})?$/.test(c))
    throw new LeakscopeError('usage', `chart colour ${JSON.stringify(c)}; expected #rgb or #rrggbb`);
  return c;
}

function checkWidth(w: number): number {
  if (!Number.isFinite(w) || w < 200 || w > 10_000)
    throw new LeakscopeError('usage', `chart width ${w}; expected 200..10000 px`);
  return w;
}

/** Black or white text, whichever reads better on `bg` (WCAG relative luminance). */
export function textColorOn(bg: string): string {
  const h = checkColor(bg).slice(1);
  const full = h.length === 3 ? [...h].map((c) => c + c).join('') : h;
  const lin = (i: number) => {
    const c = parseInt(full.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  };
  const l = 0.2126 * lin(0) + 0.7152 * lin(2) + 0.0722 * lin(4);
  return l > 0.36 ? TEXT : '#ffffff';
}

const n2 = (v: number) => String(Math.round(v * 100) / 100);
const finite = (v: number) => (Number.isFinite(v) && v > 0 ? v : 0);

function svgOpen(width: number, height: number, ariaLabel: string, cls: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" class="${escapeXml(cls)}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
    `role="img" aria-label="${escapeXml(ariaLabel)}" font-family="${escapeXml(CHART_FONT)}" font-size="12">` +
    `<title>${escapeXml(ariaLabel)}</title>`
  );
}

// ---------------------------------------------------------------------------------------------
// Stacked bar

export interface BarSegment {
  /** Machine key, written to `data-key` (e.g. the category name). */
  key: string;
  label: string;
  value: number;
  /** #rgb or #rrggbb. */
  color: string;
  /** Tooltip; default "LABEL: VALUE (SHARE)". */
  title?: string;
}

export interface StackedBarOptions {
  width: number;
  /** Bar height (default 30). */
  height?: number;
  ariaLabel: string;
  /** Formats a value for tooltips and in-bar labels (default `shortBytes`). */
  format?: (v: number) => string;
  /** The whole the shares are of (default: the sum of the segments). */
  total?: number;
}

/** One horizontal bar split into segments proportional to their values; shares printed inside wide segments. */
export function stackedBarSvg(segments: readonly BarSegment[], opts: StackedBarOptions): string {
  const width = checkWidth(opts.width);
  const h = opts.height ?? 30;
  const fmt = opts.format ?? shortBytes;
  const sum = segments.reduce((s, g) => s + finite(g.value), 0);
  const total = Math.max(finite(opts.total ?? sum), sum);
  const out = [svgOpen(width, h, opts.ariaLabel, 'chart chart-stacked')];
  out.push(`<rect x="0" y="0" width="${width}" height="${h}" rx="4" fill="${GRID}"/>`);
  if (total > 0) {
    out.push(`<g class="segments">`);
    let x = 0;
    for (const s of segments) {
      const v = finite(s.value);
      if (v <= 0) continue;
      const w = (v / total) * width;
      const share = `${((v / total) * 100).toFixed(1)}%`;
      const title = s.title ?? `${s.label}: ${fmt(v)} (${share})`;
      const color = checkColor(s.color);
      out.push(
        `<g class="segment" data-key="${escapeXml(s.key)}"><title>${escapeXml(title)}</title>` +
          `<rect x="${n2(x)}" y="0" width="${n2(w)}" height="${h}" fill="${color}" stroke="#ffffff" stroke-width="1"/>` +
          (w >= 44
            ? `<text x="${n2(x + w / 2)}" y="${n2(h / 2 + 4)}" text-anchor="middle" fill="${textColorOn(color)}" font-weight="600">${escapeXml(share)}</text>`
            : '') +
          `</g>`,
      );
      x += w;
    }
    out.push(`</g>`);
  }
  out.push(`</svg>`);
  return out.join('');
}

// ---------------------------------------------------------------------------------------------
// Horizontal bars

export type HBarRow =
  | { kind: 'heading'; label: string; valueLabel: string }
  | {
      kind?: 'bar';
      key: string;
      label: string;
      value: number;
      valueLabel: string;
      color: string;
      title?: string;
      indent?: boolean;
    };

export interface HBarsOptions {
  width: number;
  ariaLabel: string;
  /** Width of the label column (default 190). */
  labelWidth?: number;
  /** Width of the value column on the right (default 150). */
  valueWidth?: number;
  /** The value a full-length bar stands for (default: the largest bar). */
  max?: number;
}

const ROW_H = 26;

/** Labelled horizontal bars, one a row, with optional heading rows grouping the bars below them. */
export function horizontalBarsSvg(rows: readonly HBarRow[], opts: HBarsOptions): string {
  const width = checkWidth(opts.width);
  const labelW = opts.labelWidth ?? 190;
  const valueW = opts.valueWidth ?? 150;
  const barW = width - labelW - valueW;
  const bars = rows.filter((r): r is Extract<HBarRow, { key: string }> => r.kind !== 'heading');
  const max = Math.max(finite(opts.max ?? 0), ...bars.map((b) => finite(b.value)), 0);
  const height = rows.length * ROW_H + 4;
  const out = [svgOpen(width, height, opts.ariaLabel, 'chart chart-hbars')];
  rows.forEach((r, i) => {
    const y = i * ROW_H + 2;
    const mid = y + ROW_H / 2 + 4;
    if (r.kind === 'heading') {
      out.push(
        `<g class="hbar-heading"><text x="0" y="${mid}" fill="${TEXT}" font-weight="600">${escapeXml(r.label)}</text>` +
          `<text x="${width}" y="${mid}" text-anchor="end" fill="${TEXT}" font-weight="600">${escapeXml(r.valueLabel)}</text>` +
          `<line x1="0" x2="${width}" y1="${y + ROW_H - 1.5}" y2="${y + ROW_H - 1.5}" stroke="${GRID}"/></g>`,
      );
      return;
    }
    const v = finite(r.value);
    const w = max > 0 ? Math.max(v > 0 ? 2 : 0, (v / max) * barW) : 0;
    const title = r.title ?? `${r.label}: ${r.valueLabel}`;
    out.push(
      `<g class="hbar" data-key="${escapeXml(r.key)}"><title>${escapeXml(title)}</title>` +
        `<text x="${r.indent ? 14 : 0}" y="${mid}" fill="${TEXT}">${escapeXml(r.label)}</text>` +
        `<rect x="${labelW}" y="${y + 5}" width="${n2(barW)}" height="${ROW_H - 10}" rx="3" fill="#f3f4f6"/>` +
        `<rect x="${labelW}" y="${y + 5}" width="${n2(w)}" height="${ROW_H - 10}" rx="3" fill="${checkColor(r.color)}"/>` +
        `<text x="${width}" y="${mid}" text-anchor="end" fill="${MUTED}" font-variant-numeric="tabular-nums">${escapeXml(r.valueLabel)}</text></g>`,
    );
  });
  out.push(`</svg>`);
  return out.join('');
}

// ---------------------------------------------------------------------------------------------
// Chunk-size histogram

export interface HistogramBucket {
  minBytes: number;
  maxBytes: number;
  /** The current value (in-use bytes, or chunks when `unit` is 'count'). */
  value: number;
  /** The baseline's value, when a comparison is drawn. */
  baseline?: number;
  /** Tooltip (default: the bucket label and the values). */
  title?: string;
}

export interface HistogramOptions {
  width: number;
  /** Total height (default 300). */
  height?: number;
  scale: 'linear' | 'log';
  unit: 'bytes' | 'count';
  ariaLabel: string;
  /** The bucket to mark (by its minBytes): shaded, coloured, and labelled with its range. */
  markedMinBytes?: number | null;
  /** Second line of the marked bucket's callout ("+2,240 chunks"). */
  markNote?: string;
  /** Legend names of the two series when baselines are drawn (default "baseline", "current"). */
  seriesLabels?: [string, string];
  /** Y axis title (default "in-use bytes" / "in-use chunks"). */
  yTitle?: string;
}

export const HIST_COLORS = {
  current: '#5b7fa6',
  baseline: '#c3ccd8',
  marked: '#d9482b',
  markedBand: '#fbe9e5',
} as const;

const LOG_STEPS_BYTES = [10, 5, 2, 1]; // tick every 2^(10k), 2^(5k), ...
function logTicks(lo: number, hi: number, unit: 'bytes' | 'count'): number[] {
  if (unit === 'bytes') {
    for (const step of LOG_STEPS_BYTES) {
      const ticks: number[] = [];
      for (let e = Math.ceil(Math.log2(lo) / step) * step; 2 ** e <= hi * 1.0001; e += step) ticks.push(2 ** e);
      if (ticks.length >= 3 || step === 1) return ticks;
    }
  }
  const ticks: number[] = [];
  for (let e = Math.ceil(Math.log10(lo)); 10 ** e <= hi * 1.0001; e++) ticks.push(10 ** e);
  return ticks;
}

function linearTicks(max: number, unit: 'bytes' | 'count'): number[] {
  if (max <= 0) return [0];
  const raw = max / 5;
  let step: number;
  if (unit === 'bytes') {
    const base = 1024 ** Math.max(0, Math.floor(Math.log(raw) / Math.log(1024)));
    const r = raw / base;
    step = ([1, 2, 5, 10, 20, 50, 100, 200, 500, 1024].find((m) => m >= r) ?? 1024) * base;
  } else {
    const base = 10 ** Math.floor(Math.log10(raw));
    step = ([1, 2, 5, 10].find((m) => m * base >= raw) ?? 10) * base;
    step = Math.max(1, step);
  }
  const ticks: number[] = [];
  for (let t = 0; t <= max + step * 0.999; t += step) ticks.push(t);
  return ticks;
}

/**
 * Vertical bars, one slot per bucket in the given order (ascending sizes); x labels are the
 * buckets' lower bounds. The marked bucket's group carries `class="hist-bucket is-marked"`,
 * `data-anomalous="true"` and `data-label="256 KiB – 512 KiB"`, and a callout with that label.
 */
export function histogramSvg(buckets: readonly HistogramBucket[], opts: HistogramOptions): string {
  const width = checkWidth(opts.width);
  const height = opts.height ?? 300;
  const fmt = (v: number) => (opts.unit === 'bytes' ? shortBytes(v) : formatCount(v, true));
  const fmtLong = (v: number) => (opts.unit === 'bytes' ? shortBytes(v) : `${formatCount(v)} chunks`);
  const paired = buckets.some((b) => b.baseline !== undefined);
  const left = 64;
  const right = 12;
  const top = paired ? 50 : 40;
  const bottom = 46;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const values = buckets.flatMap((b) => [finite(b.value), finite(b.baseline ?? 0)]);
  const max = Math.max(0, ...values);
  const out = [svgOpen(width, height, opts.ariaLabel, `chart chart-histogram scale-${opts.scale}`)];

  // y scale
  let y: (v: number) => number;
  let ticks: number[];
  if (opts.scale === 'log') {
    const positive = values.filter((v) => v > 0);
    const minPos = positive.length ? Math.min(...positive) : 1;
    const base = opts.unit === 'bytes' ? 2 : 10;
    const lo = Math.max(1, base ** Math.floor(Math.log(minPos) / Math.log(base)));
    const hi = Math.max(lo * base, max);
    const span = Math.log(hi) - Math.log(lo);
    // A positive value below lo still gets a visible sliver; 0 gets nothing.
    y = (v) => (v <= 0 ? 0 : Math.max(2, ((Math.log(Math.max(v, lo)) - Math.log(lo)) / span) * plotH));
    ticks = logTicks(lo, hi, opts.unit);
  } else {
    ticks = linearTicks(max, opts.unit);
    const hi = Math.max(1, ticks[ticks.length - 1]!);
    y = (v) => (v <= 0 ? 0 : Math.max(1.5, (v / hi) * plotH));
  }

  // grid and y axis labels
  out.push(`<g class="hist-axis-y" fill="${MUTED}" font-size="11">`);
  for (const t of ticks) {
    const ty = top + plotH - (t === 0 ? 0 : y(t));
    out.push(`<line x1="${left}" x2="${width - right}" y1="${n2(ty)}" y2="${n2(ty)}" stroke="${GRID}"/>`);
    out.push(`<text x="${left - 8}" y="${n2(ty + 4)}" text-anchor="end">${escapeXml(t === 0 ? '0' : fmt(t))}</text>`);
  }
  out.push(`</g>`);
  const yTitle = opts.yTitle ?? (opts.unit === 'bytes' ? 'in-use bytes' : 'in-use chunks');
  out.push(
    `<text x="${left}" y="${top - (paired ? 34 : 24)}" fill="${MUTED}" font-size="11">${escapeXml(`${yTitle}${opts.scale === 'log' ? ' (log scale)' : ''}`)}</text>`,
  );
  if (paired) {
    const [bl, cl] = opts.seriesLabels ?? ['baseline', 'current'];
    out.push(
      `<g class="hist-legend" font-size="11" fill="${TEXT}">` +
        `<rect x="${left}" y="${top - 24}" width="10" height="10" fill="${HIST_COLORS.baseline}"/><text x="${left + 15}" y="${top - 15}">${escapeXml(bl)}</text>` +
        `<rect x="${left + 110}" y="${top - 24}" width="10" height="10" fill="${HIST_COLORS.current}"/><text x="${left + 125}" y="${top - 15}">${escapeXml(cl)}</text>` +
        `</g>`,
    );
  }

  const n = Math.max(1, buckets.length);
  const slot = plotW / n;
  const labelEvery = Math.max(1, Math.ceil(46 / slot));
  const base = top + plotH;
  let callout = '';
  out.push(`<g class="hist-buckets">`);
  buckets.forEach((b, i) => {
    const x0 = left + i * slot;
    const marked =
      opts.markedMinBytes !== undefined && opts.markedMinBytes !== null && b.minBytes === opts.markedMinBytes;
    const label = bucketLabel(b.minBytes, b.maxBytes);
    const v = finite(b.value);
    const title =
      b.title ??
      (b.baseline !== undefined
        ? `${label}: ${fmtLong(v)} now, ${fmtLong(finite(b.baseline))} in the baseline`
        : `${label}: ${fmtLong(v)}`);
    const attrs = marked ? ` data-anomalous="true"` : '';
    const parts: string[] = [
      `<g class="hist-bucket${marked ? ' is-marked' : ''}" data-min-bytes="${b.minBytes}" data-label="${escapeXml(label)}"${attrs}><title>${escapeXml(title)}</title>`,
    ];
    // A transparent full-height hit area, so small bars still get their tooltip.
    parts.push(
      `<rect class="hist-hit" x="${n2(x0)}" y="${top}" width="${n2(slot)}" height="${plotH}" fill="${marked ? HIST_COLORS.markedBand : 'transparent'}"/>`,
    );
    const color = marked ? HIST_COLORS.marked : HIST_COLORS.current;
    if (b.baseline !== undefined) {
      const bw = slot * 0.36;
      const hb = y(finite(b.baseline));
      const hc = y(v);
      parts.push(
        `<rect class="hist-bar-baseline" x="${n2(x0 + slot * 0.12)}" y="${n2(base - hb)}" width="${n2(bw)}" height="${n2(hb)}" fill="${HIST_COLORS.baseline}"/>`,
      );
      parts.push(
        `<rect class="hist-bar" x="${n2(x0 + slot * 0.52)}" y="${n2(base - hc)}" width="${n2(bw)}" height="${n2(hc)}" fill="${color}"/>`,
      );
    } else {
      const hc = y(v);
      parts.push(
        `<rect class="hist-bar" x="${n2(x0 + slot * 0.15)}" y="${n2(base - hc)}" width="${n2(slot * 0.7)}" height="${n2(hc)}" fill="${color}" rx="1.5"/>`,
      );
    }
    if (i % labelEvery === 0 || marked) {
      parts.push(
        `<text class="hist-x" x="${n2(x0 + slot / 2)}" y="${base + 16}" text-anchor="middle" font-size="11" fill="${marked ? HIST_COLORS.marked : MUTED}"${marked ? ' font-weight="600"' : ''}>${escapeXml(shortBytes(b.minBytes))}</text>`,
      );
    }
    if (marked) {
      const barTop = base - Math.max(y(v), y(finite(b.baseline ?? 0)));
      const cx = x0 + slot / 2;
      const anchor = cx > width - 130 ? 'end' : cx < left + 90 ? 'start' : 'middle';
      const tx = anchor === 'end' ? x0 + slot : anchor === 'start' ? x0 : cx;
      const lines = opts.markNote ? 2 : 1;
      const ty = Math.max(top + 14, barTop - 8 - (lines - 1) * 15);
      // When the bar reaches the top, the callout sits inside the shaded band beside the bar.
      const inside = barTop - 8 - (lines - 1) * 15 < top + 14;
      const ax = inside ? (cx > width / 2 ? x0 - 4 : x0 + slot + 4) : tx;
      const an = inside ? (cx > width / 2 ? 'end' : 'start') : anchor;
      callout =
        `<g class="hist-mark" pointer-events="none">` +
        `<text class="hist-mark-label" x="${n2(ax)}" y="${n2(ty)}" text-anchor="${an}" fill="${HIST_COLORS.marked}" font-weight="700" font-size="13">${escapeXml(label)}</text>` +
        (opts.markNote
          ? `<text class="hist-mark-note" x="${n2(ax)}" y="${n2(ty + 15)}" text-anchor="${an}" fill="${HIST_COLORS.marked}" font-size="12">${escapeXml(opts.markNote)}</text>`
          : '') +
        `</g>`;
    }
    parts.push(`</g>`);
    out.push(parts.join(''));
  });
  out.push(`</g>`);
  out.push(`<line x1="${left}" x2="${width - right}" y1="${base}" y2="${base}" stroke="${AXIS}"/>`);
  out.push(
    `<text x="${left + plotW / 2}" y="${height - 8}" text-anchor="middle" fill="${MUTED}" font-size="11">chunk size (bucket lower bound; buckets are [2^k, 2^(k+1)) bytes)</text>`,
  );
  out.push(callout);
  out.push(`</svg>`);
  return out.join('');
}
