// Which nginx pools are leak suspects. A live worker's pools are read while requests come and go:
// a request pool caught between ngx_create_pool and the store into r->pool / c->pool, or one being
// destroyed, is not yet (or no longer) referenced and would look "unreferenced" in one read. So a
// pool is a suspect only when it is one in two reads (same address, same block size, a suspect
// owner both times), and pools owned by the cycle, a connection, a request or an upstream
// connection (LIFECYCLE_OWNERS) never are. A core file is frozen: one read is stable.
import type { NginxPool, PoolAnalysis, PoolOwner } from '../nginx/index.js';

/** Owners whose pools live as long as their owner: never leak suspects. */
export const LIFECYCLE_OWNERS: ReadonlySet<PoolOwner> = new Set<PoolOwner>([
  'cycle',
  'old-cycle',
  'connection',
  'request',
  'upstream',
]);

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
    if (e && isSuspectOwner(e.owner) && e.size === p.size) pools.push(p);
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
