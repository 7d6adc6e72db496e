// contrib/ checked without a running watch: the shipped rule tests pass under promtool; every
// metric the alert rules and the Grafana dashboard name is one the watch exports (checked against
// renderWatchMetrics of a full snapshot, so a renamed metric breaks this test); the systemd unit
// passes `systemd-analyze verify` and keeps to its capability set. (A real Prometheus evaluating
// the dashboard's queries over a live watch: src/cli/watch.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { REPO } from '../../test/helpers/proc.js';
import { renderWatchMetrics } from '../report/watch-metrics.js';
import { WATCH_SCHEMA } from '../contract/watch.js';
import type { WatchDocument } from '../contract/watch.js';

const has = (cmd: string, arg: string) => spawnSync(cmd, [arg], { encoding: 'utf8' }).status === 0;

/** Every metric family name a full snapshot renders (a worker with every part, a report). */
function exportedNames(): Set<string> {
  const doc: WatchDocument = {
    schema: WATCH_SCHEMA,
    generatedAt: '2026-12-01T00:00:00Z',
    self: {
      startedAtSeconds: 1,
      intervalSeconds: 60,
      cycles: 1,
      cyclesDelayed: 0,
      lastCycleSeconds: 0,
      lastCycleCpuSeconds: 0,
      budget: 0.05,
      lastCycleDuty: 0,
      cpuSeconds: 0,
      residentBytes: 0,
      reports: 1,
      analysisRunning: false,
      triggersSuppressed: { cooldown: 0, busy: 0 },
      analysisErrors: 0,
    },
    workers: [
      {
        pid: 1,
        worker: '0',
        command: 'nginx',
        startTimeSeconds: 1,
        census: {
          timestampSeconds: 1,
          durationSeconds: 0,
          phases: { memSeconds: 0, heapSeconds: 0, poolsSeconds: 0 },
          ok: true,
          errors: 0,
          lastError: null,
        },
        rss: [{ category: 'code', rssBytes: 1 }],
        glibc: {
          buckets: [{ minBytes: 32, inUseChunks: 1, inUseBytes: 32, freeChunks: 1, freeBytes: 32 }],
          inUseBytes: 32,
          freeBytes: 32,
          topBytes: 0,
          mmappedChunks: 0,
          mmappedBytes: 0,
          systemBytes: 0,
          arenas: 1,
          complete: true,
          inconsistencies: 0,
        },
        pools: { groups: [{ owner: 'static', module: 'm', pools: 1, bytes: 1 }], pools: 1, bytes: 1 },
        lua: { vms: [{ globalState: 4096, gcTotalBytes: 1 }], tables: [{ path: 'T', retainedBytes: 1 }] },
        growth: [
          {
            series: { kind: 'bucket', minBytes: 32 },
            bytesPerHour: 1,
            lowBytesPerHour: 0,
            highBytesPerHour: 2,
            samples: 3,
            spanSeconds: 2,
          },
        ],
      },
    ],
    lastReport: {
      directory: 'd',
      pid: 1,
      worker: '0',
      timestampSeconds: 1,
      trigger: { kind: 'bucket', minBytes: 32 },
      triggerBytesPerHour: 1,
      verdict: 'leak',
      module: 'm',
      bucketMinBytes: 32,
      function: 'f',
      confidence: 'high',
      summary: 's',
    },
  };
  return new Set([...renderWatchMetrics(doc).matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
}

/** leakscope_* names in a PromQL text. */
const namesIn = (expr: string) => [...expr.matchAll(/\bleakscope_[a-z0-9_]+/g)].map((m) => m[0]);

test('alert rules and dashboard name only metrics the watch exports', () => {
  const exported = exportedNames();
  const rules = readFileSync(join(REPO, 'contrib/prometheus/leakscope.rules.yml'), 'utf8');
  const exprs = [...rules.matchAll(/expr: \|?\n?([\s\S]*?)\n\s+(?:for|labels):/g)].map((m) => m[1]!);
  assert.equal(exprs.length, 5, 'five rules');
  const dash = JSON.parse(readFileSync(join(REPO, 'contrib/grafana/leakscope-watch.json'), 'utf8')) as {
    uid: string;
    panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
    templating: { list: Array<{ definition?: string }> };
  };
  assert.equal(dash.uid, 'leakscope-watch');
  const dashExprs = [
    ...dash.panels.flatMap((p) => p.targets.map((t) => t.expr)),
    ...dash.templating.list.flatMap((v) => (v.definition ? [v.definition] : [])),
  ];
  assert.ok(dash.panels.length >= 10 && dash.panels.every((p) => p.targets.length > 0));
  for (const e of [...exprs, ...dashExprs]) {
    const names = namesIn(e);
    assert.ok(names.length > 0, `no leakscope metric in ${e}`);
    for (const n of names) assert.ok(exported.has(n), `${n} (in ${e.trim()}) is not exported by the watch`);
  }
});

test('promtool test rules: the shipped rule tests pass', {
  skip: has('promtool', '--version') ? false : 'needs promtool (apt-get install prometheus)',
}, () => {
  const r = spawnSync('promtool', ['check', 'rules', 'leakscope.rules.yml'], {
    cwd: join(REPO, 'contrib/prometheus'),
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const t = spawnSync('promtool', ['test', 'rules', 'leakscope.rules.test.yml'], {
    cwd: join(REPO, 'contrib/prometheus'),
    encoding: 'utf8',
  });
  assert.equal(t.status, 0, t.stdout + t.stderr);
});

test('the systemd unit verifies and holds only the capabilities the watch needs', {
  skip: has('systemd-analyze', '--version') ? false : 'needs systemd-analyze',
}, () => {
  const unit = readFileSync(join(REPO, 'contrib/systemd/leakscope-watch.service'), 'utf8');
  const caps = (key: string) =>
    /^(\S+)=(.*)$/m
      .exec(unit.split('\n').find((l) => l.startsWith(`${key}=`)) ?? '')?.[2]
      ?.split(/\s+/)
      .sort();
  assert.deepEqual(caps('CapabilityBoundingSet'), ['CAP_DAC_READ_SEARCH', 'CAP_SYS_PTRACE']);
  assert.deepEqual(caps('AmbientCapabilities'), ['CAP_DAC_READ_SEARCH', 'CAP_SYS_PTRACE']);
  assert.match(unit, /^NoNewPrivileges=yes$/m);
  assert.match(unit, /^ExecStart=\S+ watch --nginx /m);
  // verify needs the ExecStart binary to exist: point it at this checkout (the file is never installed).
  const dir = mkdtempSync(join(os.tmpdir(), 'leakscope-unit-'));
  try {
    writeFileSync(
      join(dir, 'leakscope-watch.service'),
      unit.replace(/^ExecStart=\S+/m, `ExecStart=${join(REPO, 'bin/leakscope')}`),
    );
    const r = spawnSync('systemd-analyze', ['verify', join(dir, 'leakscope-watch.service')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.equal((r.stdout + r.stderr).trim(), '', 'no warnings');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
