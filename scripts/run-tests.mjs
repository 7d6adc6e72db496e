#!/usr/bin/env node
// Runs every compiled *.test.js under dist/ with Node's own test runner.
// Node 20's `--test` takes no globs, so the file list is made here.
// Test files run one at a time (--test-concurrency=1): many start real nginx / eBPF probes.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

function find(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) find(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}
const filter = process.argv.slice(2);
let files = find('dist', []).sort();
if (filter.length) files = files.filter((f) => filter.some((s) => f.includes(s)));
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
