// The slab pages of an ngx.shared.DICT zone (system tier: Debian nginx + libnginx-mod-http-lua,
// test/helpers/lua-nginx.ts, 1 worker). Truth is what the worker itself reports:
// ngx.shared.DICT:free_space() = pfree * ngx_pagesize (lua-nginx-module 0.10.23,
// ngx_http_lua_ffi_shdict_free_space) and capacity() = the zone's size, read at rest right
// before and after leakscope reads the zone; and what the test puts in: N values of 5000 bytes
// each take 2 whole pages (a node over ngx_slab_max_size = pagesize / 2 is given whole pages),
// M values of 100 bytes each take one small chunk.
// Checked in the nginx model (nginxShmZones), in `mem` (breakdown -> leakscope.mem/1 JSON, parsed
// back, and its text) and in `analyze` (memory step evidence, JSON, HTML).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { LiveProcess } from '../target/index.js';
import { Symbolizer } from '../symbols/index.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { startLuaNginx } from '../../test/helpers/lua-nginx.js';
import type { NginxHandle } from '../../test/helpers/nginx.js';
import { nginxShmZones } from './shm.js';
import type { NginxShmZone } from './shm.js';
import { memoryBreakdown } from '../analysis/memory-breakdown.js';
import { breakdownInputsFor } from '../analysis/breakdown-inputs.js';
import { analyze } from '../analysis/analyze.js';
import { encodeMem, parseMem } from '../contract/mem.js';
import { parseAnalyze } from '../contract/analyze.js';
import { renderMemTable } from '../report/mem-table.js';
import { renderAnalyzeText } from '../report/analyze-text.js';
import { renderHtmlReport } from '../report/html-report.js';

const DICT = 'leakscope_dict';
const BIG = { n: 40, size: 5000 };
const SMALL = { n: 200, size: 100 };

const handles: NginxHandle[] = [];
after(async () => {
  for (const h of handles) await h.stop();
});

async function workerSays(ng: NginxHandle): Promise<{ freeBytes: number; capacity: number }> {
  const r = await ng.request('/dict/free');
  assert.equal(r.status, 200, r.body);
  const [free, cap] = r.body.trim().split(' ').map(Number);
  return { freeBytes: free!, capacity: cap! };
}

function dictZone(space: LiveProcess): NginxShmZone {
  const zones = nginxShmZones(space, new Symbolizer(space.modules()));
  const z = zones.find((x) => x.name === DICT);
  assert.ok(z, `zones: ${JSON.stringify(zones.map((x) => x.name))}`);
  assert.ok(z.slab, `slab not read: ${z.slabProblem}`);
  return z;
}

