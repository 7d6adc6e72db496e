// Interactive SVG flame graph of a leak profile, in the manner of Brendan Gregg's flamegraph.pl
// (https://github.com/brendangregg/FlameGraph): root ("all") at the BOTTOM, callees stacked
// above their callers, leaf (the allocator) on top; siblings sorted by name; frames merged by
// path (equal name and module under the same parent); widths proportional to bytes or counts.
//
// The output is one self-contained <svg> element (no XML declaration, no external resources):
// saved as a .svg file it works on its own in a browser, and pasted inline into an HTML page it
// works too. Its script finds its own root through `document.currentScript` (falling back to
// the element id), never through `document.documentElement`, and its CSS is scoped by that id,
// so several graphs can share one page.
//
// Safety: every string from the target (function, module names) and the title is attacker
// controlled. In markup they pass through `escapeXml`; the script's data is embedded with
// `jsonForScript` inside CDATA, and the script writes names only through `textContent`.
// Dialogs: only the Search button's `prompt()`.

import { LeakscopeError } from '../model/errors.js';
import { frameLabel, type StackSample } from '../model/stacks.js';
import { reportAsset } from './assets.js';
import { escapeXml, jsonForScript } from './html-escape.js';

export interface FlameGraphOptions {
  title: string;
  /** What the widths measure: outstanding bytes or outstanding allocation count. */
  weight: 'bytes' | 'count';
  /** Total width in CSS pixels (default 1200). */
  width?: number;
  /** The <svg> element's id, which scopes CSS and script; default derived from the content. */
  id?: string;
  /** Frames narrower than this (pixels, unzoomed) are left out, as flamegraph.pl's --minwidth (default 0.1). */
  minWidthPx?: number;
}

// Geometry, in CSS pixels.
const X_PAD = 10;
const FRAME_H = 16;
const FONT_SIZE = 12;
/** Average glyph advance of 12 px Verdana relative to its size (flamegraph.pl uses 0.59). */
const CHAR_W = 0.59;
const TOP_PAD = 44;
const BOTTOM_PAD = 34;

interface TreeNode {
  label: string;
  module: string;
  bytes: number;
  count: number;
  children: Map<string, TreeNode>;
}

/** One drawn frame, in DFS pre-order (so a node's descendants are indices (i, end)). */
interface FlatNode {
  parent: number;
  depth: number;
  /** Left edge and width in weight units (bytes or count). */
  start: number;
  value: number;
  /** Index just past the last descendant. */
  end: number;
  label: string;
  module: string;
  bytes: number;
  count: number;
}

/** `1.50 MiB`: binary units, 3 significant digits from KiB up. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  if (i === 0) return `${Math.round(v)} B`;
  return `${v.toFixed(Math.abs(v) < 10 ? 2 : Math.abs(v) < 100 ? 1 : 0)} ${units[i]}`;
}

function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

function percent(part: number, whole: number): string {
  return whole > 0 ? `${((part / whole) * 100).toFixed(2)}%` : '0.00%';
}

/** FNV-1a 32-bit: a stable hash, so a module keeps its colour across runs and files. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

function hslToHex(h: number, s: number, l: number): string {
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => {
    const k = (n + h / 30) % 12;
    const c = l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return Math.round(c * 255)
      .toString(16)
      .padStart(2, '0');
  };
  return `#${f(0)}${f(8)}${f(4)}`;
}

/** Hue from the module (stable hash), lightness nudged by the name so neighbours differ. */
export function frameColor(module: string, label: string): string {
  if (module === '' || module === '[unknown]') return hslToHex(0, 0, 0.72 + ((fnv1a(label) % 7) - 3) / 100);
  const h = fnv1a(module);
  return hslToHex(h % 360, 0.6 + ((h >>> 9) % 20) / 100, 0.64 + ((fnv1a(label) % 9) - 4) * 0.02);
}

function fitLabel(label: string, widthPx: number): string {
  const chars = Math.floor((widthPx - 6) / (FONT_SIZE * CHAR_W));
  if (chars < 3) return '';
  return label.length <= chars ? label : `${label.slice(0, chars - 2)}..`;
}

function num(v: number): string {
  return String(Math.round(v * 100) / 100);
}

