// Bounded pool labels for the watch (pure: no root). The census itself is exercised on a real
// nginx by src/cli/watch.test.ts, against the leak module's own pool count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { poolMetrics } from './watch-observe.js';
import type { PoolAnalysis, PoolGroup } from '../nginx/index.js';

function group(
  owner: PoolGroup['owner'],
  module: string | null,
  creator: string | null,
  pools: number,
  bytes: number,
): PoolGroup {
  return {
    owner,
    module,
    creator,
    referencedFrom: null,
    pools,
    blocks: pools,
    blockBytes: bytes,
    usedBytes: 0,
    largeAllocs: 0,
    largeBytes: 0,
    bytes,
  };
}

test('pool groups: by owner and module (else creator), top N per owner, the rest summed as "other"', () => {
  const groups = [
    group('static', 'mod_a', 'mod_a', 10, 1000),
    group('static', 'mod_b', null, 5, 500),
    group('static', 'mod_c', null, 1, 100),
    group('static', 'mod_a', 'other_creator', 2, 200), // same (owner, module): summed
    group('unreferenced', null, 'mod_leak', 7, 7000),
    group('unreferenced', null, null, 1, 10),
    group('cycle', null, null, 1, 16384),
    group('static', 'other', null, 4, 40), // a module named "other" by the target: folded into "other"
  ];
  const a = { groups, totals: { pools: 31, bytes: 25234 } } as unknown as PoolAnalysis;
  const m = poolMetrics(a, 2);
  const rows = m.groups.map((g) => `${g.owner}/${g.module}:${g.pools}/${g.bytes}`).sort();
  assert.deepEqual(
    rows,
    [
      'cycle/unknown:1/16384',
      'static/mod_a:12/1200',
      'static/mod_b:5/500',
      'static/other:5/140',
      'unreferenced/mod_leak:7/7000',
      'unreferenced/unknown:1/10',
    ].sort(),
  );
  assert.equal(
    m.groups.reduce((s, g) => s + g.bytes, 0),
    groups.reduce((s, g) => s + g.bytes, 0),
    'no bytes lost',
  );
  assert.equal(m.pools, 31);
  const long = poolMetrics(
    {
      groups: [group('static', 'x'.repeat(1000), null, 1, 1)],
      totals: { pools: 1, bytes: 1 },
    } as unknown as PoolAnalysis,
    10,
  );
  assert.equal(long.groups[0]!.module.length, 128, 'module labels bounded in length');
});
