// Child process for uprobe.test.ts's SIGKILL test: attaches a counting uprobe to
// `ebpf_target_add` in process PID of BINARY, prints "attached MAPFD PROGID LINKID" and waits
// to be killed. The parent duplicates MAPFD (pidfd_getfd) to watch the counter afterwards.
// With a third argument "sigint", it instead waits for SIGINT: the cleanup handler detaches
// the probe, then the child prints "interrupted COUNT" (what it has) and exits 0.
// Usage: node test-attach-child.js BINARY PID [sigint]
import { R0, R1, R6, exit, label, mov64, tgidFilter } from './asm.js';
import { interruptSignal } from './cleanup.js';
import { PerCpuArrayMap, u64 } from './maps.js';
import { loadProgram, objectInfo } from './prog.js';
import { countInto } from './test-support.js';
import { attachUprobe } from './uprobe.js';

const [binary, pidText, mode] = process.argv.slice(2);
const pid = Number(pidText);
const counter = new PerCpuArrayMap({ name: 'child_count', value: u64, maxEntries: 1 });
const prog = loadProgram({
  name: 'child_count',
  body: [mov64(R6, R1), tgidFilter(pid, 'out'), countInto(counter), label('out'), mov64(R0, 0), exit()],
});
const link = attachUprobe(prog, { binaryPath: binary!, symbol: 'ebpf_target_add' }, { pid });
const linkId = link.linkFd !== undefined ? objectInfo(link.linkFd, 'link').id : 0;
const keepAlive = setInterval(() => undefined, 1 << 30);
if (mode === 'sigint') {
  const { signal } = interruptSignal();
  signal.addEventListener('abort', () => {
    // Probes are detached already (link.attached is false); maps are still readable.
    const total = (counter.lookup(0) ?? []).reduce((a, b) => a + b, 0n);
    process.stdout.write(`interrupted ${total} attached=${link.attached}\n`);
    clearInterval(keepAlive);
  });
}
process.stdout.write(`attached ${counter.fd} ${prog.id()} ${linkId}\n`);
