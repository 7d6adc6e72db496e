// The worker's roots: ngx_cycle (a .dynsym global pointer in builds with dynamic-module
// support, e.g. Debian's), its modules (cycle->modules[0 .. modules_n)), connections
// (cycle->connections[0 .. connection_n), in use when fd != -1), the HTTP request each
// connection carries (c->data, checked by r->signature == "HTTP" and r->connection == c),
// and old cycles. Every structure is validated before it is believed; failures are
// returned as inconsistencies, never thrown.
// Layouts: ngx_cycle.h, ngx_connection.h, ngx_http_request.h, ngx_module.h (layouts.ts).

import { ByteReader } from '../binary/byte-reader.js';
import { LeakscopeError } from '../model/errors.js';
import type { Module } from '../model/memory.js';
import type { Symbolizer } from '../symbols/index.js';
import type { AddressSpace } from '../target/index.js';
import { findMapping } from '../target/index.js';
import { nginxLayouts } from './resolve-layouts.js';
import type { NginxLayouts } from './layouts.js';
import { isUserPointer } from './pool.js';

/** "HTTP" as the little-endian u32 in ngx_http_request_t.signature (NGX_HTTP_MODULE). */
export const HTTP_REQUEST_SIGNATURE = 0x50545448;
/** Bounds on counts read from the target. */
const MAX_CONNECTIONS = 1 << 22,
  MAX_MODULES = 4096,
  MAX_OLD_CYCLES = 16;

export interface NginxModuleInfo {
  /** ngx_module_t.name, e.g. "ngx_http_leak_module". */
  name: string;
  /** Runtime address of the ngx_module_t. */
  address: number;
  index: number;
  /** The loaded object (nginx binary or dynamic module .so) that holds the ngx_module_t. */
  object: string;
}

export interface ConnectionInfo {
  index: number;
  address: number;
  fd: number;
  pool: number;
  /** c->data when it is a request whose r->connection == c. */
  request?: number;
  requestPool?: number;
  /** c->data when it is a request of another connection (an upstream connection: c->data = r). */
  upstreamOf?: number;
}

export interface CycleInfo {
  address: number;
  pool: number;
  log: number;
  connectionN: number;
  connectionsAddr: number;
  modules: NginxModuleInfo[];
  connections: ConnectionInfo[];
  oldCycles: Array<{ address: number; pool: number }>;
  sharedMemory: number; // runtime address of cycle->shared_memory (an embedded ngx_list_t)
}

export interface RootProblem {
  kind: string;
  detail: string;
}

export interface NginxRoots {
  layouts: NginxLayouts;
  cycle?: CycleInfo;
  problems: RootProblem[];
  /** Where ngx_cycle came from: 'dynsym' | 'symtab' | 'debug-file'. */
  cycleSymbolSource?: string;
}

const hex = (n: number) => '0x' + n.toString(16);

export class TargetReader {
  constructor(readonly space: AddressSpace) {}
  /** [addr, addr+len) lies in readable mappings. Adjacent VMAs count as one range: the kernel
   *  splits a region (e.g. [heap] after fork) and a large array may straddle the split. */
  mapped(addr: number, len = 1): boolean {
    if (!isUserPointer(addr)) return false;
    const maps = this.space.mappings();
    let m = findMapping(maps, addr);
    const end = addr + len;
    while (m && m.perms[0] === 'r') {
      if (end <= m.end) return true;
      const next = findMapping(maps, m.end);
      if (!next || next.start !== m.end) return false;
      m = next;
    }
    return false;
  }
  /** A reader over [addr, addr+len), or undefined if any byte is unreadable. */
  struct(addr: number, len: number, label: string): ByteReader | undefined {
    if (!isUserPointer(addr)) return undefined;
    const buf = Buffer.allocUnsafe(len);
    if (this.space.readInto(addr, buf, 0, len) !== len) return undefined;
    return new ByteReader(buf, { base: addr, label });
  }
  cstring(addr: number, max = 256): string | undefined {
    if (!isUserPointer(addr)) return undefined;
    const buf = Buffer.allocUnsafe(max);
    const n = this.space.readInto(addr, buf, 0, max);
    const z = buf.subarray(0, n).indexOf(0);
    return z < 0 ? undefined : buf.toString('latin1', 0, z);
  }
}

/** The module (ELF object) holding a runtime address. */
export function objectAt(modules: readonly Module[], addr: number): Module | undefined {
  for (const mod of modules) for (const m of mod.mappings) if (addr >= m.start && addr < m.end) return mod;
  return undefined;
}

/** The nginx executable among the target's modules (the first module, which buildModules puts first). */
export function nginxExecutable(space: AddressSpace): Module {
  const mods = space.modules();
  const exe = mods[0];
  if (!exe) throw new LeakscopeError('not-found', `${space.description}: no loaded executable found`);
  return exe;
}

/**
 * Reads the worker's roots. Never throws for target data: a missing ngx_cycle symbol or a
 * cycle that fails validation is a problem in the result (pools are still found by scanning).
 */
