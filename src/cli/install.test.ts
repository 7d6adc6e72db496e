// The run-time install: `npm pack`, then `npm install -g --prefix DIR` of the tarball with no
// compiler on PATH (only node, npm and sh), then `heap` and `leaks` from a directory outside the
// repository on a live malloc-leaker, checked against the fixture's own counts. The tarball holds
// the runtime only (no tests, test support, fixtures or source maps); `demo` from the installed
// package either works or exits 11 saying what it needs.
// System test: needs the npm registry (or npm's cache, --prefer-offline), root for tracing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_CODES } from '../model/errors.js';
import { REPO } from '../../test/helpers/proc.js';
import { startFixture } from '../../test/helpers/fixture.js';
import type { FixtureHandle, MallocLeakerReport } from '../../test/helpers/fixture.js';
import { killQuietly, onExit } from '../../test/helpers/cleanup.js';

/** Entries of the tarball that are test material, not runtime. */
const TEST_MATERIAL =
  /(\.test\.js$|\/test-[^/]*\.js$|test-support|\.map$|^package\/test\/|^package\/src\/|\/fixtures\/)/;

interface JsonStack {
  frames: { function?: string }[];
  bytes: number;
  count: number;
}

test('npm pack + npm install -g of the tarball with no compiler on PATH; heap and leaks from outside the repo; no test files shipped', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'leakscope-install-'));
  let fx: FixtureHandle<MallocLeakerReport> | undefined;
  try {
    // pack
    const pack = spawnSync('npm', ['pack', '--pack-destination', tmp, '--json', '--loglevel=error'], {
      cwd: REPO,
      encoding: 'utf8',
    });
    assert.equal(pack.status, 0, pack.stderr);
    const tarball = join(tmp, JSON.parse(pack.stdout)[0].filename as string);
    const entries = spawnSync('tar', ['tzf', tarball], { encoding: 'utf8' }).stdout.trim().split('\n');
    assert.deepEqual(
      entries.filter((e) => TEST_MATERIAL.test(e)),
      [],
      'no test files, test support, fixtures or source maps in the tarball',
    );
    for (const e of [
      'package/bin/leakscope',
      'package/dist/src/cli/main.js',
      'package/demo/nginx-leak-module/ngx_http_leak_module.c',
      'package/demo/build-module.sh',
      'package/package.json',
    ]) {
      assert.ok(entries.includes(e), `${e} is in the tarball`);
    }

    // PATH: node, npm and sh only; no compiler.
    const tools = join(tmp, 'tools');
    mkdirSync(tools);
    symlinkSync(process.execPath, join(tools, 'node'));
    const npmCli = realpathSync(spawnSync('sh', ['-c', 'command -v npm'], { encoding: 'utf8' }).stdout.trim());
    symlinkSync(npmCli, join(tools, 'npm'));
    symlinkSync('/bin/sh', join(tools, 'sh'));
    const env = { ...process.env, PATH: tools };
    for (const cc of ['gcc', 'cc', 'make', 'clang'])
      assert.notEqual(spawnSync('sh', ['-c', `command -v ${cc}`], { env }).status, 0, `${cc} is not on PATH`);

    // install into a fresh prefix
    const prefix = join(tmp, 'prefix');
    const inst = spawnSync(
      'npm',
      ['install', '-g', '--prefix', prefix, tarball, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'],
      { cwd: tmp, env, encoding: 'utf8', timeout: 300_000 },
    );
    assert.equal(inst.status, 0, `npm install: ${inst.stderr}`);
    const bin = join(prefix, 'bin/leakscope');
    assert.ok(existsSync(bin), "leakscope is on the prefix's PATH");
    assert.match(readlinkSync(bin), /node_modules\/leakscope\/bin\/leakscope$/);
    const installed = join(prefix, 'lib/node_modules/leakscope');
    assert.equal(existsSync(join(installed, 'test')), false);

    // run it from a directory outside the repository
    const work = join(tmp, 'work');
    mkdirSync(work);
    const run = (args: string[]) => {
      const r = spawnSync(bin, args, { cwd: work, env, encoding: 'utf8', maxBuffer: 64 << 20 });
      return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    };
    const version = run(['--version']);
    assert.equal(version.stdout.trim(), JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version);

    const leaker = await startFixture('malloc-leaker');
    fx = leaker;
    const first = await leaker.command<MallocLeakerReport>('go 200', 60_000);

    // heap: the fixture's leaked chunks are in use in their size buckets (chunk = request + 16, 16-aligned).
    const heap = run(['heap', String(leaker.pid), '--json']);
    assert.equal(heap.status, 0, heap.stderr);
    const histogram = JSON.parse(heap.stdout).histogram as {
      minBytes: number;
      maxBytes: number;
      inUseChunks: number;
    }[];
    for (const p of first.paths) {
      const chunk = p.size + 16;
      const bucket = histogram.find((b) => chunk >= b.minBytes && chunk < b.maxBytes);
      assert.ok(bucket, `a bucket for ${chunk}-byte chunks`);
      assert.ok(
        bucket.inUseChunks >= p.leakedCount,
        `${p.name}: ${bucket.inUseChunks} in-use chunks in [${bucket.minBytes}, ${bucket.maxBytes}) >= ${p.leakedCount} leaked`,
      );
    }

    // leaks: every allocation (--sample-bytes 0) of one batch run inside the trace window, which
    // SIGINT ends once the batch is done (a fixed window can end before the batch on a loaded host).
    const leaks = spawn(
      bin,
      ['leaks', String(leaker.pid), '--mode', 'malloc', '--sample-bytes', '0', '--duration', '300', '--json'],
      { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    onExit(() => killQuietly(leaks.pid!, 'SIGKILL'));
    let out = '',
      err = '';
    leaks.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    leaks.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const done = new Promise<number>((r) => leaks.once('exit', (code) => r(code ?? -1)));
    await probesAttached(leaks.pid!);
    const before = await leaker.command<MallocLeakerReport>('free', 60_000);
    assert.equal(before.totalLeakedBytes, 0);
    const batch = await leaker.command<MallocLeakerReport>('go 300 1000', 120_000);
    leaks.kill('SIGINT');
    assert.equal(await done, 0, err);
    const got = new Map<string, { bytes: number; count: number }>();
    for (const s of JSON.parse(out).stacks as JsonStack[]) {
      const path = s.frames.map((f) => f.function ?? '').find((n) => /^leak_path_[a-d]$/.test(n)) ?? 'other';
      const e = got.get(path) ?? { bytes: 0, count: 0 };
      got.set(path, { bytes: e.bytes + s.bytes, count: e.count + s.count });
    }
    for (const p of batch.paths)
      assert.deepEqual(got.get(p.name), { bytes: p.leakedBytes, count: p.leakedCount }, p.name);

    // demo from the installed package: no compiler on PATH, so it refuses, naming what it needs.
    const demo = run(['demo', '--html', join(work, 'demo.html')]);
    assert.equal(demo.status, EXIT_CODES['not-supported'], demo.stderr);
    assert.equal(demo.stderr.trim().split('\n').length, 1, demo.stderr);
    assert.match(demo.stderr, /^leakscope: demo needs nginx, nginx-dev, gcc, make.*missing: .*gcc/);
    assert.deepEqual(
      readdirSync(work).filter((n) => n !== 'demo.html'),
      [],
      'nothing written in the working directory',
    );
    assert.equal(existsSync(join(work, 'demo.html')), false);
  } finally {
    await fx?.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
});

/** Waits until PID holds perf_event or bpf_link descriptors (its uprobes; uprobe_multi / session
 *  probes are links without a perf event) and their number stopped changing for 1 s. */
async function probesAttached(pid: number): Promise<void> {
  const count = () => {
    try {
      return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
        try {
          return /^anon_inode:(\[perf_event\]|bpf_link)$/.test(readlinkSync(`/proc/${pid}/fd/${fd}`));
        } catch {
          return false;
        }
      }).length;
    } catch {
      return -1;
    }
  };
  const deadline = Date.now() + 60_000;
  let last = 0,
    since = Date.now();
  while (Date.now() < deadline) {
    const n = count();
    if (n < 0) throw new Error(`leakscope ${pid} exited before attaching`);
    if (n !== last) {
      last = n;
      since = Date.now();
    }
    if (n > 0 && Date.now() - since >= 1000) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`leakscope ${pid} attached no probe within 60 s`);
}
