// What the eBPF tracer needs from this machine, each check with a one-line explanation.
// Nothing here loads a program; `probeRingBuffer()` creates (and closes) one tiny map.
import { readFileSync, existsSync } from 'node:fs';
import { release } from 'node:os';
import { LeakscopeError } from '../model/errors.js';
import { BpfCmd, attrBuffer, bpfRaw, closeFd, errnoName } from './syscalls.js';

/** Capability bits (include/uapi/linux/capability.h). */
export const CAP_SYS_ADMIN = 21,
  CAP_PERFMON = 38,
  CAP_BPF = 39;

export interface FeatureCheck {
  name: 'privileges' | 'kernel-version' | 'uprobe-pmu' | 'perf-event-paranoid' | 'ring-buffer';
  ok: boolean;
  /** One line: what was found and, when not ok, what to do. */
  detail: string;
}

/** Effective capability set of this process (CapEff in /proc/self/status). */
export function effectiveCaps(): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? BigInt(`0x${m[1]}`) : 0n;
}
const has = (caps: bigint, bit: number): boolean => ((caps >> BigInt(bit)) & 1n) === 1n;

/** "6.18.44-fc" -> [6, 18]. */
export function kernelVersion(text = release()): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

export function checkPrivileges(): FeatureCheck {
  const caps = effectiveCaps();
  const admin = has(caps, CAP_SYS_ADMIN);
  const ok = admin || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON));
  const uid = process.getuid?.() ?? -1;
  return {
    name: 'privileges',
    ok,
    detail: ok
      ? `uid ${uid} with ${admin ? 'CAP_SYS_ADMIN' : 'CAP_BPF + CAP_PERFMON'}`
      : `uid ${uid} lacks CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN): run as root or \`setcap cap_bpf,cap_perfmon+ep\` on node`,
  };
}

export function checkKernelVersion(): FeatureCheck {
  const [major, minor] = kernelVersion();
  const ok = major > 5 || (major === 5 && minor >= 8);
  return {
    name: 'kernel-version',
    ok,
    detail: ok
      ? `kernel ${release()} (ring buffers need >= 5.8)`
      : `kernel ${release()} is older than 5.8: no BPF ring buffer`,
  };
}

export function checkUprobePmu(): FeatureCheck {
  const ok = existsSync('/sys/bus/event_source/devices/uprobe/type');
  return {
    name: 'uprobe-pmu',
    ok,
    detail: ok
      ? 'uprobe PMU present (/sys/bus/event_source/devices/uprobe)'
      : '/sys/bus/event_source/devices/uprobe is missing: kernel without CONFIG_UPROBE_EVENTS (or sysfs not mounted)',
  };
}

/**
 * perf_event_paranoid matters only without CAP_PERFMON / CAP_SYS_ADMIN: uprobe events are
 * tracepoint-like and need paranoid <= -1 for unprivileged users (Debian adds level 3 = deny all).
 */
export function checkPerfEventParanoid(): FeatureCheck {
  let level = NaN;
  try {
    level = Number.parseInt(readFileSync('/proc/sys/kernel/perf_event_paranoid', 'utf8'), 10);
  } catch {
    // absent: not a perf-enabled kernel; the uprobe check says more
  }
  const caps = effectiveCaps();
  const privileged = has(caps, CAP_SYS_ADMIN) || has(caps, CAP_PERFMON);
  const ok = privileged || level <= -1;
  return {
    name: 'perf-event-paranoid',
    ok,
    detail: privileged
      ? `kernel.perf_event_paranoid = ${level} (irrelevant with CAP_PERFMON)`
      : `kernel.perf_event_paranoid = ${level}: without CAP_PERFMON uprobes need -1 (sysctl kernel.perf_event_paranoid=-1)`,
  };
}

/** Creates and closes a 4 KiB ring buffer map: proves both bpf(2) access and ring buffer support. */
export function probeRingBuffer(): FeatureCheck {
  const a = attrBuffer();
  a.buf.writeUInt32LE(27, 0); // BPF_MAP_TYPE_RINGBUF
  a.buf.writeUInt32LE(4096, 12);
  const fd = bpfRaw(BpfCmd.MAP_CREATE, a);
  if (fd >= 0) {
    closeFd(fd);
    return { name: 'ring-buffer', ok: true, detail: 'BPF ring buffer map created' };
  }
  const why = errnoName(-fd);
  return {
    name: 'ring-buffer',
    ok: false,
    detail:
      -fd === 1
        ? `bpf(MAP_CREATE ringbuf): EPERM: not allowed to use bpf(2)`
        : `bpf(MAP_CREATE ringbuf): ${why}: kernel lacks BPF ring buffers (< 5.8?)`,
  };
}

/** Every check, cheapest first. */
export function checkEbpfSupport(): FeatureCheck[] {
  const checks = [checkPrivileges(), checkKernelVersion(), checkUprobePmu(), checkPerfEventParanoid()];
  if (checks[0]!.ok) checks.push(probeRingBuffer());
  return checks;
}

/** Throws the first failed check as 'permission' or 'not-supported'; returns the checks otherwise. */
export function requireEbpf(): FeatureCheck[] {
  const checks = checkEbpfSupport();
  const bad = checks.find((c) => !c.ok);
  if (bad) {
    const code = bad.name === 'privileges' || bad.name === 'perf-event-paranoid' ? 'permission' : 'not-supported';
    throw new LeakscopeError(code, `eBPF tracing unavailable: ${bad.detail}`);
  }
  return checks;
}
