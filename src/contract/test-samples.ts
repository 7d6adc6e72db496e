// Small, self-consistent models for unit tests of the contract, the evidence and the verdict
// (no target needed): a census built from a histogram, a memory breakdown, a pool analysis and
// a leak trace. Figures follow the models' invariants (totals are sums of their parts, chunk
// sizes are multiples of 16, buckets are [2^k, 2^(k+1))).

import type { ArenaCensus, ClassTotals, HeapCensus, HistogramBucket } from '../glibc/census-types.js';
import type { LeakTrace } from '../model/leaks.js';
import type { MemBreakdown } from '../model/mem.js';
import type { StackSample } from '../model/stacks.js';
import { LIFECYCLE_OWNERS } from '../nginx/pools.js';
import type { NginxPool, PoolAnalysis, PoolGroup } from '../nginx/pools.js';

const MiB = 1 << 20;

/** In-use chunks per bucket: [minBytes (a power of two), in-use chunks, chunk size used]. */
export type BucketSpec = [minBytes: number, inUseChunks: number, chunkSize?: number];

/** A single-arena census whose in-use chunks are the given buckets (plus 1 MiB free in top). */
export function sampleCensus(buckets: BucketSpec[], opts: { pid?: number; target?: string } = {}): HeapCensus {
  const histogram: HistogramBucket[] = buckets
    .map(([min, n, size]) => {
      const s = size ?? min + 16 * Math.floor(min / 32);
      return { minBytes: min, maxBytes: min * 2, inUseChunks: n, inUseBytes: n * s, freeChunks: 0, freeBytes: 0 };
    })
    .sort((a, b) => a.minBytes - b.minBytes);
  const inUseChunks = histogram.reduce((a, b) => a + b.inUseChunks, 0);
  const inUseBytes = histogram.reduce((a, b) => a + b.inUseBytes, 0);
  const totals: ClassTotals = {
    inUseChunks,
    inUseBytes,
    freeChunks: 1,
    freeBytes: MiB,
    tcacheChunks: 0,
    tcacheBytes: 0,
    fastbinChunks: 0,
    fastbinBytes: 0,
    binChunks: 0,
    binBytes: 0,
    topBytes: MiB,
    mmappedChunks: 0,
    mmappedBytes: 0,
    systemBytes: inUseBytes + MiB,
  };
  const arena: ArenaCensus = {
    ...totals,
    index: 0,
    kind: 'main',
    address: 0x7f0000001000,
    topChunk: 0x5600_0000_0000 + inUseBytes,
    attachedThreads: 1,
    heaps: [
      {
        start: 0x5600_0000_0000,
        end: 0x5600_0000_0000 + inUseBytes + MiB,
        walkedEnd: 0x5600_0000_0000 + inUseBytes + MiB,
        chunks: inUseChunks + 1,
      },
    ],
    unsortedChunks: 0,
    smallbinChunks: 0,
    largebinChunks: 0,
    fragmentation: 0,
    largestFreeChunk: 0,
  };
  return {
    pid: opts.pid ?? 4242,
    target: opts.target ?? 'pid 4242 (sample)',
    glibcVersion: '2.36',
    totals: {
      ...totals,
      unsortedChunks: 0,
      smallbinChunks: 0,
      largebinChunks: 0,
      fragmentation: 0,
      largestFreeChunk: 0,
      arenas: 1,
      tcaches: 1,
    },
    arenas: [arena],
    histogram,
    topSizes: histogram
      .map((b) => ({
        size: b.inUseChunks ? b.inUseBytes / b.inUseChunks : b.minBytes,
        count: b.inUseChunks,
        bytes: b.inUseBytes,
      }))
      .sort((a, b) => b.bytes - a.bytes),
    sources: { mainArena: 'debug-file symbol (sample)', heaps: 'main heap from mp_.sbrk_base to main_arena.top' },
    glibcView: { nMmaps: 0, mmappedMem: 0, mmapThreshold: 128 * 1024, tcacheCount: 7 },
    inconsistencies: [],
    inconsistencyCount: 0,
    complete: true,
    stats: { elapsedMs: 1.5, bytesRead: inUseBytes + MiB, chunksWalked: inUseChunks + 1 },
  };
}

