import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { renderHtmlReport, type AnalyzeDocument } from './html-report.js';
import { bucketLabel, histogramSvg, horizontalBarsSvg, shortBytes, stackedBarSvg } from './charts-svg.js';
import { LeakscopeError } from '../model/errors.js';
import { openFile, withBrowser } from '../../test/helpers/browser.js';

// dist/src/report -> repo root
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

const KiB = 1024;
const MiB = 1024 * KiB;
const H_IMG = '<img src=x onerror=alert(1)>';
const H_SCRIPT = '</script><script>alert(1)</script>';

// ---- A realistic analysis of the seed case: a 1 GiB nginx worker, 92% of it held by glibc, a
// ---- module creating a 352 KiB pool per request and never destroying it.
/** The leaked chunk: a 352 KiB pool block plus glibc's 16-byte header (chunk size, in [256 KiB, 512 KiB)). */
const LEAK_CHUNK = 352 * KiB + 16;
const GROWTH = 2240;
const RSS = 1024 * MiB;

type Fr = { function: string | null; module: string; offset: number };
const ngx = (name: string, offset: number): Fr => ({ function: name, module: 'nginx', offset });
const leakmod = (name: string, offset: number): Fr => ({ function: name, module: 'ngx_http_leak_module.so', offset });
const libc = (name: string, offset: number): Fr => ({ function: name, module: 'libc.so.6', offset });
const WORKER_ROOT: Fr[] = [
  ngx('ngx_epoll_process_events', 0x5f2a1),
  ngx('ngx_process_events_and_timers', 0x4e1c0),
  ngx('ngx_worker_process_cycle', 0x5c8d2),
  ngx('ngx_spawn_process', 0x5a3f1),
  ngx('ngx_start_worker_processes', 0x5b902),
  ngx('ngx_master_process_cycle', 0x5c1e7),
  ngx('main', 0x2f8b0),
  libc('__libc_start_call_main', 0x271ca),
  libc('__libc_start_main', 0x27285),
  ngx('_start', 0x30a11),
];
const REQUEST_PATH: Fr[] = [
  ngx('ngx_http_core_content_phase', 0x8c1d2),
  ngx('ngx_http_core_run_phases', 0x86f21),
  ngx('ngx_http_handler', 0x870a4),
  ngx('ngx_http_process_request', 0x93b10),
  ngx('ngx_http_process_request_headers', 0x91c2e),
  ngx('ngx_http_wait_request_handler', 0x8f3a9),
  ...WORKER_ROOT,
];
const POOL_ALLOC: Fr[] = [libc('malloc', 0x9a0e0), ngx('ngx_alloc', 0x3b2f1), ngx('ngx_create_pool', 0x3a5c2)];

function stack(frames: Fr[], bytes: number, count: number) {
  return { frames, bytes, count, allocBytes: bytes * 2, allocCount: count * 2 };
}

