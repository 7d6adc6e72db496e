// The guided analysis end to end, against scenarios whose truth is known: real nginx with the
// leaking module (and the same nginx healthy), a C program leaking through malloc, a program
// whose leaking function has a name hostile to HTML; the HTML report in headless Chromium;
// `leakscope demo` as the README runs it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNginx, steadyTraffic } from '../../test/helpers/nginx.js';
import { startFixture } from '../../test/helpers/fixture.js';
import { withBrowser, openFile } from '../../test/helpers/browser.js';
import { LiveProcess } from '../target/index.js';
import { analyze } from './analyze.js';
import { renderHtmlReport } from '../report/html-report.js';
import type { AnalyzeDocument } from '../contract/analyze.js';
import { parseAnalyze } from '../contract/analyze.js';
import { REPO, leakscope } from '../../test/helpers/proc.js';

const TRACE = 5;

/** `said`, when given, collects the analysis's step lines (onStep) in order. */
async function analyzeNginx(paths: string[], workers = 1, said?: string[]): Promise<AnalyzeDocument> {
  const ngx = await startNginx({ workers });
  try {
    const stopWarm = steadyTraffic(ngx, paths, 5);
    await new Promise((r) => setTimeout(r, 1500));
    const [worker, ...others] = ngx.workerPids();
    const space = LiveProcess.open(worker!);
    const siblings = others.map((p) => LiveProcess.open(p));
    try {
      return await analyze(space, {
        traceSeconds: TRACE,
        pauseSeconds: 2,
        siblings,
        ...(said ? { onStep: (t: string) => said.push(t) } : {}),
      });
    } finally {
      await stopWarm();
      space.close();
      for (const s of siblings) s.close();
    }
  } finally {
    await ngx.stop();
  }
}

let leakDoc: AnalyzeDocument | undefined;

test('leak scenario (real nginx, leaking module): names the module, the bucket and the function', async () => {
  const said: string[] = [];
  const doc = await analyzeNginx(['/leak-keep', '/leak-drop', '/ok', '/ok'], 1, said);
  leakDoc = doc;
  const c = doc.conclusion;
  assert.equal(c.leak, true, c.summary);
  assert.equal(c.module, 'ngx_http_leak_module');
  assert.deepEqual(c.bucket, { minBytes: 256 * 1024, maxBytes: 512 * 1024 }, 'the 300 KiB large allocations');
  assert.equal(c.function, 'ngx_http_leak_create_session');
  assert.equal(c.confidence, 'high');
  assert.deepEqual(
    doc.steps.map((s) => s.id),
    ['memory', 'allocator', 'pools', 'buckets', 'code-path'],
  );
  // What the duration is made of: one 2 s pause, then one full trace window, nothing waited twice.
  // (How long leakscope's own reads add is a benchmark, not a test: `node dist/bench/run.js analyze`,
  // goal <= the pause + window + 10 s; a wall-clock bound here failed on a loaded machine.)
  assert.deepEqual(
    said
      .filter((t) => t.startsWith('observing for') || t.startsWith('step 5/5'))
      .map((t) => t.replace(/ing .* for/, 'ing … for')),
    ['observing for 2 s', `step 5/5: tracing … for ${TRACE} s`],
    said.join(' | '),
  );
  const window = doc.leaks?.durationSeconds ?? 0;
  assert.ok(window >= TRACE, `the trace window ran in full: ${window} s of ${TRACE}`);
  assert.ok(doc.durationSeconds >= 2 + window, `${doc.durationSeconds} s cover the pause and the window`);
  // A real analysis document (with its embedded mem, heap, pools and leaks documents) reads back through the contract.
  const text = JSON.parse(JSON.stringify(doc));
  assert.deepEqual(JSON.parse(JSON.stringify(parseAnalyze(text))), text);
  console.log(`# ${c.summary} (${doc.durationSeconds.toFixed(1)} s)`);
});

test('healthy nginx under the same load: no leak', async () => {
  const doc = await analyzeNginx(['/ok', '/ok', '/ok', '/ok']);
  assert.equal(doc.conclusion.leak, false, doc.conclusion.summary);
  assert.equal(doc.conclusion.verdict, 'no-leak', doc.conclusion.summary);
  assert.notEqual(doc.steps.find((s) => s.id === 'pools')!.status, 'anomaly', 'no pools warning on a healthy server');
});

test('healthy nginx with two workers: the sibling is compared and still no leak', async () => {
  const doc = await analyzeNginx(['/ok', '/ok', '/ok', '/ok'], 2);
  assert.equal(doc.conclusion.leak, false, doc.conclusion.summary);
  assert.equal(doc.conclusion.verdict, 'no-leak', doc.conclusion.summary);
});

