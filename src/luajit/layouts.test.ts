// The built-in LuaJIT layout table against ground truth: offsetof() / sizeof() compiled against
// the exact source of the installed library's package (test/fixtures/luajit-layouts/build.sh:
// apt-get source with a private deb-src list, Debian's build configuration).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { loadElf } from '../formats/elf/index.js';
import { FIXTURES_DIR } from '../../test/helpers/build.js';
import { LUAJIT_LAYOUT_TABLE, layoutCandidates } from './layouts.js';

const LIB = '/usr/lib/x86_64-linux-gnu/libluajit-5.1.so.2.1.0';

test('the table entry for the installed libluajit matches offsetof() against its exact source', {
  timeout: 300_000,
}, () => {
  const buildId = loadElf(LIB).buildId;
  assert.ok(buildId, 'libluajit has a build-id');
  const [first] = layoutCandidates(buildId);
  assert.equal(first?.origin, 'table', `build-id ${buildId} is in the table`);
  const derived = JSON.parse(
    execFileSync(join(FIXTURES_DIR, 'luajit-layouts', 'build.sh'), { encoding: 'utf8', timeout: 280_000 }),
  ) as Record<string, unknown>;
  const entry = LUAJIT_LAYOUT_TABLE.find((e) => e.buildIds.includes(buildId!))!;
  assert.equal(derived.source, entry.source, 'same source package version');
  assert.equal(derived.version, entry.version);
  assert.equal(derived.gc64 === 1, entry.gc64);
  assert.equal(derived.fr2 === 1, entry.fr2);
  for (const [struct, fields] of Object.entries(entry.structs))
    assert.deepEqual(fields, derived[struct], `${struct} offsets`);
  assert.deepEqual(entry.fastFunctions, derived.fastFunctions, 'fast function names (lj_ffdef.h)');
  const structs = Object.keys(derived).filter((k) => typeof derived[k] === 'object' && !Array.isArray(derived[k]));
  assert.deepEqual(structs.sort(), Object.keys(entry.structs).sort(), 'the table has every struct offsets.c prints');
});

test('an unknown build-id gets every table entry as a candidate, marked as such', () => {
  const c = layoutCandidates('00');
  assert.ok(c.length >= 1);
  assert.ok(c.every((l) => l.origin === 'table-candidate'));
});
