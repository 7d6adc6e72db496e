// Instruction lengths and targets of hand-annotated encodings (Intel SDM vol. 2; each checked
// with `objdump -d` of the same bytes). The whole-binary comparison is decode.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type X86Insn, decodeX86, isUnknown, sweepX86 } from './decode.js';

const CASES: Array<{ bytes: number[]; asm: string; length: number; flow?: string; branch?: number; rip?: number }> = [
  { bytes: [0x55], asm: 'push %rbp', length: 1 },
  { bytes: [0x41, 0x57], asm: 'push %r15', length: 2 },
  { bytes: [0xc3], asm: 'ret', length: 1, flow: 'ret' },
  { bytes: [0xe8, 0x10, 0x00, 0x00, 0x00], asm: 'call .+0x15', length: 5, flow: 'call-rel', branch: 0x15 },
  { bytes: [0xe8, 0xfb, 0xff, 0xff, 0xff], asm: 'call . (rel -5)', length: 5, flow: 'call-rel', branch: 0 },
  { bytes: [0xe9, 0x00, 0x01, 0x00, 0x00], asm: 'jmp .+0x105', length: 5, flow: 'jmp-rel', branch: 0x105 },
  { bytes: [0xeb, 0xfe], asm: 'jmp . (rel8 -2)', length: 2, flow: 'jmp-rel', branch: 0 },
  { bytes: [0x74, 0x10], asm: 'je .+0x12', length: 2, flow: 'jcc', branch: 0x12 },
  { bytes: [0x0f, 0x84, 0x00, 0x02, 0x00, 0x00], asm: 'je .+0x206', length: 6, flow: 'jcc', branch: 0x206 },
  // FF /2 with ModRM 15 = RIP-relative: call *0x100(%rip)
  { bytes: [0xff, 0x15, 0x00, 0x01, 0x00, 0x00], asm: 'call *0x100(%rip)', length: 6, flow: 'call-ind', rip: 0x106 },
  { bytes: [0xff, 0x25, 0xf0, 0xff, 0xff, 0xff], asm: 'jmp *-0x10(%rip)', length: 6, flow: 'jmp-ind', rip: -0x0a },
  { bytes: [0xf2, 0xff, 0x25, 0x00, 0x00, 0x00, 0x00], asm: 'bnd jmp *0(%rip)', length: 7, flow: 'jmp-ind', rip: 7 },
  { bytes: [0xff, 0xd0], asm: 'call *%rax', length: 2, flow: 'call-ind' },
  // REX.W 89 /r mod 01 (disp8): mov %rax,0x18(%rsp) needs a SIB (rm 100)
  { bytes: [0x48, 0x89, 0x44, 0x24, 0x18], asm: 'mov %rax,0x18(%rsp)', length: 5 },
  { bytes: [0x48, 0x89, 0x83, 0x60, 0x01, 0x00, 0x00], asm: 'mov %rax,0x160(%rbx)', length: 7 },
  { bytes: [0x48, 0x85, 0xc0], asm: 'test %rax,%rax', length: 3 },
  // SIB with base 101 and mod 00: disp32, no base
  { bytes: [0x8b, 0x04, 0x25, 0x00, 0x10, 0x00, 0x00], asm: 'mov 0x1000,%eax', length: 7 },
  // lea 0x10(%rip),%rdi: RIP-relative target = end + disp
  { bytes: [0x48, 0x8d, 0x3d, 0x10, 0x00, 0x00, 0x00], asm: 'lea 0x10(%rip),%rdi', length: 7, rip: 0x17 },
  // RIP-relative with an immediate after it: cmpb $0x0,0x20(%rip) -> 80 3d d32 ib; target = end (8) + 0x20
  { bytes: [0x80, 0x3d, 0x20, 0x00, 0x00, 0x00, 0x00], asm: 'cmpb $0x0,0x20(%rip)', length: 7, rip: 0x27 },
  { bytes: [0x48, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8], asm: 'movabs $imm64,%rax', length: 10 },
  { bytes: [0xb8, 1, 0, 0, 0], asm: 'mov $1,%eax', length: 5 },
  { bytes: [0x66, 0xb8, 1, 0], asm: 'mov $1,%ax', length: 4 },
  { bytes: [0x66, 0x81, 0xc0, 1, 0], asm: 'add $1,%ax (imm16)', length: 5 },
  { bytes: [0x48, 0x81, 0xec, 0x00, 0x01, 0x00, 0x00], asm: 'sub $0x100,%rsp', length: 7 },
  { bytes: [0x48, 0x83, 0xec, 0x08], asm: 'sub $8,%rsp', length: 4 },
  // Group 3: test takes an immediate, not/neg/mul/div do not
  { bytes: [0xf6, 0x40, 0x10, 0x01], asm: 'testb $1,0x10(%rax)', length: 4 },
  { bytes: [0xf7, 0xd8], asm: 'neg %eax', length: 2 },
  { bytes: [0xf7, 0xc7, 0x00, 0x01, 0x00, 0x00], asm: 'test $0x100,%edi', length: 6 },
  { bytes: [0xc2, 0x08, 0x00], asm: 'ret $8', length: 3, flow: 'ret' },
  { bytes: [0xc8, 0x10, 0x00, 0x00], asm: 'enter $0x10,$0', length: 4 },
  { bytes: [0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0], asm: 'cs nopw 0x0(%rax,%rax,1)', length: 10 },
  { bytes: [0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0], asm: 'data16 cs nopw', length: 11 },
  { bytes: [0xf3, 0x0f, 0x1e, 0xfa], asm: 'endbr64', length: 4 },
  { bytes: [0xf3, 0x48, 0xab], asm: 'rep stos %rax,%es:(%rdi)', length: 3 },
  { bytes: [0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0, 0, 0], asm: 'mov %fs:0x28,%rax', length: 9 },
  { bytes: [0xf0, 0x0f, 0xb1, 0x17], asm: 'lock cmpxchg %edx,(%rdi)', length: 4 },
  { bytes: [0x0f, 0xaf, 0xc2], asm: 'imul %edx,%eax', length: 3 },
  { bytes: [0x0f, 0xba, 0xe0, 0x03], asm: 'bt $3,%eax', length: 4 },
  { bytes: [0x66, 0x0f, 0x70, 0xc0, 0x00], asm: 'pshufd $0,%xmm0,%xmm0', length: 5 },
  { bytes: [0x66, 0x0f, 0x38, 0x00, 0xc1], asm: 'pshufb %xmm1,%xmm0 (0F38)', length: 5 },
  { bytes: [0x66, 0x0f, 0x3a, 0x0f, 0xc1, 0x08], asm: 'palignr $8,%xmm1,%xmm0 (0F3A)', length: 6 },
  { bytes: [0xf2, 0x0f, 0x10, 0x05, 0, 0, 0, 0], asm: 'movsd 0(%rip),%xmm0', length: 8, rip: 8 },
  // VEX 2-byte (C5) and 3-byte (C4); vzeroupper has no ModRM
  { bytes: [0xc5, 0xf8, 0x77], asm: 'vzeroupper', length: 3 },
  { bytes: [0xc5, 0xfd, 0x6f, 0x06], asm: 'vmovdqa (%rsi),%ymm0', length: 4 },
  { bytes: [0xc4, 0xe2, 0x7d, 0x78, 0xc0], asm: 'vpbroadcastb %xmm0,%ymm0 (map 0F38)', length: 5 },
  { bytes: [0xc4, 0xe3, 0x7d, 0x39, 0xc1, 0x01], asm: 'vextracti128 $1,%ymm0,%xmm1 (map 0F3A, imm8)', length: 6 },
  { bytes: [0xc5, 0xfd, 0x73, 0xd8, 0x04], asm: 'vpsrldq $4,%ymm0,%ymm0 (map 0F, imm8)', length: 5 },
  // EVEX: 62 P0 P1 P2 opcode ModRM [disp8*N]
  { bytes: [0x62, 0xf1, 0xfe, 0x48, 0x6f, 0x06], asm: 'vmovdqu64 (%rsi),%zmm0', length: 6 },
  { bytes: [0x62, 0xf1, 0xfe, 0x48, 0x6f, 0x46, 0x01], asm: 'vmovdqu64 0x40(%rsi),%zmm0 (disp8*64)', length: 7 },
  { bytes: [0x62, 0xf3, 0x7d, 0x48, 0x3f, 0xc1, 0x00], asm: 'vpcmpb $0,%zmm1,%zmm0,%k0 (map 0F3A)', length: 7 },
  { bytes: [0xa1, 1, 2, 3, 4, 5, 6, 7, 8], asm: 'movabs 0x0807060504030201,%eax (moffs64)', length: 9 },
  { bytes: [0xd9, 0xee], asm: 'fldz (x87)', length: 2 },
  { bytes: [0xdd, 0x44, 0x24, 0x08], asm: 'fldl 0x8(%rsp)', length: 4 },
];

