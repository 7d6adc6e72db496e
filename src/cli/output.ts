// Writing results: terminal text to stdout, JSON to stdout or a file (`--json [FILE]`).
import { writeFileSync } from 'node:fs';
import { LeakscopeError } from '../model/errors.js';

/** `--json` with no value is `true` (stdout); with a value, a file path. */
export type JsonOption = boolean | string | undefined;

export function emit(json: JsonOption, text: () => string, data: () => object): void {
  if (json === undefined || json === false) { process.stdout.write(text() + '\n'); return; }
  const body = JSON.stringify(data(), null, 2) + '\n';
  if (json === true || json === '-') { process.stdout.write(body); return; }
  writeFile(json, body);
  process.stdout.write(text() + '\n');
}

export function writeFile(path: string, body: string | Uint8Array): void {
  try { writeFileSync(path, body); } catch (e) {
    throw new LeakscopeError('io', `cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}
