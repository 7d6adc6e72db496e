// Cost of the Lua frame walk in malloc-mode probes (issue 15): `node dist/bench/run.js lua-frames` (root).
// Target: Debian nginx + ngx_http_lua, 1 worker; GET /bench runs, in Lua with the JIT off for
// that function (every call interpreted: the walk sees 3 Lua frames), N times
// `ffi.C.free(ffi.C.malloc(64))` and answers the worker's CPU time for the loop (os.clock: user +
// sys, so the uprobe traps and BPF programs count). Modes side by side, interleaved rounds:
//   untraced     no probes
//   malloc       `leaks --mode malloc --sample-bytes 0` without Lua frames (every malloc and free probed)
//   malloc+lua   the same with the Lua frame walk in the malloc probe
// Reported: median µs per malloc+free pair per mode; the walk's cost per probe hit =
// (malloc+lua - malloc) per pair (one malloc hit per pair carries the walk).
// And `leaks --mode lua` (lj_alloc_f probed): GET /benchalloc makes N small tables in Lua (JIT
// off; each one lj_alloc_f call, freed by the GC later: another call), CPU µs per table untraced
// vs traced, side by side in the same rounds.
import { LiveProcess } from '../src/target/index.js';
import { traceLeaks } from '../src/trace/leak-tracer.js';
import { ensureFixturesBuilt } from '../test/helpers/build.js';
import { startLuaNginx } from '../test/helpers/lua-nginx.js';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const N = 20000;
const ROUNDS = 5;
type Mode = 'untraced' | 'malloc' | 'malloc+lua' | 'alloc-untraced' | 'lua-mode';

const MODULE = `local ffi = require("ffi")
ffi.cdef[[void *malloc(size_t size); void free(void *p);]]
local _M = {}
local function pairs_(n)
  for _ = 1, n do ffi.C.free(ffi.C.malloc(64)) end
end
jit.off(pairs_)
local function tables_(n)
  local keep
  for i = 1, n do keep = { i } end
  return keep
end
jit.off(tables_)
function _M.alloc(n)
  collectgarbage("collect")
  local t0 = os.clock()
  tables_(n)
  collectgarbage("collect")
  return os.clock() - t0
end
function _M.run(n)
  local t0 = os.clock()
  pairs_(n)
  return os.clock() - t0
end
return _M
`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export async function benchLuaFrames(): Promise<object> {
  await ensureFixturesBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-bench-luaframes-'));
  writeFileSync(join(dir, 'luabench.lua'), MODULE);
  chmodSync(dir, 0o755);
  chmodSync(join(dir, 'luabench.lua'), 0o644);
  const ngx = await startLuaNginx(1, {
    luaDir: dir,
    locations: [
      `location = /bench { content_by_lua_block { ngx.print(require("luabench").run(${N})) } }`,
      `location = /benchalloc { content_by_lua_block { ngx.print(require("luabench").alloc(${N})) } }`,
    ],
  });
  const per: Record<Mode, number[]> = {
    untraced: [],
    malloc: [],
    'malloc+lua': [],
    'alloc-untraced': [],
    'lua-mode': [],
  };
  let luaEvents = '';
  try {
    const once = async () => Number((await ngx.request('/bench')).body) / N;
    const allocOnce = async () => Number((await ngx.request('/benchalloc')).body) / N;
    await once();
    await allocOnce();
    const space = LiveProcess.open(ngx.workerPids()[0]!);
    try {
      const modes: Mode[] = ['untraced', 'malloc', 'malloc+lua', 'alloc-untraced', 'lua-mode'];
      for (let r = 0; r < ROUNDS; r++) {
        for (const mode of [...modes.slice(r % modes.length), ...modes.slice(0, r % modes.length)]) {
          if (mode === 'untraced' || mode === 'alloc-untraced') {
            per[mode].push(await (mode === 'untraced' ? once() : allocOnce()));
            continue;
          }
          if (mode === 'lua-mode') {
            const ac = new AbortController();
            const t = traceLeaks(space, { mode: 'lua', durationSeconds: 60, signal: ac.signal });
            await new Promise((res) => setTimeout(res, 1500));
            per[mode].push(await allocOnce());
            ac.abort();
            await t;
            continue;
          }
          const ac = new AbortController();
          const t = traceLeaks(space, {
            mode: 'malloc',
            durationSeconds: 60,
            sampleBytes: 0,
            luaFrames: mode === 'malloc+lua',
            signal: ac.signal,
          });
          await new Promise((res) => setTimeout(res, 1500));
          per[mode].push(await once());
          ac.abort();
          const tr = await t;
          if (mode === 'malloc+lua') luaEvents = tr.notes.find((n) => n.startsWith('Lua frames')) ?? '';
        }
      }
    } finally {
      space.close();
    }
  } finally {
    await ngx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const us = (m: Mode) => Math.round(median(per[m]) * 1e6 * 1000) / 1000;
  return {
    pairsPerRun: N,
    rounds: ROUNDS,
    untracedMicrosPerPair: us('untraced'),
    mallocMicrosPerPair: us('malloc'),
    mallocLuaMicrosPerPair: us('malloc+lua'),
    luaWalkMicrosPerHit: Math.round((us('malloc+lua') - us('malloc')) * 1000) / 1000,
    untracedMicrosPerLuaTable: us('alloc-untraced'),
    luaModeMicrosPerLuaTable: us('lua-mode'),
    samples: per,
    note: luaEvents,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  benchLuaFrames().then((r) => console.log(JSON.stringify(r, null, 2)));
}
