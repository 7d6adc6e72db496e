// Step 1: where does the process's RSS live? Classifies every mapping (or part of one) into
// categories. glibc regions come from the glibc model (arena heaps, validated mmapped-chunk
// headers), nginx shm zones from the nginx model; what is left is classified by the mapping
// itself. A VMA holding several things (merged anonymous mappings) is split with exact
// per-page residency (pagemap), not guessed from anonymity.

import { basename } from 'node:path';
import type { AddressSpace } from '../target/address-space.js';
import { isElfPath } from '../target/modules.js';
import type {
  MemBreakdown,
  MemCategory,
  MemCategoryName,
  MemRegion,
  MappingWithUsage,
  ShmZoneMem,
} from '../model/index.js';

export interface GlibcRegionsInput {
  mainHeap: Array<{ start: number; end: number }>;
  threadHeaps: Array<{ start: number; end: number }>;
  mmappedChunks: Array<{ address: number; size: number }>;
  source: string;
}
export interface ShmZoneInput {
  name: string;
  address: number;
  size: number;
  module?: string;
  /** The zone's slab pages (nginx/slab.ts), when read. */
  slab?: ShmZoneMem['slab'];
  slabProblem?: string;
}

/** LuaJIT heaps (src/luajit/regions.ts): lj_alloc segments and direct chunks, Σ gc.total inside them. */
export interface LuajitRegionsInput {
  regions: Array<{ start: number; end: number; label: string }>;
  gcTotalBytes: number;
  source: string;
}

export interface BreakdownInputs {
  glibc?: GlibcRegionsInput;
  luajit?: LuajitRegionsInput;
  shmZones?: ShmZoneInput[];
  notes?: string[];
}

const ORDER: MemCategoryName[] = [
  'glibc-main-heap',
  'glibc-thread-arenas',
  'glibc-mmapped-chunks',
  'nginx-shm',
  'luajit',
  'code',
  'file',
  'stack',
  'other-anon',
];
const GLIBC: ReadonlySet<MemCategoryName> = new Set(['glibc-main-heap', 'glibc-thread-arenas', 'glibc-mmapped-chunks']);

interface Claim {
  start: number;
  end: number;
  category: MemCategoryName;
  label: string;
}

