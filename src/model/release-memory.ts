// Giving freed memory back before a phase that needs a lot of it (issue 18: leakscope's own RSS).
//
// A phase's big typed arrays (the census's chunk list, the pool analysis's, a reachability scan's
// tables: tens of MiB each on a heap of millions of chunks) are garbage once the phase returns,
// but V8 frees an ArrayBuffer's memory only when a garbage collection finds it dead, and nothing
// makes one run before the next phase allocates its own: both would be resident at once. Measured
// on a 4.4M-chunk nginx worker: 135 MiB RSS after the census and pool analysis, 96 MiB after a
// full collection. `gc` is exposed for this call only (the documented `--expose-gc` V8 flag, set
// at run time, then cleared again so no global `gc` is left behind).

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

/** Full garbage collections now (synchronous; ~10-50 ms each), so the memory of dead arrays goes back to the system. */
export function releaseMemory(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
    setFlagsFromString('--no-expose-gc');
  }
  // Twice: the first collection finds the arrays dead, their backing stores are swept behind it
  // (measured: ~1/3 of 160 MiB of dropped arrays given back after one, all after the second).
  gc();
  gc();
}

/**
 * With LEAKSCOPE_DEBUG_MEMORY set: one line on stderr with this process's RSS, V8 heap and
 * ArrayBuffer MiB at a phase boundary (how leakscope's own memory was measured, bench/README.md).
 */
export function memoryCheckpoint(phase: string): void {
  if (!process.env.LEAKSCOPE_DEBUG_MEMORY) return;
  const m = process.memoryUsage();
  const mib = (x: number) => Math.round(x / 1048576);
  process.stderr.write(
    `memory ${phase}: rss ${mib(m.rss)} MiB (peak so far ${mib(process.resourceUsage().maxRSS * 1024)}), V8 heap ${mib(m.heapUsed)} MiB, array buffers ${mib(m.arrayBuffers)} MiB\n`,
  );
}
