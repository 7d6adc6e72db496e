// Uprobes on the ebpf-target fixture, against the fixture's own numbers. Run as root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { checkEbpfSupport } from './features.js';
import { PerCpuArrayMap, RingBufMap, u64 } from './maps.js';
import { listObjectIds, loadProgram, objectInfo } from './prog.js';
import { openRingBuffer, type RingRecord } from './ringbuf.js';
import { closeFd, pidfdGetfd, pidfdOpen } from './syscalls.js';
import {
  CALL_EVENT_SIZE,
  TargetProcess,
  callRecorder,
  fixturePath,
  memoryByte,
  runtimeAddress,
  sumCounter,
} from './test-support.js';
import { attachUprobe, resolveUprobeOffset, uprobePmu } from './uprobe.js';

const failed = checkEbpfSupport().filter((c) => !c.ok);
const skip = failed.length ? `eBPF unavailable: ${failed.map((c) => c.detail).join('; ')}` : false;
const BIN = fixturePath();
const ADD = { binaryPath: BIN, symbol: 'ebpf_target_add' };

interface CallEvent {
  tgid: number;
  tid: number;
  rdi: number;
  rsi: number;
  rax: number;
  ip: number;
}
function decode(r: RingRecord): CallEvent {
  assert.equal(r.length, CALL_EVENT_SIZE);
  return { tgid: r.u32(4), tid: r.u32(0), rdi: r.u64n(8), rsi: r.u64n(16), rax: r.u64n(24), ip: r.u64n(32) };
}

/** A recorder program + ring buffer; `events` fills as the reader drains. */
function recorder(tgid: number | undefined) {
  const rb = new RingBufMap('calls', 1 << 20);
  const drops = new PerCpuArrayMap({ name: 'drops', value: u64, maxEntries: 1 });
  const prog = loadProgram({ name: 'calls', body: callRecorder(rb, drops, tgid) });
  const events: CallEvent[] = [];
  const reader = openRingBuffer(rb, (r) => events.push(decode(r)));
  return {
    prog,
    events,
    drops,
    /** Drain everything committed so far (the fixture's "done" line comes after its calls). */
    drain: () => reader.drain(),
    close() {
      reader.close();
      prog.close();
      rb.close();
      drops.close();
    },
  };
}

