// Reader threads for sequential reads of target memory: while the caller parses one window, the
// next ones are read into other windows of a shared buffer (the read is the kernel's copy, on the
// reader's thread, so reading and parsing overlap on two cores, and two readers read in parallel).
// Synchronous for the caller (Atomics.wait): the census stays a plain function.
//
// One set of readers per process (two threads where two cores run, else one; readers + 1 windows),
// started on first use or ahead of it (prepare: a worker thread starts in ~30 ms and a few MiB),
// unref'd (never keeps the process alive), reused by every census. Each thread takes one request at
// a time: slot, address, length, fd, pid in its control block; it answers with the bytes read
// (short at the first unreadable byte, as AddressSpace.readInto).

import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { LeakscopeError } from '../model/errors.js';
import { pageAlignedSharedSlots } from './aligned-buffer.js';

/** How long the first answer (the thread's start) may take before read-ahead is given up for the process. */
const START_TIMEOUT_MS = 10_000;
/** How long one window's read may take before the census fails (never a hang). */
const READ_TIMEOUT_MS = 120_000;

// control block (Int32Array): request sequence, answer sequence, slot, length, bytes read, fd, pid,
// target generation (a new pidfd for the next read by pid)
const C_REQ = 0,
  C_DONE = 1,
  C_SLOT = 2,
  C_LEN = 3,
  C_GOT = 4,
  C_FD = 5,
  C_PID = 6,
  C_GEN = 7;

