import { test } from 'node:test';
import assert from 'node:assert/strict';
import { findDirectCalls, returnSiteOfCall } from './call-sites.js';
import { loadElf } from '../formats/elf/index.js';
import { sh } from '../../test/helpers/proc.js';

test('annotated bytes: E8 rel32 resolves relative to the next instruction', () => {
  const code = Uint8Array.from([
    0x55, // 1000: push rbp
    0xe8,
    0xfb,
    0x00,
    0x00,
    0x00, // 1001: call 1001+5+0xfb = 0x1101
    0xe8,
    0x00,
    0x00,
    0x00,
    0x00, // 1006: call 0x100b (not wanted)
    0xc3, // 100b: ret
  ]);
  assert.deepEqual(findDirectCalls(code, 0x1000, new Set([0x1101])), [
    { callVaddr: 0x1001, returnVaddr: 0x1006, targetVaddr: 0x1101 },
  ]);
});

test('Debian nginx: ngx_create_pool calls ngx_memalign; objdump agrees on the return site', () => {
  const elf = loadElf('/usr/sbin/nginx');
  const site = returnSiteOfCall(elf, 'ngx_create_pool', ['ngx_memalign']);
  const fn = elf.findSymbol('ngx_create_pool')!;
  const dis = sh('objdump', [
    '-d',
    '--no-show-raw-insn',
    `--start-address=${fn.value}`,
    `--stop-address=${fn.value + fn.size}`,
    '/usr/sbin/nginx',
  ]).stdout;
  const m = /^\s*([0-9a-f]+):\s+call\s+[0-9a-f]+ <ngx_memalign[@>]/m.exec(dis);
  assert.ok(m, 'objdump shows the call');
  assert.equal(site.callVaddr, parseInt(m[1]!, 16));
  // the next instruction starts at the return site
  const lines = dis
    .split('\n')
    .filter((l) => /^\s*[0-9a-f]+:/.test(l))
    .map((l) => parseInt(l.trim().split(':')[0]!, 16));
  assert.equal(lines[lines.indexOf(site.callVaddr) + 1], site.returnVaddr);
});

test('emulated probe sites: past a leading test in free / posix_memalign, the null-check jump after ngx_memalign', async () => {
  const { emulatedEntryOffset, entryProbeOffset, resultTestJumpVaddr } = await import('./call-sites.js');
  // annotated bytes
  assert.equal(emulatedEntryOffset(Uint8Array.from([0x41, 0x54, 0x55])), 0, 'push r12 is emulated');
  assert.equal(
    emulatedEntryOffset(Uint8Array.from([0x48, 0x85, 0xff, 0x0f, 0x84, 0, 0, 0, 0])),
    3,
    'test rdi,rdi; je rel32',
  );
  assert.equal(
    emulatedEntryOffset(Uint8Array.from([0x80, 0x3d, 1, 2, 3, 4, 0, 0x41, 0x54])),
    7,
    'cmpb $0,d32(rip); push r12',
  );
  assert.equal(
    emulatedEntryOffset(Uint8Array.from([0x48, 0x85, 0xff, 0x48, 0x89, 0xf8])),
    0,
    'next one not emulated: stay at entry',
  );
  // real libc, checked with objdump: the instruction at the chosen offset is a push or a jump
  const libc = loadElf('/lib/x86_64-linux-gnu/libc.so.6');
  for (const name of ['malloc', 'free', 'calloc', 'realloc', 'posix_memalign', 'memalign', 'valloc']) {
    const s = libc.findSymbol(name)!;
    const at = s.value + entryProbeOffset(libc, name);
    const dis = sh('objdump', [
      '-d',
      '--no-show-raw-insn',
      `--start-address=${at}`,
      `--stop-address=${at + 8}`,
      '/lib/x86_64-linux-gnu/libc.so.6',
    ]).stdout;
    const first = /^\s*[0-9a-f]+:\s+(\S+)/m.exec(dis)![1]!;
    assert.match(first, /^(push|j[a-z]+)$/, `${name}+${at - s.value}: ${first}`);
  }
  assert.equal(entryProbeOffset(libc, 'free'), 3);
  assert.equal(entryProbeOffset(libc, 'posix_memalign'), 7);
  const nginx = loadElf('/usr/sbin/nginx');
  const site = returnSiteOfCall(nginx, 'ngx_create_pool', ['ngx_memalign']);
  const j = resultTestJumpVaddr(nginx, site)!;
  const dis = sh('objdump', [
    '-d',
    '--no-show-raw-insn',
    `--start-address=${site.returnVaddr}`,
    `--stop-address=${j + 2}`,
    '/usr/sbin/nginx',
  ]).stdout;
  const insns = dis.split('\n').filter((l) => /^\s*[0-9a-f]+:/.test(l));
  assert.match(insns[insns.length - 1]!, /\sj(e|ne)\s/, 'a conditional jump');
  assert.match(insns[insns.length - 2]!, /test\s+%rax,%rax/, 'right after testing the result');
  for (const l of insns.slice(0, -2)) assert.doesNotMatch(l, /,%(rax|eax)$/, `rax not written before the test: ${l}`);
});
