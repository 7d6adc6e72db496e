// Field offsets (bytes, x86-64) of the nginx structures leakscope reads, and where they
// came from. `ngx_pool_t` and friends are stable since nginx 1.x (see pool.ts); the
// others depend on the nginx version and configure flags:
//   1. DWARF of the nginx binary or its debug file (src/formats/dwarf/info.ts), when present;
//   2. else a built-in table keyed by version + the layout-relevant configure flags, read
//      from the binary's .rodata ("nginx/1.22.1", "configure arguments: ...").
// The Debian 1.22.1 entry was derived with test/fixtures/nginx-layouts/offsets.c compiled
// against /usr/share/nginx/src with its conf_flags; src/nginx/layouts.test.ts re-derives it.
// Whatever the source, every structure read is validated against the data (roots.ts).

import type { ElfFile } from '../formats/elf/index.js';

export interface CycleLayout {
  conf_ctx: number;
  pool: number;
  log: number;
  new_log: number;
  files: number;
  free_connections: number;
  free_connection_n: number;
  modules: number;
  modules_n: number;
  listening: number;
  open_files: number;
  shared_memory: number;
  connection_n: number;
  files_n: number;
  connections: number;
  read_events: number;
  write_events: number;
  old_cycle: number;
  conf_file: number;
  prefix: number;
  hostname: number;
  sizeof: number;
}
export interface ConnectionLayout {
  data: number;
  read: number;
  write: number;
  fd: number;
  listening: number;
  log: number;
  pool: number;
  type: number;
  sockaddr: number;
  number: number;
  requests: number;
  sizeof: number;
}
export interface RequestLayout {
  signature: number;
  connection: number;
  upstream: number;
  pool: number;
  uri: number;
  main: number;
  parent: number;
  sizeof: number;
}
export interface ModuleLayout {
  ctx_index: number;
  index: number;
  name: number;
  version: number;
  signature: number;
  ctx: number;
  commands: number;
  type: number;
  sizeof: number;
}
export interface ListLayout {
  last: number;
  part: number;
  size: number;
  nalloc: number;
  pool: number;
  sizeof: number;
}
export interface ListPartLayout {
  elts: number;
  nelts: number;
  next: number;
  sizeof: number;
}
export interface ShmZoneLayout {
  data: number;
  shm: number;
  init: number;
  tag: number;
  noreuse: number;
  sizeof: number;
}
export interface ShmLayout {
  addr: number;
  size: number;
  name: number;
  exists: number;
  sizeof: number;
}

/** The struct layouts, named as `offsets.c` prints them (struct typedef name -> field -> offset). */
export interface StructLayouts {
  ngx_cycle_t: CycleLayout;
  ngx_connection_t: ConnectionLayout;
  ngx_http_request_t: RequestLayout;
  ngx_module_t: ModuleLayout;
  ngx_list_t: ListLayout;
  ngx_list_part_t: ListPartLayout;
  ngx_shm_zone_t: ShmZoneLayout;
  ngx_shm_t: ShmLayout;
}

export type LayoutSource = 'dwarf' | 'table' | 'table-nearest';

export interface NginxLayouts extends StructLayouts {
  /** "1.22.1", or "" when the binary does not say. */
  version: string;
  /** nginx_version as compiled into ngx_module_t.version: 1022001 for 1.22.1. */
  versionNumber: number;
  /** Layout-relevant configure features (see layoutFeatures). */
  features: LayoutFeatures;
  source: LayoutSource;
  /** Human-readable: which table entry / which file's DWARF. */
  sourceDetail: string;
}

/** Configure choices that change the layouts above (the #if's in ngx_cycle.h, ngx_connection.h, ngx_http_request.h). */
export interface LayoutFeatures {
  compat: boolean; // --with-compat: NGX_COMPAT pins optional fields
  ssl: boolean; // any *_ssl_module: NGX_SSL
  threads: boolean; // --with-threads
  debug: boolean; // --with-debug
  http2: boolean; // --with-http_v2_module
  httpCache: boolean; // not --without-http-cache
  pcre: boolean; // not --without-pcre
}

interface TableEntry {
  version: string;
  features: LayoutFeatures;
  layouts: StructLayouts;
  origin: string;
}

/**
 * Known layouts. Debian 12 nginx 1.22.1-9 (+deb12u*): output of
 * test/fixtures/nginx-layouts/build.sh (offsets.c against /usr/share/nginx/src, conf_flags).
 */
export const LAYOUT_TABLE: readonly TableEntry[] = [
  {
    version: '1.22.1',
    features: { compat: true, ssl: true, threads: true, debug: true, http2: true, httpCache: true, pcre: true },
    origin: 'Debian 12 nginx 1.22.1 (offsets.c against nginx-dev headers, conf_flags)',
    layouts: {
      ngx_cycle_t: {
        conf_ctx: 0,
        pool: 8,
        log: 16,
        new_log: 24,
        files: 112,
        free_connections: 120,
        free_connection_n: 128,
        modules: 136,
        modules_n: 144,
        listening: 192,
        open_files: 376,
        shared_memory: 432,
        connection_n: 488,
        files_n: 496,
        connections: 504,
        read_events: 512,
        write_events: 520,
        old_cycle: 528,
        conf_file: 536,
        prefix: 584,
        hostname: 632,
        sizeof: 648,
      },
      ngx_connection_t: {
        data: 0,
        read: 8,
        write: 16,
        fd: 24,
        listening: 64,
        log: 80,
        pool: 88,
        type: 96,
        sockaddr: 104,
        number: 200,
        requests: 216,
        sizeof: 240,
      },
      ngx_http_request_t: {
        signature: 0,
        connection: 8,
        upstream: 72,
        pool: 88,
        uri: 1008,
        main: 1128,
        parent: 1136,
        sizeof: 1512,
      },
      ngx_module_t: {
        ctx_index: 0,
        index: 8,
        name: 16,
        version: 40,
        signature: 48,
        ctx: 56,
        commands: 64,
        type: 72,
        sizeof: 200,
      },
      ngx_list_t: { last: 0, part: 8, size: 32, nalloc: 40, pool: 48, sizeof: 56 },
      ngx_list_part_t: { elts: 0, nelts: 8, next: 16, sizeof: 24 },
      ngx_shm_zone_t: { data: 0, shm: 8, init: 56, tag: 64, noreuse: 80, sizeof: 88 },
      ngx_shm_t: { addr: 0, size: 8, name: 16, exists: 40, sizeof: 48 },
    },
  },
];

