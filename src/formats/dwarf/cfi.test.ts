// CIE / FDE parsing and CFA programs from annotated byte arrays (one comment per field), pointer
// encodings, the DWARF expression subset, malformed inputs, and the real .eh_frame of nginx and libc
// checked against the linker's .eh_frame_hdr and binutils' `readelf -wF`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ByteReader } from '../../binary/byte-reader.js';
import { LeakscopeError, isLeakscopeError } from '../../model/errors.js';
import { loadElf } from '../elf/index.js';
import {
  type CfiSection,
  type RegisterRule,
  type UnwindRow,
  DW_REG,
  DW_REG_NAMES,
  parseCfiSection,
  parseFde,
  parseCie,
  unwindRowAt,
  unwindTable,
  readEncodedPointer,
  evaluateExpression,
  ExpressionUnavailable,
  findFdeInSorted,
} from './cfi.js';
import { parseEhFrameHdr, searchEhFrameHdr, ehFrameHdrEntries } from './eh-frame-hdr.js';

const bytes = (...parts: Array<number | number[]>): Uint8Array => new Uint8Array(parts.flat());
const u32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
const u64 = (v: number): number[] => [...u32(v % 2 ** 32), ...u32(Math.floor(v / 2 ** 32))];
const s32 = (v: number): number[] => u32(v >>> 0);

const RBP = DW_REG.rbp,
  RBX = DW_REG.rbx,
  RA = DW_REG.ra;

function cfaOf(row: UnwindRow): string {
  return row.cfa.kind === 'register-offset' ? `r${row.cfa.register}+${row.cfa.offset}` : 'exp';
}
function rule(row: UnwindRow, reg: number): RegisterRule | undefined {
  return row.registers.get(reg);
}

// ---- A hand-made .eh_frame at vaddr 0x1000: CIE "zR" (pcrel|sdata4) + one FDE for [0x2000, 0x2040) ----
const EH_VADDR = 0x1000;
const ehFrame = bytes(
  // CIE @0
  u32(20), // length (bytes after this field)
  u32(0), // CIE id 0 (.eh_frame)
  1, // version
  0x7a,
  0x52,
  0, // augmentation "zR"
  1, // code alignment 1
  0x78, // data alignment -8 (sleb)
  16, // return address register (rip)
  1, // augmentation data length
  0x1b, // R: FDE encoding DW_EH_PE_pcrel | DW_EH_PE_sdata4
  0x0c,
  7,
  8, // DW_CFA_def_cfa rsp+8
  0x90,
  1, // DW_CFA_offset r16 at cfa-8
  0,
  0, // DW_CFA_nop padding
  // FDE @24
  u32(30), // length
  u32(28), // CIE pointer: this field (offset 28) - 28 = CIE @0
  s32(0x2000 - (EH_VADDR + 32)), // pc_begin, pcrel from its own vaddr 0x1020
  u32(0x40), // pc_range
  0, // augmentation data length
  0x41, // DW_CFA_advance_loc 1          -> 0x2001
  0x0e,
  16, // DW_CFA_def_cfa_offset 16
  0x86,
  2, // DW_CFA_offset rbp at cfa-16
  0x44, // DW_CFA_advance_loc 4          -> 0x2005
  0x0d,
  6, // DW_CFA_def_cfa_register rbp
  0x0a, // DW_CFA_remember_state
  0x4a, // DW_CFA_advance_loc 10         -> 0x200f
  0x0c,
  7,
  8, // DW_CFA_def_cfa rsp+8
  0xc6, // DW_CFA_restore rbp
  0x41, // DW_CFA_advance_loc 1          -> 0x2010
  0x0b, // DW_CFA_restore_state
  0, // DW_CFA_nop
  u32(0), // zero terminator
);
const ehSec: CfiSection = { kind: 'eh_frame', bytes: ehFrame, vaddr: EH_VADDR };

