// `leakscope analyze --html FILE`: one self-contained HTML page rendering a `leakscope.analyze/1`
// document: the conclusion up top, then one section per step (finding, evidence, status) with
// the pictures that step calls for (memory breakdown, allocator split, pool groups, chunk-size
// histogram, leak flame graph and top stacks), and the whole document embedded as JSON with a
// download link built from it.
//
// Self-contained: inline CSS and scripts, inline SVG, no fonts, images or requests; a
// Content-Security-Policy with `default-src 'none'` and the SHA-256 of each of our inline
// scripts keeps it that way (and would block any script that got in some other way).
// Safety: every string from the target (symbol, module, zone and path names, the target
// description) goes through `escapeHtml` / `escapeXml`; the JSON goes through `jsonForScript`;
// the page's script never writes markup (textContent, attributes and moving existing nodes only).

import { createHash } from 'node:crypto';
import { ANALYZE_SCHEMA } from '../contract/analyze.js';
import type {
  AnalyzeDocument,
  AnalyzeStep,
  AnalyzeStepId,
  AnalyzeStepStatus,
  Confidence,
} from '../contract/analyze.js';
import { LeakscopeError } from '../model/errors.js';
import { frameLabel, type Frame, type StackSample } from '../model/stacks.js';
import {
  bucketLabel,
  CHART_FONT,
  formatCount,
  HIST_COLORS,
  histogramSvg,
  horizontalBarsSvg,
  shortBytes,
  stackedBarSvg,
  type BarSegment,
  type HBarRow,
  type HistogramBucket,
} from './charts-svg.js';
import { frameColor, renderFlameGraphSvg } from './flamegraph-svg.js';
import { reportAsset } from './assets.js';
import { escapeHtml, jsonForScript } from './html-escape.js';
import { formatBytes, formatPercent } from './text-format.js';

export { ANALYZE_SCHEMA };
export type { AnalyzeDocument };

// --- Read-only views of the embedded documents. Every field is treated as possibly absent, so a
// --- partial document (one not read through the contract's parser) renders with gaps instead of throwing.

