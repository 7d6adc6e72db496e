// Reachability benchmark: `node dist/bench/reach.js` (root, after `make -C test/fixtures`).
// On the heap of the census benchmark (glibc-bigheap: 4.5M chunks of 192 bytes in the main arena,
// 2 x 250k in thread arenas, ~960 MiB; its pointer arrays live in anonymous mmaps, so every chunk is
// reachable from an opaque root), in the same run, medians of RUNS alternating rounds:
//   census:          heapCensus() alone (glibc located once beforehand);
//   census + reach:  reachability() with one scan: the census with its chunk list, the roots, one read
//                    of every in-use chunk's words, the mark (what one scan costs);
//   two scans:       the default of `heap --reach` on a live process (stability), once.
// Goals (issue 16): census + reach <= 3x census; leakscope's RSS <= 200 MiB over the census's
// (peak RSS, VmHWM, after the census rounds vs after the reach rounds).
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { LiveProcess } from '../src/target/index.js';
import { Symbolizer } from '../src/symbols/index.js';
import { heapCensus, locateGlibc, reachability } from '../src/glibc/index.js';
import { ensureFixturesBuilt } from '../test/helpers/build.js';
import { type BigheapTruth, startFixture } from '../test/helpers/fixture.js';

const RUNS = 5;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
function hwmMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : 0;
}

export async function benchReach(
  opts: { mainChunks?: number; threadChunks?: number; runs?: number } = {},
): Promise<object> {
  await ensureFixturesBuilt();
  const args = [String(opts.mainChunks ?? 4_500_000), String(opts.threadChunks ?? 250_000)];
  const fx = await startFixture<BigheapTruth>('glibc-bigheap', args, { timeoutMs: 180_000 });
  try {
    const space = LiveProcess.open(fx.pid);
    const symbolizer = new Symbolizer(space.modules());
    const location = locateGlibc(space, symbolizer);
    const runs = opts.runs ?? RUNS;
    const censusMs: number[] = [],
      reachMs: number[] = [];
    // Census rounds first (peak RSS of the census alone), then alternating rounds.
    let census = heapCensus(space, { symbolizer, location });
    for (let i = 0; i < 2; i++) census = heapCensus(space, { symbolizer, location });
    const hwmCensus = hwmMiB();
    let reach = await reachability(space, { symbolizer, location, scans: 1 });
    const hwmReach = hwmMiB();
    for (let i = 0; i < runs; i++) {
      let s = performance.now();
      census = heapCensus(space, { symbolizer, location });
      censusMs.push(performance.now() - s);
      s = performance.now();
      reach = await reachability(space, { symbolizer, location, scans: 1 });
      reachMs.push(performance.now() - s);
    }
    const s2 = performance.now();
    const two = await reachability(space, { symbolizer, location, scans: 2, intervalMs: 0 });
    const twoScansMs = performance.now() - s2;
    space.close();
    const r = reach.reachability;
    const t = fx.truth;
    const expected = t.mainChunks + 2 * t.threadChunks - t.freed;
    return {
      inUseChunks: census.totals.inUseChunks + census.totals.mmappedChunks,
      heapMiB: Math.round(census.totals.systemBytes / 2 ** 20),
      reachableChunks: r.reachable.chunks,
      expectedReachable: expected,
      lostChunks: r.definitelyLost.chunks + r.indirectlyLost.chunks + r.possiblyLost.chunks,
      unknownChunks: r.unknown.chunks,
      rootMiB: Math.round(r.stats.rootBytes / 2 ** 20),
      reachBytesReadMiB: Math.round(r.stats.bytesRead / 2 ** 20),
      censusMs: censusMs.map(Math.round),
      censusPlusReachMs: reachMs.map(Math.round),
      censusMedianMs: Math.round(median(censusMs)),
      censusPlusReachMedianMs: Math.round(median(reachMs)),
      ratio: Math.round((median(reachMs) / median(censusMs)) * 100) / 100,
      target: 3,
      twoScansMs: Math.round(twoScansMs),
      twoScansLost: two.reachability.definitelyLost.chunks + two.reachability.indirectlyLost.chunks,
      peakRssCensusMiB: hwmCensus,
      peakRssReachMiB: hwmReach,
      rssOverCensusMiB: hwmReach - hwmCensus,
      rssTargetMiB: 200,
      phasesMs: r.stats.phasesMs,
    };
  } finally {
    await fx.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = (await benchReach()) as Record<string, unknown>;
  console.log('census vs census + reachability (one scan), medians, same run');
  const w = Math.max(...Object.keys(r).map((k) => k.length));
  for (const [k, v] of Object.entries(r))
    console.log(
      `${k.padEnd(w)}  ${Array.isArray(v) ? v.join(' / ') : typeof v === 'object' ? JSON.stringify(v) : String(v)}`,
    );
}
