// Writing results: terminal text or JSON to stdout, reports to files (`--json=FILE`, `--html`, `--svg`, ...).
//
// Reports hold memory contents, symbols and paths, and leakscope runs as root, so a report file is
// - checked and opened before the work starts (prepareOutputs): a long trace is never thrown away
//   because its output path is unusable, and an output is never the same file as an input;
// - created 0600 as a temporary file in the destination's directory (O_CREAT | O_EXCL | O_NOFOLLOW),
//   written, fsync'ed, then renamed over the destination: a failed write (ENOSPC) leaves the previous
//   report intact, and a symlink planted at the destination is replaced, never followed;
// - allowed to replace only a regular file the user owns with one link (else exit 12, one line):
//   a directory, symlink (dangling or not), device, FIFO or hard link at the path is left alone.
// The directory is pinned by an open descriptor; later steps name it through /proc/self/fd/N
// (Node has no openat / renameat), so swapping a directory in the path mid-run changes nothing.
// `-` means stdout. Writes to stdout are synchronous; EPIPE / ENOSPC end with one line, exit 12.
import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import type { Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, resolve } from 'node:path';
import { LeakscopeError } from '../model/errors.js';

/** `--json` with no value is `true` (stdout); with a value, a file path (`-` is stdout). */
export type JsonOption = boolean | string | undefined;

/** One output named on the command line: what it is (for messages) and its path. */
export interface OutputRequest {
  option: string;
  path: string | undefined;
}
/** One input file named on the command line (an output may not be the same file). */
export interface InputRequest {
  option: string;
  path: string | undefined;
}

/** A report file opened before the work: a 0600 temporary file in the destination's directory. */
class PendingFile {
  private fd: number | undefined;
  private committed = false;
  private readonly tmpName: string;

  constructor(
    readonly path: string,
    private readonly dirFd: number,
    private readonly option: string,
  ) {
    this.tmpName = `.leakscope-${process.pid}-${randomBytes(6).toString('hex')}.tmp`;
    try {
      this.fd = openSync(
        this.inDir(this.tmpName),
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
      fchmodSync(this.fd, 0o600); // whatever the umask
    } catch (e) {
      throw new LeakscopeError('io', `${option} ${path}: cannot create a file in ${dirname(path)}: ${errText(e)}`);
    }
  }

  /** A name inside the pinned directory (the /proc/self/fd/N form of openat / renameat). */
  private inDir(name: string): string {
    return `/proc/self/fd/${this.dirFd}/${name}`;
  }

  write(body: string | Uint8Array): void {
    if (this.fd === undefined) throw new LeakscopeError('io', `${this.option} ${this.path}: written twice`);
    const fd = this.fd;
    this.fd = undefined;
    try {
      writeAll(fd, body);
      fsyncSync(fd);
    } catch (e) {
      try {
        closeSync(fd);
      } catch {
        /* already failed */
      }
      this.discard();
      throw new LeakscopeError(
        'io',
        `cannot write ${this.path}: ${errText(e)}${existsNoFollow(this.path) ? ' (the previous file is unchanged)' : ''}`,
      );
    }
    closeSync(fd);
    try {
      checkReplaceable(this.path, this.option); // again: the path may have changed during the work
      renameSync(this.inDir(this.tmpName), this.inDir(basename(this.path)));
      this.committed = true;
    } catch (e) {
      this.discard();
      if (e instanceof LeakscopeError) throw e;
      throw new LeakscopeError('io', `cannot write ${this.path}: ${errText(e)}`);
    }
    try {
      fsyncSync(this.dirFd);
    } catch {
      /* the rename is done; durability of the directory entry is best effort */
    }
  }

  /** Removes the temporary file unless it became the report. Idempotent. */
  discard(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        /* closed */
      }
      this.fd = undefined;
    }
    if (!this.committed) {
      try {
        unlinkSync(this.inDir(this.tmpName));
      } catch {
        /* gone */
      }
      this.committed = true;
    }
  }
}

/** Outputs prepared for this run, by resolved path ('-' for stdout). */
const prepared = new Map<string, PendingFile | 'stdout'>();
const dirFds: number[] = [];
let exitHook = false;

function key(path: string): string {
  return path === '-' ? '-' : resolve(path);
}

/**
 * Checks and opens every output before the work starts. Throws a usage error for an empty path,
 * two outputs on one path or on stdout, or an output that is the same file as an input; an I/O
 * error (exit 12) for a destination that must not be replaced or a directory that cannot take it.
 * `--json` given bare (stdout) counts as an output on stdout: pass it as path '-'.
 */
export function prepareOutputs(outputs: OutputRequest[], inputs: InputRequest[] = []): void {
  const named = outputs.filter((o): o is { option: string; path: string } => o.path !== undefined);
  const seen = new Map<string, string>();
  for (const o of named) {
    if (o.path === '') throw new LeakscopeError('usage', `${o.option}: empty file name`);
    const k = key(o.path);
    const other = seen.get(k);
    if (other)
      throw new LeakscopeError('usage', `${other} and ${o.option} both write to ${o.path === '-' ? 'stdout' : o.path}`);
    seen.set(k, o.option);
  }
  const inputStats = inputs.flatMap((i) => {
    if (!i.path) return [];
    try {
      return [{ option: i.option, path: i.path, st: statSync(i.path) }];
    } catch {
      return [];
    }
  });
  for (const o of named) {
    if (o.path === '-') {
      prepared.set('-', 'stdout');
      continue;
    }
    const path = key(o.path);
    if (o.path.endsWith('/') || ['.', '..'].includes(basename(o.path)))
      throw new LeakscopeError('io', `${o.option} ${o.path}: is a directory`);
    const st = checkReplaceable(path, o.option);
    if (st) {
      const same = inputStats.find((i) => i.st.dev === st.dev && i.st.ino === st.ino);
      if (same)
        throw new LeakscopeError(
          'usage',
          `${o.option} ${o.path} is the input file of ${same.option} ${same.path}: refusing to overwrite it`,
        );
    }
    const dirFd = openDirectory(dirname(path), o.option, o.path);
    prepared.set(path, new PendingFile(path, dirFd, o.option));
  }
  if (!exitHook) {
    exitHook = true;
    process.once('exit', discardPending);
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) discardOnSignal(sig);
  }
}

