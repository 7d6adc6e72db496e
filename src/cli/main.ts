// leakscope command line: argv -> options -> wiring. The only layer that prints or exits.
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { EXIT_CODES, LeakscopeError, isLeakscopeError } from '../model/errors.js';
import { checkTargetArgs, openTarget, parsePid } from './target.js';
import type { TargetOptions } from './target.js';
import { discardPending, emit, prepareOutputs, writeStdout } from './output.js';
import type { InputRequest, JsonOption, OutputRequest } from './output.js';
// A command's implementation is imported when that command runs (start-up: only the modules it uses
// are loaded and compiled); the option definitions below stay eager, so --help lists everything.
import type { LeaksCliOptions } from './commands.js';
import type { AnalyzeCliOptions } from './analyze-command.js';
import type { LuaCliOptions } from './lua-command.js';
import type { WatchCliOptions } from './watch-command.js';
import { parseTriggerThresholds } from '../analysis/watch-growth.js';

interface CommonOptions extends TargetOptions {
  json?: JsonOption;
  output?: string;
  baseline?: string;
  html?: string;
  svg?: string;
  folded?: string;
  pprof?: string;
}

/** The package's version, from the package.json beside dist/ (this file runs as dist/src/cli/main.js). */
function packageVersion(): string {
  try {
    return String(JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).version);
  } catch {
    return 'unknown';
  }
}

const JSON_HELP =
  'versioned JSON result to stdout; --json=FILE or -o FILE writes it to FILE ' +
  '(--json FILE too, when FILE is not all digits: `--json 123` means PID 123, JSON to stdout); - is stdout';

function targetCommand(program: Command, name: string, description: string, opts: { core?: boolean } = {}): Command {
  const c = program
    .command(name)
    .description(description)
    .argument('[pid]', 'process id of the target')
    .allowExcessArguments(false)
    .option(
      '--nginx',
      'the largest worker of the running nginx (--nginx=MASTER_PID: of that master; with several instances, choose one)',
    )
    .addOption(
      new Option('--nginx-master <pid>', 'the form --nginx=MASTER_PID takes after argv normalization')
        .hideHelp()
        .argParser((v) => parsePid(v, 'master process id')),
    )
    .option('--prefix <dir>', 'with --nginx: the instance whose master was started with -p DIR')
    .option('--conf <file>', 'with --nginx: the instance whose master was started with -c FILE');
  if (opts.core !== false) {
    c.option('--core <file>', 'analyze an ELF core file (gcore) instead of a live process').option(
      '--exe <binary>',
      'the executable that produced the core file',
    );
  }
  return c
    .addOption(new Option('--json [file]', JSON_HELP))
    .option('-o, --output <file>', 'write the JSON result to FILE (same as --json=FILE)');
}

/**
 * `--json`'s optional value: digits are the PID (`mem --json 30697` analyzes 30697, JSON to stdout),
 * anything else a file; `-o FILE` / `--json=FILE` (argv form rewritten to `--output=FILE`) name the file.
 */
function jsonAndPid(
  pid: string | undefined,
  opts: CommonOptions,
  takesPid = true,
): { pid: string | undefined; json: JsonOption } {
  let json = opts.json;
  if (typeof json === 'string' && /^\d+$/.test(json)) {
    if (pid !== undefined || !takesPid) {
      throw new LeakscopeError(
        'usage',
        `too many arguments: ${[pid, json].filter(Boolean).join(' and ')} (after --json, digits are a PID; for a file named by digits write --json=FILE or -o FILE)`,
      );
    }
    pid = json;
    json = true;
  }
  if (opts.output !== undefined) {
    if (typeof json === 'string')
      throw new LeakscopeError('usage', `--json ${json} and -o/--output ${opts.output} both name the JSON file`);
    json = opts.output;
  }
  return { pid, json };
}

