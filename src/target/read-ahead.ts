// A reader thread for sequential reads of target memory: while the caller parses one window, the
// next is read into the other half of a shared buffer (pread on /proc/PID/mem runs in the kernel
// on the reader's thread, so reading and parsing overlap on two cores). Synchronous for the caller
// (Atomics.wait): the census stays a plain function.
//
// One reader per process, started on first use (a worker thread: ~30 ms, a few MiB), unref'd
// (never keeps the process alive), reused by every census. Requests go one at a time: slot, address,
// length in a shared control block; the reader answers with the bytes read (short at the first
// unreadable byte, as AddressSpace.readInto).

import { Worker } from 'node:worker_threads';
import { LeakscopeError } from '../model/errors.js';

/** How long the first answer (the thread's start) may take before read-ahead is given up for the process. */
const START_TIMEOUT_MS = 10_000;
/** How long one window's read may take before the census fails (never a hang). */
const READ_TIMEOUT_MS = 120_000;

// control block (Int32Array): request sequence, answer sequence, slot, length, bytes read, fd
const C_REQ = 0,
  C_DONE = 1,
  C_SLOT = 2,
  C_LEN = 3,
  C_GOT = 4,
  C_FD = 5;

const READER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { readSync } = require('node:fs');
const ctl = new Int32Array(workerData.ctl), pos = new Float64Array(workerData.pos);
const slots = [Buffer.from(workerData.data, 0, workerData.slot), Buffer.from(workerData.data, workerData.slot, workerData.slot)];
let last = 0;
for (;;) {
  Atomics.wait(ctl, ${C_REQ}, last);
  const seq = Atomics.load(ctl, ${C_REQ});
  if (seq === last) continue;
  last = seq;
  const buf = slots[ctl[${C_SLOT}]], len = ctl[${C_LEN}], fd = ctl[${C_FD}], addr = pos[0];
  let done = 0;
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
      workerData: { ctl: ctlBuf, pos: posBuf, data, slot: slotBytes },
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

  /** Starts reading `len` (<= slotBytes) bytes at `addr` through `fd` into slot `slot`; one request at a time. */
  start(fd: number, slot: number, addr: number, len: number): void {
    if (this.pending) this.wait();
    this.ctl[C_SLOT] = slot;
    this.ctl[C_LEN] = Math.min(len, this.slotBytes);
    this.ctl[C_FD] = fd;
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
