// Loading ELF files from disk, with the path in every error.
import { readFileSync } from 'node:fs';
import { LeakscopeError, isLeakscopeError } from '../../model/errors.js';
import { ElfFile } from './elf.js';

const cache = new Map<string, ElfFile>();

/** Reads and parses an ELF file (cached by path). Errors name the path. */
export function loadElf(path: string, opts: { cache?: boolean } = {}): ElfFile {
  const useCache = opts.cache ?? true;
  const hit = useCache ? cache.get(path) : undefined;
  if (hit) return hit;
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const code = err.code === 'ENOENT' ? 'not-found' : err.code === 'EACCES' || err.code === 'EPERM' ? 'permission' : 'io';
    throw new LeakscopeError(code, `${path}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  }
  try {
    const elf = new ElfFile(bytes, path);
    if (useCache) cache.set(path, elf);
    return elf;
  } catch (e) {
    if (isLeakscopeError(e)) throw e.message.startsWith(path) ? e : e.wrap(path);
    throw e;
  }
}
