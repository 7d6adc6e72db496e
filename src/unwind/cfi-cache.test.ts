// ModuleCfi lookups: .eh_frame_hdr binary search vs a sorted index of all FDEs, the PT_GNU_EH_FRAME
// path for files without section headers, and CfiCache keys and failures.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseElf, loadElf } from '../formats/elf/index.js';
import { CfiCache, ModuleCfi, moduleCfiFromElf } from './cfi-cache.js';
import { FIXTURE_BIN, runCaptureFixture } from './test-capture.js';

const LIBC = '/lib/x86_64-linux-gnu/libc.so.6';

function sameRow(a: ReturnType<ModuleCfi['rowAt']>, b: ReturnType<ModuleCfi['rowAt']>, msg: string): void {
  assert.deepEqual(a && { ...a, registers: [...a.registers] }, b && { ...b, registers: [...b.registers] }, msg);
}

test('.eh_frame_hdr lookup and the sorted-index fallback give the same rows (libc, every 97th byte)', () => {
  const elf = loadElf(LIBC);
  const withHdr = moduleCfiFromElf(elf);
  assert.ok(withHdr.ehFrameHdr?.searchable);
  const noHdr = new ModuleCfi('libc (no hdr)', { ehFrame: withHdr.ehFrame });
  const text = elf.section('.text')!;
  let covered = 0;
  for (let v = text.addr; v < text.addr + text.size; v += 97) {
    const a = withHdr.rowAt(v),
      b = noHdr.rowAt(v);
    sameRow(a, b, `0x${v.toString(16)}`);
    if (a) covered++;
  }
  assert.ok(covered > 10000, `${covered}`);
  assert.equal(withHdr.rowAt(0), null);
  assert.equal(withHdr.problems.length, 0);
});

test('a file without section headers: CFI found through PT_GNU_EH_FRAME', () => {
  runCaptureFixture(); // builds the fixture when missing
  const bytes = new Uint8Array(readFileSync(FIXTURE_BIN));
  const dv = new DataView(bytes.buffer);
  dv.setBigUint64(40, 0n, true); // e_shoff
  dv.setUint16(60, 0, true); // e_shnum
  const stripped = parseElf(bytes, 'no-sections');
  assert.equal(stripped.sections.length, 0);
  const a = moduleCfiFromElf(stripped),
    b = moduleCfiFromElf(loadElf(FIXTURE_BIN));
  assert.ok(a.ehFrameHdr && a.ehFrame);
  assert.equal(a.ehFrame.vaddr, b.ehFrame!.vaddr);
  const main = loadElf(FIXTURE_BIN).findSymbol('main')!;
  for (let v = main.value; v < main.value + main.size; v++) sameRow(a.rowAt(v), b.rowAt(v), `0x${v.toString(16)}`);
});

test('CfiCache: one entry per (path, build-id); missing files and build-id mismatches become empty CFI with a problem', () => {
  const cache = new CfiCache();
  const id = loadElf(LIBC).buildId;
  assert.equal(cache.get(LIBC, { buildId: id }), cache.get(LIBC, { buildId: id }));
  assert.equal(cache.size, 1);
  const missing = cache.get('/nonexistent/libfoo.so');
  assert.equal(missing.hasTables, false);
  assert.match(missing.problems[0]!, /no such file/);
  const wrong = cache.get(LIBC, { buildId: '00'.repeat(20) });
  assert.equal(wrong.hasTables, false);
  assert.match(wrong.problems[0]!, /build-id/);
  assert.equal(cache.size, 3);
});
