// Table growth between two Lua heap snapshots (compare.ts): a table freed and a new one allocated
// at its address under the same path is a new table, not the old one grown; tables that lived
// through the interval are still matched. Tables as topTables lists them, with their positions
// in g->gc.root (gcOrder, 0 = newest).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tableGrowth } from './compare.js';
import type { LuaTable } from './heap.js';

const table = (path: string, address: number, ownBytes: number, gcOrder?: number): LuaTable => ({
  path,
  address,
  shallowBytes: 64,
  payloadBytes: ownBytes - 64,
  retainedBytes: ownBytes,
  arraySize: 0,
  hashSize: 0,
  ...(gcOrder === undefined ? {} : { gcOrder }),
});

const SESSIONS = '[registry]._LOADED.app.sessions';
const CONFIG = '[registry]._LOADED.app.config';

test("a new table at a freed table's address and path is new (its whole size), not the old one grown", () => {
  // First read: sessions (older) and config (allocated after it). Then sessions was replaced,
  // the old one collected and the new one allocated at its address: newer than config now.
  const before = [table(SESSIONS, 0x1000, 4096, 50), table(CONFIG, 0x2000, 1024, 10)];
  const after = [table(SESSIONS, 0x1000, 6144, 3), table(CONFIG, 0x2000, 2048, 30)];
  const g = tableGrowth(before, after);
  const s = g.find((x) => x.path === SESSIONS)!;
  assert.equal(s.isNew, true);
  assert.equal(s.ownBytesBefore, 0);
  assert.equal(s.growthBytes, 6144, 'its whole size, not 6144 - 4096');
  const c = g.find((x) => x.path === CONFIG)!;
  assert.equal(c.isNew, false, 'the witness itself lived on');
  assert.equal(c.growthBytes, 1024);
});

test('tables that lived through the interval keep their order and are matched, whatever their positions', () => {
  // Objects died and were born around them: positions move, the order of the two does not.
  const before = [table(SESSIONS, 0x1000, 4096, 50), table(CONFIG, 0x2000, 1024, 10)];
  const after = [table(SESSIONS, 0x1000, 6144, 900), table(CONFIG, 0x2000, 1024, 400)];
  const g = tableGrowth(before, after);
  assert.deepEqual(
    g.map((x) => [x.path, x.isNew, x.growthBytes]),
    [[SESSIONS, false, 2048]],
  );
});

test('a replaced table that shrank is not listed as growth; a new newest table is new', () => {
  const before = [table(SESSIONS, 0x1000, 8192, 50), table(CONFIG, 0x2000, 1024, 10)];
  const after = [table(SESSIONS, 0x1000, 4096, 3), table(CONFIG, 0x2000, 1024, 30)];
  assert.deepEqual(
    tableGrowth(before, after).map((x) => [x.path, x.isNew, x.growthBytes]),
    [[SESSIONS, true, 4096]],
  );
});

test('without a witness or without positions (a saved baseline) the address + path match stands', () => {
  // Only one table listed in both reads: nothing newer than it lived on to tell.
  const alone = tableGrowth([table(SESSIONS, 0x1000, 4096, 50)], [table(SESSIONS, 0x1000, 6144, 3)]);
  assert.deepEqual(
    alone.map((x) => [x.isNew, x.growthBytes]),
    [[false, 2048]],
  );
  // A baseline document carries no gcOrder.
  const saved = tableGrowth(
    [table(SESSIONS, 0x1000, 4096), table(CONFIG, 0x2000, 1024)],
    [table(SESSIONS, 0x1000, 6144, 3), table(CONFIG, 0x2000, 2048, 30)],
  );
  assert.deepEqual(
    saved.map((x) => [x.path, x.isNew, x.growthBytes]),
    [
      [SESSIONS, false, 2048],
      [CONFIG, false, 1024],
    ],
  );
});

test('two new tables at reused addresses, and one at the same position, are told apart by the tables that lived on', () => {
  const A = '[registry]._LOADED.app.a',
    B = '[registry]._LOADED.app.b',
    C = '[registry]._LOADED.app.c';
  // First read, oldest to newest: A, B, C. Then A and B were replaced (new ones at their
  // addresses, both newer than C); C lived on.
  const before = [table(A, 0x1000, 1000, 90), table(B, 0x2000, 1000, 60), table(C, 0x3000, 1000, 20)];
  const after = [table(A, 0x1000, 3000, 2), table(B, 0x2000, 3000, 5), table(C, 0x3000, 1500, 40)];
  const g = new Map(tableGrowth(before, after).map((x) => [x.path, x]));
  assert.equal(g.get(A)!.isNew, true);
  assert.equal(g.get(B)!.isNew, true);
  assert.equal(g.get(C)!.isNew, false);
  assert.equal(g.get(C)!.growthBytes, 500);
});
