import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseMaps, parseSmaps } from './maps.js';

test('maps lines with spaces and deleted files', () => {
  const m = parseMaps(
    '55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]\n' +
      '7f0000000000-7f0000001000 rw-s 00000000 00:01 1234                       /dev/zero (deleted)\n' +
      '7f0000002000-7f0000003000 r-xp 00001000 fd:01 42 /tmp/a b/lib x.so\n',
  );
  assert.equal(m.length, 3);
  assert.equal(m[0]!.path, '[heap]');
  assert.equal(m[0]!.end - m[0]!.start, 0x21000);
  assert.equal(m[1]!.path, '/dev/zero (deleted)');
  assert.equal(m[2]!.path, '/tmp/a b/lib x.so');
  assert.equal(m[2]!.offset, 0x1000);
});

test('smaps sizes in bytes', () => {
  const s = parseSmaps(
    '00400000-00401000 r-xp 00000000 fd:01 42 /bin/x\nSize: 4 kB\nRss: 4 kB\nPss: 2 kB\nSwap: 0 kB\nAnonymous: 0 kB\nVmFlags: rd ex\n',
  );
  assert.equal(s[0]!.usage!.rss, 4096);
  assert.equal(s[0]!.usage!.pss, 2048);
});

test('malformed maps line is a typed error', () => {
  assert.throws(() => parseMaps('garbage\n'), { name: 'LeakscopeError' });
});