/**
 * A signal that would end the process removes the temporary files first, then ends it as the signal
 * would. While another handler is installed (a trace's interrupt: the first signal ends the trace
 * early and the reports are still written), it is left to that handler.
 */
function discardOnSignal(sig: NodeJS.Signals): void {
  const handler = () => {
    if (process.listenerCount(sig) > 1) return;
    discardPending();
    process.removeListener(sig, handler);
    process.kill(process.pid, sig);
  };
  process.on(sig, handler);
}

/** True when an output of this run goes to stdout (then the terminal text is not printed). */
export function stdoutClaimed(): boolean {
  return prepared.has('-');
}

/** Removes every temporary file not yet renamed into place (on exit, after an error). */
export function discardPending(): void {
  for (const p of prepared.values()) if (p !== 'stdout') p.discard();
  prepared.clear();
  for (const fd of dirFds.splice(0)) {
    try {
      closeSync(fd);
    } catch {
      /* closed */
    }
  }
}

/** Writes a report to PATH (`-`: stdout), through the file prepared for it (or prepared now). */
export function writeFile(path: string, body: string | Uint8Array): void {
  if (path === '-') {
    writeStdout(body);
    return;
  }
  const k = key(path);
  let p = prepared.get(k);
  if (p === undefined) {
    prepareOutputs([{ option: 'output', path }]);
    p = prepared.get(k)!;
  }
  if (p === 'stdout') {
    writeStdout(body);
    return;
  }
  prepared.delete(k);
  p.write(body);
}

/** The result of a command: terminal text on stdout, or JSON on stdout / to a file. */
export function emit(json: JsonOption, text: () => string, data: () => object): void {
  if (json === undefined || json === false) {
    if (!stdoutClaimed()) writeStdout(text() + '\n');
    return;
  }
  const body = JSON.stringify(data(), null, 2) + '\n';
  if (json === true || json === '-') {
    writeStdout(body);
    return;
  }
  writeFile(json, body);
  if (!stdoutClaimed()) writeStdout(text() + '\n');
}

/** Synchronous write of everything to stdout; a failure (EPIPE, ENOSPC...) is an I/O error (exit 12). */
export function writeStdout(body: string | Uint8Array): void {
  try {
    writeAll(1, body);
  } catch (e) {
    throw new LeakscopeError('io', `cannot write to stdout: ${errText(e)}`);
  }
}

function writeAll(fd: number, body: string | Uint8Array): void {
  const buf = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off, Math.min(buf.length - off, 1 << 20));
    } catch (e) {
      // stdout may be a non-blocking pipe inherited from the parent: wait for the reader.
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}

/**
 * lstat of a destination: undefined when nothing is there; its Stats when it is a regular file the
 * user owns with one link (safe to replace); else an I/O error saying what is there.
 */
function checkReplaceable(path: string, option: string): Stats | undefined {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new LeakscopeError('io', `${option} ${path}: ${errText(e)}`);
  }
  const refuse = (what: string) =>
    new LeakscopeError('io', `${option} ${path}: ${what}; not replaced (give a new path or remove it)`);
  if (st.isSymbolicLink()) throw refuse('is a symbolic link (never followed)');
  if (st.isDirectory()) throw refuse('is a directory');
  if (!st.isFile()) throw refuse(`is not a regular file (${fileKind(st)})`);
  const uid = process.geteuid?.() ?? st.uid;
  if (st.uid !== uid) throw refuse(`is owned by uid ${st.uid}, not by the user running leakscope (uid ${uid})`);
  if (st.nlink !== 1) throw refuse(`has ${st.nlink} hard links`);
  return st;
}

function openDirectory(dir: string, option: string, path: string): number {
  let fd: number;
  try {
    fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new LeakscopeError(
      'io',
      `${option} ${path}: ${code === 'ENOENT' ? `directory ${dir} does not exist` : code === 'ENOTDIR' ? `${dir} is not a directory` : `cannot open directory ${dir}: ${errText(e)}`}`,
    );
  }
  if (!fstatSync(fd).isDirectory()) {
    closeSync(fd);
    throw new LeakscopeError('io', `${option} ${path}: ${dir} is not a directory`);
  }
  dirFds.push(fd);
  return fd;
}

function existsNoFollow(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function fileKind(st: Stats): string {
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  return 'not a file';
}

const ERRNO_TEXT: Record<string, string> = {
  ENOSPC: 'no space left on device',
  EPIPE: 'broken pipe',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  EDQUOT: 'disk quota exceeded',
  EIO: 'input/output error',
  ENAMETOOLONG: 'file name too long',
  EISDIR: 'is a directory',
  ENOENT: 'no such file or directory',
  EEXIST: 'file exists',
  ELOOP: 'symbolic link (not followed)',
};

function errText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code) return `${ERRNO_TEXT[code] ?? code} (${code})`;
  return (e as Error).message ?? String(e);
}
