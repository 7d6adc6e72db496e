// Inlined frames end to end: a program built -O2 -g whose malloc calls sit in functions inlined
// (nested) into one another, traced with `leakscope leaks --sample-bytes 0 --json --pprof`: the
// JSON frames of each path, and the Line arrays of its pprof Locations, are what `addr2line -f -i`
// says about each return address - 1 in the program.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { FIXTURES_DIR } from '../../test/helpers/build.js';
import { probesAttached, runLeakscope } from '../../test/helpers/leakscope-cli.js';

// test/fixtures/c/inlined-calls.c: nested forced inlining (inner in middle in outer), two call
// sites of each, and a cold part.
const PROGRAM_FILE = join(FIXTURES_DIR, 'c/inlined-calls.c');

interface FrameJson {
  function: string | null;
  module: string;
  offset: number;
  line?: number;
  inlined?: boolean;
}

test('inlined frames: JSON frames and pprof Line arrays as addr2line -i reads the call sites', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-inlined-'));
  try {
    const bin = join(dir, 'inl');
    execFileSync('gcc', ['-O2', '-g', '-o', bin, PROGRAM_FILE]);
    const pprofFile = join(dir, 'p.pb.gz');
    const app = spawn(bin, [], { stdio: ['pipe', 'ignore', 'inherit'] });
    const exited = new Promise((r) => app.on('close', r));
    let doc: { stacks: { frames: FrameJson[]; bytes: number }[] };
    try {
      const run = runLeakscope([
        'leaks',
        String(app.pid),
        '--sample-bytes',
        '0',
        '--duration',
        '60',
        '--json',
        '--pprof',
        pprofFile,
      ]);
      await probesAttached(run.pid);
      app.stdin.end('\n');
      await exited;
      const r = await run.done;
      assert.equal(r.status, 0, r.stderr);
      doc = JSON.parse(r.stdout);
    } finally {
      app.kill('SIGKILL');
    }
    const profile = Profile.decode(gunzipSync(readFileSync(pprofFile)));
    const str = (i: unknown) => profile.stringTable.strings[Number(i)]!;
    const fnName = new Map(profile.function.map((f) => [Number(f.id), str(f.name)]));
    const lines = new Map(
      profile.location.map((l) => [Number(l.id), l.line.map((x) => `${fnName.get(Number(x.functionId))}:${x.line}`)]),
    );

    let paths = 0;
    for (const size of [2000, 3000, 10000]) {
      const s = doc.stacks.find((x) => x.bytes === size);
      assert.ok(s, `a path of ${size} B: ${doc.stacks.map((x) => x.bytes)}`);
      // the program's frames grouped as one pc each: inlined ones, then the function's own
      const groups: FrameJson[][] = [];
      let cur: FrameJson[] = [];
      // (crt's _start has no DWARF: no line, nothing to compare)
      for (const f of s.frames.filter((x) => x.module === 'inl' && x.line !== undefined)) {
        cur.push(f);
        if (!f.inlined) {
          groups.push(cur);
          cur = [];
        }
      }
      const expected = groups.map((g) => {
        const pc = g[g.length - 1]!.offset - 1; // return address - 1
        const out = execFileSync('addr2line', ['-f', '-i', '-e', bin, pc.toString(16)], { encoding: 'utf8' })
          .trim()
          .split('\n');
        const fr: string[] = [];
        for (let i = 0; i + 1 < out.length; i += 2) fr.push(`${out[i]}:${/:(\d+)/.exec(out[i + 1]!)![1]}`);
        return fr;
      });
      const ours = groups.map((g) => g.map((f) => `${f.function}:${f.line}`));
      assert.deepEqual(ours, expected, `${size} B: JSON frames`);
      assert.ok(groups[0]!.length >= 2, `${size} B: the malloc call is in inlined code: ${ours[0]}`);
      // pprof: the sample with this path's bytes has one Location per group, Lines as addr2line
      const sample = profile.sample.find((x) => Number(x.value[0]) === size)!;
      const locLines = sample.locationId
        .map((id) => lines.get(Number(id))!)
        .filter((l) => expected.some((e) => e.join() === l.join()));
      assert.deepEqual(locLines, expected, `${size} B: pprof Line arrays`);
      paths++;
    }
    console.log(`# ${paths} paths through inlined code, as addr2line -i reads them`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