function seedDocument(): AnalyzeDocument {
  const leakBytes = GROWTH * LEAK_CHUNK; // 807,439,360 B = 770 MiB
  const stacks = [
    stack(
      [
        ...POOL_ALLOC,
        leakmod('ngx_http_leak_create_session', 0x1a4c),
        leakmod('ngx_http_leak_handler', 0x1b90),
        ...REQUEST_PATH,
      ],
      leakBytes,
      GROWTH,
    ),
    stack(
      [
        libc('malloc', 0x9a0e0),
        ngx('ngx_alloc', 0x3b2f1),
        ngx('ngx_palloc_large', 0x3a9d0),
        ngx('ngx_palloc', 0x3ab31),
        leakmod('ngx_http_leak_session_attach', 0x1c20),
        leakmod('ngx_http_leak_handler', 0x1bd4),
        ...REQUEST_PATH,
      ],
      36 * MiB,
      4480,
    ),
    stack(
      [
        libc('malloc', 0x9a0e0),
        { function: 'CRYPTO_malloc', module: 'libcrypto.so.3', offset: 0x1b6c41 },
        { function: 'SSL_SESSION_new', module: 'libssl.so.3', offset: 0x3c2a0 },
        ngx('ngx_ssl_new_session', 0xb1f20),
        ngx('ngx_ssl_handshake', 0xb0c11),
        ngx('ngx_http_ssl_handshake', 0x8e4a2),
        ...WORKER_ROOT,
      ],
      3 * MiB,
      1536,
    ),
    stack(
      [
        ...POOL_ALLOC,
        ngx('ngx_http_create_request', 0x90a1c),
        ngx('ngx_http_alloc_request', 0x90b33),
        ngx('ngx_http_wait_request_handler', 0x8f3a9),
        ...WORKER_ROOT,
      ],
      2 * MiB,
      512,
    ),
    stack(
      [libc('malloc', 0x9a0e0), ngx('ngx_alloc', 0x3b2f1), ngx('ngx_event_accept', 0x51e02), ...WORKER_ROOT],
      1536 * KiB,
      384,
    ),
    stack(
      [
        libc('malloc', 0x9a0e0),
        { function: 'pcre2_match_data_create_8', module: 'libpcre2-8.so.0', offset: 0x5e1a0 },
        ngx('ngx_regex_exec_array', 0x6a11b),
        ngx('ngx_http_regex_exec', 0x84c02),
        ngx('ngx_http_core_find_location', 0x87e51),
        ...REQUEST_PATH.slice(1),
      ],
      768 * KiB,
      3072,
    ),
    stack(
      [
        libc('calloc', 0x9a8b0),
        ngx('ngx_calloc', 0x3b391),
        ngx('ngx_http_upstream_create', 0xa20c4),
        ngx('ngx_http_proxy_handler', 0xc5e18),
        ...REQUEST_PATH,
      ],
      512 * KiB,
      128,
    ),
    stack(
      [
        libc('malloc', 0x9a0e0),
        { function: null, module: 'libluajit-5.1.so.2', offset: 0x2a3f },
        ngx('ngx_http_lua_content_handler', 0x123f0),
        ...REQUEST_PATH,
      ],
      384 * KiB,
      96,
    ),
    stack(
      [
        libc('realloc', 0x9b2c0),
        ngx('ngx_array_push', 0x3c8e2),
        ngx('ngx_http_headers_in_add', 0x92c11),
        ngx('ngx_http_process_request_headers', 0x91c2e),
        ...WORKER_ROOT.slice(0),
      ],
      256 * KiB,
      64,
    ),
    stack(
      [
        libc('malloc', 0x9a0e0),
        ngx('ngx_alloc', 0x3b2f1),
        ngx('ngx_open_cached_file', 0x4b7a1),
        ngx('ngx_http_static_handler', 0xc01a9),
        ...REQUEST_PATH,
      ],
      128 * KiB,
      32,
    ),
  ];
  const outstanding = stacks.reduce((s, x) => s + x.bytes, 0);
  const outstandingCount = stacks.reduce((s, x) => s + x.count, 0);

  // Histogram: power-of-two buckets 16 B .. 4 MiB; the leak sits in [256 KiB, 512 KiB).
  const hist: Array<{
    minBytes: number;
    maxBytes: number;
    inUseChunks: number;
    inUseBytes: number;
    freeChunks: number;
    freeBytes: number;
  }> = [];
  const baselineChunks: number[] = [];
  const inUse = [9120, 21400, 38210, 17320, 11880, 6410, 3310, 1620, 880, 310, 122, 64, 18, 9, 64 + GROWTH, 12, 31, 0];
  for (let k = 4; k <= 21; k++) {
    const i = k - 4;
    const min = 2 ** k;
    const chunks = inUse[i]!;
    const avg = min === 256 * KiB ? LEAK_CHUNK : Math.round(min * 1.4);
    hist.push({
      minBytes: min,
      maxBytes: min * 2,
      inUseChunks: chunks,
      inUseBytes: chunks * avg,
      freeChunks: Math.round(chunks / 9),
      freeBytes: Math.round(chunks / 9) * min,
    });
    baselineChunks.push(min === 256 * KiB ? 64 : Math.max(0, chunks - Math.round(chunks * 0.04)));
  }
  const comparison = hist.map((b, i) => {
    const base = baselineChunks[i]!;
    const avg = b.inUseChunks ? b.inUseBytes / b.inUseChunks : 0;
    return {
      minBytes: b.minBytes,
      maxBytes: b.maxBytes,
      baselineInUseChunks: base,
      currentInUseChunks: b.inUseChunks,
      chunkGrowth: b.inUseChunks - base,
      byteGrowth: Math.round((b.inUseChunks - base) * avg),
    };
  });
  const heapInUse = hist.reduce((s, b) => s + b.inUseBytes, 0) - 31 * 2 * MiB;

  const shmTop = [
    {
      start: 0x7f3a10000000,
      end: 0x7f3a10800000,
      rssBytes: 8 * MiB,
      swapBytes: 0,
      label: 'shm zone "limit_req_zone_one" (ngx_http_limit_req_module)',
    },
    {
      start: 0x7f3a10800000,
      end: 0x7f3a10a00000,
      rssBytes: 2 * MiB,
      swapBytes: 0,
      label: 'shm zone "SSL" (ngx_ssl_session_cache)',
    },
  ];
  const cat = (name: string, rssBytes: number, mappings: number, top: unknown[] = [], source = 'mapping') => ({
    name,
    rssBytes,
    pssBytes: name === 'code' ? Math.round(rssBytes / 3) : rssBytes,
    swapBytes: 0,
    mappings,
    source,
    top,
  });
  const mem = {
    schema: 'leakscope.mem/1',
    target: 'nginx: worker process (pid 48213)',
    pid: 48213,
    rssBytes: RSS,
    pssBytes: RSS - 25 * MiB,
    swapBytes: 0,
    glibcShare: (880 + 62) / 1024,
    categories: [
      cat(
        'glibc-main-heap',
        880 * MiB,
        1,
        [{ start: 0x55d0a2c4e000, end: 0x55d0d9e4e000, rssBytes: 880 * MiB, swapBytes: 0, label: 'main arena heap' }],
        'arena ring from main_arena (debug-file symbol)',
      ),
      cat('glibc-thread-arenas', 0, 0, [], 'arena ring from main_arena (debug-file symbol)'),
      cat(
        'glibc-mmapped-chunks',
        62 * MiB,
        31,
        [
          {
            start: 0x7f3a20000000,
            end: 0x7f3a20200000,
            rssBytes: 2 * MiB,
            swapBytes: 0,
            label: 'mmapped chunk 0x7f3a20000000',
          },
        ],
        'validated mmapped chunk headers',
      ),
      cat('nginx-shm', 10 * MiB, 2, shmTop, 'cycle->shared_memory'),
      cat('luajit', 0, 0),
      cat('code', 38 * MiB, 41, [
        { start: 0x55d0a1e00000, end: 0x55d0a1f80000, rssBytes: 1536 * KiB, swapBytes: 0, label: '/usr/sbin/nginx' },
      ]),
      cat('file', 4 * MiB, 6),
      cat('stack', 128 * KiB, 1),
      cat('other-anon', 30 * MiB - 128 * KiB, 23),
    ],
    modules: [{ path: '/usr/sbin/nginx', rssBytes: 1536 * KiB }],
    notes: [],
  };
  const heap = {
    schema: 'leakscope.heap/1',
    target: mem.target,
    pid: 48213,
    glibcVersion: '2.36',
    totals: {
      inUseChunks: 110_700,
      inUseBytes: heapInUse,
      freeChunks: 12_310,
      freeBytes: 20 * MiB,
      tcacheChunks: 3120,
      tcacheBytes: 1280 * KiB,
      fastbinChunks: 2900,
      fastbinBytes: 256 * KiB,
      binChunks: 6289,
      binBytes: 14 * MiB,
      topBytes: 4608 * KiB,
      mmappedChunks: 31,
      mmappedBytes: 62 * MiB,
      systemBytes: 880 * MiB,
      unsortedChunks: 12,
      smallbinChunks: 5890,
      largebinChunks: 387,
      fragmentation: 0.022,
      largestFreeChunk: 4608 * KiB,
      arenas: 1,
      tcaches: 1,
    },
    arenas: [],
    histogram: hist,
    topSizes: [{ size: LEAK_CHUNK, count: 2304, bytes: 2304 * LEAK_CHUNK }],
    glibcView: { nMmaps: 31, mmappedMem: 62 * MiB, mmapThreshold: 4 * MiB, tcacheCount: 7 },
    sources: { main_arena: 'debug-file symbol (libc6-dbg)' },
    inconsistencies: [],
    inconsistencyCount: 0,
    complete: true,
    stats: { elapsedMs: 412, bytesRead: 942 * MiB, chunksWalked: 123_010 },
  };
  const group = (
    owner: string,
    module: string | null,
    creator: string | null,
    referencedFrom: string | null,
    pools: number,
    blocks: number,
    blockBytes: number,
    largeAllocs: number,
    largeBytes: number,
  ) => ({
    owner,
    module,
    creator,
    referencedFrom,
    pools,
    blocks,
    blockBytes,
    usedBytes: Math.round(blockBytes * 0.62),
    largeAllocs,
    largeBytes,
    bytes: blockBytes + largeBytes,
  });
  const groups = [
    group(
      'unreferenced',
      'ngx_http_leak_module',
      'ngx_http_leak_create_session',
      null,
      GROWTH,
      GROWTH,
      GROWTH * LEAK_CHUNK,
      4480,
      36 * MiB,
    ),
    group('cycle', null, 'ngx_init_cycle', 'ngx_cycle', 1, 38, 608 * KiB, 14, 9 * MiB),
    group(
      'connection',
      'ngx_http_core_module',
      'ngx_event_accept',
      'ngx_cycle->connections',
      384,
      384,
      384 * 528,
      0,
      0,
    ),
    group(
      'request',
      'ngx_http_core_module',
      'ngx_http_create_request',
      'ngx_connection_t.data',
      96,
      212,
      212 * 4112,
      31,
      1984 * KiB,
    ),
    group(
      'upstream',
      'ngx_http_proxy_module',
      'ngx_http_upstream_create',
      'ngx_http_request_t.upstream',
      24,
      24,
      24 * 4112,
      2,
      128 * KiB,
    ),
  ];
  const pools = {
    schema: 'leakscope.pools/1',
    target: mem.target,
    pid: 48213,
    nginxVersion: '1.22.1',
    totals: {
      pools: groups.reduce((s, g) => s + g.pools, 0),
      blocks: groups.reduce((s, g) => s + g.blocks, 0),
      bytes: groups.reduce((s, g) => s + g.bytes, 0),
      largeAllocs: groups.reduce((s, g) => s + g.largeAllocs, 0),
      largeBytes: groups.reduce((s, g) => s + g.largeBytes, 0),
    },
    groups,
    largest: [],
    pools: [],
    buckets: [],
    modules: [],
    roots: {},
    inconsistencies: [],
    inconsistencyCount: 0,
    inconsistencyKinds: {},
    stats: {},
  };
  const leaks = {
    schema: 'leakscope.leaks/1',
    target: mem.target,
    pid: 48213,
    mode: 'malloc',
    durationSeconds: 30,
    sampling: { sampleBytes: 512 * KiB, minAgeSeconds: 5 },
    totals: {
      outstandingBytes: outstanding,
      outstandingCount,
      allocatedBytes: outstanding * 2,
      allocatedCount: outstandingCount * 2,
      sampledEvents: 18_342,
      completeStacks: 18_101,
    },
    cost: {
      probeHits: { malloc: 412_330, free: 398_112 },
      totalProbeHits: 810_442,
      estimatedCpuSeconds: 8.1,
      perHitMicros: 10,
      dutyCycle: 1,
      lostEvents: 0,
    },
    probes: ['libc.so.6:malloc', 'libc.so.6:free'],
    stacks,
    notes: [],
  };
  return {
    schema: 'leakscope.analyze/1',
    target: 'nginx: worker process (pid 48213, /usr/sbin/nginx -c /etc/nginx/nginx.conf)',
    pid: 48213,
    generatedAt: '2025-03-14T09:26:53.000Z',
    durationSeconds: 47.3,
    steps: [
      {
        id: 'memory',
        title: 'Process memory',
        status: 'anomaly',
        finding:
          'The worker holds 1.00 GiB resident; 92.0% of it (942 MiB) is glibc malloc memory, almost all in the main arena heap.',
        evidence: [
          'RSS 1.00 GiB, PSS 999 MiB, no swap',
          'glibc-main-heap 880 MiB (85.9%), glibc-mmapped-chunks 62 MiB (6.1%)',
          'nginx shm zones 10 MiB; code 38 MiB',
        ],
      },
      {
        id: 'allocator',
        title: 'glibc allocator',
        status: 'ok',
        finding: 'glibc has 918 MiB in use and only 20 MiB free: the memory is live allocations, not fragmentation.',
        evidence: [
          'in use 856 MiB in 110,700 chunks + 62 MiB in 31 mmapped chunks',
          'free 20 MiB (top 4.5 MiB), fragmentation 2.2%',
          'glibc 2.36, main_arena from libc6-dbg',
        ],
      },
      {
        id: 'pools',
        title: 'nginx pools',
        status: 'anomaly',
        finding: '2,240 pools (806 MiB) created by ngx_http_leak_module are referenced by nothing: leak suspects.',
        evidence: [
          '2,745 pools found from ngx_cycle, connections, requests and a scan of in-use chunks',
          'unreferenced: 2,240 pools, 770 MiB of blocks + 36 MiB of large allocations',
          'creator ngx_http_leak_create_session (cleanup handler symbol)',
        ],
      },
      {
        id: 'buckets',
        title: 'Anomalous chunk sizes',
        status: 'anomaly',
        finding:
          '2,240 more chunks in 256 KiB – 512 KiB than in the baseline (+770 MiB); no other bucket grew by more than 2%.',
        evidence: [
          'baseline 64 chunks, now 2,304, all of size 360,464 bytes',
          'the 2,240 unreferenced pools account for all of the growth',
        ],
      },
      {
        id: 'code-path',
        title: 'Leaking call path',
        status: 'anomaly',
        finding:
          '95% of the memory allocated in a 30 s trace and still outstanding was allocated by ngx_create_pool called from ngx_http_leak_create_session.',
        evidence: [
          'malloc trace, 30 s, sampling every 512 KiB',
          '18,342 stacks captured, 98.7% unwound to main (DWARF CFI)',
          'cost: 810,442 probe hits, about 8.1 s of target CPU',
        ],
      },
    ],
    conclusion: {
      leak: true,
      module: 'ngx_http_leak_module',
      bucket: { minBytes: 256 * KiB, maxBytes: 512 * KiB },
      function: 'ngx_http_leak_create_session',
      confidence: 'high',
      summary:
        'ngx_http_leak_module leaks one 352 KiB pool per request: ngx_http_leak_create_session creates it and nothing ever destroys it (2,240 pools, 770 MiB so far).',
    },
    // Partial embedded documents on purpose: the page renders them with gaps.
    mem: mem as unknown as AnalyzeDocument['mem'],
    heap: heap as unknown as AnalyzeDocument['heap'],
    heapComparison: { baseline: '/var/tmp/leakscope/heap-48213-baseline.json (09:21:02)', buckets: comparison },
    anomalousBucket: { minBytes: 256 * KiB, maxBytes: 512 * KiB, chunkGrowth: GROWTH, byteGrowth: GROWTH * LEAK_CHUNK },
    pools: pools as unknown as AnalyzeDocument['pools'],
    leaks: leaks as unknown as AnalyzeDocument['leaks'],
  };
}