/** First byte of the probed instruction as the process sees it (0xcc while a uprobe is in). */
function codeByte(pid: number, fileOffset: number): number {
  const addr = runtimeAddress(pid, BIN, fileOffset);
  assert.ok(addr !== undefined, `ebpf-target mapping in /proc/${pid}/maps`);
  return memoryByte(pid, addr);
}
function fileByte(fileOffset: number): number {
  return readFileSync(BIN)[fileOffset]!;
}
async function eventually(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!check()) {
    if (Date.now() - t0 > ms) assert.fail(`${what}: still not true after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('uprobe: PMU type and retprobe bit come from sysfs', { skip }, () => {
  const pmu = uprobePmu();
  assert.equal(pmu.type, Number(readFileSync('/sys/bus/event_source/devices/uprobe/type', 'utf8')));
  assert.equal(
    `config:${pmu.retprobeBit}`,
    readFileSync('/sys/bus/event_source/devices/uprobe/format/retprobe', 'utf8').trim(),
  );
});

test('uprobe: a function called exactly N times yields exactly N events', { skip }, async () => {
  const N = 2500;
  const target = await TargetProcess.start();
  const rec = recorder(target.pid);
  try {
    const link = attachUprobe(rec.prog, ADD, { pid: target.pid });
    const sum = Number(await target.run(`add ${N} 1`));
    rec.drain();
    link.detach();
    assert.equal(sumCounter(rec.drops), 0, 'no ring buffer drops');
    assert.equal(rec.events.length, N);
    // Ground truth from the fixture: sum of a*3+b over the calls; a = i, b = 1000 + i.
    assert.equal(
      rec.events.reduce((s, e) => s + e.rdi * 3 + e.rsi, 0),
      sum,
    );
  } finally {
    await target.quit();
    rec.close();
  }
});

test('uprobe + uretprobe: arguments and return values', { skip }, async () => {
  const N = 200;
  const target = await TargetProcess.start();
  const entry = recorder(target.pid);
  const ret = recorder(target.pid);
  try {
    const l1 = attachUprobe(entry.prog, ADD, { pid: target.pid });
    // The ioctl attach path (pre-5.15 kernels) for the return probe.
    const l2 = attachUprobe(ret.prog, ADD, { pid: target.pid, retprobe: true, useIoctl: true });
    assert.equal(l2.linkFd, undefined);
    assert.ok(l1.linkFd !== undefined);
    await target.run(`add ${N} 1`);
    entry.drain();
    ret.drain();
    l1.detach();
    l2.detach();
    const fn = runtimeAddress(target.pid, BIN, resolveUprobeOffset(ADD));
    assert.equal(entry.events.length, N);
    assert.equal(ret.events.length, N);
    for (let i = 0; i < N; i++) {
      const e = entry.events[i]!,
        r = ret.events[i]!;
      assert.deepEqual([e.rdi, e.rsi], [i, 1000 + i], `arguments of call ${i}`);
      assert.equal(e.ip, fn, 'entry: rip is the function');
      assert.equal(r.rax, 3 * i + 1000 + i, `return value of call ${i}`);
      assert.notEqual(r.ip, fn, 'return: rip is the caller');
    }
  } finally {
    await target.quit();
    entry.close();
    ret.close();
  }
});

test('uprobe: a probe on one process does not see another running the same binary', { skip }, async () => {
  const a = await TargetProcess.start();
  const b = await TargetProcess.start();
  // Also a system-wide probe on the same offset, which makes the breakpoint fire in every
  // process: the in-BPF tgid filter must still keep B out of A's events.
  const wide = recorder(undefined);
  const rec = recorder(a.pid);
  try {
    const lw = attachUprobe(wide.prog, ADD);
    const la = attachUprobe(rec.prog, ADD, { pid: a.pid });
    await Promise.all([a.run('add 300 1'), b.run('add 700 1')]);
    rec.drain();
    wide.drain();
    la.detach();
    lw.detach();
    assert.equal(rec.events.length, 300);
    assert.deepEqual([...new Set(rec.events.map((e) => e.tgid))], [a.pid]);
    const wideByPid = (pid: number): number => wide.events.filter((e) => e.tgid === pid).length;
    assert.equal(wideByPid(a.pid), 300);
    assert.equal(wideByPid(b.pid), 700);
  } finally {
    await a.quit();
    await b.quit();
    rec.close();
    wide.close();
  }
});

test('uprobe: all threads of the traced process are seen, threads started after attach included', {
  skip,
}, async () => {
  const N = 4000,
    T = 4;
  const target = await TargetProcess.start();
  const rec = recorder(target.pid);
  try {
    const link = attachUprobe(rec.prog, ADD, { pid: target.pid });
    await target.run(`add ${N} ${T}`);
    rec.drain();
    link.detach();
    assert.equal(rec.events.length, N);
    const tids = new Map<number, number>();
    for (const e of rec.events) tids.set(e.tid, (tids.get(e.tid) ?? 0) + 1);
    assert.equal(tids.size, T, 'four distinct threads');
    assert.ok(tids.has(target.pid), 'the main thread is one of them');
    for (const [tid, n] of tids) assert.equal(n, N / T, `thread ${tid} calls`);
    // Each thread t handles i = t, t + T, ...: every i appears once.
    assert.deepEqual(
      rec.events.map((e) => e.rdi).sort((x, y) => x - y),
      Array.from({ length: N }, (_, i) => i),
    );
  } finally {
    await target.quit();
    rec.close();
  }
});

test('uprobe: after detach no events and the breakpoint is gone from the process', { skip }, async () => {
  const target = await TargetProcess.start();
  const rec = recorder(target.pid);
  const off = resolveUprobeOffset(ADD);
  const original = fileByte(off);
  try {
    assert.notEqual(original, 0xcc);
    assert.equal(codeByte(target.pid, off), original);
    const link = attachUprobe(rec.prog, ADD, { pid: target.pid });
    assert.equal(codeByte(target.pid, off), 0xcc, 'int3 written while attached');
    const linkId = objectInfo(link.linkFd!, 'link').id;
    assert.ok(listObjectIds('link').includes(linkId));
    await target.run('add 50 1');
    link.detach();
    assert.equal(codeByte(target.pid, off), original, 'original byte restored');
    assert.ok(!listObjectIds('link').includes(linkId), 'link gone');
    await target.run('add 50 2');
    rec.drain();
    assert.equal(rec.events.length, 50);
  } finally {
    await target.quit();
    rec.close();
  }
});

test('uprobe: SIGKILL of the attaching process removes the probe', { skip }, async () => {
  const target = await TargetProcess.start();
  const off = resolveUprobeOffset(ADD);
  const childScript = join(dirname(fileURLToPath(import.meta.url)), 'test-attach-child.js');
  const child = spawn(process.execPath, [childScript, BIN, String(target.pid)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((r) => child.on('exit', r));
  let counter: PerCpuArrayMap<bigint> | undefined;
  try {
    const line = await new Promise<string>((res, rej) => {
      createInterface({ input: child.stdout }).once('line', res);
      child.once('exit', (c) => rej(new Error(`attach child exited with ${c}`)));
    });
    const m = /^attached (\d+) (\d+) (\d+)$/.exec(line);
    assert.ok(m, `child said "${line}"`);
    const [mapFd, progId, linkId] = [Number(m[1]), Number(m[2]), Number(m[3])];
    // Take our own reference to the child's counter map so we can read it after the kill.
    const pidfd = pidfdOpen(child.pid!);
    const fd = pidfdGetfd(pidfd, mapFd);
    closeFd(pidfd);
    counter = new PerCpuArrayMap({ name: 'child_count', value: u64, maxEntries: 1, fd });
    await target.run('add 100 1');
    assert.equal(sumCounter(counter), 100, 'the child probe counts while it lives');
    assert.equal(codeByte(target.pid, off), 0xcc);
    assert.ok(listObjectIds('prog').includes(progId) && listObjectIds('link').includes(linkId));

    child.kill('SIGKILL');
    await exited;
    await eventually(
      'program and link freed by the kernel',
      () => !listObjectIds('prog').includes(progId) && !listObjectIds('link').includes(linkId),
    );
    await eventually('breakpoint removed from the target', () => codeByte(target.pid, off) === fileByte(off));
    await target.run('add 100 3');
    assert.equal(sumCounter(counter), 100, 'no hits counted after the kill');
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await target.quit();
    counter?.close();
  }
});

test('cleanup: SIGINT detaches probes first, then the program can still report its maps', { skip }, async () => {
  const target = await TargetProcess.start();
  const off = resolveUprobeOffset(ADD);
  const childScript = join(dirname(fileURLToPath(import.meta.url)), 'test-attach-child.js');
  const child = spawn(process.execPath, [childScript, BIN, String(target.pid), 'sigint'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const lines: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  createInterface({ input: child.stdout }).on('line', (l) => (waiters.shift() ?? ((x: string) => lines.push(x)))(l));
  const nextLine = (): Promise<string> =>
    lines.length ? Promise.resolve(lines.shift()!) : new Promise((r) => waiters.push(r));
  try {
    assert.match(await nextLine(), /^attached /);
    await target.run('add 40 1');
    assert.equal(codeByte(target.pid, off), 0xcc);
    child.kill('SIGINT');
    assert.equal(await nextLine(), 'interrupted 40 attached=false');
    assert.equal(await exited, 0, 'the child exits normally once its work is done');
    assert.equal(codeByte(target.pid, off), fileByte(off), 'breakpoint removed');
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await target.quit();
  }
});
