// The call-site decoder (called-function.ts) on real binaries, checked against objdump's own
// reading of every call: a program calling aligned_alloc and memalign (one function in glibc
// 2.36) directly and through tail-calling wrappers, built with a lazy PLT (-O0), an IBT PLT
// (.plt.sec, -fcf-protection -z ibtplt) and no PLT (-fno-plt: call/jmp *slot(%rip)); and every
// call to an import in Debian's /usr/sbin/nginx.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadElf, parseElf } from '../formats/elf/index.js';
import { calledFunction } from './called-function.js';

const PROGRAM = `#include <stdlib.h>
#include <malloc.h>
__attribute__((noinline)) void *wrap_aligned(size_t n) { return aligned_alloc(64, n); }
__attribute__((noinline)) void *wrap_memalign(size_t n) { return memalign(64, n); }
int main(int argc, char **argv) {
  void *a = aligned_alloc(64, argc * 100);
  void *b = memalign(64, argc * 100);
  void *c = wrap_aligned(argc);
  void *d = wrap_memalign(argc);
  return a == b || c == d;
}
`;

interface Insn {
  addr: number;
  /** Address of the next instruction (the return address of a call). */
  next: number;
  text: string;
  fn: string;
}

/** objdump -d's instructions, in order, with the function each belongs to. */
function disassemble(path: string): Insn[] {
  const out: Insn[] = [];
  let fn = '';
  const text = execFileSync('objdump', ['-d', '-w', path], {
    encoding: 'utf8',
    maxBuffer: 512 << 20,
  });
  for (const line of text.split('\n')) {
    const f = /^[0-9a-f]+ <([^>]+)>:$/.exec(line);
    if (f) fn = f[1]!;
    const m = /^\s+([0-9a-f]+):\t((?:[0-9a-f]{2} )+)\s*\t(.*)$/.exec(line);
    if (m) {
      const addr = parseInt(m[1]!, 16);
      out.push({ addr, next: addr + m[2]!.trim().split(' ').length, text: m[3]!.trim(), fn });
    }
  }
  return out;
}

/** The import objdump names for a call/jmp: `<f@plt>` or `*disp(%rip) # slot <f@VERSION>` (no +offset). */
function importOf(text: string): string | undefined {
  const plt = /^(?:call|jmp|bnd jmp)\s+[0-9a-f]+ <([\w.]+)@plt>$/.exec(text);
  if (plt) return plt[1];
  const got = /^(?:call|jmp)\s+\*0x[0-9a-f]+\(%rip\)\s+# [0-9a-f]+ <([\w.]+)@[\w.@]+>$/.exec(text);
  return got ? got[1] : undefined;
}

