#!/usr/bin/env node
// `npm run build`: an empty dist/, then the TypeScript build, then the report's assets.
//   1. dist/ is removed, so nothing stale (a renamed test, a deleted module) survives a build;
//   2. tsc -p tsconfig.json (emits even when some file has type errors; its status is ours);
//   3. src/report/assets/* are copied to dist/src/report/assets/, where html-report.js reads
//      them (and `npm pack` ships them with dist/src).
import { cpSync, existsSync, rmSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
rmSync('dist', { recursive: true, force: true });
const tsc = require.resolve('typescript/bin/tsc');
const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { stdio: 'inherit' });
if (existsSync('src/report/assets')) cpSync('src/report/assets', 'dist/src/report/assets', { recursive: true });
process.exit(r.status ?? 1);
