// Report files and stdout: 0600, written beside the destination and renamed into place, nothing
// at the path followed or clobbered, checked before the work starts, never an input, ENOSPC leaves
// the previous report intact; stdout errors (ENOSPC, EPIPE) end with one line and exit 12.
// System test: runs ./bin/leakscope on a fixture process; the ENOSPC case mounts a tiny tmpfs (root).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EXIT_CODES } from '../model/errors.js';
import { FIXTURE_BUILD, REPO, leakscope, sh, spawnReady } from '../../test/helpers/proc.js';

function assertOneLineError(r: { status: number; stdout: string; stderr: string }, status: number, pattern: RegExp) {
  assert.equal(r.status, status, `exit status (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line: ${r.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'leakscope-out-'));
}
/** Files a run left in DIR besides the expected ones (temporary files must not survive). */
function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => n.startsWith('.leakscope-'));
}
const mode = (p: string) => statSync(p).mode & 0o777;

test('a new report is created 0600 (whatever the umask), complete, with no temporary file left', async () => {
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  const dir = tmp();
  try {
    const out = join(dir, 'mem.json');
    const r = sh('sh', [
      '-c',
      `umask 000; exec "${process.execPath}" "${REPO}/bin/leakscope" mem ${fx.pid} --json=${out}`,
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(mode(out), 0o600);
    const doc = JSON.parse(readFileSync(out, 'utf8'));
    assert.equal(doc.schema, 'leakscope.mem/1');
    assert.match(doc.target, new RegExp(`pid ${fx.pid}\\b`));
    assert.match(r.stdout, /RSS/, 'the terminal text still goes to stdout');
    assert.deepEqual(leftovers(dir), []);
    // `-` is stdout
    const s = leakscope(['mem', String(fx.pid), '--json=-']);
    assert.equal(s.status, 0, s.stderr);
    assert.equal(JSON.parse(s.stdout).schema, 'leakscope.mem/1');
    const o = leakscope(['mem', String(fx.pid), '-o', '-']);
    assert.equal(JSON.parse(o.stdout).schema, 'leakscope.mem/1');
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an existing report the user owns is replaced by rename (new inode, 0600), not rewritten in place', async () => {
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  const dir = tmp();
  try {
    const out = join(dir, 'mem.json');
    writeFileSync(out, 'old report\n', { mode: 0o644 });
    const before = statSync(out);
    const r = leakscope(['mem', String(fx.pid), '-o', out]);
    assert.equal(r.status, 0, r.stderr);
    const after = statSync(out);
    assert.notEqual(after.ino, before.ino, 'a new file took the name');
    assert.equal(mode(out), 0o600);
    assert.equal(JSON.parse(readFileSync(out, 'utf8')).schema, 'leakscope.mem/1');
    assert.deepEqual(leftovers(dir), []);
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a symlink, a dangling symlink, a hard link, a directory, a device or another user's file at the path: exit 12, nothing followed or clobbered", async () => {
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  const dir = tmp();
  try {
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'victim\n');
    const cases: { name: string; make: (p: string) => void; why: RegExp }[] = [
      { name: 'symlink', make: (p) => symlinkSync(victim, p), why: /symbolic link/ },
      { name: 'dangling', make: (p) => symlinkSync(join(dir, 'created-through-link'), p), why: /symbolic link/ },
      { name: 'hardlink', make: (p) => linkSync(victim, p), why: /2 hard links/ },
      { name: 'directory', make: (p) => mkdirSync(p), why: /is a directory/ },
      { name: 'devnull', make: () => undefined, why: /not a regular file \(a character device\)/ },
    ];
    if (process.geteuid?.() === 0) {
      cases.push({
        name: 'others',
        make: (p) => {
          writeFileSync(p, 'theirs\n');
          chownSync(p, 65534, 65534);
        },
        why: /owned by uid 65534/,
      });
    }
    for (const c of cases) {
      const p = c.name === 'devnull' ? '/dev/null' : join(dir, c.name);
      c.make(p);
      const before = lstatSync(p);
      for (const flag of [`--json=${p}`, '--html', '--svg']) {
        const args = flag.startsWith('--json')
          ? ['mem', String(fx.pid), flag]
          : flag === '--html'
            ? ['analyze', String(fx.pid), '--duration', '0', '--pause', '0', flag, p]
            : ['leaks', String(fx.pid), '--duration', '600', flag, p];
        const r = leakscope(args);
        assertOneLineError(r, EXIT_CODES.io, c.why);
        assert.equal(r.stdout, '', `${c.name} ${flag}: refused before any work`);
        const after = lstatSync(p);
        assert.equal(after.ino, before.ino, `${c.name}: the path still names the same thing`);
        assert.equal(after.mode, before.mode);
        if (c.name === 'others') assert.equal(readFileSync(p, 'utf8'), 'theirs\n');
      }
    }
    assert.equal(readFileSync(victim, 'utf8'), 'victim\n', 'the symlink / hard-link target is unchanged');
    assert.equal(existsSync(join(dir, 'created-through-link')), false, 'the dangling link was not followed');
    assert.deepEqual(leftovers(dir), []);
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('output paths are checked before the work: `leaks --svg /dev/full` ends at once, not after the trace', async () => {
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  const dir = tmp();
  try {
    // A 600 s trace that would have to run to the end if the path were checked only when writing.
    const r = spawnSync(
      process.execPath,
      [join(REPO, 'bin/leakscope'), 'leaks', String(fx.pid), '--duration', '600', '--svg', '/dev/full'],
      { encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(r.signal, null, 'leakscope ended by itself');
    assertOneLineError(
      { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr },
      EXIT_CODES.io,
      /--svg \/dev\/full: is not a regular file/,
    );
    assertOneLineError(
      leakscope(['leaks', String(fx.pid), '--duration', '600', '--folded', join(dir, 'no/such/dir/x.folded')]),
      EXIT_CODES.io,
      /does not exist/,
    );
    // two outputs on one path, or two on stdout
    assertOneLineError(
      leakscope(['leaks', String(fx.pid), '--svg', join(dir, 'a'), '--folded', join(dir, 'a')]),
      EXIT_CODES.usage,
      /--svg and --folded both write to/,
    );
    assertOneLineError(
      leakscope(['leaks', String(fx.pid), '--json', '--svg', '-']),
      EXIT_CODES.usage,
      /both write to stdout/,
    );
    assert.deepEqual(leftovers(dir), []);
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an output that is the same file as an input (--core, --baseline) is refused and the input is unchanged', async () => {
  const fx = await spawnReady(join(FIXTURE_BUILD, 'elf-sample'));
  const dir = tmp();
  try {
    assert.equal(sh('gcore', ['-o', join(dir, 'x'), String(fx.pid)]).status, 0);
    const core = join(dir, `x.${fx.pid}`);
    const size = statSync(core).size;
    assertOneLineError(
      leakscope(['mem', '--core', core, `--json=${core}`]),
      EXIT_CODES.usage,
      /is the input file of --core/,
    );
    // the same file through another name (a symlink to the core given as the input)
    symlinkSync(core, join(dir, 'link.core'));
    assertOneLineError(
      leakscope(['heap', '--core', join(dir, 'link.core'), '-o', core]),
      EXIT_CODES.usage,
      /is the input file of --core/,
    );
    assert.equal(statSync(core).size, size);
    const base = join(dir, 'base.json');
    assert.equal(leakscope(['heap', String(fx.pid), `--json=${base}`]).status, 0);
    const text = readFileSync(base, 'utf8');
    assertOneLineError(
      leakscope(['heap', String(fx.pid), '--baseline', base, '-o', base]),
      EXIT_CODES.usage,
      /is the input file of --baseline/,
    );
    assert.equal(readFileSync(base, 'utf8'), text);
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ENOSPC while replacing a report (a tiny tmpfs): exit 12, one line, the previous report intact, no temporary file left', async (t) => {
  if (process.geteuid?.() !== 0) {
    t.skip('mounting a tmpfs needs root');
    return;
  }
  const fx = await spawnReady(join(FIXTURE_BUILD, 'heap-pattern'));
  const mnt = tmp();
  assert.equal(
    sh('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'leakscope-enospc', mnt]).status,
    0,
    'mount tmpfs',
  );
  try {
    const out = join(mnt, 'heap.json');
    const previous = '{"schema":"leakscope.heap/1","previous":true}\n';
    writeFileSync(out, previous, { mode: 0o600 });
    // Fill the file system, leaving less room than a heap report needs.
    try {
      writeFileSync(join(mnt, 'filler'), Buffer.alloc(1 << 20));
    } catch {
      /* ENOSPC: full, as intended */
    }
    const r = leakscope(['heap', String(fx.pid), `--json=${out}`]);
    assertOneLineError(r, EXIT_CODES.io, /cannot write .*heap\.json: no space left on device \(ENOSPC\)/);
    assert.equal(readFileSync(out, 'utf8'), previous);
    assert.deepEqual(leftovers(mnt), []);
    // with room again, the same command replaces it
    rmSync(join(mnt, 'filler'));
    const ok = leakscope(['heap', String(fx.pid), `--json=${out}`]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(JSON.parse(readFileSync(out, 'utf8')).schema, 'leakscope.heap/1');
  } finally {
    sh('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
    await fx.stop();
  }
});

test('stdout errors: ENOSPC (/dev/full) and EPIPE end with one line and exit 12, no stack trace', async () => {
  const fx = await spawnReady(join(FIXTURE_BUILD, 'heap-pattern'));
  try {
    const bin = `"${process.execPath}" "${REPO}/bin/leakscope"`;
    for (const args of [`mem ${fx.pid}`, `heap ${fx.pid} --json`, '--help']) {
      const full = sh('sh', ['-c', `${bin} ${args} > /dev/full`]);
      assertOneLineError(full, EXIT_CODES.io, /cannot write to stdout: no space left on device \(ENOSPC\)/);
    }
    // EPIPE: the reader is gone (closed its end at once) before leakscope writes.
    const pipe = sh('bash', ['-c', `${bin} heap ${fx.pid} --json | exec 0<&-; exit \${PIPESTATUS[0]}`]);
    assertOneLineError(pipe, EXIT_CODES.io, /cannot write to stdout: broken pipe \(EPIPE\)/);
  } finally {
    await fx.stop();
  }
});

test('SIGTERM while the work runs: the temporary file is removed and the process ends by the signal', async () => {
  const dir = tmp();
  try {
    const script = `import { prepareOutputs } from ${JSON.stringify(new URL('./output.js', import.meta.url).href)};
      prepareOutputs([{ option: '--svg', path: ${JSON.stringify(join(dir, 'x.svg'))} }]);
      process.stderr.write('ready\\n'); setTimeout(() => {}, 60000);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (d: Buffer) => {
        if (d.toString().includes('ready')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`exited (${code}) before it was ready`)));
    });
    assert.equal(leftovers(dir).length, 1, 'the temporary file exists while the work runs');
    const ended = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_code, sig) => r(sig)));
    child.kill('SIGTERM');
    assert.equal(await ended, 'SIGTERM');
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
