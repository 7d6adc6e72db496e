// Reports kept by `leakscope watch --reports DIR`: one directory per triggered analysis,
// DIR/<UTC yyyymmddThhmmssZ>-pid<PID>/ with report.html, analyze.json, leaks.pb.gz (pprof of the
// trace, when one ran) and trigger.json (why it ran). Retention (--keep N) removes the oldest of
// these directories only: nothing else under DIR is ever touched.

import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { AnalyzeDocument } from '../contract/analyze.js';
import { renderHtmlReport } from '../report/html-report.js';
import { toPprof } from '../formats/pprof/pprof.js';
import type { StackSample } from '../model/stacks.js';
import { LeakscopeError } from '../model/errors.js';
import { writeFile } from './output.js';

/** Names of the directories this module creates (and the only ones retention removes). */
const REPORT_DIR = /^\d{8}T\d{6}Z-pid\d+(-\d+)?$/;

export const REPORT_FILES = {
  html: 'report.html',
  json: 'analyze.json',
  pprof: 'leaks.pb.gz',
  trigger: 'trigger.json',
} as const;

function stamp(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/** Creates a fresh report directory (mode 0700) under `root` for `pid` at `when`. */
export function createReportDirectory(root: string, pid: number, when: Date): string {
  try {
    mkdirSync(root, { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new LeakscopeError(
      'io',
      `cannot create ${root}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  for (let i = 0; i < 100; i++) {
    const dir = join(root, `${stamp(when)}-pid${pid}${i ? `-${i}` : ''}`);
    try {
      mkdirSync(dir, { mode: 0o700 });
      return dir;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new LeakscopeError(
        'io',
        `cannot create ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }
  throw new LeakscopeError('io', `cannot create a report directory under ${root}: 100 exist for this second`);
}

/** Writes the analysis's files into `dir`. Returns the names written. */
export function writeReport(dir: string, doc: AnalyzeDocument, trigger: object): string[] {
  const written: string[] = [];
  const put = (name: string, body: string | Uint8Array) => {
    writeFile(join(dir, name), body);
    written.push(name);
  };
  put(REPORT_FILES.trigger, JSON.stringify(trigger, null, 2) + '\n');
  put(REPORT_FILES.json, JSON.stringify(doc, null, 2) + '\n');
  put(REPORT_FILES.html, renderHtmlReport(doc));
  const pprof = pprofOfAnalysis(doc);
  if (pprof) put(REPORT_FILES.pprof, pprof);
  return written;
}

/** The trace of an analysis as a gzipped pprof profile (inuse_space etc., see formats/pprof), or null without a trace. */
export function pprofOfAnalysis(doc: AnalyzeDocument): Uint8Array | null {
  const leaks = doc.leaks;
  if (!leaks) return null;
  const samples: StackSample[] = leaks.stacks.map((s) => ({
    frames: s.frames.map((f) => ({ function: f.function, module: f.module, offset: f.offset })),
    bytes: s.bytes,
    count: s.count,
    allocBytes: s.allocBytes,
    allocCount: s.allocCount,
  }));
  const durationSeconds = leaks.durationSeconds;
  const end = Date.parse(doc.generatedAt);
  const startMs = (Number.isFinite(end) ? end : Date.now()) - durationSeconds * 1000;
  return toPprof(samples, {
    durationNanos: Math.round(durationSeconds * 1e9),
    timeNanos: BigInt(Math.round(startMs)) * 1000000n,
    sampling: leaks.sampling.sampleBytes ? { periodBytes: leaks.sampling.sampleBytes } : undefined,
  });
}

/** Report directories under `root`, oldest first. */
export function listReportDirectories(root: string): string[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  return names.filter((n) => REPORT_DIR.test(n)).sort();
}

/** Removes the oldest report directories beyond `keep`. Returns the removed names. */
export function enforceRetention(root: string, keep: number): string[] {
  const dirs = listReportDirectories(root);
  const removed = dirs.slice(0, Math.max(0, dirs.length - keep));
  for (const n of removed) rmSync(join(root, n), { recursive: true, force: true });
  return removed;
}