/** A breakdown with `glibcBytes` in the main heap and `otherBytes` elsewhere. */
export function sampleMem(glibcBytes: number, otherBytes: number, opts: { pid?: number } = {}): MemBreakdown {
  const rss = glibcBytes + otherBytes;
  return {
    target: `pid ${opts.pid ?? 4242} (sample)`,
    pid: opts.pid ?? 4242,
    rssBytes: rss,
    pssBytes: rss,
    swapBytes: 0,
    categories: [
      {
        name: 'glibc-main-heap',
        rssBytes: glibcBytes,
        pssBytes: glibcBytes,
        swapBytes: 0,
        mappings: 1,
        source: 'sample',
        top: [{ start: 0x56000000, end: 0x56000000 + glibcBytes, rssBytes: glibcBytes, swapBytes: 0, label: '[heap]' }],
      },
      {
        name: 'code',
        rssBytes: otherBytes,
        pssBytes: otherBytes,
        swapBytes: 0,
        mappings: 3,
        source: 'sample',
        top: [],
      },
    ],
    glibcShare: rss ? glibcBytes / rss : 0,
    modules: [{ path: '/usr/sbin/nginx', rssBytes: otherBytes }],
    notes: [],
  };
}

/** One pool group: owner, module/creator and pool count; every pool one 4 KiB block. */
export interface GroupSpec {
  owner: PoolGroup['owner'];
  module?: string | null;
  creator?: string | null;
  pools: number;
  blockChunk?: number;
}

