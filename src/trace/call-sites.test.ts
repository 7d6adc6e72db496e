import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findDirectCalls, returnSiteOfCall } from './call-sites.js';
import { loadElf } from '../formats/elf/index.js';
import { sh } from '../../test/support/proc.js';

test('annotated bytes: E8 rel32 resolves relative to the next instruction', () => {
  const code = Uint8Array.from([
    0x55,                          // 1000: push rbp
    0xe8, 0xfb, 0x00, 0x00, 0x00,  // 1001: call 1001+5+0xfb = 0x1101
    0xe8, 0x00, 0x00, 0x00, 0x00,  // 1006: call 0x100b (not wanted)
    0xc3,                          // 100b: ret
  ]);
  assert.deepEqual(findDirectCalls(code, 0x1000, new Set([0x1101])), [{ callVaddr: 0x1001, returnVaddr: 0x1006, targetVaddr: 0x1101 }]);
});

test('Debian nginx: ngx_create_pool calls ngx_memalign; objdump agrees on the return site', () => {
  const elf = loadElf('/usr/sbin/nginx');
  const site = returnSiteOfCall(elf, 'ngx_create_pool', ['ngx_memalign']);
  const fn = elf.findSymbol('ngx_create_pool')!;
  const dis = sh('objdump', ['-d', '--no-show-raw-insn', `--start-address=${fn.value}`, `--stop-address=${fn.value + fn.size}`, '/usr/sbin/nginx']).stdout;
  const m = /^\s*([0-9a-f]+):\s+call\s+[0-9a-f]+ <ngx_memalign[@>]/m.exec(dis);
  assert.ok(m, 'objdump shows the call');
  assert.equal(site.callVaddr, parseInt(m[1]!, 16));
  // the next instruction starts at the return site
  const lines = dis.split('\n').filter((l) => /^\s*[0-9a-f]+:/.test(l)).map((l) => parseInt(l.trim().split(':')[0]!, 16));
  assert.equal(lines[lines.indexOf(site.callVaddr) + 1], site.returnVaddr);
});
