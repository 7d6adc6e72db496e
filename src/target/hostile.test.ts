// Hostile targets (issue 11): a target in its own mount namespace or chroot, whose paths are
// absolute symlinks to a host file, whose .gnu_debuglink climbs out with `../`, whose debug-file
// paths are FIFOs or /dev/zero. Root-running leakscope must open no host file (a canary file with
// unique content: never in the output, never in strace's list of opened paths), never hang (a
// generous child timeout that must not fire), keep its RSS bounded, and still analyse the target.
// System tests: root, strace, objcopy, chroot, mknod.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { LiveProcess, TargetRoot, resolveInRoot } from './index.js';
import { Symbolizer } from '../symbols/index.js';
import { EXIT_CODES, LeakscopeError } from '../model/errors.js';
import { loadElf } from '../formats/elf/index.js';
import { FIXTURE_BUILD, REPO, spawnReady, type Spawned } from '../../test/helpers/proc.js';

const BIN = join(REPO, 'bin/leakscope');
/** Far above any case's real run time: firing means a hang. */
const HANG_MS = 60_000;
/** leakscope's own RSS bound in these runs (node itself takes ~60-120 MiB; /dev/zero once took 4 GiB). */
const RSS_LIMIT_KIB = 600 * 1024;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  maxRssKiB: number;
  timedOut: boolean;
  opened: string[];
  ms: number;
}

/** Runs ./bin/leakscope under GNU time (max RSS) and, with `trace`, strace (every path opened). */
function run(args: string[], opts: { trace?: boolean; noMapFiles?: boolean } = {}): Run {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-hostile-run-'));
  const log = join(dir, 'strace.log');
  const cmd = [
    '-f',
    'LEAKSCOPE_MAXRSS=%M',
    // Without CAP_SYS_ADMIN and CAP_CHECKPOINT_RESTORE, /proc/PID/map_files cannot be opened.
    ...(opts.noMapFiles ? ['setpriv', '--bounding-set', '-sys_admin,-checkpoint_restore'] : []),
    ...(opts.trace
      ? [
          'strace',
          '-f',
          '-qq',
          '-y',
          '-s',
          '4096',
          '-e',
          'trace=open,openat,openat2,open_tree,name_to_handle_at,readlink,readlinkat,execve',
          '-o',
          log,
        ]
      : []),
    process.execPath,
    BIN,
    ...args,
  ];
  const t0 = Date.now();
  const r = spawnSync('/usr/bin/time', cmd, {
    encoding: 'utf8',
    timeout: HANG_MS,
    killSignal: 'SIGKILL',
    maxBuffer: 64 << 20,
  });
  const ms = Date.now() - t0;
  let stderr = r.stderr ?? '';
  const m = /LEAKSCOPE_MAXRSS=(\d+)\s*$/.exec(stderr);
  if (m) stderr = stderr.slice(0, m.index);
  stderr = stderr
    .split('\n')
    .filter((l) => !/^Command exited with non-zero status/.test(l))
    .join('\n');
  let opened: string[] = [];
  if (opts.trace) {
    try {
      opened = readFileSync(log, 'utf8').split('\n');
    } catch {
      /* none */
    }
  }
  rmSync(dir, { recursive: true, force: true });
  return {
    status: r.status,
    stdout: r.stdout ?? '',
    stderr,
    maxRssKiB: m ? Number(m[1]) : -1,
    timedOut: r.error !== undefined || r.signal === 'SIGKILL',
    opened,
    ms,
  };
}

function assertBounded(r: Run, what: string): void {
  console.log(`figure: ${what}: ${r.ms} ms, max RSS ${r.maxRssKiB} KiB, exit ${r.status}`);
  assert.equal(r.timedOut, false, `${what}: finished (took ${r.ms} ms; a hang is killed after ${HANG_MS} ms)`);
  assert.ok(
    r.maxRssKiB > 0 && r.maxRssKiB < RSS_LIMIT_KIB,
    `${what}: max RSS ${r.maxRssKiB} KiB < ${RSS_LIMIT_KIB} KiB`,
  );
}

