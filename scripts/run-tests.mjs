#!/usr/bin/env node
// Runs the compiled tests under dist/ with Node's own test runner, by tier:
//   unit    `*.unit.test.ts`: pure, no root, no network, no apt packages, no fixtures (milliseconds each)
//   system  every other `*.test.ts`: real nginx, glibc fixtures, eBPF, Chromium (root)
// `node scripts/run-tests.mjs [--unit|--system] [FILTER...]` (no tier: both; FILTER matches dist paths).
// Only tests whose TypeScript source still exists run: a renamed or deleted test left behind in
// dist/ is skipped (and `npm run build` starts from an empty dist/ anyway).
// Node 20's `--test` takes no globs, so the file list is made here. System test files run one at
// a time (--test-concurrency=1): many start real nginx / eBPF probes.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

const UNIT = /\.unit\.test\.js$/;

function find(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const args = process.argv.slice(2);
const tier = args.includes('--unit') ? 'unit' : args.includes('--system') ? 'system' : 'all';
const filter = args.filter((a) => !a.startsWith('--'));
if (!existsSync('dist')) {
  console.error('run-tests: no dist/ (run `npm run build` first)');
  process.exit(1);
}
const all = find('dist', []).sort();
const stale = all.filter((f) => !existsSync(f.replace(/^dist[/\\]/, '').replace(/\.js$/, '.ts')));
for (const f of stale) console.error(`run-tests: skipping ${f}: its source is gone (stale build output)`);
let files = all.filter((f) => !stale.includes(f));
if (tier === 'unit') files = files.filter((f) => UNIT.test(f));
if (tier === 'system') files = files.filter((f) => !UNIT.test(f));
if (filter.length) files = files.filter((f) => filter.some((s) => f.includes(s)));
if (!files.length) {
  console.error(`run-tests: no ${tier === 'all' ? '' : `${tier} `}tests match`);
  process.exit(1);
}
const concurrency = tier === 'unit' ? Math.max(1, availableParallelism()) : 1;
const r = spawnSync(
  process.execPath,
  ['--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
process.exit(r.status ?? 1);