test('CIE "zR" and FDE from bytes: fields and pcrel pc_begin', () => {
  const { cies, fdes } = parseCfiSection(ehSec);
  assert.equal(cies.length, 1);
  assert.deepEqual(
    {
      aug: cies[0]!.augmentation,
      caf: cies[0]!.codeAlign,
      daf: cies[0]!.dataAlign,
      ra: cies[0]!.returnAddressRegister,
      enc: cies[0]!.fdeEncoding,
    },
    { aug: 'zR', caf: 1, daf: -8, ra: 16, enc: 0x1b },
  );
  assert.equal(fdes.length, 1);
  assert.equal(fdes[0]!.pcBegin, 0x2000);
  assert.equal(fdes[0]!.pcEnd, 0x2040);
  assert.equal(fdes[0]!.offset, 24);
  assert.equal(findFdeInSorted(fdes, 0x203f)?.offset, 24);
  assert.equal(findFdeInSorted(fdes, 0x2040), undefined);
  assert.equal(findFdeInSorted(fdes, 0x1fff), undefined);
});

test('CFA program rows: def_cfa_offset, offset, def_cfa_register, remember/restore_state, restore', () => {
  const fde = parseFde(ehSec, 24);
  const at = (pc: number) => unwindRowAt(ehSec, fde, pc);
  assert.equal(cfaOf(at(0x2000)), 'r7+8');
  assert.deepEqual(rule(at(0x2000), RA), { kind: 'offset', offset: -8 });
  assert.equal(rule(at(0x2000), RBP), undefined);
  assert.equal(cfaOf(at(0x2001)), 'r7+16');
  assert.deepEqual(rule(at(0x2004), RBP), { kind: 'offset', offset: -16 });
  assert.equal(cfaOf(at(0x2005)), 'r6+16');
  assert.equal(cfaOf(at(0x200e)), 'r6+16');
  assert.equal(cfaOf(at(0x200f)), 'r7+8');
  assert.equal(rule(at(0x200f), RBP), undefined, 'restore: back to the CIE rule (none)');
  assert.equal(cfaOf(at(0x2010)), 'r6+16', 'restore_state brings back the CFA rule too');
  assert.deepEqual(rule(at(0x203f), RBP), { kind: 'offset', offset: -16 });
  assert.deepEqual([at(0x2006).start, at(0x2006).end], [0x2005, 0x200f]);
  assert.deepEqual(
    unwindTable(ehSec, fde).map((r) => [r.start, cfaOf(r)]),
    [
      [0x2000, 'r7+8'],
      [0x2001, 'r7+16'],
      [0x2005, 'r6+16'],
      [0x200f, 'r7+8'],
      [0x2010, 'r6+16'],
    ],
  );
});

/** An .eh_frame with a CIE without augmentation (absptr pc_begin) and one FDE [0x4000, 0x5000). */
function ehWith(cieInstr: number[], fdeInstr: number[]): CfiSection {
  const cieBody = [...u32(0), 1, 0, /* aug "" */ 4 /* caf 4 */, 0x78, 16, ...cieInstr];
  const fdeBody = [...u32(4 + cieBody.length + 4), ...u64(0x4000), ...u64(0x1000), ...fdeInstr];
  return { kind: 'eh_frame', vaddr: 0, bytes: bytes(u32(cieBody.length), cieBody, u32(fdeBody.length), fdeBody) };
}
function rowsOf(sec: CfiSection, pc: number): UnwindRow {
  const { fdes } = parseCfiSection(sec);
  return unwindRowAt(sec, fdes[0]!, pc);
}

