// Renderers over contract documents, without a browser: terminal tables of every command, and
// the HTML report's strict CSP, whose script hashes must match the bundled assets as embedded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { compareCensus } from '../glibc/compare.js';
import { encodeAnalyze, encodeHeap, encodeLeaks, encodeMem, encodePools } from '../contract/index.js';
import { sampleCensus, sampleMem, samplePools, sampleStack, sampleTrace } from '../contract/test-samples.js';
import { renderHeapTable } from './heap-table.js';
import { renderHtmlReport } from './html-report.js';
import { renderLeaksTable } from './leaks-table.js';
import { renderMemTable } from './mem-table.js';
import { renderPoolsTable } from './pools-table.js';

const KiB = 1024;
const before = sampleCensus([
  [32, 100],
  [256 * KiB, 10],
]);
const after = sampleCensus([
  [32, 100],
  [256 * KiB, 70],
]);
const trace = sampleTrace([sampleStack(['malloc', 'leaky', 'main'], 1 << 20, 4)]);
const pools = samplePools([{ owner: 'unreferenced', module: 'ngx_http_leak_module', pools: 3 }], { census: after });

test('terminal tables render the documents', () => {
  assert.match(renderMemTable(encodeMem(sampleMem(8 << 20, 2 << 20))), /glibc holds 80\.0% of RSS/);
  const heap = renderHeapTable(encodeHeap(after, { comparison: compareCensus(before, after) }));
  assert.match(heap, /256 KiB – 512 KiB +70 .* \+60 /);
  const p = renderPoolsTable(encodePools(pools), { largest: 2 });
  assert.match(p, /nginx 1\.22\.1 \(layouts: table\)/);
  assert.match(p, /leak suspects: 3 pool\(s\) nothing refers to/);
  assert.match(renderLeaksTable(encodeLeaks(trace)), /1\.00 MiB +4 +malloc <- leaky <- main/);
  const site = { callVaddr: 0x6c8ad, via: 'direct' as const, probeVaddr: 0x6c8b5, emulated: true };
  const pool = renderLeaksTable(
    encodeLeaks({
      ...trace,
      mode: 'pool',
      poolSites: {
        placement: 'call-sites',
        probed: [{ ...site, module: '/m/ngx_http_leak_module.so', function: 'ngx_http_leak_create_session' }],
        skipped: [{ ...site, module: '/usr/sbin/nginx', function: 'nginx+0x6c880', owner: 'request' }],
      },
    }),
  );
  assert.match(
    pool,
    /pool probes at 1 ngx_create_pool call sites: ngx_http_leak_create_session \(ngx_http_leak_module\.so 0x6c8ad\)/,
  );
  assert.match(pool, /left alone .*: nginx\+0x6c880 \(nginx 0x6c8ad\) request/);
});

test('HTML report: the CSP names exactly the hashes of its inline scripts, the page script as bundled', () => {
  const doc = encodeAnalyze({
    target: 'pid 4242',
    pid: 4242,
    generatedAt: new Date(0),
    durationSeconds: 1,
    steps: [{ id: 'code-path', title: 'C call path', finding: 'f', evidence: [], status: 'anomaly' }],
    conclusion: { leak: true, module: 'm', bucket: null, function: 'leaky', confidence: 'high', summary: 's' },
    mem: sampleMem(1 << 20, 1 << 20),
    census: after,
    comparison: null,
    anomalous: null,
    pools,
    trace,
  });
  const html = renderHtmlReport(doc);
  const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)![1]!.replaceAll('&#39;', "'");
  const allowed = new Set([...csp.matchAll(/'sha256-([^']+)'/g)].map((m) => m[1]));
  const scripts = [...html.matchAll(/<script(?![^>]*application\/json)[^>]*>([\s\S]*?)<\/script>/g)].map((m) => {
    const cdata = /^<!\[CDATA\[([\s\S]*)\]\]>$/.exec(m[1]!);
    return cdata ? cdata[1]! : m[1]!;
  });
  assert.ok(scripts.length >= 2, 'page script and the flame graph script');
  for (const s of scripts)
    assert.ok(
      allowed.has(createHash('sha256').update(s, 'utf8').digest('base64')),
      `a script without its hash: ${s.slice(0, 60)}`,
    );
  assert.equal(allowed.size, scripts.length);
  const bundled = readFileSync(new URL('./assets/report.js', import.meta.url), 'utf8').replace(/\n$/, '');
  assert.ok(
    scripts.some((s) => s === bundled.replaceAll('__FLAME_ID__', 'leak-flamegraph')),
    'the page script is assets/report.js',
  );
  assert.ok(
    html.includes(readFileSync(new URL('./assets/report.css', import.meta.url), 'utf8').slice(0, 200)),
    'the style sheet is assets/report.css',
  );
});