/** Every file a command writes, checked and opened before the work starts, and the inputs none may overwrite. */
function outputsOf(json: JsonOption, opts: CommonOptions): { outputs: OutputRequest[]; inputs: InputRequest[] } {
  return {
    outputs: [
      { option: '--json', path: json === true ? '-' : json || undefined },
      { option: '--html', path: opts.html },
      { option: '--svg', path: opts.svg },
      { option: '--folded', path: opts.folded },
      { option: '--pprof', path: opts.pprof },
    ],
    inputs: [
      { option: '--core', path: opts.core },
      { option: '--exe', path: opts.exe },
      { option: '--baseline', path: opts.baseline },
    ],
  };
}

function withTarget<O extends CommonOptions>(
  pidArg: string | undefined,
  opts: O,
  run: (space: ReturnType<typeof openTarget>, json: JsonOption) => Promise<void> | void,
): Promise<void> {
  const { pid, json } = jsonAndPid(pidArg, opts);
  checkTargetArgs(pid, opts);
  const io = outputsOf(json, opts);
  prepareOutputs(io.outputs, io.inputs);
  const space = openTarget(pid, opts);
  return Promise.resolve(run(space, json)).finally(() => space.close());
}

/** Starts the heap census's reader threads before the command's modules load (their start overlaps it). */
async function startCensusReaders(space: ReturnType<typeof openTarget>): Promise<void> {
  const { prepareCensusReadAhead } = await import('../glibc/census.js');
  prepareCensusReadAhead(space);
}

/** A numeric option: a plain number, or bytes with a binary suffix (512Ki, 4Mi); `integer`: whole numbers only. */
function number(name: string, min: number, max = Infinity, integer = false): (v: string) => number {
  return (v: string) => {
    const m = /^([0-9]*\.?[0-9]+)\s*(Ki|Mi|Gi)?$/.exec(v.trim());
    const val = m ? Number(m[1]) * ({ Ki: 1024, Mi: 1 << 20, Gi: 1 << 30 }[m[2] as 'Ki'] ?? 1) : NaN;
    if (!Number.isFinite(val) || val < min || val > max || (integer && !Number.isInteger(val))) {
      throw new LeakscopeError(
        'usage',
        `${name}: expected ${integer ? 'a whole number' : 'a number'} in [${min}, ${max}], got ${JSON.stringify(v)}`,
      );
    }
    return val;
  };
}
const integer = (name: string, min: number, max = Infinity) => number(name, min, max, true);

/**
 * `--json=FILE` -> `--output=FILE` and `--nginx=N` -> `--nginx-master=N` (up to `--`), for the commands
 * that have those options, so that `--json` and `--nginx` given bare never take the next word (a PID)
 * as their value.
 */
export function normalizeArgv(argv: string[], program?: Command): string[] {
  const cmd = program?.commands.find((c) => c.name() === argv[0]);
  const has = (long: string) => !program || !!cmd?.options.some((o) => o.long === long);
  const end = argv.indexOf('--');
  return argv.map((a, i) => {
    if (end >= 0 && i >= end) return a;
    if (a.startsWith('--json=') && has('--output')) return `--output=${a.slice('--json='.length)}`;
    if (a.startsWith('--nginx=') && has('--nginx-master')) return `--nginx-master=${a.slice('--nginx='.length)}`;
    return a;
  });
}

