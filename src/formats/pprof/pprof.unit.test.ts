import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gunzipSync } from 'node:zlib';
import { Profile } from 'pprof-format';
import { toPprof } from './pprof.js';
import { LeakscopeError } from '../../model/errors.js';
import type { Frame, StackSample } from '../../model/stacks.js';

const malloc: Frame = { function: 'malloc', module: 'libc.so.6', offset: 0x9a0f0 };
const calloc: Frame = { function: 'calloc', module: 'libc.so.6', offset: 0x9b3c0 };
const ngxAlloc: Frame = {
  function: 'ngx_alloc',
  module: 'nginx',
  offset: 0x2f1a4,
  file: 'src/os/unix/ngx_alloc.c',
  line: 22,
};
const ngxPalloc: Frame = { function: 'ngx_palloc', module: 'nginx', offset: 0x1c8e0 };
const main: Frame = { function: 'main', module: 'nginx', offset: 0x1b100 };
const raw: Frame = { function: null, module: 'libfoo.so', offset: 0x2a3f };
const hostile: Frame = { function: '<img src=x onerror=alert(1)>&"\'\u2028', module: 'libevil.so', offset: 0x10 };

// Leaf first. Ground truth by hand:
//   inuse_space 4096 + 1024 + 2048 + 512 = 7680      inuse_objects 4 + 1 + 2 + 8 = 15
//   alloc_space 8192 + 0 + 4096 + 512 = 12800        alloc_objects 10 + 0 + 5 + 8 = 23
const SAMPLES: StackSample[] = [
  { frames: [malloc, ngxAlloc, ngxPalloc, main], bytes: 4096, count: 4, allocBytes: 8192, allocCount: 10 },
  { frames: [malloc, ngxAlloc, ngxPalloc, main], bytes: 1024, count: 1 },
  { frames: [malloc, raw, main], bytes: 2048, count: 2, allocBytes: 4096, allocCount: 5 },
  { frames: [calloc, hostile, main], bytes: 512, count: 8, allocBytes: 512, allocCount: 8 },
];

interface Decoded {
  profile: Profile;
  str: (i: unknown) => string;
  samples: Array<{ frames: Frame[]; values: number[] }>;
}

function decode(bytes: Uint8Array): Decoded {
  const profile = Profile.decode(gunzipSync(bytes));
  const str = (i: unknown) => profile.stringTable.strings[Number(i)]!;
  const mappings = new Map(profile.mapping.map((m) => [Number(m.id), m]));
  const functions = new Map(profile.function.map((f) => [Number(f.id), f]));
  const locations = new Map(profile.location.map((l) => [Number(l.id), l]));
  const samples = profile.sample.map((s) => ({
    values: s.value.map(Number),
    frames: s.locationId.map((id): Frame => {
      const loc = locations.get(Number(id))!;
      const module = str(mappings.get(Number(loc.mappingId))!.filename);
      const line = loc.line[0];
      if (!line) return { function: null, module, offset: Number(loc.address) };
      const fn = functions.get(Number(line.functionId))!;
      const frame: Frame = { function: str(fn.name), module, offset: Number(loc.address) };
      if (str(fn.filename) !== '') frame.file = str(fn.filename);
      if (Number(line.line) !== 0) frame.line = Number(line.line);
      return frame;
    }),
  }));
  return { profile, str, samples };
}

test('toPprof: gzip, sample types, defaults, period, time', () => {
  const bytes = toPprof(SAMPLES, {
    durationNanos: 30e9,
    timeNanos: 1_700_000_000_123_456_789n,
    sampling: { periodBytes: 524288 },
  });
  assert.deepEqual([...bytes.subarray(0, 2)], [0x1f, 0x8b]);
  const { profile, str } = decode(bytes);
  assert.deepEqual(
    profile.sampleType.map((t) => `${str(t.type)}/${str(t.unit)}`),
    ['inuse_space/bytes', 'inuse_objects/count', 'alloc_space/bytes', 'alloc_objects/count'],
  );
  assert.equal(str(profile.defaultSampleType), 'inuse_space');
  assert.equal(`${str(profile.periodType!.type)}/${str(profile.periodType!.unit)}`, 'space/bytes');
  assert.equal(Number(profile.period), 524288);
  assert.equal(BigInt(profile.timeNanos), 1_700_000_000_123_456_789n);
  assert.equal(Number(profile.durationNanos), 30e9);
});

test('toPprof: totals equal the input totals and stacks round-trip', () => {
  const { samples } = decode(toPprof(SAMPLES, { durationNanos: 1, timeNanos: 0 }));
  const totals = [0, 1, 2, 3].map((i) => samples.reduce((a, s) => a + s.values[i]!, 0));
  assert.deepEqual(totals, [7680, 15, 12800, 23]);
  assert.deepEqual(
    samples.map((s) => s.frames),
    SAMPLES.map((s) => s.frames),
  );
  assert.deepEqual(
    samples.map((s) => s.values),
    [
      [4096, 4, 8192, 10],
      [1024, 1, 0, 0],
      [2048, 2, 4096, 5],
      [512, 8, 512, 8],
    ],
  );
});

test('toPprof: one Location per (module, offset), one Mapping per module, one Function per name', () => {
  const { profile, str } = decode(toPprof(SAMPLES, { durationNanos: 1, timeNanos: 0 }));
  // Distinct (module, offset): malloc, calloc, ngx_alloc, ngx_palloc, main, libfoo+0x2a3f, hostile = 7.
  assert.equal(profile.location.length, 7);
  assert.deepEqual(profile.mapping.map((m) => str(m.filename)).sort(), [
    'libc.so.6',
    'libevil.so',
    'libfoo.so',
    'nginx',
  ]);
  assert.deepEqual(
    profile.function.map((f) => str(f.name)).sort(),
    [hostile.function, 'calloc', 'main', 'malloc', 'ngx_alloc', 'ngx_palloc'].sort(),
  );
  const ids = profile.location.map((l) => Number(l.id));
  assert.deepEqual(ids, [1, 2, 3, 4, 5, 6, 7]);
  const byName = new Map(profile.mapping.map((m) => [str(m.filename), m]));
  assert.equal(byName.get('libfoo.so')!.hasFunctions, false);
  assert.equal(byName.get('nginx')!.hasFunctions, true);
  // Each location's address lies in its mapping's range.
  for (const l of profile.location) {
    const m = profile.mapping.find((x) => x.id === l.mappingId)!;
    assert.ok(Number(l.address) >= Number(m.memoryStart) && Number(l.address) < Number(m.memoryLimit));
  }
});

test('toPprof: rounding, missing alloc values commented, empty profile, bad input', () => {
  const { samples, profile, str } = decode(
    toPprof([{ frames: [main], bytes: 10.6, count: 0.4 }], { durationNanos: 1, timeNanos: 0 }),
  );
  assert.deepEqual(samples[0]!.values, [11, 0, 0, 0]);
  assert.ok(profile.comment.map(str).some((c) => c.includes('alloc_space/alloc_objects were not recorded')));
  assert.equal(Number(profile.period), 1);
  const empty = decode(toPprof([], { durationNanos: 1, timeNanos: 0 }));
  assert.equal(empty.profile.sample.length, 0);
  assert.equal(empty.profile.sampleType.length, 4);
  assert.throws(
    () => toPprof([{ frames: [main], bytes: -1, count: 0 }], { durationNanos: 1, timeNanos: 0 }),
    LeakscopeError,
  );
  assert.throws(() => toPprof([], { durationNanos: 1, timeNanos: 0, sampling: { periodBytes: 0 } }), LeakscopeError);
});