/** What the nginx binary says about itself (from .rodata). */
export interface NginxBuildInfo {
  version: string; // "1.22.1" or ""
  configureArgs: string; // text after "configure arguments:", or ""
}

/** Pure: "nginx/1.22.1" and "configure arguments: ..." strings in an nginx ELF's .rodata. */
export function nginxBuildInfo(elf: ElfFile): NginxBuildInfo {
  const ro = elf.section('.rodata');
  const bytes = ro ? elf.sectionBytes(ro) : elf.bytes;
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let version = '';
  for (let at = text.indexOf('nginx/'); at >= 0 && !version; at = text.indexOf('nginx/', at + 1)) {
    const m = /^nginx\/(\d+\.\d+\.\d+)\0/.exec(text.toString('latin1', at, at + 24));
    if (m) version = m[1]!;
  }
  let configureArgs = '';
  const ca = text.indexOf('configure arguments:');
  if (ca >= 0) {
    const end = text.indexOf(0, ca);
    configureArgs = text.toString('latin1', ca + 'configure arguments:'.length, end < 0 ? ca + 8192 : end).trim();
  }
  return { version, configureArgs };
}

/** Pure: the layout-relevant features of a configure command line. */
export function layoutFeatures(configureArgs: string): LayoutFeatures {
  const has = (re: RegExp) => re.test(configureArgs);
  return {
    compat: has(/(^|\s)--with-compat(\s|$)/),
    ssl: has(/(^|\s)--with-(http|mail|stream)_ssl_module(\s|$)/),
    threads: has(/(^|\s)--with-threads(\s|$)/),
    debug: has(/(^|\s)--with-debug(\s|$)/),
    http2: has(/(^|\s)--with-http_v2_module(\s|$)/),
    httpCache: !has(/(^|\s)--without-http-cache(\s|$)/),
    pcre: !has(/(^|\s)--without-pcre(\s|$)/),
  };
}

/** "1.22.1" -> 1022001 (nginx_version in core/nginx.h). */
export function versionNumber(version: string): number {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(version);
  return m ? Number(m[1]) * 1000000 + Number(m[2]) * 1000 + Number(m[3]) : 0;
}

function sameFeatures(a: LayoutFeatures, b: LayoutFeatures): boolean {
  return (Object.keys(a) as Array<keyof LayoutFeatures>).every((k) => a[k] === b[k]);
}

/**
 * Layouts from the built-in table: the exact version + features entry, else the entry
 * with the nearest version (source 'table-nearest', to be validated against the data).
 */
export function tableLayouts(info: NginxBuildInfo): NginxLayouts {
  const features = layoutFeatures(info.configureArgs);
  const exact = LAYOUT_TABLE.find((e) => e.version === info.version && sameFeatures(e.features, features));
  const want = versionNumber(info.version);
  const entry =
    exact ??
    [...LAYOUT_TABLE].sort(
      (a, b) => Math.abs(versionNumber(a.version) - want) - Math.abs(versionNumber(b.version) - want),
    )[0]!;
  return {
    ...structuredClone(entry.layouts),
    version: info.version,
    versionNumber: want,
    features,
    source: exact ? 'table' : 'table-nearest',
    sourceDetail: exact
      ? entry.origin
      : `nearest known layout (${entry.origin}) for nginx ${info.version || '(unknown version)'}`,
  };
}

/** Which struct/field names the DWARF reader must resolve: exactly those of StructLayouts. */
export const LAYOUT_FIELDS: { [S in keyof StructLayouts]: ReadonlyArray<keyof StructLayouts[S]> } = {
  ngx_cycle_t: Object.keys(LAYOUT_TABLE[0]!.layouts.ngx_cycle_t) as Array<keyof CycleLayout>,
  ngx_connection_t: Object.keys(LAYOUT_TABLE[0]!.layouts.ngx_connection_t) as Array<keyof ConnectionLayout>,
  ngx_http_request_t: Object.keys(LAYOUT_TABLE[0]!.layouts.ngx_http_request_t) as Array<keyof RequestLayout>,
  ngx_module_t: Object.keys(LAYOUT_TABLE[0]!.layouts.ngx_module_t) as Array<keyof ModuleLayout>,
  ngx_list_t: Object.keys(LAYOUT_TABLE[0]!.layouts.ngx_list_t) as Array<keyof ListLayout>,
  ngx_list_part_t: Object.keys(LAYOUT_TABLE[0]!.layouts.ngx_list_part_t) as Array<keyof ListPartLayout>,
  ngx_shm_zone_t: Object.keys(LAYOUT_TABLE[0]!.layouts.ngx_shm_zone_t) as Array<keyof ShmZoneLayout>,
  ngx_shm_t: Object.keys(LAYOUT_TABLE[0]!.layouts.ngx_shm_t) as Array<keyof ShmLayout>,
};
