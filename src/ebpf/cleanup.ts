// Registry of live kernel objects (fds, links, mmaps) so they are released in a safe order
// on exit and on SIGINT / SIGTERM. Probes are fd-based: if leakscope dies by SIGKILL the
// kernel closes the fds and every probe goes away with them; this registry only makes the
// ordinary exits tidy and lets a signal detach probes before the caller prints results.
import { closeFd } from './syscalls.js';

/** Release order: probes first (stop new events), then readers, programs, maps. */
export enum Stage {
  Link = 0,
  PerfEvent = 1,
  Reader = 2,
  Program = 3,
  Map = 4,
}

export interface Resource {
  readonly stage: Stage;
  readonly what: string;
  close(): void;
}

class Registry {
  private readonly live = new Set<Resource>();
  private exitHooked = false;

  add(r: Resource): Resource {
    this.live.add(r);
    if (!this.exitHooked) {
      this.exitHooked = true;
      process.on('exit', () => this.closeAll());
    }
    return r;
  }
  /** Register a bare fd; returns the handle to pass to `release`. */
  addFd(fd: number, stage: Stage, what: string): Resource {
    return this.add({ stage, what, close: () => closeFd(fd) });
  }
  /** Forget a resource the owner has closed itself. */
  forget(r: Resource | undefined): void {
    if (r) this.live.delete(r);
  }
  /** Close one resource now and forget it. */
  release(r: Resource | undefined): void {
    if (!r || !this.live.delete(r)) return;
    r.close();
  }
  /** Close every resource at or below `upTo` stage, in stage order, newest first within a stage. */
  closeAll(upTo: Stage = Stage.Map): void {
    const all = [...this.live].reverse().filter((r) => r.stage <= upTo);
    all.sort((a, b) => a.stage - b.stage);
    for (const r of all) {
      this.live.delete(r);
      try {
        r.close();
      } catch {
        // best effort: the process is exiting or the object is already gone
      }
    }
  }
  /** Detach every probe (links and perf events) but keep maps readable. */
  detachAll(): void {
    this.closeAll(Stage.PerfEvent);
  }
  has(r: Resource): boolean {
    return this.live.has(r);
  }
  count(stage?: Stage): number {
    return [...this.live].filter((r) => stage === undefined || r.stage === stage).length;
  }
  describe(): string[] {
    return [...this.live].map((r) => r.what);
  }
}

/** The process-wide registry. */
export const resources = new Registry();

/**
 * On the first SIGINT / SIGTERM: detach all probes, then abort the returned signal so the
 * caller can drain maps and print what it has. A second signal closes everything and
 * exits with 128 + signal number. Call the returned `dispose` to remove the handlers.
 */
export function interruptSignal(onInterrupt?: (signal: NodeJS.Signals) => void): {
  signal: AbortSignal;
  dispose(): void;
} {
  const ac = new AbortController();
  let count = 0;
  const handler = (sig: NodeJS.Signals): void => {
    count++;
    if (count === 1) {
      resources.detachAll();
      ac.abort(new Error(`interrupted by ${sig}`));
      onInterrupt?.(sig);
      return;
    }
    resources.closeAll();
    process.exit(128 + (sig === 'SIGINT' ? 2 : 15));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: ac.signal,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
