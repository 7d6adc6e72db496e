import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { formatBytes, renderFlameGraphSvg } from './flamegraph-svg.js';
import { escapeHtml, escapeXml, jsonForScript } from './html-escape.js';
import { LeakscopeError } from '../model/errors.js';
import type { Frame, StackSample } from '../model/stacks.js';
import { openFile, withBrowser } from '../../test/helpers/browser.js';

// dist/src/report -> repo root
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const fn = (name: string, module = 'nginx'): Frame => ({ function: name, module, offset: 0x1000 });
const H1 = `<img src=x onerror=alert(1)>&"'`;
const H2 = '</script><script>alert(1)</script>';
const H3 = ']]><script>alert(2)</script>';
const WEIRD = 'weird\u0001\u2028\ud800name';
/** WEIRD as the DOM shows it: characters XML forbids become U+FFFD. */
const WEIRD_SHOWN = 'weird\ufffd\u2028\ufffdname';

const malloc = fn('malloc', 'libc.so.6');
const main = fn('main');
// Leaf first. Ground truth by hand:
//   bytes 6 MiB + 1 MiB + 512 KiB + 256 KiB + 256 KiB + 128 KiB + 128 KiB = 8650752 (8.25 MiB)
//   count 3 + 1 + 64 + 2 + 2 + 1 + 1 = 74
const SAMPLES: StackSample[] = [
  {
    frames: [malloc, fn('ngx_alloc'), fn('ngx_palloc'), fn('ngx_http_process_request'), main],
    bytes: 6291456,
    count: 3,
  },
  {
    frames: [malloc, fn('ngx_alloc'), fn('ngx_palloc'), fn('ngx_http_init_connection'), main],
    bytes: 1048576,
    count: 1,
  },
  { frames: [malloc, { function: null, module: 'libfoo.so', offset: 0x2a3f }, main], bytes: 524288, count: 64 },
  { frames: [fn('calloc', 'libc.so.6'), fn(H1, 'libevil.so'), main], bytes: 262144, count: 2 },
  { frames: [malloc, fn(H2, 'libevil.so'), main], bytes: 262144, count: 2 },
  { frames: [malloc, fn(H3, 'libevil.so'), main], bytes: 131072, count: 1 },
  { frames: [malloc, fn(WEIRD, 'lib<evil>.so'), main], bytes: 131072, count: 1 },
];
const TOTAL_BYTES = 8650752;
const INNER_W = 1180; // width 1200 - 2 * 10 px padding
/** Frames after merging equal paths: all, main, 4 + 4 (two nginx chains), 2 each for the other five. */
const FRAME_COUNT = 20;

test('escaping helpers', () => {
  assert.equal(escapeXml(`<a href="x">&'</a>`), '&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;');
  assert.equal(escapeHtml(`<'&">`), '&lt;&#39;&amp;&quot;&gt;');
  assert.equal(escapeXml('a\u0000b\u0008c\td\ud800e\uffff'), 'a\ufffdb\ufffdc\td\ufffde\ufffd');
  assert.equal(escapeXml('😀'), '😀');
  const js = jsonForScript({ s: '</script><!--]]>&\u2028\u2029é😀' });
  assert.match(js, /^[\x20-\x7e]*$/);
  assert.ok(!/[<>&]/.test(js));
  assert.deepEqual(JSON.parse(js), { s: '</script><!--]]>&\u2028\u2029é😀' });
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.50 KiB');
  assert.equal(formatBytes(8650752), '8.25 MiB');
  assert.equal(formatBytes(300 * 1024 * 1024), '300 MiB');
});

