// valgrind's memcheck leak tests (memcheck/tests/leak-*.c from Debian's valgrind source package),
// built by `make -C test/fixtures valgrind-tests` into test/fixtures/build/valgrind/, and
// valgrind's own verdict on them.
//
// pause-at-exit.so (test/fixtures/valgrind/pause-at-exit.c), preloaded, keeps a test program alive
// at exit (after main returned and its atexit handlers ran, in the ELF destructors): it prints one
// JSON line and blocks on stdin, so leakscope reads the heap valgrind's end-of-run leak check sees.
// Under valgrind the same shim is preloaded with stdin at EOF (it returns at once), so both runs
// execute the same code.
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { FIXTURES_BUILD_DIR, FIXTURES_DIR } from './build.js';

export const VALGRIND_TESTS_DIR = join(FIXTURES_BUILD_DIR, 'valgrind');
export const PAUSE_AT_EXIT = join(VALGRIND_TESTS_DIR, 'pause-at-exit.so');

let building: Promise<void> | undefined;
/** `make -s -C test/fixtures valgrind-tests` once per process (fetches the sources the first time). */
export function ensureValgrindTests(): Promise<void> {
  building ??= new Promise<void>((resolve, reject) => {
    const child = spawn('make', ['-s', '-C', FIXTURES_DIR, 'valgrind-tests'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`make valgrind-tests failed (exit ${code}):\n${out}`)),
    );
  });
  return building;
}

export interface LeakSummary {
  definitelyLost: { bytes: number; blocks: number };
  indirectlyLost: { bytes: number; blocks: number };
  possiblyLost: { bytes: number; blocks: number };
  stillReachable: { bytes: number; blocks: number };
}

/** The last "LEAK SUMMARY" of a memcheck log (the end-of-run check). */
export function parseLeakSummary(log: string): LeakSummary {
  const at = log.lastIndexOf('LEAK SUMMARY:');
  if (at < 0) throw new Error(`no LEAK SUMMARY in valgrind's output:\n${log.slice(-2000)}`);
  const text = log.slice(at);
  const get = (label: string) => {
    const m = new RegExp(`${label}: ([\\d,]+) bytes in ([\\d,]+) blocks`).exec(text);
    if (!m) throw new Error(`no "${label}" line in valgrind's LEAK SUMMARY:\n${text.slice(0, 800)}`);
    return { bytes: Number(m[1]!.replace(/,/g, '')), blocks: Number(m[2]!.replace(/,/g, '')) };
  };
  return {
    definitelyLost: get('definitely lost'),
    indirectlyLost: get('indirectly lost'),
    possiblyLost: get('possibly lost'),
    stillReachable: get('still reachable'),
  };
}

/** Runs `valgrind --leak-check=full` on a built test (pause-at-exit preloaded, stdin at EOF); returns its summary. */
export function valgrindLeakSummary(name: string): LeakSummary {
  const r = spawnSync('valgrind', ['--leak-check=full', '--show-leak-kinds=all', join(VALGRIND_TESTS_DIR, name)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LD_PRELOAD: PAUSE_AT_EXIT },
    timeout: 120_000,
  });
  if (r.error) throw r.error;
  return parseLeakSummary(r.stderr);
}
