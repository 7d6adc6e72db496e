// The fixtures work: every C fixture starts and prints its ground truth, and nginx with
// the leak module leaks exactly what it says. Run: node scripts/run-tests.mjs helpers
import { before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { ensureFixturesBuilt, fixturePath, LEAK_MODULE_PATH } from './build.js';
import { startFixture, type MallocLeakerReport } from './fixture.js';
import { driveRequests, parseWrkOutput, runWrkDetailed, startNginx, type LeakModuleBody } from './nginx.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  await ensureFixturesBuilt();
});

describe('C fixtures', () => {
  test('heap-pattern: truth matches glibc mallinfo2 and malloc_info', async () => {
    const f = await startFixture('heap-pattern');
    try {
      const t = f.truth;
      assert.equal(t.fixture, 'heap-pattern');
      assert.equal(t.pid, f.pid);
      assert.equal(t.arenas.length, 3);
      const mi = t.mallinfo2;
      // every free-list class is non-empty, as designed
      assert.ok(t.totals.tcacheChunks > 0 && t.totals.fastbinChunks > 0 && t.totals.smallbinChunks > 0);
      assert.ok(t.totals.largebinChunks > 0 && t.totals.unsortedChunks > 0 && t.totals.mmappedChunks > 0);
      assert.ok(mi.ordblks > 0 && mi.smblks > 0 && mi.hblks > 0);
      // glibc's own view contains at least the fixture's chunks
      assert.ok(mi.smblks >= t.totals.fastbinChunks, `smblks ${mi.smblks} < ${t.totals.fastbinChunks}`);
      assert.ok(mi.fsmblks >= t.totals.fastbinBytes);
      assert.ok(mi.hblks >= 5 && mi.hblkhd >= t.totals.mmappedBytes);
      assert.ok(mi.ordblks >= t.totals.binChunks + 3, `ordblks ${mi.ordblks} < bins ${t.totals.binChunks} + 3 tops`);
      assert.ok(mi.arena >= t.totals.inUseBytes);
      // the known in-use classes
      const inuse = (arena: string, request: number) =>
        t.classes.find((c) => c.arena === arena && c.request === request && c.state === 'inuse');
      assert.equal(inuse('main', 300)?.count, 1000);
      assert.equal(inuse('main', 300)?.chunkSize, 320);
      assert.equal(inuse('main', 5000)?.count, 500);
      assert.equal(inuse('main', 100000)?.count, 37);
      assert.equal(inuse('main', 2 << 20)?.count, 20);
      const mm = t.classes.find((c) => c.state === 'mmapped');
      assert.equal(mm?.count, 5);
      assert.equal(mm?.chunkSize, 1052672);
      // buckets add up to totals
      const sum = t.buckets.reduce((a, b) => a + b.inUseChunks + b.freeChunks + b.mmappedChunks, 0);
      assert.equal(sum, t.totals.inUseChunks + t.totals.freeChunks + t.totals.mmappedChunks);
      for (const b of t.buckets) assert.equal(b.maxBytes, b.minBytes * 2);
      // malloc_info agrees on the fastbin and unsorted chunks of every arena
      const heaps = t.mallocInfo.split('<heap nr=').slice(1);
      assert.equal(heaps.length, 3);
      for (const h of heaps) {
        const fast = /<total type="fast" count="(\d+)"/.exec(h);
        assert.ok(fast && Number(fast[1]) >= 29, `fast chunks per arena: ${fast?.[1]}`);
        assert.match(h, /<unsorted from="2017" to="2017" total="\d+" count="12"\/>/);
      }
      assert.ok(alive(f.pid), 'sits still until stdin EOF');
    } finally {
      await f.stop();
    }
    assert.ok(!alive(f.truth.pid));
  });

  test('mem-known: the memory is resident and glibc accounts for it', async () => {
    const f = await startFixture('mem-known');
    try {
      const t = f.truth;
      assert.equal(t.mainHeap.requestedBytes, 64 << 20);
      assert.equal(t.threadArena.requestedBytes, 32 << 20);
      assert.equal(t.mmapped.requestedBytes, 16 << 20);
      assert.ok(t.rssBytes >= 112 << 20, `rss ${t.rssBytes}`);
      assert.equal(t.mallinfo2.hblks, 16);
      assert.equal(t.mallinfo2.hblkhd, t.mmapped.chunkBytes);
      assert.ok(t.mallinfo2.uordblks >= t.mainHeap.chunkBytes + t.threadArena.chunkBytes);
      assert.match(t.mallocInfo, /<heap nr="1">/);
    } finally {
      await f.stop();
    }
  });

  test('churn: keeps running until stdin EOF', async () => {
    const f = await startFixture('churn', ['3']);
    try {
      assert.equal(f.truth.threads, 3);
      assert.equal(f.truth.tids.length, 3);
      await sleep(200);
      assert.ok(alive(f.pid));
      const status = readFileSync(`/proc/${f.pid}/status`, 'utf8');
      assert.match(status, /Threads:\s+4/);
    } finally {
      await f.stop();
    }
    assert.ok(!alive(f.pid));
  });

  test('malloc-leaker: per-path leak counts follow the known rates', async () => {
    const f = await startFixture('malloc-leaker');
    try {
      assert.equal(f.truth.iterations, 0);
      const r = await f.command<MallocLeakerReport>('go 100');
      const by = Object.fromEntries(r.paths.map((p) => [p.name, p]));
      assert.equal(r.iterations, 100);
      assert.equal(by.leak_path_a.leakedCount, 100);
      assert.equal(by.leak_path_a.leakedBytes, 100 * 4096);
      assert.equal(by.leak_path_b.leakedCount, 50);
      assert.equal(by.leak_path_c.leakedCount, 25);
      assert.equal(by.leak_path_d.leakedCount, 100);
      assert.equal(r.churn.allocations, 800);
      assert.equal(r.totalLeakedBytes, 100 * 4096 + 50 * 512 + 25 * 65536 + 100 * 8192);
      assert.equal(r.outstanding, 275);
      assert.ok(r.functions.leak_path_a > 0);
      const freed = await f.command<MallocLeakerReport>('free');
      assert.equal(freed.outstanding, 0);
      assert.equal(freed.totalLeakedBytes, 0);
    } finally {
      await f.stop();
    }
  });

  test('hostile-symbol: the ELF symbol carries the hostile name', async () => {
    const f = await startFixture('hostile-symbol', ['10']);
    try {
      assert.equal(f.truth.symbol, 'x<img src=x onerror=alert(1)>&"\'');
      assert.equal(f.truth.leakedCount, 10);
      const r = await f.command<{ leakedCount: number }>('go 5');
      assert.equal(r.leakedCount, 15);
      const nm = spawnSync('nm', [fixturePath('hostile-symbol')], { encoding: 'utf8' });
      if (nm.status === 0)
        assert.ok(
          nm.stdout.split('\n').some((l) => l.endsWith(' T ' + f.truth.symbol)),
          'nm lists the symbol',
        );
    } finally {
      await f.stop();
    }
  });
});

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].some(existsSync);

