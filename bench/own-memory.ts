// leakscope's own memory (issue 18): peak RSS of the real CLI (`/usr/bin/time -f %M`) running
// `heap`, `pools` and `analyze` on an nginx worker with a ~1 GiB heap of ~4.5M chunks.
// `node dist/bench/own-memory.js [CHUNKS]` (root, after `make -C test/fixtures`).
//
// Target: Debian nginx (1 worker, the leaking test module) started with the heap-fill shim
// (test/fixtures/preload/heap-fill.c: LD_PRELOAD, LEAKSCOPE_HEAP_FILL=CHUNKS mallocs of 24..504
// bytes in a chain before main; the worker inherits them), then LEAKS /leak-keep and LEAKS
// /leak-drop requests (pools that leak: the pool analysis has real work). Each command runs
// ROUNDS times, interleaved (heap, pools, analyze, heap, ...); reported: every max RSS and the
// median per command. `analyze` runs with `--duration 0` (no trace window: the trace's own memory
// is the tracer's business) and its default 2 s pause and reachability.
// Goal: <= 150 MiB each on ~4.5M chunks, and sub-linear in chunks beyond that (SCALE: the same at
// a second, larger heap when LEAKSCOPE_BENCH_SCALE is set, e.g. 9000000; a comma list: several).
// LEAKSCOPE_BENCH_COMMANDS=heap,pools: only those commands. LEAKSCOPE_BENCH_BASELINE=DIR/bin/leakscope:
// another build run interleaved with this one on the same worker (`<command>@baseline`), and its
// `pools --json` totals and groups compared with this build's (`poolsJsonSame`).
import { execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FIXTURES_BUILD_DIR, ensureFixturesBuilt, REPO_ROOT } from '../test/helpers/build.js';
import { driveRequests, startNginx } from '../test/helpers/nginx.js';

const ROUNDS = 3;
const LEAKS = 300;
const ONLY = process.env.LEAKSCOPE_BENCH_COMMANDS?.split(',');
const COMMANDS: { name: string; args: string[] }[] = [
  { name: 'heap', args: ['heap', '--json'] },
  { name: 'pools', args: ['pools', '--json'] },
  { name: 'analyze', args: ['analyze', '--json', '--duration', '0'] },
].filter((c) => !ONLY || ONLY.includes(c.name));
const CLI = join(REPO_ROOT, 'bin', 'leakscope');
const BASELINE = process.env.LEAKSCOPE_BENCH_BASELINE;
const CLIS: { suffix: string; cli: string }[] = [
  { suffix: '', cli: CLI },
  ...(BASELINE ? [{ suffix: '@baseline', cli: BASELINE }] : []),
];
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Max RSS (MiB) and wall time (s) of one `leakscope ARGS PID` run, output discarded. */
function measure(cli: string, args: string[], pid: number): { maxRssMiB: number; seconds: number; status: number } {
  const t = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', '%M', process.execPath, cli, args[0]!, String(pid), ...args.slice(1)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  const seconds = (performance.now() - t) / 1000;
  const lines = (r.stderr ?? '').trim().split('\n');
  const kb = Number(lines[lines.length - 1]);
  if (!Number.isFinite(kb)) throw new Error(`leakscope ${args.join(' ')}: no max RSS (${r.stderr})`);
  return { maxRssMiB: Math.round(kb / 1024), seconds: Math.round(seconds * 10) / 10, status: r.status ?? -1 };
}

async function scenario(chunks: number, rounds: number): Promise<Record<string, unknown>> {
  const h = await startNginx({
    workers: 1,
    leakSize: '4k',
    workerConnections: 1024,
    timeoutMs: 180_000,
    env: { LD_PRELOAD: join(FIXTURES_BUILD_DIR, 'heap-fill.so'), LEAKSCOPE_HEAP_FILL: String(chunks) },
  });
  try {
    await driveRequests(h, '/leak-keep', LEAKS, 8);
    await driveRequests(h, '/leak-drop', LEAKS, 8);
    const [pid] = h.workerPids();
    const census = JSON.parse(
      execFileSync(process.execPath, [join(REPO_ROOT, 'bin', 'leakscope'), 'heap', String(pid!), '--json'], {
        maxBuffer: 1 << 26,
        encoding: 'utf8',
      }),
    );
    const t = census.totals ?? census.census?.totals;
    const out: Record<string, unknown> = {
      fillChunks: chunks,
      inUseChunks: t ? t.inUseChunks + t.mmappedChunks : null,
      heapMiB: t ? Math.round(t.systemBytes / 2 ** 20) : null,
    };
    if (BASELINE) {
      // Same results: the pools' totals and groups of both builds on this worker.
      const pools = (cli: string) => {
        const j = JSON.parse(
          execFileSync(process.execPath, [cli, 'pools', String(pid!), '--json'], {
            maxBuffer: 1 << 28,
            encoding: 'utf8',
          }),
        );
        return JSON.stringify({ totals: j.totals, groups: j.groups });
      };
      out.poolsJsonSame = pools(CLI) === pools(BASELINE);
    }
    const rss: Record<string, number[]> = {},
      secs: Record<string, number[]> = {};
    for (let i = 0; i < rounds; i++) {
      for (const c of COMMANDS) {
        for (const { suffix, cli } of CLIS) {
          const name = c.name + suffix;
          const m = measure(cli, c.args, pid!);
          if (m.status !== 0 && !(c.name === 'analyze' && m.status === 1))
            throw new Error(`leakscope ${c.args.join(' ')} ${pid} (${cli}): exit ${m.status}`);
          (rss[name] ??= []).push(m.maxRssMiB);
          (secs[name] ??= []).push(m.seconds);
        }
      }
    }
    for (const c of COMMANDS)
      for (const { suffix } of CLIS) {
        const name = c.name + suffix;
        out[`${name}MaxRssMiB`] = rss[name];
        out[`${name}MedianMaxRssMiB`] = median(rss[name]!);
        out[`${name}Seconds`] = secs[name];
      }
    return out;
  } finally {
    await h.stop();
  }
}

export async function benchOwnMemory(opts: { chunks?: number; rounds?: number } = {}): Promise<object> {
  await ensureFixturesBuilt();
  const rounds = opts.rounds ?? ROUNDS;
  const base = await scenario(opts.chunks ?? 4_500_000, rounds);
  const scales = (process.env.LEAKSCOPE_BENCH_SCALE ?? '')
    .split(',')
    .map(Number)
    .filter((n) => n > 0);
  const result: Record<string, unknown> = { ...base, goalMiB: 150 };
  if (scales.length === 1) result.scaled = await scenario(scales[0]!, rounds);
  for (let i = 0; scales.length > 1 && i < scales.length; i++)
    result[`scaled${i + 1}`] = await scenario(scales[i]!, rounds);
  return result;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const n = process.argv[2] ? Number(process.argv[2]) : undefined;
  const r = (await benchOwnMemory({ chunks: n })) as Record<string, unknown>;
  console.log("leakscope's own peak RSS (/usr/bin/time -f %M) on a filled nginx worker");
  const w = Math.max(...Object.keys(r).map((k) => k.length));
  for (const [k, v] of Object.entries(r))
    console.log(
      `${k.padEnd(w)}  ${Array.isArray(v) ? v.join(' / ') : typeof v === 'object' ? JSON.stringify(v) : String(v)}`,
    );
}