interface MemView {
  rssBytes?: number;
  pssBytes?: number;
  swapBytes?: number;
  glibcShare?: number;
  categories?: Array<{
    name?: string;
    rssBytes?: number;
    pssBytes?: number;
    swapBytes?: number;
    mappings?: number;
    source?: string;
    top?: Array<{ label?: string; rssBytes?: number }>;
  }>;
  notes?: string[];
  shmZones?: Array<{
    name?: string;
    module?: string | null;
    size?: number;
    rssBytes?: number;
    slab?: {
      pageSize?: number;
      pages?: number;
      freePages?: number;
      usedPages?: number;
      freeListPages?: number | null;
      slots?: Array<{ chunkBytes?: number; total?: number; used?: number; fails?: number }>;
      problems?: string[];
    } | null;
    slabProblem?: string;
  }>;
}
interface HeapView {
  glibcVersion?: string;
  totals?: Record<string, number | undefined>;
  histogram?: Array<{
    minBytes?: number;
    maxBytes?: number;
    inUseChunks?: number;
    inUseBytes?: number;
    freeChunks?: number;
    freeBytes?: number;
  }>;
  complete?: boolean;
}
interface PoolGroupView {
  owner?: string;
  module?: string | null;
  creator?: string | null;
  referencedFrom?: string | null;
  pools?: number;
  blocks?: number;
  blockBytes?: number;
  usedBytes?: number;
  largeAllocs?: number;
  largeBytes?: number;
  bytes?: number;
}
interface PoolsView {
  nginxVersion?: string;
  totals?: { pools?: number; blocks?: number; bytes?: number; largeAllocs?: number; largeBytes?: number };
  groups?: PoolGroupView[];
}
interface LeaksView {
  mode?: string;
  durationSeconds?: number;
  sampling?: { sampleBytes?: number; minAgeSeconds?: number };
  totals?: {
    outstandingBytes?: number;
    outstandingCount?: number;
    allocatedBytes?: number;
    allocatedCount?: number;
    sampledEvents?: number;
    completeStacks?: number;
  };
  cost?: {
    totalProbeHits?: number;
    estimatedCpuSeconds?: number;
    perHitMicros?: number;
    dutyCycle?: number;
    lostEvents?: number;
  };
  stacks?: Array<{
    frames?: Array<{ function?: string | null; module?: string; offset?: number }>;
    bytes?: number;
    count?: number;
  }>;
  notes?: string[];
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const str = (v: unknown): string => (typeof v === 'string' ? v : v === null || v === undefined ? '' : String(v));
const arr = <T>(v: T[] | undefined | null): T[] => (Array.isArray(v) ? v : []);
const h = (v: unknown): string => escapeHtml(str(v));
const pct = (part: number, whole: number) => (whole > 0 ? formatPercent(part / whole) : '–');
const signed = (n: number, f: (v: number) => string) => `${n > 0 ? '+' : n < 0 ? '−' : ''}${f(Math.abs(n))}`;

/** Width of charts and of the flame graph, in CSS pixels (they scale down with the page). */
const CHART_W = 1100;
const FLAME_ID = 'leak-flamegraph';

const STEP_NUMBER: Partial<Record<AnalyzeStepId, number>> = {
  memory: 1,
  allocator: 2,
  pools: 3,
  buckets: 4,
  'code-path': 5,
};
const STATUS_LABEL: Record<AnalyzeStepStatus, string> = {
  ok: 'OK',
  anomaly: 'Anomaly',
  skipped: 'Skipped',
  error: 'Error',
};
const CONFIDENCE_DOTS: Record<Confidence, number> = { high: 3, medium: 2, low: 1, none: 0 };

/** Memory categories: colours (glibc's in the warm family the leak marks use), display order, group. */
const CATEGORY_COLORS: Record<string, string> = {
  'glibc-main-heap': '#d9482b',
  'glibc-thread-arenas': '#ec7f4d',
  'glibc-mmapped-chunks': '#f4b183',
  'nginx-shm': '#4a78b0',
  luajit: '#8667b8',
  code: '#5a9e6f',
  file: '#9cc7a4',
  stack: '#5fb0c4',
  'other-anon': '#a3abb5',
};
const isGlibc = (name: string) => name.startsWith('glibc-');
const categoryColor = (name: string) => CATEGORY_COLORS[name] ?? '#bcc3cc';

// ---------------------------------------------------------------------------------------------
// Small building blocks

function badge(status: AnalyzeStepStatus): string {
  return `<span class="badge status-${status}">${STATUS_LABEL[status]}</span>`;
}

function tiles(items: Array<[string, string, string?]>): string {
  return `<div class="tiles">${items
    .map(
      ([label, value, sub]) =>
        `<div class="tile"><div class="tile-label">${h(label)}</div><div class="tile-value">${h(value)}</div>${sub ? `<div class="tile-sub">${h(sub)}</div>` : ''}</div>`,
    )
    .join('')}</div>`;
}

function legend(items: Array<{ color: string; label: string; value: string }>): string {
  return `<ul class="legend">${items
    .map(
      (i) =>
        `<li><span class="swatch" style="background:${safeColor(i.color)}"></span><span class="legend-label">${h(i.label)}</span> <span class="legend-value">${h(i.value)}</span></li>`,
    )
    .join('')}</ul>`;
}

function safeColor(c: string): string {
  return /^#[0-9a-fA-F]{3,8}$/.test(c) ? c : '#bcc3cc';
}

/** Escaped text with line-break opportunities after `_`, `.` and `>` (long C identifiers in narrow columns). */
function breakable(v: string): string {
  return escapeHtml(v).replace(/(_|\.|&gt;)/g, '$1<wbr>');
}

function noData(text: string): string {
  return `<p class="no-data">${h(text)}</p>`;
}

/** A sortable table: `cols` with numeric flags; each cell [text-html, sort value]. */
function sortableTable(
  cls: string,
  cols: Array<{ label: string; numeric?: boolean; title?: string }>,
  rows: Array<{ cls?: string; cells: Array<{ html: string; sort?: number | string }> }>,
  initialSort?: { col: number; dir: 'ascending' | 'descending' },
): string {
  const head = cols
    .map((c, i) => {
      const sorted = initialSort && initialSort.col === i ? ` aria-sort="${initialSort.dir}"` : '';
      return `<th scope="col" class="${c.numeric ? 'num' : ''}" data-type="${c.numeric ? 'number' : 'text'}"${sorted}${c.title ? ` title="${h(c.title)}"` : ''}><button type="button">${h(c.label)}</button></th>`;
    })
    .join('');
  const body = rows
    .map(
      (r) =>
        `<tr${r.cls ? ` class="${r.cls}"` : ''}>${r.cells
          .map(
            (c, i) =>
              `<td class="${cols[i]?.numeric ? 'num' : ''}"${c.sort !== undefined ? ` data-value="${h(c.sort)}"` : ''}>${c.html}</td>`,
          )
          .join('')}</tr>`,
    )
    .join('\n');
  return `<div class="table-wrap"><table class="data sortable ${cls}"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table></div>`;
}

// ---------------------------------------------------------------------------------------------
// Step visuals

function memoryVisual(doc: AnalyzeDocument): string {
  const m = (doc.mem ?? {}) as unknown as MemView;
  const rss = num(m.rssBytes);
  const cats = arr(m.categories).map((c) => ({ ...c, name: str(c.name), rssBytes: num(c.rssBytes) }));
  if (!cats.length || rss <= 0) return noData('No memory breakdown in this report.');
  const glibc = cats.filter((c) => isGlibc(c.name));
  const other = cats.filter((c) => !isGlibc(c.name));
  const glibcBytes = glibc.reduce((s, c) => s + c.rssBytes, 0);
  const ordered = [...glibc, ...other].filter((c) => c.rssBytes > 0);
  const segments: BarSegment[] = ordered.map((c) => ({
    key: c.name,
    label: c.name,
    value: c.rssBytes,
    color: categoryColor(c.name),
  }));
  const out: string[] = [];
  out.push(
    tiles([
      [
        'Resident (RSS)',
        formatBytes(rss),
        m.pssBytes !== undefined ? `PSS ${formatBytes(num(m.pssBytes))}` : undefined,
      ],
      [
        'Held by glibc malloc',
        formatBytes(glibcBytes),
        `${formatPercent(m.glibcShare !== undefined ? num(m.glibcShare) : glibcBytes / rss)} of RSS`,
      ],
      [
        'Everything else',
        formatBytes(Math.max(0, rss - glibcBytes)),
        `${pct(Math.max(0, rss - glibcBytes), rss)} of RSS`,
      ],
      ['Swapped out', formatBytes(num(m.swapBytes))],
    ]),
  );
  out.push(
    `<figure class="chart" data-chart="memory-stacked">${stackedBarSvg(segments, { width: CHART_W, height: 34, ariaLabel: 'Resident memory by category', total: rss, format: formatBytes })}`,
  );
  out.push(
    legend(
      ordered.map((c) => ({
        color: categoryColor(c.name),
        label: c.name,
        value: `${formatBytes(c.rssBytes)} · ${pct(c.rssBytes, rss)}`,
      })),
    ),
  );
  out.push(`</figure>`);
  const row = (c: (typeof cats)[number]): HBarRow => ({
    key: c.name,
    label: c.name,
    value: c.rssBytes,
    color: categoryColor(c.name),
    valueLabel: `${formatBytes(c.rssBytes)} · ${pct(c.rssBytes, rss)}`,
    indent: true,
  });
  const rows: HBarRow[] = [];
  // Empty categories stay in the details table only.
  const shown = (cs: typeof cats) => cs.filter((c) => c.rssBytes > 0).map(row);
  if (glibc.length)
    rows.push(
      { kind: 'heading', label: 'glibc allocator', valueLabel: `${formatBytes(glibcBytes)} · ${pct(glibcBytes, rss)}` },
      ...shown(glibc),
    );
  if (other.length) {
    const ob = other.reduce((s, c) => s + c.rssBytes, 0);
    rows.push(
      { kind: 'heading', label: 'Everything else', valueLabel: `${formatBytes(ob)} · ${pct(ob, rss)}` },
      ...shown(other),
    );
  }
  out.push(
    `<figure class="chart" data-chart="memory-bars">${horizontalBarsSvg(rows, { width: CHART_W, ariaLabel: 'Resident memory per category, glibc categories grouped', max: Math.max(...cats.map((c) => c.rssBytes)) })}</figure>`,
  );
  const detailRows = cats.map((c) => {
    const top = arr(c.top).slice(0, 4);
    return (
      `<tr><td><span class="swatch" style="background:${safeColor(categoryColor(c.name))}"></span>${h(c.name)}</td>` +
      `<td class="num">${h(formatBytes(c.rssBytes))}</td><td class="num">${h(formatBytes(num(c.pssBytes)))}</td><td class="num">${h(formatBytes(num(c.swapBytes)))}</td><td class="num">${h(num(c.mappings))}</td>` +
      `<td class="regions">${top.length ? top.map((r) => `<div><span class="mono">${h(r.label)}</span> <span class="muted">${h(formatBytes(num(r.rssBytes)))}</span></div>`).join('') : '<span class="muted">–</span>'}</td>` +
      `<td class="muted small">${h(c.source)}</td></tr>`
    );
  });
  out.push(
    `<details class="more"><summary>Per-category details and largest regions</summary><div class="table-wrap"><table class="data"><thead><tr><th>category</th><th class="num">RSS</th><th class="num">PSS</th><th class="num">swap</th><th class="num">mappings</th><th>largest regions</th><th>source</th></tr></thead><tbody>${detailRows.join('')}</tbody></table></div></details>`,
  );
  const zones = arr(m.shmZones);
  if (zones.length) {
    // nginx shm zones and their slab pages (used / free by nginx's own count, pfree).
    const zrows = zones.map((z) => {
      const s = z.slab;
      const slots = s
        ? arr(s.slots)
            .filter((x) => num(x.total) > 0)
            .map((x) => `${formatBytes(num(x.chunkBytes))} ${num(x.used)}/${num(x.total)}`)
            .join(', ')
        : '';
      return (
        `<tr><td class="mono">${h(str(z.name))}</td><td>${h(z.module ? str(z.module) : '–')}</td>` +
        `<td class="num">${h(formatBytes(num(z.size)))}</td><td class="num">${h(formatBytes(num(z.rssBytes)))}</td>` +
        (s
          ? `<td class="num">${h(num(s.pages))}</td><td class="num">${h(num(s.usedPages))}</td><td class="num">${h(num(s.freePages))}</td>` +
            `<td class="num">${h(formatBytes(num(s.freePages) * num(s.pageSize)))}</td><td class="small">${h(slots || '–')}${arr(s.problems).length ? `<div class="muted">${h(arr(s.problems).join('; '))}</div>` : ''}</td>`
          : `<td colspan="5" class="muted">slab not read: ${h(str(z.slabProblem))}</td>`) +
        `</tr>`
      );
    });
    out.push(
      `<details class="more" data-section="shm-zones"><summary>nginx shared memory zones: slab pages used / free</summary><div class="table-wrap"><table class="data"><thead><tr><th>zone</th><th>module</th><th class="num">size</th><th class="num">RSS</th><th class="num">pages</th><th class="num">used</th><th class="num">free</th><th class="num">free bytes</th><th>chunks used/total by size</th></tr></thead><tbody>${zrows.join('')}</tbody></table></div></details>`,
    );
  }
  const notes = arr(m.notes);
  if (notes.length) out.push(`<ul class="notes">${notes.map((n) => `<li>${h(n)}</li>`).join('')}</ul>`);
  return out.join('\n');
}

function allocatorVisual(doc: AnalyzeDocument): string {
  if (!doc.heap) return noData('No heap census in this report: the glibc allocator was not walked.');
  const hp = doc.heap as unknown as HeapView;
  const t = hp.totals ?? {};
  const g = (k: string) => num(t[k]);
  const segments: BarSegment[] = [
    { key: 'in-use', label: 'in use (arena heaps)', value: g('inUseBytes'), color: '#d9482b' },
    { key: 'mmapped', label: 'in use (mmapped chunks)', value: g('mmappedBytes'), color: '#f4b183' },
    { key: 'tcache', label: 'free: tcache', value: g('tcacheBytes'), color: '#7da2c9' },
    { key: 'fastbins', label: 'free: fastbins', value: g('fastbinBytes'), color: '#a3bfdc' },
    { key: 'bins', label: 'free: bins', value: g('binBytes'), color: '#5b7fa6' },
    { key: 'top', label: 'free: top chunk', value: g('topBytes'), color: '#c9d4e2' },
  ];
  const total = segments.reduce((s, x) => s + x.value, 0);
  const inUse = g('inUseBytes') + g('mmappedBytes');
  const out: string[] = [];
  out.push(
    tiles([
      ['In use', formatBytes(inUse), `${formatCount(g('inUseChunks') + g('mmappedChunks'))} chunks`],
      ['Free inside glibc', formatBytes(g('freeBytes')), `${formatCount(g('freeChunks'))} chunks`],
      [
        'From the system',
        formatBytes(g('systemBytes') + g('mmappedBytes')),
        `${formatCount(g('mmappedChunks'))} mmapped chunks`,
      ],
      [
        'Fragmentation',
        t.fragmentation !== undefined ? formatPercent(num(t.fragmentation)) : '–',
        `glibc ${str(hp.glibcVersion) || '?'}, ${num(t.arenas) || '?'} arena(s)`,
      ],
    ]),
  );
  if (total > 0) {
    out.push(
      `<figure class="chart" data-chart="allocator">${stackedBarSvg(segments, { width: CHART_W, height: 34, ariaLabel: 'glibc allocator: in use vs free', format: formatBytes })}`,
    );
    out.push(
      legend(
        segments
          .filter((s) => s.value > 0)
          .map((s) => ({ color: s.color, label: s.label, value: `${formatBytes(s.value)} · ${pct(s.value, total)}` })),
      ),
    );
    out.push(`</figure>`);
  }
  if (hp.complete === false)
    out.push(`<p class="note">The census is partial: some heap could not be walked to its end.</p>`);
  return out.join('\n');
}

function poolsVisual(doc: AnalyzeDocument): string {
  if (!doc.pools)
    return noData('No nginx pool analysis in this report (not an nginx worker, or the step did not run).');
  const p = doc.pools as unknown as PoolsView;
  const t = p.totals ?? {};
  const groups = arr(p.groups);
  const out: string[] = [];
  out.push(
    tiles([
      ['Pools', formatCount(num(t.pools)), p.nginxVersion ? `nginx ${str(p.nginxVersion)}` : undefined],
      ['Blocks', formatCount(num(t.blocks))],
      ['Large allocations', formatCount(num(t.largeAllocs)), formatBytes(num(t.largeBytes))],
      ['Pool memory', formatBytes(num(t.bytes))],
    ]),
  );
  if (!groups.length) {
    out.push(noData('No pools found.'));
    return out.join('\n');
  }
  const totalBytes = Math.max(
    num(t.bytes),
    groups.reduce((s, x) => s + num(x.bytes), 0),
  );
  const suspectModule = doc.conclusion?.module ?? null;
  const text = (v: string | null | undefined) =>
    v ? `<span class="mono">${breakable(v)}</span>` : '<span class="muted">–</span>';
  const sorted = [...groups].sort((a, b) => num(b.bytes) - num(a.bytes));
  const rows = sorted.map((g) => {
    const suspect = (suspectModule !== null && g.module === suspectModule) || g.owner === 'unreferenced';
    const share = totalBytes > 0 ? (num(g.bytes) / totalBytes) * 100 : 0;
    return {
      cls: suspect ? 'suspect' : undefined,
      cells: [
        {
          html: `${breakable(str(g.owner))}${g.owner === 'unreferenced' ? ' <span class="tag">leak suspect</span>' : ''}`,
          sort: str(g.owner),
        },
        {
          html: `${text(g.module)}${suspectModule !== null && g.module === suspectModule ? ' <span class="tag">conclusion</span>' : ''}`,
          sort: str(g.module),
        },
        { html: text(g.creator), sort: str(g.creator) },
        { html: text(g.referencedFrom), sort: str(g.referencedFrom) },
        { html: h(formatCount(num(g.pools))), sort: num(g.pools) },
        { html: h(formatCount(num(g.blocks))), sort: num(g.blocks) },
        { html: h(formatBytes(num(g.blockBytes))), sort: num(g.blockBytes) },
        { html: h(formatBytes(num(g.usedBytes))), sort: num(g.usedBytes) },
        { html: h(formatCount(num(g.largeAllocs))), sort: num(g.largeAllocs) },
        { html: h(formatBytes(num(g.largeBytes))), sort: num(g.largeBytes) },
        {
          html: `<span class="cell-bar"><span style="width:${share.toFixed(1)}%"></span></span>${h(formatBytes(num(g.bytes)))}`,
          sort: num(g.bytes),
        },
      ],
    };
  });
  out.push(
    sortableTable(
      'pools-table',
      [
        { label: 'owner' },
        { label: 'module' },
        { label: 'creator' },
        { label: 'referenced from' },
        { label: 'pools', numeric: true },
        { label: 'blocks', numeric: true },
        { label: 'block bytes', numeric: true },
        { label: 'used', numeric: true, title: 'bytes used inside the blocks' },
        { label: 'large', numeric: true, title: 'large allocations (ngx_palloc_large)' },
        { label: 'large bytes', numeric: true },
        { label: 'bytes', numeric: true, title: 'blocks + large allocations, as glibc chunk sizes' },
      ],
      rows,
      { col: 10, dir: 'descending' },
    ),
  );
  out.push(
    `<p class="caption">Click a column header to sort. Byte counts are glibc chunk sizes; groups nothing refers to are “unreferenced”.</p>`,
  );
  return out.join('\n');
}

function bucketsVisual(doc: AnalyzeDocument): string {
  const hp = doc.heap as unknown as HeapView | null;
  const cmp = doc.heapComparison;
  const marked = doc.anomalousBucket ?? doc.conclusion?.bucket ?? null;
  const hist = arr(hp?.histogram);
  const growth = new Map(arr(cmp?.buckets).map((b) => [num(b.minBytes), b]));
  if (!hist.length && !growth.size)
    return noData('No chunk-size histogram in this report: the heap census did not run.');

  // Bytes when the census is here (baseline bytes = current - growth); chunks when only the comparison is.
  const unit: 'bytes' | 'count' = hist.length ? 'bytes' : 'count';
  const mins = [...new Set([...hist.map((b) => num(b.minBytes)), ...growth.keys()])].sort((a, b) => a - b);
  const byMin = new Map(hist.map((b) => [num(b.minBytes), b]));
  const buckets: HistogramBucket[] = mins.map((min) => {
    const cur = byMin.get(min);
    const gr = growth.get(min);
    const maxBytes = num(cur?.maxBytes ?? gr?.maxBytes) || min * 2;
    const label = bucketLabel(min, maxBytes);
    if (unit === 'count') {
      return {
        minBytes: min,
        maxBytes,
        value: num(gr?.currentInUseChunks),
        baseline: num(gr?.baselineInUseChunks),
        title: `${label}: ${formatCount(num(gr?.currentInUseChunks))} in-use chunks now, ${formatCount(num(gr?.baselineInUseChunks))} in the baseline`,
      };
    }
    const value = num(cur?.inUseBytes);
    const chunks = num(cur?.inUseChunks);
    if (!cmp) {
      return {
        minBytes: min,
        maxBytes,
        value,
        title: `${label}: ${formatBytes(value)} in ${formatCount(chunks)} in-use chunks; free ${formatBytes(num(cur?.freeBytes))} in ${formatCount(num(cur?.freeChunks))}`,
      };
    }
    const baseline = Math.max(0, value - num(gr?.byteGrowth));
    return {
      minBytes: min,
      maxBytes,
      value,
      baseline,
      title: `${label}: ${formatBytes(value)} in ${formatCount(chunks)} chunks now; baseline ${formatBytes(baseline)} in ${formatCount(num(gr?.baselineInUseChunks))}; growth ${signed(num(gr?.chunkGrowth), (v) => formatCount(v))} chunks, ${signed(num(gr?.byteGrowth), formatBytes)}`,
    };
  });
  const markNote = doc.anomalousBucket
    ? `${signed(num(doc.anomalousBucket.chunkGrowth), (v) => formatCount(v))} chunks, ${signed(num(doc.anomalousBucket.byteGrowth), formatBytes)}`
    : undefined;
  const common = {
    width: CHART_W,
    height: 320,
    unit,
    markedMinBytes: marked ? marked.minBytes : null,
    markNote,
    seriesLabels: ['baseline', 'current'] as [string, string],
  };
  const what = unit === 'bytes' ? 'In-use bytes' : 'In-use chunks';
  const out: string[] = [];
  out.push(
    `<div class="chart-toolbar"><span class="muted">${h(what)} per power-of-two chunk-size bucket${cmp ? ', baseline vs current' : ''}.</span>` +
      `<span class="segmented" role="group" aria-label="y scale"><button type="button" data-scale-toggle="linear" aria-pressed="true">Linear</button><button type="button" data-scale-toggle="log" aria-pressed="false">Log</button></span></div>`,
  );
  out.push(`<figure class="chart histogram" data-chart="histogram">`);
  out.push(
    `<div class="hist-variant" data-scale="linear">${histogramSvg(buckets, { ...common, scale: 'linear', ariaLabel: `${what} per chunk-size bucket (linear scale)` })}</div>`,
  );
  out.push(
    `<div class="hist-variant" data-scale="log" hidden>${histogramSvg(buckets, { ...common, scale: 'log', ariaLabel: `${what} per chunk-size bucket (log scale)` })}</div>`,
  );
  if (marked)
    out.push(
      legend([
        {
          color: HIST_COLORS.marked,
          label: `anomalous bucket: ${bucketLabel(marked.minBytes, marked.maxBytes)}`,
          value: markNote ?? '',
        },
      ]),
    );
  out.push(`</figure>`);
  if (cmp) out.push(`<p class="caption">Baseline: <span class="mono">${h(cmp.baseline)}</span></p>`);

  // The buckets that moved most (with a comparison) or hold most (without).
  const isMarked = (min: number) => marked !== null && min === marked.minBytes;
  if (cmp && growth.size) {
    const top = [...growth.values()].sort((a, b) => num(b.byteGrowth) - num(a.byteGrowth)).slice(0, 8);
    out.push(
      `<div class="table-wrap"><table class="data compact"><thead><tr><th>bucket</th><th class="num">baseline chunks</th><th class="num">current chunks</th><th class="num">Δ chunks</th><th class="num">Δ bytes</th></tr></thead><tbody>${top
        .map(
          (b) =>
            `<tr${isMarked(num(b.minBytes)) ? ' class="suspect"' : ''}><td>${h(bucketLabel(num(b.minBytes), num(b.maxBytes)))}</td><td class="num">${h(formatCount(num(b.baselineInUseChunks)))}</td><td class="num">${h(formatCount(num(b.currentInUseChunks)))}</td><td class="num">${h(signed(num(b.chunkGrowth), (v) => formatCount(v)))}</td><td class="num">${h(signed(num(b.byteGrowth), formatBytes))}</td></tr>`,
        )
        .join('')}</tbody></table></div>`,
    );
  } else if (hist.length) {
    const top = [...hist].sort((a, b) => num(b.inUseBytes) - num(a.inUseBytes)).slice(0, 6);
    out.push(
      `<div class="table-wrap"><table class="data compact"><thead><tr><th>bucket</th><th class="num">in-use chunks</th><th class="num">in-use bytes</th><th class="num">free chunks</th><th class="num">free bytes</th></tr></thead><tbody>${top
        .map(
          (b) =>
            `<tr${isMarked(num(b.minBytes)) ? ' class="suspect"' : ''}><td>${h(bucketLabel(num(b.minBytes), num(b.maxBytes)))}</td><td class="num">${h(formatCount(num(b.inUseChunks)))}</td><td class="num">${h(formatBytes(num(b.inUseBytes)))}</td><td class="num">${h(formatCount(num(b.freeChunks)))}</td><td class="num">${h(formatBytes(num(b.freeBytes)))}</td></tr>`,
        )
        .join('')}</tbody></table></div>`,
    );
  }
  return out.join('\n');
}

/** The leak profile's stacks as model samples (frames leaf first). */
export function stacksFromLeaksJson(leaks: object): StackSample[] {
  const l = leaks as unknown as LeaksView;
  return arr(l.stacks).map((s) => ({
    frames: arr(s.frames).map(
      (f): Frame => ({
        function: typeof f.function === 'string' ? f.function : null,
        module: str(f.module) || '[unknown]',
        offset: num(f.offset),
      }),
    ),
    bytes: Math.max(0, num(s.bytes)),
    count: Math.max(0, num(s.count)),
  }));
}

function frameChip(f: Frame, highlight: string | null): string {
  const label = frameLabel(f);
  const hit = highlight !== null && f.function === highlight;
  return `<span class="frame${hit ? ' hit' : ''}" title="${h(`${label} [${f.module}+0x${f.offset.toString(16)}]`)}"><span class="chip" style="background:${safeColor(frameColor(f.module, label))}"></span>${h(label)}</span>`;
}

const PATH_SHOWN = 6;
const ARROW = '<span class="arrow">←</span>';

/** A call path, leaf first: the first frames as chips, the rest behind a native <details>. */
function pathHtml(frames: Frame[], fn: string | null): string {
  const head = frames
    .slice(0, PATH_SHOWN)
    .map((f) => frameChip(f, fn))
    .join(ARROW);
  const rest = frames.slice(PATH_SHOWN);
  const more = rest.length
    ? `<details class="more-frames"${rest.some((f) => fn !== null && f.function === fn) ? ' open' : ''}><summary>${rest.length} more</summary>${ARROW}${rest.map((f) => frameChip(f, fn)).join(ARROW)}</details>`
    : '';
  return `<div class="path">${head}${more}</div>`;
}

function codePathVisual(doc: AnalyzeDocument): string {
  if (!doc.leaks) return noData('No leak trace in this report: the code-path step did not trace allocations.');
  const l = doc.leaks as unknown as LeaksView;
  const t = l.totals ?? {};
  const c = l.cost ?? {};
  const samples = stacksFromLeaksJson(doc.leaks);
  const mode = str(l.mode) || 'malloc';
  const out: string[] = [];
  const sampleBytes = num(l.sampling?.sampleBytes);
  const cpu = num(c.estimatedCpuSeconds);
  out.push(
    tiles([
      [
        'Outstanding at the end',
        formatBytes(num(t.outstandingBytes)),
        `${formatCount(num(t.outstandingCount))} ${mode === 'pool' ? 'pools' : 'allocations'}`,
      ],
      ['Trace window', `${num(l.durationSeconds).toFixed(1)} s`, `${mode} mode`],
      [
        'Sampling',
        sampleBytes ? `every ${shortBytes(sampleBytes)}` : 'every allocation',
        sampleBytes ? 'estimates scaled' : undefined,
      ],
      [
        'Cost to the target',
        `${cpu < 1 ? `${(cpu * 1000).toFixed(0)} ms` : `${cpu.toFixed(1)} s`} CPU`,
        `${formatCount(num(c.totalProbeHits))} probe hits${num(c.lostEvents) ? `, ${formatCount(num(c.lostEvents))} events lost` : ''}`,
      ],
    ]),
  );
  const fn = doc.conclusion?.function ?? null;
  out.push(
    `<div class="chart-toolbar"><span class="muted">Outstanding bytes by call path; callers below, the allocator on top.</span>` +
      `<span class="search"><label for="fg-search-input" class="muted small">Highlight</label><input type="search" id="fg-search-input" placeholder="frame name (regex)" aria-label="Highlight frames matching a regular expression">` +
      `${fn ? `<button type="button" data-fg-search="${h(fn)}">Highlight ${h(fn)}</button>` : ''}<button type="button" data-fg-reset>Reset</button></span></div>`,
  );
  out.push(
    `<figure class="chart flamegraph">${renderFlameGraphSvg(samples, { title: 'Leak flame graph (outstanding bytes)', weight: 'bytes', id: FLAME_ID, width: CHART_W })}</figure>`,
  );
  if (samples.length) {
    const total = samples.reduce((s, x) => s + x.bytes, 0);
    const top = [...samples].sort((a, b) => b.bytes - a.bytes).slice(0, 15);
    const rows = top.map((s, i) => ({
      cls: fn !== null && s.frames.some((f) => f.function === fn) ? 'suspect' : undefined,
      cells: [
        { html: String(i + 1), sort: i + 1 },
        { html: h(formatBytes(s.bytes)), sort: s.bytes },
        { html: h(pct(s.bytes, total)), sort: s.bytes },
        { html: h(formatCount(s.count)), sort: s.count },
        { html: pathHtml(s.frames, fn), sort: s.frames.map(frameLabel).join(';') },
      ],
    }));
    out.push(`<h3>Top call paths</h3>`);
    out.push(
      sortableTable(
        'stacks-table',
        [
          { label: '#', numeric: true },
          { label: 'bytes', numeric: true },
          { label: 'share', numeric: true },
          { label: 'count', numeric: true },
          { label: 'call path (leaf first)' },
        ],
        rows,
        { col: 1, dir: 'descending' },
      ),
    );
    if (samples.length > top.length)
      out.push(
        `<p class="caption">${samples.length - top.length} more call paths in the flame graph and the JSON.</p>`,
      );
  }
  const notes = arr(l.notes);
  if (notes.length) out.push(`<ul class="notes">${notes.map((n) => `<li>${h(n)}</li>`).join('')}</ul>`);
  return out.join('\n');
}

const VISUALS: Partial<Record<AnalyzeStepId, (doc: AnalyzeDocument) => string>> = {
  memory: memoryVisual,
  allocator: allocatorVisual,
  pools: poolsVisual,
  buckets: bucketsVisual,
  'code-path': codePathVisual,
};

// ---------------------------------------------------------------------------------------------
// Page

function renderStep(doc: AnalyzeDocument, step: AnalyzeStep, index: number): string {
  const status = STATUS_LABEL[step.status] ? step.status : 'error';
  const visual = VISUALS[step.id] ?? (() => '');
  const evidence = arr(step.evidence);
  // A skipped step already says why in its finding; "no data" would only repeat it.
  const v = visual(doc);
  const shown = status === 'skipped' && v.startsWith('<p class="no-data">') ? '' : v;
  return [
    `<section class="step status-${status}" id="step-${h(step.id)}" data-step="${h(step.id)}" data-status="${status}">`,
    `<header class="step-head"><span class="step-num">${STEP_NUMBER[step.id] ?? index + 1}</span><h2>${h(step.title)}</h2>${badge(status)}</header>`,
    `<p class="finding">${h(step.finding)}</p>`,
    evidence.length
      ? `<div class="evidence"><h3>Evidence</h3><ul>${evidence.map((e) => `<li>${h(e)}</li>`).join('')}</ul></div>`
      : '',
    `<div class="visual">${shown}</div>`,
    `</section>`,
  ].join('\n');
}

function renderConclusion(doc: AnalyzeDocument): string {
  const c = doc.conclusion;
  const verdict = c.verdict ?? (c.leak ? 'leak' : 'no-leak');
  const conf: Confidence = c.confidence in CONFIDENCE_DOTS ? c.confidence : 'none';
  const dots = '●'.repeat(CONFIDENCE_DOTS[conf]) + '○'.repeat(3 - CONFIDENCE_DOTS[conf]);
  const facts: string[] = [];
  if (c.module) facts.push(`<div><dt>Module</dt><dd class="mono">${h(c.module)}</dd></div>`);
  if (c.bucket)
    facts.push(`<div><dt>Chunk size</dt><dd>${h(bucketLabel(c.bucket.minBytes, c.bucket.maxBytes))}</dd></div>`);
  if (doc.anomalousBucket)
    facts.push(
      `<div><dt>Growth</dt><dd>${h(`${signed(num(doc.anomalousBucket.chunkGrowth), (v) => formatCount(v))} chunks, ${signed(num(doc.anomalousBucket.byteGrowth), formatBytes)}`)}</dd></div>`,
    );
  if (c.function) facts.push(`<div><dt>Function</dt><dd class="mono">${h(c.function)}</dd></div>`);
  if (c.growthRate)
    facts.push(
      `<div><dt>Rate</dt><dd>${h(`${formatBytes(c.growthRate.bytesPerSecond)}/s, +${formatBytes(c.growthRate.bytesPerHour)}/hour`)}</dd></div>`,
    );
  if (c.nextCommand) facts.push(`<div><dt>To tell</dt><dd class="mono">${h(c.nextCommand)}</dd></div>`);
  return [
    `<section class="conclusion ${c.leak ? 'is-leak' : verdict === 'cannot-tell' ? 'cannot-tell' : 'no-leak'}" id="conclusion" data-leak="${c.leak ? 'true' : 'false'}" data-verdict="${h(verdict)}">`,
    `<div class="verdict"><span class="verdict-tag">${c.leak ? 'Leak found' : verdict === 'cannot-tell' ? 'Cannot tell yet' : 'No leak found'}</span>` +
      `<span class="confidence confidence-${conf}" data-confidence="${conf}"><span class="dots" aria-hidden="true">${dots}</span> ${conf === 'none' ? 'no confidence' : `${conf} confidence`}</span></div>`,
    `<p class="summary">${h(c.summary)}</p>`,
    facts.length ? `<dl class="facts">${facts.join('')}</dl>` : '',
    `</section>`,
  ].join('\n');
}

function renderStepper(doc: AnalyzeDocument): string {
  return `<nav class="stepper" aria-label="Analysis steps"><ol>${doc.steps
    .map((s, i) => {
      const status = STATUS_LABEL[s.status] ? s.status : 'error';
      return `<li class="status-${status}"><a href="#step-${h(s.id)}"><span class="step-num">${STEP_NUMBER[s.id] ?? i + 1}</span><span class="stepper-title">${h(s.title)}</span><span class="dot" title="${STATUS_LABEL[status]}"></span></a></li>`;
    })
    .join('')}</ol></nav>`;
}

/** The page's style sheet (assets/report.css; its leading and trailing newline kept as the page had them). */
const css = () => `\n${reportAsset('report.css').replaceAll('__CHART_FONT__', CHART_FONT)}`;
/** The page's own behaviour (assets/report.js). Plain ES2017; writes only textContent and attributes, never markup. */
const pageScript = () => reportAsset('report.js').replace(/\n$/, '').replaceAll('__FLAME_ID__', FLAME_ID);

const sha256 = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

/** The text content of every inline script in `svg` (CDATA sections: their content). */
function inlineScripts(markup: string): string[] {
  const out: string[] = [];
  const re = /<script\b[^>]*>([\s\S]*?)<\/script>/g;
  for (let m = re.exec(markup); m; m = re.exec(markup)) {
    const body = m[1]!;
    const cdata = /^<!\[CDATA\[([\s\S]*)\]\]>$/.exec(body);
    out.push(cdata ? cdata[1]! : body);
  }
  return out;
}

/** "2025-03-14T09:26:53.000Z" -> "2025-03-14 09:26:53 UTC"; anything else unchanged. */
function prettyTime(iso: string): string {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.\d+)?Z$/.exec(str(iso));
  return m ? `${m[1]} ${m[2]} UTC` : str(iso);
}

