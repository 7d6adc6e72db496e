// Lua frames in malloc-mode stacks (lua-stack.ts) on Debian's nginx + ngx_http_lua: a Lua module
// the test writes leaks with ffi.C.malloc (never freed) at a known line; a healthy location
// mallocs and frees. Ground truth: the line of the Lua source the test wrote and the requests made.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LiveProcess } from '../target/index.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { startLuaNginx } from '../../test/helpers/lua-nginx.js';
import { startFixture } from '../../test/helpers/fixture.js';
import { traceLeaks } from './leak-tracer.js';
import { frameLabel } from '../model/index.js';
import type { StackSample } from '../model/index.js';

const MODULE = [
  'local ffi = require("ffi")',
  'ffi.cdef[[void *malloc(size_t size); void free(void *p);]]',
  'local _M = {}',
  'function _M.leak(size)',
  '  local p = ffi.C.malloc(size)', // LEAK_LINE
  '  return p ~= nil',
  'end',
  'function _M.ok(size)',
  '  local p = ffi.C.malloc(size)', // OK_LINE
  '  ffi.C.free(p)',
  '  return true',
  'end',
  'function _M.loop(n, size)',
  '  for _ = 1, n do', // LOOP_LINE
  '    ffi.C.malloc(size)',
  '  end',
  '  return n',
  'end',
  'return _M',
  '',
].join('\n');
const LOOP_FIRST = 13;
const LOOP_LAST = 18;
const LEAK_LINE = 5;
const OK_LINE = 9;
const LEAK_SIZE = 777_001;
const LOOP_SIZE = 1_001;
const LOOP_N = 300;
const OK_SIZE = 555_001;

const hasLuaFrame = (s: StackSample, file: string, line: number) =>
  s.frames.some((f) => f.module === '[lua]' && f.file === file && f.line === line);