test('renderFlameGraphSvg: markup holds no hostile markup, one script, stable generated id', () => {
  const svg = renderFlameGraphSvg(SAMPLES, { title: `leaks </title><script>alert(3)</script>`, weight: 'bytes' });
  assert.ok(!svg.includes('<img'));
  assert.ok(!svg.includes('<script>alert'));
  assert.equal(svg.split('<script').length - 1, 1);
  assert.equal(svg.split(']]>').length - 1, 1, 'only our own CDATA terminator');
  assert.ok(!svg.includes('\u0001') && !svg.includes('\ud800'));
  assert.ok(!svg.startsWith('<?xml'), 'no XML declaration, so it can be pasted into HTML');
  const id = /^<svg [^>]*id="([^"]+)"/.exec(svg)![1]!;
  assert.match(id, /^leakscope-fg-[0-9a-f]+$/);
  assert.equal(
    renderFlameGraphSvg(SAMPLES, { title: `leaks </title><script>alert(3)</script>`, weight: 'bytes' }),
    svg,
  );
  assert.throws(() => renderFlameGraphSvg(SAMPLES, { title: 't', weight: 'bytes', id: 'x"><script>' }), LeakscopeError);
  assert.throws(
    () => renderFlameGraphSvg([{ frames: [main], bytes: -5, count: 1 }], { title: 't', weight: 'bytes' }),
    LeakscopeError,
  );
  const empty = renderFlameGraphSvg([], { title: 'empty', weight: 'count' });
  assert.match(empty, /No samples/);
  assert.ok(!empty.includes('<script'));
});

/** Index (data-i) of the frame whose tooltip starts with "LABEL [MODULE]:" in the graph `id`. */
async function frameIndex(page: Page, id: string, label: string, module: string): Promise<number> {
  const i = await page.evaluate(
    ([id, prefix]) => {
      for (const g of document.getElementById(id!)!.querySelectorAll('.fg-frame')) {
        if (g.querySelector('title')!.textContent!.startsWith(prefix!)) return Number(g.getAttribute('data-i'));
      }
      return -1;
    },
    [id, `${label} [${module}]:`],
  );
  assert.ok(i >= 0, `frame ${label} [${module}] not found`);
  return i;
}

/** {x, width, hidden, classes} of frame `i`'s rect. */
async function frameBox(page: Page, id: string, i: number) {
  return page.evaluate(
    ([id, i]) => {
      const g = document.getElementById(id as string)!.querySelector(`.fg-frame[data-i="${i}"]`)!;
      const r = g.querySelector('rect')!;
      return {
        x: Number(r.getAttribute('x')),
        width: Number(r.getAttribute('width')),
        hidden: getComputedStyle(g).display === 'none',
        cls: g.getAttribute('class')!,
        fill: getComputedStyle(r).fill,
        text: g.querySelector('text')!.textContent!,
      };
    },
    [id, i] as const,
  );
}

async function safetyChecks(page: Page, scripts: number) {
  return page
    .evaluate(() => ({
      imgs: document.querySelectorAll('img').length,
      scripts: document.querySelectorAll('script').length,
      parserErrors: document.getElementsByTagName('parsererror').length,
      root: document.documentElement.localName,
    }))
    .then((r) => {
      assert.equal(r.imgs, 0, 'an <img> was injected');
      assert.equal(r.scripts, scripts, 'a <script> was injected');
      assert.equal(r.parserErrors, 0, 'the document did not parse');
      return r;
    });
}

