// A C++ program's leaks (test/fixtures/cxx/cxx-leaker.cc): demangled names in every output:
// text, JSON, folded, pprof, SVG (leaks) and the HTML report (analyze).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { Profile } from 'pprof-format';
import { startFixture } from '../../test/helpers/fixture.js';
import { LiveProcess } from '../target/index.js';
import { traceLeaks } from './leak-tracer.js';
import { renderLeaksTable } from '../report/leaks-table.js';
import { encodeLeaks } from '../contract/leaks.js';
import { toFolded } from '../formats/folded/folded.js';
import { toPprof } from '../formats/pprof/pprof.js';
import { renderFlameGraphSvg } from '../report/flamegraph-svg.js';
import { workloadWindow } from '../../test/helpers/trace-window.js';

const ADD = 'leakfx::Cache::add(unsigned long)';
const MAKE = 'leakfx::Widget* leakfx::make_leak<leakfx::Widget>()';
const NEW = 'operator new(unsigned long)';
const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

test('C++ fixture: demangled names in text, JSON, folded, pprof and SVG', async () => {
  const fx = await startFixture<{ pid: number }>('cxx-leaker');
  try {
    const space = LiveProcess.open(fx.pid);
    const window = workloadWindow(30);
    const trace = traceLeaks(space, { mode: 'malloc', ...window.options, sampleBytes: 0 });
    await new Promise((r) => setTimeout(r, 500));
    await fx.command('go 300', 30_000);
    window.done();
    const t = await trace;
    space.close();
    const text = renderLeaksTable(encodeLeaks(t), { top: 20 });
    const json = JSON.stringify(encodeLeaks(t));
    const folded = toFolded(t.stacks, 'bytes');
    const profile = Profile.decode(gunzipSync(toPprof(t.stacks, { durationNanos: 1e9, timeNanos: 0n })));
    const fnames = profile.function.map((f) => profile.stringTable.strings[Number(f.name)]!);
    const svg = renderFlameGraphSvg(t.stacks, { title: 'cxx', weight: 'bytes' });
    for (const name of [ADD, MAKE, NEW]) {
      assert.ok(json.includes(JSON.stringify(name).slice(1, -1)), `JSON: ${name}`);
      assert.ok(folded.includes(name), `folded: ${name}`);
      assert.ok(fnames.includes(name), `pprof: ${name} in ${fnames.slice(0, 20)}`);
      assert.ok(svg.includes(xml(name)), `SVG: ${name}`);
    }
    assert.ok(text.includes(NEW) && text.includes(ADD), text);
    assert.ok(json.includes('"mangled":"_ZN6leakfx5Cache3addEm"'), 'the raw name is kept');
    assert.doesNotMatch(folded, /_ZN6leakfx/);
  } finally {
    await fx.stop();
  }
});

test('C++ fixture: the HTML report of analyze names the demangled leaking function', async () => {
  const fx = await startFixture<{ pid: number }>('cxx-leaker');
  try {
    const dir = mkdtempSync(join(tmpdir(), 'leakscope-cxx-'));
    const html = join(dir, 'report.html');
    const cli = spawn(
      process.execPath,
      [
        join(REPO, 'bin/leakscope'),
        'analyze',
        String(fx.pid),
        '--duration',
        '3',
        '--pause',
        '1',
        '--mode',
        'malloc',
        '--sample-bytes',
        '0',
        '--html',
        html,
        '--json',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '',
      err = '';
    cli.stdout.on('data', (d) => (out += d));
    cli.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number>((r) => cli.once('exit', (c) => r(c ?? -1)));
    let running = true;
    void exited.then(() => {
      running = false;
    });
    while (running) {
      await fx.command('go 100', 30_000);
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(await exited, 0, err);
    const page = readFileSync(html, 'utf8');
    assert.ok(page.includes(xml(ADD)) || page.includes(xml(MAKE)), 'the HTML report shows a demangled C++ name');
    // (the embedded JSON document keeps the raw name in "mangled"; what is shown is demangled)
    assert.doesNotMatch(page.replace(/<script[\s\S]*?<\/script>/g, ''), /_ZN6leakfx/);
    assert.ok(/leakfx::/.test(out), 'and the JSON');
  } finally {
    await fx.stop();
  }
});