test('every other CFA opcode', () => {
  const sec = ehWith(
    [0x0c, 7, 8, 0x90, 1, 0x08, 3], // CIE: def_cfa rsp+8; offset ra cfa-8; same_value rbx
    [
      0x05,
      12,
      2, // offset_extended r12, 2*-8 = -16
      0x11,
      13,
      0x7d, // offset_extended_sf r13, -3*-8 = +24
      0x07,
      14, // undefined r14
      0x09,
      15,
      3, // register r15 = rbx
      0x14,
      1,
      2, // val_offset rdx = cfa-16
      0x15,
      2,
      0x7f, // val_offset_sf rcx = cfa+8
      0x2f,
      4,
      1, // GNU_negative_offset_extended rsi at cfa+8
      0x2e,
      16, // GNU_args_size 16 (ignored)
      0x02,
      1, // advance_loc1 1*4       -> 0x4004
      0x12,
      6,
      0x7e, // def_cfa_sf rbp, -2*-8 = 16
      0x06,
      12, // restore_extended r12 (no CIE rule -> gone)
      0x03,
      2,
      0, // advance_loc2 2*4       -> 0x400c
      0x13,
      0x7c, // def_cfa_offset_sf -4*-8 = 32
      0x08,
      15, // same_value r15
      0x04,
      1,
      0,
      0,
      0, // advance_loc4 1*4       -> 0x4010
      0x10,
      3,
      2,
      0x77,
      0x10, // expression rbx: breg7 16
      0x16,
      5,
      1,
      0x31, // val_expression rdi: lit1
      0x0f,
      3,
      0x76,
      0x08,
      0x06, // def_cfa_expression: breg6 8; deref
      0x01,
      ...u64(0x4100), // set_loc 0x4100
      0xc3, // restore rbx (CIE: same value)
    ],
  );
  let r = rowsOf(sec, 0x4000);
  assert.equal(cfaOf(r), 'r7+8');
  assert.deepEqual(rule(r, 12), { kind: 'offset', offset: -16 });
  assert.deepEqual(rule(r, 13), { kind: 'offset', offset: 24 });
  assert.deepEqual(rule(r, 14), { kind: 'undefined' });
  assert.deepEqual(rule(r, 15), { kind: 'register', register: 3 });
  assert.deepEqual(rule(r, 1), { kind: 'val-offset', offset: -16 });
  assert.deepEqual(rule(r, 2), { kind: 'val-offset', offset: 8 });
  assert.deepEqual(rule(r, 4), { kind: 'offset', offset: 8 });
  assert.deepEqual(rule(r, RBX), { kind: 'same-value' });
  r = rowsOf(sec, 0x4004);
  assert.equal(cfaOf(r), 'r6+16');
  assert.equal(rule(r, 12), undefined);
  r = rowsOf(sec, 0x400c);
  assert.equal(cfaOf(r), 'r6+32');
  assert.deepEqual(rule(r, 15), { kind: 'same-value' });
  r = rowsOf(sec, 0x4010);
  assert.equal(cfaOf(r), 'exp');
  assert.equal(rule(r, RBX)?.kind, 'expression');
  assert.equal(rule(r, 5)?.kind, 'val-expression');
  assert.deepEqual([r.start, r.end], [0x4010, 0x4100]);
  r = rowsOf(sec, 0x4100);
  assert.deepEqual(rule(r, RBX), { kind: 'same-value' });
});

test('CIE "zPLR": personality (indirect pcrel), LSDA in the FDE, and signal frames "zRS"', () => {
  const V = 0x10000;
  const sec: CfiSection = {
    kind: 'eh_frame',
    vaddr: V,
    bytes: bytes(
      // CIE @0 (28 bytes after the length)
      u32(28),
      u32(0),
      1,
      [0x7a, 0x50, 0x4c, 0x52, 0], // id 0, version 1, "zPLR"
      1,
      0x78,
      16, // caf 1, daf -8, RA 16
      7, // augmentation data length: P enc + 4, L enc, R enc
      0x9b,
      s32(0x100), // P: indirect|pcrel|sdata4, field @19 -> V+19+0x100 (not dereferenced)
      0x1b, // L: pcrel|sdata4
      0x1b, // R: pcrel|sdata4
      0x0c,
      7,
      8,
      0x90,
      1,
      0,
      0,
      // FDE @32 (24 bytes)
      u32(24),
      u32(36), // CIE pointer: field @36 - 36 = CIE @0
      s32(0x500 - 40), // pc_begin @40, pcrel
      u32(0x10), // pc_range
      4, // augmentation data length
      s32(0x800 - 49), // LSDA @49, pcrel
      0,
      0,
      0,
      0,
      0,
      0,
      0,
      // CIE "zRS" @60 (16 bytes)
      u32(16),
      u32(0),
      1,
      [0x7a, 0x52, 0x53, 0],
      1,
      0x78,
      16,
      1,
      0x1b,
      0,
      0,
      // FDE @80 (16 bytes): CIE pointer field @84 - 24 = CIE @60
      u32(16),
      u32(24),
      s32(0x900 - 88),
      u32(0x8),
      0,
      0,
      0,
      0,
    ),
  };
  const { cies, fdes } = parseCfiSection(sec);
  const cie = cies.find((c) => c.offset === 0)!;
  assert.equal(cie.augmentation, 'zPLR');
  assert.deepEqual(cie.personality, { value: V + 19 + 0x100, indirect: true });
  assert.equal(cie.lsdaEncoding, 0x1b);
  const f = fdes.find((x) => x.offset === 32)!;
  assert.equal(f.pcBegin, V + 0x500);
  assert.deepEqual(f.lsda, { value: V + 0x800, indirect: false });
  const s = fdes.find((x) => x.offset === 80)!;
  assert.equal(s.pcBegin, V + 0x900);
  assert.equal(s.cie.signalFrame, true);
  assert.equal(unwindRowAt(sec, s, s.pcBegin).signalFrame, true);
  assert.equal(parseCie(sec, 60).augmentation, 'zRS');
});

