// leakscope command line: argv -> options -> wiring. The only layer that prints or exits.
import { Command, CommanderError, Option } from 'commander';
import { EXIT_CODES, LeakscopeError, isLeakscopeError } from '../model/errors.js';
import { openTarget } from './target.js';
import type { TargetOptions } from './target.js';
import { emit } from './output.js';
import type { JsonOption } from './output.js';
import { runHeap, runLeaks, runMem, runPools } from './commands.js';
import type { LeaksCliOptions } from './commands.js';
import { runAnalyze } from './analyze-command.js';
import type { AnalyzeCliOptions } from './analyze-command.js';
import { runDemo } from './demo.js';
import { runLua } from './lua-command.js';
import type { LuaCliOptions } from './lua-command.js';
import { runHeapReach } from './reach-command.js';

interface CommonOptions extends TargetOptions { json?: JsonOption }

function targetCommand(program: Command, name: string, description: string, opts: { core?: boolean } = {}): Command {
  const c = program.command(name)
    .description(description)
    .argument('[pid]', 'process id of the target')
    .option('--nginx', 'the nginx worker with the largest RSS');
  if (opts.core !== false) {
    c.option('--core <file>', 'analyze an ELF core file (gcore) instead of a live process')
      .option('--exe <binary>', 'the executable that produced the core file');
  }
  return c.addOption(new Option('--json [file]', 'machine-readable result (versioned JSON) to stdout or FILE'));
}

function withTarget<O extends CommonOptions>(pid: string | undefined, opts: O, run: (space: ReturnType<typeof openTarget>) => Promise<void> | void): Promise<void> {
  const space = openTarget(pid, opts);
  return Promise.resolve(run(space)).finally(() => space.close());
}

/** A numeric option: a plain number, or bytes with a binary suffix (512Ki, 4Mi). */
function number(name: string, min: number, max = Infinity): (v: string) => number {
  return (v: string) => {
    const m = /^([0-9]*\.?[0-9]+)\s*(Ki|Mi|Gi)?$/.exec(v.trim());
    const val = m ? Number(m[1]) * ({ Ki: 1024, Mi: 1 << 20, Gi: 1 << 30 }[m[2] as 'Ki'] ?? 1) : NaN;
    if (!Number.isFinite(val) || val < min || val > max) throw new LeakscopeError('usage', `${name}: expected a number in [${min}, ${max}], got ${JSON.stringify(v)}`);
    return val;
  };
}