test('flame graph SVG in headless Chromium: frames, widths, tooltips, zoom, search, hostile names', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-fg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await withBrowser(t, async (s) => {
    const id = 'fg-test';
    const path = join(dir, 'flamegraph.svg');
    writeFileSync(path, renderFlameGraphSvg(SAMPLES, { title: `nginx leaks ${H1}`, weight: 'bytes', id }));
    const page = s.page;
    await page.setViewportSize({ width: 1200, height: 300 });
    await openFile(page, path);
    const r = await safetyChecks(page, 1);
    assert.equal(r.root, 'svg');
    assert.equal(await page.evaluate(() => document.title), `nginx leaks ${H1}`);

    // Every frame is an element carrying its name; merged by path.
    const titles = await page.evaluate(() =>
      [...document.querySelectorAll('.fg-frame title')].map((e) => e.textContent!),
    );
    assert.equal(titles.length, FRAME_COUNT);
    for (const [label, module] of [
      ['main', 'nginx'],
      ['ngx_http_process_request', 'nginx'],
      ['ngx_http_init_connection', 'nginx'],
      ['ngx_palloc', 'nginx'],
      ['ngx_alloc', 'nginx'],
      ['malloc', 'libc.so.6'],
      ['calloc', 'libc.so.6'],
      ['libfoo.so+0x2a3f', 'libfoo.so'],
      [H1, 'libevil.so'],
      [H2, 'libevil.so'],
      [H3, 'libevil.so'],
      [WEIRD_SHOWN, 'lib<evil>.so'],
    ]) {
      assert.ok(
        titles.some((x) => x.startsWith(`${label} [${module}]: `)),
        `no frame ${label}`,
      );
    }
    assert.equal(titles.filter((x) => x.startsWith('ngx_palloc [nginx]')).length, 2);
    assert.equal(titles.filter((x) => x.startsWith('malloc [libc.so.6]')).length, 6);
    assert.ok(titles.includes('all: 8.25 MiB (100.00% of bytes), 74 allocations (100.00% of allocations)'));
    // 6291456 / 8650752 = 72.73 %; 3 / 74 = 4.05 %
    assert.ok(
      titles.includes(
        'ngx_http_process_request [nginx]: 6.00 MiB (72.73% of bytes), 3 allocations (4.05% of allocations)',
      ),
    );

    // Widths proportional to bytes; root at the bottom.
    const all = await frameBox(page, id, 0);
    assert.deepEqual([all.x, all.width], [10, INNER_W]);
    const pr = await frameIndex(page, id, 'ngx_http_process_request', 'nginx');
    const before = await frameBox(page, id, pr);
    assert.ok(Math.abs(before.width - (6291456 / TOTAL_BYTES) * INNER_W) < 0.02, `width ${before.width}`);
    const allY = await page.evaluate(() =>
      Number(document.querySelector('.fg-frame[data-i="0"] rect')!.getAttribute('y')),
    );
    const prY = await page.evaluate(
      (i) => Number(document.querySelector(`.fg-frame[data-i="${i}"] rect`)!.getAttribute('y')),
      pr,
    );
    assert.ok(prY < allY, 'callees are drawn above the root');

    // Hover shows the tooltip text on the details line.
    await page.hover(`#${id} .fg-frame[data-i="${pr}"] rect`);
    assert.equal(await page.textContent(`#${id} .fg-details`), titles[pr]);

    await page.locator(`#${id}`).screenshot({ path: join(mkdirP(join(REPO, 'test', 'output')), 'flamegraph.png') });

    // Click zooms: the frame and its callees fill the width, callers fade, others hide.
    const foo = await frameIndex(page, id, 'libfoo.so+0x2a3f', 'libfoo.so');
    const palloc = pr + 1; // first child in pre-order
    await page.click(`#${id} .fg-frame[data-i="${pr}"] rect`);
    const z = await frameBox(page, id, pr);
    assert.deepEqual([z.x, z.width], [10, INNER_W]);
    assert.ok(z.text.startsWith('ngx_http_process_request'));
    assert.equal((await frameBox(page, id, palloc)).width, INNER_W);
    assert.equal((await frameBox(page, id, foo)).hidden, true);
    assert.match((await frameBox(page, id, 1)).cls, /fg-parent/);
    assert.equal(await page.isVisible(`#${id} .fg-reset`), true);
    await page.click(`#${id} .fg-reset`);
    assert.deepEqual(await frameBox(page, id, pr), before);
    assert.equal(await page.isVisible(`#${id} .fg-reset`), false);

    // Search through the button's prompt: /^ngx_/ matches 6 frames; top-most matches cover
    // 6 MiB + 1 MiB of 8.25 MiB = 84.8 %.
    s.answerPrompt('^ngx_');
    await page.click(`#${id} .fg-search`);
    const matched = await page.evaluate(() =>
      [...document.querySelectorAll('.fg-match title')].map((e) => e.textContent!.split(' [')[0]),
    );
    assert.deepEqual(matched.sort(), [
      'ngx_alloc',
      'ngx_alloc',
      'ngx_http_init_connection',
      'ngx_http_process_request',
      'ngx_palloc',
      'ngx_palloc',
    ]);
    assert.equal(await page.textContent(`#${id} .fg-matched`), 'Matched: 84.8%');
    assert.equal((await frameBox(page, id, pr)).fill, 'rgb(224, 64, 224)');
    assert.equal(await page.textContent(`#${id} .fg-search`), 'Reset Search');
    await page.click(`#${id} .fg-search`);
    assert.equal(await page.locator(`#${id} .fg-match`).count(), 0);
    assert.equal(await page.textContent(`#${id} .fg-matched`), '');

    // Search by event from a host page: "alert" is in the three hostile names:
    // (256 KiB + 256 KiB + 128 KiB) / 8.25 MiB = 7.6 %.
    await page.evaluate(
      (id) => document.getElementById(id)!.dispatchEvent(new CustomEvent('leakscope-search', { detail: 'alert' })),
      id,
    );
    assert.equal(await page.locator(`#${id} .fg-match`).count(), 3);
    assert.equal(await page.textContent(`#${id} .fg-matched`), 'Matched: 7.6%');

    // Hostile names: shown as text, nothing injected, no dialog but our own prompt.
    await page.click(`#${id} .fg-frame[data-i="${await frameIndex(page, id, H2, 'libevil.so')}"] rect`);
    await page.click(`#${id} .fg-reset`);
    await page.click(`#${id} .fg-frame[data-i="${await frameIndex(page, id, H1, 'libevil.so')}"] rect`);
    const h1 = await frameBox(page, id, await frameIndex(page, id, H1, 'libevil.so'));
    assert.equal(h1.text, H1);
    await safetyChecks(page, 1);
    assert.deepEqual(
      s.dialogs.map((d) => d.type),
      ['prompt'],
    );
    assert.deepEqual(s.errors, []);
  });
});

