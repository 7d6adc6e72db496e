// Starting and driving the C fixtures of test/fixtures/c (built into test/fixtures/build).
//
// Protocol of every fixture: it allocates, prints ONE JSON line on stdout (its ground
// truth) at a quiescent point, then blocks reading stdin until EOF or "q". Some accept
// commands on stdin and answer each with one more JSON line (malloc-leaker: "go N",
// "free"; hostile-symbol: "go N").
//
// The child and its pipes are unref'd while no helper call is waiting on them, so a
// test that forgets stop() cannot keep the test process alive; on exit every fixture
// still running is killed (cleanup.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fixturePath } from './build.js';
import { killQuietly, onExit } from './cleanup.js';

/** glibc mallinfo2() as the fixtures print it (bytes or chunk counts). */
export interface Mallinfo2 {
  arena: number;
  ordblks: number;
  smblks: number;
  hblks: number;
  hblkhd: number;
  usmblks: number;
  fsmblks: number;
  uordblks: number;
  fordblks: number;
  keepcost: number;
}

/** Per-state chunk counts and bytes (chunk sizes), as in heap-pattern's buckets/totals. */
export interface HeapPatternCounts {
  inUseChunks: number;
  inUseBytes: number;
  freeChunks: number;
  freeBytes: number;
  tcacheChunks: number;
  tcacheBytes: number;
  fastbinChunks: number;
  fastbinBytes: number;
  binChunks: number;
  binBytes: number;
  smallbinChunks: number;
  largebinChunks: number;
  unsortedChunks: number;
  mmappedChunks: number;
  mmappedBytes: number;
}

export type HeapPatternState = 'inuse' | 'tcache' | 'fastbin' | 'smallbin' | 'largebin' | 'unsorted' | 'mmapped';

export interface HeapPatternTruth {
  fixture: 'heap-pattern';
  pid: number;
  glibcVersion: string;
  threads: number;
  arenaCount: number;
  /** M_MMAP_THRESHOLD set by the fixture before its 2 MiB allocations. */
  mmapThreshold: number;
  arenas: { name: 'main' | 'thread1' | 'thread2'; tid: number }[];
  /** Every class of chunks the fixture made; addrs are user pointers (chunk + 16), up to 8. */
  classes: {
    arena: string;
    role: string;
    state: HeapPatternState;
    request: number;
    chunkSize: number;
    count: number;
    bytes: number;
    addrs: number[];
  }[];
  /** Fixture's own chunks per power-of-two chunk-size bucket [minBytes, maxBytes). */
  buckets: (HeapPatternCounts & { minBytes: number; maxBytes: number })[];
  totals: HeapPatternCounts;
  /** malloc_info(0, ...) XML taken at the quiescent point. */
  mallocInfo: string;
  mallinfo2: Mallinfo2;
}

export interface MemKnownRegion {
  count: number;
  request: number;
  chunkSize: number;
  requestedBytes: number;
  chunkBytes: number;
  firstAddr: number;
  lastAddr: number;
}
export interface MemKnownTruth {
  fixture: 'mem-known';
  pid: number;
  tid: number;
  threads: number;
  mainHeap: MemKnownRegion;
  threadArena: MemKnownRegion;
  mmapped: MemKnownRegion;
  rssBytes: number;
  mallocInfo: string;
  mallinfo2: Mallinfo2;
}

/** glibc-bigheap's report: chunks of chunkSize in the main arena and two thread arenas, `freed` of them freed. */
export interface BigheapTruth {
  pid: number;
  mainChunks: number;
  threadChunks: number;
  chunkSize: number;
  freed: number;
  mallinfo2: Mallinfo2;
}

export interface ChurnTruth {
  fixture: 'churn';
  pid: number;
  threads: number;
  slots: number;
  minRequest: number;
  maxRequest: number;
  arenaCountAtLeast: number;
  tids: number[];
}

export interface MallocLeakerPath {
  name: 'leak_path_a' | 'leak_path_b' | 'leak_path_c' | 'leak_path_d';
  via: 'malloc' | 'calloc' | 'posix_memalign' | 'realloc';
  size: number;
  leakEvery: number;
  calls: number;
  leakedCount: number;
  leakedBytes: number;
}
export interface MallocLeakerReport {
  fixture: 'malloc-leaker';
  pid: number;
  iterations: number;
  batch: number;
  paths: MallocLeakerPath[];
  churn: { name: 'churn_path'; calls: number; allocations: number };
  /** Runtime addresses of the fixture's functions. */
  functions: Record<string, number>;
  totalLeakedBytes: number;
  outstanding: number;
}

export interface HostileSymbolTruth {
  fixture: 'hostile-symbol';
  pid: number;
  /** The exact ELF symbol name: x<img src=x onerror=alert(1)>&"' */
  symbol: string;
  symbolAddr: number;
  size: number;
  leakedCount: number;
  leakedBytes: number;
  samplePtrs: number[];
}

export interface FixtureTruths {
  'heap-pattern': HeapPatternTruth;
  'mem-known': MemKnownTruth;
  churn: ChurnTruth;
  'malloc-leaker': MallocLeakerReport;
  'hostile-symbol': HostileSymbolTruth;
}

