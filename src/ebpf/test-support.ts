// Helpers shared by the src/ebpf tests and bench/ebpf.ts: the ebpf-target fixture process and
// a small "record the call" program. Not part of the runtime's API.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  R0,
  R1,
  R2,
  R3,
  R6,
  R7,
  R8,
  R10,
  add64,
  and64,
  call,
  exit,
  ja,
  jeq,
  label,
  ldMap,
  ldx,
  loadReg,
  mov64,
  st,
  stx,
  tgidFilter,
  type Body,
} from './asm.js';
import type { RingBufMap, PerCpuArrayMap } from './maps.js';

/** The repository root (the folder holding package.json), found from this file. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'test', 'fixtures'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('repository root not found above ' + fileURLToPath(import.meta.url));
}

export function fixturePath(name = 'ebpf-target'): string {
  return join(repoRoot(), 'test', 'fixtures', 'build', name);
}

/** A running ebpf-target: send a command, await its "done ..." answer. */
export class TargetProcess {
  readonly child: ChildProcessWithoutNullStreams;
  pid = 0;
  private waiting: Array<(line: string) => void> = [];
  private lines: string[] = [];
  readonly exited: Promise<number | null>;

  private constructor(readonly path: string) {
    this.child = spawn(path, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((res) => this.child.on('exit', (code) => res(code)));
    this.child.on('exit', () => {
      for (const w of this.waiting.splice(0)) w(`exited ${this.child.exitCode ?? this.child.signalCode}`);
    });
    const rl = createInterface({ input: this.child.stdout });
    rl.on('line', (line) => {
      const w = this.waiting.shift();
      if (w) w(line);
      else this.lines.push(line);
    });
  }
  static async start(path = fixturePath()): Promise<TargetProcess> {
    const t = new TargetProcess(path);
    const ready = await t.nextLine();
    const m = /^ready (\d+)$/.exec(ready);
    if (!m) throw new Error(`${path}: expected "ready PID", got "${ready}"`);
    t.pid = Number(m[1]);
    return t;
  }
  private nextLine(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve('exited');
    return new Promise((res) => this.waiting.push(res));
  }
  /** Sends one command; resolves with the text after "done ". */
  async run(command: string): Promise<string> {
    this.child.stdin.write(command + '\n');
    const line = await this.nextLine();
    if (!line.startsWith('done')) throw new Error(`${this.path}: "${command}" answered "${line}"`);
    return line.slice(5);
  }
  async quit(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.stdin.end('quit\n');
    await this.exited;
  }
}

/** Runtime address of a file offset in a process's mapping of `path` (from /proc/PID/maps). */
export function runtimeAddress(pid: number, path: string, fileOffset: number): number | undefined {
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ \d+\s+(.*)$/.exec(line);
    if (!m || m[4] !== path) continue;
    const start = Number.parseInt(m[1]!, 16),
      end = Number.parseInt(m[2]!, 16),
      off = Number.parseInt(m[3]!, 16);
    if (fileOffset >= off && fileOffset < off + (end - start)) return start + (fileOffset - off);
  }
  return undefined;
}

/** The byte at `addr` as process `pid` sees it (0xcc where a uprobe's breakpoint is in), read from /proc/PID/mem. */
export function memoryByte(pid: number, addr: number): number {
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, addr);
    return b[0]!;
  } finally {
    closeSync(fd);
  }
}

/**
 * Event record written by `callRecorder` (40 bytes):
 * { u64 pid_tgid; u64 rdi; u64 rsi; u64 rax; u64 ip; }
 */
export const CALL_EVENT_SIZE = 40;

/**
 * A program that writes one `CALL_EVENT_SIZE` record per hit to `rb`, only for thread group
 * `tgid` (when given); counts ring-buffer-full drops in `drops[0]` (per-CPU u64).
 */
