// Locating separate debug files, as gdb does (gdb manual, "Debugging Information in Separate Files"):
//   1. /usr/lib/debug/.build-id/XX/YYYY....debug  (build-id note, first byte as directory)
//   2. .gnu_debuglink name in: the object's directory, its .debug/ subdirectory, /usr/lib/debug/<dir>/
// Debian ships them in -dbg / -dbgsym packages (libc6-dbg for glibc).

import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ElfFile } from '../formats/elf/index.js';
import { loadElf } from '../formats/elf/index.js';

/** Debug roots searched, in order. Tests may replace them (e.g. to run "without libc6-dbg"). */
export const debugRoots: string[] = ['/usr/lib/debug'];

/** Candidate debug-file paths for an object, most specific first. `root` prefixes host paths (/proc/PID/root). */
export function debugFileCandidates(elf: ElfFile, objectPath: string): string[] {
  const out: string[] = [];
  const id = elf.buildId;
  for (const root of debugRoots) {
    if (id && id.length > 2) out.push(join(root, '.build-id', id.slice(0, 2), `${id.slice(2)}.debug`));
  }
  const link = elf.debugLink;
  if (link) {
    const dir = dirname(objectPath);
    out.push(join(dir, link.file), join(dir, '.debug', link.file));
    for (const root of debugRoots) out.push(join(root, dir, link.file));
  }
  return out;
}

/** The debug file of an object whose build-id matches (or, for debuglink hits, any ELF), or undefined. */
export function findDebugFile(elf: ElfFile, objectPath: string): { path: string; elf: ElfFile } | undefined {
  for (const p of debugFileCandidates(elf, objectPath)) {
    if (p === objectPath || !existsSync(p)) continue;
    try {
      const dbg = loadElf(p);
      if (elf.buildId && dbg.buildId && dbg.buildId !== elf.buildId) continue;
      return { path: p, elf: dbg };
    } catch { /* unreadable or not ELF: try the next */ }
  }
  return undefined;
}