/** The seed document with hostile strings in the target, a symbol, a zone name and a pool group's module. */
function hostileDocument(): AnalyzeDocument {
  const doc = seedDocument();
  doc.target = `nginx ${H_IMG} ${H_SCRIPT}`;
  const leaks = doc.leaks as { stacks: Array<{ frames: Fr[] }> };
  leaks.stacks[0]!.frames[3] = { function: H_SCRIPT, module: `lib${H_IMG}.so`, offset: 0x1a4c };
  leaks.stacks[1]!.frames[4] = { function: H_IMG, module: 'ngx_http_leak_module.so', offset: 0x1c20 };
  const mem = doc.mem as { categories: Array<{ name: string; top: Array<{ label: string }> }> };
  mem.categories.find((c) => c.name === 'nginx-shm')!.top[0]!.label = `shm zone "${H_IMG}${H_SCRIPT}"`;
  (doc.pools as { groups: Array<{ module: string | null }> }).groups[0]!.module = H_IMG;
  doc.conclusion.function = H_SCRIPT;
  doc.conclusion.module = H_IMG;
  doc.steps[0]!.finding = `zone ${H_IMG}`;
  doc.heapComparison!.baseline = H_SCRIPT;
  return doc;
}

/** A non-nginx process with no heap census and no trace. */
function minimalDocument(): AnalyzeDocument {
  const doc = seedDocument();
  doc.target = 'python3 (pid 991)';
  doc.heap = null;
  doc.heapComparison = null;
  doc.anomalousBucket = null;
  doc.pools = null;
  doc.leaks = null;
  doc.steps = [
    { id: 'memory', title: 'Process memory', status: 'ok', finding: 'RSS 1.00 GiB; glibc holds 92%.', evidence: [] },
    {
      id: 'allocator',
      title: 'glibc allocator',
      status: 'error',
      finding: 'The heap could not be walked: main_arena not found.',
      evidence: ['no libc debug file; top-chunk search failed'],
    },
    { id: 'pools', title: 'nginx pools', status: 'skipped', finding: 'Not an nginx process.', evidence: [] },
    { id: 'buckets', title: 'Anomalous chunk sizes', status: 'skipped', finding: 'Needs a heap census.', evidence: [] },
    {
      id: 'code-path',
      title: 'Leaking call path',
      status: 'skipped',
      finding: 'No trace: run with --trace to trace allocations.',
      evidence: [],
    },
  ];
  doc.conclusion = {
    leak: false,
    module: null,
    bucket: null,
    function: null,
    confidence: 'none',
    summary: 'No leak could be established from a single snapshot.',
  };
  return doc;
}

