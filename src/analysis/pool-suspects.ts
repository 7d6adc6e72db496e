// Which nginx pools are leak suspects. A live worker's pools are read while requests come and go:
// a request pool caught between ngx_create_pool and the store into r->pool / c->pool, or one being
// destroyed, is not yet (or no longer) referenced and would look "unreferenced" in one read. So a
// pool is a suspect only when it is one in two reads, as the same pool, and pools owned by the
// cycle, a connection, a request or an upstream connection (LIFECYCLE_OWNERS) never are. A core
// file is frozen: one read is stable.
// "The same pool" is not "the same address": glibc hands a freed chunk to the next malloc of its
// size at once (tcache, then the unsorted / small bins), so under load the pool of request N+1
// sits where request N's was, and two in-flight pools 200 ms apart share address and size. The
// later pool must continue the earlier one: same size, the earlier blocks a prefix of its blocks,
// each block's d.last not lower, no fewer cleanups (a pool only grows until destroyed), and the
// bytes the earlier read saw (log pointer, first allocations: NginxPool.firstBytes) unchanged.
// A new incarnation rewrites those bytes (a request's start time, a connection's peer address);
// a leaked pool nobody touches keeps them, and one that still grows past them stays a suspect.
import { LIFECYCLE_POOL_OWNERS } from '../model/pools.js';
import type { NginxPool, PoolAnalysis, PoolOwner } from '../nginx/index.js';

/** Owners whose pools live as long as their owner: never leak suspects. */
export const LIFECYCLE_OWNERS = LIFECYCLE_POOL_OWNERS as ReadonlySet<PoolOwner>;

export function isSuspectOwner(owner: PoolOwner): boolean {
  return !LIFECYCLE_OWNERS.has(owner);
}

export interface StableSuspects {
  /** Pools suspect in both reads (in the later read's form), largest bytes first. */
  pools: NginxPool[];
  bytes: number;
  /** Suspects in the later read that the earlier read did not confirm (transient, not counted). */
  transient: number;
  /** Per (owner, module): pools and bytes of the stable suspects, largest first. */
  groups: Array<{
    owner: PoolOwner;
    module: string | null;
    referencedFrom: string | null;
    pools: number;
    bytes: number;
  }>;
}

/**
 * Suspect pools of `later` that `earlier` confirms. `earlier` = 'frozen' (a core file: nothing
 * moves between reads) takes `later` alone; null (no second read) confirms nothing.
 */
export function stableSuspects(later: PoolAnalysis, earlier: PoolAnalysis | 'frozen' | null): StableSuspects {
  const before = new Map<number, NginxPool>();
  if (earlier && earlier !== 'frozen') for (const p of earlier.pools) before.set(p.address, p);
  const pools: NginxPool[] = [];
  let transient = 0;
  for (const p of later.pools) {
    if (!isSuspectOwner(p.owner)) continue;
    const e = earlier === 'frozen' ? p : before.get(p.address);
    if (e && isSuspectOwner(e.owner) && (e === p || samePool(e, p))) pools.push(p);
    else transient++;
  }
  pools.sort((a, b) => b.bytes - a.bytes);
  const byKey = new Map<string, StableSuspects['groups'][number]>();
  for (const p of pools) {
    const k = `${p.owner}\0${p.module}\0${p.referencedFrom}`;
    let g = byKey.get(k);
    if (!g)
      byKey.set(k, (g = { owner: p.owner, module: p.module, referencedFrom: p.referencedFrom, pools: 0, bytes: 0 }));
    g.pools++;
    g.bytes += p.bytes;
  }
  return {
    pools,
    bytes: pools.reduce((a, p) => a + p.bytes, 0),
    transient,
    groups: [...byKey.values()].sort((a, b) => b.bytes - a.bytes),
  };
}

/**
 * Whether `later` (read after `earlier`, at the same address) is the same pool grown or
 * untouched, not a new pool in the reused chunk (see the header).
 */
export function samePool(earlier: NginxPool, later: NginxPool): boolean {
  if (earlier.address !== later.address || earlier.size !== later.size) return false;
  if (later.blocks.length < earlier.blocks.length || later.cleanups.length < earlier.cleanups.length) return false;
  for (let i = 0; i < earlier.blocks.length; i++) {
    const a = earlier.blocks[i]!,
      b = later.blocks[i]!;
    if (a.address !== b.address || b.used < a.used) return false;
  }
  const x = earlier.firstBytes,
    y = later.firstBytes;
  if (!x || !y || y.length < x.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}
