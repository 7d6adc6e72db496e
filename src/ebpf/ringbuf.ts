// Ring buffer consumer over mmap, zero-copy (kernel/bpf/ringbuf.c; libbpf src/ringbuf.c).
//
// Layout: page 0 (RW) holds consumer_pos (u64 at 0); the producer mapping (RO) starts with a
// page holding producer_pos (u64 at 0), followed by the data area mapped twice so a record
// that wraps reads contiguously. Each record: {u32 len (bit 31 BUSY, bit 30 DISCARD), u32
// pg_off} then the payload; the next record starts at round_up(len + 8, 8).
//
// Wakeup: the ring buffer fd is pollable (EPOLLIN while data is available, level
// triggered). We register it with libuv's poller through koffi.node.poll, so Node sleeps in
// its own epoll_wait and drains on readiness: no busy loop, no blocking call. The kernel
// wakes a consumer whenever a record is committed while the consumer is caught up, i.e.
// after every drain; at high rates that is one cross-CPU wakeup per few records, which slows
// the *traced* process (measured: 42k vs 88k events/s from one thread). So 'poll' mode is
// adaptive: a readiness event drains, then stops polling (an fd no one waits on costs the
// producer nothing) and drains again every `batchMs` while records keep coming; the first
// empty drain re-arms the poller. 'timer' mode only drains every `intervalMs`.
import koffi from 'koffi';
import { LeakscopeError } from '../model/errors.js';
import { resources, Stage, type Resource } from './cleanup.js';
import type { RingBufMap } from './maps.js';
import { PROT_READ, PROT_WRITE, mmapShared, munmap, viewOf } from './syscalls.js';

const PAGE_SIZE = 4096;
const BUSY_BIT = 0x8000_0000;
const DISCARD_BIT = 0x4000_0000;
const HDR_SIZE = 8;

/**
 * One record, valid only during the callback (the memory is handed back to the kernel
 * right after). The object itself is reused: copy what you keep.
 */
export class RingRecord {
  /** DataView over the whole data area; the record's payload is [offset, offset + length). */
  view!: DataView;
  /** Uint8Array over the whole data area (same memory as `view`). */
  u8!: Uint8Array;
  offset = 0;
  length = 0;
  /** Zero-copy slice of the payload (a new view object; valid during the callback). */
  bytes(): Uint8Array {
    return this.u8.subarray(this.offset, this.offset + this.length);
  }
  /** A copy of the payload that outlives the callback. */
  copy(): Uint8Array {
    return this.u8.slice(this.offset, this.offset + this.length);
  }
  u32(at: number): number {
    return this.view.getUint32(this.offset + at, true);
  }
  /** u64 as a number (exact below 2^53: addresses, sizes, counters). */
  u64n(at: number): number {
    return (
      this.view.getUint32(this.offset + at + 4, true) * 0x1_0000_0000 + this.view.getUint32(this.offset + at, true)
    );
  }
  u64(at: number): bigint {
    return this.view.getBigUint64(this.offset + at, true);
  }
}

export interface RingBufferOptions {
  /** 'poll': libuv readiness on the map fd (default). 'timer': drain every `intervalMs`. */
  wakeup?: 'poll' | 'timer';
  /** Timer period (timer mode), and a safety drain period in poll mode (0 = none). Default 50 ms / 200 ms. */
  intervalMs?: number;
  /** Poll mode: after a wakeup, drain on this period instead of per wakeup while busy (0 = pure poll). Default 5 ms. */
  batchMs?: number;
  /** Keep the Node event loop alive while reading (default false: the caller decides when to stop). */
  ref?: boolean;
}

export interface RingBufferStats {
  records: number;
  discarded: number;
  bytes: number;
  drains: number;
}

export class RingBufferReader {
  private readonly size: number;
  private readonly mask: number;
  private consAddr: bigint;
  private prodAddr: bigint;
  private readonly prodLen: number;
  /** consumer_pos as two u32 words (we write the low word alone while the high word is unchanged). */
  private cons32: Uint32Array;
  private cons64: BigUint64Array;
  private prod64: BigUint64Array;
  private readonly record = new RingRecord();
  private poller:
    | { start(opts: { readable: boolean }, cb: () => void): void; stop(): void; close(): void; unref(): void }
    | undefined;
  private pollerActive = false;
  private batchTimer: NodeJS.Timeout | undefined;
  private timer: NodeJS.Timeout | undefined;
  private handle: Resource | undefined;
  private draining = false;
  readonly stats: RingBufferStats = { records: 0, discarded: 0, bytes: 0, drains: 0 };

