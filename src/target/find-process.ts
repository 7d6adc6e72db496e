// Finding target processes: nginx instances (master + workers), their workers by RSS, siblings of a worker.
//
// A process title is whatever the process wrote over its argv, so it is never trusted to say what a
// process is: an nginx worker is a process whose executable (the inode /proc/PID/exe refers to) is
// an nginx binary (an ELF defining `ngx_cycle`) and whose parent runs that same executable (its
// master; workers are forked, never exec'd). The title only tells workers from the cache manager /
// loader children of the same master, narrows the candidates whose executable is read (a title
// mentioning nginx: nginx's ngx_setproctitle always writes "nginx: ..."), and supplies the master's
// `-p` / `-c` for display and filters; identity alone decides.
import { closeSync, fstatSync, openSync, readFileSync, readSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { LeakscopeError } from '../model/errors.js';
import { parseStatus } from '../formats/procfs/index.js';
import { ElfFile } from '../formats/elf/index.js';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  name: string;
  cmdline: string;
  rssBytes: number;
}

export function processInfo(pid: number): ProcessInfo | undefined {
  try {
    const st = parseStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0+$/, '').replace(/\0/g, ' ');
    const rss = st.get('VmRSS');
    return {
      pid,
      ppid: Number(st.get('PPid') ?? 0),
      name: st.get('Name') ?? '',
      cmdline,
      rssBytes: rss ? parseInt(rss, 10) * 1024 : 0,
    };
  } catch {
    return undefined;
  }
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

/** One running nginx: its master, the master's `-p` / `-c` (undefined: compiled-in default), its workers. */
export interface NginxInstance {
  master: ProcessInfo;
  /** Executable path as /proc/PID/exe names it (display only). */
  exe: string;
  prefix?: string;
  conf?: string;
  /** Worker processes, largest RSS first. */
  workers: ProcessInfo[];
}

/** Largest nginx / OpenResty binary leakscope will read to check for `ngx_cycle` (bytes). */
const MAX_EXE_BYTES = 256 << 20;

