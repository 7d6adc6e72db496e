// Unwinder benchmark: `node dist/bench/unwind.js` (after `make -C test/fixtures`; no root needed).
// The captures of test/fixtures/c/unwind-capture.c (gcc -O2 -fomit-frame-pointer: main thread
// 8 KiB and full stack, a second thread, a signal frame) unwound by CFI with a warm CfiCache, as
// the tracer unwinds every sampled stack. Per capture: 2000 warm-up unwinds (V8 optimizes), then
// ROUNDS rounds of N unwinds each; the median round's microseconds per unwind and per frame.
// Goal: a cached unwind < 50 µs (the tracer unwinds up to ~25k stacks/s on one core).
// (Moved out of src/unwind/unwinder.test.ts: a timed assertion flakes on a loaded machine.)
import { pathToFileURL } from 'node:url';
import { CfiCache } from '../src/unwind/cfi-cache.js';
import { ModuleMap } from '../src/unwind/module-map.js';
import { modulesFromMaps, runCaptureFixture } from '../src/unwind/test-capture.js';
import { unwindStack } from '../src/unwind/unwinder.js';

const ROUNDS = 5;
const N = 20_000;
const GOAL_US = 50;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

export interface UnwindBenchRow {
  capture: string;
  stackBytes: number;
  frames: number;
  /** Median over the rounds, microseconds per unwind. */
  usPerUnwind: number;
  usPerFrame: number;
  roundsUs: number[];
  goalMet: boolean;
}

export async function benchUnwind(): Promise<object> {
  const run = runCaptureFixture();
  const mm = new ModuleMap(modulesFromMaps(run.maps), new CfiCache());
  const rows: UnwindBenchRow[] = [];
  for (const [label, c, len] of [
    ['main 8 KiB', run.main, 8192],
    ['main full', run.main, run.main.stack.byteLength],
    ['thread', run.thread, run.thread.stack.byteLength],
    ['signal frame', run.signal, run.signal.stack.byteLength],
  ] as const) {
    const stack = c.stack.subarray(0, Math.min(len, c.stack.byteLength));
    const first = unwindStack(c.regs, stack, c.stackAddr, mm);
    for (let i = 0; i < 2000; i++) unwindStack(c.regs, stack, c.stackAddr, mm);
    const roundsUs: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < N; i++) unwindStack(c.regs, stack, c.stackAddr, mm);
      roundsUs.push(Number(process.hrtime.bigint() - t0) / N / 1000);
    }
    const us = median(roundsUs);
    rows.push({
      capture: label,
      stackBytes: stack.byteLength,
      frames: first.pcs.length,
      usPerUnwind: Math.round(us * 100) / 100,
      usPerFrame: Math.round((us / first.pcs.length) * 100) / 100,
      roundsUs: roundsUs.map((x) => Math.round(x * 100) / 100),
      goalMet: us < GOAL_US,
    });
  }
  console.log('capture        stack B  frames  µs/unwind (median)  µs/frame  rounds (µs/unwind)');
  for (const r of rows)
    console.log(
      `${r.capture.padEnd(14)} ${String(r.stackBytes).padStart(7)}  ${String(r.frames).padStart(6)}  ${r.usPerUnwind.toFixed(2).padStart(18)}  ${r.usPerFrame.toFixed(2).padStart(8)}  ${r.roundsUs.join(' / ')}`,
    );
  console.log(`goal: < ${GOAL_US} µs per cached unwind: ${rows.every((r) => r.goalMet) ? 'met' : 'NOT met'}`);
  return { goalUs: GOAL_US, unwindsPerRound: N, rounds: ROUNDS, rows };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchUnwind().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