export function readRoots(
  space: AddressSpace,
  symbolizer: Symbolizer,
  opts: { layouts?: NginxLayouts } = {},
): NginxRoots {
  const exe = nginxExecutable(space);
  const layouts = opts.layouts ?? nginxLayouts(symbolizer, exe);
  const problems: RootProblem[] = [];
  const t = new TargetReader(space);
  const sym = symbolizer.lookup('ngx_cycle', { module: basenameOf(exe.path) });
  if (!sym) {
    problems.push({
      kind: 'no-ngx-cycle-symbol',
      detail: `${exe.path} exports no ngx_cycle symbol (built without dynamic-module support?)`,
    });
    return { layouts, problems };
  }
  let cycleAddr: number;
  try {
    cycleAddr = space.readU64(sym.runtimeAddr);
  } catch {
    problems.push({ kind: 'cycle-unreadable', detail: `ngx_cycle at ${hex(sym.runtimeAddr)} unreadable` });
    return { layouts, problems, cycleSymbolSource: sym.source };
  }
  const cycle = readCycle(t, cycleAddr, layouts, space.modules(), problems, 'ngx_cycle');
  if (cycle) {
    // old cycles: cycle->old_cycle chain (bounded, cycle-safe)
    const seen = new Set<number>([cycle.address]);
    const L = layouts.ngx_cycle_t;
    let old = t.struct(cycle.address + L.old_cycle, 8, 'old_cycle')?.u64At(0) ?? 0;
    while (old && !seen.has(old) && cycle.oldCycles.length < MAX_OLD_CYCLES) {
      seen.add(old);
      const r = t.struct(old, L.sizeof, 'ngx_cycle_t');
      const pool = r?.u64At(L.pool) ?? 0;
      if (!r || !t.mapped(pool, 80)) {
        problems.push({
          kind: 'old-cycle-invalid',
          detail: `old cycle ${hex(old)} unreadable or its pool ${hex(pool)} unmapped`,
        });
        break;
      }
      cycle.oldCycles.push({ address: old, pool });
      old = r.u64At(L.old_cycle);
    }
  }
  return { layouts, cycle, problems, cycleSymbolSource: sym.source };
}

function basenameOf(p: string): string {
  return p.slice(p.lastIndexOf('/') + 1);
}

function readCycle(
  t: TargetReader,
  addr: number,
  layouts: NginxLayouts,
  objects: readonly Module[],
  problems: RootProblem[],
  what: string,
): CycleInfo | undefined {
  const L = layouts.ngx_cycle_t;
  const r = t.struct(addr, L.sizeof, 'ngx_cycle_t');
  if (!r) {
    problems.push({
      kind: 'cycle-unreadable',
      detail: `${what} -> ${hex(addr)}: ngx_cycle_t (${L.sizeof} bytes) unreadable`,
    });
    return undefined;
  }
  const pool = r.u64At(L.pool),
    log = r.u64At(L.log);
  const connectionN = r.u64At(L.connection_n),
    connectionsAddr = r.u64At(L.connections);
  const modulesAddr = r.u64At(L.modules),
    modulesN = r.u64At(L.modules_n);
  // The cycle is allocated from its own pool: it lies inside the pool's first block.
  const poolEnd = t.struct(pool, 16, 'ngx_pool_t')?.u64At(8) ?? 0;
  if (!(addr >= pool + 80 && addr + L.sizeof <= poolEnd)) {
    problems.push({
      kind: 'cycle-invalid',
      detail: `${what} ${hex(addr)} does not lie inside its pool ${hex(pool)}..${hex(poolEnd)} (layout ${layouts.source}: ${layouts.sourceDetail})`,
    });
    return undefined;
  }
  const structural = connectionsProblem(t, r, layouts, connectionN, connectionsAddr);
  if (structural) {
    problems.push({
      kind: 'cycle-invalid',
      detail: `${what}: connection_n ${connectionN} / connections ${hex(connectionsAddr)}: ${structural}`,
    });
    return undefined;
  }
  const info: CycleInfo = {
    address: addr,
    pool,
    log,
    connectionN,
    connectionsAddr,
    modules: [],
    connections: [],
    oldCycles: [],
    sharedMemory: addr + L.shared_memory,
  };
  info.modules = readModules(t, modulesAddr, modulesN, layouts, objects, problems);
  info.connections = readConnections(t, info, layouts, problems);
  return info;
}

/**
 * Checks cycle->connections by structure (ngx_event_process_init, src/event/ngx_event.c): an
 * array of connection_n ngx_connection_t, readable end to end (it may straddle VMAs, any size
 * from worker_connections 1 to 65535); connections[0].read / .write are &read_events[0] /
 * &write_events[0]; free_connection_n <= connection_n and free_connections (when set) is an
 * element of the array. Returns what is wrong, or undefined.
 */