test('malloc mode: an ffi.C.malloc leak is attributed to its Lua line (and the handler that called it)', {
  timeout: 120_000,
}, async () => {
  await ensureFixturesBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-luaffi-'));
  const file = join(dir, 'ffileak.lua');
  writeFileSync(file, MODULE);
  chmodSync(dir, 0o755); // workers run as nobody
  chmodSync(file, 0o644);
  const ngx = await startLuaNginx(1, {
    luaDir: dir,
    locations: [
      `location = /ffileak { content_by_lua_block { ngx.print(tostring(require("ffileak").leak(${LEAK_SIZE}))) } }`,
      `location = /ffiloop { content_by_lua_block { ngx.print(require("ffileak").loop(${LOOP_N}, ${LOOP_SIZE})) } }`,
      `location = /ffiok { content_by_lua_block { ngx.print(tostring(require("ffileak").ok(${OK_SIZE}))) } }`,
    ],
  });
  try {
    // Loaded and compiled before the window (require runs once).
    assert.equal((await ngx.request('/ffiok')).body, 'true');
    const space = LiveProcess.open(ngx.workerPids()[0]!);
    try {
      const trace = traceLeaks(space, { mode: 'malloc', durationSeconds: 4, sampleBytes: 0, minAgeSeconds: 0 });
      await new Promise((r) => setTimeout(r, 1000));
      // Few calls: the interpreter runs them (a function is compiled after ~100 calls).
      const LEAKS = 12;
      for (let i = 0; i < LEAKS; i++) {
        assert.equal((await ngx.request('/ffileak')).body, 'true');
        assert.equal((await ngx.request('/ffiok')).body, 'true');
      }
      // A hot loop: JIT-compiled after ~56 iterations; its mallocs run in a trace.
      assert.equal((await ngx.request('/ffiloop')).body, String(LOOP_N));
      const t = await trace;
      const leak = t.stacks.filter((s) => hasLuaFrame(s, file, LEAK_LINE));
      const show = t.stacks
        .slice(0, 10)
        .map((s) => `${s.bytes} B: ${s.frames.map(frameLabel).join(' <- ')}`)
        .join('\n');
      assert.ok(leak.length >= 1, `a path through ${file}:${LEAK_LINE}\n${show}\n${t.notes.join('\n')}`);
      const bytes = leak.reduce((a, s) => a + s.bytes, 0);
      assert.equal(bytes, LEAKS * LEAK_SIZE, `outstanding bytes at the leak line\n${show}`);
      const s = leak[0]!;
      if (process.env.LEAKSCOPE_TEST_VERBOSE) console.log(show, t.notes);
      const labels = s.frames.map(frameLabel);
      assert.equal(labels[0], 'malloc', labels.join(' <- '));
      // The Lua frames sit between the leaf and the nginx code that ran the handler.
      const li = s.frames.findIndex((f) => f.module === '[lua]' && f.line === LEAK_LINE);
      assert.ok(
        s.frames
          .slice(li + 1)
          .some((f) => f.module === '[lua]' && /content_by_lua\(nginx\.conf:\d+\)/.test(f.file ?? '')),
        `the handler's chunk below the leak line: ${labels.join(' <- ')}`,
      );
      assert.ok(
        s.frames.slice(li + 1).some((f) => f.function === 'ngx_http_lua_run_thread' || f.function === 'lua_resume'),
        `native callers of the VM after the Lua frames: ${labels.join(' <- ')}`,
      );
      // The loop's mallocs: every one under a Lua frame of the loop function (interpreted: the
      // malloc line; in the trace: the trace's start, inlined frames being invisible).
      const inLoop = t.stacks.filter((x) =>
        x.frames.some((f) => f.module === '[lua]' && f.file === file && f.line! >= LOOP_FIRST && f.line! <= LOOP_LAST),
      );
      assert.equal(
        inLoop.reduce((a, x) => a + x.bytes, 0),
        LOOP_N * LOOP_SIZE,
        `the loop's ${LOOP_N} mallocs under its Lua frames\n${show}`,
      );
      const jit = inLoop.find((x) => x.frames.some((f) => f.module === '[lua]' && f.function?.startsWith('[trace ')));
      assert.ok(
        jit,
        `some of the loop's mallocs ran in a trace: ${inLoop.map((x) => x.frames.map(frameLabel).join(' <- ')).join('\n')}`,
      );
      assert.ok(
        jit.frames.some((f) => f.function === 'ngx_http_lua_run_thread'),
        `the VM's native callers after a JIT frame: ${jit.frames.map(frameLabel).join(' <- ')}`,
      );
      // The healthy location frees what it mallocs: nothing outstanding at its line.
      const ok = t.stacks.filter((x) => hasLuaFrame(x, file, OK_LINE) && x.bytes > 0);
      assert.equal(ok.length, 0, `nothing outstanding from ${file}:${OK_LINE}\n${show}`);
    } finally {
      space.close();
    }
  } finally {
    await ngx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

const PUT_MODULE = [
  'local _M = { store = {} }',
  'local seq = 0',
  'function _M.put(n)',
  '  for _ = 1, n do',
  '    seq = seq + 1',
  '    local big = string.rep("z", 1000)',
  '    _M.store[#_M.store + 1] = big .. seq', // PUT_LINE
  '  end',
  '  return #_M.store',
  'end',
  'return _M',
  '',
].join('\n');
const PUT_LINE = 7;

test('leaks --mode lua (lj_alloc_f): Lua heap allocations still held are attributed to their Lua line', {
  timeout: 120_000,
}, async () => {
  await ensureFixturesBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-luaalloc-'));
  const file = join(dir, 'luaput.lua');
  writeFileSync(file, PUT_MODULE);
  chmodSync(dir, 0o755);
  chmodSync(file, 0o644);
  const ngx = await startLuaNginx(1, {
    luaDir: dir,
    locations: ['location = /luaput { content_by_lua_block { ngx.print(require("luaput").put(5)) } }'],
  });
  try {
    assert.equal((await ngx.request('/luaput')).body, '5');
    const space = LiveProcess.open(ngx.workerPids()[0]!);
    try {
      const trace = traceLeaks(space, { mode: 'lua', durationSeconds: 3, minAgeSeconds: 0 });
      await new Promise((r) => setTimeout(r, 1000));
      const REQ = 8;
      for (let i = 0; i < REQ; i++) await ngx.request('/luaput');
      const t = await trace;
      const show = t.stacks
        .slice(0, 8)
        .map((s) => `${s.bytes} B: ${s.frames.map(frameLabel).join(' <- ')}`)
        .join('\n');
      if (process.env.LEAKSCOPE_TEST_VERBOSE) console.log(show, t.notes);
      assert.equal(t.mode, 'lua');
      const at = t.stacks.filter((s) => hasLuaFrame(s, file, PUT_LINE));
      // Each stored string: lj_str_size(len) = 24 + ((len + 4) & ~3), len = 1000 + digits of seq (6..45: 1-2 digits).
      let strings = 0;
      for (let seq = 6; seq <= 5 + REQ * 5; seq++) {
        const len = 1000 + String(seq).length;
        strings += 24 + ((len + 4) & ~3);
      }
      const bytes = at.reduce((a, s) => a + s.bytes, 0);
      assert.ok(bytes >= strings, `>= ${strings} B held at ${file}:${PUT_LINE}, got ${bytes}\n${show}`);
      assert.ok(
        at.every((s) => s.frames[0]?.function === 'lj_alloc_f'),
        show,
      );
      assert.ok(
        t.notes.some((n) => n.includes('lua mode')),
        t.notes.join('\n'),
      );
    } finally {
      space.close();
    }
  } finally {
    await ngx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('malloc mode on a plain LuaJIT program (the C harness): ffi.C.malloc leaks attributed to their Lua line', {
  timeout: 120_000,
}, async () => {
  await ensureFixturesBuilt();
  const h = await startFixture<{ pid: number }>('luajit-harness', ['10', '100']);
  try {
    const space = LiveProcess.open(h.pid);
    try {
      const trace = traceLeaks(space, { mode: 'malloc', durationSeconds: 3, sampleBytes: 0, minAgeSeconds: 0 });
      await new Promise((r) => setTimeout(r, 1000));
      // 20 calls: below the JIT's hot-loop threshold (56), so interpreted: the line is exact.
      await h.command('ffi 20 300001');
      const t = await trace;
      const show = t.stacks
        .slice(0, 4)
        .map((s) => `${s.bytes} B: ${s.frames.map(frameLabel).join(' <- ')}`)
        .join('\n');
      const at = t.stacks.filter((s) => hasLuaFrame(s, 'harness_a', 26));
      assert.equal(
        at.reduce((a, s) => a + s.bytes, 0),
        20 * 300001,
        `the 20 mallocs at harness_a:26\n${show}`,
      );
      assert.ok(
        at[0]!.frames.some((f) => f.function === 'main'),
        `native callers of the VM (lua_pcall <- main): ${show}`,
      );
    } finally {
      space.close();
    }
  } finally {
    await h.stop();
  }
});
