// `leakscope analyze` wall time on the leak scenario, run as root: `node dist/bench/analyze.js`
// (or `node dist/bench/run.js analyze`).
//
// Scenario (as the analyze test's "leak scenario"): Debian nginx, 1 worker, the leaking test
// module; /leak-keep, /leak-drop, /ok, /ok in rounds every 5 ms from 1.5 s before the analysis to
// its end. analyze runs in this process with a 2 s pause and a 5 s trace window; its step lines
// (onStep) are timestamped, so each round splits into phases:
//   memory      step 1: the memory breakdown (maps, smaps, pagemap)
//   census      step 2: glibc heap census and nginx pools (and sibling / baseline comparisons)
//   pause       the observation pause: the first reachability scan inside it, then the second census
//   trace       step 5 up to the window's last progress report (the window)
//   after       from there to the reachability step: detach, cost measurement, the trace's result
//               (symbols, source lines, inlined frames), pool liveness reads, the final census
//   reach       reachability at the end, and the closing memory breakdown
// own = the whole analysis minus the pause and the trace window (doc.leaks.durationSeconds): the
// time leakscope's own reads add. Goal: whole <= pause + window + 10 s (it was a wall-clock
// assertion of src/analysis/analyze.test.ts, which failed at 15.2-20 s on a loaded machine).
// ROUNDS rounds, a fresh nginx each; medians.
import { pathToFileURL } from 'node:url';
import { ensureFixturesBuilt } from '../test/helpers/build.js';
import { startNginx, steadyTraffic } from '../test/helpers/nginx.js';
import { analyze } from '../src/analysis/analyze.js';
import { LiveProcess } from '../src/target/index.js';

const ROUNDS = 3;
const PAUSE = 2;
const TRACE = 5;
const GOAL_OWN_SECONDS = 10;
const PHASES = ['memory', 'census', 'pause', 'trace', 'after', 'reach'] as const;
type Phase = (typeof PHASES)[number];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const round = (x: number, d = 2) => Math.round(x * 10 ** d) / 10 ** d;

/** The phase a step line starts (observe.ts's say() texts). */
function phaseOf(line: string): Phase | undefined {
  if (line.startsWith('step 1/5')) return 'memory';
  if (line.startsWith('step 2/5')) return 'census';
  if (line.startsWith('observing for')) return 'pause';
  if (line.startsWith('step 5/5')) return 'trace';
  if (line.startsWith('reachability')) return 'reach';
  return undefined;
}

export interface AnalyzeRound {
  wholeSeconds: number;
  windowSeconds: number;
  ownSeconds: number;
  phases: Record<Phase, number>;
  verdict: string;
}

async function oneRound(): Promise<AnalyzeRound> {
  const ngx = await startNginx({ workers: 1 });
  try {
    const stop = steadyTraffic(ngx, ['/leak-keep', '/leak-drop', '/ok', '/ok'], 5);
    try {
      await new Promise((r) => setTimeout(r, 1500));
      const space = LiveProcess.open(ngx.workerPids()[0]!);
      const marks: Array<{ phase: Phase; at: number }> = [];
      let lastProgress: number | undefined;
      const t0 = performance.now();
      try {
        const doc = await analyze(space, {
          traceSeconds: TRACE,
          pauseSeconds: PAUSE,
          onStep: (line) => {
            const phase = phaseOf(line);
            if (phase) marks.push({ phase, at: performance.now() });
          },
          onTraceProgress: () => {
            lastProgress = performance.now();
          },
        });
        const end = performance.now();
        const reachAt = marks.find((m) => m.phase === 'reach')?.at;
        if (lastProgress !== undefined)
          marks.splice(reachAt === undefined ? marks.length : marks.findIndex((m) => m.at === reachAt), 0, {
            phase: 'after',
            at: lastProgress,
          });
        const phases = Object.fromEntries(PHASES.map((p) => [p, 0])) as Record<Phase, number>;
        marks.forEach((m, i) => {
          phases[m.phase] += ((marks[i + 1]?.at ?? end) - m.at) / 1000;
        });
        const wholeSeconds = (end - t0) / 1000;
        const windowSeconds = doc.leaks?.durationSeconds ?? 0;
        return {
          wholeSeconds: round(wholeSeconds),
          windowSeconds: round(windowSeconds),
          ownSeconds: round(wholeSeconds - PAUSE - windowSeconds),
          phases: Object.fromEntries(PHASES.map((p) => [p, round(phases[p])])) as Record<Phase, number>,
          verdict: doc.conclusion.verdict ?? String(doc.conclusion.leak),
        };
      } finally {
        space.close();
      }
    } finally {
      await stop();
    }
  } finally {
    await ngx.stop();
  }
}

export async function benchAnalyze(): Promise<object> {
  await ensureFixturesBuilt();
  const rounds: AnalyzeRound[] = [];
  for (let i = 0; i < ROUNDS; i++) rounds.push(await oneRound());
  const med = (f: (r: AnalyzeRound) => number) => round(median(rounds.map(f)));
  console.log(`round  whole s  window s  own s  ${PHASES.map((p) => p.padStart(7)).join(' ')}  verdict`);
  for (const [i, r] of rounds.entries())
    console.log(
      `${String(i + 1).padStart(5)}  ${r.wholeSeconds.toFixed(2).padStart(7)}  ${r.windowSeconds.toFixed(2).padStart(8)}  ${r.ownSeconds.toFixed(2).padStart(5)}  ${PHASES.map((p) => r.phases[p].toFixed(2).padStart(7)).join(' ')}  ${r.verdict}`,
    );
  const own = med((r) => r.ownSeconds);
  console.log(
    `median ${med((r) => r.wholeSeconds)
      .toFixed(2)
      .padStart(7)}  ${med((r) => r.windowSeconds)
      .toFixed(2)
      .padStart(8)}  ${own.toFixed(2).padStart(5)}  ${PHASES.map((p) =>
      med((r) => r.phases[p])
        .toFixed(2)
        .padStart(7),
    ).join(' ')}`,
  );
  console.log(
    `goal: the whole analysis <= pause ${PAUSE} s + window + ${GOAL_OWN_SECONDS} s (own <= ${GOAL_OWN_SECONDS} s): ${own <= GOAL_OWN_SECONDS ? 'met' : 'NOT met'} (median own ${own} s)`,
  );
  return {
    pauseSeconds: PAUSE,
    traceSeconds: TRACE,
    goalOwnSeconds: GOAL_OWN_SECONDS,
    medianWholeSeconds: med((r) => r.wholeSeconds),
    medianOwnSeconds: own,
    goalMet: own <= GOAL_OWN_SECONDS,
    rounds,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  benchAnalyze().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
