// Which pid namespace a PID was named in. eBPF's bpf_get_current_pid_tgid gives a task's tgid in the
// initial pid namespace; a leakscope running inside a container names its target by the container's
// PID. Then the in-kernel filter must compare in the target's own namespace
// (bpf_get_ns_current_pid_tgid with the namespace's nsfs dev and inode; kernel >= 5.7).

import { readFileSync, statSync } from 'node:fs';
import { release } from 'node:os';
import { LeakscopeError } from '../model/errors.js';

/** The initial pid namespace's inode (PROC_PID_INIT_INO, include/linux/proc_ns.h). */
export const PROC_PID_INIT_INO = 0xeffffffc;

/** A pid namespace as bpf_get_ns_current_pid_tgid names it, and a process's tgid in it. */
export interface PidNamespaceFilter {
  dev: number;
  ino: number;
  tgid: number;
}

/** Kernel dev_t (MAJOR << 20 | MINOR) of a user-space st_dev (glibc / new_encode_dev encoding). */
export function kernelDev(stDev: number): number {
  const major = Math.floor(stDev / 256) & 0xfff;
  const minor = (stDev & 0xff) | (Math.floor(stDev / 4096) & 0xfff00);
  return major * (1 << 20) + minor;
}

/** The innermost PID of a process in its own pid namespace, from /proc/PID/status NSpid (Linux >= 4.1). */
export function innermostPid(statusText: string, pid: number): number {
  const m = /^NSpid:\s*([\d\s]+)$/m.exec(statusText);
  if (!m) return pid;
  const ids = m[1]!.trim().split(/\s+/).map(Number);
  return ids[ids.length - 1] ?? pid;
}

/**
 * undefined when leakscope runs in the initial pid namespace (PIDs it sees are the ones eBPF sees);
 * else the target's innermost pid namespace and its tgid there, for the in-kernel filter.
 */
export function pidNamespaceFilter(pid: number): PidNamespaceFilter | undefined {
  let own: number;
  try {
    own = statSync('/proc/self/ns/pid').ino;
  } catch {
    return undefined;
  } // no nsfs: no namespaces
  if (own === PROC_PID_INIT_INO) return undefined;
  const [major = 0, minor = 0] = release()
    .split('.')
    .map((x) => parseInt(x, 10));
  if (major < 5 || (major === 5 && minor < 7)) {
    throw new LeakscopeError(
      'not-supported',
      `tracing from inside a pid namespace needs Linux >= 5.7 (bpf_get_ns_current_pid_tgid); this is ${release()}: run leakscope in the host's pid namespace`,
    );
  }
  try {
    const st = statSync(`/proc/${pid}/ns/pid`);
    const tgid = innermostPid(readFileSync(`/proc/${pid}/status`, 'utf8'), pid);
    return { dev: kernelDev(st.dev), ino: st.ino, tgid };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') throw new LeakscopeError('no-such-process', `process ${pid} has exited`);
    throw new LeakscopeError(
      'permission',
      `cannot read the pid namespace of pid ${pid} (/proc/${pid}/ns/pid): ${(e as Error).message}`,
    );
  }
}
