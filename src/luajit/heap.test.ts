// The Lua heap census against LuaJIT's own accounting: a plain LuaJIT program (two VMs made
// by luaL_newstate, test/fixtures/luajit-harness) prints lua_gc(COUNT/COUNTB) = g->gc.total
// at rest and the exact payload it stored into package.loaded.harness.store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { CoreFile, LiveProcess } from '../target/index.js';
import { Symbolizer } from '../symbols/index.js';
import { ensureFixturesBuilt, FIXTURES_BUILD_DIR, REPO_ROOT } from '../../test/helpers/build.js';
import { sh } from '../../test/helpers/proc.js';
import { startFixture } from '../../test/helpers/fixture.js';
import { luaHeaps, tableGrowth } from './index.js';
import type { LuaVm } from './index.js';

interface HarnessTruth {
  pid: number;
  a: { L: number; count: number; payload: number; strings: number };
  b: { L: number; count: number };
}

function vmOf(vms: LuaVm[], L: number): LuaVm {
  const vm = vms.find((v) => v.mainThread === L);
  assert.ok(
    vm,
    `a VM with main thread 0x${L.toString(16)} (found: ${vms.map((v) => v.mainThread.toString(16)).join(', ')})`,
  );
  return vm;
}

test('plain LuaJIT program: both VMs found, census == gc.total exactly, the store table named with its exact payload', async () => {
  await ensureFixturesBuilt();
  const h = await startFixture<HarnessTruth>('luajit-harness', ['300', '5000']);
  try {
    const space = LiveProcess.open(h.pid);
    const r = luaHeaps(space, { symbolizer: new Symbolizer(space.modules()), tables: 10 });
    assert.equal(r.vms.length, 2, 'two Lua VMs');
    assert.ok(r.consistency.quiescent, r.consistency.detail);
    for (const [vm, count] of [
      [vmOf(r.vms, h.truth.a.L), h.truth.a.count],
      [vmOf(r.vms, h.truth.b.L), h.truth.b.count],
    ] as const) {
      assert.equal(vm.gcTotal, count, 'gc.total == lua_gc(COUNT)*1024 + COUNTB');
      assert.equal(vm.objectBytes + vm.nonObjectBytes, count, 'census total == lua_gc count');
      assert.equal(vm.delta, 0);
      assert.equal(vm.partial, false, vm.problems.join('; '));
      assert.equal(vm.layouts.includes('(table)'), true, vm.layouts);
    }
    const a = vmOf(r.vms, h.truth.a.L);
    const top = a.tables[0]!;
    assert.equal(top.path, '[registry]._LOADED.harness.store');
    assert.equal(top.payloadBytes, h.truth.a.payload, 'payload == Σ lj_str_size of the stored strings');
    assert.ok(top.arraySize > h.truth.a.strings, 'array part holds the strings');
    const types = new Map(a.types.map((t) => [t.type, t]));
    for (const t of ['string', 'table', 'function', 'upvalue', 'thread', 'proto', 'cdata', 'udata'])
      assert.ok(types.get(t)!.count > 0, `${t} objects counted`);
    assert.equal(a.pendingGarbage.count, 0, 'nothing unreached right after a full collection');
    // Growth: 150 more strings; the store grows by exactly their payload.
    const more = await h.command<HarnessTruth>('grow 150');
    space.mappings({ refresh: true });
    const r2 = luaHeaps(space, { symbolizer: new Symbolizer(space.modules()), tables: 1000 });
    const a2 = vmOf(r2.vms, h.truth.a.L);
    assert.equal(a2.objectBytes + a2.nonObjectBytes, more.a.count);
    const g = tableGrowth(a.tables, a2.tables)[0]!;
    assert.equal(g.path, '[registry]._LOADED.harness.store');
    assert.equal(
      g.ownBytesAfter - g.ownBytesBefore - (a2.tables[0]!.shallowBytes - top.shallowBytes),
      more.a.payload - h.truth.a.payload,
    );
    space.close();
  } finally {
    await h.stop();
  }
});

test('listed tables carry their allocation order (g->gc.root), kept across a growth: the grown store is matched as itself', async () => {
  await ensureFixturesBuilt();
  const h = await startFixture<HarnessTruth>('luajit-harness', ['100', '1000']);
  try {
    const space = LiveProcess.open(h.pid);
    const read = () =>
      vmOf(luaHeaps(space, { symbolizer: new Symbolizer(space.modules()), tables: 1000 }).vms, h.truth.a.L);
    const STORE = '[registry]._LOADED.harness.store',
      INDEX = '[registry]._LOADED.harness.index';
    const a = read();
    await h.command<HarnessTruth>('grow 50');
    space.mappings({ refresh: true });
    const a2 = read();
    for (const v of [a, a2]) {
      const store = v.tables.find((t) => t.path === STORE)!,
        index = v.tables.find((t) => t.path === INDEX)!;
      assert.ok(store.gcOrder !== undefined && index.gcOrder !== undefined, 'positions in the root list known');
      // harness.index was allocated after the store (luajit-harness.c): nearer the list's head.
      assert.ok(index.gcOrder! < store.gcOrder!, `index ${index.gcOrder} before store ${store.gcOrder}`);
    }
    const g = tableGrowth(a.tables, a2.tables, 1000).find((x) => x.path === STORE)!;
    assert.equal(g.isNew, false, JSON.stringify(g));
    space.close();
  } finally {
    await h.stop();
  }
});

