// JIT symbol maps: /tmp/perf-PID.map, the text format perf reads (tools/perf/Documentation/jit-interface.txt),
// written by node --perf-basic-prof, JVM agents and LuaJIT's perf support: one line per code range,
//   START SIZE name      (START and SIZE hex, without 0x; name to the end of the line)
// The file is named by the target, so it is opened as a target-named file (target/target-files.ts:
// inside the target's root, regular files only, capped at SIZE_CAPS['perf-map']), in ONE function.

import type { AddressSpace } from '../target/address-space.js';
import { readWholeAndClose } from '../binary/regular-file.js';

export interface PerfMapEntry {
  start: number;
  end: number;
  name: string;
}

/** Entries of a perf map text, sorted by start; malformed lines are skipped. */
export function parsePerfMap(text: string): PerfMapEntry[] {
  const out: PerfMapEntry[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]+) ([0-9a-fA-F]+) (.*)$/.exec(line.trimEnd());
    if (!m) continue;
    const start = parseInt(m[1]!, 16),
      size = parseInt(m[2]!, 16);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || size <= 0 || !Number.isSafeInteger(start + size))
      continue;
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters from the target are what this replaces
    out.push({ start, end: start + size, name: m[3]!.replace(/[\u0000-\u001f\u007f]/g, ' ') });
  }
  return out.sort((a, b) => a.start - b.start);
}

/** The entry covering `addr` (the latest written wins when ranges were reused), or undefined. */
export function perfMapLookup(entries: readonly PerfMapEntry[], addr: number): PerfMapEntry | undefined {
  let lo = 0,
    hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (entries[mid]!.start <= addr) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo - 1; i >= 0 && i >= lo - 64; i--) {
    const e = entries[i]!;
    if (addr >= e.start && addr < e.end) return e;
  }
  return undefined;
}

/**
 * Reads the target's /tmp/perf-PID.map (PID as the target knows itself, which names the file: `nsPid`,
 * default its pid in its own pid namespace, `space.nsPid`, else `space.pid`),
 * or undefined when there is none or it is refused (not a regular file, over the perf-map size cap,
 * outside the target's root): the one place a perf map is opened, through the address space's
 * target-file opener (openat2 RESOLVE_IN_ROOT in the target's root).
 */
export function openPerfMap(space: AddressSpace, nsPid = space.nsPid ?? space.pid): PerfMapEntry[] | undefined {
  try {
    const buf = readWholeAndClose(space.openTargetFile(`/tmp/perf-${nsPid}.map`, 'perf-map'));
    return parsePerfMap(buf.toString('utf8'));
  } catch {
    return undefined;
  }
}
