// What one probe hit costs on this machine, now (issue 18: the cost printed with each trace is
// measured, not a constant). leakscope probes libc's free in its own process, at the instruction
// malloc mode uses (past free's leading `test`: an emulated `je`), with a program that only counts,
// calls free(NULL) CALLS times untraced and traced, and divides the extra CPU time of its own
// thread (CLOCK_THREAD_CPUTIME_ID: the trap and the program run in the calling thread) by the hits
// counted. Median of REPEATS; about 0.1 s. The target is not touched.
// A second program also copies 4 KiB of the user stack (probe_read_user into a per-CPU buffer, as
// the capture programs do): its extra cost per hit is what each captured stack adds.

import { readFileSync } from 'node:fs';
import koffi from 'koffi';
import * as A from '../ebpf/asm.js';
import { FP, R0, R1, R2, R3, R6 } from '../ebpf/asm.js';
import { PerCpuArrayMap, bytes, u64 } from '../ebpf/maps.js';
import { AttachType, loadProgram } from '../ebpf/prog.js';
import { attachUprobe, attachUprobeMulti, resolveUprobeOffset } from '../ebpf/uprobe.js';
import type { UprobeLink } from '../ebpf/uprobe.js';
import { loadElf } from '../formats/elf/index.js';
import { entryProbeOffsetAt } from './call-sites.js';

const CALLS = 5_000;
const REPEATS = 3;
/** clock_gettime's clock id (uapi linux/time.h). */
const CLOCK_THREAD_CPUTIME_ID = 3;

export interface HitCost {
  /** Extra CPU per hit (µs): the trap, the kernel's dispatch and a counting program. */
  perHitMicros: number;
  hits: number;
  /** 'uprobe_multi' link or perf-event 'uprobe' (what the measured probe was). */
  kind: 'uprobe_multi' | 'uprobe';
  /** Extra CPU per 4 KiB of user stack copied by a capture (µs; >= 0). */
  copyMicrosPer4KiB: number;
}

const COPY_BYTES = 4096;

let ffi: { free: (p: null) => void; cpuNs: () => number; spec: { sec: number; nsec: number } } | undefined;
function libcFfi() {
  if (ffi) return ffi;
  const lib = koffi.load('libc.so.6');
  koffi.struct('ls_hitcost_timespec', { sec: 'int64_t', nsec: 'int64_t' });
  const clockGettime = lib.func('int clock_gettime(int clk, _Out_ ls_hitcost_timespec *tp)');
  const spec = { sec: 0, nsec: 0 };
  ffi = {
    free: lib.func('void free(void *ptr)'),
    spec,
    cpuNs: () => {
      clockGettime(CLOCK_THREAD_CPUTIME_ID, spec);
      return Number(spec.sec) * 1e9 + Number(spec.nsec);
    },
  };
  return ffi;
}

/** The libc.so.6 leakscope itself runs on (/proc/self/maps). */
function ownLibcPath(): string | undefined {
  for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
    const path = line.slice(line.indexOf('/'));
    if (line.includes('/') && /\/libc\.so\.6$|\/libc-[\d.]+\.so$/.test(path)) return path;
  }
  return undefined;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Measures the cost of one probe hit (see the file comment). `multi`: through a uprobe_multi link
 * (kernel >= 6.6), as malloc mode attaches free where uprobe sessions exist; falls back to a
 * perf-event uprobe. Undefined when it cannot be measured (no libc found, attach refused, a
 * result out of range): callers then use their constant.
 */
export function measureHitCost(opts: { multi: boolean }): HitCost | undefined {
  const path = ownLibcPath();
  if (!path) return undefined;
  let counter: PerCpuArrayMap<bigint> | undefined;
  let scratch: PerCpuArrayMap<Uint8Array> | undefined;
  const progs: Array<{ close(): void }> = [];
  try {
    const elf = loadElf(path);
    const sym = elf.findSymbol('free');
    if (!sym) return undefined;
    const vaddr = sym.value + entryProbeOffsetAt(elf, sym.value);
    const count = (counter = new PerCpuArrayMap({ name: 'ls_hitcost', value: u64, maxEntries: 1 }));
    const buffer = (scratch = new PerCpuArrayMap({ name: 'ls_hitcopy', value: bytes(COPY_BYTES), maxEntries: 1 }));
    const copy = [
      A.st('w', FP, -8, 0),
      A.ldMap(R1, buffer),
      A.mov64(R2, FP),
      A.add64(R2, -8),
      A.call('map_lookup_elem'),
      A.jeq(R0, 0, 'copied'),
      A.mov64(R1, R0),
      A.mov64(R2, COPY_BYTES),
      A.loadReg(R3, R6, 'rsp'),
      A.call('probe_read_user'),
      A.label('copied'),
    ];
    const program = (withCopy: boolean) => [
      A.mov64(R6, R1),
      withCopy ? copy : [],
      A.st('w', FP, -4, 0),
      A.ldMap(R1, count),
      A.mov64(R2, FP),
      A.add64(R2, -4),
      A.call('map_lookup_elem'),
      A.jeq(R0, 0, 'out'),
      A.ldx('dw', R1, R0, 0),
      A.add64(R1, 1),
      A.stx('dw', R0, 0, R1),
      A.label('out'),
      A.mov64(R0, 0),
      A.exit(),
    ];
    const hits = () => (count.lookup(0) ?? []).reduce((s, v) => s + Number(v), 0);
    let kind: HitCost['kind'] = opts.multi ? 'uprobe_multi' : 'uprobe';
    const attach = (withCopy: boolean): UprobeLink => {
      const body = program(withCopy);
      if (kind === 'uprobe_multi') {
        try {
          const prog = loadProgram({ name: 'ls_hitcost', body, expectedAttachType: AttachType.uprobeMulti });
          progs.push(prog);
          return attachUprobeMulti(prog, path, [resolveUprobeOffset({ binaryPath: path, vaddr })], {
            pid: process.pid,
          });
        } catch {
          kind = 'uprobe';
        }
      }
      const prog = loadProgram({ name: 'ls_hitcost', body });
      progs.push(prog);
      return attachUprobe(prog, { binaryPath: path, vaddr }, { pid: process.pid });
    };
    const { free, cpuNs } = libcFfi();
    const loop = () => {
      const t0 = cpuNs();
      for (let i = 0; i < CALLS; i++) free(null);
      return cpuNs() - t0;
    };
    loop(); // warm-up: koffi's call path, the JIT
    const perHit: number[] = [];
    const withCopy: number[] = [];
    let total = 0;
    for (let r = 0; r < REPEATS; r++) {
      for (const copying of [false, true]) {
        const base = loop();
        const link = attach(copying);
        const h0 = hits();
        let traced: number;
        try {
          traced = loop();
        } finally {
          link.detach();
        }
        const h = hits() - h0;
        total += h;
        // Node's own frees on this thread hit too: counted, and their cost is in `traced`.
        if (h >= CALLS) (copying ? withCopy : perHit).push((traced - base) / h / 1000);
      }
    }
    if (perHit.length < REPEATS || withCopy.length < REPEATS) return undefined;
    const us = median(perHit);
    if (!(us > 0.01 && us < 100)) return undefined;
    const copyUs = Math.max(0, median(withCopy) - us);
    return {
      perHitMicros: Math.round(us * 100) / 100,
      hits: total,
      kind,
      copyMicrosPer4KiB: Math.round(copyUs * 100) / 100,
    };
  } catch {
    return undefined;
  } finally {
    for (const p of progs) p.close();
    counter?.close();
    scratch?.close();
  }
}
