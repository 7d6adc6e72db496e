// Loading ELF files from disk, with the path in every error. Files are opened as regular files
// only, within a size cap, and read with bounded reads (binary/regular-file.ts): a path may name a
// FIFO or a device. Which file a path names (target root, /proc/PID/map_files) is the caller's part.
import { LeakscopeError, isLeakscopeError } from '../../model/errors.js';
import type { OpenedFile } from '../../model/memory.js';
import { openRegularFile, readRange } from '../../binary/regular-file.js';
import { closeSync } from 'node:fs';
import { ElfFile } from './elf.js';

/** Largest ELF object or debug file read (whole) into memory. */
export const MAX_ELF_BYTES = 1 << 30;

/** Parsed files by identity (dev:ino:size:mtime), so /proc/self/fd/N or map_files paths share entries. */
const cache = new Map<string, ElfFile>();

/** Reads and parses an ELF file (cached by the file's identity). Errors name the path. */
export function loadElf(path: string, opts: { cache?: boolean; maxBytes?: number; label?: string } = {}): ElfFile {
  const file = openRegularFile(path, opts.maxBytes ?? MAX_ELF_BYTES, {
    label: opts.label ?? path,
    what: 'an ELF file',
  });
  return loadElfFrom(file, opts);
}

/** Parses an opened regular file (cached by identity) and closes it. Errors name `file.label`. */
export function loadElfFrom(file: OpenedFile, opts: { cache?: boolean } = {}): ElfFile {
  const useCache = opts.cache ?? true;
  let bytes: Buffer;
  try {
    const hit = useCache ? cache.get(file.identity) : undefined;
    if (hit) return hit;
    bytes = readRange(file, 0, file.size);
  } finally {
    closeSync(file.fd);
  }
  try {
    const elf = new ElfFile(bytes, file.label);
    if (useCache) cache.set(file.identity, elf);
    return elf;
  } catch (e) {
    if (isLeakscopeError(e)) throw e.message.startsWith(file.label) ? e : e.wrap(file.label);
    if (e instanceof RangeError) throw new LeakscopeError('malformed', `${file.label}: ${e.message}`);
    throw e;
  }
}
