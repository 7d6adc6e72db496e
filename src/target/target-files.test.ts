// Safe opening of target-named and user-named files, on a temporary tree (no root needed):
// resolution inside a root (openat2 and the component-walk fallback agree), regular files only,
// size caps, bounded reads; debuglink names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, truncateSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TargetRoot, resolveInRoot, openUserFile, readUserFile, SIZE_CAPS } from './target-files.js';
import { LeakscopeError } from '../model/errors.js';
import { isPlainFileName } from '../symbols/debug-files.js';
import { readWholeAndClose } from '../binary/regular-file.js';

function tree(): { root: string; outside: string; done(): void } {
  const base = mkdtempSync(join(tmpdir(), 'leakscope-root-'));
  const root = join(base, 'root'),
    outside = join(base, 'outside-secret');
  mkdirSync(join(root, 'usr/lib'), { recursive: true });
  mkdirSync(join(root, 'etc'));
  writeFileSync(outside, 'host secret\n');
  writeFileSync(join(root, 'etc/inside'), 'inside the root\n');
  writeFileSync(join(root, 'usr/lib/libx.so'), 'x');
  symlinkSync(outside, join(root, 'usr/lib/abs-escape')); // absolute: must mean <root><outside>
  symlinkSync('../../../../../../outside-secret', join(root, 'usr/lib/rel-escape'));
  symlinkSync('/etc/inside', join(root, 'usr/lib/abs-inside')); // absolute, resolved in the root: fine
  symlinkSync('../../etc/inside', join(root, 'usr/lib/rel-inside'));
  symlinkSync('loop-b', join(root, 'usr/lib/loop-a'));
  symlinkSync('loop-a', join(root, 'usr/lib/loop-b'));
  symlinkSync('/proc/self/root' + outside, join(root, 'usr/lib/magic'));
  return { root, outside, done: () => rmSync(base, { recursive: true, force: true }) };
}

const notFound = (e: unknown) => e instanceof LeakscopeError && e.code === 'not-found';

for (const fallback of [false, true]) {
  test(`paths resolved inside a root (${fallback ? 'component walk, kernels < 5.6' : 'openat2 RESOLVE_IN_ROOT'}): no escape`, () => {
    const t = tree();
    const r = new TargetRoot(t.root, 'test root');
    r.forceFallback = fallback;
    try {
      const read = (p: string) => readWholeAndClose(r.openTargetFile(p, 'debug-file'));
      assert.equal(read('/etc/inside').toString(), 'inside the root\n');
      assert.equal(read('/usr/lib/abs-inside').toString(), 'inside the root\n');
      assert.equal(read('/usr/lib/rel-inside').toString(), 'inside the root\n');
      assert.equal(read('/../../../etc/inside').toString(), 'inside the root\n', '`..` at the root stays there');
      assert.throws(() => r.openTargetFile('/usr/lib/abs-escape', 'object'), notFound);
      assert.throws(() => r.openTargetFile('/usr/lib/rel-escape', 'object'), notFound);
      assert.throws(() => r.openTargetFile('/usr/lib/loop-a', 'object'), notFound);
      assert.throws(() => r.openTargetFile('/usr/lib/magic', 'object'), notFound);
      assert.throws(
        () => r.openTargetFile('usr/lib/libx.so', 'object'),
        notFound,
        'relative paths are not target paths',
      );
      assert.throws(
        () => r.openTargetFile('/etc', 'object'),
        (e: unknown) => e instanceof LeakscopeError && e.code === 'malformed' && /a directory/.test(e.message),
      );
    } finally {
      r.close();
      t.done();
    }
  });
}

test('resolveInRoot: absolute links restart at the root, .. is clamped, loops end', () => {
  const t = tree();
  try {
    assert.equal(resolveInRoot(t.root, '/usr/lib/abs-inside'), '/etc/inside');
    assert.equal(
      resolveInRoot(t.root, '/usr/lib/rel-escape'),
      undefined,
      'outside-secret does not exist inside the root',
    );
    assert.equal(resolveInRoot(t.root, '/usr/lib/loop-a'), undefined);
    assert.equal(resolveInRoot(t.root, '/a/../../etc/./inside'), undefined, 'a missing component ends the walk');
    assert.equal(resolveInRoot(t.root, '/../etc/inside'), '/etc/inside');
  } finally {
    t.done();
  }
});

test("user-named files: regular only, within the kind's cap", () => {
  const t = tree();
  try {
    const fifo = join(t.root, 'fifo');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const isMalformed = (re: RegExp) => (e: unknown) =>
      e instanceof LeakscopeError && e.code === 'malformed' && re.test(e.message);
    assert.throws(() => openUserFile(fifo, 'core'), isMalformed(/not a regular file \(a FIFO\)/));
    assert.throws(() => openUserFile('/dev/zero', 'executable'), isMalformed(/a character device/));
    assert.throws(() => openUserFile(t.root, 'baseline'), isMalformed(/a directory/));
    assert.throws(() => openUserFile(join(t.root, 'nope'), 'baseline'), notFound);
    const big = join(t.root, 'big.json');
    writeFileSync(big, '{}');
    truncateSync(big, SIZE_CAPS.baseline + 1);
    assert.throws(() => readUserFile(big, 'baseline'), isMalformed(/64\.0 MiB/));
    assert.equal(readUserFile(join(t.root, 'etc/inside'), 'baseline').toString(), 'inside the root\n');
  } finally {
    t.done();
  }
});

test('debuglink names: plain file names only', () => {
  for (const ok of ['libc.so.6.debug', 'a', '.debug-x']) assert.ok(isPlainFileName(ok), ok);
  for (const bad of ['', '.', '..', '../x', 'a/b', '/etc/shadow', 'x\0y', 'x\ny', 'a'.repeat(256)])
    assert.ok(!isPlainFileName(bad), JSON.stringify(bad));
});
