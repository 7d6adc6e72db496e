// Locating and building the test fixtures (test/fixtures, built into test/fixtures/build).
//
// Paths: resolved from this file's location, never from process.cwd(). The compiled file
// is dist/test/helpers/build.js, so the repository root is three levels up
// (`new URL('../../../', import.meta.url)`). Set LEAKSCOPE_REPO to override.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Absolute path of the repository root. */
export const REPO_ROOT: string = process.env.LEAKSCOPE_REPO ?? fileURLToPath(new URL('../../../', import.meta.url));
/** test/fixtures */
export const FIXTURES_DIR: string = join(REPO_ROOT, 'test', 'fixtures');
/** test/fixtures/build: every built fixture lives here. */
export const FIXTURES_BUILD_DIR: string = join(FIXTURES_DIR, 'build');
/** The leaking nginx module (built by `make -C test/fixtures`). */
export const LEAK_MODULE_PATH: string = join(FIXTURES_BUILD_DIR, 'ngx_http_leak_module.so');

/** Path of the built C fixture NAME (test/fixtures/c/NAME.c). */
export function fixturePath(name: string): string {
  return join(FIXTURES_BUILD_DIR, name);
}

let building: Promise<void> | undefined;

/**
 * Runs `make -s -C test/fixtures` once per process (later calls share the first
 * result). Rejects with make's output when the build fails. Make is incremental, so
 * this costs ~10 ms when `npm test` has already built everything.
 */
export function ensureFixturesBuilt(): Promise<void> {
  building ??= new Promise<void>((resolve, reject) => {
    const child = spawn('make', ['-s', '-C', FIXTURES_DIR], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`make -C ${FIXTURES_DIR} failed (exit ${code}):\n${out}`));
    });
  });
  return building;
}

/** True when the fixture binary exists (does not build it). */
export function fixtureExists(name: string): boolean {
  return existsSync(fixturePath(name));
}