test('.debug_frame: CIE id 0xffffffff, version 4, FDE CIE pointer = section offset; 64-bit DWARF lengths', () => {
  // 32-bit format: CIE @0, FDE @20.
  const cie = [
    ...u32(0xffffffff),
    4,
    0,
    8 /* address size */,
    0 /* segment size */,
    1,
    0x78,
    16 /* uleb RA */,
    0x0c,
    7,
    8,
    0x90,
    1,
  ];
  const fde = [...u32(0) /* CIE @0 */, ...u64(0x401000), ...u64(0x20), 0x41, 0x0e, 16];
  // 64-bit format: length 0xffffffff then a u64 length; ids are u64 (CIE id 0xffffffffffffffff).
  const off64 = 4 + cie.length + 4 + fde.length;
  const cie64 = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 4, 0, 8, 0, 1, 0x78, 16, 0x0c, 7, 8, 0x90, 1];
  const fde64 = [...u64(off64), ...u64(0x402000), ...u64(0x10), 0x42, 0x0e, 32];
  const sec: CfiSection = {
    kind: 'debug_frame',
    vaddr: 0,
    bytes: bytes(
      u32(cie.length),
      cie,
      u32(fde.length),
      fde,
      u32(0xffffffff),
      u64(cie64.length),
      cie64,
      u32(0xffffffff),
      u64(fde64.length),
      fde64,
    ),
  };
  const { cies, fdes } = parseCfiSection(sec);
  assert.equal(cies.length, 2);
  assert.equal(cies[0]!.version, 4);
  assert.deepEqual(
    fdes.map((f) => [f.pcBegin, f.pcEnd]),
    [
      [0x401000, 0x401020],
      [0x402000, 0x402010],
    ],
  );
  assert.equal(cfaOf(unwindRowAt(sec, fdes[0]!, 0x401001)), 'r7+16');
  assert.equal(cfaOf(unwindRowAt(sec, fdes[1]!, 0x402001)), 'r7+8');
  assert.equal(cfaOf(unwindRowAt(sec, fdes[1]!, 0x402002)), 'r7+32');
});

test('pointer encodings: absptr, uleb, udata2/4/8, sleb, sdata2/4/8, pcrel, datarel, textrel, funcrel, aligned', () => {
  const bases = { sectionVaddr: 0x1000, textVaddr: 0x5000, dataVaddr: 0x9000, funcVaddr: 0x7000 };
  const read = (enc: number, b: number[], pos = 0) => {
    const r = new ByteReader(new Uint8Array(b), { pos });
    const v = readEncodedPointer(r, enc, bases).value;
    return [v, r.pos];
  };
  assert.deepEqual(read(0x00, u64(0x123456789a)), [0x123456789a, 8]);
  assert.deepEqual(read(0x01, [0xe5, 0x8e, 0x26]), [624485, 3]);
  assert.deepEqual(read(0x02, [0x34, 0x12]), [0x1234, 2]);
  assert.deepEqual(read(0x03, u32(0xfffffff0)), [0xfffffff0, 4]);
  assert.deepEqual(read(0x04, u64(2 ** 40)), [2 ** 40, 8]);
  assert.deepEqual(read(0x09 | 0x10, [0x7f], 0).map(Number), [0x1000 - 1, 1]); // sleb -1, pcrel
  assert.deepEqual(read(0x0a | 0x30, [0xfe, 0xff]), [0x9000 - 2, 2]); // sdata2, datarel
  assert.deepEqual(read(0x0b | 0x20, s32(-0x10)), [0x5000 - 0x10, 4]); // sdata4, textrel
  assert.deepEqual(read(0x0c | 0x40, u64(0x20)), [0x7020, 8]); // sdata8, funcrel
  assert.deepEqual(read(0x1b, [0, 0, 0, 0, ...s32(0x100)], 4), [0x1000 + 4 + 0x100, 8]); // pcrel uses the field's vaddr
  assert.deepEqual(read(0x50, [0, 0, 0, 0, 0, 0, 0, 0, ...u64(0xabc)], 3), [0xabc, 16]); // aligned: skip to 8
  assert.deepEqual(read(0x0b, s32(-1)), [2 ** 64 - 1, 4], 'absolute negative wraps modulo 2^64');
  assert.throws(
    () => read(0x07, [0]),
    (e) => isLeakscopeError(e) && e.code === 'malformed',
  );
  assert.throws(
    () => read(0xff, [0]),
    (e) => isLeakscopeError(e) && e.code === 'malformed',
  );
  assert.throws(() => readEncodedPointer(new ByteReader(new Uint8Array(4)), 0x33, { sectionVaddr: 0 }), /datarel/);
});

