// `npm run bench`: every benchmark in sequence (root), each printing its table, then one
// combined JSON file, bench-results.json in the repository root (not committed).
//   node dist/bench/run.js                      all of them
//   node dist/bench/run.js heap trace-overhead  only those (names below; a prefix is enough)
// A benchmark that throws is reported and the others still run; the exit status is then 1.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../test/helpers/build.js';
import { benchAnalyze } from './analyze.js';
import { benchEbpf } from './ebpf.js';
import { benchHeap } from './heap.js';
import { benchLua } from './lua.js';
import { benchLuaFrames } from './lua-frames.js';
import { benchOwnMemory } from './own-memory.js';
import { benchPools } from './pools.js';
import { benchReach } from './reach.js';
import { benchTraceOverhead } from './trace-overhead.js';
import { benchUnwind } from './unwind.js';
import { benchWatch } from './watch.js';

interface Bench {
  name: string;
  title: string;
  run: () => Promise<object>;
  /** The bench prints its own table; otherwise its result is printed as key/value lines. */
  printsTable: boolean;
}

const BENCHES: Bench[] = [
  {
    name: 'analyze',
    title: 'leakscope analyze on the leak scenario: wall time by phase vs its pause + trace window',
    run: benchAnalyze,
    printsTable: true,
  },
  { name: 'ebpf', title: 'eBPF runtime: ring buffer and cost per probe hit', run: benchEbpf, printsTable: true },
  { name: 'heap', title: 'heap census vs plain /proc/PID/mem read', run: benchHeap, printsTable: false },
  {
    name: 'lua',
    title: 'LuaJIT heap: census and paths vs plain read of the lj_alloc regions (issue 15)',
    run: benchLua,
    printsTable: false,
  },
  {
    name: 'lua-frames',
    title: 'Lua frame walk in malloc-mode probes: cost per probe hit (issue 15)',
    run: benchLuaFrames,
    printsTable: false,
  },
  { name: 'pools', title: 'nginx pool analysis vs heap census', run: benchPools, printsTable: true },
  {
    name: 'own-memory',
    title: "leakscope's own peak RSS: heap, pools, analyze on a ~1 GiB / ~4.5M-chunk nginx worker (issue 18)",
    run: benchOwnMemory,
    printsTable: false,
  },
  { name: 'reach', title: 'census vs census + reachability (issue 16)', run: benchReach, printsTable: false },
  {
    name: 'trace-overhead',
    title: 'trace overhead on a proxying nginx worker (issue 6)',
    run: benchTraceOverhead,
    printsTable: true,
  },
  {
    name: 'unwind',
    title: 'CFI unwinder: cached unwinds of the unwind-capture stacks (from unwinder.test.ts)',
    run: benchUnwind,
    printsTable: true,
  },
  {
    name: 'watch',
    title: 'leakscope watch: CPU and RSS at --interval 60 and 5 on the leak scenario (issue 17)',
    run: benchWatch,
    printsTable: false,
  },
];

export const RESULTS_PATH = join(REPO_ROOT, 'bench-results.json');

function printKeyValues(r: object): void {
  const entries = Object.entries(r);
  const w = Math.max(0, ...entries.map(([k]) => k.length));
  for (const [k, v] of entries) {
    const s = Array.isArray(v)
      ? v.map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x))).join(' / ')
      : typeof v === 'object' && v !== null
        ? JSON.stringify(v)
        : String(v);
    console.log(`${k.padEnd(w)}  ${s}`);
  }
}

export async function runBenches(filters: string[]): Promise<{ results: Record<string, unknown>; failed: string[] }> {
  const unknown = filters.filter((f) => !BENCHES.some((b) => b.name.startsWith(f)));
  if (unknown.length)
    throw new Error(`unknown benchmark ${unknown.join(', ')} (known: ${BENCHES.map((b) => b.name).join(', ')})`);
  const selected = filters.length ? BENCHES.filter((b) => filters.some((f) => b.name.startsWith(f))) : BENCHES;
  const results: Record<string, unknown> = {};
  const failed: string[] = [];
  for (const b of selected) {
    console.log(`\n== ${b.name}: ${b.title}`);
    const t0 = performance.now();
    try {
      const r = await b.run();
      if (!b.printsTable || 'skipped' in r) printKeyValues(r);
      results[b.name] = { ...r, elapsedSeconds: Math.round((performance.now() - t0) / 100) / 10 };
    } catch (e) {
      console.log(`FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      results[b.name] = { failed: e instanceof Error ? e.message : String(e) };
      failed.push(b.name);
    }
    console.log(`(${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  return { results, failed };
}

async function main(): Promise<number> {
  const filters = process.argv.slice(2);
  const { results, failed } = await runBenches(filters);
  writeFileSync(
    RESULTS_PATH,
    JSON.stringify({ date: new Date().toISOString(), node: process.version, results }, null, 2) + '\n',
  );
  console.log(`\nresults: ${RESULTS_PATH}${failed.length ? `; FAILED: ${failed.join(', ')}` : ''}`);
  return failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(2);
  },
);
