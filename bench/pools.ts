// nginx pool analysis benchmark: `node dist/bench/pools.js` (root; builds the test fixtures).
// Target: a real nginx worker with the leaking test module after N /leak-keep and N
// /leak-drop requests (each leaks a 16 KiB pool plus a LEAK_SIZE large allocation, so
// the heap is large and holds many pools). On the same target, median of RUNS runs:
//   census      the glibc heap census alone (heapCensus, no chunk list);
//   census+list the census collecting its in-use chunks (what `leakscope pools` runs);
//   pools       analyzePools over that chunk list (roots, signature scan, validation,
//               static and heap reference searches, grouping).
// Goal: pools <= 50% of census.
import { pathToFileURL } from 'node:url';
import { driveRequests, startNginx } from '../test/helpers/nginx.js';
import { ensureFixturesBuilt } from '../test/helpers/build.js';
import { heapCensus } from '../src/glibc/index.js';
import { Symbolizer } from '../src/symbols/index.js';
import { LiveProcess } from '../src/target/index.js';
import { censusWithChunks } from '../src/nginx/census-chunks.js';
import { analyzePools } from '../src/nginx/pools.js';

const RUNS = 7;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function benchPools(opts: { leaks?: number; leakSize?: string } = {}): Promise<object> {
  const leaks = opts.leaks ?? 1500;
  const leakSize = opts.leakSize ?? '32k';
  await ensureFixturesBuilt();
  const h = await startNginx({ workers: 1, leakSize, workerConnections: 1024 });
  try {
    await driveRequests(h, '/leak-keep', leaks, 8);
    await driveRequests(h, '/leak-drop', leaks, 8);
    const [pid] = h.workerPids();
    const space = LiveProcess.open(pid!);
    try {
      const symbolizer = new Symbolizer(space.modules());
      // Warm-up, the same for both sides: symbol tables, page cache, and one run of each code path
      // (the census's first run also pays V8's compilation; so does the pool analysis's).
      heapCensus(space, { symbolizer });
      { const w = censusWithChunks(space, { symbolizer }); analyzePools(space, { chunks: w.chunks, symbolizer, histogram: w.census.histogram }); }
      const censusMs: number[] = [], listMs: number[] = [], poolsMs: number[] = [];
      let last: ReturnType<typeof analyzePools> | undefined;
      let census: ReturnType<typeof heapCensus> | undefined;
      for (let i = 0; i < RUNS; i++) {
        let t = performance.now();
        census = heapCensus(space, { symbolizer });
        censusMs.push(performance.now() - t);
        t = performance.now();
        const c = censusWithChunks(space, { symbolizer });
        listMs.push(performance.now() - t);
        t = performance.now();
        last = analyzePools(space, { chunks: c.chunks, symbolizer, histogram: c.census.histogram });
        poolsMs.push(performance.now() - t);
      }
      const a = last!;
      const result = {
        target: space.description,
        leakedPools: 2 * leaks,
        leakSize,
        heapInUseBytes: census!.totals.inUseBytes,
        heapInUseChunks: census!.totals.inUseChunks,
        mmappedBytes: census!.totals.mmappedBytes,
        censusBytesRead: census!.stats.bytesRead,
        poolsFound: a.totals.pools,
        poolBytes: a.totals.bytes,
        unreferenced: a.pools.filter((p) => p.owner === 'unreferenced').length,
        censusMs: median(censusMs),
        censusWithChunkListMs: median(listMs),
        poolsMs: median(poolsMs),
        poolsOverCensus: median(poolsMs) / median(censusMs),
        poolsBytesRead: a.stats.bytesRead,
        phasesMs: a.stats.phasesMs,
        goal: 'poolsMs <= 0.5 * censusMs',
        met: median(poolsMs) <= 0.5 * median(censusMs),
      };
      const rows: Array<[string, string]> = [
        ['target', `${result.target}: ${result.leakedPools} leaked pools (+${leakSize} each), heap in use ${(result.heapInUseBytes / 2 ** 20).toFixed(1)} MiB in ${result.heapInUseChunks} chunks, mmapped ${(result.mmappedBytes / 2 ** 20).toFixed(1)} MiB`],
        ['census (median)', `${result.censusMs.toFixed(1)} ms, ${(result.censusBytesRead / 2 ** 20).toFixed(1)} MiB read`],
        ['census + chunk list', `${result.censusWithChunkListMs.toFixed(1)} ms`],
        ['pools (median)', `${result.poolsMs.toFixed(1)} ms, ${(result.poolsBytesRead / 2 ** 20).toFixed(1)} MiB read; ${Object.entries(result.phasesMs).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`],
        ['pools / census', `${(result.poolsOverCensus * 100).toFixed(0)}% (goal <= 50%: ${result.met ? 'met' : 'NOT met'})`],
        ['found', `${result.poolsFound} pools, ${result.unreferenced} unreferenced, ${(result.poolBytes / 2 ** 20).toFixed(1)} MiB`],
      ];
      const w = Math.max(...rows.map((r) => r[0].length));
      console.log(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n'));
      return result;
    } finally { space.close(); }
  } finally { await h.stop(); }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchPools().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
}
