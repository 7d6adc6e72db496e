// The contract's encoders and validating parsers: every document reads back as written, and a
// document that is not valid is `malformed` naming the JSON path of its first problem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compareCensus } from '../glibc/compare.js';
import { isLeakscopeError } from '../model/errors.js';
import {
  encodeAnalyze,
  encodeHeap,
  encodeLeaks,
  encodeMem,
  encodePools,
  parseAnalyze,
  parseDocument,
  parseHeap,
  parseJsonText,
  parseLeaks,
  parseMem,
  describeShmZone,
  parsePools,
} from './index.js';
import { sampleCensus, sampleMem, samplePools, sampleStack, sampleTrace } from './test-samples.js';

const KiB = 1024;
const PROTO = '__proto__';
const census = sampleCensus([
  [32, 100],
  [1024, 40],
  [256 * KiB, 12],
]);
const later = sampleCensus([
  [32, 100],
  [1024, 40],
  [256 * KiB, 60],
]);
const trace = sampleTrace([sampleStack(['malloc', 'leaky_alloc', 'main'], 4 * (1 << 20), 16)]);
const pools = samplePools(
  [
    { owner: 'unreferenced', module: 'ngx_http_leak_module', pools: 3 },
    { owner: 'connection', pools: 2, blockChunk: 528 },
  ],
  { census },
);

/** The document as it reaches a reader: JSON text parsed back. */
const roundTrip = (doc: unknown) => JSON.parse(JSON.stringify(doc));

/** `fn` throws `malformed` with a message starting with `path:` and matching `re`. */
function rejects(fn: () => unknown, path: string, re?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isLeakscopeError(e), `not a LeakscopeError: ${String(e)}`);
    assert.equal(e.code, 'malformed');
    assert.ok(e.message.startsWith(`${path}:`), `message ${JSON.stringify(e.message)} does not start with ${path}:`);
    if (re) assert.match(e.message, re);
    return true;
  });
}

test("every encoder's document reads back through its parser unchanged", () => {
  const cases: Array<[unknown, (d: unknown) => unknown]> = [
    [encodeMem(sampleMem(8 << 20, 2 << 20)), parseMem],
    [encodeHeap(later, { comparison: compareCensus(census, later) }), parseHeap],
    [encodePools(pools, { largest: 2 }), parsePools],
    [encodeLeaks(trace), parseLeaks],
    // Lua frames (module "[lua]", file = chunk name, line) and the lua mode (lj_alloc_f).
    [
      encodeLeaks(
        sampleTrace(
          [
            {
              frames: [
                { function: 'lj_alloc_f', module: '[lua]', offset: 0 },
                { function: '/srv/app/cache.lua:12', module: '[lua]', offset: 0, file: '/srv/app/cache.lua', line: 12 },
                { function: 'ngx_http_lua_run_thread', module: 'ngx_http_lua_module.so', offset: 0x1234 },
              ],
              bytes: 4096,
              count: 4,
            },
          ],
          { mode: 'lua' },
        ),
      ),
      parseLeaks,
    ],
    [
      encodeLeaks({
        ...trace,
        mode: 'pool',
        poolSites: {
          placement: 'call-sites',
          probed: [
            {
              module: '/usr/lib/nginx/modules/ngx_http_lua_module.so',
              function: 'ngx_http_lua_module.so+0x1eb40',
              callVaddr: 0x1ebad,
              via: 'plt',
              probeVaddr: 0x1ebb2,
              emulated: false,
            },
          ],
          skipped: [
            {
              module: '/usr/sbin/nginx',
              function: 'nginx+0x6c880',
              callVaddr: 0x6c8ad,
              via: 'direct',
              probeVaddr: 0x6c8b5,
              emulated: true,
              owner: 'request',
              source: 'src/http/ngx_http_request.c ngx_http_alloc_request',
            },
          ],
        },
      }),
      parseLeaks,
    ],
    [
      encodeLeaks({
        ...trace,
        mode: 'pool',
        poolSites: { placement: 'body', reason: '--all-pool-sites', probed: [], skipped: [] },
      }),
      parseLeaks,
    ],
    [
      encodeAnalyze({
        target: 'pid 4242',
        pid: 4242,
        generatedAt: new Date(0),
        durationSeconds: 3,
        steps: [{ id: 'memory', title: 'Process memory', finding: 'x', evidence: ['y'], status: 'ok' }],
        conclusion: {
          leak: false,
          module: null,
          bucket: null,
          function: null,
          confidence: 'none',
          summary: 'No leak found.',
        },
        mem: sampleMem(1, 1),
        census,
        comparison: { baseline: 'the same process 2 s earlier', kind: 'pause', buckets: [] },
        anomalous: null,
        pools,
        trace,
      }),
      parseAnalyze,
    ],
  ];
  for (const [doc, parse] of cases) {
    const text = roundTrip(doc);
    assert.deepEqual(roundTrip(parse(text)), text);
    assert.deepEqual(roundTrip(parseDocument(text)), text);
  }
});

test('a schema-only heap document is malformed, naming the first missing field', () => {
  rejects(() => parseHeap({ schema: 'leakscope.heap/1' }), '$.target', /missing/);
});