  constructor(
    map: RingBufMap,
    private readonly onRecord: (r: RingRecord) => void,
    private readonly opts: RingBufferOptions = {},
  ) {
    this.size = map.size;
    this.mask = map.size - 1;
    this.prodLen = PAGE_SIZE + 2 * map.size;
    this.consAddr = mmapShared(
      map.fd,
      PAGE_SIZE,
      PROT_READ | PROT_WRITE,
      0,
      `mmap consumer page of ring buffer ${map.name}`,
    );
    try {
      this.prodAddr = mmapShared(map.fd, this.prodLen, PROT_READ, PAGE_SIZE, `mmap data of ring buffer ${map.name}`);
    } catch (e) {
      munmap(this.consAddr, PAGE_SIZE);
      throw e;
    }
    const consBuf = viewOf(this.consAddr, PAGE_SIZE);
    this.cons32 = new Uint32Array(consBuf, 0, 2);
    this.cons64 = new BigUint64Array(consBuf, 0, 1);
    const prodBuf = viewOf(this.prodAddr, this.prodLen);
    this.prod64 = new BigUint64Array(prodBuf, 0, 1);
    // Data area (twice) after the producer page.
    this.record.view = new DataView(prodBuf, PAGE_SIZE, 2 * map.size);
    this.record.u8 = new Uint8Array(prodBuf, PAGE_SIZE, 2 * map.size);
    this.handle = resources.add({
      stage: Stage.Reader,
      what: `ring buffer reader ${map.name}`,
      close: () => this.destroy(),
    });
    const mode = opts.wakeup ?? 'poll';
    if (mode === 'poll') {
      const h = koffi.node.poll(map.fd, { readable: true }, () => this.onReadable());
      if (!opts.ref) h.unref();
      this.poller = h;
      this.pollerActive = true;
    }
    const interval = opts.intervalMs ?? (mode === 'timer' ? 50 : 200);
    if (interval > 0) {
      this.timer = setInterval(() => this.drain(), interval);
      if (!opts.ref) this.timer.unref();
    }
  }

  private onReadable(): void {
    this.drain();
    const batchMs = this.opts.batchMs ?? 5;
    if (batchMs <= 0 || !this.poller || !this.handle) return;
    // Busy: stop kernel wakeups and batch on a timer until a drain comes back empty.
    this.poller.stop();
    this.pollerActive = false;
    const tick = (): void => {
      this.batchTimer = undefined;
      if (!this.handle || !this.poller) return;
      if (this.drain() > 0 || this.pending() > 0) {
        this.batchTimer = setTimeout(tick, batchMs);
        if (!this.opts.ref) this.batchTimer.unref();
      } else {
        // Level-triggered: a record committed since the drain fires this at once.
        this.poller.start({ readable: true }, () => this.onReadable());
        this.pollerActive = true;
      }
    };
    this.batchTimer = setTimeout(tick, batchMs);
    if (!this.opts.ref) this.batchTimer.unref();
  }

  /**
   * Consumes the records committed before the call: calls back for each, skips discarded ones, stops at a
   * BUSY (reserved, not yet committed) record. Returns the number of records delivered.
   */
  drain(): number {
    if (this.draining || !this.handle) return 0; // no re-entry from a callback
    this.draining = true;
    let delivered = 0;
    try {
      this.stats.drains++;
      const rec = this.record;
      const view = rec.view;
      let cons = Number(this.cons64[0]);
      let hi = Math.floor(cons / 0x1_0000_0000);
      // Only the records committed before this drain began: under a producer that never pauses
      // a drain must still return, or the caller's event loop (its timers, its window) stalls.
      const prod = Number(this.prod64[0]);
      while (cons < prod) {
        const off = cons & this.mask;
        const len = view.getUint32(off, true);
        if (len & BUSY_BIT) {
          this.storeCons(cons, hi);
          return delivered;
        }
        const dataLen = len & ~(BUSY_BIT | DISCARD_BIT);
        cons += (dataLen + HDR_SIZE + 7) & ~7;
        if (len & DISCARD_BIT) {
          this.stats.discarded++;
        } else {
          rec.offset = off + HDR_SIZE;
          rec.length = dataLen;
          this.stats.records++;
          this.stats.bytes += dataLen;
          delivered++;
          this.onRecord(rec);
        }
        // Hand the space back at once (libbpf does the same) so the producer can reuse it.
        hi = this.storeCons(cons, hi);
      }
    } finally {
      this.draining = false;
    }
    return delivered;
  }

  /** Publishes consumer_pos. A single aligned u32 store while the high word is unchanged. */
  private storeCons(cons: number, hi: number): number {
    const newHi = Math.floor(cons / 0x1_0000_0000);
    if (newHi === hi) this.cons32[0] = cons >>> 0;
    else this.cons64[0] = BigInt(cons);
    return newHi;
  }

  /** Bytes committed but not yet consumed. */
  pending(): number {
    return Number(this.prod64[0]) - Number(this.cons64[0]);
  }

  /** Stops wakeups, drains what is left, unmaps. The map itself stays open. */
  close(): void {
    if (!this.handle) return;
    this.drain();
    resources.release(this.handle);
  }

  private destroy(): void {
    this.handle = undefined;
    if (this.pollerActive) this.poller?.stop();
    this.poller?.close();
    this.poller = undefined;
    if (this.batchTimer) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    // Drop every view before unmapping: touching them afterwards would fault.
    this.record.view = new DataView(new ArrayBuffer(0));
    this.record.u8 = new Uint8Array(0);
    this.cons32 = new Uint32Array(2);
    this.cons64 = new BigUint64Array(1);
    this.prod64 = new BigUint64Array(1);
    munmap(this.prodAddr, this.prodLen);
    munmap(this.consAddr, PAGE_SIZE);
    this.prodAddr = 0n;
    this.consAddr = 0n;
  }
}

/** Opens a reader; `onRecord` runs on Node's thread for each committed record. */
export function openRingBuffer(
  map: RingBufMap,
  onRecord: (r: RingRecord) => void,
  opts?: RingBufferOptions,
): RingBufferReader {
  if (map.fd < 0) throw new LeakscopeError('usage', `ring buffer ${map.name} is closed`);
  return new RingBufferReader(map, onRecord, opts);
}