describe('nginx with the leak module', { skip: NGINX ? false : 'nginx is not installed' }, () => {
  test('leak-keep / leak-drop grow, ok does not, slow holds a request', async () => {
    assert.ok(existsSync(LEAK_MODULE_PATH));
    const ng = await startNginx();
    try {
      const workers = ng.workerPids();
      assert.equal(workers.length, 1);
      assert.ok(ng.pid > 0 && workers[0] !== ng.pid);

      const keep = await driveRequests(ng, '/leak-keep', 30, 4);
      assert.equal(keep.ok, 30);
      const body = (p: string) =>
        ng.request(p).then((r) => {
          assert.equal(r.status, 200);
          return JSON.parse(r.body) as LeakModuleBody;
        });
      let b = await body('/leak-keep');
      assert.equal(b.kept, 31);
      assert.equal(b.stored, 31);
      assert.equal(b.leaked, 31);
      assert.equal(b.size, 300 * 1024);
      assert.equal(b.pid, workers[0]);

      await driveRequests(ng, '/leak-drop', 5, 2);
      b = await body('/ok');
      assert.equal(b.dropped, 5);
      assert.equal(b.leaked, 36);
      const ok = await driveRequests(ng, '/ok', 50, 8);
      assert.equal(ok.ok, 50);
      b = await body('/ok');
      assert.equal(b.leaked, 36, '/ok does not leak');
      assert.equal(b.destroyed, 52);
      assert.equal(b.cleanups, 52);

      const lim = await ng.request('/limited');
      assert.equal(lim.status, 200);
      assert.equal((await ng.request('/static')).body, 'static\n');

      // /slow?ms=1500 is still open while /ok answers and reports it in flight
      const t0 = Date.now();
      let done = false;
      const slow = ng.request('/slow?ms=1500').then((r) => {
        done = true;
        return r;
      });
      await sleep(300);
      b = await body('/ok');
      assert.equal(b.inflight, 1);
      assert.equal(done, false);
      const s = await slow;
      assert.equal(s.status, 200);
      assert.ok(Date.now() - t0 >= 1400, `slow answered after ${Date.now() - t0} ms`);
      assert.equal((JSON.parse(s.body) as LeakModuleBody).mode, 'slow');
      b = await body('/ok');
      assert.equal(b.inflight, 0);
    } finally {
      await ng.stop();
    }
    assert.ok(!alive(ng.pid));
    assert.ok(!existsSync(ng.prefix));
  });

  test('workers: N, leak_size', async () => {
    const ng = await startNginx({ workers: 2, leakSize: '100k' });
    try {
      assert.equal(ng.workerPids().length, 2);
      const r = await ng.request('/leak-keep');
      assert.equal((JSON.parse(r.body) as LeakModuleBody).size, 100 * 1024);
      const conf = readFileSync(ng.confPath, 'utf8');
      assert.match(conf, /zone=leakscope_zone:1m/);
    } finally {
      await ng.stop();
    }
  });

  test('gateway mode proxies to an upstream nginx; wrk measures it', async () => {
    const ng = await startNginx({ gateway: true });
    try {
      assert.ok(ng.upstream && ng.upstream.pid !== ng.pid);
      const r = await ng.request('/gw/anything');
      assert.equal(r.status, 200);
      assert.equal(r.body, 'upstream\n');
      const wrk = spawnSync('wrk', ['--version'], { encoding: 'utf8' });
      if (wrk.error) {
        console.log('# wrk is not installed: skipping the wrk part');
        return;
      }
      const w = await runWrkDetailed(ng.url('/gw/'), 1, 8);
      assert.ok(w.requestsPerSec > 0);
      assert.equal(w.non2xx, 0);
    } finally {
      await ng.stop();
    }
    assert.ok(!alive(ng.upstream!.pid));
  });
});

test('parseWrkOutput', () => {
  const out = `Running 1s test @ http://127.0.0.1:1/
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   310.40us  120.00us   2.00ms   90.00%
    Req/Sec    12.34k     1.00k   14.00k    70.00%
  24567 requests in 1.00s, 3.50MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:  24530.12
Transfer/sec:      3.49MB
`;
  const r = parseWrkOutput(out);
  assert.equal(r.requestsPerSec, 24530.12);
  assert.equal(r.totalRequests, 24567);
  assert.equal(r.durationSec, 1);
  assert.equal(r.non2xx, 7);
  assert.deepEqual(r.socketErrors, { connect: 0, read: 2, write: 0, timeout: 1 });
});
