// Test helper process: `node dist/test/helpers/freeze-hold.js PID` stops PID with
// freezeInEventWait (src/target/freeze.ts), prints "frozen SYSCALL" and then hangs without
// releasing it, so a test can SIGKILL this process mid-freeze and check the kernel resumes PID.
import { freezeInEventWait } from '../../src/target/freeze.js';

const pid = Number(process.argv[2]);
// Without a PID (e.g. picked up by `node --test` discovery) it does nothing.
if (Number.isInteger(pid) && pid > 0) {
  const f = freezeInEventWait(pid);
  process.stdout.write(`frozen ${f.syscall}\n`);
  setInterval(() => {}, 1 << 30);
}
