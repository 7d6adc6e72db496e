// Did a live process run between two moments? Per thread: the syscall it is blocked in
// (/proc/PID/task/TID/syscall, first field; "running" when on CPU), its CPU time
// (/proc/PID/task/TID/schedstat, first field, ns) and its context switches (status). Two
// samples with every thread blocked in the same syscall and unchanged run time and switch
// counts prove no thread executed a single user instruction in between: memory read in
// between is a consistent snapshot. Core files are at rest by construction.

import { readFileSync, readdirSync } from 'node:fs';
import type { AddressSpace } from './address-space.js';

export interface ThreadSample {
  tid: number;
  syscall: number;
  runNs: number;
  switches: number;
}
export interface ActivitySample {
  threads: ThreadSample[];
}

/** Linux x86-64 syscall numbers of the event waits a server sits in between requests. */
export const EVENT_WAIT_SYSCALLS = new Set([
  7 /* poll */, 23 /* select */, 232 /* epoll_wait */, 270 /* pselect6 */, 271 /* ppoll */, 281 /* epoll_pwait */,
  441 /* epoll_pwait2 */,
]);

/** A sample of every thread (undefined for a core file or a process that vanished). */
export function sampleActivity(space: AddressSpace): ActivitySample | undefined {
  if (space.kind !== 'live') return undefined;
  const dir = `/proc/${space.pid}/task`;
  let tids: string[];
  try {
    tids = readdirSync(dir);
  } catch {
    return undefined;
  }
  const threads: ThreadSample[] = [];
  for (const t of tids) {
    try {
      const sc = readFileSync(`${dir}/${t}/syscall`, 'utf8').trim().split(' ')[0]!;
      const runNs = Number(readFileSync(`${dir}/${t}/schedstat`, 'utf8').split(' ')[0]);
      const st = readFileSync(`${dir}/${t}/status`, 'utf8');
      const v = /voluntary_ctxt_switches:\s*(\d+)/.exec(st),
        nv = /nonvoluntary_ctxt_switches:\s*(\d+)/.exec(st);
      threads.push({
        tid: Number(t),
        syscall: /^\d+$/.test(sc) ? Number(sc) : -1,
        runNs,
        switches: Number(v?.[1] ?? -1) + Number(nv?.[1] ?? -1),
      });
    } catch {
      /* thread exited between readdir and read */
    }
  }
  threads.sort((a, b) => a.tid - b.tid);
  return { threads };
}

/** Whether no thread ran between `before` and `after` (same threads, blocked, unchanged counters), with the reason if not. */
export function stayedIdle(
  before: ActivitySample | undefined,
  after: ActivitySample | undefined,
): { idle: boolean; why: string } {
  if (!before || !after) return { idle: false, why: 'thread state unavailable' };
  if (before.threads.length !== after.threads.length) return { idle: false, why: 'threads were created or exited' };
  for (let i = 0; i < before.threads.length; i++) {
    const a = before.threads[i]!,
      b = after.threads[i]!;
    if (a.tid !== b.tid) return { idle: false, why: 'threads were created or exited' };
    if (a.syscall < 0 || b.syscall < 0) return { idle: false, why: `thread ${a.tid} was running` };
    if (a.syscall !== b.syscall || a.runNs !== b.runNs || a.switches !== b.switches)
      return { idle: false, why: `thread ${a.tid} ran during the copy` };
  }
  return {
    idle: true,
    why: 'every thread stayed blocked in the same system call with unchanged CPU time and context switches',
  };
}
