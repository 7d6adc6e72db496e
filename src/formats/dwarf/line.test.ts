// .debug_line against binutils' own decoding (objdump --dwarf=decodedline) of a fixture built with -g.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { loadElf } from '../elf/index.js';
import { parseDebugLine, lineAt } from './line.js';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('../../../../test/fixtures/c/threaded-leaker.c', import.meta.url));

for (const dwarf of [4, 5]) {
  test(`.debug_line (DWARF ${dwarf}) matches objdump --dwarf=decodedline`, () => {
    const out = `/tmp/leakscope-line-${process.pid}-${dwarf}`;
    execFileSync('gcc', [
      '-O2',
      `-gdwarf-${dwarf}`,
      '-pthread',
      '-o',
      out,
      SOURCE,
      '-I',
      SOURCE.replace(/threaded-leaker\.c$/, ''),
    ]);
    const t = parseDebugLine(loadElf(out));
    const dump = execFileSync('objdump', ['--dwarf=decodedline', out], { maxBuffer: 1 << 26 }).toString();
    // rows: "FILE   LINE   0xADDR   [VIEW]   [x]"; at one address the last row listed is the one that holds
    const last = new Map<number, { file: string; line: number }>();
    for (const l of dump.split('\n')) {
      const m = /^(\S+)\s+(\d+)\s+(0x[0-9a-f]+)(\s+\d+)?\s*(x?)\s*$/.exec(l);
      if (m) last.set(parseInt(m[3]!, 16), { file: m[1]!, line: Number(m[2]) });
    }
    let checked = 0;
    for (const [addr, want] of last) {
      const row = lineAt(t, addr);
      assert.ok(row, `a row at 0x${addr.toString(16)}`);
      assert.equal(`${row.file.split('/').pop()}:${row.line}`, `${want.file}:${want.line}`, `0x${addr.toString(16)}`);
      checked++;
    }
    assert.ok(checked > 50, `${checked} rows checked`);
  });
}
