// One census of a followed worker for `leakscope watch`: static reads only (no probe, no stop):
// the RSS breakdown (`mem`), the glibc heap census and, for nginx, the pool analysis, reduced to
// what the metrics carry (bounded: buckets, top-N pool modules per owner). Also the series the
// growth tracker fits rates to.
//
// A FollowedWorker keeps its AddressSpace and Symbolizer between censuses (symbol tables are read
// once per worker, not once per census); mappings are re-read at every census (the heap grows).

import type { AddressSpace } from '../target/address-space.js';
import { Symbolizer } from '../symbols/index.js';
import { memoryBreakdown } from './memory-breakdown.js';
import { breakdownInputsFor } from './breakdown-inputs.js';
import { heapAndPools } from './pool-census.js';
import { isLeakscopeError } from '../model/errors.js';
import type { HeapCensus } from '../glibc/index.js';
import type { PoolAnalysis } from '../nginx/index.js';
import type {
  PoolOwnerLabel,
  WatchCensus,
  WatchGlibc,
  WatchLua,
  WatchPools,
  WatchWorker,
  GrowthSeries,
} from '../contract/watch.js';

/** Largest worker slot accepted from ngx_worker (nginx caps worker_processes at NGX_MAX_PROCESSES = 1024). */
const MAX_WORKER_SLOT = 1024;
/** Longest module label kept (symbol-derived names from a possibly hostile target). */
const MAX_LABEL_CHARS = 128;

export interface FollowedWorker {
  space: AddressSpace;
  symbolizer: Symbolizer;
  isNginx: boolean;
  /** The `worker` label: nginx's ngx_worker slot, else the command name. */
  worker: string;
  startTimeSeconds: number;
  /** Failed censuses since first seen. */
  errors: number;
}

/** Starts following an open process: symbols once, the worker slot once (it never changes in a process). */
export function followWorker(space: AddressSpace, startTimeSeconds: number): FollowedWorker {
  const symbolizer = new Symbolizer(space.modules());
  const isNginx = !!symbolizer.lookup('ngx_cycle');
  return { space, symbolizer, isNginx, worker: workerSlot(space, symbolizer, isNginx), startTimeSeconds, errors: 0 };
}

/** nginx's `ngx_uint_t ngx_worker` (src/os/unix/ngx_process_cycle.c, exported in Debian's .dynsym), else the command. */
function workerSlot(space: AddressSpace, symbolizer: Symbolizer, isNginx: boolean): string {
  if (!isNginx) return space.command;
  const sym = symbolizer.lookup('ngx_worker');
  if (!sym) return space.command;
  try {
    const v = space.readU64(sym.runtimeAddr);
    return v < MAX_WORKER_SLOT ? String(v) : space.command;
  } catch (e) {
    if (!isLeakscopeError(e)) throw e;
    return space.command;
  }
}

export interface WorkerObservation {
  /** The worker's metrics without growth (the tracker adds it). */
  worker: WatchWorker;
  /** Bytes per growth series at this census (the tracker's input). */
  points: Array<{ series: GrowthSeries; bytes: number }>;
  /** The series kinds this census measured (a failed phase measured none of its kind). */
  observed: Set<GrowthSeries['kind']>;
  /** True when the process is gone (stop following it). */
  gone: boolean;
}

export interface ObserveOptions {
  /** Pool modules kept per owner (by bytes); the rest are summed as module "other". */
  topModules: number;
  /** LuaJIT extension point: a census of the worker's Lua VMs, when a LuaJIT module provides one. */
  luaCensus?: (space: AddressSpace, symbolizer: Symbolizer) => WatchLua | null;
}

