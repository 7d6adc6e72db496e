// A trace window that ends when the test's workload is done instead of after fixed seconds: on a
// loaded host the workload can outlast any fixed window, and what it did after the window ended
// is missing from the trace (seen: "pool mode at call sites" found 0 of its 10 leaked pools).
// Spread `options` into traceLeaks' options; call `done()` once the workload has finished.

export interface WorkloadWindow {
  /** The window's traceLeaks options: the most it may last (a guard: done() ends it) and the signal that ends it. */
  options: { durationSeconds: number; signal: AbortSignal };
  /** Ends the window (the trace detaches and drains what its probes recorded). */
  done: () => void;
}

export function workloadWindow(maxSeconds = 120): WorkloadWindow {
  const ac = new AbortController();
  return { options: { durationSeconds: maxSeconds, signal: ac.signal }, done: () => ac.abort() };
}