export function memoryBreakdown(space: AddressSpace, inputs: BreakdownInputs = {}): MemBreakdown {
  const usage = space.usage();
  const cats = new Map<MemCategoryName, MemCategory>();
  for (const name of ORDER)
    cats.set(name, { name, rssBytes: 0, pssBytes: 0, swapBytes: 0, mappings: 0, top: [], source: '' });
  const notes = [...(inputs.notes ?? [])];

  // Claims: address ranges known to belong to a category, from the models.
  const claims: Claim[] = [];
  const g = inputs.glibc;
  if (g) {
    for (const r of g.mainHeap) claims.push({ ...r, category: 'glibc-main-heap', label: 'main arena heap' });
    for (const r of g.threadHeaps) claims.push({ ...r, category: 'glibc-thread-arenas', label: 'thread arena heap' });
    for (const c of g.mmappedChunks)
      claims.push({
        start: c.address,
        end: c.address + c.size,
        category: 'glibc-mmapped-chunks',
        label: `mmapped chunk 0x${c.address.toString(16)}`,
      });
    for (const n of ['glibc-main-heap', 'glibc-thread-arenas', 'glibc-mmapped-chunks'] as const)
      cats.get(n)!.source = g.source;
  } else {
    notes.push('glibc regions unknown: [heap] counted as glibc-main-heap by its name only');
  }
  for (const z of inputs.shmZones ?? [])
    claims.push({
      start: z.address,
      end: z.address + z.size,
      category: 'nginx-shm',
      label: `shm zone "${z.name}"${z.module ? ` (${z.module})` : ''}`,
    });
  if (inputs.shmZones) cats.get('nginx-shm')!.source = 'cycle->shared_memory';
  if (inputs.luajit) {
    for (const r of inputs.luajit.regions)
      claims.push({ start: r.start, end: r.end, category: 'luajit', label: r.label });
    const lj = cats.get('luajit')!;
    const regionBytes = inputs.luajit.regions.reduce((n, r) => n + (r.end - r.start), 0);
    lj.source = inputs.luajit.source;
    lj.usedBytes = inputs.luajit.gcTotalBytes;
    lj.freeBytes = Math.max(0, regionBytes - inputs.luajit.gcTotalBytes);
  }
  claims.sort((a, b) => a.start - b.start);

  const threads = space.threads();
  const stackSps = threads.map((t) => t.regs?.rsp).filter((x): x is number => typeof x === 'number' && x > 0);
  const luajit = space.modules().some((m) => /luajit/i.test(basename(m.path)));
  const moduleRss = new Map<string, number>();

  const add = (cat: MemCategoryName, region: MemRegion, pss: number) => {
    const c = cats.get(cat)!;
    c.rssBytes += region.rssBytes;
    c.swapBytes += region.swapBytes;
    c.pssBytes += pss;
    c.mappings++;
    c.top.push(region);
    if (c.top.length > 40) {
      c.top.sort((a, b) => b.rssBytes - a.rssBytes);
      c.top.length = 10;
    }
  };

  let totalRss = 0,
    totalPss = 0,
    totalSwap = 0;
  for (const m of usage) {
    const u = m.usage ?? { rss: 0, pss: 0, swap: 0, anonymous: 0, privateDirty: 0 };
    totalRss += u.rss;
    totalPss += u.pss;
    totalSwap += u.swap;
    const pssRatio = u.rss > 0 ? u.pss / u.rss : 1;
    // Parts of this mapping claimed by models.
    let rest = { rss: u.rss, swap: u.swap };
    for (const c of claims) {
      if (c.end <= m.start || c.start >= m.end) continue;
      const a = Math.max(c.start, m.start),
        b = Math.min(c.end, m.end);
      const full = a === m.start && b === m.end;
      const r = full ? rest : space.residentBytes(a, b);
      add(c.category, { start: a, end: b, rssBytes: r.rss, swapBytes: r.swap, label: c.label }, r.rss * pssRatio);
      rest = full ? { rss: 0, swap: 0 } : { rss: Math.max(0, rest.rss - r.rss), swap: Math.max(0, rest.swap - r.swap) };
    }
    if (claims.some((c) => c.start <= m.start && c.end >= m.end)) continue;
    const region: MemRegion = {
      start: m.start,
      end: m.end,
      rssBytes: rest.rss,
      swapBytes: rest.swap,
      label: m.path || '[anon]',
    };
    add(classifyRest(m, stackSps, luajit, !!g), region, rest.rss * pssRatio);
    if (m.path.startsWith('/')) moduleRss.set(m.path, (moduleRss.get(m.path) ?? 0) + rest.rss);
  }
  const categories = ORDER.map((n) => cats.get(n)!);
  for (const c of categories) {
    c.top.sort((a, b) => b.rssBytes - a.rssBytes);
    c.top.length = Math.min(c.top.length, 10);
    c.pssBytes = Math.round(c.pssBytes);
  }
  const glibcRss = categories.filter((c) => GLIBC.has(c.name)).reduce((s, c) => s + c.rssBytes, 0);
  const shmZones = inputs.shmZones?.map(
    (z): ShmZoneMem => ({
      name: z.name,
      address: z.address,
      size: z.size,
      module: z.module ?? null,
      rssBytes: space.residentBytes(z.address, z.address + z.size).rss,
      slab: z.slab ?? null,
      ...(z.slabProblem !== undefined ? { slabProblem: z.slabProblem } : {}),
    }),
  );
  return {
    target: space.description,
    pid: space.pid,
    rssBytes: totalRss,
    pssBytes: totalPss,
    swapBytes: totalSwap,
    categories,
    glibcShare: totalRss ? glibcRss / totalRss : 0,
    modules: [...moduleRss].map(([path, rssBytes]) => ({ path, rssBytes })).sort((a, b) => b.rssBytes - a.rssBytes),
    notes,
    ...(shmZones ? { shmZones } : {}),
  };
}

function classifyRest(m: MappingWithUsage, stackSps: number[], luajit: boolean, haveGlibc: boolean): MemCategoryName {
  if (m.path === '[heap]') return haveGlibc ? 'other-anon' : 'glibc-main-heap';
  if (m.path === '[stack]' || m.path.startsWith('[stack:') || stackSps.some((sp) => sp >= m.start && sp < m.end))
    return 'stack';
  if (isElfPath(m.path)) {
    if (luajit && /luajit/i.test(basename(m.path))) return 'luajit';
    return /\.so(\.|$)|\/s?bin\/|\/nginx/.test(m.path) || m.perms.includes('x') ? 'code' : 'file';
  }
  if (m.path.startsWith('[v')) return 'code'; // [vdso], [vvar], [vsyscall]
  return 'other-anon';
}

