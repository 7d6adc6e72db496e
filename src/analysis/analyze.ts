// The guided analysis (steps 1-5): process memory -> glibc allocator -> nginx pools -> anomalous
// chunk-size bucket -> C call path, each step with quantified evidence, ending in a conclusion
// that names the module, the bucket and the function, or says plainly there is no leak.
//
// Three parts, in this order: observe.ts reads the target and waits (the only part that does),
// evidence.ts turns what it saw into findings and steps, verdict.ts turns findings into the
// conclusion; the result is encoded as the `leakscope.analyze/1` document (src/contract).

import type { AnalyzeDocument } from '../contract/analyze.js';
import { encodeAnalyze } from '../contract/analyze.js';
import type { AddressSpace } from '../target/address-space.js';
import { findings, steps } from './evidence.js';
import { observe } from './observe.js';
import type { AnalyzeOptions, Observations } from './observe.js';
import { conclude } from './verdict.js';

export type { AnalyzeOptions } from './observe.js';
export { byLeakingFunction, leakingFunction } from './evidence.js';

export async function analyze(space: AddressSpace, opts: AnalyzeOptions): Promise<AnalyzeDocument> {
  const observed = await observe(space, opts);
  return judge(observed, new Date());
}

/** The document of recorded observations (pure: evidence, verdict, encoding). */
export function judge(o: Observations, now: Date): AnalyzeDocument {
  const f = findings(o);
  const g = f.growth;
  const heapWalked = o.heapError === null && !!o.final;
  const comparison =
    heapWalked && (g.anomalous || g.buckets.length)
      ? { baseline: g.source, ...(g.kind ? { kind: g.kind } : {}), buckets: g.buckets }
      : null;
  return encodeAnalyze({
    target: o.target.description,
    pid: o.target.pid,
    generatedAt: now,
    durationSeconds: (now.getTime() - o.startedAt) / 1000,
    steps: steps(o, f),
    conclusion: conclude(f),
    mem: o.mem,
    census: heapWalked ? o.final!.census : null,
    comparison,
    anomalous: heapWalked ? g.anomalous : null,
    pools: heapWalked ? o.final!.pools : null,
    trace: o.trace,
  });
}