test('DWARF expressions: the PLT CFA rule, glibc signal-frame rules, arithmetic and branches', () => {
  // PLT: DW_OP_breg7 8; DW_OP_breg16 0; DW_OP_lit15; DW_OP_and; DW_OP_lit11; DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus
  const plt = bytes(0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22);
  const ctx = (rip: number) => ({
    register: (n: number) => (n === 7 ? 0x7ffe0000n : n === 16 ? BigInt(rip) : undefined),
    readMemory: (a: bigint) => (a === 0x7ffe00a0n ? 0x7ffe1234n : undefined),
  });
  assert.equal(evaluateExpression(plt, ctx(0x1020)), 0x7ffe0008n);
  assert.equal(evaluateExpression(plt, ctx(0x102a)), 0x7ffe0008n);
  assert.equal(evaluateExpression(plt, ctx(0x102b)), 0x7ffe0010n);
  assert.equal(evaluateExpression(plt, ctx(0x102f)), 0x7ffe0010n);
  // glibc __restore_rt: CFA = *(rsp + 160); rbx saved at rsp + 128 (the CFA is pushed first, then ignored).
  assert.equal(evaluateExpression(bytes(0x77, 0xa0, 0x01, 0x06), ctx(0)), 0x7ffe1234n);
  assert.equal(evaluateExpression(bytes(0x77, 0x80, 0x01), ctx(0), [0x999n]), 0x7ffe0080n);
  // const/dup/swap/over/pick/rot/minus/mul/div/mod/neg/abs/not/or/xor/shr/shra/plus_uconst/lt/eq/ne/le/gt/bra/skip
  const e = (...b: number[]) => evaluateExpression(new Uint8Array(b), ctx(0));
  assert.equal(e(0x08, 200, 0x09, 0xfe, 0x22), 198n); // const1u 200 + const1s -2
  assert.equal(e(0x0a, 0x10, 0x27, 0x0b, 0xff, 0xff, 0x1c), 10001n); // 10000 - (-1)
  assert.equal(e(0x0c, ...u32(7), 0x0d, ...s32(-3), 0x1e), 2n ** 64n - 21n); // 7 * -3 (mod 2^64)
  assert.equal(e(0x11, 0x79, 0x19), 7n); // consts -7; abs
  assert.equal(e(0x39, 0x32, 0x1b), 4n); // 9 / 2
  assert.equal(e(0x39, 0x32, 0x1d), 1n); // 9 mod 2
  assert.equal(e(0x35, 0x1f), 2n ** 64n - 5n); // neg 5
  assert.equal(e(0x30, 0x20), 2n ** 64n - 1n); // not 0
  assert.equal(e(0x31, 0x32, 0x21, 0x33, 0x27), 0n); // (1|2)^3
  assert.equal(e(0x10, 0x80, 0x01, 0x33, 0x25), 16n); // constu 128 >> 3
  assert.equal(e(0x11, 0x70, 0x32, 0x26), 2n ** 64n - 4n); // -16 >>a 2
  assert.equal(e(0x31, 0x23, 0x05), 6n); // plus_uconst 5
  assert.equal(e(0x31, 0x32, 0x16, 0x1c), 1n); // swap: 2 - 1
  assert.equal(e(0x31, 0x32, 0x14, 0x22, 0x22), 4n); // over: 1 + (2 + 1)
  assert.equal(e(0x31, 0x32, 0x33, 0x15, 2, 0x22, 0x22, 0x22), 7n); // pick 2
  assert.equal(e(0x31, 0x32, 0x33, 0x17, 0x13, 0x13), 3n); // rot: [3,1,2] -> bottom is 3
  assert.equal(e(0x31, 0x12, 0x22), 2n); // dup
  assert.equal(e(0x11, 0x7f, 0x30, 0x2d), 1n); // -1 < 0 (signed)
  assert.equal(e(0x32, 0x32, 0x29, 0x32, 0x33, 0x2e, 0x22), 2n); // eq + ne
  assert.equal(e(0x32, 0x33, 0x2c, 0x32, 0x33, 0x2b, 0x22), 1n); // le + gt
  assert.equal(e(0x31, 0x28, 2, 0, 0x35, 0x96, 0x36), 6n); // bra taken over lit5
  assert.equal(e(0x2f, 1, 0, 0x35, 0x37), 7n); // skip
  assert.equal(e(0x03, ...u64(0x1234)), 0x1234n); // addr
  assert.equal(e(0x92, 7, 0x10), 0x7ffe0010n); // bregx rsp 16
  assert.throws(() => e(0x92, 3, 0), ExpressionUnavailable); // rbx unknown
  assert.throws(() => e(0x30, 0x06), ExpressionUnavailable); // deref of unreadable memory
  const bad = (...b: number[]) =>
    assert.throws(
      () => e(...b),
      (x) => isLeakscopeError(x) && x.code === 'malformed',
      b.join(','),
    );
  bad(0x22); // underflow
  bad(0x2f, 0xfd, 0xff); // skip -3: loops, stopped by the step cap
  bad(0x2f, 0x10, 0); // skip outside
  bad(0x50); // DW_OP_reg0: a location, not a value
  bad(0x08); // truncated operand
  bad(); // empty
  bad(0x30, 0x30, 0x1b); // division by zero
  bad(...new Array(65).fill(0x30)); // stack overflow
});

