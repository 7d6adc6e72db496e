// Field offsets (bytes, x86-64) of the LuaJIT structures leakscope reads, per LuaJIT build.
// LuaJIT keeps no debug info in distribution builds (Debian's libluajit-5.1.so.2.1.0 is
// stripped), and its layouts change with the fork (OpenResty's luajit2 adds lua_State.exdata),
// the version and GC64, so the table is keyed by the library's GNU build-id, with the
// package version as a fallback. Each entry is the output of
// test/fixtures/luajit-layouts/offsets.c compiled against that package's exact source
// (build.sh: `apt-get source`, Debian's build configuration); src/luajit/layouts.test.ts
// re-derives the entry of the installed library. Whatever the source, a candidate state
// is accepted only after validateState (state.ts) passes on the data.

/** Struct name (as offsets.c prints it) -> field ("gc.total" for nested members) -> byte offset; `sizeof` too. */
export type StructTable = Record<string, Record<string, number>>;

export interface LuajitLayouts {
  /** LUAJIT_VERSION of the source, "LuaJIT 2.1.0-beta3". */
  version: string;
  /** Source package and version the entry was generated from, "luajit2 2.1-20230119-1". */
  source: string;
  gc64: boolean;
  fr2: boolean;
  structs: StructTable;
  /** Where the layouts came from: 'table' (exact build-id), 'table-version' (same package version), 'table-candidate' (validated guess). */
  origin: 'table' | 'table-version' | 'table-candidate';
  /** Human-readable detail of the origin. */
  originDetail: string;
}

interface TableEntry {
  buildIds: readonly string[];
  version: string;
  source: string;
  gc64: boolean;
  fr2: boolean;
  structs: StructTable;
}

/**
 * Known builds. Debian 12 libluajit2-5.1-2 2.1-20230119-1 (OpenResty luajit2 v2.1-20230119, GC64):
 * output of test/fixtures/luajit-layouts/build.sh.
 */