/** One static census of the worker. Errors of a phase are counted and reported, never thrown (except bugs). */
export function observeWorker(f: FollowedWorker, opts: ObserveOptions): WorkerObservation {
  const t0 = performance.now();
  const errors: string[] = [];
  let gone = false;
  const phase = <T>(what: string, run: () => T): T | null => {
    try {
      return run();
    } catch (e) {
      if (!isLeakscopeError(e)) throw e;
      if (e.code === 'no-such-process') gone = true;
      errors.push(`${what}: ${e.message}`);
      return null;
    }
  };
  phase('maps', () => f.space.mappings({ refresh: true }));
  const tMem = performance.now();
  const mem = gone ? null : phase('mem', () => memoryBreakdown(f.space, breakdownInputsFor(f.space, f.symbolizer)));
  const tHeap = performance.now();
  const hp = gone ? null : phase('heap', () => heapAndPools(f.space, { symbolizer: f.symbolizer, pools: f.isNginx }));
  const tEnd = performance.now();
  const lua = gone || !opts.luaCensus ? null : phase('lua', () => opts.luaCensus!(f.space, f.symbolizer));
  if (errors.length) f.errors++;

  const poolsMs = hp?.poolsMs ?? 0;
  const census: WatchCensus = {
    timestampSeconds: Date.now() / 1000,
    durationSeconds: (performance.now() - t0) / 1000,
    phases: {
      memSeconds: (tHeap - tMem) / 1000,
      heapSeconds: Math.max(0, tEnd - tHeap - poolsMs) / 1000,
      poolsSeconds: poolsMs / 1000,
    },
    ok: errors.length === 0,
    errors: f.errors,
    lastError: errors.length
      ? errors
          .join('; ')
          .replace(/\s*\n\s*/g, ' ')
          .slice(0, 300)
      : null,
  };
  const glibc = hp ? glibcMetrics(hp.census) : null;
  const pools = hp?.pools ? poolMetrics(hp.pools, opts.topModules) : null;
  const rss = mem ? mem.categories.map((c) => ({ category: c.name, rssBytes: c.rssBytes })) : null;

  const points: WorkerObservation['points'] = [];
  for (const r of rss ?? []) points.push({ series: { kind: 'category', category: r.category }, bytes: r.rssBytes });
  for (const b of glibc?.buckets ?? [])
    points.push({ series: { kind: 'bucket', minBytes: b.minBytes }, bytes: b.inUseBytes });
  for (const g of pools?.groups ?? [])
    points.push({ series: { kind: 'pool', owner: g.owner, module: g.module }, bytes: g.bytes });
  return {
    worker: {
      pid: f.space.pid,
      worker: f.worker,
      command: f.space.command,
      startTimeSeconds: f.startTimeSeconds,
      census,
      rss,
      glibc,
      pools,
      lua,
      growth: [],
    },
    points,
    gone,
    observed: new Set<GrowthSeries['kind']>([
      ...(rss ? ['category' as const] : []),
      ...(glibc ? ['bucket' as const] : []),
      ...(pools ? ['pool' as const] : []),
    ]),
  };
}

function glibcMetrics(c: HeapCensus): WatchGlibc {
  return {
    buckets: c.histogram.map((b) => ({
      minBytes: b.minBytes,
      inUseChunks: b.inUseChunks,
      inUseBytes: b.inUseBytes,
      freeChunks: b.freeChunks,
      freeBytes: b.freeBytes,
    })),
    inUseBytes: c.totals.inUseBytes + c.totals.mmappedBytes,
    freeBytes: c.totals.freeBytes,
    topBytes: c.totals.topBytes,
    mmappedChunks: c.totals.mmappedChunks,
    mmappedBytes: c.totals.mmappedBytes,
    systemBytes: c.totals.systemBytes,
    arenas: c.totals.arenas,
    complete: c.complete,
    inconsistencies: c.inconsistencyCount,
  };
}

/**
 * Pool groups summed by (owner, module), the module being the owning module, else the creating
 * one ("unknown" when neither is known). Per owner the `top` modules by bytes keep their name,
 * the rest are summed as "other": at most 8 owners x (top + 1) rows per worker.
 */
export function poolMetrics(a: PoolAnalysis, top: number): WatchPools {
  const byKey = new Map<string, { owner: PoolOwnerLabel; module: string; pools: number; bytes: number }>();
  for (const g of a.groups) {
    // Names come from the target's symbols: bounded in length (the renderer escapes them).
    const module = (g.module ?? g.creator ?? 'unknown').slice(0, MAX_LABEL_CHARS);
    const key = `${g.owner}\0${module}`;
    const row = byKey.get(key) ?? { owner: g.owner, module, pools: 0, bytes: 0 };
    row.pools += g.pools;
    row.bytes += g.bytes;
    byKey.set(key, row);
  }
  const byOwner = new Map<
    PoolOwnerLabel,
    Array<{ owner: PoolOwnerLabel; module: string; pools: number; bytes: number }>
  >();
  for (const r of byKey.values()) {
    const list = byOwner.get(r.owner) ?? [];
    list.push(r);
    byOwner.set(r.owner, list);
  }
  const groups: WatchPools['groups'] = [];
  for (const [owner, rows] of byOwner) {
    rows.sort((x, y) => y.bytes - x.bytes || (x.module < y.module ? -1 : 1));
    const kept = rows.filter((r, i) => i < top && r.module !== 'other');
    const rest = rows.filter((r) => !kept.includes(r));
    groups.push(...kept);
    if (rest.length)
      groups.push({
        owner,
        module: 'other',
        pools: rest.reduce((s, r) => s + r.pools, 0),
        bytes: rest.reduce((s, r) => s + r.bytes, 0),
      });
  }
  groups.sort((x, y) => y.bytes - x.bytes);
  return { groups, pools: a.totals.pools, bytes: a.totals.bytes };
}
