// Notices the target's exit during a trace window without waking Node up: a pidfd (kernel >= 5.3)
// is readable once the process has exited (kernel/pid.c pidfd_poll: the thread group is gone, a
// zombie counts as exited), and libuv waits for that in its own epoll. Where pidfd_open fails, the
// process is checked every 100 ms instead (processAlive: /proc/PID/stat state Z / X = gone).

import koffi from 'koffi';
import { closeFd, pidfdOpen } from '../ebpf/syscalls.js';

/** Calls `onExit` once when `pid` exits (or is a zombie); returns the function that stops watching. */
export function watchExit(pid: number, alive: (pid: number) => boolean, onExit: () => void): () => void {
  let fired = false;
  const fire = () => {
    if (fired) return;
    fired = true;
    onExit();
  };
  let pidfd = -1;
  try {
    pidfd = pidfdOpen(pid);
  } catch {
    pidfd = -1;
  }
  if (pidfd < 0) {
    const timer = setInterval(() => {
      if (!alive(pid)) fire();
    }, 100);
    return () => clearInterval(timer);
  }
  const poller = koffi.node.poll(pidfd, { readable: true }, () => {
    poller.stop();
    fire();
  });
  poller.unref(); // the window's own timers keep Node running; this must not
  // Exited between the caller's last look and pidfd_open: the pidfd is readable at once, but check anyway.
  if (!alive(pid)) fire();
  let open = true;
  return () => {
    if (!open) return;
    open = false;
    poller.stop();
    poller.close();
    closeFd(pidfd);
  };
}