export const LUAJIT_LAYOUT_TABLE: readonly TableEntry[] = [
  {
    buildIds: ['0a6563c55d870716908fd332f88bf7cdd9bc6a71'],
    version: 'LuaJIT 2.1.0-beta3',
    source: 'luajit2 2.1-20230119-1',
    gc64: true,
    fr2: true,
    structs: {
      GChead: { nextgc: 0, marked: 8, gct: 9, sizeof: 40 },
      GCstr: { hash: 16, len: 20, sizeof: 24 },
      GCtab: { nomm: 10, colo: 11, array: 16, metatable: 32, node: 40, asize: 48, hmask: 52, sizeof: 64 },
      Node: { val: 0, key: 8, next: 16, sizeof: 24 },
      lua_State: {
        glref: 16,
        base: 32,
        top: 40,
        stack: 56,
        openupval: 64,
        env: 72,
        cframe: 80,
        stacksize: 88,
        sizeof: 112,
      },
      global_State: {
        allocf: 0,
        allocd: 8,
        'gc.total': 16,
        'gc.threshold': 24,
        'gc.currentwhite': 32,
        'gc.state': 33,
        'gc.lightudnum': 35,
        'gc.root': 40,
        'gc.sweep': 48,
        'gc.mmudata': 80,
        'gc.lightudseg': 112,
        strempty: 120,
        'str.tab': 152,
        'str.mask': 160,
        'str.num': 164,
        vmstate: 184,
        mainthref: 192,
        'tmpbuf.w': 200,
        'tmpbuf.e': 208,
        'tmpbuf.b': 216,
        registrytv: 272,
        uvhead: 280,
        cur_L: 368,
        jit_base: 376,
        ctype_state: 384,
        prng: 392,
        gcroot: 424,
        gcrootCount: 38,
        sizeof: 736,
      },
      GG_State: { L: 0, g: 112, J: 848, sizeof: 6296 },
      jit_State: {
        irtoplim: 336,
        irbotlim: 340,
        sizesnap: 348,
        sizesnapmap: 368,
        trace: 384,
        sizetrace: 396,
        sizeof: 3144,
      },
      GCfuncL: { ffid: 10, nupvalues: 11, env: 16, pc: 32, uvptr: 40, sizeof: 48 },
      GCfuncC: { f: 40, upvalue: 48, sizeof: 56 },
      GCupval: { closed: 10, tv: 16, v: 32, sizeof: 48 },
      GCproto: {
        sizebc: 12,
        k: 32,
        sizekgc: 48,
        sizept: 56,
        chunkname: 64,
        firstline: 72,
        numline: 76,
        lineinfo: 80,
        uvinfo: 88,
        sizeuv: 60,
        sizeof: 104,
      },
      GCudata: { udtype: 10, env: 16, len: 24, metatable: 32, sizeof: 48 },
      GCcdata: { ctypeid: 10, sizeof: 16 },
      GCcdataVar: { offset: 0, extra: 2, len: 4, sizeof: 8 },
      GCtrace: {
        nsnap: 10,
        nins: 12,
        ir: 32,
        nk: 40,
        nsnapmap: 44,
        startpt: 64,
        traceno: 104,
        link: 106,
        nextroot: 110,
        nextside: 112,
        sizeof: 120,
      },
      IRIns: { t: 4, o: 5, IR_KGC: 24, REF_BIAS: 32768, REF_TRUE: 32765, sizeof: 8 },
      CTState: { tab: 0, sizetab: 12, g: 24, finalizer: 32, miscmap: 40, 'cb.sizeid': 248, sizeof: 520 },
      CType: { info: 0, size: 4, sizeof: 24 },
      SBufExt: { w: 0, e: 8, b: 16, L: 24, cowref: 32, dict_str: 48, dict_mt: 56, sizeof: 72 },
      malloc_state: { topsize: 16, top: 32, seg: 840, prng: 864, sizeof: 872 },
      malloc_segment: { base: 0, size: 8, next: 16, sizeof: 24 },
      constants: {
        LJ_GC_FIXED: 32,
        LJ_GC_SFIXED: 64,
        DEFAULT_GRANULARITY: 131072,
        DEFAULT_MMAP_THRESHOLD: 131072,
        CFRAME_OFS_PC: 24,
        CFRAME_OFS_L: 16,
        UDTYPE_BUFFER: 3,
        SBUF_FLAG_COW: 2,
        SBUF_FLAG_BORROW: 4,
        LJ_TSTR: 4,
      },
    },
  },
];

/**
 * The layouts for a library build-id (exact), else for a package source string, else every
 * table entry as a candidate, in table order (the caller validates each against the data).
 */
export function layoutCandidates(buildId: string | undefined, packageSource?: string): LuajitLayouts[] {
  const out: LuajitLayouts[] = [];
  const exact = buildId ? LUAJIT_LAYOUT_TABLE.find((e) => e.buildIds.includes(buildId)) : undefined;
  if (exact) out.push(entryLayouts(exact, 'table', `built-in table entry for build-id ${buildId}`));
  const byVersion = packageSource
    ? LUAJIT_LAYOUT_TABLE.find((e) => e !== exact && e.source === packageSource)
    : undefined;
  if (byVersion) out.push(entryLayouts(byVersion, 'table-version', `built-in table entry for ${packageSource}`));
  for (const e of LUAJIT_LAYOUT_TABLE) {
    if (e === exact || e === byVersion) continue;
    out.push(
      entryLayouts(
        e,
        'table-candidate',
        `built-in entry ${e.source} (build-id ${buildId ?? 'unknown'} not in the table; accepted only because the state validates)`,
      ),
    );
  }
  return out;
}

function entryLayouts(e: TableEntry, origin: LuajitLayouts['origin'], originDetail: string): LuajitLayouts {
  return { version: e.version, source: e.source, gc64: e.gc64, fr2: e.fr2, structs: e.structs, origin, originDetail };
}
