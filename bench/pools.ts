// nginx pool analysis benchmark: `node dist/bench/pools.js` (root; builds the test fixtures).
// Target: a real nginx worker with the leaking test module after N /leak-keep and N
// /leak-drop requests (each leaks a 16 KiB pool plus a LEAK_SIZE large allocation, so
// the heap is large and holds many pools). On the same target, in one process, WARMUP
// rounds then RUNS rounds (medians reported) of:
//   census      the glibc heap census alone (heapCensus, no chunk list);
//   census+list the census collecting its in-use chunks (what `leakscope pools` runs);
//   pools       analyzePools over that chunk list (roots, signature scan, validation,
//               static and heap reference searches, grouping).
// Goal: pools <= 50% of census, steady state (both sides warmed by the same rounds: V8 needs
// a few calls of each to optimize them; medians include the garbage collection each causes).
// Also reported, not part of the goal: COLD_RUNS fresh processes (bench/pools-cold.ts) each
// timing one census+list and one analysis, as a single `leakscope pools` run pays them; and a
// pool-dense heap (5000 + 5000 leaks of a 16 KiB pool + 4 KiB: ~50 pools per MiB of heap
// instead of ~21), where the analysis's per-pool cost weighs more against the census's per-byte cost.
import { execFileSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { driveRequests, startNginx } from '../test/helpers/nginx.js';
import { ensureFixturesBuilt } from '../test/helpers/build.js';
import { heapCensus } from '../src/glibc/index.js';
import { Symbolizer } from '../src/symbols/index.js';
import { LiveProcess } from '../src/target/index.js';
import { censusWithChunks } from '../src/nginx/census-chunks.js';
import { analyzePools } from '../src/nginx/pools.js';

const WARMUP = 5;
const RUNS = 11;
const COLD_RUNS = 5;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const round1 = (x: number): number => Math.round(x * 10) / 10;

export async function benchPools(): Promise<object> {
  await ensureFixturesBuilt();
  const standard = await poolsScenario({ name: 'standard (the goal)', leaks: 1500, leakSize: '32k' });
  console.log('');
  const dense = await poolsScenario({ name: 'pool-dense heap (not the goal)', leaks: 5000, leakSize: '4k' });
  return { ...standard, dense };
}

async function poolsScenario(opts: {
  name: string;
  leaks: number;
  leakSize: string;
}): Promise<Record<string, unknown>> {
  const { leaks, leakSize } = opts;
  const h = await startNginx({ workers: 1, leakSize, workerConnections: 1024 });
  try {
    await driveRequests(h, '/leak-keep', leaks, 8);
    await driveRequests(h, '/leak-drop', leaks, 8);
    const [pid] = h.workerPids();
    const space = LiveProcess.open(pid!);
    try {
      const symbolizer = new Symbolizer(space.modules());
      // Warm-up, the same for both sides: symbol tables, page cache, V8's optimization of each code path.
      for (let i = 0; i < WARMUP; i++) {
        heapCensus(space, { symbolizer });
        const w = censusWithChunks(space, { symbolizer });
        analyzePools(space, { chunks: w.chunks, symbolizer, histogram: w.census.histogram });
      }
      const censusMs: number[] = [],
        listMs: number[] = [],
        poolsMs: number[] = [];
      const phases: Record<string, number[]> = {};
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
        for (const [k, v] of Object.entries(last.stats.phasesMs)) (phases[k] ??= []).push(v);
      }
      const a = last!;
      // Cold: fresh processes, one census+list and one analysis each.
      const coldEntry = fileURLToPath(new URL('./pools-cold.js', import.meta.url));
      const cold: Array<{ censusMs: number; poolsMs: number }> = [];
      for (let i = 0; i < COLD_RUNS; i++)
        cold.push(JSON.parse(execFileSync(process.execPath, [coldEntry, String(pid)], { encoding: 'utf8' })));
      const coldRatio = median(cold.map((c) => c.poolsMs / c.censusMs));
      const result = {
        scenario: opts.name,
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
        runs: { censusMs: censusMs.map(round1), poolsMs: poolsMs.map(round1) },
        cold: {
          censusWithChunkListMs: median(cold.map((c) => c.censusMs)),
          poolsMs: median(cold.map((c) => c.poolsMs)),
          poolsOverCensusWithList: coldRatio,
          runs: cold.map((c) => ({ censusMs: round1(c.censusMs), poolsMs: round1(c.poolsMs) })),
        },
        poolsBytesRead: a.stats.bytesRead,
        phasesMs: Object.fromEntries(Object.entries(phases).map(([k, v]) => [k, median(v)])),
        goal: 'poolsMs <= 0.5 * censusMs',
        met: median(poolsMs) <= 0.5 * median(censusMs),
      };
      const rows: Array<[string, string]> = [
        ['scenario', opts.name],
        [
          'target',
          `${result.target}: ${result.leakedPools} leaked pools (+${leakSize} each), heap in use ${(result.heapInUseBytes / 2 ** 20).toFixed(1)} MiB in ${result.heapInUseChunks} chunks, mmapped ${(result.mmappedBytes / 2 ** 20).toFixed(1)} MiB`,
        ],
        [
          'census (median)',
          `${result.censusMs.toFixed(1)} ms, ${(result.censusBytesRead / 2 ** 20).toFixed(1)} MiB read`,
        ],
        ['census + chunk list', `${result.censusWithChunkListMs.toFixed(1)} ms`],
        [
          'pools (median)',
          `${result.poolsMs.toFixed(1)} ms, ${(result.poolsBytesRead / 2 ** 20).toFixed(1)} MiB read; phase medians ${Object.entries(
            result.phasesMs,
          )
            .map(([k, v]) => `${k} ${v.toFixed(1)}`)
            .join(', ')}`,
        ],
        [
          'pools / census',
          `${(result.poolsOverCensus * 100).toFixed(0)}% (goal <= 50%: ${result.met ? 'met' : 'NOT met'}); min ${Math.min(...poolsMs).toFixed(1)} vs ${Math.min(...censusMs).toFixed(1)} ms`,
        ],
        [
          'cold, fresh process',
          `census+list ${result.cold.censusWithChunkListMs.toFixed(1)} ms, pools ${result.cold.poolsMs.toFixed(1)} ms: ${(coldRatio * 100).toFixed(0)}% (median of ${COLD_RUNS}; not the goal)`,
        ],
        [
          'found',
          `${result.poolsFound} pools, ${result.unreferenced} unreferenced, ${(result.poolBytes / 2 ** 20).toFixed(1)} MiB`,
        ],
      ];
      const w = Math.max(...rows.map((r) => r[0].length));
      console.log(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n'));
      return result;
    } finally {
      space.close();
    }
  } finally {
    await h.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchPools().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