test('a C program leaking through malloc: names the leaking function and its bucket', async () => {
  const fx = await startFixture('malloc-leaker');
  try {
    let stop = false;
    const driver = (async () => {
      while (!stop) await fx.command('go 50 2000', 60_000);
    })();
    const space = LiveProcess.open(fx.pid);
    let doc: AnalyzeDocument;
    try {
      doc = await analyze(space, { traceSeconds: TRACE, pauseSeconds: 2 });
    } finally {
      stop = true;
      await driver;
      space.close();
    }
    const c = doc.conclusion;
    assert.equal(c.leak, true, `${c.summary} ${JSON.stringify(doc.steps.map((s) => s.finding))}`);
    // leak_path_c leaks the most: 64 KiB (posix_memalign) every 4th call -> chunks of 64 KiB + 16.
    assert.deepEqual(c.bucket, { minBytes: 64 * 1024, maxBytes: 128 * 1024 });
    assert.equal(c.function, 'leak_path_c');
    assert.equal(c.module, 'malloc-leaker');
    assert.equal(doc.pools, null, 'not nginx: no pool step');
    assert.equal((doc.leaks as { mode: string }).mode, 'malloc');
  } finally {
    await fx.stop();
  }
});

test('HTML report of the leak scenario renders in Chromium with every section and the flame graph', async (t) => {
  assert.ok(leakDoc, 'the leak scenario ran');
  const dir = join(REPO, 'test/output');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'analyze-report.html');
  writeFileSync(file, renderHtmlReport(leakDoc));
  await withBrowser(t, async ({ page, errors }) => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await openFile(page, file);
    // biome-ignore lint/performance/useDomNodeTextContent: the text as rendered (CSS applied) is what is checked
    const body = await page.locator('body').innerText();
    for (const s of leakDoc!.steps) assert.ok(body.includes(s.title), `section ${s.title}`);
    const frames = await page.locator('svg title').allTextContents();
    assert.ok(
      frames.some((x) => x.includes('ngx_http_leak_create_session')),
      'flame graph frame of the module function',
    );
    assert.ok((await page.locator('[data-anomalous="true"]').count()) >= 1, 'the anomalous bucket is marked');
    await page.screenshot({ path: join(dir, 'analyze-report.png'), fullPage: true });
    assert.deepEqual(errors, []);
  });
});

test('a hostile symbol name is escaped in the HTML report and its flame graph', async (t) => {
  const fx = await startFixture('hostile-symbol');
  const hostile = fx.truth.symbol;
  try {
    let stop = false;
    const driver = (async () => {
      while (!stop) {
        await fx.command('go 400', 60_000);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const space = LiveProcess.open(fx.pid);
    let doc: AnalyzeDocument;
    try {
      doc = await analyze(space, { traceSeconds: 3, pauseSeconds: 1, sampleBytes: 0 });
    } finally {
      stop = true;
      await driver;
      space.close();
    }
    assert.equal(doc.conclusion.function, hostile, doc.conclusion.summary);
    const html = renderHtmlReport(doc);
    assert.ok(!html.includes('<img src=x'), 'never raw in the markup');
    const file = join(mkdtempSync(join(tmpdir(), 'leakscope-hostile-')), 'report.html');
    writeFileSync(file, html);
    await withBrowser(t, async ({ page, errors, dialogs }) => {
      await openFile(page, file);
      assert.equal(await page.locator('img').count(), 0, 'no element injected');
      // biome-ignore lint/performance/useDomNodeTextContent: the text as rendered (CSS applied) is what is checked
      assert.ok((await page.locator('body').innerText()).includes(hostile), 'shown as text');
      assert.ok(
        (await page.locator('svg title').allTextContents()).some((x) => x.includes(hostile)),
        'flame graph frame as text',
      );
      assert.deepEqual(dialogs, []);
      assert.deepEqual(errors, []);
    });
  } finally {
    await fx.stop();
  }
});

test("leakscope demo (the README's first command) writes the report and names the leak", () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-demo-test-'));
  const html = join(dir, 'report.html'),
    json = join(dir, 'report.json');
  const r = leakscope(['demo', '--duration', '3', '--html', html, '--json', json]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(html));
  const doc = JSON.parse(readFileSync(json, 'utf8')) as AnalyzeDocument;
  assert.equal(doc.conclusion.leak, true);
  assert.equal(doc.conclusion.function, 'ngx_http_leak_create_session');
  assert.match(r.stdout, /report: /);
});