export interface FixtureHandle<T> {
  name: string;
  pid: number;
  /** The first JSON line. */
  truth: T;
  child: ChildProcess;
  /** Writes one line (a '\n' is added) to the fixture's stdin. */
  send(line: string): void;
  /** Resolves with the next JSON line the fixture prints. */
  nextJson<U = unknown>(timeoutMs?: number): Promise<U>;
  /** send(line) then nextJson(). */
  command<U = unknown>(line: string, timeoutMs?: number): Promise<U>;
  /** Everything the fixture wrote on stderr so far. */
  stderr(): string;
  /** Sends "q", closes stdin, waits for exit (SIGKILL after 3 s). Idempotent. */
  stop(): Promise<void>;
}

export interface StartFixtureOptions {
  /** How long to wait for the first JSON line (default 30 s). */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/**
 * Spawns test/fixtures/build/NAME with args and resolves once its first JSON line is
 * read. Call ensureFixturesBuilt() first. Rejects (and kills the child) when the binary
 * is missing, the process exits early, prints a non-JSON line, or times out.
 */
export function startFixture<N extends keyof FixtureTruths>(
  name: N,
  args?: string[],
  opts?: StartFixtureOptions,
): Promise<FixtureHandle<FixtureTruths[N]>>;
export function startFixture<T = Record<string, unknown>>(
  name: string,
  args?: string[],
  opts?: StartFixtureOptions,
): Promise<FixtureHandle<T>>;
export async function startFixture(
  name: string,
  args: string[] = [],
  opts: StartFixtureOptions = {},
): Promise<FixtureHandle<unknown>> {
  const path = fixturePath(name);
  if (!existsSync(path))
    throw new Error(`fixture ${path} is not built: call ensureFixturesBuilt() (make -C test/fixtures)`);
  const child = spawn(path, args, { stdio: ['pipe', 'pipe', 'pipe'], env: opts.env ?? process.env });
  const pid = child.pid;
  if (pid === undefined) {
    await new Promise((r) => child.once('error', r));
    throw new Error(`cannot spawn ${path}`);
  }
  const unregister = onExit(() => killQuietly(pid, 'SIGKILL'));

  let stdoutBuf = '';
  let stderrText = '';
  const lines: string[] = [];
  let waiter: ((line: string | null) => void) | undefined;
  let exited = false;
  let closed = false;
  let exitInfo = '';
  const exitPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = true;
      exitInfo = signal ? `signal ${signal}` : `exit ${code}`;
      unregister();
      resolve();
    });
  });
  // 'exit' may come before stdout is drained; 'close' means both are done.
  child.once('close', () => {
    closed = true;
    if (waiter) {
      const w = waiter;
      waiter = undefined;
      w(null);
    }
  });
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    stdoutBuf += d;
    let nl: number;
    while ((nl = stdoutBuf.indexOf('\n')) >= 0) {
      const line = stdoutBuf.slice(0, nl);
      stdoutBuf = stdoutBuf.slice(nl + 1);
      if (waiter) {
        const w = waiter;
        waiter = undefined;
        w(line);
      } else lines.push(line);
    }
  });
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (stderrText += d));
  child.stdin!.on('error', () => {
    // EPIPE when the fixture already exited: reported through nextJson/exit instead
  });

  // Keep the event loop alive only while a helper call is waiting on the child.
  let holds = 0;
  const streams = [child.stdin, child.stdout, child.stderr] as unknown as { ref?(): void; unref?(): void }[];
  const setRef = (on: boolean) => {
    if (on) child.ref();
    else child.unref();
    for (const s of streams) (on ? s?.ref : s?.unref)?.call(s);
  };
  const hold = async <R>(f: () => Promise<R>): Promise<R> => {
    if (holds++ === 0) setRef(true);
    try {
      return await f();
    } finally {
      if (--holds === 0) setRef(false);
    }
  };

  const nextLine = (timeoutMs: number): Promise<string> =>
    hold(
      () =>
        new Promise<string>((resolve, reject) => {
          const queued = lines.shift();
          if (queued !== undefined) return resolve(queued);
          if (closed)
            return reject(new Error(`${name} exited (${exitInfo}) before printing a line; stderr: ${stderrText}`));
          const timer = setTimeout(() => {
            waiter = undefined;
            reject(new Error(`${name}: no line within ${timeoutMs} ms; stderr: ${stderrText}`));
          }, timeoutMs);
          waiter = (line) => {
            clearTimeout(timer);
            if (line === null)
              reject(
                new Error(
                  `${name} exited (${exitInfo || 'stdout closed'}) before printing a line; stderr: ${stderrText}`,
                ),
              );
            else resolve(line);
          };
        }),
    );

  const nextJson = async <U>(timeoutMs = 30_000): Promise<U> => {
    const line = await nextLine(timeoutMs);
    try {
      return JSON.parse(line) as U;
    } catch {
      throw new Error(`${name} printed a line that is not JSON: ${line.slice(0, 200)}`);
    }
  };

  const send = (line: string) => {
    if (!exited && child.stdin!.writable) child.stdin!.write(line.endsWith('\n') ? line : line + '\n');
  };

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= hold(async () => {
      if (exited) return;
      send('q');
      child.stdin!.end();
      const timer = setTimeout(() => killQuietly(pid, 'SIGKILL'), 3000);
      await exitPromise;
      clearTimeout(timer);
    });
    return stopping;
  };

  let truth: unknown;
  try {
    truth = await nextJson(opts.timeoutMs ?? 30_000);
  } catch (e) {
    killQuietly(pid, 'SIGKILL');
    throw e;
  }
  setRef(holds > 0);
  return {
    name,
    pid,
    truth,
    child,
    send,
    nextJson,
    command: <U>(line: string, timeoutMs?: number) => {
      send(line);
      return nextJson<U>(timeoutMs);
    },
    stderr: () => stderrText,
    stop,
  };
}
