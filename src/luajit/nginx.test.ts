// The Lua heap of a real OpenResty-style worker: Debian's nginx with libnginx-mod-http-lua,
// 1 worker, a Lua module of the test's own (test/fixtures/lua/acme_leak.lua) that leaks into a
// module-level table, and a healthy location (healthy.lua). Ground truth comes from Lua itself:
// collectgarbage("count") * 1024 read by a location at rest, and the byte count of the strings
// the leak location stored (lj_str_size, returned by acme_leak.put).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LiveProcess } from '../target/index.js';
import { Symbolizer } from '../symbols/index.js';
import { ensureFixturesBuilt, REPO_ROOT } from '../../test/helpers/build.js';
import { startLuaNginx, LUA_LEAK_TABLE } from '../../test/helpers/lua-nginx.js';
import type { NginxHandle } from '../../test/helpers/nginx.js';
import { luaHeaps, tableGrowth } from './index.js';
import type { LuaHeaps } from './index.js';

const SESSIONS = LUA_LEAK_TABLE;

function snapshot(pid: number, tables = 1000): LuaHeaps {
  const space = LiveProcess.open(pid);
  try {
    return luaHeaps(space, { symbolizer: new Symbolizer(space.modules()), tables });
  } finally {
    space.close();
  }
}

async function body(ngx: NginxHandle, path: string): Promise<string> {
  const r = await ngx.request(path);
  assert.equal(r.status, 200, `${path}: ${r.body}`);
  return r.body;
}

test('nginx + ngx_http_lua: census == collectgarbage("count")*1024 at rest, the leaking table by path with its exact payload', async () => {
  await ensureFixturesBuilt();
  const ngx = await startLuaNginx();
  try {
    const [worker] = ngx.workerPids();
    let payload = Number(await body(ngx, '/leak?n=200&size=20000'));
    for (let i = 0; i < 30; i++) await body(ngx, '/ok');
    await body(ngx, '/fullgc');
    const count = Number(await body(ngx, '/count'));
    const h = snapshot(worker!);
    assert.equal(h.vms.length, 1, 'one Lua VM');
    const vm = h.vms[0]!;
    assert.ok(
      vm.foundBy.includes('nginx-http-lua'),
      `found through nginx's module configuration (${vm.foundBy.join(', ')})`,
    );
    assert.ok(h.consistency.quiescent, h.consistency.detail);
    assert.equal(vm.gcTotal, count, 'gc.total == collectgarbage("count") * 1024');
    assert.equal(vm.objectBytes + vm.nonObjectBytes, count, 'census total == collectgarbage("count") * 1024');
    assert.equal(vm.partial, false, vm.problems.join('; '));
    const top = vm.tables[0]!;
    assert.equal(top.path, SESSIONS);
    assert.equal(top.payloadBytes, payload, 'payload == the strings acme_leak stored');
    assert.ok(
      vm.tables.some((t) => /\[lightud ngx_http_lua_\w+_key \(ngx_http_lua_module\.so\)\]/.test(t.path)),
      'ngx_lua registry keys are named',
    );
    assert.ok(vm.alloc.usedBytes >= count, `lj_alloc chunks in use ${vm.alloc.usedBytes} hold gc.total ${count}`);

    // The healthy location does not grow anything; the leak location grows the sessions table by its payload.
    for (let i = 0; i < 100; i++) await body(ngx, '/ok');
    await body(ngx, '/fullgc');
    const h2 = snapshot(worker!);
    assert.ok(
      !tableGrowth(vm.tables, h2.vms[0]!.tables).some((g) => g.path === SESSIONS),
      'sessions did not grow under /ok',
    );
    const more = Number(await body(ngx, '/leak?n=120&size=3000'));
    payload += more;
    await body(ngx, '/fullgc');
    const count3 = Number(await body(ngx, '/count'));
    const h3 = snapshot(worker!);
    const vm3 = h3.vms[0]!;
    assert.equal(vm3.objectBytes + vm3.nonObjectBytes, count3);
    const grew = tableGrowth(h2.vms[0]!.tables, vm3.tables);
    assert.equal(grew[0]?.path, SESSIONS, 'the sessions table grew most');
    assert.equal(vm3.tables.find((t) => t.path === SESSIONS)!.payloadBytes, payload);
  } finally {
    await ngx.stop();
  }
});