function buildTree(samples: readonly StackSample[]): TreeNode {
  const root: TreeNode = { label: 'all', module: '', bytes: 0, count: 0, children: new Map() };
  samples.forEach((s, i) => {
    for (const [what, v] of [
      ['bytes', s.bytes],
      ['count', s.count],
    ] as const) {
      if (!Number.isFinite(v) || v < 0) {
        throw new LeakscopeError(
          'malformed',
          `flame graph: sample ${i} has ${what} = ${v}; expected a finite number >= 0`,
        );
      }
    }
    let node = root;
    node.bytes += s.bytes;
    node.count += s.count;
    for (let k = s.frames.length - 1; k >= 0; k--) {
      const f = s.frames[k]!;
      const label = frameLabel(f);
      const key = `${label}\0${f.module}`;
      let child = node.children.get(key);
      if (!child) {
        child = { label, module: f.module, bytes: 0, count: 0, children: new Map() };
        node.children.set(key, child);
      }
      child.bytes += s.bytes;
      child.count += s.count;
      node = child;
    }
  });
  return root;
}

function flatten(root: TreeNode, weight: 'bytes' | 'count', innerWidth: number, minWidthPx: number): FlatNode[] {
  const total = weight === 'bytes' ? root.bytes : root.count;
  const out: FlatNode[] = [];
  const visit = (n: TreeNode, parent: number, depth: number, start: number) => {
    const value = weight === 'bytes' ? n.bytes : n.count;
    if (value <= 0 || (value / total) * innerWidth < minWidthPx) return;
    const index = out.length;
    const flat: FlatNode = {
      parent,
      depth,
      start,
      value,
      end: index + 1,
      label: n.label,
      module: n.module,
      bytes: n.bytes,
      count: n.count,
    };
    out.push(flat);
    const kids = [...n.children.values()].sort((a, b) =>
      a.label < b.label ? -1 : a.label > b.label ? 1 : a.module < b.module ? -1 : a.module > b.module ? 1 : 0,
    );
    let x = start;
    for (const k of kids) {
      visit(k, index, depth + 1, x);
      x += weight === 'bytes' ? k.bytes : k.count;
    }
    flat.end = out.length;
  };
  visit(root, -1, 0, 0);
  return out;
}

/**
 * The browser side (assets/flamegraph.js). Plain ES2017; must not contain the CDATA terminator.
 * Placeholders: __ID__, __FRAMES__, __CONF__.
 */
function flameScript(): string {
  const script = reportAsset('flamegraph.js').replace(/\n$/, '');
  if (script.includes(']]>')) throw new Error('flamegraph-svg: script contains the CDATA terminator');
  return script;
}

const HINT = 'Click a frame to zoom in, Reset Zoom to go back; Search highlights frames by name.';

/**
 * A self-contained interactive SVG flame graph of `samples` (see the top of this file).
 * Throws `LeakscopeError('usage')` for a bad id or width, `'malformed'` for a negative or
 * non-finite sample value.
 */
