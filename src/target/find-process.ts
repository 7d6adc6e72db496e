// Finding target processes: nginx workers by RSS, siblings of a worker.
import { readFileSync, readdirSync } from 'node:fs';
import { LeakscopeError } from '../model/errors.js';
import { parseStatus } from '../formats/procfs/index.js';

export interface ProcessInfo { pid: number; ppid: number; name: string; cmdline: string; rssBytes: number }

export function processInfo(pid: number): ProcessInfo | undefined {
  try {
    const st = parseStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ');
    const rss = st.get('VmRSS');
    return { pid, ppid: Number(st.get('PPid') ?? 0), name: st.get('Name') ?? '', cmdline, rssBytes: rss ? parseInt(rss, 10) * 1024 : 0 };
  } catch { return undefined; }
}

export function listProcesses(): ProcessInfo[] {
  const out: ProcessInfo[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const p = processInfo(Number(d));
    if (p) out.push(p);
  }
  return out;
}

/** nginx / OpenResty worker processes ("nginx: worker process"), largest RSS first. */
export function nginxWorkers(opts: { master?: number } = {}): ProcessInfo[] {
  return listProcesses()
    .filter((p) => /^(nginx|openresty): worker process/.test(p.cmdline) && (opts.master === undefined || p.ppid === opts.master))
    .sort((a, b) => b.rssBytes - a.rssBytes);
}

/** The nginx worker with the largest RSS (`--nginx`). */
export function largestNginxWorker(): ProcessInfo {
  const w = nginxWorkers();
  if (!w.length) throw new LeakscopeError('no-such-process', 'no nginx worker process found (looked for "nginx: worker process" in /proc/*/cmdline)');
  return w[0]!;
}

/** Other workers of the same master: the healthy baseline for comparisons. */
export function siblingWorkers(pid: number): ProcessInfo[] {
  const me = processInfo(pid);
  if (!me) return [];
  return nginxWorkers({ master: me.ppid }).filter((p) => p.pid !== pid);
}
