// Which ngx_create_pool call sites of the nginx binary create pools that nginx itself owns and
// destroys (connections, requests, upstream connections, HTTP/2, the cycle and configuration):
// pool mode may leave those unprobed, since such a pool outlives its owner only if the owner
// itself leaks, which the census then shows. Everything else (dynamic modules, functions not named
// here, third-party code compiled in) is always probed.
//
// Source: nginx 1.18-1.29 (github.com/nginx/nginx), `git grep 'ngx_create_pool('`:
//   src/core/nginx.c           main: init_cycle.pool (the bootstrap cycle, master only)
//   src/core/ngx_cycle.c       ngx_init_cycle: cycle->pool, conf.temp_pool (destroyed at its end),
//                              ngx_temp_pool of old cycles (ngx_clean_old_cycles)
//   src/event/ngx_event_accept.c  ngx_event_accept: c->pool, destroyed by ngx_close_connection's callers
//                              (ngx_http_close_connection, ngx_stream_close_connection, ...)
//   src/event/ngx_event_udp.c  ngx_event_recvmsg: c->pool of a UDP "connection", likewise
//   src/http/ngx_http_request.c  ngx_http_alloc_request (static): r->pool, destroyed by ngx_http_free_request
//   src/http/ngx_http_upstream.c ngx_http_upstream_connect (static): the upstream connection's pool,
//                              destroyed with it (ngx_http_upstream_finalize_request / _next, or by
//                              the keepalive cache when the cached connection closes)
//   src/http/v2/ngx_http_v2.c  ngx_http_v2_init, ngx_http_v2_state_headers, ngx_http_v2_push_stream,
//                              ngx_http_v2_idle_handler: h2c->pool, h2c->state.pool and stream pools,
//                              destroyed by ngx_http_v2_close_stream / _finalize_connection / _idle_handler
//
// Stripped binaries (Debian's) name only exported functions (.dynsym); static functions are
// recognized by the object file they sit in: a function with no symbol of its own, lying between
// two exported functions of that file (the linker lays out each object's .text contiguously), is
// that file's, and the file's number of such sites is checked against the table (`maxSites`).

export type PoolOwner = 'cycle' | 'connection' | 'request' | 'upstream' | 'http2';

export interface OwnedSiteRule {
  /** The nginx source file and function(s) the sites are in. */
  source: string;
  owner: PoolOwner;
  /** Function names (any symbol table) whose ngx_create_pool calls create such pools. */
  functions: readonly string[];
  /** Exported functions of the source file, for static functions between two of them. */
  fileExports?: readonly string[];
  /** Most sites the file / functions have in any nginx version: more found means something else is there. */
  maxSites: number;
}

export const OWNED_POOL_SITES: readonly OwnedSiteRule[] = [
  { source: 'src/core/nginx.c main', owner: 'cycle', functions: ['main'], maxSites: 1 },
  { source: 'src/core/ngx_cycle.c ngx_init_cycle', owner: 'cycle', functions: ['ngx_init_cycle'], maxSites: 3 },
  {
    source: 'src/event/ngx_event_accept.c ngx_event_accept',
    owner: 'connection',
    functions: ['ngx_event_accept'],
    maxSites: 1,
  },
  {
    source: 'src/event/ngx_event_udp.c ngx_event_recvmsg',
    owner: 'connection',
    functions: ['ngx_event_recvmsg'],
    maxSites: 1,
  },
  {
    source: 'src/http/ngx_http_request.c ngx_http_alloc_request',
    owner: 'request',
    functions: ['ngx_http_alloc_request', 'ngx_http_create_request'],
    fileExports: [
      'ngx_http_block_reading',
      'ngx_http_close_connection',
      'ngx_http_close_request',
      'ngx_http_create_request',
      'ngx_http_empty_handler',
      'ngx_http_finalize_request',
      'ngx_http_free_request',
      'ngx_http_init_connection',
      'ngx_http_post_request',
      'ngx_http_process_request',
      'ngx_http_process_request_header',
      'ngx_http_process_request_uri',
      'ngx_http_request_empty_handler',
      'ngx_http_run_posted_requests',
      'ngx_http_send_special',
      'ngx_http_set_virtual_server',
      'ngx_http_ssl_certificate',
      'ngx_http_ssl_servername',
      'ngx_http_test_reading',
      'ngx_http_validate_host',
    ],
    maxSites: 1,
  },
  {
    source: 'src/http/ngx_http_upstream.c ngx_http_upstream_connect',
    owner: 'upstream',
    functions: ['ngx_http_upstream_connect'],
    fileExports: [
      'ngx_http_upstream_add',
      'ngx_http_upstream_bind_set_slot',
      'ngx_http_upstream_create',
      'ngx_http_upstream_hide_headers_hash',
      'ngx_http_upstream_init',
      'ngx_http_upstream_merge_ssl_passwords',
      'ngx_http_upstream_non_buffered_filter',
      'ngx_http_upstream_non_buffered_filter_init',
      'ngx_http_upstream_param_set_slot',
    ],
    maxSites: 1,
  },
  {
    source: 'src/http/v2/ngx_http_v2.c',
    owner: 'http2',
    functions: ['ngx_http_v2_init', 'ngx_http_v2_state_headers', 'ngx_http_v2_push_stream', 'ngx_http_v2_idle_handler'],
    fileExports: [
      'ngx_http_v2_close_stream',
      'ngx_http_v2_init',
      'ngx_http_v2_push_stream',
      'ngx_http_v2_read_request_body',
      'ngx_http_v2_read_unbuffered_request_body',
      'ngx_http_v2_send_output_queue',
    ],
    maxSites: 4,
  },
];

/** Where a call site sits: its function's own name, or the named functions around an unnamed one. */
export interface PoolSiteContext {
  /** Name of the function holding the site (a symbol starting at its FDE), if any. */
  function?: string;
  /** For an unnamed function: the nearest named functions before and after it. */
  before?: string;
  after?: string;
}

/** The rule a site falls under, or undefined (probe it). Pure; the caller checks `maxSites`. */
export function ownedSiteRule(ctx: PoolSiteContext): OwnedSiteRule | undefined {
  if (ctx.function !== undefined) return OWNED_POOL_SITES.find((r) => r.functions.includes(ctx.function!));
  if (ctx.before === undefined || ctx.after === undefined) return undefined;
  return OWNED_POOL_SITES.find(
    (r) => r.fileExports?.includes(ctx.before!) === true && r.fileExports.includes(ctx.after!),
  );
}
