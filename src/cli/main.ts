// leakscope command line: argv -> options -> wiring. The only layer that prints or exits.
import { Command, CommanderError, Option } from 'commander';
import { EXIT_CODES, LeakscopeError, isLeakscopeError } from '../model/errors.js';
import { openTarget } from './target.js';
import type { TargetOptions } from './target.js';
import { emit } from './output.js';
import type { JsonOption } from './output.js';
import { runMem } from './commands.js';

interface CommonOptions extends TargetOptions { json?: JsonOption }

function targetCommand(program: Command, name: string, description: string): Command {
  return program.command(name)
    .description(description)
    .argument('[pid]', 'process id of the target')
    .option('--nginx', 'the nginx worker with the largest RSS')
    .option('--core <file>', 'analyze an ELF core file (gcore) instead of a live process')
    .option('--exe <binary>', 'the executable that produced the core file')
    .addOption(new Option('--json [file]', 'machine-readable result (versioned JSON) to stdout or FILE'));
}

export function buildProgram(): Command {
  const program = new Command('leakscope')
    .description('Diagnose native memory leaks in live nginx / glibc processes without restarting them')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  targetCommand(program, 'mem', 'step 1: where the RSS lives (glibc heap, arenas, mmapped chunks, nginx shm, code, stacks)')
    .action((pid: string | undefined, opts: CommonOptions) => {
      const space = openTarget(pid, opts);
      try {
        const r = runMem(space);
        emit(opts.json, r.text, r.json);
      } finally { space.close(); }
    });
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    process.exitCode = exitCodeFor(e);
  }
}

/** Prints one line for an error and returns the exit status. Never prints a stack trace unless LEAKSCOPE_DEBUG is set. */
export function exitCodeFor(e: unknown): number {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0) return 0;
    return EXIT_CODES.usage;   // commander already printed its one-line message
  }
  if (isLeakscopeError(e)) {
    process.stderr.write(`leakscope: ${oneLine(e.message)}\n`);
    if (process.env.LEAKSCOPE_DEBUG) process.stderr.write(`${e.stack}\n`);
    return EXIT_CODES[e.code];
  }
  const err = e as NodeJS.ErrnoException;
  if (err && (err.code === 'EPERM' || err.code === 'EACCES')) {
    process.stderr.write(`leakscope: ${oneLine(err.message)} (needs root)\n`);
    return EXIT_CODES.permission;
  }
  process.stderr.write(`leakscope: internal error: ${oneLine(err?.message ?? String(e))}\n`);
  if (process.env.LEAKSCOPE_DEBUG) process.stderr.write(`${err?.stack}\n`);
  return 1;
}

function oneLine(s: string): string { return s.replace(/\s*\n\s*/g, ' ').slice(0, 400); }

export { LeakscopeError };
