// Which ngx_create_pool call sites count as nginx's own (pool-site-owners.ts), by the function
// holding them or, for a static function of a stripped binary, by the exported functions around it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ownedSiteRule } from './pool-site-owners.js';

test('owned pool sites: named functions, static functions between two exports of their file, nothing else', () => {
  const cases: Array<[Parameters<typeof ownedSiteRule>[0], string | undefined]> = [
    [{ function: 'ngx_event_accept' }, 'connection'],
    [{ function: 'ngx_event_recvmsg' }, 'connection'],
    [{ function: 'ngx_init_cycle' }, 'cycle'],
    [{ function: 'main' }, 'cycle'],
    [{ function: 'ngx_http_alloc_request' }, 'request'], // unstripped build: the static function's own name
    [{ function: 'ngx_http_create_request' }, 'request'], // ngx_http_alloc_request inlined into it
    [{ function: 'ngx_http_upstream_connect' }, 'upstream'],
    [{ function: 'ngx_http_v2_init' }, 'http2'],
    // Debian 1.22.1: ngx_http_alloc_request lies between ngx_http_close_connection and ngx_http_init_connection.
    [{ before: 'ngx_http_close_connection', after: 'ngx_http_init_connection' }, 'request'],
    [{ before: 'ngx_http_upstream_non_buffered_filter', after: 'ngx_http_upstream_create' }, 'upstream'],
    [{ before: 'ngx_http_v2_close_stream', after: 'ngx_http_v2_push_stream' }, 'http2'],
    // Third-party or module code: always probed.
    [{ function: 'ngx_http_leak_create_session' }, undefined],
    [{ function: 'ngx_http_lua_init_worker' }, undefined],
    [{ function: 'ngx_http_upstream_fair_connect' }, undefined],
    // Between exports of two different files (a file boundary): unknown, probed.
    [{ before: 'ngx_http_close_connection', after: 'ngx_http_upstream_create' }, undefined],
    [{ before: 'ngx_http_upstream_non_buffered_filter' }, undefined],
    [{ before: 'ngx_regex_exec_array', after: 'ngx_http_add_location' }, undefined],
    [{}, undefined],
  ];
  for (const [ctx, owner] of cases) assert.equal(ownedSiteRule(ctx)?.owner, owner, JSON.stringify(ctx));
});