test('negative, fractional and string counts are rejected with their path', () => {
  const base = roundTrip(encodeHeap(census));
  const cases: Array<[(d: ReturnType<typeof roundTrip>) => void, string]> = [
    [
      (d) => {
        d.totals.inUseChunks = -1;
      },
      '$.totals.inUseChunks',
    ],
    [
      (d) => {
        d.totals.inUseBytes = '12';
      },
      '$.totals.inUseBytes',
    ],
    [
      (d) => {
        d.histogram[1].inUseChunks = 1.5;
      },
      '$.histogram[1].inUseChunks',
    ],
    [
      (d) => {
        d.histogram[2] = null;
      },
      '$.histogram[2]',
    ],
    [
      (d) => {
        d.arenas[0].heaps[0].start = -4096;
      },
      '$.arenas[0].heaps[0].start',
    ],
    [
      (d) => {
        d.arenas[0].kind = 'other';
      },
      '$.arenas[0].kind',
    ],
    [
      (d) => {
        d.totals.fragmentation = 2;
      },
      '$.totals.fragmentation',
    ],
    [
      (d) => {
        d.histogram = {};
      },
      '$.histogram',
    ],
    [
      (d) => {
        d.sources.mainArena = 7;
      },
      '$.sources["mainArena"]',
    ],
    [
      (d) => {
        d.topSizes[0].count = 2 ** 60;
      },
      '$.topSizes[0].count',
    ],
    [
      (d) => {
        delete d.complete;
      },
      '$.complete',
    ],
  ];
  for (const [mutate, path] of cases) {
    const d = structuredClone(base);
    mutate(d);
    rejects(() => parseHeap(d), path);
  }
});

test('wrong schema, another version, not an object', () => {
  const d = roundTrip(encodeHeap(census));
  rejects(() => parseHeap({ ...d, schema: 'leakscope.pools/1' }), '$.schema', /"leakscope\.heap\/1"/);
  rejects(() => parseHeap({ ...d, schema: 'leakscope.heap/2' }), '$.schema', /reads version 1/);
  rejects(() => parseHeap({ ...d, schema: undefined }), '$.schema', /missing/);
  rejects(() => parseHeap([d]), '$', /an object/);
  rejects(() => parseHeap(null), '$');
  rejects(() => parseDocument({ schema: 'leakscope.nothing/1' }), '$.schema');
  rejects(() => parseDocument({ schema: 'constructor' }), '$.schema');
  rejects(() => parseDocument('leakscope.heap/1'), '$');
  rejects(() => parseJsonText('{"schema": "leakscope.heap/1",'), 'not JSON');
});

test('unknown fields are dropped; keys of open maps stay plain keys', () => {
  const d = roundTrip(encodeHeap(census));
  d.futureField = { anything: true };
  d.totals.futureTotal = 3;
  const sources = JSON.parse('{"__proto__": "x", "constructor": "y", "mainArena": "z"}');
  d.sources = sources;
  const p = parseHeap(d) as unknown as Record<string, unknown> & {
    totals: Record<string, unknown>;
    sources: Record<string, string>;
  };
  assert.equal(p.futureField, undefined);
  assert.equal(p.totals.futureTotal, undefined);
  assert.equal(Object.getPrototypeOf(p.sources), null);
  assert.deepEqual(Object.keys(p.sources), ['__proto__', 'constructor', 'mainArena']);
  assert.equal(p.sources[PROTO], 'x');
  assert.equal(({} as Record<string, unknown>).x, undefined);
});

test('pools: a bucket share naming a group that does not exist is malformed', () => {
  const d = roundTrip(encodePools(pools));
  d.buckets[0].groups[0].group = d.groups.length;
  rejects(() => parsePools(d), '$.buckets[0].groups[0].group');
});

test('analyze: the embedded documents are checked too', () => {
  const doc = roundTrip(
    encodeAnalyze({
      target: 't',
      pid: 1,
      generatedAt: new Date(0),
      durationSeconds: 1,
      steps: [],
      conclusion: { leak: false, module: null, bucket: null, function: null, confidence: 'none', summary: '' },
      mem: sampleMem(1, 1),
      census,
      comparison: null,
      anomalous: null,
      pools: null,
      trace,
    }),
  );
  doc.leaks.stacks[0].frames[0].module = null;
  rejects(() => parseAnalyze(doc), '$.leaks.stacks[0].frames[0].module');
  doc.leaks = null;
  doc.heap.schema = 'leakscope.mem/1';
  rejects(() => parseAnalyze(doc), '$.heap.schema');
  doc.heap = null;
  doc.conclusion.confidence = 'certain';
  rejects(() => parseAnalyze(doc), '$.conclusion.confidence');
});

test('mem: nginx shm zones with their slab pages read back; a bad slab field is malformed at its path', () => {
  const m = sampleMem(8 << 20, 2 << 20);
  m.shmZones = [
    {
      name: 'cache',
      address: 0x7f0000000000,
      size: 1 << 20,
      module: 'ngx_http_lua_module',
      rssBytes: 40960,
      slab: {
        pageSize: 4096,
        pages: 254,
        freePages: 159,
        usedPages: 95,
        freeListPages: 159,
        slots: [{ chunkBytes: 256, total: 208, used: 200, reqs: 200, fails: 0 }],
        problems: [],
      },
    },
    { name: 'other', address: 0x7f0000200000, size: 4096, module: null, rssBytes: 0, slab: null, slabProblem: 'x' },
  ];
  const doc = encodeMem(m);
  assert.deepEqual(parseMem(JSON.parse(JSON.stringify(doc))), doc);
  assert.equal(
    describeShmZone(doc.shmZones![0]!),
    '"cache" (ngx_http_lua_module) 1.00 MiB: 254 slab pages of 4.00 KiB, 95 used, 159 free; chunks used/total 256 B 200/208',
  );
  assert.match(describeShmZone(doc.shmZones![1]!), /slab not read \(x\)/);
  const bad = JSON.parse(JSON.stringify(doc));
  bad.shmZones[0].slab.freePages = -1;
  assert.throws(() => parseMem(bad), /\$\.shmZones\[0\]\.slab\.freePages/);
  // documents written before the field read back without it
  const old = JSON.parse(JSON.stringify(doc));
  delete old.shmZones;
  assert.equal(parseMem(old).shmZones, undefined);
});