function mkdirP(p: string): string {
  mkdirSync(p, { recursive: true });
  return p;
}

test('flame graph SVG inline in an HTML page: two graphs, each scoped; empty profile', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-fg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await withBrowser(t, async (s) => {
    const one = renderFlameGraphSvg(SAMPLES, {
      title: `one </title><script>alert(3)</script>`,
      weight: 'bytes',
      id: 'g-one',
    });
    const two = renderFlameGraphSvg(SAMPLES, { title: 'two', weight: 'count', id: 'g-two', width: 800 });
    const empty = renderFlameGraphSvg([], { title: 'none', weight: 'bytes', id: 'g-empty' });
    const path = join(dir, 'report.html');
    writeFileSync(
      path,
      `<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>report</title></head><body>\n<h1>report</h1>\n${one}\n<p>between</p>\n${two}\n${empty}\n</body></html>\n`,
    );
    const page = s.page;
    await openFile(page, path);
    const r = await safetyChecks(page, 2);
    assert.equal(r.root, 'html');
    assert.equal(await page.locator('#g-one .fg-frame').count(), FRAME_COUNT);
    assert.match((await page.textContent('#g-empty'))!, /No samples/);

    // Count-weighted graph: libfoo's 64 of 74 allocations; inner width 800 - 20 = 780.
    const foo = await frameIndex(page, 'g-two', 'libfoo.so+0x2a3f', 'libfoo.so');
    assert.ok(Math.abs((await frameBox(page, 'g-two', foo)).width - (64 / 74) * 780) < 0.02);
    const beforeOne = await frameBox(page, 'g-one', foo);
    await page.click(`#g-two .fg-frame[data-i="${foo}"] rect`);
    assert.equal((await frameBox(page, 'g-two', foo)).width, 780);
    assert.deepEqual(await frameBox(page, 'g-one', foo), beforeOne, 'zooming graph two changed graph one');

    await page.evaluate(() =>
      document.getElementById('g-one')!.dispatchEvent(new CustomEvent('leakscope-search', { detail: 'malloc' })),
    );
    assert.equal(await page.locator('#g-one .fg-match').count(), 6);
    assert.equal(await page.locator('#g-two .fg-match').count(), 0);
    assert.equal(await page.locator('h1').count(), 1);
    assert.deepEqual(s.dialogs, []);
    assert.deepEqual(s.errors, []);
  });
});
