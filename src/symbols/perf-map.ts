// JIT symbol maps: /tmp/perf-PID.map, the text format perf reads (tools/perf/Documentation/jit-interface.txt),
// written by node --perf-basic-prof, JVM agents and LuaJIT's perf support: one line per code range,
//   START SIZE name      (START and SIZE hex, without 0x; name to the end of the line)
// The file is named by the target, so it is opened as a target-named file: through the address
// space's path mapping (the target's root), regular files only, size-capped, never followed
// beyond what it is. ONE function opens it (openPerfMap) so that it can move to the safe
// target-file opener (openat2 RESOLVE_IN_ROOT) in one place.

import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import type { AddressSpace } from '../target/address-space.js';

/** Largest perf map read (bytes); a longer one is read up to here (its first entries). */
export const PERF_MAP_MAX_BYTES = 64 << 20;

export interface PerfMapEntry { start: number; end: number; name: string }

/** Entries of a perf map text, sorted by start; malformed lines are skipped. */
export function parsePerfMap(text: string): PerfMapEntry[] {
  const out: PerfMapEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]+) ([0-9a-fA-F]+) (.*)$/.exec(line.trimEnd());
    if (!m) continue;
    const start = parseInt(m[1]!, 16), size = parseInt(m[2]!, 16);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || size <= 0 || !Number.isSafeInteger(start + size)) continue;
    out.push({ start, end: start + size, name: m[3]!.replace(/[\u0000-\u001f\u007f]/g, ' ') });
  }
  return out.sort((a, b) => a.start - b.start);
}

/** The entry covering `addr` (the latest written wins when ranges were reused), or undefined. */
export function perfMapLookup(entries: readonly PerfMapEntry[], addr: number): PerfMapEntry | undefined {
  let lo = 0, hi = entries.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (entries[mid]!.start <= addr) lo = mid + 1; else hi = mid; }
  for (let i = lo - 1; i >= 0 && i >= lo - 64; i--) { const e = entries[i]!; if (addr >= e.start && addr < e.end) return e; }
  return undefined;
}

/**
 * Reads the target's /tmp/perf-PID.map (PID as the target knows itself: `nsPid`, default its pid),
 * or undefined when there is none, it is not a regular file, or it cannot be read.
 */
export function openPerfMap(space: AddressSpace, nsPid = space.pid): PerfMapEntry[] | undefined {
  let fd: number;
  try { fd = openSync(space.hostPath(`/tmp/perf-${nsPid}.map`), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK); } catch { return undefined; }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return undefined;
    const buf = Buffer.alloc(Math.min(st.size, PERF_MAP_MAX_BYTES));
    let got = 0;
    while (got < buf.length) { const n = readSync(fd, buf, got, buf.length - got, got); if (n <= 0) break; got += n; }
    return parsePerfMap(buf.subarray(0, got).toString('utf8'));
  } catch { return undefined; } finally { closeSync(fd); }
}