function connectionsProblem(
  t: TargetReader,
  cycle: ByteReader,
  layouts: NginxLayouts,
  n: number,
  arr: number,
): string | undefined {
  const L = layouts.ngx_cycle_t,
    C = layouts.ngx_connection_t;
  if (!(n >= 1 && n <= MAX_CONNECTIONS)) return 'count out of range';
  if (!t.mapped(arr, n * C.sizeof)) return `array of ${n} x ${C.sizeof} bytes not readable`;
  const first = t.struct(arr, C.sizeof, 'ngx_connection_t');
  if (!first) return 'connections[0] unreadable';
  const rev = cycle.u64At(L.read_events),
    wev = cycle.u64At(L.write_events);
  if (first.u64At(C.read) !== rev || first.u64At(C.write) !== wev) {
    return `connections[0].read/write ${hex(first.u64At(C.read))}/${hex(first.u64At(C.write))} are not read_events/write_events ${hex(rev)}/${hex(wev)}`;
  }
  const freeN = cycle.u64At(L.free_connection_n),
    free = cycle.u64At(L.free_connections);
  if (freeN > n) return `free_connection_n ${freeN} > connection_n`;
  if (free !== 0 && (free < arr || free >= arr + n * C.sizeof || (free - arr) % C.sizeof !== 0))
    return `free_connections ${hex(free)} is not an element of the array`;
  return undefined;
}

function readModules(
  t: TargetReader,
  arr: number,
  n: number,
  layouts: NginxLayouts,
  objects: readonly Module[],
  problems: RootProblem[],
): NginxModuleInfo[] {
  if (!(n >= 1 && n <= MAX_MODULES)) {
    problems.push({ kind: 'modules-invalid', detail: `cycle->modules_n ${n} implausible` });
    return [];
  }
  const ptrs = t.struct(arr, n * 8, 'ngx_module_t *[]');
  if (!ptrs) {
    problems.push({ kind: 'modules-invalid', detail: `cycle->modules ${hex(arr)} unreadable` });
    return [];
  }
  const M = layouts.ngx_module_t;
  const out: NginxModuleInfo[] = [];
  for (let i = 0; i < n; i++) {
    const p = ptrs.u64At(i * 8);
    if (p === 0) continue; // cycle->modules has room for ngx_max_module entries
    const m = t.struct(p, M.sizeof, 'ngx_module_t');
    const name = m ? t.cstring(m.u64At(M.name), 128) : undefined;
    const version = m?.u64At(M.version) ?? 0;
    // Validate: a C identifier name, and the version nginx stamps into every module (NGX_MODULE_V1).
    if (
      !m ||
      !name ||
      !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ||
      (layouts.versionNumber && version !== layouts.versionNumber)
    ) {
      problems.push({
        kind: 'module-invalid',
        detail: `cycle->modules[${i}] = ${hex(p)}: ${!m ? 'unreadable' : `name ${JSON.stringify(name)}, version ${version}`}`,
      });
      continue;
    }
    const obj = objectAt(objects, p);
    out.push({ name, address: p, index: m.u64At(M.index), object: obj?.path ?? '' });
  }
  return out;
}

function readConnections(
  t: TargetReader,
  cycle: CycleInfo,
  layouts: NginxLayouts,
  problems: RootProblem[],
): ConnectionInfo[] {
  const C = layouts.ngx_connection_t,
    R = layouts.ngx_http_request_t;
  const out: ConnectionInfo[] = [];
  // In windows of at most 1024 connections (240 KiB), so huge connection tables stay bounded.
  const per = 1024;
  for (let base = 0; base < cycle.connectionN; base += per) {
    const n = Math.min(per, cycle.connectionN - base);
    const r = t.struct(cycle.connectionsAddr + base * C.sizeof, n * C.sizeof, 'ngx_connection_t[]');
    if (!r) {
      problems.push({ kind: 'connections-unreadable', detail: `connections[${base}..${base + n}) unreadable` });
      continue;
    }
    for (let i = 0; i < n; i++) {
      const o = i * C.sizeof;
      const fd = r.i32At(o + C.fd);
      if (fd === -1) continue;
      const address = cycle.connectionsAddr + (base + i) * C.sizeof;
      const pool = r.u64At(o + C.pool);
      if (fd < -1 || fd > 1 << 24) {
        problems.push({ kind: 'connection-invalid', detail: `connections[${base + i}] fd ${fd}` });
        continue;
      }
      const c: ConnectionInfo = { index: base + i, address, fd, pool };
      const data = r.u64At(o + C.data);
      if (pool !== 0 && isUserPointer(data)) {
        const req = t.struct(data, R.sizeof, 'ngx_http_request_t');
        if (req && req.u32At(R.signature) === HTTP_REQUEST_SIGNATURE) {
          const rc = req.u64At(R.connection);
          if (rc === address) {
            c.request = data;
            c.requestPool = req.u64At(R.pool);
          } else if (isUserPointer(rc)) c.upstreamOf = data;
        }
      }
      out.push(c);
    }
  }
  return out;
}
