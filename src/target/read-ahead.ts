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
  /** The process's reader with windows of `slotBytes` (made, or remade for another size, here). */
  static get(slotBytes: number): ReadAhead {
    if (!ReadAhead.shared || ReadAhead.shared.slotBytes !== slotBytes) {
      void ReadAhead.shared?.worker.terminate();
      ReadAhead.shared = new ReadAhead(slotBytes);
    }
    return ReadAhead.shared;
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
    for (;;) {
      const done = Atomics.load(this.ctl, C_DONE);
      if (done === this.seq) break;
      Atomics.wait(this.ctl, C_DONE, done, 1000);
    }
    this.pending = false;
    return this.ctl[C_GOT]!;
  }
}
