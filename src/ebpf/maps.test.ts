import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  BPF_F_USER_STACK,
  R0,
  R1,
  R2,
  R3,
  R4,
  R6,
  call,
  exit,
  jslt,
  label,
  ldMap,
  mov64,
  stx,
  st,
  add64,
  R10,
} from './asm.js';
import { checkPrivileges } from './features.js';
import {
  BpfMap,
  PerCpuArrayMap,
  RingBufMap,
  StackTraceMap,
  UpdateFlag,
  bytes,
  possibleCpuCount,
  record,
  u32,
  u64,
  u64n,
} from './maps.js';
import { loadProgram } from './prog.js';
import { parseCpuList } from './syscalls.js';
import { TargetProcess, fixturePath, runtimeAddress } from './test-support.js';
import { attachUprobe, resolveUprobeOffset } from './uprobe.js';

const priv = checkPrivileges();
const skip = priv.ok ? false : `needs CAP_BPF: ${priv.detail}`;

test('maps: possible CPU list parsing', () => {
  assert.deepEqual(parseCpuList('0-1\n'), [0, 1]);
  assert.deepEqual(parseCpuList('0,2-3'), [0, 2, 3]);
  assert.equal(
    possibleCpuCount(),
    Math.max(...parseCpuList(readFileSync('/sys/devices/system/cpu/possible', 'utf8'))) + 1,
  );
});

test('maps: codecs round-trip and lay out structs like C', () => {
  const c = record({ addr: u64n, size: u32, tag: u64 });
  assert.equal(c.size, 24); // u64 @0, u32 @8, pad, u64 @16
  const b = Buffer.alloc(24);
  c.encode({ addr: 0x7fff_1234_5678, size: 99, tag: 2n ** 63n }, b, 0);
  assert.equal(b.readUInt32LE(8), 99);
  assert.equal(b.readBigUInt64LE(16), 2n ** 63n);
  assert.deepEqual(c.decode(b, 0), { addr: 0x7fff_1234_5678, size: 99, tag: 2n ** 63n });
});

test('maps: hash CRUD, update flags, iteration, capacity', { skip }, () => {
  const m = new BpfMap({ name: 'h', type: 'hash', key: u64, value: record({ a: u64n, b: u32 }), maxEntries: 4 });
  try {
    assert.equal(m.lookup(1n), undefined);
    m.update(1n, { a: 10, b: 11 });
    m.update(2n, { a: 20, b: 21 }, UpdateFlag.NOEXIST);
    assert.deepEqual(m.lookup(1n), { a: 10, b: 11 });
    assert.throws(() => m.update(1n, { a: 0, b: 0 }, UpdateFlag.NOEXIST), /EEXIST/);
    assert.throws(() => m.update(9n, { a: 0, b: 0 }, UpdateFlag.EXIST), /ENOENT/);
    m.update(1n, { a: 12, b: 13 }, UpdateFlag.EXIST);
    assert.deepEqual(m.lookup(1n), { a: 12, b: 13 });
    m.update(3n, { a: 30, b: 31 });
    m.update(4n, { a: 40, b: 41 });
    assert.throws(() => m.update(5n, { a: 50, b: 51 }), /E2BIG/); // full: maxEntries 4
    assert.deepEqual(m.keys().sort(), [1n, 2n, 3n, 4n]);
    assert.deepEqual(new Map(m.entries()).get(4n), { a: 40, b: 41 });
    assert.equal(m.delete(2n), true);
    assert.equal(m.delete(2n), false);
    assert.equal(m.lookup(2n), undefined);
    assert.equal(m.keys().length, 3);
  } finally {
    m.close();
  }
  assert.throws(() => m.lookup(1n), /closed/);
});

test('maps: LRU hash evicts instead of failing when full', { skip }, () => {
  const m = new BpfMap({ name: 'lru', type: 'lru-hash', key: u32, value: u64, maxEntries: 64 });
  try {
    for (let i = 0; i < 1000; i++) m.update(i, BigInt(i * 2));
    const keys = m.keys();
    assert.ok(keys.length <= 64 + possibleCpuCount() * 64, `LRU holds ${keys.length}`);
    assert.ok(keys.length > 0);
    assert.equal(m.lookup(999), 1998n); // the newest survives
    for (const k of keys) assert.equal(m.lookup(k), BigInt(k * 2));
    assert.equal(m.delete(999), true);
    assert.equal(m.lookup(999), undefined);
  } finally {
    m.close();
  }
});