function assertOneLine(r: Run, status: number, pattern: RegExp, what: string): void {
  assertBounded(r, what);
  assert.equal(r.status, status, `${what}: exit status (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `${what}: one line: ${r.stderr}`);
  assert.match(lines[0]!, pattern, what);
  assert.doesNotMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
}

/** A canary: a host file with unique content that leakscope must never open. */
function makeCanary(dir: string): { path: string; content: string } {
  const content = `LEAKSCOPE-CANARY-${randomBytes(12).toString('hex')}`;
  const path = join(dir, 'canary-secret');
  writeFileSync(path, `${content}\n`, { mode: 0o600 });
  return { path, content };
}

function assertCanaryUntouched(r: Run, canary: { path: string; content: string }, what: string): void {
  assert.ok(r.opened.length > 10, `${what}: strace logged the run (${r.opened.length} lines)`);
  const hits = r.opened.filter((l) => l.includes('canary-secret'));
  assert.deepEqual(
    hits,
    [],
    `${what}: no path naming the canary was opened, nor a descriptor resolved to it (strace -y)`,
  );
  assert.ok(
    !r.stdout.includes(canary.content) && !r.stderr.includes(canary.content),
    `${what}: canary content never in the output`,
  );
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'leakscope-hostile-'));
  chmodSync(d, 0o755);
  return d;
}

/** The shared libraries of a program, as ldd lists them (absolute paths). */
function sharedLibs(bin: string): string[] {
  const out = spawnSync('ldd', [bin], { encoding: 'utf8' }).stdout;
  return [...out.matchAll(/(\/\S+) \(0x/g)].map((m) => m[1]!);
}

/** A copy of elf-sample whose .gnu_debuglink names `link` (objcopy, raw section: name, NUL, pad to 4, CRC). */
function withDebugLink(dir: string, name: string, link: string): string {
  const out = join(dir, name);
  const nameBytes = Buffer.from(link + '\0');
  const blob = Buffer.concat([nameBytes, Buffer.alloc((4 - (nameBytes.length % 4)) % 4), Buffer.from([1, 2, 3, 4])]);
  writeFileSync(join(dir, `${name}.debuglink`), blob);
  const r = spawnSync(
    'objcopy',
    [
      '--remove-section=.gnu_debuglink',
      `--add-section`,
      `.gnu_debuglink=${join(dir, `${name}.debuglink`)}`,
      join(FIXTURE_BUILD, 'elf-sample'),
      out,
    ],
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.equal(loadElf(out, { cache: false }).debugLink?.file, link, 'the debuglink section as planted');
  return out;
}

test('own mount namespace: the library path (target view) is an absolute symlink to a host file: not followed; the mapped file is read', async () => {
  const dir = tempDir();
  const canary = makeCanary(dir);
  const lib = join(dir, 'lib');
  mkdirSync(lib);
  const libPath = join(lib, 'libhostile.so');
  copyFileSync(join(FIXTURE_BUILD, 'elf-sample'), libPath);
  // Map the real file, then (in the target's own mount namespace) cover lib/ with a tmpfs holding
  // libhostile.so -> the canary: /proc/PID/root/<path> now leads to the host's canary.
  const fx = await spawnReady(join(FIXTURE_BUILD, 'hostile-target'), [
    '--map',
    libPath,
    '--tmpfs',
    lib,
    '--link',
    `${libPath}=${canary.path}`,
  ]);
  try {
    const r = run(['mem', String(fx.pid)], { trace: true });
    assertBounded(r, 'mem');
    assert.equal(r.status, 0, r.stderr);
    assertCanaryUntouched(r, canary, 'mem');
    // The module is the inode mapped (map_files), with its symbols.
    const space = LiveProcess.open(fx.pid);
    try {
      const mod = space.modules().find((m) => m.path === libPath);
      assert.ok(mod, 'the mapped library is a module');
      assert.match(mod.hostPath, /^\/proc\/\d+\/map_files\/[0-9a-f]+-[0-9a-f]+$/);
      assert.ok(new Symbolizer([mod]).lookup('elf_sample_function'), 'its symbols come from the mapped file');
    } finally {
      space.close();
    }
    // Without map_files: the path, resolved inside the target's root, leads to a file (the target
    // sees the canary) that is not the inode mapped (maps' dev:inode): refused after an O_PATH open
    // (which opens nothing) and fstat, never read.
    const r2 = run(['mem', String(fx.pid)], { trace: true, noMapFiles: true });
    assertBounded(r2, 'mem without map_files');
    assert.equal(r2.status, 0, r2.stderr);
    const hits = r2.opened.filter((l) => l.includes('canary-secret'));
    assert.deepEqual(
      hits.filter((l) => !/O_PATH/.test(l)),
      [],
      'the canary is never opened for reading',
    );
    assert.ok(!r2.stdout.includes(canary.content));
    const fallback = LiveProcess.open(fx.pid, { mapFiles: false });
    try {
      assert.ok(!fallback.modules().some((m) => m.path === libPath), 'not the mapped inode: no module');
      assert.ok(
        fallback.modules().some((m) => m.path.endsWith('/libc.so.6') && /^\/proc\/self\/fd\/\d+$/.test(m.hostPath)),
        'libc is',
      );
    } finally {
      fallback.close();
    }
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('chroot: a chrooted target is analysed like any other; planted symlinks, FIFO and /dev/zero debug files are not followed', async () => {
  const dir = tempDir();
  const canary = makeCanary(dir);
  const root = join(dir, 'root');
  mkdirSync(root);
  const exe = join(FIXTURE_BUILD, 'hostile-target');
  copyFileSync(exe, join(root, 'hostile-target'));
  const libs = sharedLibs(exe);
  for (const l of libs) {
    mkdirSync(join(root, dirname(l)), { recursive: true });
    copyFileSync(l, join(root, l));
  }
  const libcInRoot = libs.find((l) => l.includes('libc.so'))!;
  // Debug-file paths the target controls inside its root: libc's build-id file is a FIFO, the
  // executable's an absolute symlink to /dev/zero, and the root's /dev/zero a real device node.
  const idPath = (p: string) => {
    const id = loadElf(p, { cache: false }).buildId!;
    return join(root, 'usr/lib/debug/.build-id', id.slice(0, 2), `${id.slice(2)}.debug`);
  };
  const libcDebug = idPath(libcInRoot),
    exeDebug = idPath(exe);
  mkdirSync(dirname(libcDebug), { recursive: true });
  mkdirSync(dirname(exeDebug), { recursive: true });
  assert.equal(spawnSync('mkfifo', [libcDebug]).status, 0);
  spawnSync('ln', ['-sf', '/dev/zero', exeDebug]);
  mkdirSync(join(root, 'dev'));
  assert.equal(spawnSync('mknod', [join(root, 'dev/zero'), 'c', '1', '5']).status, 0);
  // /proc/PID/maps shows the libc as leakscope's root sees it (<root>/lib/...); inside the chroot,
  // that very path is an absolute symlink to the canary's host path.
  const hostLibc = join(root, libcInRoot);
  const fx = await spawnReady('/usr/sbin/chroot', [
    root,
    '/hostile-target',
    '--allocs',
    '300',
    '--link',
    `${hostLibc}=${canary.path}`,
  ]);
  try {
    const r = run(['heap', String(fx.pid), '--json'], { trace: true });
    assertBounded(r, 'heap');
    assert.equal(r.status, 0, r.stderr);
    assertCanaryUntouched(r, canary, 'heap');
    // Ground truth: the fixture's 300 x malloc(1000) are 1008-byte chunks, in use.
    const doc = JSON.parse(r.stdout) as { histogram: Array<{ minBytes: number; inUseChunks: number }> };
    const bucket = doc.histogram.find((b) => b.minBytes === 512);
    assert.ok(
      bucket && bucket.inUseChunks >= 300,
      `[512, 1024) holds the 300 in-use chunks: ${JSON.stringify(bucket)}`,
    );
    // Same without map_files (no CAP_SYS_ADMIN): objects opened inside the chroot, by the maps path
    // less the chroot prefix; the link planted at the unstripped path is never used.
    const r2 = run(['heap', String(fx.pid), '--json'], { trace: true, noMapFiles: true });
    assertBounded(r2, 'heap without map_files');
    assert.equal(r2.status, 0, r2.stderr);
    assertCanaryUntouched(r2, canary, 'heap without map_files');
    assert.ok(
      r2.opened.some((l) => l.includes('map_files') && /EPERM/.test(l)),
      'map_files was refused in that run',
    );
    const bucket2 = (JSON.parse(r2.stdout) as typeof doc).histogram.find((b) => b.minBytes === 512);
    assert.ok(bucket2 && bucket2.inUseChunks >= 300, `without map_files too: ${JSON.stringify(bucket2)}`);

    // Without map_files, objects are opened inside the target's root: the planted symlink resolves
    // there (to nothing), never to the host's canary; same through the component-walk fallback.
    const space = LiveProcess.open(fx.pid, { mapFiles: false });
    try {
      const libcMod = space.modules().find((m) => m.path === hostLibc);
      assert.ok(
        libcMod && /^\/proc\/self\/fd\/\d+$/.test(libcMod.hostPath),
        `libc found inside the chroot and pinned: ${libcMod?.hostPath}`,
      );
      assert.throws(
        () => space.openTargetFile(hostLibc, 'object'),
        (e: unknown) => e instanceof LeakscopeError && e.code === 'not-found',
      );
      assert.throws(
        () => space.openTargetFile('/dev/zero', 'debug-file'),
        (e: unknown) => e instanceof LeakscopeError && e.code === 'malformed' && /character device/.test(e.message),
      );
      assert.throws(
        () =>
          space.openTargetFile(
            libcInRoot.replace(/libc\.so.*/, '../../../../../../proc/self/root' + canary.path),
            'object',
          ),
        (e: unknown) => e instanceof LeakscopeError,
      );
      assert.ok(space.openTargetFile('/hostile-target', 'object').size > 0, 'a file inside the root opens');
    } finally {
      space.close();
    }
    const fallback = new TargetRoot(`/proc/${fx.pid}/root`, `pid ${fx.pid}`);
    fallback.forceFallback = true;
    try {
      assert.equal(
        resolveInRoot(`/proc/${fx.pid}/root`, hostLibc),
        undefined,
        'the planted link leads nowhere inside the root',
      );
      assert.throws(
        () => fallback.openTargetFile(hostLibc, 'object'),
        (e: unknown) => e instanceof LeakscopeError && e.code === 'not-found',
      );
      assert.throws(
        () => fallback.openTargetFile(exeDebug.slice(root.length), 'debug-file'),
        (e: unknown) => e instanceof LeakscopeError && e.code === 'malformed',
      );
      assert.throws(
        () => fallback.openTargetFile(libcDebug.slice(root.length), 'debug-file'),
        (e: unknown) => e instanceof LeakscopeError && /FIFO/.test(e.message),
      );
      assert.ok(fallback.openTargetFile('/../../hostile-target', 'object').size > 0, '`..` stays at the root');
    } finally {
      fallback.close();
    }
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('.gnu_debuglink climbing out with ../ is not followed', async () => {
  const dir = tempDir();
  const canary = makeCanary(dir);
  const obj = withDebugLink(dir, 'libclimb.so', `${'../'.repeat(12)}${canary.path.slice(1)}`);
  const fx = await spawnReady(join(FIXTURE_BUILD, 'hostile-target'), ['--map', obj]);
  try {
    const r = run(['mem', String(fx.pid)], { trace: true });
    assertBounded(r, 'mem');
    assert.equal(r.status, 0, r.stderr);
    assertCanaryUntouched(r, canary, 'mem');
    const space = LiveProcess.open(fx.pid);
    try {
      const mod = space.modules().find((m) => m.path === obj)!;
      assert.equal(
        new Symbolizer([mod]).symbolsOf(mod)?.debug,
        undefined,
        'no debug file for a debuglink with a path in it',
      );
    } finally {
      space.close();
    }
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a debuglink or mapped path leading to a FIFO or /dev/zero: no hang, bounded RSS', async () => {
  const dir = tempDir();
  // The object's debuglink is a plain name; next to the object, that name is a FIFO; in .debug/, a link to /dev/zero.
  const obj = withDebugLink(dir, 'libfifo.so', 'libfifo.debug');
  assert.equal(spawnSync('mkfifo', [join(dir, 'libfifo.debug')]).status, 0);
  mkdirSync(join(dir, '.debug'));
  spawnSync('ln', ['-s', '/dev/zero', join(dir, '.debug', 'libfifo.debug')]);
  const fx: Spawned = await spawnReady(join(FIXTURE_BUILD, 'hostile-target'), ['--map', obj]);
  try {
    const r = run(['mem', String(fx.pid)]);
    assertBounded(r, 'mem');
    assert.equal(r.status, 0, r.stderr);
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('zombie: "process PID has exited" (exit 3), not a kernel thread', async () => {
  // perl forks a child that exits at once and never reaps it (no SIGCHLD handler, no wait). (A shell's
  // `sleep 0 & ... exec sleep` raced: the shell could reap the child before its exec.)
  const fx = await spawnReady('/usr/bin/perl', [
    '-e',
    '$| = 1; my $p = fork(); exit 0 if $p == 0; print qq({"zombie":$p}\\n); sleep 30;',
  ]);
  const zombie = Number(fx.line.zombie);
  try {
    for (let i = 0; i < 100 && !/^State:\s+Z/m.test(readFileSync(`/proc/${zombie}/status`, 'utf8')); i++)
      await new Promise((r) => setTimeout(r, 20));
    const r = run(['mem', String(zombie)]);
    assertOneLine(r, EXIT_CODES['no-such-process'], new RegExp(`process ${zombie} has exited`), 'zombie');
  } finally {
    fx.child.kill('SIGKILL');
  }
});