// The reader reads a window with process_vm_readv(2) when it can (one call pins and copies the
// pages in batches: ~25% less kernel time than pread on /proc/PID/mem, which copies page by page),
// else, and from the first byte process_vm_readv could not read, with pread on the fd, whose
// semantics decide (short at the first unreadable byte, as AddressSpace.readInto).
// process_vm_readv goes by pid, the fd by the address space it was opened on: a pidfd, opened at
// the first request after newTarget (a census that has just re-read /proc/PID/maps by pid), proves after
// every window that the process had not exited (so its pid was not reused) while it was read;
// else the window is read again through the fd (today's answer for a target that exits: its
// memory is gone). x86-64 syscall numbers: pidfd_open 434; poll's POLLIN on a pidfd: exited.
const READER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { readSync, closeSync } = require('node:fs');
const ctl = new Int32Array(workerData.ctl), pos = new Float64Array(workerData.pos);
const slots = [];
for (let i = 0; i < workerData.slots; i++) slots.push(Buffer.from(workerData.data, workerData.offset + i * workerData.slot, workerData.slot));
let pvr, sys, poll, slotAddr;
try {
  const koffi = require(workerData.koffi);
  const libc = koffi.load('libc.so.6');
  pvr = libc.func('long process_vm_readv(int pid, void *local, unsigned long nl, void *remote, unsigned long nr, unsigned long flags)');
  sys = libc.func('long syscall(long nr, long a, long b)');
  poll = libc.func('int poll(void *fds, unsigned long n, int timeout)');
  slotAddr = slots.map((b) => Number(koffi.address(b)));
} catch { pvr = undefined; }
const liov = Buffer.alloc(16), riov = Buffer.alloc(16), pfd = Buffer.alloc(8);
let pidfdPid = 0, pidfdGen = 0, pidfd = -1;
function setU64(b, off, v) { b.writeUInt32LE(v % 4294967296, off); b.writeUInt32LE(Math.floor(v / 4294967296), off + 4); }
/** True when the process behind pidfd has not exited (poll: no POLLIN). */
function alive() { pfd.writeInt32LE(pidfd, 0); pfd.writeInt32LE(1, 4); return poll(pfd, 1, 0) === 0; }
function viaPvr(pid, s, addr, len) {
  if (!pvr || pid <= 0) return 0;
  if (pid !== pidfdPid || ctl[${C_GEN}] !== pidfdGen) {
    if (pidfd >= 0) { try { closeSync(pidfd); } catch {} }
    pidfdPid = pid; pidfdGen = ctl[${C_GEN}];
    pidfd = Number(sys(434, pid, 0));
  }
  if (pidfd < 0) return 0;
  let done = 0;
  while (done < len) {
    setU64(liov, 0, slotAddr[s] + done); setU64(liov, 8, len - done);
    setU64(riov, 0, addr + done); setU64(riov, 8, len - done);
    const n = Number(pvr(pid, liov, 1, riov, 1, 0));
    if (n <= 0) break;
    done += n;
  }
  return done > 0 && alive() ? done : 0;
}
let last = 0;
for (;;) {
  Atomics.wait(ctl, ${C_REQ}, last);
  const seq = Atomics.load(ctl, ${C_REQ});
  if (seq === last) continue;
  last = seq;
  const s = ctl[${C_SLOT}], buf = slots[s], len = ctl[${C_LEN}], fd = ctl[${C_FD}], addr = pos[0];
  let done = len > 0 ? viaPvr(ctl[${C_PID}], s, addr, len) : 0;
  while (done < len) {
    let n = 0;
    try { n = readSync(fd, buf, done, len - done, addr + done); } catch { n = 0; }
    if (n <= 0) break;
    done += n;
  }
  ctl[${C_GOT}] = done;
  Atomics.store(ctl, ${C_DONE}, seq);
  Atomics.notify(ctl, ${C_DONE});
}
`;

/** Where the reader thread finds koffi (its process_vm_readv binding); '' when not resolvable (pread only). */
function koffiPath(): string {
  try {
    return createRequire(import.meta.url).resolve('koffi');
  } catch {
    return '';
  }
}

/** One reader thread and its control block. */
interface Reader {
  worker: Worker;
  ctl: Int32Array;
  pos: Float64Array;
  seq: number;
  /** The slot it is reading into (-1: idle). */
  slot: number;
}

/** Reader threads: two where two cores run in parallel (the read is the kernel's copy, CPU-bound), else one. */
function defaultReaders(): number {
  return availableParallelism() >= 2 ? 2 : 1;
}

export class ReadAhead {
  /** The windows (views of one shared buffer): readers + 1, the walk parses one while the readers fill others. */
  readonly slots: Buffer[];
  private readonly readers: Reader[] = [];

  private constructor(
    readonly slotBytes: number,
    readerCount: number,
  ) {
    const slotCount = readerCount + 1;
    // Page-aligned windows: the kernel's copy into a misaligned one is ~2.6x slower (aligned-buffer.ts).
    const { data, offset, slots } = pageAlignedSharedSlots(slotCount, slotBytes);
    this.slots = slots;
    const koffi = koffiPath();
    for (let i = 0; i < readerCount; i++) {
      const ctlBuf = new SharedArrayBuffer(64),
        posBuf = new SharedArrayBuffer(8);
      const worker = new Worker(READER_SOURCE, {
        eval: true,
        workerData: { ctl: ctlBuf, pos: posBuf, data, offset, slot: slotBytes, slots: slotCount, koffi },
        resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
      });
      worker.unref();
      this.readers.push({ worker, ctl: new Int32Array(ctlBuf), pos: new Float64Array(posBuf), seq: 0, slot: -1 });
    }
  }

  /** How many reads can be in flight at once (one per reader thread). */
  get parallel(): number {
    return this.readers.length;
  }

  private terminate(): void {
    for (const r of this.readers) void r.worker.terminate();
  }

  private static shared: ReadAhead | undefined;
  private static unavailable = false;
  /** The shared readers have answered their handshake. */
  private running = false;

  /**
   * Starts the process's readers with windows of `slotBytes` (made, or remade for another size,
   * here) without waiting for them: their start (a thread, koffi) overlaps the caller's work until get.
   */
  static prepare(slotBytes: number): void {
    if (ReadAhead.unavailable || ReadAhead.shared?.slotBytes === slotBytes) return;
    ReadAhead.shared?.terminate();
    const ra = new ReadAhead(slotBytes, defaultReaders());
    // Handshake: an empty read answered by every thread proves they run.
    for (let i = 0; i < ra.readers.length; i++) ra.start(-1, i, 0, 0);
    ReadAhead.shared = ra;
  }

  /**
   * The process's readers with windows of `slotBytes` (started here unless prepare did), or
   * undefined when no reader thread can run here (one did not start within START_TIMEOUT_MS: the
   * caller reads in turn).
   */
  static get(slotBytes: number): ReadAhead | undefined {
    ReadAhead.prepare(slotBytes);
    const ra = ReadAhead.shared;
    if (!ra) return undefined;
    if (!ra.running) {
      if (!ra.readers.every((r) => ReadAhead.answered(r, START_TIMEOUT_MS))) {
        ra.terminate();
        ReadAhead.shared = undefined;
        ReadAhead.unavailable = true;
        return undefined;
      }
      ra.running = true;
    }
    return ra;
  }

  /**
   * The next reads by pid are of a process just looked up by pid (a census that re-read its maps):
   * the readers open a new pidfd for it (one opened earlier may be of an exited process whose pid was reused).
   */
  newTarget(): void {
    for (const r of this.readers) {
      if (r.slot >= 0) this.wait(r.slot);
      r.ctl[C_GEN] = (r.ctl[C_GEN]! + 1) | 0;
    }
  }

  /** Waits up to `ms` for the reader's request in flight; true when answered. */
  private static answered(r: Reader, ms: number): boolean {
    const deadline = Date.now() + ms;
    for (;;) {
      const done = Atomics.load(r.ctl, C_DONE);
      if (done === r.seq) {
        r.slot = -1;
        return true;
      }
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.wait(r.ctl, C_DONE, done, Math.min(left, 1000));
    }
  }

  /**
   * Starts reading `len` (<= slotBytes) bytes at `addr` into slot `slot` (not being read into): through
   * process_vm_readv of `pid` when it can (pid > 0, the process `fd` reads), else through `fd`. Runs on
   * an idle reader thread (waits for the oldest request when none is idle).
   */
  start(fd: number, slot: number, addr: number, len: number, pid = 0): void {
    let r = this.readers.find((x) => x.slot < 0);
    if (!r) {
      r = this.readers[0]!;
      this.wait(r.slot);
    }
    r.ctl[C_SLOT] = slot;
    r.ctl[C_LEN] = Math.min(len, this.slotBytes);
    r.ctl[C_FD] = fd;
    r.ctl[C_PID] = pid;
    r.pos[0] = addr;
    r.slot = slot;
    Atomics.store(r.ctl, C_REQ, ++r.seq);
    Atomics.notify(r.ctl, C_REQ);
  }

  /** Waits for the read into `slot`; the bytes it read (0 when none is in flight). */
  wait(slot: number): number {
    const r = this.readers.find((x) => x.slot === slot);
    if (!r) return 0;
    if (!ReadAhead.answered(r, READ_TIMEOUT_MS)) {
      // A thread is gone or stuck: never use the readers (or their buffers) again.
      this.terminate();
      ReadAhead.shared = undefined;
      ReadAhead.unavailable = true;
      throw new LeakscopeError('io', `the census's reader thread did not answer within ${READ_TIMEOUT_MS / 1000} s`);
    }
    return r.ctl[C_GOT]!;
  }
}