test('leakscope lua --json on the plain LuaJIT program: leakscope.lua/1 with exact totals', async () => {
  await ensureFixturesBuilt();
  const h = await startFixture<HarnessTruth>('luajit-harness', ['50', '1000']);
  try {
    const out = execFileSync(join(REPO_ROOT, 'bin', 'leakscope'), ['lua', String(h.pid), '--json', '--tables', '3'], {
      encoding: 'utf8',
    });
    const doc = JSON.parse(out) as {
      schema: string;
      vms: Array<{
        mainThread: number;
        gcTotal: number;
        types: Array<{ type: string; count: number; bytes: number }>;
        nonObjectBytes: number;
        tables: Array<{ path: string; payloadBytes: number }>;
        partial: boolean;
      }>;
    };
    assert.equal(doc.schema, 'leakscope.lua/1');
    const a = doc.vms.find((v) => v.mainThread === h.truth.a.L)!;
    assert.equal(a.gcTotal, h.truth.a.count);
    assert.equal(a.types.reduce((s, t) => s + t.bytes, 0) + a.nonObjectBytes, h.truth.a.count);
    assert.equal(a.tables[0]!.path, '[registry]._LOADED.harness.store');
    assert.equal(a.tables[0]!.payloadBytes, h.truth.a.payload);
    assert.equal(a.partial, false);
    // --baseline: the saved document, then 80 more strings: the store grew by their payload (plus its own array growth).
    const dir = mkdtempSync(join(tmpdir(), 'leakscope-lua-'));
    try {
      const base = join(dir, 'base.json');
      writeFileSync(base, out);
      const more = await h.command<HarnessTruth>('grow 80');
      const out2 = execFileSync(
        join(REPO_ROOT, 'bin', 'leakscope'),
        ['lua', String(h.pid), '--json', '--tables', '3', '--baseline', base],
        { encoding: 'utf8' },
      );
      const doc2 = JSON.parse(out2) as {
        vms: Array<{
          mainThread: number;
          tables: Array<{ path: string; shallowBytes: number }>;
          growth: {
            tables: Array<{ path: string; growthBytes: number; ownBytesBefore: number; ownBytesAfter: number }>;
          };
        }>;
      };
      const a2 = doc2.vms.find((v) => v.mainThread === h.truth.a.L)!;
      const g = a2.growth.tables[0]!;
      assert.equal(g.path, '[registry]._LOADED.harness.store');

      assert.ok(
        g.growthBytes >= more.a.payload - h.truth.a.payload,
        `growth ${g.growthBytes} >= the new strings' ${more.a.payload - h.truth.a.payload} B`,
      );

      // A malformed baseline is exit 8 naming the JSON path.
      writeFileSync(base, JSON.stringify({ schema: 'leakscope.lua/1', vms: 3 }));
      assert.throws(
        () =>
          execFileSync(join(REPO_ROOT, 'bin', 'leakscope'), ['lua', String(h.pid), '--baseline', base], {
            stdio: 'pipe',
          }),
        (e: { status: number; stderr: Buffer }) => e.status === 8 && /base\.json/.test(e.stderr.toString()),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    await h.stop();
  }
});

test('a gcore of the plain LuaJIT program: the same exact census from the core file', async () => {
  await ensureFixturesBuilt();
  const h = await startFixture<HarnessTruth>('luajit-harness', ['120', '3000']);
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-lua-core-'));
  try {
    const r = sh('gcore', ['-o', join(dir, 'core'), String(h.pid)]);
    assert.equal(r.status, 0, r.stderr);
    const core = CoreFile.open(join(dir, `core.${h.pid}`), { exe: join(FIXTURES_BUILD_DIR, 'luajit-harness') });
    try {
      const res = luaHeaps(core, { symbolizer: new Symbolizer(core.modules()), tables: 3 });
      assert.ok(res.consistency.quiescent, res.consistency.detail);
      const a = vmOf(res.vms, h.truth.a.L);
      assert.equal(a.objectBytes + a.nonObjectBytes, h.truth.a.count);
      assert.equal(a.partial, false, a.problems.join('; '));
      assert.equal(a.tables[0]!.path, '[registry]._LOADED.harness.store');
      assert.equal(a.tables[0]!.payloadBytes, h.truth.a.payload);
    } finally {
      core.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await h.stop();
  }
});