export function callRecorder(rb: RingBufMap, drops: PerCpuArrayMap<bigint>, tgid?: number): Body {
  return [
    mov64(R6, R1), //                          r6 = ctx (struct pt_regs *)
    tgid !== undefined ? tgidFilter(tgid, 'out') : [],
    call('get_current_pid_tgid'),
    mov64(R7, R0), //                          r7 = pid_tgid
    ldMap(R1, rb),
    mov64(R2, CALL_EVENT_SIZE),
    mov64(R3, 0),
    call('ringbuf_reserve'), //               r0 = reserve(rb, 40, 0)
    jeq(R0, 0, 'full'),
    mov64(R8, R0),
    stx('dw', R8, 0, R7),
    loadReg(R1, R6, 'rdi'),
    stx('dw', R8, 8, R1),
    loadReg(R1, R6, 'rsi'),
    stx('dw', R8, 16, R1),
    loadReg(R1, R6, 'rax'),
    stx('dw', R8, 24, R1),
    loadReg(R1, R6, 'rip'),
    stx('dw', R8, 32, R1),
    mov64(R1, R8),
    mov64(R2, 0),
    call('ringbuf_submit'),
    mov64(R0, 0),
    exit(),
    label('full'), //                          drops[0] += 1 (this CPU's slot)
    countInto(drops),
    label('out'),
    mov64(R0, 0),
    exit(),
  ];
}

/** `(*map[0])++` on a per-CPU u64 array; clobbers r0..r5 and uses 4 bytes of stack at fp-4. */
export function countInto(map: PerCpuArrayMap<bigint>): Body {
  return [
    st('w', R10, -4, 0),
    ldMap(R1, map),
    mov64(R2, R10),
    add64(R2, -4),
    call('map_lookup_elem'),
    jeq(R0, 0, `skip_count_${map.fd}`),
    // r0 points at this CPU's slot: no other CPU writes it, a plain add is exact.
    ldx('dw', R2, R0, 0),
    add64(R2, 1),
    stx('dw', R0, 0, R2),
    label(`skip_count_${map.fd}`),
  ];
}

/**
 * A program for `ebpf_target_payload(buf, len, seq)`: reserves `8 + payloadBytes` bytes, writes
 * { u64 seq; u8 data[payloadBytes] copied from buf }, and submits it, or discards it when
 * `discardOdd` and seq is odd. Ring-buffer-full drops are counted in `drops[0]`.
 */
export function payloadRecorder(
  rb: RingBufMap,
  drops: PerCpuArrayMap<bigint>,
  payloadBytes: number,
  opts: { tgid?: number; discardOdd?: boolean } = {},
): Body {
  return [
    mov64(R6, R1), //                          r6 = ctx
    opts.tgid !== undefined ? tgidFilter(opts.tgid, 'out') : [],
    ldMap(R1, rb),
    mov64(R2, 8 + payloadBytes),
    mov64(R3, 0),
    call('ringbuf_reserve'),
    jeq(R0, 0, 'full'),
    mov64(R7, R0), //                          r7 = record
    loadReg(R1, R6, 'rdx'),
    stx('dw', R7, 0, R1), //                   record->seq = seq (3rd argument)
    mov64(R1, R7),
    add64(R1, 8),
    mov64(R2, payloadBytes),
    loadReg(R3, R6, 'rdi'),
    call('probe_read_user'), //               copy payloadBytes from buf (1st argument)
    opts.discardOdd
      ? [
          loadReg(R1, R6, 'rdx'),
          and64(R1, 1),
          jeq(R1, 0, 'submit'),
          mov64(R1, R7),
          mov64(R2, 0),
          call('ringbuf_discard'),
          ja('out'),
        ]
      : [],
    label('submit'),
    mov64(R1, R7),
    mov64(R2, 0),
    call('ringbuf_submit'),
    ja('out'),
    label('full'),
    countInto(drops),
    label('out'),
    mov64(R0, 0),
    exit(),
  ];
}

/** Sum over CPUs of a per-CPU u64 counter slot. */
export function sumCounter(map: PerCpuArrayMap<bigint>, index = 0): number {
  return Number((map.lookup(index) ?? []).reduce((a, b) => a + b, 0n));
}
