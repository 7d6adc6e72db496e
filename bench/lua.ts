// Lua heap benchmark: `node dist/bench/run.js lua` (root, after `make -C test/fixtures`).
// The luajit-harness fixture builds a LuaJIT heap of ~3M objects / ~350 MiB (STRINGS unique
// strings of SIZE bytes in package.loaded.harness.store: 128 B each in the heap, plus the
// 8-byte array slots and the VM's own objects). Side by side in the same run, median of RUNS:
//   read:           locate the VMs, find the lj_alloc regions, copy them (HeapImage.copy): the floor;
//   census:         luaHeaps without paths (locate + regions + copy + census by type);
//   census + paths: luaHeaps with reachability, table sizes and the 20 largest tables' paths;
//   leakscope RSS:  max RSS of `leakscope lua PID --json=FILE` in its own process (/usr/bin/time -f %M).
// Goals (issue 15): census <= 3x read, census + paths <= 8x read, RSS <= 1.5x the Lua heap (gc.total).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LiveProcess } from '../src/target/index.js';
import { Symbolizer } from '../src/symbols/index.js';
import { findDirectChunks, HeapImage, locateVms, luaHeaps, readSegments } from '../src/luajit/index.js';
import { ensureFixturesBuilt, REPO_ROOT } from '../test/helpers/build.js';
import { startFixture } from '../test/helpers/fixture.js';

const RUNS = 3;

interface HarnessTruth {
  pid: number;
  a: { L: number; count: number; payload: number; strings: number };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}
const r2 = (x: number) => Math.round(x * 100) / 100;

export async function benchLua(opts: { strings?: number; size?: number } = {}): Promise<object> {
  await ensureFixturesBuilt();
  const strings = opts.strings ?? 2_700_000,
    size = opts.size ?? 100;
  const fx = await startFixture<HarnessTruth>('luajit-harness', [String(strings), String(size)], {
    timeoutMs: 300_000,
  });
  try {
    const space = LiveProcess.open(fx.pid);
    const symbolizer = new Symbolizer(space.modules());
    const read: number[] = [],
      census: number[] = [],
      paths: number[] = [];
    let objects = 0,
      bytes = 0,
      exact = true,
      top = '';
    for (let i = 0; i < RUNS; i++) {
      let t = performance.now();
      const loc = locateVms(space, symbolizer);
      const segs = loc.vms.flatMap((vm) =>
        readSegments(space, vm.layouts, space.readU64(vm.globalState + vm.layouts.structs.global_State!.allocd!), []),
      );
      const direct = findDirectChunks(space, segs);
      const img = HeapImage.copy(space, [
        ...segs.map((s) => ({ ...s, kind: 'segment' as const })),
        ...direct.map((d) => ({ start: d.start, end: d.end, kind: 'direct' as const })),
      ]);
      bytes = img.bytes;
      read.push(performance.now() - t);
      img.dispose();
      t = performance.now();
      const c = luaHeaps(space, { symbolizer, paths: false });
      census.push(performance.now() - t);
      t = performance.now();
      const p = luaHeaps(space, { symbolizer, tables: 20 });
      paths.push(performance.now() - t);
      const vm = p.vms.find((v) => v.mainThread === fx.truth.a.L)!;
      objects = vm.types.reduce((a, x) => a + x.count, 0);
      exact &&= vm.objectBytes + vm.nonObjectBytes === fx.truth.a.count && c.vms.every((v) => v.delta === 0);
      top = vm.tables[0]?.path ?? '';
    }
    space.close();
    // A new file (leakscope refuses to replace anything but a regular file it may overwrite).
    const dir = mkdtempSync(join(tmpdir(), 'leakscope-bench-lua-'));
    const rssJson = join(dir, 'lua.json');
    const time = spawnSync(
      '/usr/bin/time',
      ['-f', '%M', process.execPath, join(REPO_ROOT, 'bin', 'leakscope'), 'lua', String(fx.pid), `--json=${rssJson}`],
      { encoding: 'utf8' },
    );
    rmSync(dir, { recursive: true, force: true });
    if (time.status !== 0) throw new Error(`leakscope lua failed (${time.status}): ${time.stderr.trim()}`);
    const rssKb = Number(time.stderr.trim().split('\n').pop());
    const readMs = median(read),
      censusMs = median(census),
      pathsMs = median(paths);
    const gcTotal = fx.truth.a.count;
    const out = {
      luaHeapBytes: gcTotal,
      regionBytes: bytes,
      objects,
      exact,
      topTable: top,
      readSeconds: r2(readMs / 1000),
      censusSeconds: r2(censusMs / 1000),
      censusPathsSeconds: r2(pathsMs / 1000),
      censusOverRead: r2(censusMs / readMs),
      censusPathsOverRead: r2(pathsMs / readMs),
      leakscopeMaxRssBytes: rssKb * 1024,
      rssOverLuaHeap: r2((rssKb * 1024) / gcTotal),
      goals: 'census <= 3x read; census + paths <= 8x read; RSS <= 1.5x Lua heap',
      runs: { readMs: read.map(Math.round), censusMs: census.map(Math.round), censusPathsMs: paths.map(Math.round) },
    };
    return out;
  } finally {
    await fx.stop();
  }
}
