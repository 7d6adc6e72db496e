// Turning command-line target arguments into an AddressSpace: PID | --nginx | --core FILE [--exe BIN].
import { existsSync } from 'node:fs';
import { LeakscopeError } from '../model/errors.js';
import type { AddressSpace } from '../target/address-space.js';
import { CoreFile, LiveProcess, largestNginxWorker } from '../target/index.js';

export interface TargetOptions { nginx?: boolean; core?: string; exe?: string }

export function resolvePid(pidArg: string | undefined, opts: TargetOptions): number {
  if (opts.nginx) return largestNginxWorker().pid;
  if (pidArg === undefined) throw new LeakscopeError('usage', 'missing target: give a PID, --nginx, or --core FILE');
  if (!/^\d+$/.test(pidArg)) throw new LeakscopeError('usage', `not a process id: ${JSON.stringify(pidArg)}`);
  return Number(pidArg);
}

export function openTarget(pidArg: string | undefined, opts: TargetOptions): AddressSpace {
  if (opts.core) {
    if (opts.exe && !existsSync(opts.exe)) throw new LeakscopeError('not-found', `${opts.exe}: no such file`);
    return CoreFile.open(opts.core, { exe: opts.exe });
  }
  return LiveProcess.open(resolvePid(pidArg, opts));
}
