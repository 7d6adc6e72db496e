// The per-hit cost a trace prints is measured: leakscope's own free(NULL) calls under a counting
// uprobe. Ground truth: the calls it made (every one must be counted) and the fds it opened (none left).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { measureHitCost } from './hit-cost.js';

function probeFds(): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const l = readlinkSync(`/proc/self/fd/${fd}`);
      if (/perf_event|bpf[-_]link|bpf-prog|bpf-map/.test(l)) n++;
    } catch {
      /* the directory's own fd */
    }
  }
  return n;
}

test('per-hit cost: every free(NULL) call is counted, the cost is in range, nothing stays attached', () => {
  const before = probeFds();
  for (const multi of [true, false]) {
    const r = measureHitCost({ multi });
    assert.ok(r, 'measured');
    assert.ok(r.hits >= 6 * 5000, `${r.hits} hits counted for 30000 calls`);
    assert.ok(r.copyMicrosPer4KiB >= 0 && r.copyMicrosPer4KiB < 100, `${r.copyMicrosPer4KiB} µs per 4 KiB copied`);
    assert.ok(r.perHitMicros > 0.01 && r.perHitMicros < 100, `${r.perHitMicros} µs per hit`);
    if (!multi) assert.equal(r.kind, 'uprobe');
    console.log(
      `# ${r.kind}: ${r.perHitMicros} µs per hit, +${r.copyMicrosPer4KiB} µs per 4 KiB of stack copied (${r.hits} hits)`,
    );
  }
  assert.equal(probeFds(), before, 'no probe, program or map left open');
});
