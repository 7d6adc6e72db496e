// The heap census and the pool analysis run together: the pool analysis scans the census's
// in-use chunks. Shared by `heap`, `pools`, the pool-mode tracer's liveness check and `analyze`.
import type { AddressSpace } from '../target/address-space.js';
import { Symbolizer } from '../symbols/index.js';
import { analyzePools } from '../nginx/index.js';
import { censusWithChunks } from '../nginx/census-chunks.js';
import type { PoolAnalysis } from '../nginx/index.js';
import type { HeapCensus } from '../glibc/index.js';

export interface HeapAndPools {
  census: HeapCensus;
  pools: PoolAnalysis | null;
  censusMs: number;
  poolsMs: number;
}

/** Census, then (for nginx) the pool analysis over its in-use chunks. */
export function heapAndPools(
  space: AddressSpace,
  opts: { symbolizer?: Symbolizer; pools?: boolean } = {},
): HeapAndPools {
  const symbolizer = opts.symbolizer ?? new Symbolizer(space.modules());
  const c = censusWithChunks(space, { symbolizer });
  const wantPools = opts.pools ?? !!symbolizer.lookup('ngx_cycle');
  const t0 = performance.now();
  const pools = wantPools ? analyzePools(space, { chunks: c.chunks, symbolizer, histogram: c.census.histogram }) : null;
  return { census: c.census, pools, censusMs: c.elapsedMs, poolsMs: performance.now() - t0 };
}

/** Live pools: address -> bytes held (blocks + large allocations), for the pool-mode tracer. */
export function livePoolBytes(space: AddressSpace): Map<number, number> {
  const r = heapAndPools(space, { pools: true });
  return new Map((r.pools?.pools ?? []).map((p) => [p.address, p.bytes]));
}