export function buildProgram(): Command {
  const program = new Command('leakscope')
    .description('Diagnose native memory leaks in live nginx / glibc processes without restarting them')
    .version(packageVersion())
    .exitOverride()
    .configureOutput({ writeOut: (s) => writeStdout(s), writeErr: (s) => process.stderr.write(s) });

  targetCommand(
    program,
    'mem',
    'step 1: where the RSS lives (glibc heap, arenas, mmapped chunks, nginx shm, code, stacks)',
  ).action((pid: string | undefined, opts: CommonOptions) =>
    withTarget(pid, opts, async (space, json) => {
      const { runMem } = await import('./commands.js');
      const r = await runMem(space);
      emit(json, r.text, r.json);
    }),
  );

  targetCommand(program, 'heap', 'steps 2 and 4: glibc heap census (arenas, in-use / free chunks, size histogram)')
    .option('--baseline <file>', 'a saved `heap --json` (e.g. of a sibling worker) to compare against')
    .option('--reach', 'reachability of the in-use chunks: definitely / indirectly / possibly lost, reachable')
    .option(
      '--scans <n>',
      'with --reach: scans a chunk must be lost in to count as lost (default 2 live, 1 core)',
      integer('--scans', 1, 10),
    )
    .action((pid: string | undefined, opts: CommonOptions & { baseline?: string; reach?: boolean; scans?: number }) =>
      withTarget(pid, opts, async (space, json) => {
        await startCensusReaders(space);
        if (opts.reach) {
          if (opts.baseline) throw new LeakscopeError('usage', '--reach and --baseline cannot be combined');
          const { runHeapReach } = await import('./reach-command.js');
          const rr = await runHeapReach(space, { scans: opts.scans });
          emit(json, rr.text, rr.json);
          return;
        }
        const { runHeap } = await import('./commands.js');
        const r = runHeap(space, { baseline: opts.baseline });
        emit(json, r.text, r.json);
      }),
    );

  targetCommand(program, 'pools', 'step 3: nginx memory pools by owner and module; unreferenced pools')
    .option('--largest <n>', 'list the N largest pools', integer('--largest', 0, 10000), 10)
    .action((pid: string | undefined, opts: CommonOptions & { largest: number }) =>
      withTarget(pid, opts, async (space, json) => {
        await startCensusReaders(space);
        const { runPools } = await import('./commands.js');
        const r = await runPools(space, { largest: opts.largest });
        emit(json, r.text, r.json);
      }),
    );

  targetCommand(program, 'leaks', 'step 5: outstanding allocations of a trace window by C call path (eBPF)', {
    core: false,
  })
    .option('--duration <seconds>', 'trace window', number('--duration', 0.1, 86400), 10)
    .addOption(
      new Option(
        '--mode <mode>',
        "pool: nginx pools (one probe per pool); malloc: libc allocations; lua: LuaJIT's allocator lj_alloc_f, every Lua allocation with its Lua frames (opt-in: ~30 µs per Lua allocation + free, allocation-heavy Lua up to ~300x slower: keep the window short)",
      )
        .choices(['pool', 'malloc', 'lua'])
        .default('malloc'),
    )
    .option(
      '--sample-bytes <n>',
      'malloc mode: byte-weighted sampling period (0 = every allocation)',
      integer('--sample-bytes', 0, 2 ** 31 - 1),
      512 * 1024,
    )
    .option('--min-age <seconds>', 'ignore memory younger than this at the end', number('--min-age', 0), 0)
    .option(
      '--duty <ratio>',
      'share of each second the sampling probes are attached (free stays attached when probed)',
      number('--duty', 0.01, 1),
      1,
    )
    .option(
      '--max-overhead <ratio>',
      "instead of a fixed --duty: set the sampling probes' duty each second so that their cost (measured per-hit cost x hits) stays under this share of the target's own CPU (e.g. 0.05)",
      number('--max-overhead', 0.001, 0.999),
    )
    .option(
      '--heap-liveness',
      'sampled malloc mode: don\'t probe free (one trap less per free); read each sampled allocation\'s liveness from the heap. Biased: a chunk freed and reused at a similar size before a check ("ghost") still counts under the sampled path',
    )
    .option('--show-internal', "keep the allocator's internal frames below the API the program called")
    .option(
      '--all-pool-sites',
      'pool mode: probe every pool (ngx_create_pool itself), also those nginx creates and destroys itself (connections, requests, upstream, HTTP/2, cycle)',
    )
    .option('--svg <file>', 'write an interactive flame graph')
    .option('--folded <file>', 'write folded stacks (bytes)')
    .option('--pprof <file>', 'write a gzipped pprof profile')
    .option(
      '--reach',
      "split each path's outstanding memory by reachability at the end: unreachable (a leak) vs reachable (a cache)",
    )
    .action((pid: string | undefined, opts: CommonOptions & LeaksCliOptions) =>
      withTarget(pid, opts, async (space, json) => {
        const { runLeaks } = await import('./commands.js');
        const r = await runLeaks(space, opts);
        emit(json, r.text, r.json);
      }),
    );
  targetCommand(program, 'analyze', 'steps 1-5: the guided analysis, with a conclusion and an HTML report')
    .option('--duration <seconds>', 'trace window (0: no trace)', number('--duration', 0, 86400), 10)
    .option('--pause <seconds>', 'observation pause between two heap censuses', number('--pause', 0, 3600), 2)
    .addOption(new Option('--mode <mode>', 'trace mode').choices(['auto', 'pool', 'malloc']).default('auto'))
    .option('--all-pool-sites', 'pool mode: probe every pool, also those nginx creates and destroys itself')
    .option(
      '--sample-bytes <n>',
      'malloc mode sampling period (0 = every allocation); 16 KiB over 10 s sees steady growth from 13 KB/s',
      integer('--sample-bytes', 0, 2 ** 31 - 1),
      16 * 1024,
    )
    .option('--min-age <seconds>', 'memory younger than this at the end is not a leak', number('--min-age', 0), 1)
    .option('--baseline <file>', 'a saved `heap --json` to compare against')
    .option('--html <file>', 'write the self-contained HTML report')
    .option(
      '--no-reach',
      'skip the reachability scan at the end (unreachable chunks of the grown bucket are strong evidence)',
    )
    .option('--fail-on-leak', 'exit with status 1 when the verdict is `leak`')
    .action((pid: string | undefined, opts: CommonOptions & AnalyzeCliOptions & { failOnLeak?: boolean }) =>
      withTarget(pid, opts, async (space, json) => {
        const { runAnalyze } = await import('./analyze-command.js');
        const r = await runAnalyze(space, { ...opts, siblings: true });
        emit(json, r.text, r.json);
        // --fail-on-leak: exit 1 on verdict `leak` (0 on `no-leak` and `cannot-tell`), for scripts and CI.
        if (opts.failOnLeak && (r.doc.conclusion.verdict ?? (r.doc.conclusion.leak ? 'leak' : 'no-leak')) === 'leak')
          process.exitCode = 1;
      }),
    );

  targetCommand(
    program,
    'lua',
    'OpenResty / LuaJIT: every Lua VM, GC objects by type, the largest and the growing tables by path',
  )
    .option(
      '--tables <n>',
      'list the N largest tables (and at most N growing ones)',
      integer('--tables', 0, 100000),
      20,
    )
    .option('--baseline <file>', 'a saved `lua --json` to compare against: which tables grew')
    .option('--pause <seconds>', 'take two snapshots this far apart: which tables grew', number('--pause', 0, 3600))
    .option('--scan', 'also scan all anonymous memory for Lua states (any allocator; ~1 s per GiB)')
    .option(
      '--freeze',
      'exact on a busy worker: stop its main thread while it waits for events (ptrace, never a signal) for the copy, ~1 s per GiB of Lua heap',
    )
    .action((pid: string | undefined, opts: CommonOptions & LuaCliOptions) =>
      withTarget(pid, opts, async (space, json) => {
        const { runLua } = await import('./lua-command.js');
        const r = await runLua(space, opts);
        emit(json, r.text, r.json);
      }),
    );

  program
    .command('watch')
    .description("long-running: Prometheus /metrics of the workers' memory (static reads), reports triggered by growth")
    .argument('[pids...]', 'process ids to follow (instead of --nginx)')
    .option(
      '--nginx [master]',
      'follow every nginx worker (or those of master pid MASTER), re-discovered each interval',
    )
    .option('--listen <addr:port>', 'where to serve /metrics', '127.0.0.1:9465')
    .option('--interval <seconds>', 'time between censuses', number('--interval', 0.2, 86400), 60)
    .option(
      '--budget <ratio>',
      'share of one core the censuses may take; slower censuses space out the cycles',
      number('--budget', 0.001, 1),
      0.05,
    )
    .option(
      '--top-modules <n>',
      'pool modules labelled per owner (the rest are "other")',
      number('--top-modules', 1, 100),
      10,
    )
    .option(
      '--window <seconds>',
      'growth rates are fitted over this much recent history',
      number('--window', 1, 7 * 86400),
      3600,
    )
    .option('--min-samples <n>', 'censuses a growth trigger needs in its window', number('--min-samples', 3, 10000), 10)
    .option(
      '--trigger <thresholds>',
      'run analyze when growth passes BYTES_PER_HOUR, e.g. 10Mi or module=5Mi,bucket=20Mi,rss=100Mi',
      (v: string) => parseTriggerThresholds(v),
    )
    .option(
      '--cooldown <seconds>',
      'at most one triggered analysis per this long',
      number('--cooldown', 0, 30 * 86400),
      3600,
    )
    .option('--reports <dir>', 'where triggered reports are kept (HTML, JSON, pprof)')
    .option('--keep <n>', 'report directories kept (the oldest are removed)', number('--keep', 1, 100000), 20)
    .option(
      '--trace-seconds <seconds>',
      'trace window of a triggered analysis (0: static only)',
      number('--trace-seconds', 0, 3600),
      30,
    )
    .option(
      '--duty <ratio>',
      'share of each second the triggered trace keeps its sampling probes attached',
      number('--duty', 0.01, 1),
      0.25,
    )
    .option('--pause <seconds>', 'observation pause of a triggered analysis', number('--pause', 0, 3600), 2)
    .action(async (pids: string[], opts: WatchCliOptions) => (await import('./watch-command.js')).runWatch(pids, opts));

  program
    .command('demo')
    .description('start a real nginx with a leaking module, drive traffic, run analyze, write the report')
    .option('--duration <seconds>', 'trace window', number('--duration', 1, 600), 8)
    .option('--html <file>', 'where to write the report', 'leakscope-demo.html')
    .addOption(new Option('--json [file]', 'the analyze JSON to stdout; --json=FILE or -o FILE writes it to FILE'))
    .option('-o, --output <file>', 'write the analyze JSON to FILE')
    .allowExcessArguments(false)
    .action(async (opts: { duration: number; html: string; json?: JsonOption; output?: string }) => {
      const { json } = jsonAndPid(undefined, opts, false);
      const io = outputsOf(json, { html: opts.html });
      prepareOutputs(io.outputs, io.inputs);
      const { runDemo } = await import('./demo.js');
      const r = await runDemo(opts);
      emit(json, r.text, r.json);
    });
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  // Anything still written through process.stdout (a library) must not end in a stack trace either.
  process.stdout.on('error', (e) => {
    process.exitCode = exitCodeFor(
      new LeakscopeError('io', `cannot write to stdout: ${(e as NodeJS.ErrnoException).code ?? e.message}`),
    );
  });
  try {
    await program.parseAsync(normalizeArgv(argv, program), { from: 'user' });
  } catch (e) {
    discardPending();
    process.exitCode = exitCodeFor(e);
  }
}

/** Prints one line for an error and returns the exit status. Never prints a stack trace unless LEAKSCOPE_DEBUG is set. */
export function exitCodeFor(e: unknown): number {
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0) return 0;
    return EXIT_CODES.usage; // commander already printed its one-line message
  }
  if (isLeakscopeError(e)) {
    process.stderr.write(`leakscope: ${oneLine(e.message)}\n`);
    // A choice to make (several nginx instances): the candidates, one line each.
    for (const d of Array.isArray((e as { details?: unknown }).details)
      ? (e as unknown as { details: string[] }).details
      : [])
      process.stderr.write(`  ${oneLine(d)}\n`);
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

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').slice(0, 400);
}
