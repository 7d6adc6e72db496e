// Opt-in pause of a live process's main thread while it sits in an event wait (epoll_wait
// and friends), for an exact copy of memory a busy thread keeps changing (`lua --freeze`).
// PTRACE_SEIZE + PTRACE_INTERRUPT, never SIGSTOP: no signal is sent, the parent (nginx's
// master) sees nothing, and if leakscope dies while the thread is stopped (even SIGKILL)
// the kernel detaches it on the tracer's exit and it resumes (kernel/ptrace.c exit_ptrace).
// The stop is accepted only when the thread is in an event-wait system call, i.e. between
// two events, never in the middle of request processing; otherwise it is released at once
// and retried. Only the thread with tid == pid is stopped.

import koffi from 'koffi';
import { readFileSync } from 'node:fs';
import { LeakscopeError } from '../model/errors.js';
import { EVENT_WAIT_SYSCALLS } from './thread-activity.js';

const PTRACE_DETACH = 17,
  PTRACE_SEIZE = 0x4206,
  PTRACE_INTERRUPT = 0x4207;
const WALL = 0x40000000,
  PTRACE_EVENT_STOP = 128;

type KoffiFn = ReturnType<ReturnType<typeof koffi.load>['func']>;
interface Libc {
  ptrace: KoffiFn;
  waitpid: KoffiFn;
}
let libc: Libc | undefined;
function fns(): Libc {
  if (!libc) {
    const lib = koffi.load('libc.so.6');
    libc = {
      ptrace: lib.func('long ptrace(long request, int pid, long addr, long data)'),
      waitpid: lib.func('int waitpid(int pid, _Out_ int *status, int options)'),
    };
  }
  return libc;
}

export interface Frozen {
  pid: number;
  /** System call number the thread was stopped in. */
  syscall: number;
  /** Attempts it took (1 = the first). */
  attempts: number;
  /** Resumes the thread (idempotent). */
  release(): void;
}

function syscallOf(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/syscall`, 'utf8').trim().split(' ')[0]!;
    return /^\d+$/.test(f) ? Number(f) : -1;
  } catch {
    return -2;
  }
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * Stops thread `pid` while it waits for events. Tries up to `attempts` times, `intervalMs`
 * apart; throws 'not-supported' when the thread never sat in an event wait, 'permission'
 * without CAP_SYS_PTRACE, 'no-such-process' if it exited.
 */
export function freezeInEventWait(pid: number, opts: { attempts?: number; intervalMs?: number } = {}): Frozen {
  const attempts = opts.attempts ?? 3000,
    interval = opts.intervalMs ?? 1;
  const { ptrace, waitpid } = fns();
  for (let a = 1; a <= attempts; a++) {
    const before = syscallOf(pid);
    if (before === -2) throw new LeakscopeError('no-such-process', `no such process: ${pid}`);
    if (!EVENT_WAIT_SYSCALLS.has(before)) {
      sleepSync(interval);
      continue;
    }
    if (Number(ptrace(PTRACE_SEIZE, pid, 0, 0)) < 0) {
      const errno = koffi.errno();
      if (errno === 1 || errno === 13)
        throw new LeakscopeError(
          'permission',
          `ptrace(PTRACE_SEIZE, ${pid}): permission denied (needs root or CAP_SYS_PTRACE, and no other tracer)`,
        );
      if (errno === 3) throw new LeakscopeError('no-such-process', `no such process: ${pid}`);
      throw new LeakscopeError('io', `ptrace(PTRACE_SEIZE, ${pid}): errno ${errno}`);
    }
    let released = false,
      reinject = 0;
    const release = () => {
      if (!released) {
        released = true;
        ptrace(PTRACE_DETACH, pid, 0, reinject);
      }
    };
    try {
      if (Number(ptrace(PTRACE_INTERRUPT, pid, 0, 0)) < 0)
        throw new LeakscopeError('io', `ptrace(PTRACE_INTERRUPT, ${pid}): errno ${koffi.errno()}`);
      const status = [0];
      if (Number(waitpid(pid, status, WALL)) !== pid)
        throw new LeakscopeError('io', `waitpid(${pid}): errno ${koffi.errno()}`);
      const st = status[0]!;
      if ((st & 0xff) !== 0x7f) {
        released = true;
        throw new LeakscopeError('no-such-process', `process ${pid} exited while being stopped`);
      }
      // A signal-delivery stop instead of our interrupt: hand the signal back on detach.
      if (((st >> 16) & 0xff) !== PTRACE_EVENT_STOP) reinject = (st >> 8) & 0xff;
      const at = syscallOf(pid);
      if (EVENT_WAIT_SYSCALLS.has(at) && reinject === 0) return { pid, syscall: at, attempts: a, release };
    } catch (e) {
      release();
      throw e;
    }
    release();
    sleepSync(interval);
  }
  throw new LeakscopeError(
    'not-supported',
    `process ${pid} was never found waiting for events in ${attempts} attempts (not an event-loop server, or saturated); --freeze needs it idle for an instant`,
  );
}
