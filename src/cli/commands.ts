// Command implementations: build the models for a target and hand back renderers.
import type { AddressSpace } from '../target/address-space.js';
import { Symbolizer } from '../symbols/index.js';
import {
  encodeHeap,
  encodeLeaks,
  encodeMem,
  encodePools,
  parseHeap,
  parseJsonText,
  censusFromHeap,
} from '../contract/index.js';
import { LeakscopeError, isLeakscopeError } from '../model/errors.js';
import type { LeakTrace } from '../model/leaks.js';
import { readUserFile } from '../target/target-files.js';
import { heapCensus, compareCensus, reachability } from '../glibc/index.js';
import type { CensusComparison, HeapCensus } from '../glibc/index.js';
import { renderHeapTable } from '../report/heap-table.js';
import { renderPoolsTable } from '../report/pools-table.js';
import { renderLeaksTable } from '../report/leaks-table.js';
import type { TraceProgress } from '../trace/leak-tracer.js';
import { writeFile } from './output.js';

export interface CommandResult {
  text: () => string;
  json: () => object;
}

export async function runMem(space: AddressSpace): Promise<CommandResult> {
  // mem's analysis (nginx shm, Lua states) is loaded only when mem runs (start-up of heap).
  const { memoryBreakdown } = await import('../analysis/memory-breakdown.js');
  const { breakdownInputsFor } = await import('../analysis/breakdown-inputs.js');
  const { renderMemTable } = await import('../report/mem-table.js');
  const symbolizer = new Symbolizer(space.modules());
  const b = memoryBreakdown(space, breakdownInputsFor(space, symbolizer));
  const doc = encodeMem(b);
  return { text: () => renderMemTable(doc), json: () => doc };
}

export function runHeap(space: AddressSpace, opts: { baseline?: string }): CommandResult {
  const symbolizer = new Symbolizer(space.modules());
  const census = heapCensus(space, { symbolizer });
  let comparison: CensusComparison | undefined;
  if (opts.baseline) comparison = compareCensus(readBaselineCensus(opts.baseline), census);
  const doc = encodeHeap(census, { comparison });
  return { text: () => renderHeapTable(doc), json: () => doc };
}

export async function runPools(space: AddressSpace, opts: { largest: number }): Promise<CommandResult> {
  const { heapAndPools } = await import('../analysis/pool-census.js');
  const symbolizer = new Symbolizer(space.modules());
  if (!symbolizer.lookup('ngx_cycle'))
    throw new LeakscopeError('not-found', `${space.description} is not nginx: no ngx_cycle symbol in its modules`);
  const r = heapAndPools(space, { symbolizer, pools: true });
  const doc = encodePools(r.pools!, opts);
  return { text: () => renderPoolsTable(doc, opts), json: () => doc };
}

export interface LeaksCliOptions {
  duration: number;
  mode: 'pool' | 'malloc' | 'lua';
  sampleBytes: number;
  minAge: number;
  duty: number;
  svg?: string;
  folded?: string;
  pprof?: string;
  showInternal?: boolean;
  /** Pool mode: probe ngx_create_pool itself (every pool) instead of its call sites minus nginx's own. */
  allPoolSites?: boolean;
  /** Sampled malloc mode: no free probe; liveness read from the heap (ghosts possible). */
  heapLiveness?: boolean;
  /** Cost budget: the duty adapts each second (share of the target's own CPU). */
  maxOverhead?: number;
  /** Split each path's outstanding memory by reachability at the end (heap scans after the window). */
  reach?: boolean;
}

export async function runLeaks(space: AddressSpace, o: LeaksCliOptions): Promise<CommandResult> {
  // The eBPF and trace layers are loaded only by the commands that trace (start-up of mem / heap / pools).
  const { requireEbpf, interruptSignal } = await import('../ebpf/index.js');
  const { traceLeaks } = await import('../trace/leak-tracer.js');
  const { livePoolBytes } = await import('../analysis/pool-census.js');
  requireEbpf();
  const interrupt = interruptSignal();
  const progress = process.stderr.isTTY
    ? (p: TraceProgress) =>
        process.stderr.write(
          `\rtracing ${space.description}: ${Math.min(p.elapsedSeconds, p.durationSeconds).toFixed(0)}/${p.durationSeconds} s, ${p.events} stacks, ${p.probeHits} probe hits   `,
        )
    : undefined;
  let trace: LeakTrace;
  try {
    trace = await traceLeaks(space, {
      mode: o.mode,
      durationSeconds: o.duration,
      sampleBytes: o.sampleBytes,
      minAgeSeconds: o.minAge,
      dutyCycle: o.duty,
      showInternal: o.showInternal,
      allPoolSites: o.allPoolSites,
      heapLiveness: o.heapLiveness,
      maxOverhead: o.maxOverhead,
      livePools: o.mode === 'pool' ? () => livePoolBytes(space) : undefined,
      reachAtEnd: o.reach ? async () => (await reachability(space)).classOf : undefined,
      onProgress: progress,
      signal: interrupt.signal,
    });
  } finally {
    interrupt.dispose();
    if (progress) process.stderr.write('\n');
  }
  await writeLeakOutputs(trace, o);
  const doc = encodeLeaks(trace);
  return { text: () => renderLeaksTable(doc), json: () => doc };
}

/** --svg / --folded / --pprof files of a trace. */
export async function writeLeakOutputs(
  t: LeakTrace,
  o: { svg?: string; folded?: string; pprof?: string },
): Promise<void> {
  const { renderFlameGraphSvg } = await import('../report/flamegraph-svg.js');
  const { toFolded } = await import('../formats/folded/folded.js');
  const { toPprof } = await import('../formats/pprof/pprof.js');
  if (o.svg)
    writeFile(
      o.svg,
      renderFlameGraphSvg(t.stacks, {
        title: `leakscope: outstanding ${t.mode === 'pool' ? 'pool' : 'malloc'} memory, ${t.target}`,
        weight: 'bytes',
      }),
    );
  if (o.folded) writeFile(o.folded, toFolded(t.stacks, 'bytes'));
  if (o.pprof) {
    writeFile(
      o.pprof,
      toPprof(t.stacks, {
        durationNanos: Math.round(t.durationSeconds * 1e9),
        timeNanos: BigInt(Date.now()) * 1000000n,
        sampling: t.sampleBytes ? { periodBytes: t.sampleBytes } : undefined,
      }),
    );
  }
}

/**
 * A census saved with `heap --json` (the baseline of `heap --baseline` and `analyze --baseline`),
 * read through the contract's validating parser: a document that is not a valid
 * `leakscope.heap/1` is `malformed` (exit 8), naming the file and the JSON path of the first problem.
 */
export function readBaselineCensus(path: string): HeapCensus {
  try {
    // A regular file within the baseline size cap, bounded read (never a FIFO, /dev/zero or a directory).
    return censusFromHeap(parseHeap(parseJsonText(readUserFile(path, 'baseline').toString('utf8'))));
  } catch (e) {
    if (isLeakscopeError(e) && !e.message.startsWith(path)) throw e.wrap(path);
    throw e;
  }
}