function checkDocument(doc: AnalyzeDocument): void {
  if (!doc || typeof doc !== 'object' || doc.schema !== ANALYZE_SCHEMA) {
    throw new LeakscopeError(
      'malformed',
      `HTML report: expected a ${ANALYZE_SCHEMA} document, got schema ${JSON.stringify((doc as { schema?: unknown } | null)?.schema)}`,
    );
  }
  if (!Array.isArray(doc.steps)) throw new LeakscopeError('malformed', 'HTML report: document has no steps array');
  if (!doc.conclusion || typeof doc.conclusion !== 'object')
    throw new LeakscopeError('malformed', 'HTML report: document has no conclusion');
}

/**
 * The self-contained HTML report of an analysis (see the top of this file). Throws
 * `LeakscopeError('malformed')` when `doc` is not a `leakscope.analyze/1` document.
 */
export function renderHtmlReport(doc: AnalyzeDocument): string {
  checkDocument(doc);
  const body = [
    `<div class="topbar"><div class="topbar-inner"><div class="brand"><span class="logo"></span>leakscope <span class="sub">native memory leak report</span></div>` +
      `<div class="meta"><span>PID <b>${h(num(doc.pid))}</b></span><span>generated <b>${h(prettyTime(doc.generatedAt))}</b></span><span>analysis took <b>${h(num(doc.durationSeconds).toFixed(1))} s</b></span></div></div></div>`,
    `<main>`,
    `<p class="target">Target: <span class="mono" id="target">${h(doc.target)}</span></p>`,
    renderConclusion(doc),
    renderStepper(doc),
    ...doc.steps.map((s, i) => renderStep(doc, s, i)),
    `<section class="data-section" id="data"><div class="data-row"><strong>Data</strong>` +
      `<a class="download" id="download-json" download="leakscope-analyze-${num(doc.pid)}.json" href="#">Download JSON</a>` +
      `<span class="muted small"><span id="json-size"></span> · <span class="mono">${ANALYZE_SCHEMA}</span> · every number on this page comes from it</span></div>` +
      `<details class="raw" id="raw-json"><summary>Show the JSON</summary><pre class="mono"></pre></details></section>`,
    `<footer>Generated by leakscope. Read-only analysis: nothing was written into the target.</footer>`,
    `</main>`,
  ].join('\n');
  const PAGE_SCRIPT = pageScript();
  const scripts = [PAGE_SCRIPT, ...inlineScripts(body)];
  const csp = [
    `default-src 'none'`,
    `script-src ${scripts.map(sha256).join(' ')}`,
    `style-src 'unsafe-inline'`,
    `img-src data: blob:`,
    `base-uri 'none'`,
    `form-action 'none'`,
  ].join('; ');
  const title = `leakscope: ${doc.conclusion.leak ? 'leak found' : doc.conclusion.verdict === 'cannot-tell' ? 'cannot tell yet' : 'no leak found'} in ${doc.target}`;
  return [
    `<!DOCTYPE html>`,
    `<html lang="en">`,
    `<head>`,
    `<meta charset="utf-8">`,
    `<meta http-equiv="Content-Security-Policy" content="${h(csp)}">`,
    `<meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<meta name="generator" content="leakscope">`,
    `<title>${h(title)}</title>`,
    `<style>${css()}</style>`,
    `</head>`,
    `<body>`,
    body,
    `<script type="application/json" id="leakscope-data">${jsonForScript(doc)}</script>`,
    `<script>${PAGE_SCRIPT}</script>`,
    `</body>`,
    `</html>`,
    '',
  ].join('\n');
}
