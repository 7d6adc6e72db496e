// Process-exit cleanup shared by the test helpers: everything a helper starts (fixture
// processes, nginx masters and workers, temp prefixes) is registered here and torn
// down synchronously when the test process exits, even when a test failed or threw.
// Signals: SIGINT / SIGTERM / SIGHUP run the cleanup, then re-raise the signal.

type Cleanup = () => void;

const cleanups = new Set<Cleanup>();
let installed = false;

function runAll(): void {
  for (const c of [...cleanups]) {
    cleanups.delete(c);
    try {
      c();
    } catch {
      // best effort: the process is exiting
    }
  }
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      runAll();
      process.kill(process.pid, sig);
    });
  }
}

/** Registers a synchronous cleanup; returns a function that unregisters it. */
export function onExit(fn: Cleanup): () => void {
  install();
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** Sends `signal` to pid, ignoring "no such process". */
export function killQuietly(pid: number | undefined, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (pid === undefined || pid <= 0) return;
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
