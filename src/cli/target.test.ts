// Command-line conventions: strict positionals and numbers, `--json` never swallowing a PID,
// `--version`, and `--nginx` choosing among real nginx instances by executable identity, not title.
// System test: runs ./bin/leakscope on fixture processes and on two real nginx instances.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_CODES } from '../model/errors.js';
import { FIXTURE_BUILD, REPO, leakscope, spawnReady } from '../../test/helpers/proc.js';
import { startNginx } from '../../test/helpers/nginx.js';
import { killQuietly, onExit } from '../../test/helpers/cleanup.js';

function assertUsage(r: { status: number; stderr: string }, pattern: RegExp) {
  assert.equal(r.status, EXIT_CODES.usage, `exit status (stderr: ${r.stderr})`);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

/** ./bin/leakscope run from DIR (to see which files a run creates there). */
function leakscopeIn(dir: string, args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO, 'bin/leakscope'), ...args], { cwd: dir, encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('--json never swallows a PID: `mem --json PID` is PID with JSON on stdout; --json=FILE, -o FILE and --json FILE write files', async () => {
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-args-'));
  try {
    const pid = String(fx.pid);
    const r = leakscopeIn(dir, ['mem', '--json', pid]);
    assert.equal(r.status, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.equal(doc.schema, 'leakscope.mem/1');
    assert.match(doc.target, new RegExp(`^pid ${pid}\\b`));
    assert.deepEqual(readdirSync(dir), [], 'no file named after the PID');
    // digits after --json plus a positional PID: two PIDs, a usage error
    assertUsage(leakscopeIn(dir, ['mem', pid, '--json', pid]), /too many arguments/);
    // the file forms
    for (const [args, file] of [
      [['mem', `--json=${pid}`, pid], pid],
      [['mem', '-o', 'out.json', pid], 'out.json'],
      [['mem', '--output', 'out2.json', pid], 'out2.json'],
      [['mem', '--json', 'out3.json', pid], 'out3.json'],
    ] as [string[], string][]) {
      const w = leakscopeIn(dir, args);
      assert.equal(w.status, 0, `${args.join(' ')}: ${w.stderr}`);
      assert.equal(JSON.parse(readFileSync(join(dir, file), 'utf8')).schema, 'leakscope.mem/1', args.join(' '));
    }
    assertUsage(leakscopeIn(dir, ['mem', '--json', 'a.json', '-o', 'b.json', pid]), /both name the JSON file/);
    assertUsage(leakscopeIn(dir, ['demo', '--json', '123']), /too many arguments/);
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('strict arguments: extra positionals, non-integer or out-of-range numbers, two targets are usage errors (exit 2)', async () => {
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  try {
    const pid = String(fx.pid);
    assert.equal(leakscope(['mem', pid, pid]).status, EXIT_CODES.usage);
    assert.match(leakscope(['mem', pid, pid]).stderr, /too many arguments/);
    assert.equal(leakscope(['demo', 'extra']).status, EXIT_CODES.usage);
    assertUsage(leakscope(['leaks', pid, '--sample-bytes', '1.5']), /--sample-bytes: expected a whole number/);
    assertUsage(leakscope(['analyze', pid, '--sample-bytes', '-1']), /--sample-bytes/);
    assertUsage(
      leakscope(['leaks', pid, '--sample-bytes', '4Gi']),
      /--sample-bytes: expected a whole number in \[0, 2147483647\]/,
    );
    assertUsage(leakscope(['pools', pid, '--largest', '2.5']), /--largest: expected a whole number/);
    assertUsage(leakscope(['leaks', pid, '--duration', 'abc']), /--duration: expected a number/);
    assertUsage(leakscope(['leaks', pid, '--duration', '0']), /--duration: expected a number in \[0.1, 86400\]/);
    assertUsage(leakscope(['leaks', pid, '--duty', '1.5']), /--duty/);
    assertUsage(leakscope(['mem', '0']), /not a process id: "0"/);
    assertUsage(leakscope(['mem', '99999999999']), /not a process id/);
    assertUsage(leakscope(['mem', '-5']), /unknown option|not a process id/);
    assertUsage(leakscope(['heap', '--nginx', pid]), /PID \d+ and --nginx both name the target/);
    assertUsage(leakscope(['heap', `--nginx=${pid}`, pid]), /both name the target/);
    assertUsage(leakscope(['mem', pid, '--core', '/nonexistent']), /both name the target/);
    assertUsage(leakscope(['mem', pid, '--exe', '/bin/true']), /--exe goes with --core/);
    assertUsage(leakscope(['mem', pid, '--prefix', '/tmp']), /--prefix selects an nginx instance: use it with --nginx/);
    assertUsage(leakscope(['mem', '--nginx=abc']), /not a master process id/);
  } finally {
    await fx.stop();
  }
});

test('--version prints the version in package.json', () => {
  const version = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version as string;
  const r = leakscope(['--version']);
  assert.equal(r.status, 0);
  assert.equal(r.stdout.trim(), version);
});

test('--nginx: several instances are listed (exit 2) and chosen by --nginx=MASTER_PID, --prefix or --conf; a process titled "nginx: worker process" is never one', async () => {
  // An impostor: a perl master/worker pair with nginx titles and a large worker RSS.
  const impostor = spawn(
    'perl',
    [
      '-e',
      '$0 = "nginx: master process /usr/sbin/nginx"; my $c = fork(); if (!$c) { $0 = "nginx: worker process"; $| = 1; my $x = "x" x (256 << 20); print "ready\\n"; sleep 600; exit 0 } waitpid($c, 0)',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  onExit(() => killQuietly(impostor.pid!, 'SIGKILL'));
  await new Promise((r) => impostor.stdout!.once('data', r));
  const impostorWorker = readFileSync(`/proc/${impostor.pid}/task/${impostor.pid}/children`, 'utf8').trim();
  const a = await startNginx({ workers: 2, loadModule: false });
  const b = await startNginx({ workers: 1, loadModule: false });
  try {
    const list = leakscope(['mem', '--nginx']);
    assert.equal(list.status, EXIT_CODES.usage, list.stderr);
    const lines = list.stderr.trim().split('\n');
    assert.match(
      lines[0]!,
      /^leakscope: \d+ nginx instances are running; choose one with --nginx=MASTER_PID, --prefix DIR or --conf FILE:$/,
    );
    const lineOf = (pid: number) => lines.find((l) => l.includes(`master ${pid} `));
    for (const inst of [a, b]) {
      const l = lineOf(inst.pid);
      assert.ok(l, `instance ${inst.pid} listed: ${list.stderr}`);
      assert.ok(l.includes(`prefix ${inst.prefix.replace(/\/$/, '')} `), l);
      assert.ok(l.includes(`conf ${inst.confPath} `), l);
      assert.ok(l.includes(`${inst.workerPids().length} worker`), l);
      for (const w of inst.workerPids()) assert.ok(l.includes(String(w)), l);
    }
    assert.equal(lineOf(impostor.pid!), undefined, 'the impostor is not listed');
    assert.ok(!list.stderr.includes(impostorWorker), 'nor its worker');

    const target = (args: string[]) => {
      const r = leakscope(['mem', ...args, '--json']);
      assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
      return Number(/^pid (\d+)/.exec(JSON.parse(r.stdout).target)![1]);
    };
    assert.ok(a.workerPids().includes(target([`--nginx=${a.pid}`])));
    assert.ok(b.workerPids().includes(target([`--nginx=${b.pid}`])));
    assert.ok(b.workerPids().includes(target(['--nginx', '--prefix', b.prefix])));
    assert.ok(a.workerPids().includes(target(['--nginx', '--conf', a.confPath])));
    assert.ok(a.workerPids().includes(target(['--nginx', '--prefix', a.prefix, '--conf', a.confPath])));

    const notMaster = leakscope(['mem', `--nginx=${impostor.pid}`]);
    assert.equal(notMaster.status, EXIT_CODES['not-found'], notMaster.stderr);
    assert.match(notMaster.stderr, /is not an nginx master/);
    const none = leakscope(['mem', '--nginx', '--prefix', '/nonexistent/prefix']);
    assert.equal(none.status, EXIT_CODES['no-such-process'], none.stderr);
    assert.match(none.stderr, /no nginx worker process found for prefix \/nonexistent\/prefix/);
  } finally {
    await a.stop();
    await b.stop();
    killQuietly(impostor.pid!, 'SIGKILL');
    if (/^\d+$/.test(impostorWorker)) killQuietly(Number(impostorWorker), 'SIGKILL');
  }
  assert.equal(existsSync(a.prefix), false);
});