test('nginx + ngx_http_lua under wrk load: live results are exact or marked partial, never silently wrong', {
  timeout: 120_000,
}, async () => {
  await ensureFixturesBuilt();
  const ngx = await startLuaNginx();
  const wrk = spawn('wrk', ['-t1', '-c4', '-d8s', ngx.url('/ok')], { stdio: 'ignore' });
  try {
    const [worker] = ngx.workerPids();
    await body(ngx, '/leak?n=50&size=10000');
    await new Promise((r) => setTimeout(r, 500));
    let exact = 0,
      partial = 0;
    for (let i = 0; i < 4; i++) {
      const vm = snapshot(worker!, 5).vms[0]!;
      if (vm.partial) {
        partial++;
        assert.ok(vm.problems.length > 0, 'a partial result says why');
      } else {
        exact++;
        assert.equal(vm.delta, 0, 'a result not marked partial is exact');
        assert.equal(vm.tables[0]?.path, SESSIONS);
      }
    }
    assert.equal(exact + partial, 4);
  } finally {
    wrk.kill('SIGKILL');
    await ngx.stop();
  }
});

test('lua --freeze under wrk load: exact results; SIGKILL of leakscope mid-freeze leaves no worker stopped', {
  timeout: 120_000,
}, async () => {
  await ensureFixturesBuilt();
  const ngx = await startLuaNginx();
  const wrk = spawn('wrk', ['-t1', '-c4', '-d20s', ngx.url('/ok')], { stdio: 'ignore' });
  try {
    const [worker] = ngx.workerPids();
    await body(ngx, '/leak?n=40&size=8000');
    await new Promise((r) => setTimeout(r, 300));
    for (let i = 0; i < 3; i++) {
      const space = LiveProcess.open(worker!);
      const h = luaHeaps(space, { symbolizer: new Symbolizer(space.modules()), tables: 3, freeze: true });
      space.close();
      const vm = h.vms[0]!;
      assert.ok(h.frozenSeconds !== undefined && h.consistency.quiescent, h.consistency.detail);
      assert.equal(vm.delta, 0, vm.problems.join('; '));
      assert.equal(vm.partial, false, vm.problems.join('; '));
      assert.equal(vm.tables[0]!.path, SESSIONS);
      assert.notEqual(procState(worker!), 't', 'worker resumed after the copy');
    }
    // A leakscope process killed while it holds the worker stopped.
    const holder = spawn(
      process.execPath,
      [join(REPO_ROOT, 'dist', 'test', 'helpers', 'freeze-hold.js'), String(worker)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      holder.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      holder.once('exit', (c) => reject(new Error(`freeze-hold exited ${c}`)));
    });
    assert.match(line, /^frozen (232|281|441|7|23|270|271)$/);
    assert.equal(procState(worker!), 't', 'worker is in a ptrace stop while held');
    holder.kill('SIGKILL');
    await new Promise((r) => holder.once('exit', r));
    let state = procState(worker!);
    for (let i = 0; i < 50 && state === 't'; i++) {
      await new Promise((r) => setTimeout(r, 20));
      state = procState(worker!);
    }
    assert.notEqual(state, 't', 'the kernel resumed the worker when its tracer died');
    assert.notEqual(state, 'T', 'the worker is not stopped');
    assert.equal((await ngx.request('/count')).status, 200, 'the worker still serves');
  } finally {
    wrk.kill('SIGKILL');
    await ngx.stop();
  }
});

function procState(pid: number): string {
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3);
}
