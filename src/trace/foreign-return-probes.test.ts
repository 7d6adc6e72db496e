// Two traces at once on two processes, both probing libc's posix_memalign: the kernel prepares a
// uprobe's return for every consumer with a return handler (kernel/events/uprobes.c handler_chain),
// and a uprobe_multi session filtered to another process does not decline, so each worker's
// posix_memalign returns through the [uprobes] trampoline while the other trace runs. nginx relays
// every pool (ngx_memalign: posix_memalign(16, n)) to malloc inside posix_memalign: a stack
// captured at that inner malloc ended at the trampoline (92.6 % of stacks reached main, the
// "under load" drop other test runs on this shared machine caused). Relayed calls are now captured
// at their own entry, before any return is prepared.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNginx, driveRequests, runWrk } from '../../test/helpers/nginx.js';
import type { NginxHandle } from '../../test/helpers/nginx.js';
import { LiveProcess } from '../target/index.js';
import { traceLeaks } from './leak-tracer.js';
import { debugRoots } from '../symbols/debug-files.js';
import { frameLabel } from '../model/index.js';
import type { LeakTrace } from '../model/index.js';

async function traceUnderWrk(ngx: NginxHandle): Promise<LeakTrace> {
  const [worker] = ngx.workerPids();
  await driveRequests(ngx, '/ok', 10, 2);
  const space = LiveProcess.open(worker!);
  try {
    // 64 KiB: about one in 16 of nginx's 4 KiB request pools is sampled.
    const trace = traceLeaks(space, { mode: 'malloc', durationSeconds: 5, sampleBytes: 64 * 1024 });
    await new Promise((r) => setTimeout(r, 500));
    await Promise.all([runWrk(ngx.url('/ok'), 3, 8), driveRequests(ngx, '/leak-keep', 20, 2)]);
    return await trace;
  } finally {
    space.close();
  }
}

test('two malloc-mode traces at once, memalign family probed at its entry: every stack still reaches main', async () => {
  // Without libc's debug file sampled mode probes posix_memalign itself (no _int_memalign).
  const saved = debugRoots.splice(0, debugRoots.length);
  const a = await startNginx({ workers: 1 });
  const b = await startNginx({ workers: 1 });
  try {
    const traces = await Promise.all([traceUnderWrk(a), traceUnderWrk(b)]);
    for (const t of traces) {
      assert.ok(
        t.probes.some((p) => p.startsWith('libc:posix_memalign')),
        `posix_memalign probed: ${t.probes}`,
      );
      const viaPool = t.stacks.filter((s) => s.frames.map(frameLabel).includes('ngx_create_pool'));
      console.log(
        `# ${t.totals.completeStacks}/${t.totals.sampledEvents} stacks reach main; ${viaPool.length} paths through ngx_create_pool; ${t.notes.find((n) => n.startsWith('uprobe sessions') || n.startsWith('no uprobe sessions'))}`,
      );
      assert.ok(t.totals.sampledEvents > 100, `${t.totals.sampledEvents} sampled events`);
      assert.equal(
        t.totals.completeStacks,
        t.totals.sampledEvents,
        `${t.totals.completeStacks} of ${t.totals.sampledEvents} stacks reach main`,
      );
    }
  } finally {
    debugRoots.push(...saved);
    await Promise.all([a.stop(), b.stop()]);
  }
});
