// `--baseline FILE` against hostile files: a few hundred documents mutated from a valid
// `leakscope.heap/1` (deterministic seed) are read with readBaselineCensus, then compared and
// rendered as `heap --baseline` and `analyze --baseline` do. Each run either succeeds or ends in
// exit 8 (malformed) with a one-line message; never an internal error (exit 1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pickGrowth } from '../analysis/evidence.js';
import { encodeHeap } from '../contract/heap.js';
import { sampleCensus } from '../contract/test-samples.js';
import { compareCensus } from '../glibc/compare.js';
import { EXIT_CODES, isLeakscopeError } from '../model/errors.js';
import { renderHeapTable } from '../report/heap-table.js';
import { readBaselineCensus } from './commands.js';

/** mulberry32: a small deterministic PRNG, uniform in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const KiB = 1024;
const current = sampleCensus(
  [
    [32, 500],
    [64, 200],
    [1024, 90],
    [256 * KiB, 40],
  ],
  { pid: 7 },
);
const valid = JSON.parse(
  JSON.stringify(
    encodeHeap(
      sampleCensus([
        [32, 480],
        [64, 210],
        [1024, 80],
        [256 * KiB, 12],
      ]),
    ),
  ),
);

const HOSTILE_VALUES: unknown[] = [
  -1,
  -4096,
  1.5,
  2 ** 53,
  1e308,
  -1e308,
  0,
  '12',
  '',
  'leakscope.heap/1',
  null,
  true,
  false,
  [],
  [1, 2],
  {},
  { schema: 'leakscope.heap/1' },
  '\u001b[31m',
  'x'.repeat(300),
];

/** Every container (object or array) in a document, with the keys inside it. */
function containers(
  v: unknown,
  out: Array<Record<string, unknown> | unknown[]> = [],
): Array<Record<string, unknown> | unknown[]> {
  if (v !== null && typeof v === 'object') {
    out.push(v as Record<string, unknown>);
    for (const x of Object.values(v)) containers(x, out);
  }
  return out;
}

function mutate(doc: unknown, rnd: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const d = structuredClone(doc);
  const n = 1 + Math.floor(rnd() * 3);
  for (let i = 0; i < n; i++) {
    const c = pick(containers(d));
    const keys = Object.keys(c);
    if (!keys.length) continue;
    const k = pick(keys);
    const op = rnd();
    if (op < 0.55) (c as Record<string, unknown>)[k] = pick(HOSTILE_VALUES);
    else if (op < 0.7) {
      if (Array.isArray(c)) c.length = Math.floor(rnd() * c.length);
      else delete (c as Record<string, unknown>)[k];
    }
    // An own key named __proto__, as JSON.parse makes one (an assignment would set the prototype).
    else if (op < 0.8)
      Object.defineProperty(c, '__proto__', {
        value: { polluted: true },
        enumerable: true,
        configurable: true,
        writable: true,
      });
    else if (op < 0.9) {
      const v = (c as Record<string, unknown>)[k];
      if (typeof v === 'number') (c as Record<string, unknown>)[k] = v * -3 + 1;
    } else (c as Record<string, unknown>)[k] = structuredClone(pick(containers(doc)));
  }
  let text = JSON.stringify(d);
  // Some documents are also damaged as text: cut short, or a byte replaced.
  const t = rnd();
  if (t < 0.1) text = text.slice(0, Math.floor(rnd() * text.length));
  else if (t < 0.2) {
    const at = Math.floor(rnd() * text.length);
    text = text.slice(0, at) + pick(['"', '}', ']', ',', '\u0000', '9', '-']) + text.slice(at + 1);
  }
  return text;
}

test('fuzzed --baseline documents: exit 8 (malformed) or a valid comparison, never an internal error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-fuzz-'));
  const rnd = prng(0x1eac5c0e);
  let malformed = 0,
    accepted = 0;
  try {
    const docs = [JSON.stringify(valid), JSON.stringify({ schema: 'leakscope.heap/1' })];
    for (let i = 0; i < 400; i++) docs.push(mutate(valid, rnd));
    docs.forEach((text, i) => {
      const file = join(dir, `baseline-${i}.json`);
      writeFileSync(file, text);
      try {
        const baseline = readBaselineCensus(file);
        const comparison = compareCensus(baseline, current);
        renderHeapTable(encodeHeap(current, { comparison }));
        pickGrowth([{ kind: 'baseline-file', label: `baseline ${baseline.target}`, cmp: comparison }], current);
        accepted++;
      } catch (e) {
        assert.ok(
          isLeakscopeError(e),
          `document ${i} ended in an internal error: ${(e as Error)?.stack}\n${text.slice(0, 400)}`,
        );
        assert.equal(EXIT_CODES[e.code], 8, `document ${i}: exit ${EXIT_CODES[e.code]} (${e.message})`);
        assert.ok(!e.message.includes('\n'), 'one line');
        assert.ok(e.message.startsWith(file), `names the file: ${e.message}`);
        malformed++;
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined, 'no prototype pollution');
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.ok(malformed > 300, `${malformed} malformed`);
  assert.ok(accepted >= 1, `${accepted} accepted (the valid document at least)`);
});

test('the schema-only baseline names the missing field and exits 8', () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-baseline-'));
  try {
    const file = join(dir, 'b.json');
    writeFileSync(file, '{"schema":"leakscope.heap/1"}');
    assert.throws(
      () => readBaselineCensus(file),
      (e: unknown) =>
        isLeakscopeError(e) &&
        EXIT_CODES[e.code] === 8 &&
        e.message === `${file}: $.target: expected a string, got nothing (field missing)`,
    );
    writeFileSync(file, JSON.stringify({ ...valid, totals: { ...valid.totals, inUseChunks: '12' } }));
    assert.throws(
      () => readBaselineCensus(file),
      (e: unknown) => isLeakscopeError(e) && e.code === 'malformed' && e.message.includes('$.totals.inUseChunks'),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