test('maps: array has every index, zeroed; no delete', { skip }, () => {
  const m = new BpfMap({ name: 'arr', type: 'array', key: u32, value: bytes(12), maxEntries: 5 });
  try {
    assert.deepEqual(m.lookup(3), new Uint8Array(12));
    m.update(3, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
    assert.deepEqual([...m.lookup(3)!], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.equal(m.lookup(5), undefined); // out of range
    assert.throws(() => m.update(5, new Uint8Array(12)), /E2BIG|EINVAL/);
    assert.deepEqual(m.keys(), [0, 1, 2, 3, 4]);
    assert.throws(() => m.delete(3), /EINVAL/);
  } finally {
    m.close();
  }
});

test('maps: per-CPU array holds one value per possible CPU', { skip }, () => {
  const m = new PerCpuArrayMap({ name: 'pc', value: u32, maxEntries: 2 });
  try {
    const n = possibleCpuCount();
    assert.deepEqual(m.lookup(1), new Array(n).fill(0));
    const values = Array.from({ length: n }, (_, c) => 100 + c);
    m.update(1, values);
    assert.deepEqual(m.lookup(1), values);
    m.update(0, 7);
    assert.deepEqual(m.lookup(0), new Array(n).fill(7));
    assert.equal(m.lookup(2), undefined);
  } finally {
    m.close();
  }
});

test('maps: ring buffer size must be a power of two pages', { skip }, () => {
  assert.throws(() => new RingBufMap('bad', 12288), /power of two/);
  const rb = new RingBufMap('rb', 8192);
  assert.ok(rb.fd > 0);
  rb.close();
});

test('maps: stack trace map filled by bpf_get_stackid at a uprobe; lookup and delete', { skip }, async () => {
  const stacks = new StackTraceMap('stacks', 64);
  const ids = new BpfMap({ name: 'ids', type: 'array', key: u32, value: u64, maxEntries: 1 });
  const target = await TargetProcess.start();
  try {
    // ids[0] = get_stackid(ctx, stacks, BPF_F_USER_STACK) + 1 (0 means "no stack yet").
    const prog = loadProgram({
      name: 'stackid',
      body: [
        mov64(R6, R1),
        mov64(R1, R6),
        ldMap(R2, stacks),
        mov64(R3, BPF_F_USER_STACK),
        call('get_stackid'),
        jslt(R0, 0, 'out'),
        add64(R0, 1),
        stx('dw', R10, -16, R0),
        st('w', R10, -4, 0),
        ldMap(R1, ids),
        mov64(R2, R10),
        add64(R2, -4),
        mov64(R3, R10),
        add64(R3, -16),
        mov64(R4, 0),
        call('map_update_elem'), // map_update_elem(ids, &key, &value, BPF_ANY)
        label('out'),
        mov64(R0, 0),
        exit(),
      ],
    });
    const link = attachUprobe(prog, { binaryPath: fixturePath(), symbol: 'ebpf_target_add' }, { pid: target.pid });
    await target.run('add 1 1');
    link.detach();
    prog.close();
    const id = Number(ids.lookup(0)) - 1;
    assert.ok(id >= 0, 'get_stackid returned a stack');
    assert.deepEqual(stacks.stackIds(), [id]);
    const frames = stacks.lookup(id)!;
    const fn = runtimeAddress(
      target.pid,
      fixturePath(),
      resolveUprobeOffset({ binaryPath: fixturePath(), symbol: 'ebpf_target_add' }),
    );
    assert.equal(Number(frames[0]), fn, 'leaf frame is the probed function');
    assert.equal(stacks.delete(id), true);
    assert.equal(stacks.lookup(id), undefined);
    assert.equal(stacks.delete(id), false);
  } finally {
    await target.quit();
    stacks.close();
    ids.close();
  }
});
