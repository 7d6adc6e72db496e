// bcc's memleak leaker app (iovisor/bcc tests/python/test_tools_memleak_leaker_app.c, from Debian's
// bcc source package, or bcc v0.26.0's copy in test/fixtures/bcc where the archive does not serve it;
// built -g -O0 by `make -C test/fixtures bcc-tests` as bcc's own
// test_tools_memleak.py builds it), driven the way that test drives it: the kind of allocation as
// argv[1], the amount (test_tools_memleak.py's leaking_amount) as argv[2], one byte on stdin to
// start. Each kind is traced with `leakscope leaks --sample-bytes 0` until the program exits.
// Ground truth is the program's source: each kind's branch calls one allocation function with
// `amount` bytes and never frees it (no_leak frees what it allocates). Expected: exactly that
// many requested bytes outstanding under a leaf named after that function, called from
// generate_leak.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES_BUILD_DIR, FIXTURES_DIR } from '../../test/helpers/build.js';
import { probesAttached, runLeakscope } from '../../test/helpers/leakscope-cli.js';

const BCC = join(FIXTURES_BUILD_DIR, 'bcc');
const LEAKER = join(BCC, 'leaker_app');
const SRC = join(BCC, 'src/tests/python');

/** The allocation functions a branch may call (glibc's public API). */
const APIS = ['malloc', 'calloc', 'realloc', 'posix_memalign', 'aligned_alloc', 'memalign', 'valloc', 'pvalloc'];

interface Kind {
  kind: string;
  /** The function the branch calls with `amount` bytes and keeps; undefined when it frees it. */
  api?: string;
}

/** The argument list of the call whose '(' is at `open`, with nested parentheses. */
function argsAt(s: string, open: number): string {
  let depth = 0;
  for (let i = open; i < s.length; i++) {
    if (s[i] === '(') depth++;
    else if (s[i] === ')' && --depth === 0) return s.slice(open + 1, i);
  }
  return '';
}

/** Each `if (strcmp(kind, "K") == 0) { ... }` branch of generate_leak: what it allocates with `amount`. */
function kindsOf(source: string): Kind[] {
  const out: Kind[] = [];
  const re = /strcmp\(kind, "(\w+)"\) == 0\) \{/g;
  const starts = [...source.matchAll(re)];
  for (let k = 0; k < starts.length; k++) {
    const m = starts[k]!;
    const body = source.slice(m.index! + m[0].length, starts[k + 1]?.index ?? source.indexOf('unknown leak type'));
    const calls = [...body.matchAll(/\b(\w+)\(/g)]
      .filter((c) => APIS.includes(c[1]!))
      .filter((c) => /\bamount\b/.test(argsAt(body, c.index! + c[1]!.length)));
    assert.equal(calls.length, 1, `one allocation of amount bytes in the ${m[1]} branch`);
    const freed = /\bfree\(/.test(body);
    out.push({ kind: m[1]!, api: freed ? undefined : calls[0]![1] });
  }
  return out;
}

interface StackJson {
  frames: { function: string | null }[];
  bytes: number;
  count: number;
}
interface LeaksJson {
  complete: boolean;
  targetExitedAfterSeconds?: number;
  stacks: StackJson[];
}

/** One run as bcc's test runs it: start, attach, one byte on stdin, the program leaks and exits. */
async function traceKind(kind: string, amount: number): Promise<LeaksJson> {
  const app = spawn(LEAKER, [kind, String(amount)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  app.stdout.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((r) => app.on('close', (code) => r(code)));
  try {
    const run = runLeakscope(['leaks', String(app.pid), '--sample-bytes', '0', '--duration', '60', '--json']);
    await probesAttached(run.pid);
    app.stdin.end('\n');
    assert.equal(await exited, 0, `${kind}: leaker_app exit status`);
    const r = await run.done;
    assert.equal(r.status, 0, r.stderr);
    assert.match(out, kind === 'no_leak' ? /ptr = 0x/ : new RegExp(`leaking via ${kind}, 0x`));
    return JSON.parse(r.stdout) as LeaksJson;
  } finally {
    app.kill('SIGKILL');
  }
}

test("bcc's memleak leaker app: every allocation kind, requested bytes exact, leaf named after the API called", async () => {
  const make = spawnSync('make', ['-s', '-C', FIXTURES_DIR, 'bcc-tests'], { encoding: 'utf8' });
  assert.equal(make.status, 0, `make bcc-tests:\n${make.stdout}${make.stderr}`);
  const source = readFileSync(join(SRC, 'test_tools_memleak_leaker_app.c'), 'utf8');
  const driver = readFileSync(join(SRC, 'test_tools_memleak.py'), 'utf8');
  const amount = Number(/leaking_amount = (\d+)/.exec(driver)?.[1]);
  assert.ok(amount > 0, "test_tools_memleak.py's leaking_amount");
  const kinds = kindsOf(source);
  // bcc's own test covers these eight; the source may add more (each is checked the same way).
  const tested = [...driver.matchAll(/def test_(\w+)\(self\)/g)].map((m) => m[1]!);
  for (const k of tested)
    assert.ok(
      kinds.some((x) => x.kind === k && x.api),
      `${k} is a leaking kind of the source`,
    );
  assert.ok(
    kinds.some((k) => !k.api),
    'no_leak',
  );

  const summary: string[] = [];
  for (const { kind, api } of kinds) {
    const doc = await traceKind(kind, amount);
    assert.ok(doc.targetExitedAfterSeconds !== undefined, `${kind}: the program's exit ended the trace`);
    assert.equal(doc.complete, true, `${kind}: nothing lost`);
    const fromGenerateLeak = doc.stacks.filter((s) => s.frames[1]?.function === 'generate_leak');
    const shown = fromGenerateLeak.map((s) => `${s.frames[0]?.function} ${s.bytes} B x${s.count}`).join(', ');
    summary.push(`${kind}: ${shown || 'nothing outstanding from generate_leak'}`);
    if (!api) {
      assert.deepEqual(fromGenerateLeak, [], `${kind}: nothing outstanding from generate_leak's own calls`);
      continue;
    }
    // exactly one path: the leaf is the API the branch calls, then generate_leak, then main
    assert.equal(fromGenerateLeak.length, 1, `${kind}: one path from generate_leak: ${shown}`);
    const s = fromGenerateLeak[0]!;
    assert.equal(s.frames[0]!.function, api, `${kind}: leaf`);
    assert.equal(s.frames[2]?.function, 'main');
    assert.equal(s.bytes, amount, `${kind}: requested bytes`);
    assert.equal(s.count, 1, `${kind}: one allocation`);
  }
  console.log(`# amount ${amount} B; ${summary.join('; ')}`);
});
