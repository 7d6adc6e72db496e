// Ring buffer consumer: wrap-around, discarded records, zero-copy payloads, poll wakeups.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkEbpfSupport } from './features.js';
import { PerCpuArrayMap, RingBufMap, u64 } from './maps.js';
import { loadProgram } from './prog.js';
import { openRingBuffer } from './ringbuf.js';
import { TargetProcess, fixturePath, payloadRecorder, sumCounter } from './test-support.js';
import { attachUprobe } from './uprobe.js';

const failed = checkEbpfSupport().filter((c) => !c.ok);
const skip = failed.length ? `eBPF unavailable: ${failed.map((c) => c.detail).join('; ')}` : false;
const PAYLOAD = { binaryPath: fixturePath(), symbol: 'ebpf_target_payload' };

test('ringbuf: wraps many times, skips discarded records, payloads intact', { skip }, async () => {
  const SIZE = 16384; // 4 pages
  const DATA = 256; // record = 8 (seq) + 256, 272 bytes with the header: does not divide SIZE
  const STEP = 40; // records per batch: 40 * 272 < SIZE, so the producer never finds it full
  const STEPS = 50; // 2000 records, 544000 bytes through a 16 KiB ring: ~33 wraps
  const rb = new RingBufMap('wrap', SIZE);
  const drops = new PerCpuArrayMap({ name: 'drops', value: u64, maxEntries: 1 });
  const target = await TargetProcess.start();
  const prog = loadProgram({
    name: 'wrap',
    body: payloadRecorder(rb, drops, DATA, { tgid: target.pid, discardOdd: true }),
  });
  const seqs: number[] = [];
  let straddling = 0,
    badPayloads = 0;
  const reader = openRingBuffer(
    rb,
    (r) => {
      const seq = r.u64n(0);
      seqs.push(seq);
      if (r.offset + r.length > SIZE) straddling++; // read through the second mapping
      const bytes = r.bytes();
      for (let j = 0; j < DATA; j++)
        if (bytes[8 + j] !== ((seq + j) & 0xff)) {
          badPayloads++;
          break;
        }
    },
    { wakeup: 'poll', intervalMs: 0 },
  );
  try {
    const link = attachUprobe(prog, PAYLOAD, { pid: target.pid });
    for (let s = 0; s < STEPS; s++) {
      await target.run(`payload ${STEP} ${DATA} ${s * STEP}`);
      reader.drain();
    }
    link.detach();
    const expected = Array.from({ length: (STEPS * STEP) / 2 }, (_, k) => 2 * k);
    assert.equal(sumCounter(drops), 0, 'no reserve failures');
    assert.deepEqual(seqs, expected, 'exactly the even sequence numbers, in order');
    assert.equal(reader.stats.discarded, (STEPS * STEP) / 2);
    assert.equal(badPayloads, 0, 'payload bytes match the fixture pattern');
    assert.ok(straddling > 0, `some records wrapped across the end (${straddling})`);
    assert.equal(reader.pending(), 0);
  } finally {
    reader.close();
    await target.quit();
    prog.close();
    rb.close();
    drops.close();
  }
});

test('ringbuf: poll wakeups deliver records without an explicit drain', { skip }, async () => {
  const rb = new RingBufMap('poll', 1 << 16);
  const drops = new PerCpuArrayMap({ name: 'drops', value: u64, maxEntries: 1 });
  const target = await TargetProcess.start();
  const prog = loadProgram({ name: 'poll', body: payloadRecorder(rb, drops, 16, { tgid: target.pid }) });
  let n = 0;
  // No safety timer: only the fd's readiness can trigger a drain.
  const reader = openRingBuffer(rb, () => n++, { wakeup: 'poll', intervalMs: 0 });
  try {
    const link = attachUprobe(prog, PAYLOAD, { pid: target.pid });
    await target.run('payload 1000 16 0');
    const t0 = Date.now();
    while (n < 1000 && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 5));
    link.detach();
    assert.equal(n, 1000);
    assert.ok(reader.stats.drains >= 1);
  } finally {
    reader.close();
    await target.quit();
    prog.close();
    rb.close();
    drops.close();
  }
});
