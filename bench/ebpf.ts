// eBPF runtime benchmark (run as root): `node dist/bench/ebpf.js`.
// 1. Ring buffer events/second with a 16 B and an 8 KiB payload: the ebpf-target fixture
//    calls a probed function in a tight loop; our program copies the payload from user
//    memory into the ring; Node drains on poll wakeups. Also the consumer alone (drain of
//    records already in the ring), which is the ceiling on the Node side.
// 2. Cost per probe hit: ns per call of a no-op function measured inside the fixture
//    (CLOCK_MONOTONIC), untraced vs our uprobe vs bpftrace's `@c = count()` on the same
//    fixture, median of RUNS runs.
import { spawn, spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { R0, R1, R6, exit, label, mov64, tgidFilter } from '../src/ebpf/asm.js';
import { checkEbpfSupport } from '../src/ebpf/features.js';
import { PerCpuArrayMap, RingBufMap, u64 } from '../src/ebpf/maps.js';
import { loadProgram } from '../src/ebpf/prog.js';
import { openRingBuffer } from '../src/ebpf/ringbuf.js';
import {
  TargetProcess,
  countInto,
  fixturePath,
  memoryByte,
  payloadRecorder,
  runtimeAddress,
  sumCounter,
} from '../src/ebpf/test-support.js';
import { attachUprobe, resolveUprobeOffset } from '../src/ebpf/uprobe.js';

const RUNS = 3;
const NOP_CALLS = 100_000;

export interface RingBenchResult {
  payloadBytes: number;
  wakeup: Wakeup;
  /** Node's own CPU time (user + sys) per wall-clock second while events flowed. */
  nodeCpuShare: number;
  calls: number;
  received: number;
  dropped: number;
  seconds: number;
  eventsPerSecond: number;
  megabytesPerSecond: number;
  drains: number;
  /** Records/s of the Node consumer alone (draining records already in the ring). */
  consumerOnlyEventsPerSecond: number;
}

export interface ProbeCostResult {
  calls: number;
  untracedNsPerCall: number;
  leakscopeNsPerCall: number;
  leakscopePidNsPerCall: number;
  bpftraceNsPerCall: number | null;
  leakscopeCostNsPerHit: number;
  bpftraceCostNsPerHit: number | null;
  bpftraceCount: number | null;
  bpftraceNote?: string;
}

/** 'poll': adaptive (readiness, then 5 ms batches while busy); 'poll-each': drain per wakeup; 'timer': every 10 ms. */
type Wakeup = 'poll' | 'poll-each' | 'timer';
const WAKE_OPTS = {
  poll: { wakeup: 'poll', intervalMs: 0 },
  'poll-each': { wakeup: 'poll', intervalMs: 0, batchMs: 0 },
  timer: { wakeup: 'timer', intervalMs: 10 },
} as const;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function ringBench(
  payloadBytes: number,
  calls: number,
  ringSize: number,
  wakeup: Wakeup = 'poll',
): Promise<RingBenchResult> {
  const rb = new RingBufMap(`bench${payloadBytes}`, ringSize);
  const drops = new PerCpuArrayMap({ name: 'drops', value: u64, maxEntries: 1 });
  const target = await TargetProcess.start();
  const prog = loadProgram({
    name: 'bench_ring',
    body: payloadRecorder(rb, drops, payloadBytes, { tgid: target.pid }),
  });
  let received = 0;
  let check = 0;
  const reader = openRingBuffer(
    rb,
    (r) => {
      received++;
      check ^= r.u32(0); // touch each record like a real consumer would
    },
    WAKE_OPTS[wakeup],
  );
  const link = attachUprobe(prog, { binaryPath: fixturePath(), symbol: 'ebpf_target_payload' }, { pid: target.pid });
  try {
    const t0 = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    await target.run(`payload ${calls} ${payloadBytes} 0`);
    while (received + sumCounter(drops) < calls) await sleep(1);
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    const dropped = sumCounter(drops);

    // Consumer alone: fill the ring with the reader idle, then time one drain.
    reader.close();
    let n = 0;
    const idle = openRingBuffer(
      rb,
      (r) => {
        n++;
        check ^= r.u32(0);
      },
      { wakeup: 'timer', intervalMs: 1 << 30 },
    );
    const fill = Math.min(calls, Math.floor((ringSize * 0.9) / (payloadBytes + 16)));
    await target.run(`payload ${fill} ${payloadBytes} 0`);
    const t1 = process.hrtime.bigint();
    idle.drain();
    const drainSeconds = Number(process.hrtime.bigint() - t1) / 1e9;
    idle.close();
    void check;
    return {
      payloadBytes,
      wakeup,
      nodeCpuShare: (cpu.user + cpu.system) / 1e6 / seconds,
      calls,
      received,
      dropped,
      seconds,
      eventsPerSecond: received / seconds,
      megabytesPerSecond: (received * payloadBytes) / seconds / 1e6,
      drains: reader.stats.drains,
      consumerOnlyEventsPerSecond: n / drainSeconds,
    };
  } finally {
    link.detach();
    await target.quit();
    prog.close();
    rb.close();
    drops.close();
  }
}

async function nsPerCall(target: TargetProcess): Promise<number> {
  return Number(await target.run(`nop ${NOP_CALLS}`));
}

async function probeCost(): Promise<ProbeCostResult> {
  const bin = fixturePath();
  const nop = { binaryPath: bin, symbol: 'ebpf_target_nop' };
  const target = await TargetProcess.start();
  const addr = runtimeAddress(target.pid, bin, resolveUprobeOffset(nop))!;
  try {
    await nsPerCall(target); // warm up
    const untraced: number[] = [];
    for (let i = 0; i < RUNS; i++) untraced.push(await nsPerCall(target));

    // Ours, like bpftrace's: system-wide probe, count() into a per-CPU map.
    const counter = new PerCpuArrayMap({ name: 'count', value: u64, maxEntries: 1 });
    const ours = loadProgram({ name: 'bench_count', body: [countInto(counter), mov64(R0, 0), exit()] });
    const mine: number[] = [];
    let link = attachUprobe(ours, nop);
    for (let i = 0; i < RUNS; i++) mine.push(await nsPerCall(target));
    link.detach();
    // Ours for one process: per-pid event + in-BPF tgid check.
    const oursPid = loadProgram({
      name: 'bench_count_pid',
      body: [mov64(R6, R1), tgidFilter(target.pid, 'out'), countInto(counter), label('out'), mov64(R0, 0), exit()],
    });
    const minePid: number[] = [];
    link = attachUprobe(oursPid, nop, { pid: target.pid });
    for (let i = 0; i < RUNS; i++) minePid.push(await nsPerCall(target));
    link.detach();
    const ourCount = sumCounter(counter);
    if (ourCount !== 2 * RUNS * NOP_CALLS)
      throw new Error(`our probe counted ${ourCount}, expected ${2 * RUNS * NOP_CALLS}`);
    ours.close();
    oursPid.close();
    counter.close();

    // bpftrace on the same fixture.
    const bpftrace: number[] = [];
    let bpftraceCount: number | null = null;
    let note: string | undefined;
    if (spawnSync('bpftrace', ['--version']).status !== 0) {
      note = 'bpftrace not installed';
    } else {
      const bt = spawn('bpftrace', ['-e', `uprobe:${bin}:ebpf_target_nop { @c = count(); }`], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      bt.stdout.on('data', (d) => (out += d));
      bt.stderr.on('data', (d) => (out += d));
      const btExit = new Promise((r) => bt.on('exit', r));
      const t0 = Date.now();
      // Attached once the breakpoint is written into the fixture's code.
      while (memoryByte(target.pid, addr) !== 0xcc && Date.now() - t0 < 30_000 && bt.exitCode === null) await sleep(20);
      if (memoryByte(target.pid, addr) !== 0xcc) {
        note = `bpftrace did not attach: ${out.trim().split('\n').slice(-2).join(' ')}`;
        bt.kill('SIGKILL');
      } else {
        for (let i = 0; i < RUNS; i++) bpftrace.push(await nsPerCall(target));
        bt.kill('SIGINT');
        await btExit;
        const m = /@c:\s*(\d+)/.exec(out);
        bpftraceCount = m ? Number(m[1]) : null;
      }
    }
    const u = median(untraced),
      m = median(mine),
      mp = median(minePid);
    const b = bpftrace.length ? median(bpftrace) : null;
    return {
      calls: NOP_CALLS,
      untracedNsPerCall: u,
      leakscopeNsPerCall: m,
      leakscopePidNsPerCall: mp,
      bpftraceNsPerCall: b,
      leakscopeCostNsPerHit: m - u,
      bpftraceCostNsPerHit: b === null ? null : b - u,
      bpftraceCount,
      ...(note ? { bpftraceNote: note } : {}),
    };
  } finally {
    await target.quit();
  }
}

export async function benchEbpf(): Promise<object> {
  const failed = checkEbpfSupport().filter((c) => !c.ok);
  if (failed.length) return { skipped: failed.map((c) => c.detail).join('; ') };
  await ringBench(16, 20_000, 1 << 22); // warm-up: first fixture start, page cache, JIT
  const ring = [
    await ringBench(16, 200_000, 1 << 22),
    await ringBench(16, 200_000, 1 << 22, 'poll-each'),
    await ringBench(16, 200_000, 1 << 22, 'timer'),
    await ringBench(8192, 30_000, 1 << 25),
  ];
  const cost = await probeCost();

  const f = (x: number, d = 0): string =>
    x.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
  console.log('eBPF ring buffer (uprobe -> ring -> Node callback)');
  console.log(
    '  payload  wakeup      calls     received  dropped  events/s   MB/s    node CPU  consumer-only events/s',
  );
  for (const r of ring) {
    const wake = { poll: 'adaptive', 'poll-each': 'epoll each', timer: 'timer 10ms' }[r.wakeup];
    console.log(
      `  ${String(r.payloadBytes).padEnd(7)}  ${wake.padEnd(10)}  ${f(r.calls).padEnd(8)}  ${f(r.received).padEnd(8)}  ${f(r.dropped).padEnd(7)}  ${f(r.eventsPerSecond).padEnd(9)}  ${f(r.megabytesPerSecond, 1).padEnd(6)}  ${(f(r.nodeCpuShare * 100, 1) + '%').padEnd(8)}  ${f(r.consumerOnlyEventsPerSecond)}`,
    );
  }
  console.log(`Cost per probe hit (no-op function, ${f(cost.calls)} calls, median of ${RUNS})`);
  console.log('  tracer                          ns/call   added ns/hit');
  console.log(`  untraced                        ${f(cost.untracedNsPerCall, 1).padEnd(8)}  -`);
  console.log(
    `  leakscope (system-wide, count)  ${f(cost.leakscopeNsPerCall, 1).padEnd(8)}  ${f(cost.leakscopeCostNsPerHit, 1)}`,
  );
  console.log(
    `  leakscope (pid + tgid filter)   ${f(cost.leakscopePidNsPerCall, 1).padEnd(8)}  ${f(cost.leakscopePidNsPerCall - cost.untracedNsPerCall, 1)}`,
  );
  console.log(
    `  bpftrace  (@c = count())        ${cost.bpftraceNsPerCall === null ? `n/a (${cost.bpftraceNote})` : `${f(cost.bpftraceNsPerCall, 1).padEnd(8)}  ${f(cost.bpftraceCostNsPerHit!, 1)}`}`,
  );
  return { ringBuffer: ring, probeCost: cost };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const r = await benchEbpf();
  if ('skipped' in r) console.log(`skipped: ${(r as { skipped: string }).skipped}`);
}
