// Turning command-line target arguments into an AddressSpace:
// PID | --nginx[=MASTER_PID] [--prefix DIR] [--conf FILE] | --core FILE [--exe BIN].
import { existsSync } from 'node:fs';
import { LeakscopeError } from '../model/errors.js';
import type { AddressSpace } from '../target/address-space.js';
import { CoreFile, LiveProcess, largestNginxWorker } from '../target/index.js';

export interface TargetOptions {
  /** `--nginx` */
  nginx?: boolean;
  /** `--nginx=MASTER_PID` (argv form `--nginx=N`, rewritten to `--nginx-master=N` before parsing) */
  nginxMaster?: number;
  prefix?: string;
  conf?: string;
  core?: string;
  exe?: string;
}

/** Largest pid_t; Linux pids are at most 2^22 (PID_MAX_LIMIT), larger numbers simply name no process. */
const PID_T_MAX = 2 ** 31 - 1;

/** A PID argument: decimal digits, 1 .. 2^31-1, else a usage error. */
export function parsePid(arg: string, what = 'process id'): number {
  const n = /^\d+$/.test(arg) ? Number(arg) : NaN;
  if (!Number.isSafeInteger(n) || n < 1 || n > PID_T_MAX)
    throw new LeakscopeError('usage', `not a ${what}: ${JSON.stringify(arg)}`);
  return n;
}

/** Usage errors of the target arguments: exactly one of PID, --nginx, --core; their companions only with them. */
export function checkTargetArgs(pidArg: string | undefined, opts: TargetOptions): void {
  const nginx = opts.nginx || opts.nginxMaster !== undefined;
  const given = [
    pidArg !== undefined && `PID ${pidArg}`,
    nginx && '--nginx',
    opts.core !== undefined && '--core',
  ].filter(Boolean);
  if (given.length > 1) throw new LeakscopeError('usage', `${given.join(' and ')} both name the target: give one`);
  if (!nginx && (opts.prefix !== undefined || opts.conf !== undefined))
    throw new LeakscopeError(
      'usage',
      `${opts.prefix !== undefined ? '--prefix' : '--conf'} selects an nginx instance: use it with --nginx`,
    );
  if (opts.exe !== undefined && opts.core === undefined)
    throw new LeakscopeError('usage', '--exe goes with --core (the executable that produced the core file)');
  if (!given.length) throw new LeakscopeError('usage', 'missing target: give a PID, --nginx, or --core FILE');
  if (pidArg !== undefined) parsePid(pidArg);
}

export function resolvePid(pidArg: string | undefined, opts: TargetOptions): number {
  checkTargetArgs(pidArg, opts);
  if (opts.nginx || opts.nginxMaster !== undefined)
    return largestNginxWorker({ master: opts.nginxMaster, prefix: opts.prefix, conf: opts.conf }).pid;
  return parsePid(pidArg!);
}

export function openTarget(pidArg: string | undefined, opts: TargetOptions): AddressSpace {
  checkTargetArgs(pidArg, opts);
  if (opts.core) {
    if (opts.exe && !existsSync(opts.exe)) throw new LeakscopeError('not-found', `${opts.exe}: no such file`);
    return CoreFile.open(opts.core, { exe: opts.exe });
  }
  return LiveProcess.open(resolvePid(pidArg, opts));
}