test('charts: labels, escaping, marked bucket', () => {
  assert.equal(shortBytes(262144), '256 KiB');
  assert.equal(shortBytes(1536), '1.5 KiB');
  assert.equal(shortBytes(1000), '1000 B');
  assert.equal(shortBytes(50 * MiB), '50 MiB');
  assert.equal(bucketLabel(256 * KiB, 512 * KiB), '256 KiB \u2013 512 KiB');
  const bars = horizontalBarsSvg(
    [
      { kind: 'heading', label: H_IMG, valueLabel: '1' },
      { key: H_SCRIPT, label: H_SCRIPT, value: 5, valueLabel: H_IMG, color: '#123456' },
    ],
    { width: 600, ariaLabel: H_SCRIPT },
  );
  assert.ok(!bars.includes('<img') && !bars.includes('<script') && !bars.includes('</script'));
  const stacked = stackedBarSvg(
    [
      { key: 'a"b', label: H_IMG, value: 3, color: '#d9482b' },
      { key: 'z', label: 'z', value: 1, color: '#eee' },
    ],
    { width: 400, ariaLabel: 'x' },
  );
  assert.ok(!stacked.includes('<img') && stacked.includes('75.0%'));
  assert.throws(
    () => stackedBarSvg([{ key: 'a', label: 'a', value: 1, color: 'red;x' }], { width: 400, ariaLabel: 'x' }),
    LeakscopeError,
  );
  const hist = histogramSvg(
    [
      { minBytes: 128 * KiB, maxBytes: 256 * KiB, value: 10 },
      { minBytes: 256 * KiB, maxBytes: 512 * KiB, value: 1000 },
    ],
    { width: 600, scale: 'log', unit: 'bytes', ariaLabel: 'h', markedMinBytes: 256 * KiB, markNote: '+2,240 chunks' },
  );
  assert.equal(hist.split('data-anomalous="true"').length - 1, 1);
  assert.match(hist, /data-label="256 KiB – 512 KiB" data-anomalous="true"/);
  assert.throws(
    () => renderHtmlReport({ ...seedDocument(), schema: 'leakscope.mem/1' as 'leakscope.analyze/1' }),
    LeakscopeError,
  );
});