test('calledFunction: direct, IBT-PLT, no-PLT and tail calls of aliased imports, as objdump reads them', () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-calls-'));
  try {
    writeFileSync(join(dir, 'a.c'), PROGRAM);
    const variants: Record<string, string[]> = {
      'lazy-plt': ['-O0'],
      'ibt-plt': ['-O2', '-fcf-protection=full', '-Wl,-z,ibtplt'],
      'no-plt': ['-O2', '-fno-plt'],
    };
    const wanted = new Set(['aligned_alloc', 'memalign', '__libc_memalign']);
    for (const [name, flags] of Object.entries(variants)) {
      const bin = join(dir, name);
      execFileSync('gcc', [...flags, '-o', bin, join(dir, 'a.c')]);
      const elf = loadElf(bin);
      const insns = disassemble(bin);
      if (name === 'ibt-plt') assert.ok(elf.section('.plt.sec'), 'the IBT build has .plt.sec');
      // what each wrapper tail-calls, per objdump
      const tailOf = new Map<string, string>();
      for (const i of insns)
        if (i.fn.startsWith('wrap_') && /^(?:bnd )?jmp/.test(i.text)) {
          const imp = importOf(i.text);
          if (imp) tailOf.set(i.fn, imp);
        }
      // -O0 calls and returns (no tail call): then the wrappers' own calls are the call sites
      const tail = name !== 'lazy-plt';
      assert.equal(tailOf.get('wrap_aligned'), tail ? 'aligned_alloc' : undefined, `${name}: objdump's tail call`);
      let checked = 0;
      for (let k = 0; k < insns.length; k++) {
        const i = insns[k]!;
        if ((i.fn !== 'main' && !i.fn.startsWith('wrap_')) || !/^(?:bnd )?call/.test(i.text)) continue;
        const ret = i.next;
        const wrapper = /<(wrap_\w+)>$/.exec(i.text)?.[1];
        const expected = wrapper ? tailOf.get(wrapper) : importOf(i.text);
        const got = calledFunction(elf, ret, wanted);
        if (wrapper && !tail) assert.equal(got, undefined, `${name}: a wrapper that does not jump to an import`);
        if (!expected || !wanted.has(expected)) continue;
        assert.equal(got?.name, expected, `${name}: ${i.text} at 0x${i.addr.toString(16)}`);
        assert.equal(got?.via, wrapper ? 'tail' : name === 'no-plt' ? 'got' : 'plt');
        checked++;
      }
      assert.equal(checked, 4, `${name}: aligned_alloc and memalign from main and from the wrappers`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("calledFunction: every call to an import in Debian's nginx names what objdump names", (t) => {
  const bin = '/usr/sbin/nginx';
  if (!existsSync(bin)) return t.skip('nginx is not installed');
  const elf = loadElf(bin);
  const insns = disassemble(bin);
  let plt = 0,
    got = 0,
    other = 0;
  for (let k = 0; k < insns.length; k++) {
    const i = insns[k]!;
    if (!/^(?:bnd )?call/.test(i.text)) continue;
    const expected = importOf(i.text);
    const c = calledFunction(elf, i.next);
    if (expected) {
      assert.equal(c?.name, expected, `${i.text} at 0x${i.addr.toString(16)}`);
      if (c!.via === 'plt') plt++;
      else got++;
    } else if (/^call\s+[0-9a-f]+ <[\w.]+(?:@@Base)?>$/.test(i.text)) {
      // a direct call inside nginx is no import (no wanted names: no tail-call search)
      assert.equal(c, undefined, `${i.text} at 0x${i.addr.toString(16)}`);
      other++;
    }
  }
  console.log(
    `# nginx: ${plt} calls through the PLT, ${got} through GOT slots, ${other} local calls: all as objdump reads them`,
  );
  assert.ok(plt > 1000 && other > 1000);
});

test('calledFunction: hostile bytes (a call into garbage, slots out of range, a truncated file) give undefined', () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-calls-'));
  try {
    writeFileSync(join(dir, 'a.c'), PROGRAM);
    const bin = join(dir, 'a');
    execFileSync('gcc', ['-O0', '-o', bin, join(dir, 'a.c')]);
    const bytes = new Uint8Array(readFileSync(bin));
    const elf = parseElf(bytes, 'a');
    const insns = disassemble(bin);
    const k = insns.findIndex((i) => i.fn === 'main' && /aligned_alloc@plt/.test(i.text));
    const ret = insns[k]!.next;
    assert.equal(calledFunction(elf, ret)?.name, 'aligned_alloc');
    // the call's rel32 pointing far outside the file, then at the middle of an instruction
    for (const rel of [0x7fffff00, -0x7fffff00, 1]) {
      const b = bytes.slice();
      new DataView(b.buffer).setInt32(elf.vaddrToFileOffset(ret - 4)!, rel, true);
      assert.equal(calledFunction(parseElf(b, 'a'), ret, new Set(['aligned_alloc'])), undefined, `rel32 ${rel}`);
    }
    // return addresses outside any segment, at the file's first bytes
    for (const r of [0, 3, -1, 2 ** 52, Number.MAX_SAFE_INTEGER]) assert.equal(calledFunction(elf, r), undefined);
    // the slot's relocation entry pointing at a symbol index past .dynsym, then a name past .dynstr
    const rela = elf.section('.rela.plt')!;
    const slotEntry = (b: Uint8Array) => {
      const e = parseElf(b, 'a');
      for (let o = rela.offset; o < rela.offset + rela.size; o += 24) {
        const sym = new DataView(b.buffer).getUint32(o + 12, true);
        const nameOff = new DataView(b.buffer).getUint32(e.sections[rela.link]!.offset + sym * 24, true);
        const name = Buffer.from(b.subarray(e.sections[e.sections[rela.link]!.link]!.offset + nameOff)).toString(
          'latin1',
        );
        if (name.startsWith('aligned_alloc\0')) return { o, sym };
      }
      throw new Error('no aligned_alloc slot');
    };
    {
      const b = bytes.slice();
      new DataView(b.buffer).setUint32(slotEntry(b).o + 12, 0xfffffff, true);
      assert.equal(calledFunction(parseElf(b, 'a'), ret), undefined, 'symbol index past .dynsym');
    }
    {
      const b = bytes.slice();
      const { sym } = slotEntry(b);
      new DataView(b.buffer).setUint32(elf.sections[rela.link]!.offset + sym * 24, 0xffffff0, true);
      assert.equal(calledFunction(parseElf(b, 'a'), ret), undefined, 'name offset past .dynstr');
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
