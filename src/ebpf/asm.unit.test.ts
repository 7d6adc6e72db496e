import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  R0,
  R1,
  R2,
  R6,
  R8,
  R10,
  add64,
  assemble,
  call,
  disassemble,
  exit,
  ja,
  jeq,
  jne,
  label,
  ldImm64,
  ldMap,
  ldx,
  mov64,
  rsh64,
  st,
  stx,
  tgidFilter,
} from './asm.js';

// Ground truth: encodings from the kernel's instruction-set document and the verified
// python example (shared/reference/ebpf-probe.py: `ins(code, dst, src, off, imm)`).
const hex = (b: Buffer): string => b.toString('hex');

test('asm: single instructions encode as the kernel documents', () => {
  // r6 = r1: BPF_ALU64|BPF_MOV|BPF_X = 0xbf, dst 6, src 1 -> regs byte 0x16
  assert.equal(hex(assemble([mov64(R6, R1)]).bytes), 'bf16000000000000');
  // r2 = 88: 0xb7, imm 88
  assert.equal(hex(assemble([mov64(R2, 88)]).bytes), 'b702000058000000');
  // call 131 (ringbuf_reserve): 0x85, imm 131
  assert.equal(hex(assemble([call('ringbuf_reserve')]).bytes), '8500000083000000');
  // *(u64 *)(r8 + 8) = r1: BPF_STX|BPF_DW|BPF_MEM = 0x7b, dst 8 src 1 -> 0x18, off 8
  assert.equal(hex(assemble([stx('dw', R8, 8, R1)]).bytes), '7b18080000000000');
  // r1 = *(u64 *)(r6 + 128): 0x79, dst 1 src 6 -> 0x61, off 128
  assert.equal(hex(assemble([ldx('dw', R1, R6, 128)]).bytes), '7961800000000000');
  // *(u32 *)(r10 - 4) = 0: 0x62, dst 10 -> 0x0a, off -4 = 0xfffc
  assert.equal(hex(assemble([st('w', R10, -4, 0)]).bytes), '620afcff00000000');
  // r0 >>= 32: 0x77
  assert.equal(hex(assemble([rsh64(R0, 32)]).bytes), '7700000020000000');
  // r1 += -4: imm sign-extended
  assert.equal(hex(assemble([add64(R1, -4)]).bytes), '07010000fcffffff');
  assert.equal(hex(assemble([exit()]).bytes), '9500000000000000');
});

test('asm: ld_imm64 takes two slots; a map reference carries BPF_PSEUDO_MAP_FD and the fd', () => {
  const a = assemble([ldImm64(R1, 0x1122334455667788n)]);
  assert.equal(a.insnCount, 2);
  assert.equal(hex(a.bytes), '1801000088776655' + '0000000044332211');
  const m = assemble([ldMap(R1, { fd: 7, name: 'rb' })]);
  // src 1 (pseudo map fd) in the high nibble: regs byte 0x11; imm = fd
  assert.equal(hex(m.bytes), '1811000007000000' + '0000000000000000');
});

test('asm: jump offsets count from the next instruction and skip ld_imm64 as two slots', () => {
  const { bytes } = assemble([
    jeq(R0, 0, 'out'), //       0: +3 (over 1, 2-3)
    ldImm64(R1, 1), //          1-2
    ja('out'), //               3: +0
    label('out'),
    exit(), //                  4
  ]);
  assert.equal(bytes.readInt16LE(2), 3);
  assert.equal(bytes.readInt16LE(3 * 8 + 2), 0);
  const back = assemble([label('top'), mov64(R0, 0), jne(R0, 1, 'top'), exit()]).bytes;
  assert.equal(back.readInt16LE(8 + 2), -2);
});

test('asm: unknown and duplicate labels are errors; macros nest', () => {
  assert.throws(() => assemble([ja('nowhere')]), /unknown label "nowhere"/);
  assert.throws(() => assemble([label('a'), label('a')]), /duplicate label "a"/);
  const { insnCount } = assemble([tgidFilter(1234, 'out'), label('out'), exit()]);
  assert.equal(insnCount, 4);
  assert.throws(() => mov64(R0, 2 ** 32), /does not fit/);
});

test('asm: the listing reads like the kernel verifier log', () => {
  const text = disassemble([mov64(R6, R1), ldx('dw', R1, R6, 112), jeq(R1, 0, 'out'), label('out'), exit()]);
  assert.match(text, /0: r6 mov= r1/);
  assert.match(text, /1: r1 = \*\(u64 \*\)\(r6 \+ 112\)/);
  assert.match(text, /2: if r1 jeq 0 goto out/);
});
