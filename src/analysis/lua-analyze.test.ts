// analyze on an OpenResty-style worker (Debian nginx + ngx_http_lua, test/helpers/lua-nginx.ts):
// a location leaking into a module-level Lua table under steady traffic is named by the table's
// path with its growth; the healthy location under the same traffic gives no leak.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveProcess } from '../target/index.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { startLuaNginx, LUA_LEAK_TABLE } from '../../test/helpers/lua-nginx.js';
import { steadyTraffic } from '../../test/helpers/nginx.js';
import { analyze } from './analyze.js';
import { memoryBreakdown } from './memory-breakdown.js';
import { breakdownInputsFor } from './breakdown-inputs.js';
import { Symbolizer } from '../symbols/index.js';
import type { AnalyzeDocument } from '../contract/analyze.js';

async function analyzeLua(path: string): Promise<{ doc: AnalyzeDocument; requests: number }> {
  const ngx = await startLuaNginx();
  try {
    const stop = steadyTraffic(ngx, [path], 5);
    await new Promise((r) => setTimeout(r, 1000));
    const space = LiveProcess.open(ngx.workerPids()[0]!);
    try {
      const doc = await analyze(space, { traceSeconds: 0, pauseSeconds: 2 });
      return { doc, requests: await stop() };
    } finally {
      space.close();
    }
  } finally {
    await ngx.stop();
  }
}

test('analyze, Lua leak under traffic: the conclusion names the growing table by its path', {
  timeout: 120_000,
}, async () => {
  await ensureFixturesBuilt();
  const { doc, requests } = await analyzeLua('/leak?n=4&size=4096');
  assert.ok(requests > 50, `traffic ran (${requests} requests)`);
  const step = doc.steps.find((s) => s.id === 'luajit');
  assert.ok(step, 'a LuaJIT step');
  assert.equal(step.status, 'anomaly', step.finding);
  assert.equal(doc.conclusion.leak, true, doc.conclusion.summary);
  assert.ok(doc.conclusion.summary.includes(LUA_LEAK_TABLE), doc.conclusion.summary);
  assert.equal(doc.conclusion.module, 'Lua module acme_leak');
  // The growth probe (mmap / mremap by lj_alloc during the pause) names the Lua code that grew the
  // heap: a line of acme_leak.put (lines 8-19 of the fixture; the trace start when JIT-compiled).
  const at = /acme_leak\.lua:(\d+)/.exec(doc.conclusion.function ?? '');
  assert.ok(at, `the conclusion names the Lua location: ${doc.conclusion.function}; ${step.evidence.join(' | ')}`);
  assert.ok(Number(at[1]) >= 8 && Number(at[1]) <= 19, `a line of acme_leak.put: ${at[0]}`);
  assert.ok(doc.conclusion.summary.includes(at[0]), doc.conclusion.summary);
  if (process.env.LEAKSCOPE_TEST_VERBOSE) console.log(doc.conclusion.summary, step.evidence);
  const ids = doc.steps.map((s) => s.id);
  assert.ok(
    ids.indexOf('luajit') > ids.indexOf('pools') && ids.indexOf('luajit') < ids.indexOf('buckets'),
    `step order ${ids.join(', ')}`,
  );
});

test('analyze, healthy Lua location under the same traffic: no leak', { timeout: 120_000 }, async () => {
  await ensureFixturesBuilt();
  const { doc, requests } = await analyzeLua('/ok');
  assert.ok(requests > 50, `traffic ran (${requests} requests)`);
  assert.equal(doc.steps.find((s) => s.id === 'luajit')?.status, 'ok');
  assert.equal(doc.conclusion.leak, false, doc.conclusion.summary);
});

test('mem on the Lua worker: the lj_alloc regions are the luajit category, in use == collectgarbage("count") * 1024', {
  timeout: 60_000,
}, async () => {
  await ensureFixturesBuilt();
  const ngx = await startLuaNginx();
  try {
    const get = async (p: string) => {
      const r = await ngx.request(p);
      assert.equal(r.status, 200, r.body);
      return r.body;
    };
    const payload = Number(await get('/leak?n=200&size=20000'));
    await get('/fullgc');
    const count = Number(await get('/count'));
    const space = LiveProcess.open(ngx.workerPids()[0]!);
    try {
      const mem = memoryBreakdown(space, breakdownInputsFor(space, new Symbolizer(space.modules())));
      const lj = mem.categories.find((c) => c.name === 'luajit')!;
      assert.equal(lj.usedBytes, count, 'luajit used == gc.total');
      assert.ok(lj.rssBytes >= payload, `luajit RSS ${lj.rssBytes} holds the ${payload} B the leak wrote`);
      assert.ok(
        mem.categories.find((c) => c.name === 'other-anon')!.rssBytes < lj.rssBytes,
        'the Lua heap is no longer other-anon',
      );
    } finally {
      space.close();
    }
  } finally {
    await ngx.stop();
  }
});