test('malformed inputs raise LeakscopeError("malformed")', () => {
  const malformed = (sec: CfiSection, f: (s: CfiSection) => unknown = parseCfiSection) =>
    assert.throws(
      () => f(sec),
      (e) => isLeakscopeError(e) && e.code === 'malformed',
      String(sec.bytes),
    );
  const cieOk = [...u32(0), 1, 0, 1, 0x78, 16, 0x0c, 7, 8];
  const withFde = (fdeBody: number[], cie = cieOk): CfiSection => ({
    kind: 'eh_frame',
    vaddr: 0,
    bytes: bytes(u32(cie.length), cie, u32(fdeBody.length), fdeBody),
  });
  malformed({ kind: 'eh_frame', vaddr: 0, bytes: bytes(u32(100), u32(0), 1) }); // length past the end
  malformed(withFde([...u32(0), ...u64(0), ...u64(1)], [...u32(0), 9, 0, 1, 0x78, 16])); // CIE version 9
  malformed(withFde([...u32(0), ...u64(0), ...u64(1)], [...u32(0), 1, 0x65, 0x68, 0, 1, 0x78, 16])); // "eh" augmentation
  malformed(withFde([...u32(999), ...u64(0), ...u64(1)])); // CIE pointer outside
  malformed(withFde([...u32(4 + cieOk.length + 4 - 8), ...u64(0), ...u64(1)])); // CIE pointer into the middle of the CIE
  malformed(withFde([...u32(4 + cieOk.length + 4), ...u64(0)])); // FDE truncated (no pc_range)
  malformed({ kind: 'eh_frame', vaddr: 0, bytes: bytes(u32(0xfffffff5)) }); // reserved length
  const op = (...instr: number[]) => {
    const s = ehWith([0x0c, 7, 8, 0x90, 1], instr);
    malformed(s, (x) => unwindRowAt(x, parseCfiSection(x).fdes[0]!, 0x4fff));
  };
  op(0x3f); // unknown opcode
  op(0x0b); // restore_state with an empty stack
  op(...new Array(65).fill(0x0a)); // remember_state deeper than 64
  op(0x0f, 1, 0x30, 0x0e, 8); // def_cfa_offset while the CFA is an expression
  op(0x0c, 7); // truncated operand
  op(0x10, 3, 9, 0x30); // expression block longer than the FDE
  op(0x05, 0x80, 0x10, 0); // register number 2048
  op(0x01, ...u64(0x10)); // set_loc backwards
  const cieRestore = ehWith([0xc3], []);
  malformed(cieRestore, (x) => unwindRowAt(x, parseCfiSection(x).fdes[0]!, 0x4000)); // restore inside the CIE
  // Not malformed: a pc outside the FDE is 'not-found'.
  assert.throws(
    () => unwindRowAt(ehSec, parseFde(ehSec, 24), 0x3000),
    (e) => isLeakscopeError(e) && e.code === 'not-found',
  );
  assert.throws(
    () => parseFde(ehSec, 0),
    (e) => isLeakscopeError(e) && e.code === 'malformed',
  ); // a CIE, not an FDE
});