/** A pool analysis with the given groups (largest bytes first) and their bucket split. */
export function samplePools(groups: GroupSpec[], opts: { census?: HeapCensus } = {}): PoolAnalysis {
  const pools: NginxPool[] = [];
  let addr = 0x5600_1000_0000;
  const out: PoolGroup[] = groups
    .map((g) => {
      const chunk = g.blockChunk ?? 4112;
      for (let i = 0; i < g.pools; i++, addr += 0x2000) {
        pools.push({
          address: addr,
          size: chunk - 16,
          blocks: [{ address: addr, size: chunk - 16, used: 512, chunkSize: chunk }],
          large: [],
          cleanups: [],
          blockBytes: chunk,
          usedBytes: 512,
          largeBytes: 0,
          bytes: chunk,
          foundBy: 'scan',
          owner: g.owner,
          module: g.module ?? null,
          creator: g.creator ?? null,
          referencedFrom: null,
          references: [],
          // the same bytes in every sample built alike: a pool unchanged between two reads
          firstBytes: LIFECYCLE_OWNERS.has(g.owner)
            ? null
            : Uint8Array.from({ length: 8 + 512 - 80 }, (_, k) => (addr / 16 + k) & 0xff),
        });
      }
      return {
        owner: g.owner,
        module: g.module ?? null,
        creator: g.creator ?? null,
        referencedFrom: null,
        pools: g.pools,
        blocks: g.pools,
        blockBytes: g.pools * chunk,
        usedBytes: g.pools * 512,
        largeAllocs: 0,
        largeBytes: 0,
        bytes: g.pools * chunk,
      };
    })
    .sort((a, b) => b.bytes - a.bytes);
  pools.sort((a, b) => b.bytes - a.bytes);
  const bucketOf = (size: number) => 2 ** Math.floor(Math.log2(size));
  const byBucket = new Map<number, PoolAnalysis['buckets'][number]>();
  out.forEach((g, gi) => {
    if (!g.pools) return;
    const chunk = g.blockBytes / g.blocks;
    const min = bucketOf(chunk);
    const census = opts.census?.histogram.find((b) => b.minBytes === min);
    const b = byBucket.get(min) ?? {
      minBytes: min,
      maxBytes: min * 2,
      censusInUseChunks: census?.inUseChunks ?? 0,
      censusInUseBytes: census?.inUseBytes ?? 0,
      poolChunks: 0,
      poolBytes: 0,
      groups: [],
    };
    b.poolChunks += g.blocks;
    b.poolBytes += g.blockBytes;
    b.groups.push({ group: gi, blockChunks: g.blocks, blockBytes: g.blockBytes, largeChunks: 0, largeBytes: 0 });
    byBucket.set(min, b);
  });
  const sum = (k: 'pools' | 'blocks' | 'bytes' | 'largeAllocs' | 'largeBytes' | 'blockBytes' | 'usedBytes') =>
    out.reduce((a, g) => a + g[k], 0);
  return {
    pid: 4242,
    target: 'pid 4242 (sample)',
    nginxVersion: '1.22.1',
    layoutSource: 'table',
    layoutDetail: 'nginx 1.22.1 x86-64 (sample)',
    totals: {
      pools: sum('pools'),
      blocks: sum('blocks'),
      bytes: sum('bytes'),
      largeAllocs: sum('largeAllocs'),
      largeBytes: sum('largeBytes'),
      blockBytes: sum('blockBytes'),
      usedBytes: sum('usedBytes'),
    },
    groups: out,
    pools,
    buckets: [...byBucket.values()].sort((a, b) => a.minBytes - b.minBytes),
    modules: [{ name: 'ngx_core_module', address: 0x5555_0000_1000, index: 0, object: 'nginx' }],
    roots: {
      cycle: 0x5600_0000_1000,
      connectionsInUse: 1,
      requests: 0,
      upstreams: 0,
      oldCycles: 0,
      cycleSymbolSource: 'dynsym',
    },
    inconsistencies: [],
    inconsistencyCount: 0,
    inconsistencyKinds: {},
    stats: {
      elapsedMs: 2,
      chunksSeen: 10,
      candidates: 5,
      signatureMatches: 5,
      bytesRead: 40960,
      phasesMs: { roots: 0, scan: 1, validate: 0, staticRefs: 0, heapRefs: 0, attribute: 0, group: 0 },
    },
  };
}

/** A stack: frame function names leaf first (each in `module`), bytes and count outstanding. */
export function sampleStack(
  functions: Array<string | null>,
  bytes: number,
  count: number,
  module = 'nginx',
): StackSample {
  return {
    frames: functions.map((f, i) => ({
      function: f,
      module: f?.startsWith('malloc') ? 'libc.so.6' : module,
      offset: 0x1000 + i * 0x10,
    })),
    bytes,
    count,
  };
}

/** A trace over `seconds` with the given outstanding stacks. */
export function sampleTrace(
  stacks: StackSample[],
  opts: { mode?: 'pool' | 'malloc' | 'lua'; seconds?: number } = {},
): LeakTrace {
  const bytes = stacks.reduce((a, s) => a + s.bytes, 0),
    count = stacks.reduce((a, s) => a + s.count, 0);
  return {
    mode: opts.mode ?? 'malloc',
    target: 'pid 4242 (sample)',
    pid: 4242,
    durationSeconds: opts.seconds ?? 5,
    sampleBytes: 0,
    minAgeSeconds: 1,
    stacks: [...stacks].sort((a, b) => b.bytes - a.bytes),
    totals: {
      outstandingBytes: bytes,
      outstandingCount: count,
      allocatedBytes: bytes * 2,
      allocatedCount: count * 2,
      sampledEvents: count * 2,
      completeStacks: count * 2,
    },
    cost: {
      probeHits: { malloc: count * 2, free: count },
      totalProbeHits: count * 3,
      estimatedCpuSeconds: count * 3e-5,
      perHitMicros: 10,
      dutyCycle: 1,
      lostEvents: 0,
    },
    probes: ['libc.so.6:malloc', 'libc.so.6:free'],
    notes: [],
  };
}
