// The built-in layout table against ground truth: offsetof() of the installed nginx-dev
// headers configured with the installed nginx's flags (test/fixtures/nginx-layouts/build.sh),
// and the installed binary's own version / configure strings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadElf } from '../formats/elf/index.js';
import { FIXTURES_DIR } from '../../test/helpers/build.js';
import { LAYOUT_TABLE, layoutFeatures, nginxBuildInfo, tableLayouts, versionNumber } from './layouts.js';
import { POOL } from './pool.js';
import { SLAB_PAGE, SLAB_POOL_LAYOUTS, SLAB_STAT } from './slab.js';

const NGINX = '/usr/sbin/nginx';

function deriveOffsets(): Record<string, unknown> {
  const out = execFileSync(join(FIXTURES_DIR, 'nginx-layouts', 'build.sh'), { encoding: 'utf8', timeout: 120_000 });
  return JSON.parse(out) as Record<string, unknown>;
}

test('nginxBuildInfo reads version and configure arguments from the binary (vs nginx -V)', () => {
  const info = nginxBuildInfo(loadElf(NGINX));
  const v = execFileSync(NGINX, ['-V'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  // nginx -V prints to stderr
  const text = v || execFileSync('sh', ['-c', `${NGINX} -V 2>&1`], { encoding: 'utf8' });
  assert.match(text, new RegExp(`nginx version: nginx/${info.version.replace(/\./g, '\\.')}`));
  const args = /configure arguments: (.*)/.exec(text)![1]!.trim();
  assert.equal(info.configureArgs, args);
  assert.equal(versionNumber('1.22.1'), 1022001);
});

test('built-in layout table matches offsetof() against the installed nginx-dev headers', { timeout: 180_000 }, () => {
  assert.ok(existsSync('/usr/share/nginx/src/conf_flags'), 'nginx-dev is installed');
  const derived = deriveOffsets();
  const info = nginxBuildInfo(loadElf(NGINX));
  assert.equal(derived.version, info.version, 'nginx-dev headers are those of the installed nginx');
  const layouts = tableLayouts(info);
  assert.equal(
    layouts.source,
    'table',
    `an exact table entry for nginx ${info.version} ${JSON.stringify(layoutFeatures(info.configureArgs))}`,
  );
  const entry = LAYOUT_TABLE.find((e) => e.version === info.version)!;
  for (const [struct, fields] of Object.entries(entry.layouts)) {
    assert.deepEqual(fields, derived[struct], `${struct} offsets`);
  }
  // and the stable ngx_pool_t constants
  const pool = derived.ngx_pool_t as Record<string, number>;
  assert.equal(pool.max, POOL.max);
  assert.equal(pool.current, POOL.current);
  assert.equal(pool.large, POOL.large);
  assert.equal(pool.cleanup, POOL.cleanup);
  assert.equal(pool.log, POOL.log);
  assert.equal(pool.sizeof, POOL.sizeof);
  // and the slab pool of shm zones: Debian's build has POSIX semaphores (the 'posix-sem' layout)
  const slab = derived.ngx_slab_pool_t as Record<string, number>;
  const L = SLAB_POOL_LAYOUTS.find((l) => l.name === 'posix-sem')!;
  for (const k of ['min_shift', 'pages', 'last', 'free', 'stats', 'pfree', 'start', 'end', 'data', 'addr', 'sizeof'] as const)
    assert.equal(L[k], slab[k], `ngx_slab_pool_t.${k}`);
  assert.deepEqual({ ...SLAB_PAGE }, derived.ngx_slab_page_t);
  assert.deepEqual({ ...SLAB_STAT }, derived.ngx_slab_stat_t);
});

test('an unknown version falls back to the nearest table entry, marked as such', () => {
  const l = tableLayouts({ version: '1.25.3', configureArgs: '--with-compat' });
  assert.equal(l.source, 'table-nearest');
  assert.match(l.sourceDetail, /nearest/);
});
