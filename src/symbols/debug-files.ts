// Locating separate debug files, as gdb does (gdb manual, "Debugging Information in Separate Files"):
//   1. /usr/lib/debug/.build-id/XX/YYYY....debug  (build-id note, first byte as directory)
//   2. .gnu_debuglink name in: the object's directory, its .debug/ subdirectory, /usr/lib/debug/<dir>/
// Debian ships them in -dbg / -dbgsym packages (libc6-dbg for glibc).
// The build-id and the debuglink come from the target's files: hostile input. A build-id is used
// only as hex; a debuglink only as a plain file name (no '/', not '.' or '..'); every candidate is
// opened inside the target's root (TargetFiles: openat2 RESOLVE_IN_ROOT, regular files within the
// debug-file size cap), never on leakscope's own root unless the target shares it.

import { dirname } from 'node:path';
import type { ElfFile } from '../formats/elf/index.js';
import { loadElfFrom } from '../formats/elf/index.js';
import type { TargetFiles } from '../model/memory.js';
import { hostRoot } from '../target/target-files.js';

/** Debug roots searched (inside the target's root), in order. Tests may replace them (e.g. to run "without libc6-dbg"). */
export const debugRoots: string[] = ['/usr/lib/debug'];

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
const CONTROL_CHARS = /[\0-\x1f\x7f]/;

/** A .gnu_debuglink name leakscope follows: one path component, printable, at most NAME_MAX bytes. */
export function isPlainFileName(name: string): boolean {
  return (
    name.length > 0 &&
    Buffer.byteLength(name) <= 255 &&
    !name.includes('/') &&
    name !== '.' &&
    name !== '..' &&
    !CONTROL_CHARS.test(name)
  );
}

/** Candidate debug-file paths (as the target sees them) for an object at `objectPath`, most specific first. */
export function debugFileCandidates(elf: ElfFile, objectPath: string): string[] {
  const out: string[] = [];
  const id = elf.buildId;
  for (const root of debugRoots) {
    if (id && id.length > 2 && /^[0-9a-f]+$/.test(id))
      out.push(`${root}/.build-id/${id.slice(0, 2)}/${id.slice(2)}.debug`);
  }
  const link = elf.debugLink;
  if (link && isPlainFileName(link.file) && objectPath.startsWith('/')) {
    const dir = dirname(objectPath).replace(/\/+$/, '');
    out.push(`${dir}/${link.file}`, `${dir}/.debug/${link.file}`);
    for (const root of debugRoots) out.push(`${root}${dir}/${link.file}`);
  }
  return out;
}

/**
 * The debug file of an object whose build-id matches (or, for debuglink hits, any ELF), or undefined.
 * `files` opens paths inside the target's root (default: leakscope's own root, for objects of the host).
 */
export function findDebugFile(
  elf: ElfFile,
  objectPath: string,
  files: TargetFiles = sharedHostRoot(),
): { path: string; elf: ElfFile } | undefined {
  const tryIn = (where: TargetFiles, candidates: string[], needId: boolean) => {
    for (const p of candidates) {
      if (p === objectPath) continue;
      try {
        const dbg = loadElfFrom(where.openTargetFile(p, 'debug-file'));
        if (elf.buildId && dbg.buildId && dbg.buildId !== elf.buildId) continue;
        if (needId && !(elf.buildId && dbg.buildId === elf.buildId)) continue;
        if (dbg === elf) continue; // the object itself (its identity): not a separate debug file
        return { path: p, elf: dbg };
      } catch {
        /* absent, refused, unreadable or not ELF: try the next */
      }
    }
    return undefined;
  };
  const candidates = debugFileCandidates(elf, objectPath);
  const inTarget = tryIn(files, candidates, false);
  if (inTarget || files === sharedHostRoot()) return inTarget;
  // A target with its own root (a container): the host's debug files by build-id too (a hex name
  // under the host's debug roots, accepted only with the same build-id), e.g. libc6-dbg on the host.
  return tryIn(
    sharedHostRoot(),
    candidates.filter((p) => p.includes('/.build-id/')),
    true,
  );
}

let hostFiles: TargetFiles | undefined;
function sharedHostRoot(): TargetFiles {
  hostFiles ??= hostRoot();
  return hostFiles;
}