async function pageFacts(page: Page) {
  return page.evaluate(() => ({
    imgs: document.querySelectorAll('img').length,
    scripts: document.querySelectorAll('script').length,
    stepTitles: [...document.querySelectorAll('section.step')].map((s) => [
      s.getAttribute('data-step'),
      s.querySelector('h2')!.textContent,
      s.getAttribute('data-status'),
    ]),
    summary: document.querySelector('.conclusion .summary')?.textContent ?? null,
    verdict: document.querySelector('.verdict-tag')?.textContent ?? null,
    confidence: document.querySelector('.confidence')?.getAttribute('data-confidence') ?? null,
    embedded: JSON.parse(document.getElementById('leakscope-data')!.textContent!),
    target: document.getElementById('target')!.textContent,
    title: document.title,
    externalRefs: [...document.querySelectorAll('[src], link[href]')].length,
  }));
}

const STEP_IDS = ['memory', 'allocator', 'pools', 'buckets', 'code-path'];

test('HTML report in headless Chromium: steps, conclusion, histogram mark, flame graph, JSON, hostile names, minimal document', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-report-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await withBrowser(t, async (s) => {
    const doc = seedDocument();
    const path = join(dir, 'report.html');
    const html = renderHtmlReport(doc);
    writeFileSync(path, html);
    assert.ok(!/\b(?:src|href)="(?:https?:)?\/\//.test(html), 'no network references');
    const page = s.page;
    await openFile(page, path);

    const f = await pageFacts(page);
    assert.deepEqual(
      f.stepTitles,
      doc.steps.map((st) => [st.id, st.title, st.status]),
    );
    assert.equal(f.summary, doc.conclusion.summary);
    assert.equal(f.verdict, 'Leak found');
    assert.equal(f.confidence, 'high');
    assert.deepEqual(f.embedded, doc, 'embedded JSON parses back to the document');
    assert.equal(f.target, doc.target);
    assert.equal(f.imgs, 0);
    assert.equal(f.scripts, 3, 'JSON data, page script, flame graph script');
    assert.equal(f.externalRefs, 0);
    const facts = await page.locator('.conclusion .facts').textContent();
    for (const want of ['ngx_http_leak_module', '256 KiB – 512 KiB', 'ngx_http_leak_create_session', '+2,240 chunks'])
      assert.ok(facts!.includes(want), `conclusion facts lack ${want}`);

    // Memory: glibc categories grouped under one heading; the stacked bar's glibc-main-heap segment is 880/1024 = 85.9%.
    assert.equal(
      await page.locator('#step-memory .hbar-heading').first().locator('text').first().textContent(),
      'glibc allocator',
    );
    assert.equal(
      await page
        .locator('#step-memory [data-chart="memory-stacked"] .segment[data-key="glibc-main-heap"] text')
        .textContent(),
      '85.9%',
    );

    // Histogram: exactly one visible marked bucket, labelled with its range; baseline bars drawn.
    const marked = async () =>
      page.evaluate(() => {
        const vis = [...document.querySelectorAll('#step-buckets .hist-variant')].filter(
          (v) => !(v as HTMLElement).hidden,
        );
        const m = vis.flatMap((v) => [...v.querySelectorAll('[data-anomalous="true"]')]);
        const box = m[0]?.querySelector('.hist-bar')?.getBoundingClientRect();
        return {
          visible: vis.map((v) => v.getAttribute('data-scale')),
          count: m.length,
          label: m[0]?.getAttribute('data-label'),
          callout: vis[0]?.querySelector('.hist-mark-label')?.textContent,
          note: vis[0]?.querySelector('.hist-mark-note')?.textContent,
          barHeight: box?.height ?? 0,
          baselines: vis[0]?.querySelectorAll('.hist-bar-baseline').length ?? 0,
        };
      });
    let m = await marked();
    assert.deepEqual(m.visible, ['linear']);
    assert.equal(m.count, 1);
    assert.equal(m.label, '256 KiB – 512 KiB');
    assert.equal(m.callout, '256 KiB – 512 KiB');
    assert.equal(m.note, '+2,240 chunks, +770 MiB');
    assert.ok(m.barHeight > 100, `anomalous bar height ${m.barHeight}`);
    assert.equal(m.baselines, 18);

    // Flame graph: inline, its script ran (under the page's CSP), frames present.
    const fgTitles = await page.evaluate(() =>
      [...document.querySelectorAll('#leak-flamegraph .fg-frame title')].map((e) => e.textContent!),
    );
    assert.ok(
      fgTitles.some((x) => x.startsWith('ngx_http_leak_create_session [ngx_http_leak_module.so]: 770 MiB')),
      'leak frame missing',
    );
    assert.ok(fgTitles.some((x) => x.startsWith('libluajit-5.1.so.2+0x2a3f [libluajit-5.1.so.2]')));
    assert.equal(await page.locator('.stacks-table tbody tr').count(), 10);
    assert.ok(
      (await page.locator('.stacks-table tbody tr').first().textContent())!.includes('ngx_http_leak_create_session'),
    );

    await page.screenshot({ path: join(mkdirP(join(REPO, 'test', 'output')), 'report.png'), fullPage: true });

    // Interactions: log scale, sorting, flame graph zoom and highlight, JSON download.
    await page.click('[data-scale-toggle="log"]');
    m = await marked();
    assert.deepEqual(m.visible, ['log']);
    assert.equal(m.label, '256 KiB – 512 KiB');
    await page
      .locator('#step-buckets figure')
      .screenshot({ path: join(REPO, 'test', 'output', 'report-histogram-log.png') });

    const poolsCol = async () =>
      page.evaluate(() =>
        [...document.querySelectorAll('.pools-table tbody tr')].map((r) =>
          Number((r as HTMLTableRowElement).cells[4]!.getAttribute('data-value')),
        ),
      );
    await page.click('.pools-table th:nth-child(5) button');
    assert.deepEqual(await poolsCol(), [2240, 384, 96, 24, 1]);
    await page.click('.pools-table th:nth-child(5) button');
    assert.deepEqual(await poolsCol(), [1, 24, 96, 384, 2240]);
    await page.click('.pools-table th:nth-child(1) button');
    assert.deepEqual(
      await page.evaluate(() =>
        [...document.querySelectorAll('.pools-table tbody tr')].map((r) =>
          (r as HTMLTableRowElement).cells[0]!.getAttribute('data-value'),
        ),
      ),
      ['connection', 'cycle', 'request', 'unreferenced', 'upstream'],
    );

    const leakFrame = await page.evaluate(() =>
      [...document.querySelectorAll('#leak-flamegraph .fg-frame')]
        .find((g) => g.querySelector('title')!.textContent!.startsWith('ngx_http_leak_handler '))!
        .getAttribute('data-i'),
    );
    await page.click(`#leak-flamegraph .fg-frame[data-i="${leakFrame}"] rect`);
    assert.equal(
      await page.isVisible('#leak-flamegraph .fg-reset'),
      true,
      'zoom did not run: flame graph script blocked?',
    );
    await page.click('[data-fg-search]');
    assert.equal(await page.locator('#leak-flamegraph .fg-match').count(), 1);
    await page.fill('#fg-search-input', '^ngx_http_leak_');
    // The two leak stacks share ngx_http_leak_handler: handler, create_session, session_attach.
    await page.waitForTimeout(300); // the input is debounced by 150 ms
    assert.equal(await page.locator('#leak-flamegraph .fg-match').count(), 3);
    await page.click('[data-fg-reset]');
    assert.equal(await page.locator('#leak-flamegraph .fg-match').count(), 0);

    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download-json')]);
    assert.equal(download.suggestedFilename(), 'leakscope-analyze-48213.json');
    assert.deepEqual(JSON.parse(readFileSync((await download.path())!, 'utf8')), doc);
    await page.click('#raw-json summary');
    await page.locator('#raw-json pre').filter({ hasText: '{' }).waitFor({ timeout: 5000 }); // filled on the (async) toggle event
    assert.deepEqual(JSON.parse((await page.textContent('#raw-json pre'))!), doc);
    assert.deepEqual(s.errors, []);
    assert.deepEqual(s.dialogs, []);

    // Hostile names in a symbol, a zone, the target and a module: text only.
    const hostile = hostileDocument();
    const hpath = join(dir, 'hostile.html');
    writeFileSync(hpath, renderHtmlReport(hostile));
    const p2 = await s.newPage();
    await openFile(p2, hpath);
    const hf = await pageFacts(p2);
    assert.equal(hf.imgs, 0, 'an <img> was injected');
    assert.equal(hf.scripts, 3, 'a <script> was injected');
    assert.equal(hf.target, hostile.target);
    assert.ok(hf.title.includes(hostile.target));
    assert.deepEqual(hf.embedded, hostile);
    const texts = await p2.evaluate(() => ({
      regions: [...document.querySelectorAll('#step-memory .regions')].map((e) => e.textContent).join('\n'),
      finding: document.querySelector('#step-memory .finding')!.textContent,
      stacks: document.querySelector('.stacks-table')!.textContent,
      pools: document.querySelector('.pools-table')!.textContent,
      facts: document.querySelector('.conclusion .facts')!.textContent,
      fg: [...document.querySelectorAll('#leak-flamegraph .fg-frame title')].map((e) => e.textContent).join('\n'),
    }));
    assert.ok(texts.regions.includes(`shm zone "${H_IMG}${H_SCRIPT}"`));
    assert.equal(texts.finding, `zone ${H_IMG}`);
    assert.ok(texts.stacks.includes(H_SCRIPT) && texts.stacks.includes(H_IMG));
    assert.ok(texts.pools.includes(H_IMG));
    assert.ok(texts.facts.includes(H_SCRIPT) && texts.facts.includes(H_IMG));
    assert.ok(texts.fg.includes(`${H_SCRIPT} [lib${H_IMG}.so]`));
    await p2.click('[data-fg-search]');
    await p2.click('[data-scale-toggle="log"]');
    assert.equal((await pageFacts(p2)).imgs, 0);
    assert.deepEqual(s.errors, []);
    assert.deepEqual(s.dialogs, []);

    // A non-nginx process, no census, no trace: still a complete page.
    const minimal = minimalDocument();
    const mpath = join(dir, 'minimal.html');
    writeFileSync(mpath, renderHtmlReport(minimal));
    const p3 = await s.newPage();
    await openFile(p3, mpath);
    const mf = await pageFacts(p3);
    assert.deepEqual(
      mf.stepTitles.map((x) => x[0]),
      STEP_IDS,
    );
    assert.equal(mf.verdict, 'No leak found');
    assert.equal(mf.confidence, 'none');
    assert.equal(mf.scripts, 2, 'no flame graph');
    assert.deepEqual(mf.embedded, minimal);
    assert.deepEqual(await p3.locator('.no-data').allTextContents(), [
      'No heap census in this report: the glibc allocator was not walked.',
    ]);
    assert.equal(await p3.locator('#step-memory [data-chart="memory-stacked"]').count(), 1);
    await p3.screenshot({ path: join(REPO, 'test', 'output', 'report-minimal.png'), fullPage: true });
    const [d3] = await Promise.all([p3.waitForEvent('download'), p3.click('#download-json')]);
    assert.deepEqual(JSON.parse(readFileSync((await d3.path())!, 'utf8')), minimal);
    assert.deepEqual(s.errors, []);
    assert.deepEqual(s.dialogs, []);
  });
});

function mkdirP(p: string): string {
  mkdirSync(p, { recursive: true });
  return p;
}
