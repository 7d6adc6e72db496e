// A reader thread for sequential reads of target memory: while the caller parses one window, the
// next is read into the other half of a shared buffer (pread on /proc/PID/mem runs in the kernel
// on the reader's thread, so reading and parsing overlap on two cores). Synchronous for the caller
// (Atomics.wait): the census stays a plain function.
//
// One reader per process, started on first use (a worker thread: ~30 ms, a few MiB), unref'd
// (never keeps the process alive), reused by every census. Requests go one at a time: slot, address,
// length in a shared control block; the reader answers with the bytes read (short at the first
// unreadable byte, as AddressSpace.readInto).

import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { LeakscopeError } from '../model/errors.js';

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
const slots = [Buffer.from(workerData.data, 0, workerData.slot), Buffer.from(workerData.data, workerData.slot, workerData.slot)];
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

export class ReadAhead {
  /** The two windows (views of the shared buffer). */
  readonly slots: [Buffer, Buffer];
  private readonly ctl: Int32Array;
  private readonly pos: Float64Array;
  private readonly worker: Worker;
  private seq = 0;
  private pending = false;

  private constructor(readonly slotBytes: number) {
    const data = new SharedArrayBuffer(slotBytes * 2);
    const ctlBuf = new SharedArrayBuffer(64),
      posBuf = new SharedArrayBuffer(8);
    this.ctl = new Int32Array(ctlBuf);
    this.pos = new Float64Array(posBuf);
    this.slots = [Buffer.from(data, 0, slotBytes), Buffer.from(data, slotBytes, slotBytes)];
    this.worker = new Worker(READER_SOURCE, {
      eval: true,
      workerData: { ctl: ctlBuf, pos: posBuf, data, slot: slotBytes, koffi: koffiPath() },
      resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 2 },
    });
    this.worker.unref();
  }

  private static shared: ReadAhead | undefined;
  private static unavailable = false;
  /**
   * The process's reader with windows of `slotBytes` (made, or remade for another size, here), or
   * undefined when no reader thread can run here (it did not start within START_TIMEOUT_MS: the
   * caller reads in turn).
   */
  static get(slotBytes: number): ReadAhead | undefined {
    if (ReadAhead.unavailable) return undefined;
    if (!ReadAhead.shared || ReadAhead.shared.slotBytes !== slotBytes) {
      void ReadAhead.shared?.worker.terminate();
      ReadAhead.shared = undefined;
      const ra = new ReadAhead(slotBytes);
      // Handshake: an empty read answered proves the thread runs.
      ra.start(-1, 0, 0, 0);
      if (!ra.answered(START_TIMEOUT_MS)) {
        void ra.worker.terminate();
        ReadAhead.unavailable = true;
        return undefined;
      }
      ReadAhead.shared = ra;
    }
    return ReadAhead.shared;
  }

  /**
   * The next reads by pid are of a process just looked up by pid (a census that re-read its maps):
   * the reader opens a new pidfd for it (one opened earlier may be of an exited process whose pid was reused).
   */
  newTarget(): void {
    if (this.pending) this.wait();
    this.ctl[C_GEN] = (this.ctl[C_GEN]! + 1) | 0;
  }

  /** Waits up to `ms` for the request in flight; true when answered. */
  private answered(ms: number): boolean {
    const deadline = Date.now() + ms;
    for (;;) {
      const done = Atomics.load(this.ctl, C_DONE);
      if (done === this.seq) {
        this.pending = false;
        return true;
      }
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.wait(this.ctl, C_DONE, done, Math.min(left, 1000));
    }
  }

  /**
   * Starts reading `len` (<= slotBytes) bytes at `addr` into slot `slot`: through process_vm_readv of
   * `pid` when it can (pid > 0, the process `fd` reads), else through `fd`; one request at a time.
   */
  start(fd: number, slot: number, addr: number, len: number, pid = 0): void {
    if (this.pending) this.wait();
    this.ctl[C_SLOT] = slot;
    this.ctl[C_LEN] = Math.min(len, this.slotBytes);
    this.ctl[C_FD] = fd;
    this.ctl[C_PID] = pid;
    this.pos[0] = addr;
    this.pending = true;
    Atomics.store(this.ctl, C_REQ, ++this.seq);
    Atomics.notify(this.ctl, C_REQ);
  }

  /** Waits for the request in flight; the bytes it read (0 when none is in flight). */
  wait(): number {
    if (!this.pending) return 0;
    if (!this.answered(READ_TIMEOUT_MS)) {
      // The thread is gone or stuck: never use it (or its buffers) again.
      void this.worker.terminate();
      ReadAhead.shared = undefined;
      ReadAhead.unavailable = true;
      throw new LeakscopeError('io', `the census's reader thread did not answer within ${READ_TIMEOUT_MS / 1000} s`);
    }
    return this.ctl[C_GOT]!;
  }
}
