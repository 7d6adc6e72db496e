import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePerfMap, perfMapLookup } from './perf-map.js';

test('perf map: node --perf-basic-prof lines, lookup by address, malformed lines skipped', () => {
  const text = [
    '3a1f0c044000 1c0 Builtin:ArgumentsAdaptorTrampoline',
    '3a1f0c0451c0 38 LazyCompile:~leakyFunction /srv/app.js:12:23',
    'nonsense line',
    '3a1f0c046000 zz bad size',
    '3a1f0c047000 100 Function:*hot\tpath',
  ].join('\n');
  const e = parsePerfMap(text);
  assert.equal(e.length, 3);
  assert.equal(perfMapLookup(e, 0x3a1f0c0451c0 + 0x10)?.name, 'LazyCompile:~leakyFunction /srv/app.js:12:23');
  assert.equal(perfMapLookup(e, 0x3a1f0c0451c0 + 0x38), undefined, 'end is exclusive');
  assert.equal(perfMapLookup(e, 0x3a1f0c047010)?.name, 'Function:*hot path', 'control characters replaced');
  assert.equal(perfMapLookup(e, 1), undefined);
});
