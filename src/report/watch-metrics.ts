// `leakscope watch`'s /metrics: a `leakscope.watch/1` document as Prometheus text. Every name is
// `leakscope_*` with its unit in the name; per-worker labels are `pid` and `worker`, plus
// `category` (RSS), `bucket` (chunk-size range), `owner` and `module` (nginx pools). Cardinality is
// bounded by the document (top-N modules per owner, the rest as module="other"; at most one row per
// power-of-two bucket). A worker that is gone is simply absent: Prometheus marks its series stale.

import type { GrowthSeries, WatchDocument, WatchWorker } from '../contract/watch.js';
import { PrometheusText } from './prometheus-text.js';
import type { Labels } from './prometheus-text.js';

/** "256KiB-512KiB": the label of the power-of-two chunk-size bucket [minBytes, 2 * minBytes). */
export function bucketLabel(minBytes: number): string {
  return `${binarySize(minBytes)}-${binarySize(minBytes * 2)}`;
}

function binarySize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let u = 0;
  while (n >= 1024 && n % 1024 === 0 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${n}${units[u]}`;
}

function seriesLabels(s: GrowthSeries): Labels {
  switch (s.kind) {
    case 'bucket':
      return { bucket: bucketLabel(s.minBytes) };
    case 'pool':
      return { owner: s.owner, module: s.module };
    case 'category':
      return { category: s.category };
  }
}

export function renderWatchMetrics(doc: WatchDocument): string {
  const p = new PrometheusText();
  const self = doc.self;
  p.family('leakscope_watch_start_time_seconds', 'gauge', 'Unix time the watch started.')({}, self.startedAtSeconds);
  p.family(
    'leakscope_watch_interval_seconds',
    'gauge',
    'Configured census interval (--interval).',
  )({}, self.intervalSeconds);
  p.family('leakscope_watch_workers', 'gauge', 'Workers followed now.')({}, doc.workers.length);
  p.family(
    'leakscope_watch_cycles_total',
    'counter',
    'Census cycles run (one census of every followed worker each).',
  )({}, self.cycles);
  p.family(
    'leakscope_watch_cycles_delayed_total',
    'counter',
    "Cycles started later than the interval because the censuses' CPU time exceeded the --budget share of one core.",
  )({}, self.cyclesDelayed);
  p.family(
    'leakscope_watch_cycle_duration_seconds',
    'gauge',
    'Wall time of the last census cycle.',
  )({}, self.lastCycleSeconds);
  p.family(
    'leakscope_watch_cycle_cpu_seconds',
    'gauge',
    "CPU time (user + system) of the last cycle's censuses.",
  )({}, self.lastCycleCpuSeconds);
  p.family(
    'leakscope_watch_cycle_duty_ratio',
    'gauge',
    'CPU share of one core the last cycle took: its census CPU time / its period.',
  )({}, self.lastCycleDuty);
  p.family(
    'leakscope_watch_budget_ratio',
    'gauge',
    'Share of one core the censuses may use (--budget).',
  )({}, self.budget);
  p.family(
    'leakscope_watch_cpu_seconds_total',
    'counter',
    'CPU time (user + system) of the watch process.',
  )({}, self.cpuSeconds);
  p.family(
    'leakscope_watch_resident_memory_bytes',
    'gauge',
    'Resident set size of the watch process.',
  )({}, self.residentBytes);
  p.family('leakscope_reports_total', 'counter', 'Analyses triggered by growth (reports written).')({}, self.reports);
  p.family(
    'leakscope_analysis_running',
    'gauge',
    '1 while a triggered analysis (with its trace) runs.',
  )({}, self.analysisRunning ? 1 : 0);
  const suppressed = p.family(
    'leakscope_triggers_suppressed_total',
    'counter',
    'Growth above --trigger that started no analysis, by reason (cooldown: within --cooldown of the last; busy: one was running).',
  );
  suppressed({ reason: 'cooldown' }, self.triggersSuppressed.cooldown);
  suppressed({ reason: 'busy' }, self.triggersSuppressed.busy);
  p.family('leakscope_analysis_errors_total', 'counter', 'Triggered analyses that failed.')({}, self.analysisErrors);

  for (const w of doc.workers) renderWorker(p, w);

  const r = doc.lastReport;
  if (r) {
    const labels: Labels = {
      pid: r.pid,
      worker: r.worker,
      verdict: r.verdict,
      module: r.module ?? '',
      bucket: r.bucketMinBytes !== null ? bucketLabel(r.bucketMinBytes) : '',
    };
    p.family(
      'leakscope_last_report_verdict',
      'gauge',
      'The last triggered report: 1, with its verdict (leak, no-leak, cannot-tell, error), module and bucket as labels.',
    )(labels, 1);
    p.family(
      'leakscope_last_report_timestamp_seconds',
      'gauge',
      'Unix time of the last triggered report.',
    )({ pid: r.pid, worker: r.worker }, r.timestampSeconds);
  }
  return p.text();
}

function renderWorker(p: PrometheusText, w: WatchWorker): void {
  const id = { pid: w.pid, worker: w.worker };
  p.family(
    'leakscope_worker_start_time_seconds',
    'gauge',
    'Unix time the followed process started.',
  )(id, w.startTimeSeconds);
  const c = w.census;
  p.family(
    'leakscope_census_success',
    'gauge',
    '1 when the last census of the worker produced data, 0 when it failed.',
  )(id, c.ok ? 1 : 0);
  p.family(
    'leakscope_census_errors_total',
    'counter',
    'Failed censuses (or census phases) since the worker was first seen.',
  )(id, c.errors);
  p.family('leakscope_census_timestamp_seconds', 'gauge', 'Unix time the last census ended.')(id, c.timestampSeconds);
  p.family(
    'leakscope_census_duration_seconds',
    'gauge',
    'Wall time of the last census (static reads: mem, heap, pools).',
  )(id, c.durationSeconds);
  const phase = p.family(
    'leakscope_census_phase_duration_seconds',
    'gauge',
    'Wall time of each phase of the last census.',
  );
  phase({ ...id, phase: 'mem' }, c.phases.memSeconds);
  phase({ ...id, phase: 'heap' }, c.phases.heapSeconds);
  phase({ ...id, phase: 'pools' }, c.phases.poolsSeconds);

  if (w.rss) {
    const rss = p.family(
      'leakscope_rss_bytes',
      'gauge',
      'Resident bytes by category (leakscope mem): glibc heaps, mmapped chunks, nginx shm, LuaJIT, code, stacks, other.',
    );
    for (const r of w.rss) rss({ ...id, category: r.category }, r.rssBytes);
  }
  const g = w.glibc;
  if (g) {
    const inUseBytes = p.family(
      'leakscope_glibc_in_use_bytes',
      'gauge',
      'glibc in-use chunk bytes (mmapped included) by chunk-size bucket.',
    );
    const inUseChunks = p.family(
      'leakscope_glibc_in_use_chunks',
      'gauge',
      'glibc in-use chunks (mmapped included) by chunk-size bucket.',
    );
    const freeBytes = p.family(
      'leakscope_glibc_free_bytes',
      'gauge',
      'glibc free chunk bytes (tcache, fastbins, bins; top excluded) by chunk-size bucket.',
    );
    const freeChunks = p.family(
      'leakscope_glibc_free_chunks',
      'gauge',
      'glibc free chunks (tcache, fastbins, bins; top excluded) by chunk-size bucket.',
    );
    for (const b of g.buckets) {
      const l = { ...id, bucket: bucketLabel(b.minBytes) };
      inUseBytes(l, b.inUseBytes);
      inUseChunks(l, b.inUseChunks);
      freeBytes(l, b.freeBytes);
      freeChunks(l, b.freeChunks);
    }
    p.family('leakscope_glibc_top_bytes', 'gauge', 'Bytes in the top chunks of all arenas.')(id, g.topBytes);
    p.family('leakscope_glibc_mmapped_bytes', 'gauge', 'Bytes of mmapped chunks (full mappings).')(id, g.mmappedBytes);
    p.family(
      'leakscope_glibc_system_bytes',
      'gauge',
      'Memory the arenas got from the system (malloc_state.system_mem, summed).',
    )(id, g.systemBytes);
    p.family('leakscope_glibc_arenas', 'gauge', 'Arenas found.')(id, g.arenas);
    p.family(
      'leakscope_glibc_census_complete',
      'gauge',
      '1 when every heap was walked to its end.',
    )(id, g.complete ? 1 : 0);
    p.family(
      'leakscope_glibc_inconsistencies',
      'gauge',
      'Inconsistencies the last heap walk found (a concurrently changing or corrupt heap).',
    )(id, g.inconsistencies);
  }
  if (w.pools) {
    const bytes = p.family(
      'leakscope_nginx_pool_bytes',
      'gauge',
      'Bytes held by nginx memory pools (blocks + large allocations) by owner and module (top N modules, the rest as "other").',
    );
    const count = p.family('leakscope_nginx_pools', 'gauge', 'nginx memory pools by owner and module.');
    for (const gr of w.pools.groups) {
      const l = { ...id, owner: gr.owner, module: gr.module };
      bytes(l, gr.bytes);
      count(l, gr.pools);
    }
  }
  if (w.lua) {
    // Extension point: present only when a LuaJIT census module fills WatchWorker.lua.
    const gc = p.family('leakscope_lua_gc_total_bytes', 'gauge', 'LuaJIT gc.total per VM.');
    for (const vm of w.lua.vms) gc({ ...id, vm: `0x${vm.globalState.toString(16)}` }, vm.gcTotalBytes);
    const tables = p.family('leakscope_lua_table_bytes', 'gauge', 'Largest Lua tables by path (retained bytes).');
    for (const t of w.lua.tables) tables({ ...id, table: t.path }, t.retainedBytes);
  }
  if (w.growth.length) {
    const rate = p.family(
      'leakscope_growth_bytes_per_hour',
      'gauge',
      'Growth rate (least-squares slope over the recent censuses) per bucket, pool group or RSS category.',
    );
    const low = p.family(
      'leakscope_growth_low_bytes_per_hour',
      'gauge',
      "Lower end of the growth rate's 95% confidence interval (above 0: growth is significant).",
    );
    for (const gr of w.growth) {
      const l = { ...id, ...seriesLabels(gr.series) };
      rate(l, gr.bytesPerHour);
      low(l, gr.lowBytesPerHour);
    }
  }
}