export function buildProgram(): Command {
  const program = new Command('leakscope')
    .description('Diagnose native memory leaks in live nginx / glibc processes without restarting them')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  targetCommand(program, 'mem', 'step 1: where the RSS lives (glibc heap, arenas, mmapped chunks, nginx shm, code, stacks)')
    .action((pid: string | undefined, opts: CommonOptions) => withTarget(pid, opts, (space) => {
      const r = runMem(space);
      emit(opts.json, r.text, r.json);
    }));

  targetCommand(program, 'heap', 'steps 2 and 4: glibc heap census (arenas, in-use / free chunks, size histogram)')
    .option('--baseline <file>', 'a saved `heap --json` (e.g. of a sibling worker) to compare against')
    .option('--reach', 'reachability of the in-use chunks: definitely / indirectly / possibly lost, reachable')
    .option('--scans <n>', 'with --reach: scans a chunk must be lost in to count as lost (default 2 live, 1 core)', number('--scans', 1, 10))
    .action((pid: string | undefined, opts: CommonOptions & { baseline?: string; reach?: boolean; scans?: number }) => withTarget(pid, opts, async (space) => {
      if (opts.reach) {
        if (opts.baseline) throw new LeakscopeError('usage', '--reach and --baseline cannot be combined');
        const rr = await runHeapReach(space, { scans: opts.scans });
        emit(opts.json, rr.text, rr.json);
        return;
      }
      const r = runHeap(space, { baseline: opts.baseline });
      emit(opts.json, r.text, r.json);
    }));

  targetCommand(program, 'pools', 'step 3: nginx memory pools by owner and module; unreferenced pools')
    .option('--largest <n>', 'list the N largest pools', number('--largest', 0, 10000), 10)
    .action((pid: string | undefined, opts: CommonOptions & { largest: number }) => withTarget(pid, opts, (space) => {
      const r = runPools(space, { largest: opts.largest });
      emit(opts.json, r.text, r.json);
    }));

  targetCommand(program, 'leaks', 'step 5: outstanding allocations of a trace window by C call path (eBPF)', { core: false })
    .option('--duration <seconds>', 'trace window', number('--duration', 0.1, 86400), 10)
    .addOption(new Option('--mode <mode>', 'pool: nginx pools (one probe per pool); malloc: libc allocations').choices(['pool', 'malloc']).default('malloc'))
    .option('--sample-bytes <n>', 'malloc mode: byte-weighted sampling period (0 = every allocation)', number('--sample-bytes', 0, 2 ** 31 - 1), 512 * 1024)
    .option('--min-age <seconds>', 'ignore memory younger than this at the end', number('--min-age', 0), 0)
    .option('--duty <ratio>', 'share of each second the sampling probes are attached (free stays attached)', number('--duty', 0.01, 1), 1)
    .option('--show-internal', 'keep the allocator\'s internal frames below the API the program called')
    .option('--svg <file>', 'write an interactive flame graph')
    .option('--folded <file>', 'write folded stacks (bytes)')
    .option('--pprof <file>', 'write a gzipped pprof profile')
    .option('--reach', 'split each path\'s outstanding memory by reachability at the end: unreachable (a leak) vs reachable (a cache)')
    .action((pid: string | undefined, opts: CommonOptions & LeaksCliOptions) => withTarget(pid, opts, async (space) => {
      const r = await runLeaks(space, opts);
      emit(opts.json, r.text, r.json);
    }));
  targetCommand(program, 'analyze', 'steps 1-5: the guided analysis, with a conclusion and an HTML report')
    .option('--duration <seconds>', 'trace window (0: no trace)', number('--duration', 0, 86400), 10)
    .option('--pause <seconds>', 'observation pause between two heap censuses', number('--pause', 0, 3600), 2)
    .addOption(new Option('--mode <mode>', 'trace mode').choices(['auto', 'pool', 'malloc']).default('auto'))
    .option('--sample-bytes <n>', 'malloc mode sampling period (0 = every allocation); 16 KiB over 10 s sees steady growth from 13 KB/s', number('--sample-bytes', 0, 2 ** 31 - 1), 16 * 1024)
    .option('--min-age <seconds>', 'memory younger than this at the end is not a leak', number('--min-age', 0), 1)
    .option('--baseline <file>', 'a saved `heap --json` to compare against')
    .option('--html <file>', 'write the self-contained HTML report')
    .option('--no-reach', 'skip the reachability scan at the end (unreachable chunks of the grown bucket are strong evidence)')
    .option('--fail-on-leak', 'exit with status 1 when the verdict is `leak`')
    .action((pid: string | undefined, opts: CommonOptions & AnalyzeCliOptions & { failOnLeak?: boolean }) => withTarget(pid, opts, async (space) => {
      const r = await runAnalyze(space, { ...opts, siblings: true });
      emit(opts.json, r.text, r.json);
      // --fail-on-leak: exit 1 on verdict `leak` (0 on `no-leak` and `cannot-tell`), for scripts and CI.
      if (opts.failOnLeak && (r.doc.conclusion.verdict ?? (r.doc.conclusion.leak ? 'leak' : 'no-leak')) === 'leak') process.exitCode = 1;
    }));

  targetCommand(program, 'lua', 'OpenResty / LuaJIT: every Lua VM, GC objects by type, the largest and the growing tables by path')
    .option('--tables <n>', 'list the N largest tables (and at most N growing ones)', number('--tables', 0, 100000), 20)
    .option('--baseline <file>', 'a saved `lua --json` to compare against: which tables grew')
    .option('--pause <seconds>', 'take two snapshots this far apart: which tables grew', number('--pause', 0, 3600))
    .option('--scan', 'also scan all anonymous memory for Lua states (any allocator; ~1 s per GiB)')
    .option('--freeze', 'exact on a busy worker: stop its main thread while it waits for events (ptrace, never a signal) for the copy, ~1 s per GiB of Lua heap')
    .action((pid: string | undefined, opts: CommonOptions & LuaCliOptions) => withTarget(pid, opts, async (space) => {
      const r = await runLua(space, opts);
      emit(opts.json, r.text, r.json);
    }));

  program.command('demo')
    .description('start a real nginx with a leaking module, drive traffic, run analyze, write the report')
    .option('--duration <seconds>', 'trace window', number('--duration', 1, 600), 8)
    .option('--html <file>', 'where to write the report', 'leakscope-demo.html')
    .addOption(new Option('--json [file]', 'also write the analyze JSON to FILE (or stdout)'))
    .action(async (opts: { duration: number; html: string; json?: JsonOption }) => {
      const r = await runDemo(opts);
      emit(opts.json, r.text, r.json);
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
