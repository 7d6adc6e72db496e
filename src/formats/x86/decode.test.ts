// The decoder against GNU objdump (binutils) over every function of real binaries: each FDE of
// .eh_frame gives a function's range; decoded linearly from its start, the instruction starts must
// be objdump's, byte for byte. Debian's nginx, its Lua module and the test module are compiled C;
// libc and libcrypto add hand-written assembly with AVX2 / AVX-512 (VEX / EVEX) encodings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { loadElf } from '../elf/index.js';
import { sweepX86 } from './decode.js';
import { moduleCfiFromElf } from '../../unwind/cfi-cache.js';
import { LEAK_MODULE_PATH, ensureFixturesBuilt } from '../../../test/helpers/build.js';

/** Instruction starts objdump prints, as a set of vaddrs. */
function objdumpStarts(path: string): Set<number> {
  const dis = execFileSync('objdump', ['-d', '--no-show-raw-insn', '-w', path], { maxBuffer: 1 << 30 }).toString();
  const out = new Set<number>();
  for (const m of dis.matchAll(/^ *([0-9a-f]+):\t/gm)) out.add(parseInt(m[1]!, 16));
  return out;
}

function compare(path: string) {
  const elf = loadElf(path);
  const starts = objdumpStarts(path);
  const fdes = moduleCfiFromElf(elf).allFdes().ehFrame;
  const r = { functions: 0, insns: 0, unknown: [] as string[], mismatches: [] as string[], objdumpOffStart: 0 };
  for (const f of fdes) {
    const off = elf.vaddrToFileOffset(f.pcBegin);
    if (off === undefined) continue;
    // objdump decodes linearly from symbols / section starts; where it does not start an
    // instruction at the FDE's start (data before it, or an FDE opening mid-instruction as
    // glibc's signal trampolines do), its boundaries are not comparable.
    if (!starts.has(f.pcBegin)) {
      r.objdumpOffStart++;
      continue;
    }
    const code = elf.reader.bytesAt(off, f.pcEnd - f.pcBegin);
    const sw = sweepX86(code, 0, code.length);
    r.functions++;
    r.insns += sw.insns.length;
    if (sw.unknown) r.unknown.push(`0x${(f.pcBegin + sw.unknown.offset).toString(16)}: ${sw.unknown.reason}`);
    const ours = new Set(sw.insns.map((i) => f.pcBegin + i.offset));
    const end = sw.unknown ? f.pcBegin + sw.unknown.offset : f.pcEnd;
    for (let v = f.pcBegin; v < end; v++)
      if (ours.has(v) !== starts.has(v)) {
        r.mismatches.push(`0x${v.toString(16)}: ours ${ours.has(v)}, objdump ${starts.has(v)}`);
        break;
      }
  }
  console.log(
    `# ${path}: ${r.functions} functions, ${r.insns} instructions; ${r.unknown.length} stopped on an unknown opcode; ${r.objdumpOffStart} FDEs objdump does not start on`,
  );
  return r;
}

test('x86-64 decoder vs objdump: every instruction boundary of every function of nginx, the Lua module and the test module', async () => {
  await ensureFixturesBuilt();
  for (const path of ['/usr/sbin/nginx', '/usr/lib/nginx/modules/ngx_http_lua_module.so', LEAK_MODULE_PATH]) {
    const r = compare(path);
    assert.ok(r.functions > 10, `${path}: functions decoded`);
    assert.deepEqual(r.unknown, [], `${path}: every function decodes`);
    assert.deepEqual(r.mismatches, [], `${path}: boundaries agree with objdump`);
  }
});

test('x86-64 decoder vs objdump: libc and libcrypto (hand-written assembly, VEX / EVEX)', () => {
  for (const path of ['/lib/x86_64-linux-gnu/libc.so.6', '/lib/x86_64-linux-gnu/libcrypto.so.3']) {
    const r = compare(path);
    assert.ok(r.functions > 1000, `${path}: functions decoded`);
    assert.deepEqual(r.mismatches, [], `${path}: boundaries agree with objdump`);
    // What the decoder refuses is only AMD XOP (libcrypto's optional XOP code paths).
    for (const u of r.unknown) assert.match(u, /XOP/, `${path}: ${u}`);
  }
});