// ---- Real binaries ----

interface RealSections {
  eh: CfiSection;
  hdr: ReturnType<typeof parseEhFrameHdr>;
}
function realSections(path: string): RealSections {
  const elf = loadElf(path);
  const eh = elf.section('.eh_frame')!,
    h = elf.section('.eh_frame_hdr')!;
  return {
    eh: { kind: 'eh_frame', bytes: elf.sectionBytes(eh), vaddr: eh.addr, label: `${path} .eh_frame` },
    hdr: parseEhFrameHdr(elf.sectionBytes(h), h.addr),
  };
}

/** `readelf -wF` rows: per FDE pc_begin, then [loc, cfa, {reg: rule}] using readelf's notation. */
function readelfRows(
  path: string,
): Map<number, Array<{ loc: number; cfa: string; regs: Map<number, string> }>> | undefined {
  const r = spawnSync('readelf', ['-wF', path], { encoding: 'utf8', maxBuffer: 1 << 28 });
  // readelf exits 1 on warnings it prints for some files (libc.so.6); the table is still complete.
  if (r.error || !r.stdout.includes('Contents of the .eh_frame section')) return undefined;
  // readelf's column names: the registers', and `ra` for column 16 (the return address).
  const names: string[] = DW_REG_NAMES.map((n) => (n === 'rip' ? 'ra' : n));
  const out = new Map<number, Array<{ loc: number; cfa: string; regs: Map<number, string> }>>();
  let cur: Array<{ loc: number; cfa: string; regs: Map<number, string> }> | undefined;
  let cols: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const f = /FDE cie=\S+ pc=([0-9a-f]+)\.\./.exec(line);
    if (f) {
      cur = [];
      out.set(parseInt(f[1]!, 16), cur);
      continue;
    }
    if (/ CIE /.test(line)) {
      cur = undefined;
      continue;
    }
    // A register rule prints as "r9 (r9)": keep "r9" as one token.
    const t = (line.trim().match(/\S+(?: \([^)]*\))?/g) ?? []).map((x) => x.replace(/ \(.*\)$/, ''));
    if (t[0] === 'LOC') {
      cols = t.slice(2);
      continue;
    }
    if (cur && /^[0-9a-f]{16}$/.test(t[0] ?? '')) {
      const regs = new Map<number, string>();
      cols.forEach((c, i) => {
        const n = names.indexOf(c);
        if (n >= 0) regs.set(n, t[i + 2]!);
      });
      cur.push({ loc: parseInt(t[0]!, 16), cfa: t[1]!, regs });
    }
  }
  return out;
}

function readelfNotation(row: UnwindRow, reg: number): string {
  const r = row.registers.get(reg);
  if (!r || r.kind === 'undefined') return 'u';
  switch (r.kind) {
    case 'same-value':
      return 's';
    case 'offset':
      return `c${r.offset >= 0 ? '+' : ''}${r.offset}`;
    case 'val-offset':
      return `v${r.offset >= 0 ? '+' : ''}${r.offset}`;
    case 'register':
      return `r${r.register}`;
    case 'expression':
      return 'exp';
    case 'val-expression':
      return 'vexp';
  }
}
function cfaNotation(row: UnwindRow): string {
  if (row.cfa.kind === 'expression') return 'exp';
  const n = DW_REG_NAMES[row.cfa.register] ?? `r${row.cfa.register}`;
  return `${n}${row.cfa.offset >= 0 ? '+' : ''}${row.cfa.offset}`;
}

