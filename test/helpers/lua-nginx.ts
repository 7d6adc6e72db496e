// Debian's nginx with libnginx-mod-http-lua (ndk + ngx_http_lua_module, installed by
// scripts/setup.sh) and the test Lua modules of test/fixtures/lua:
//   /leak?n=N&size=S  acme_leak.put: N unique S-byte strings into acme_leak.cache.sessions;
//                     answers the bytes they occupy in the LuaJIT heap (Σ lj_str_size)
//   /ok               healthy.handle(50): per-request garbage only
//   /fullgc           two full collections
//   /count            collectgarbage("count") * 1024 (= gc.total, read after the last allocation)
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES_DIR } from './build.js';
import { startNginx } from './nginx.js';
import type { NginxHandle } from './nginx.js';

export const LUA_MODULES_DIR = '/usr/share/nginx/modules';
/** The path leakscope gives the table acme_leak leaks into. */
export const LUA_LEAK_TABLE = '[registry]._LOADED.acme_leak.cache.sessions';

/**
 * `extra`: more http-level directives (e.g. lua_shared_dict) and server-level locations;
 * `luaDir` is searched first by require(); `locations` are more server-level directives.
 */
export interface LuaNginxExtra {
  httpExtra?: string;
  serverExtra?: string[];
  luaDir?: string;
  locations?: string[];
}

export async function startLuaNginx(workers = 1, extra: LuaNginxExtra = {}): Promise<NginxHandle> {
  if (!existsSync(`${LUA_MODULES_DIR}/ngx_http_lua_module.so`))
    throw new Error('libnginx-mod-http-lua is not installed (scripts/setup.sh)');
  return startNginx({
    workers,
    loadModule: false,
    mainExtra: `load_module ${LUA_MODULES_DIR}/ndk_http_module.so;\nload_module ${LUA_MODULES_DIR}/ngx_http_lua_module.so;`,
    httpExtra: `lua_package_path "${extra.luaDir ? `${extra.luaDir}/?.lua;` : ''}${join(FIXTURES_DIR, 'lua')}/?.lua;;";${extra.httpExtra ? `\n    ${extra.httpExtra}` : ''}`,
    serverExtra: [
      'location = /leak { content_by_lua_block { ngx.print(require("acme_leak").put(tonumber(ngx.var.arg_n) or 1, tonumber(ngx.var.arg_size) or 4096)) } }',
      'location = /ok { content_by_lua_block { ngx.print(require("healthy").handle(50)) } }',
      'location = /fullgc { content_by_lua_block { collectgarbage("collect"); collectgarbage("collect"); ngx.print("done") } }',
      'location = /count { content_by_lua_block { ngx.print(collectgarbage("count") * 1024) } }',
      ...(extra.serverExtra ?? []),
      ...(extra.locations ?? []),
    ].join('\n        '),
  });
}
