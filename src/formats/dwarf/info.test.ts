// structLayoutsFromDwarf against ground truth: the offsets the same program prints with
// offsetof() (test/fixtures/nginx-layouts/offsets.c, built -g by build.sh).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { loadElf } from '../elf/index.js';
import { FIXTURES_BUILD_DIR, FIXTURES_DIR } from '../../../test/helpers/build.js';
import { structLayoutsFromDwarf } from './info.js';

test('struct member offsets from DWARF equal offsetof() of the same build', { timeout: 180_000 }, () => {
  const printed = JSON.parse(
    execFileSync(join(FIXTURES_DIR, 'nginx-layouts', 'build.sh'), { encoding: 'utf8', timeout: 120_000 }),
  ) as Record<string, Record<string, number> | string>;
  const elf = loadElf(join(FIXTURES_BUILD_DIR, 'nginx-layouts', 'offsets'), { cache: false });
  const wanted: Record<string, string[]> = {};
  for (const [k, v] of Object.entries(printed)) if (typeof v === 'object') wanted[k] = Object.keys(v);
  const found = structLayoutsFromDwarf(elf, wanted);
  for (const [k, v] of Object.entries(printed)) {
    if (typeof v !== 'object') continue;
    assert.deepEqual({ ...found[k] }, v, k);
  }
  // A name that is not there is left out, not guessed.
  assert.equal(structLayoutsFromDwarf(elf, { no_such_struct_t: ['x'] }).no_such_struct_t, undefined);
  // A member that is not there leaves the struct out.
  assert.equal(structLayoutsFromDwarf(elf, { ngx_pool_t: ['no_such_member'] }).ngx_pool_t, undefined);
});
