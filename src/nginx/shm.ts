// nginx shared memory zones from cycle->shared_memory: an ngx_list_t of ngx_shm_zone_t
// (src/core/ngx_cycle.h, src/core/ngx_list.h, src/os/unix/ngx_shmem.h). Each zone's
// shm.addr/shm.size is the mapping nginx made with mmap(MAP_SHARED); its tag is the
// address of the owning module's ngx_module_t (by convention; some modules tag with a
// conf structure, then the module is found by the object the tag lies in). Every zone's memory
// starts with nginx's slab allocator (slab.ts), read here too.

import { LeakscopeError } from '../model/errors.js';
import type { Symbolizer } from '../symbols/index.js';
import type { AddressSpace } from '../target/index.js';
import { findMapping } from '../target/index.js';
import { objectAt, readRoots, TargetReader } from './cycle.js';
import type { NginxLayouts } from './layouts.js';
import { readSlabPool } from './slab.js';
import type { SlabPool } from './slab.js';

export interface NginxShmZone {
  name: string;
  /** Runtime address of the zone's memory (shm.addr). */
  address: number;
  /** Bytes (shm.size). */
  size: number;
  /** Owning nginx module name (from the zone's tag), or null when the tag names none. */
  module: string | null;
  /** The zone's slab allocator (slab.ts): pages, free / used pages, per-slot stats; null when unread. */
  slab: SlabPool | null;
  /** Why `slab` is null. */
  slabProblem?: string;
}

const MAX_PARTS = 1024,
  MAX_ZONES = 65536;

/**
 * The worker's shared memory zones. Throws LeakscopeError('not-found') when the cycle
 * cannot be found or validated (no ngx_cycle symbol, unknown layout).
 */
export function nginxShmZones(
  space: AddressSpace,
  symbolizer: Symbolizer,
  opts: { layouts?: NginxLayouts } = {},
): NginxShmZone[] {
  const roots = readRoots(space, symbolizer, opts);
  if (!roots.cycle) {
    const why = roots.problems.map((p) => p.detail).join('; ');
    throw new LeakscopeError('not-found', `nginx cycle not found in ${space.description}: ${why}`);
  }
  const L = roots.layouts;
  const t = new TargetReader(space);
  const byAddr = new Map(roots.cycle.modules.map((m) => [m.address, m.name]));
  const objects = space.modules();
  const list = t.struct(roots.cycle.sharedMemory, L.ngx_list_t.sizeof, 'ngx_list_t');
  if (!list) return [];
  const eltSize = list.u64At(L.ngx_list_t.size);
  if (eltSize !== L.ngx_shm_zone_t.sizeof) return []; // not the list we expect
  const out: NginxShmZone[] = [];
  let partAddr = roots.cycle.sharedMemory + L.ngx_list_t.part;
  const seen = new Set<number>();
  while (partAddr && !seen.has(partAddr) && seen.size < MAX_PARTS) {
    seen.add(partAddr);
    const part = t.struct(partAddr, L.ngx_list_part_t.sizeof, 'ngx_list_part_t');
    if (!part) break;
    const elts = part.u64At(L.ngx_list_part_t.elts),
      nelts = part.u64At(L.ngx_list_part_t.nelts);
    if (nelts > MAX_ZONES) break;
    const Z = L.ngx_shm_zone_t,
      S = L.ngx_shm_t;
    const zr = nelts ? t.struct(elts, nelts * Z.sizeof, 'ngx_shm_zone_t[]') : undefined;
    for (let i = 0; zr && i < nelts; i++) {
      const o = i * Z.sizeof;
      const addr = zr.u64At(o + Z.shm + S.addr),
        size = zr.u64At(o + Z.shm + S.size);
      const nameLen = zr.u64At(o + Z.shm + S.name),
        nameData = zr.u64At(o + Z.shm + S.name + 8);
      const tag = zr.u64At(o + Z.tag);
      let name = '';
      if (nameLen > 0 && nameLen < 4096) {
        const b = t.struct(nameData, nameLen, 'shm name');
        if (b) name = Buffer.from(b.bytes).toString('latin1');
      }
      // Validate: the zone's memory is mapped (a shared mapping) with at least `size` bytes.
      const m = findMapping(space.mappings(), addr);
      if (!m || addr + size > m.end + 4096) continue;
      let module = byAddr.get(tag) ?? null;
      if (!module) {
        const obj = objectAt(objects, tag);
        const mods = roots.cycle.modules.filter((x) => obj && x.object === obj.path);
        if (mods.length === 1) module = mods[0]!.name;
      }
      const slab = readSlabPool(space, addr, size);
      out.push(
        typeof slab === 'string'
          ? { name, address: addr, size, module, slab: null, slabProblem: slab }
          : { name, address: addr, size, module, slab },
      );
    }
    partAddr = part.u64At(L.ngx_list_part_t.next);
  }
  return out;
}
