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

/** Unix time (seconds) a process started: /proc/PID/stat starttime (clock ticks after boot,
 *  USER_HZ = 100 on Linux) + /proc/stat btime. With the pid, it identifies a process across pid reuse. */
export function processStartSeconds(pid: number): number | undefined {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parentheses: fields start after the last ')'; starttime is field 22
    const ticks = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[19]);
    const btime = /^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'));
    if (!btime || !Number.isFinite(ticks)) return undefined;
    return Number(btime[1]) + ticks / USER_HZ;
  } catch { return undefined; }
}

/** Clock ticks per second of /proc times (sysconf(_SC_CLK_TCK); 100 on every Linux ABI leakscope supports). */
const USER_HZ = 100;