test('ngx.shared.DICT zone: used / free slab pages equal what the worker reports, before and after filling', async () => {
  await ensureFixturesBuilt();
  const ng = await startLuaNginx(1, {
    httpExtra: `lua_shared_dict ${DICT} 1m;`,
    serverExtra: [
      `location = /dict/free { content_by_lua_block { local d = ngx.shared.${DICT}; ngx.print(d:free_space(), " ", d:capacity()) } }`,
      `location = /dict/fill { content_by_lua_block { local d = ngx.shared.${DICT}; local v = string.rep("v", tonumber(ngx.var.arg_size)); local ok = 0; for i = 1, tonumber(ngx.var.arg_n) do if d:safe_set(ngx.var.arg_prefix .. i, v) then ok = ok + 1 end end; ngx.print(ok) } }`,
    ],
  });
  handles.push(ng);
  const space = LiveProcess.open(ng.workerPids()[0]!);
  try {
    // ---- empty dict ----
    const w0 = await workerSays(ng);
    const z0 = dictZone(space);
    const w0b = await workerSays(ng);
    assert.equal(w0b.freeBytes, w0.freeBytes, 'the dict did not change while read');
    const s0 = z0.slab!;
    assert.equal(z0.size, w0.capacity, 'zone size = capacity()');
    assert.equal(z0.module, 'ngx_http_lua_module');
    assert.equal(s0.pageSize, 4096);
    assert.equal(s0.freePages * s0.pageSize, w0.freeBytes, 'free pages = free_space() / page size');
    assert.equal(s0.freeListPages, s0.freePages, 'the free list walked holds pfree pages');
    assert.equal(s0.usedPages + s0.freePages, s0.pages);
    assert.ok(s0.pages * s0.pageSize < z0.size && s0.pages > (z0.size >> 12) - 8, `${s0.pages} pages in ${z0.size} B`);
    assert.deepEqual(s0.problems, []);

    // ---- fill: N values of 5000 B (2 pages each), M of 100 B (one small chunk each) ----
    const big = await ng.request(`/dict/fill?prefix=big&n=${BIG.n}&size=${BIG.size}`);
    assert.equal(big.body, String(BIG.n));
    const small = await ng.request(`/dict/fill?prefix=small&n=${SMALL.n}&size=${SMALL.size}`);
    assert.equal(small.body, String(SMALL.n));
    const w1 = await workerSays(ng);
    const z1 = dictZone(space);
    const w1b = await workerSays(ng);
    assert.equal(w1b.freeBytes, w1.freeBytes, 'the dict did not change while read');
    const s1 = z1.slab!;
    assert.equal(s1.freePages * s1.pageSize, w1.freeBytes, 'free pages = free_space() / page size, filled');
    assert.equal(s1.freeListPages, s1.freePages);
    assert.equal(s1.pages, s0.pages);
    assert.equal(s1.usedPages + s1.freePages, s1.pages);
    const usedGrowth = s1.usedPages - s0.usedPages;
    assert.ok(usedGrowth >= BIG.n * 2, `${usedGrowth} more pages used for ${BIG.n} values of ${BIG.size} B`);
    // the small values: one chunk each, in slots of chunks larger than a value
    const smallChunks = s1.slots.filter((x) => x.chunkBytes > SMALL.size).reduce((n, x) => n + x.used, 0);
    const smallBefore = s0.slots.filter((x) => x.chunkBytes > SMALL.size).reduce((n, x) => n + x.used, 0);
    assert.ok(smallChunks - smallBefore >= SMALL.n, `${smallChunks - smallBefore} more small chunks in use`);
    // pages of small chunks are in use too: at most (pages used) - (2 per big value)
    assert.ok(usedGrowth <= BIG.n * 2 + Math.ceil(SMALL.n / 8) + 2, `${usedGrowth} pages`);

    process.stdout.write(
      `# ${DICT}: ${s0.pages} pages; empty ${s0.usedPages} used / ${s0.freePages} free (free_space ${w0.freeBytes}); filled ${s1.usedPages} used / ${s1.freePages} free (free_space ${w1.freeBytes}); slots ${JSON.stringify(s1.slots)}\n`,
    );

    // ---- mem: JSON (contract-valid) and text ----
    const mem = encodeMem(memoryBreakdown(space, breakdownInputsFor(space, new Symbolizer(space.modules()))));
    const parsed = parseMem(JSON.parse(JSON.stringify(mem)));
    const mz = parsed.shmZones?.find((x) => x.name === DICT);
    assert.ok(mz?.slab, JSON.stringify(parsed.shmZones));
    assert.equal(mz.slab.freePages * mz.slab.pageSize, w1.freeBytes);
    assert.equal(mz.slab.usedPages, s1.usedPages);
    assert.equal(mz.size, w1.capacity);
    const text = renderMemTable(parsed);
    assert.match(
      text,
      new RegExp(`nginx shm zone "${DICT}" \\(ngx_http_lua_module\\) 1\\.00 MiB: ${s1.pages} slab pages of 4\\.00 KiB, ${s1.usedPages} used, ${s1.freePages} free`),
      text,
    );

    // ---- analyze: the memory step names the zone's pages; JSON and HTML carry them ----
    const doc = parseAnalyze(
      JSON.parse(JSON.stringify(await analyze(space, { traceSeconds: 0, pauseSeconds: 0, reach: false }))),
    );
    const az = doc.mem.shmZones?.find((x) => x.name === DICT);
    assert.equal(az?.slab?.freePages, s1.freePages);
    const step = doc.steps.find((s) => s.id === 'memory')!;
    assert.ok(
      step.evidence.some((e) => e.includes(`"${DICT}"`) && e.includes(`${s1.usedPages} used, ${s1.freePages} free`)),
      JSON.stringify(step.evidence),
    );
    assert.match(renderAnalyzeText(doc), new RegExp(`"${DICT}".*${s1.usedPages} used, ${s1.freePages} free`));
    const html = renderHtmlReport(doc);
    assert.match(html, /data-section="shm-zones"/);
    assert.match(html, new RegExp(`<td class="mono">${DICT}</td>`));
  } finally {
    space.close();
    await ng.stop();
  }
});
