import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFolded, toFolded } from './folded.js';
import { LeakscopeError } from '../../model/errors.js';
import type { Frame, StackSample } from '../../model/stacks.js';

const fn = (name: string, module = 'nginx', offset = 0x1000): Frame => ({ function: name, module, offset });
const raw = (module: string, offset: number): Frame => ({ function: null, module, offset });

// Leaf first. Totals by hand: bytes 4096 + 1024 + 2048 + 512 + 100 = 7780; count 4 + 1 + 2 + 8 + 3 = 18.
const SAMPLES: StackSample[] = [
  { frames: [fn('malloc', 'libc.so.6'), fn('ngx_alloc'), fn('ngx_palloc'), fn('main')], bytes: 4096, count: 4 },
  { frames: [fn('malloc', 'libc.so.6'), fn('ngx_alloc'), fn('ngx_palloc'), fn('main')], bytes: 1024, count: 1 },
  { frames: [fn('malloc', 'libc.so.6'), raw('libfoo.so', 0x2a3f), fn('main')], bytes: 2048, count: 2 },
  { frames: [fn('calloc', 'libc.so.6'), fn('a;b\nc\r\u2028d\u2029e'), fn('main')], bytes: 512, count: 8 },
  { frames: [fn('malloc', 'libc.so.6'), fn('operator new 42'), fn('')], bytes: 100, count: 3 },
];

/**
 * speedscope's folded-stack importer (jlfwong/speedscope src/import/bg-flamegraph.ts @21167e6),
 * re-stated: split on '\n', keep lines matching /^(.*) (\d+)$/, stack = match[1].split(';').
 * Returns null for lines it would silently skip, so the test can insist there are none.
 */
function speedscopeParse(text: string): Array<{ stack: string[]; n: number } | null> {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((line) => {
      const m = /^(.*) (\d+)$/gm.exec(line);
      return m ? { stack: m[1]!.split(';'), n: parseInt(m[2]!, 10) } : null;
    });
}

test('toFolded: one line per distinct path, root first, merged, sorted', () => {
  assert.equal(
    toFolded(SAMPLES, 'bytes'),
    [
      '[unknown];operator new 42;malloc 100\n',
      'main;a:b c  d e;calloc 512\n',
      'main;libfoo.so+0x2a3f;malloc 2048\n',
      'main;ngx_palloc;ngx_alloc;malloc 5120\n',
    ].join(''),
  );
  assert.equal(
    toFolded(SAMPLES, 'count'),
    '[unknown];operator new 42;malloc 3\nmain;a:b c  d e;calloc 8\nmain;libfoo.so+0x2a3f;malloc 2\nmain;ngx_palloc;ngx_alloc;malloc 5\n',
  );
});

test("toFolded output is accepted line by line by speedscope's rule, totals preserved", () => {
  for (const [weight, total] of [
    ['bytes', 7780],
    ['count', 18],
  ] as const) {
    const parsed = speedscopeParse(toFolded(SAMPLES, weight));
    assert.ok(
      parsed.every((p) => p !== null),
      'speedscope would skip a line',
    );
    assert.equal(
      parsed.reduce((a, p) => a + p!.n, 0),
      total,
    );
    const stacks = parsed.map((p) => p!.stack.join('|')).sort();
    assert.deepEqual(stacks, [
      '[unknown]|operator new 42|malloc',
      'main|a:b c  d e|calloc',
      'main|libfoo.so+0x2a3f|malloc',
      'main|ngx_palloc|ngx_alloc|malloc',
    ]);
  }
});

test('toFolded: hostile names still give exactly one speedscope-valid line each', () => {
  const names = ['x 5', 'y\n7', '1 2 3', ' ', ';', 'a\u0000b', 'tab\there'];
  const samples = names.map((n, i) => ({ frames: [fn(n), fn('main')], bytes: i + 1, count: 1 }));
  const parsed = speedscopeParse(toFolded(samples, 'bytes'));
  assert.equal(parsed.length, names.length);
  assert.ok(parsed.every((p) => p !== null && p.stack.length === 2 && p.stack[0] === 'main'));
  assert.equal(
    parsed.reduce((a, p) => a + p!.n, 0),
    1 + 2 + 3 + 4 + 5 + 6 + 7,
  );
});

test('toFolded: rounds estimates, drops zero paths, rejects negative values, empty input', () => {
  assert.equal(toFolded([{ frames: [fn('f')], bytes: 10.6, count: 0.2 }], 'bytes'), 'f 11\n');
  assert.equal(toFolded([{ frames: [fn('f')], bytes: 10.6, count: 0.2 }], 'count'), '');
  assert.equal(toFolded([{ frames: [], bytes: 3, count: 1 }], 'bytes'), '[unknown] 3\n');
  assert.equal(toFolded([], 'bytes'), '');
  assert.throws(
    () => toFolded([{ frames: [fn('f')], bytes: -1, count: 0 }], 'bytes'),
    (e: unknown) => e instanceof LeakscopeError && e.code === 'malformed',
  );
  assert.throws(() => toFolded([{ frames: [fn('f')], bytes: NaN, count: 0 }], 'bytes'), LeakscopeError);
});

test('parseFolded: round trip of toFolded, leaf first, unsymbolized frames restored', () => {
  const back = parseFolded(toFolded(SAMPLES, 'bytes'));
  assert.equal(back.length, 4);
  assert.equal(
    back.reduce((a, s) => a + s.bytes, 0),
    7780,
  );
  const libfoo = back.find((s) => s.bytes === 2048)!;
  assert.deepEqual(libfoo.frames, [
    { function: 'malloc', module: '[unknown]', offset: 0 },
    { function: null, module: 'libfoo.so', offset: 0x2a3f },
    { function: 'main', module: '[unknown]', offset: 0 },
  ]);
  assert.equal(libfoo.count, 0);
  // Re-folding the parsed samples gives the same text (names are already sanitized).
  assert.equal(toFolded(back, 'bytes'), toFolded(SAMPLES, 'bytes'));
  const counts = parseFolded(toFolded(SAMPLES, 'count'), 'count');
  assert.equal(
    counts.reduce((a, s) => a + s.count, 0),
    18,
  );
});

test('parseFolded: CRLF, blank lines, names with spaces and digits', () => {
  const s = parseFolded('main;operator new 42 7\r\n\r\n\nmain;f 3\n');
  assert.deepEqual(
    s.map((x) => [x.frames.map((f) => f.function), x.bytes]),
    [
      [['operator new 42', 'main'], 7],
      [['f', 'main'], 3],
    ],
  );
});

test('parseFolded: malformed lines throw LeakscopeError(malformed) with the line number', () => {
  for (const [text, line] of [
    ['main;f 3\nmain;g\n', 2],
    ['main;f -3\n', 1],
    ['main;f 3.5\n', 1],
    ['a 1\nb 2\nmain;f\u2028g 3\n', 3],
    ['main;f 99999999999999999999\n', 1],
  ] as const) {
    assert.throws(
      () => parseFolded(text),
      (e: unknown) => e instanceof LeakscopeError && e.code === 'malformed' && e.message.includes(`line ${line}`),
      JSON.stringify(text),
    );
  }
});