for (const path of ['/usr/sbin/nginx', '/lib/x86_64-linux-gnu/libc.so.6']) {
  test(`every FDE of ${path}: count = .eh_frame_hdr's, hdr search finds each, rows match readelf -wF`, (t) => {
    if (!existsSync(path)) {
      t.skip(`${path} not installed`);
      return;
    }
    const { eh, hdr } = realSections(path);
    const t0 = Date.now();
    const { fdes } = parseCfiSection(eh);
    const parseMs = Date.now() - t0;
    assert.equal(fdes.length, hdr.fdeCount);
    const entries = ehFrameHdrEntries(hdr);
    assert.equal(hdr.ehFrameVaddr, eh.vaddr);
    const byOffset = new Map(fdes.map((f) => [f.offset, f]));
    for (const e of entries) assert.equal(byOffset.get(e.fdeVaddr - eh.vaddr)?.pcBegin, e.initialLocation);
    for (const f of fdes) {
      for (const pc of [f.pcBegin, f.pcEnd - 1, (f.pcBegin + f.pcEnd) >>> 1]) {
        const hit = searchEhFrameHdr(hdr, pc)!;
        assert.equal(hit.fdeVaddr - eh.vaddr, findFdeInSorted(fdes, pc)!.offset);
      }
    }
    let rows = 0,
      compared = 0;
    const ref = readelfRows(path);
    for (const f of fdes) {
      const table = unwindTable(eh, f);
      rows += table.length;
      const want = ref?.get(f.pcBegin);
      if (!want) continue;
      for (const w of want) {
        const row = unwindRowAt(eh, f, w.loc);
        assert.equal(cfaNotation(row), w.cfa, `${path} FDE 0x${f.pcBegin.toString(16)} at 0x${w.loc.toString(16)}`);
        for (const [reg, s] of w.regs) {
          assert.equal(readelfNotation(row, reg), s, `${path} reg ${reg} at 0x${w.loc.toString(16)}`);
        }
        compared++;
      }
    }
    console.log(
      `# ${path}: ${fdes.length} FDEs (parsed in ${parseMs} ms), ${rows} rows, ${compared} rows compared with readelf -wF${ref ? '' : ' (readelf missing)'}`,
    );
    assert.ok(fdes.length > 1000);
  });
}

test('fuzz: random mutations of a real .eh_frame / .eh_frame_hdr end in bounded time with only LeakscopeErrors', () => {
  const { eh, hdr } = realSections('/usr/sbin/nginx');
  // A 4 KiB slice keeps each round fast; its entries are real (CIE at 0 and its FDEs).
  const base = eh.bytes.subarray(0, 4096);
  let seed = 12345;
  const rnd = (n: number) => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const t0 = Date.now();
  let errors = 0,
    ok = 0;
  for (let round = 0; round < 400; round++) {
    const b = new Uint8Array(base);
    for (let k = 1 + rnd(8); k > 0; k--) b[rnd(b.length)] = rnd(4) === 0 ? 0xff : rnd(256);
    const sec: CfiSection = { kind: 'eh_frame', bytes: b, vaddr: eh.vaddr };
    try {
      const { fdes } = parseCfiSection(sec);
      for (const f of fdes.slice(0, 64)) {
        try {
          unwindTable(sec, f);
        } catch (e) {
          if (!isLeakscopeError(e)) throw e;
          errors++;
        }
      }
      ok++;
    } catch (e) {
      if (!(e instanceof LeakscopeError)) throw e;
      errors++;
    }
    const hb = new Uint8Array(hdr.bytes.subarray(0, 256));
    for (let k = 1 + rnd(4); k > 0; k--) hb[rnd(hb.length)] = rnd(256);
    try {
      const h = parseEhFrameHdr(hb, hdr.vaddr);
      for (let i = 0; i < 16; i++) searchEhFrameHdr(h, eh.vaddr + rnd(0x100000));
    } catch (e) {
      if (!isLeakscopeError(e)) throw e;
      errors++;
    }
    const ex = new Uint8Array(rnd(24)).map(() => rnd(256));
    try {
      evaluateExpression(ex, { register: () => 0x1000n, readMemory: () => 0n }, [0n]);
    } catch (e) {
      if (!isLeakscopeError(e) && !(e instanceof ExpressionUnavailable)) throw e;
      errors++;
    }
  }
  const ms = Date.now() - t0;
  console.log(`# fuzz: 400 rounds in ${ms} ms, ${ok} sections parsed, ${errors} LeakscopeErrors`);
  assert.ok(ms < 20000);
  assert.ok(errors > 0);
});