/** dev:ino of the file /proc/PID/exe refers to, or undefined (kernel thread, gone, not permitted). */
function exeIdentity(pid: number): string | undefined {
  try {
    const st = statSync(`/proc/${pid}/exe`);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

const nginxExe = new Map<string, boolean>();

/** True when the executable of PID (identified by dev:ino) is an ELF defining `ngx_cycle`. Cached per inode. */
function isNginxExecutable(pid: number, id: string): boolean {
  const known = nginxExe.get(id);
  if (known !== undefined) return known;
  let result = false;
  let fd: number | undefined;
  try {
    fd = openSync(`/proc/${pid}/exe`, 'r');
    const st = fstatSync(fd);
    if (st.isFile() && `${st.dev}:${st.ino}` === id && st.size >= 64 && st.size <= MAX_EXE_BYTES) {
      const bytes = Buffer.alloc(st.size);
      let off = 0;
      while (off < bytes.length) {
        const n = readSync(fd, bytes, off, bytes.length - off, off);
        if (n <= 0) break;
        off += n;
      }
      if (off === bytes.length) result = new ElfFile(bytes, `/proc/${pid}/exe`).findSymbol('ngx_cycle') !== undefined;
    }
  } catch {
    result = false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  nginxExe.set(id, result);
  return result;
}

/** Children of an nginx master that are not workers, by title (same executable, so same trust). */
const HELPER_TITLE = /\b(cache manager|cache loader|master) process\b/;

/** Titles worth checking: nginx writes "nginx: worker process" (OpenResty and Tengine too). */
const NGINX_TITLE = /\b(nginx|openresty|tengine)\b/i;

/** Every nginx instance on the host that has at least one worker (of one master if given), by master pid. */
export function nginxInstances(opts: { master?: number } = {}): NginxInstance[] {
  const procs = listProcesses();
  const byPid = new Map(procs.map((p) => [p.pid, p]));
  const ids = new Map<number, string | undefined>();
  const id = (pid: number) => {
    if (!ids.has(pid)) ids.set(pid, exeIdentity(pid));
    return ids.get(pid);
  };
  const instances = new Map<number, NginxInstance>();
  for (const p of procs) {
    if (opts.master !== undefined && p.ppid !== opts.master) continue;
    if (!NGINX_TITLE.test(p.cmdline)) continue;
    const parent = byPid.get(p.ppid);
    if (!parent) continue;
    const mine = id(p.pid);
    if (!mine || mine !== id(parent.pid) || !isNginxExecutable(p.pid, mine)) continue;
    if (HELPER_TITLE.test(p.cmdline)) continue;
    let inst = instances.get(parent.pid);
    if (!inst) {
      inst = { master: parent, exe: exePath(parent.pid), ...masterPaths(parent.cmdline), workers: [] };
      instances.set(parent.pid, inst);
    }
    inst.workers.push(p);
  }
  for (const inst of instances.values()) inst.workers.sort((a, b) => b.rssBytes - a.rssBytes);
  return [...instances.values()].sort((a, b) => a.master.pid - b.master.pid);
}

/** The executable's path as the kernel names it (readlink of the magic link: display only). */
function exePath(pid: number): string {
  try {
    return printable(readlinkSync(`/proc/${pid}/exe`));
  } catch {
    return '?';
  }
}

/** `-p PREFIX` and `-c CONF` of an nginx master, from its title ("nginx: master process /usr/sbin/nginx -p ... -c ..."). */
export function masterPaths(cmdline: string): { prefix?: string; conf?: string } {
  const m = /master process\s+(.*)$/.exec(cmdline);
  const words = (m ? m[1]! : cmdline).split(/\s+/).filter(Boolean);
  let prefix: string | undefined, conf: string | undefined;
  for (let i = 1; i < words.length; i++) {
    const w = words[i]!;
    if (!w.startsWith('-')) continue;
    // nginx's own parser (ngx_get_options): flags may be grouped; p, c, g, e, s take the rest of the word or the next one.
    for (let j = 1; j < w.length; j++) {
      const ch = w[j]!;
      if (!'pcges'.includes(ch)) continue;
      const value = w.length > j + 1 ? w.slice(j + 1) : words[++i];
      if (ch === 'p' && value) prefix = value;
      if (ch === 'c' && value) conf = value;
      break;
    }
  }
  if (prefix) prefix = stripSlash(resolve(prefix));
  if (conf && prefix) conf = resolve(prefix, conf);
  else if (conf?.startsWith('/')) conf = resolve(conf);
  return { prefix, conf };
}

function stripSlash(p: string): string {
  return p.length > 1 ? p.replace(/\/+$/, '') : p;
}

/** Bytes from a target shown to the user: control characters replaced. */
function printable(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters from the target are what this replaces
  return s.replace(/[\x00-\x1f\x7f]/g, '?');
}

/** A choice the user must make (several nginx instances): one line, then the candidates, exit 2. */
export class AmbiguousTargetError extends LeakscopeError {
  constructor(
    message: string,
    readonly details: string[],
  ) {
    super('usage', message);
  }
}

export interface NginxFilter {
  /** `--nginx=MASTER_PID` */
  master?: number;
  /** `--prefix DIR`: the master's `-p` */
  prefix?: string;
  /** `--conf FILE`: the master's `-c` */
  conf?: string;
}

function describe(inst: NginxInstance): string {
  const w = inst.workers;
  return (
    `master ${inst.master.pid}  prefix ${inst.prefix ? printable(inst.prefix) : '(default)'}  conf ${inst.conf ? printable(inst.conf) : '(default)'}  ` +
    `${w.length} worker${w.length === 1 ? '' : 's'} (${w.map((p) => p.pid).join(', ')})  ${inst.exe}`
  );
}

/** The nginx instance `--nginx` means: the only one, or the one the filter names. */
export function selectNginxInstance(filter: NginxFilter = {}): NginxInstance {
  let all = nginxInstances();
  const criteria: string[] = [];
  if (filter.master !== undefined) {
    criteria.push(`master ${filter.master}`);
    all = all.filter((i) => i.master.pid === filter.master);
    if (!all.length) {
      if (!processInfo(filter.master)) throw new LeakscopeError('no-such-process', `no such process: ${filter.master}`);
      throw new LeakscopeError(
        'not-found',
        `process ${filter.master} is not an nginx master with workers (no child runs its executable, an nginx binary defining ngx_cycle)`,
      );
    }
  }
  if (filter.prefix !== undefined) {
    const want = stripSlash(resolve(filter.prefix));
    criteria.push(`prefix ${want}`);
    all = all.filter((i) => i.prefix === want);
  }
  if (filter.conf !== undefined) {
    const want = resolve(filter.conf);
    criteria.push(`conf ${want}`);
    all = all.filter((i) => i.conf === want);
  }
  if (!all.length) {
    throw new LeakscopeError(
      'no-such-process',
      `no nginx worker process found${criteria.length ? ` for ${criteria.join(', ')}` : ''} ` +
        '(looked for processes whose executable is an nginx binary, an ELF defining ngx_cycle, and whose parent is their master)',
    );
  }
  if (all.length > 1) {
    throw new AmbiguousTargetError(
      `${all.length} nginx instances are running; choose one with --nginx=MASTER_PID, --prefix DIR or --conf FILE:`,
      all.map(describe),
    );
  }
  return all[0]!;
}

/** nginx / OpenResty worker processes (verified as above), largest RSS first; of one master if given. */
export function nginxWorkers(opts: { master?: number } = {}): ProcessInfo[] {
  return nginxInstances(opts)
    .flatMap((i) => i.workers)
    .sort((a, b) => b.rssBytes - a.rssBytes);
}

/** The worker with the largest RSS of the nginx instance `--nginx` selects. */
export function largestNginxWorker(filter: NginxFilter = {}): ProcessInfo {
  return selectNginxInstance(filter).workers[0]!;
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
  } catch {
    return undefined;
  }
}

/** Clock ticks per second of /proc times (sysconf(_SC_CLK_TCK); 100 on every Linux ABI leakscope supports). */
const USER_HZ = 100;