export function renderFlameGraphSvg(samples: readonly StackSample[], opts: FlameGraphOptions): string {
  const width = opts.width ?? 1200;
  if (!Number.isFinite(width) || width < 200)
    throw new LeakscopeError('usage', `flame graph width ${width}; expected >= 200 px`);
  const minWidth = opts.minWidthPx ?? 0.1;
  const root = buildTree(samples);
  const total = opts.weight === 'bytes' ? root.bytes : root.count;
  const id =
    opts.id ?? `leakscope-fg-${fnv1a(`${opts.title}\n${opts.weight}\n${JSON.stringify(samples)}`).toString(16)}`;
  if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(id))
    throw new LeakscopeError('usage', `flame graph id ${JSON.stringify(id)}; expected [A-Za-z][A-Za-z0-9_-]*`);
  const innerWidth = width - 2 * X_PAD;
  const title = escapeXml(opts.title);
  const sel = `#${id}`;
  const style = [
    `${sel} text { font-family: Verdana, "DejaVu Sans", sans-serif; font-size: ${FONT_SIZE}px; fill: #000; }`,
    `${sel} .fg-title { font-size: 17px; }`,
    `${sel} .fg-frame { cursor: pointer; }`,
    `${sel} .fg-frame text { pointer-events: none; }`,
    `${sel} .fg-frame:hover rect { stroke: #000; stroke-width: 0.5; }`,
    `${sel} .fg-parent rect { opacity: 0.5; }`,
    `${sel} .fg-match rect { fill: #e040e0; }`,
    `${sel} .fg-hidden { display: none; }`,
    `${sel} .fg-button { cursor: pointer; fill: #333; }`,
    `${sel} .fg-button:hover { text-decoration: underline; }`,
  ].join('\n');

  if (total <= 0) {
    const height = 120;
    return [
      `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" id="${id}" class="leakscope-flamegraph" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
      `<title>${title}</title>`,
      `<style>\n${style}\n</style>`,
      `<rect x="0" y="0" width="${width}" height="${height}" fill="#f8f8f8"/>`,
      `<text class="fg-title" x="${width / 2}" y="24" text-anchor="middle">${title}</text>`,
      `<text class="fg-empty" x="${width / 2}" y="70" text-anchor="middle">No samples: nothing to draw (0 ${opts.weight === 'bytes' ? 'bytes' : 'allocations'} outstanding).</text>`,
      `</svg>`,
      '',
    ].join('\n');
  }

  const nodes = flatten(root, opts.weight, innerWidth, minWidth);
  const maxDepth = nodes.reduce((m, n) => Math.max(m, n.depth), 0);
  const height = TOP_PAD + (maxDepth + 1) * FRAME_H + BOTTOM_PAD;
  const yOf = (depth: number) => height - BOTTOM_PAD - (depth + 1) * FRAME_H;

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" version="1.1" id="${id}" class="leakscope-flamegraph" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<title>${title}</title>`,
    `<style>\n${style}\n</style>`,
    `<defs><linearGradient id="${id}-bg" x1="0" y1="0" x2="0" y2="1"><stop offset="5%" stop-color="#eeeeee"/><stop offset="95%" stop-color="#eeeeb0"/></linearGradient></defs>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="url(#${id}-bg)"/>`,
    `<text class="fg-title" x="${width / 2}" y="24" text-anchor="middle">${title}</text>`,
    `<text class="fg-subtitle" x="${width / 2}" y="38" text-anchor="middle" fill="#555">Width: ${opts.weight === 'bytes' ? 'bytes' : 'allocations'} outstanding. Total ${escapeXml(formatBytes(root.bytes))} in ${escapeXml(formatCount(root.count))} allocations.</text>`,
    `<text class="fg-button fg-reset fg-hidden" x="${X_PAD}" y="24">Reset Zoom</text>`,
    `<text class="fg-button fg-search" x="${width - X_PAD}" y="24" text-anchor="end">Search</text>`,
    `<text class="fg-details" x="${X_PAD}" y="${height - 12}">${escapeXml(HINT)}</text>`,
    `<text class="fg-matched" x="${width - X_PAD}" y="${height - 12}" text-anchor="end"></text>`,
    `<g class="fg-frames">`,
  );
  const primary = opts.weight === 'bytes';
  nodes.forEach((n, i) => {
    const x = X_PAD + (n.start / total) * innerWidth;
    const w = (n.value / total) * innerWidth;
    const where = n.module ? ` [${n.module}]` : '';
    const bytesPart = `${formatBytes(n.bytes)} (${percent(n.bytes, root.bytes)} of bytes)`;
    const countPart = `${formatCount(n.count)} allocation${Math.round(n.count) === 1 ? '' : 's'} (${percent(n.count, root.count)} of allocations)`;
    const tip = `${n.label}${where}: ${primary ? `${bytesPart}, ${countPart}` : `${countPart}, ${bytesPart}`}`;
    const fill = i === 0 ? '#d8d8d8' : frameColor(n.module, n.label);
    parts.push(
      `<g class="fg-frame" data-i="${i}"><title>${escapeXml(tip)}</title>` +
        `<rect x="${num(x)}" y="${yOf(n.depth)}" width="${num(w)}" height="${FRAME_H - 1}" rx="2" ry="2" fill="${fill}"/>` +
        `<text x="${num(x + 3)}" y="${yOf(n.depth) + FRAME_H - 4}">${escapeXml(fitLabel(n.label, w))}</text></g>`,
    );
  });
  parts.push(`</g>`);

  const frames = nodes.map((n) => [n.parent, n.depth, n.start, n.value, n.end, n.label]);
  const conf = { xpad: X_PAD, width: innerWidth, minWidth, fontSize: FONT_SIZE, charW: CHAR_W, hint: HINT };
  const script = flameScript()
    .replace('__ID__', () => jsonForScript(id))
    .replace('__FRAMES__', () => jsonForScript(frames))
    .replace('__CONF__', () => jsonForScript(conf));
  parts.push(`<script type="text/javascript"><![CDATA[\n${script}\n]]></script>`, `</svg>`, '');
  return parts.join('\n');
}
