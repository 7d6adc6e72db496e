// Inlined calls from .debug_info against binutils' own reading: `addr2line -f -i` at every call
// instruction (return address - 1, as stacks look return addresses up) of programs built -O2 -g
// with DWARF 4 (.debug_ranges) and 5 (.debug_rnglists), and of the repository's C fixtures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadElf } from '../elf/index.js';
import { lineAt, parseDebugLine } from './line.js';
import { inlinedAt, parseInlines } from './inlines.js';

const FIXTURES = fileURLToPath(new URL('../../../../test/fixtures/c/', import.meta.url));
// Nested forced inlining (inner in middle in outer), two call sites of each, and a cold part.
const PROGRAM_FILE = join(FIXTURES, 'inlined-calls.c');

/** Return addresses - 1 of every call in the program (objdump -d). */
function callSites(bin: string): number[] {
  const out: number[] = [];
  const text = execFileSync('objdump', ['-d', '-w', bin], { encoding: 'utf8', maxBuffer: 256 << 20 });
  for (const line of text.split('\n')) {
    const m = /^\s+([0-9a-f]+):\t((?:[0-9a-f]{2} )+)\s*\tcall/.exec(line);
    if (m) out.push(parseInt(m[1]!, 16) + m[2]!.trim().split(' ').length - 1);
  }
  return out;
}

/** addr2line -f -i frames (function, file, line) per address, innermost first. */
function addr2line(bin: string, addrs: number[]): Array<Array<{ fn: string; file: string; line: number }>> {
  // One address per call, separated by a sentinel address whose output marks the boundary.
  const args = ['-f', '-i', '-e', bin];
  const text = execFileSync('addr2line', [...args, ...addrs.flatMap((a) => [a.toString(16), '0'])], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const lines = text.trimEnd().split('\n');
  const out: Array<Array<{ fn: string; file: string; line: number }>> = [];
  let cur: Array<{ fn: string; file: string; line: number }> = [];
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const fn = lines[i]!,
      loc = lines[i + 1]!;
    if (fn === '??' && loc === '??:0') {
      out.push(cur);
      cur = [];
      continue;
    }
    const m = /^(.*):(\d+|\?)(?: \(discriminator \d+\))?$/.exec(loc)!;
    cur.push({ fn, file: m[1]!, line: m[2] === '?' ? 0 : Number(m[2]) });
  }
  return out;
}

function compare(bin: string): { sites: number; inlinedSites: number } {
  const elf = loadElf(bin);
  const table = parseDebugLine(elf);
  const index = parseInlines(elf, table.files!);
  const sites = callSites(bin);
  const expected = addr2line(bin, sites);
  assert.equal(expected.length, sites.length);
  let inlinedSites = 0;
  sites.forEach((pc, k) => {
    const want = expected[k]!;
    const chain = inlinedAt(index, pc);
    const row = lineAt(table, pc);
    // no line for it (crt code without DWARF): addr2line prints ??, nothing to expand either
    if (!row || want.some((w) => w.file === '??' || w.line === 0)) return;
    // ours: innermost inlined function at the pc's line, then each caller at the call's line
    const got: Array<{ fn: string; file: string; line: number }> = [];
    let file = row.file,
      line = row.line;
    for (const c of chain) {
      got.push({ fn: c.name ?? '??', file, line });
      file = c.callFile;
      line = c.callLine;
    }
    got.push({ fn: want[want.length - 1]?.fn ?? '??', file, line }); // the function itself: named by the symbol table
    if (chain.length) inlinedSites++;
    // The innermost frame's file is the line table's (line.test.ts checks it against objdump's
    // decodedline); binutils 2.40's addr2line names the CU's file instead of a header's at some
    // DWARF 5 rows (fx_die in fixture-common.h), so that one file is not compared.
    if (got[0] && want[0]) got[0].file = want[0].file;
    assert.deepEqual(got, want, `${bin} at 0x${pc.toString(16)}`);
  });
  return { sites: sites.length, inlinedSites };
}

for (const dwarf of [4, 5]) {
  test(`inlined calls (DWARF ${dwarf}): every call site as addr2line -i reads it`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'leakscope-inl-'));
    try {
      const bin = join(dir, 'inl');
      execFileSync('gcc', ['-O2', `-gdwarf-${dwarf}`, '-o', bin, PROGRAM_FILE]);
      const r = compare(bin);
      console.log(`# DWARF ${dwarf}: ${r.sites} call sites, ${r.inlinedSites} in inlined code`);
      assert.ok(r.inlinedSites >= 3, 'the three malloc calls are inside inlined functions');
      // the nested one: inner inlined into middle inlined into outer
      const elf = loadElf(bin);
      const idx = parseInlines(elf, parseDebugLine(elf).files!);
      const nested = callSites(bin).map((pc) =>
        inlinedAt(idx, pc)
          .map((c) => `${c.name}@${c.callLine}`)
          .join(' '),
      );
      assert.ok(nested.includes('inner@8 middle@13'), nested.join('; '));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test("inlined calls in the repository's C fixtures (-O2 -g) as addr2line -i reads them", () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-inl-'));
  try {
    let total = 0,
      inl = 0;
    for (const name of readdirSync(FIXTURES).filter((f) => f.endsWith('.c'))) {
      const bin = join(dir, name.replace(/\.c$/, ''));
      execFileSync('gcc', ['-O2', '-g', '-pthread', '-o', bin, join(FIXTURES, name)]);
      const r = compare(bin);
      total += r.sites;
      inl += r.inlinedSites;
    }
    console.log(`# fixtures: ${total} call sites, ${inl} in inlined code`);
    assert.ok(inl > 20);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
