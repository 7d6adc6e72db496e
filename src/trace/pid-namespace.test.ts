// `leaks` run inside a pid namespace (a container's view): the in-kernel filter must compare the
// target's tgid in that namespace (bpf_get_ns_current_pid_tgid), not the initial namespace's
// (which once made it trace nothing and exit 0). Ground truth: malloc-leaker's own counts of what
// each call path leaked in one batch, traced whole with sampling off. System test: root, eBPF, unshare.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MallocLeakerReport } from '../../test/helpers/fixture.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { pidNamespaceFilter, innermostPid, kernelDev } from '../target/pid-namespace.js';

interface Doc {
  stacks: Array<{ frames: Array<{ function: string | null }>; bytes: number; count: number }>;
  totals: { outstandingBytes: number };
}

test('leaks inside `unshare -p -f --mount-proc`: the leaking paths of a child, as it counted them', async () => {
  await ensureFixturesBuilt();
  const child = join(dirname(fileURLToPath(import.meta.url)), '../../test/helpers/pidns-child.js');
  const r = spawnSync('unshare', ['-p', '-f', '--mount-proc', process.execPath, child], {
    encoding: 'utf8',
    timeout: 120_000,
    killSignal: 'SIGKILL',
  });
  assert.equal(r.status, 0, `child: ${r.stderr}`);
  const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    pid: number;
    selfPid: number;
    attached: boolean;
    report: MallocLeakerReport;
    trace: Doc;
    status: number;
    stderr: string;
  };
  assert.ok(res.selfPid < 10 && res.pid < 100, `PIDs are the namespace's own (${res.selfPid}, ${res.pid})`);
  assert.ok(res.attached, `probes attached: ${res.stderr}`);
  assert.equal(res.status, 0, res.stderr);
  const got = new Map<string, { bytes: number; count: number }>();
  for (const s of res.trace.stacks) {
    const p = s.frames.map((f) => f.function).find((n) => n && /^leak_path_[a-d]$/.test(n));
    if (!p) continue;
    const e = got.get(p) ?? { bytes: 0, count: 0 };
    e.bytes += s.bytes;
    e.count += s.count;
    got.set(p, e);
  }
  // Paths that never free (leakEvery 1) are exact; paths that free some calls: every leaked one
  // found, never more than were allocated (under heavy load the tracer may miss a free; the
  // exactness of the tracer itself is leak-tracer.test.ts's part).
  for (const p of res.report.paths) {
    const g = got.get(p.name) ?? { bytes: 0, count: 0 };
    const where = `${p.name}: ${JSON.stringify([...got])}`;
    if (p.leakEvery === 1) assert.deepEqual(g, { bytes: p.leakedBytes, count: p.leakedCount }, where);
    else {
      assert.ok(g.count >= p.leakedCount && g.count <= p.calls, `${where}: between ${p.leakedCount} and ${p.calls}`);
      assert.equal(g.bytes, g.count * p.size, where);
    }
  }
});

test('pid namespace helpers: initial namespace needs no filter; NSpid innermost; st_dev to kernel dev_t', () => {
  assert.equal(pidNamespaceFilter(process.pid), undefined, 'the test runs in the initial pid namespace');
  assert.equal(innermostPid('Name:\tx\nNSpid:\t4242\t17\t3\n', 4242), 3);
  assert.equal(innermostPid('Name:\tx\n', 99), 99);
  assert.equal(kernelDev(4), 4, 'nsfs minor 4: same in both encodings');
  // new_encode_dev(MKDEV(0, 0x123)) = 0x23 | (0x100 << 12); kernel dev_t = 0x123
  assert.equal(kernelDev(0x23 | (0x100 << 12)), 0x123);
  assert.equal(kernelDev((8 << 8) | 1), (8 << 20) | 1, 'sda1');
});
