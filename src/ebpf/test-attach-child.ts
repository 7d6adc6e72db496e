// Child process for uprobe.test.ts's SIGKILL test: attaches a counting uprobe to
// `ebpf_target_add` in process PID of BINARY, prints "attached MAPFD PROGID LINKID" and waits
// to be killed. The parent duplicates MAPFD (pidfd_getfd) to watch the counter afterwards.
// Usage: node test-attach-child.js BINARY PID
import { R0, R1, R6, exit, label, mov64, tgidFilter } from './asm.js';
import { PerCpuArrayMap, u64 } from './maps.js';
import { loadProgram, objectInfo } from './prog.js';
import { countInto } from './test-support.js';
import { attachUprobe } from './uprobe.js';

const [binary, pidText] = process.argv.slice(2);
const pid = Number(pidText);
const counter = new PerCpuArrayMap({ name: 'child_count', value: u64, maxEntries: 1 });
const prog = loadProgram({
  name: 'child_count',
  body: [mov64(R6, R1), tgidFilter(pid, 'out'), countInto(counter), label('out'), mov64(R0, 0), exit()],
});
const link = attachUprobe(prog, { binaryPath: binary!, symbol: 'ebpf_target_add' }, { pid });
const linkId = link.linkFd !== undefined ? objectInfo(link.linkFd, 'link').id : 0;
process.stdout.write(`attached ${counter.fd} ${prog.id()} ${linkId}\n`);
setInterval(() => undefined, 1 << 30);
