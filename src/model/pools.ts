// nginx pool owners, as plain values shared by the nginx model and the pure analysis. No imports.

/**
 * Owners whose pools live as long as their owner (nginx/pools.ts PoolOwner names): never leak
 * suspects. The others ('static', 'heap', 'unreferenced') are, once two reads agree.
 */
export const LIFECYCLE_POOL_OWNERS: ReadonlySet<string> = new Set([
  'cycle',
  'old-cycle',
  'connection',
  'request',
  'upstream',
]);