test('x86-64 decoder: lengths, branch targets and RIP-relative targets of annotated encodings', () => {
  for (const c of CASES) {
    const d = decodeX86(Uint8Array.from(c.bytes), 0);
    assert.ok(!isUnknown(d), `${c.asm}: ${isUnknown(d) ? d.reason : ''}`);
    const i = d as X86Insn;
    assert.equal(i.length, c.length, c.asm);
    assert.equal(i.flow, c.flow ?? 'other', c.asm);
    assert.equal(i.branchTarget, c.branch, `${c.asm}: branch target`);
    assert.equal(i.ripTarget, c.rip, `${c.asm}: RIP-relative target`);
  }
});

test('x86-64 decoder: invalid or unknown opcodes and truncation are reported, never guessed', () => {
  const unknown: Array<[number[], string]> = [
    [[0x06], 'push %es: invalid in 64-bit mode'],
    [[0x60], 'pusha: invalid in 64-bit mode'],
    [[0xd6], 'salc: invalid'],
    [[0x0f, 0x0f, 0xc1, 0x9e], '3DNow!'],
    [[0x8f, 0xe8, 0x78, 0xcc, 0xc1, 0x00], 'AMD XOP'],
    [[0x66, 0xe8, 0x00, 0x00], '66-prefixed call (rel16 on AMD)'],
    [[0xe8, 0x00, 0x00], 'call with a truncated rel32'],
    [[0x48], 'REX alone'],
    [[0x48, 0x89, 0x44, 0x24], 'disp8 missing'],
    [[...new Array(15).fill(0x66), 0x90], '15 prefixes + opcode: 16 bytes, over the 15-byte limit'],
  ];
  for (const [bytes, what] of unknown) assert.ok(isUnknown(decodeX86(Uint8Array.from(bytes), 0)), what);
  const fourteen = decodeX86(Uint8Array.from([...new Array(14).fill(0x66), 0x90]), 0);
  assert.equal(isUnknown(fourteen) ? 0 : fourteen.length, 15, '14 prefixes + opcode: exactly 15 bytes');
  // `end` bounds the decode: an instruction may not run past it.
  assert.ok(isUnknown(decodeX86(Uint8Array.from([0xe8, 0, 0, 0, 0, 0x90]), 0, 4)));
});

test('x86-64 sweep: boundaries from a start; stops at the first unknown byte', () => {
  // push %rbp; mov %rsp,%rbp; call .+5; test %rax,%rax; je +2; pop %rbp; ret
  const code = Uint8Array.from([0x55, 0x48, 0x89, 0xe5, 0xe8, 0, 0, 0, 0, 0x48, 0x85, 0xc0, 0x74, 0x02, 0x5d, 0xc3]);
  const sw = sweepX86(code, 0, code.length);
  assert.equal(sw.unknown, undefined);
  assert.deepEqual(
    sw.insns.map((i) => i.offset),
    [0, 1, 4, 9, 12, 14, 15],
  );
  const bad = sweepX86(Uint8Array.from([0x90, 0x06, 0x90]), 0, 3);
  assert.deepEqual(
    bad.insns.map((i) => i.offset),
    [0],
  );
  assert.equal(bad.unknown?.offset, 1);
});
