// pprof profiles (gzipped `perftools.profiles.Profile` protobuf, google/pprof proto/profile.proto)
// for a leak profile, shaped like a Go heap profile so `go tool pprof` and other viewers show the
// usual four views:
//   sample types  [inuse_space/bytes, inuse_objects/count, alloc_space/bytes, alloc_objects/count]
//   default       inuse_space
//   period        space/bytes = the sampling period in bytes (1 = every allocation recorded)
// Tables:
// - one Mapping per (module path, runtime mapping) when frames carry them (full path as seen from the
//   target's root, build ID, file offset, runtime addresses: go tool pprof can symbolize locally);
//   otherwise one Mapping per module (filename = module basename, no build id) as below;
// - one Location per (module, offset); `address` is the module's ELF virtual address
//   (Frame.offset), not a runtime address, so each Mapping spans [0, max offset + 1) with file
//   offset 0 and mappings of different modules overlap (the address, not the range, is what a
//   symbolizer needs: objAddr = address - memoryStart + fileOffset = vaddr);
// - one Function per (name, source file); an unsymbolized frame's Location has no Line, which
//   pprof shows as `module+0xaddress`;
// - one Sample per input sample (not merged), locations leaf first as pprof wants.
// Values are int64: estimates from sampling are rounded. alloc_* are 0 for samples that lack
// allocBytes/allocCount; the profile's comments say so.

import { gzipSync } from 'node:zlib';
import { Function as PprofFunction, Location, Mapping, Profile, Sample, StringTable, ValueType } from 'pprof-format';
import { LeakscopeError } from '../../model/errors.js';
import type { Frame, StackSample } from '../../model/stacks.js';

export interface PprofOptions {
  /** Length of the trace window in nanoseconds. */
  durationNanos: number | bigint;
  /** Start of the trace window, nanoseconds since the Unix epoch (needs bigint for exactness). */
  timeNanos: number | bigint;
  /** Byte-weighted sampling in force during the trace, if any. */
  sampling?: { periodBytes: number };
}

/** Sample value order in the profile. */
export const PPROF_SAMPLE_TYPES = [
  ['inuse_space', 'bytes'],
  ['inuse_objects', 'count'],
  ['alloc_space', 'bytes'],
  ['alloc_objects', 'count'],
] as const;

function int(v: number, what: string, index: number): number {
  if (!Number.isFinite(v) || v < 0) {
    throw new LeakscopeError('malformed', `pprof: sample ${index} has ${what} = ${v}; expected a finite number >= 0`);
  }
  return Math.round(v);
}

function nanos(v: number | bigint, what: string): bigint {
  if (typeof v === 'bigint') return v;
  if (!Number.isFinite(v)) throw new LeakscopeError('usage', `pprof: ${what} = ${v} is not a number of nanoseconds`);
  return BigInt(Math.round(v));
}

/** The pprof protobuf of `samples`, gzip-compressed (what `go tool pprof` reads). */
export function toPprof(samples: readonly StackSample[], opts: PprofOptions): Uint8Array {
  const strings = new StringTable();
  const mappings: Mapping[] = [];
  const mappingByModule = new Map<
    string,
    { mapping: Mapping; maxOffset: number; allSymbolized: boolean; real: boolean; anyLine: boolean; allLines: boolean }
  >();
  const locations: Location[] = [];
  const locationByKey = new Map<string, number>();
  const functions: PprofFunction[] = [];
  const functionByKey = new Map<string, number>();
  const out: Sample[] = [];
  let anyAlloc = false;

  samples.forEach((s, index) => {
    const locationId: number[] = [];
    // Inlined frames (inlined: true) share the Location of the frame they are inlined into: one
    // Line each, innermost first, the caller's last (profile.proto Location.line).
    for (let fi = 0; fi < s.frames.length; fi++) {
      const group: Frame[] = [s.frames[fi]!];
      while (s.frames[fi]!.inlined && fi + 1 < s.frames.length) group.push(s.frames[++fi]!);
      const f = s.frames[fi]!;
      if (!Number.isSafeInteger(f.offset) || f.offset < 0) {
        throw new LeakscopeError(
          'malformed',
          `pprof: sample ${index} has a frame in ${f.module} at offset ${f.offset}`,
        );
      }
      // With the runtime mapping known: a Mapping per (path, start) as perf's would be, the full path
      // as seen from the target's root, build ID and file offset, and runtime addresses, so that
      // `go tool pprof` can symbolize what leakscope could not. Otherwise the module-relative scheme.
      const real = f.mapping && f.address !== undefined && f.modulePath !== undefined;
      const mkey = real ? `${f.modulePath}\0${f.mapping!.start}` : f.module;
      let m = mappingByModule.get(mkey);
      if (!m) {
        const mapping = real
          ? new Mapping({
              id: mappings.length + 1,
              filename: strings.dedup(f.modulePath!),
              buildId: strings.dedup(f.buildId ?? ''),
              fileOffset: f.mapping!.fileOffset,
              memoryStart: f.mapping!.start,
              memoryLimit: f.mapping!.end,
            })
          : new Mapping({ id: mappings.length + 1, filename: strings.dedup(f.module), fileOffset: 0, memoryStart: 0 });
        mappings.push(mapping);
        m = { mapping, maxOffset: 0, allSymbolized: true, real: !!real, anyLine: false, allLines: true };
        mappingByModule.set(mkey, m);
      }
      const key = `${mkey}\0${real ? f.address : f.offset}\0${group.map((g) => `${g.function}:${g.line ?? ''}`).join('\0')}`;
      let id = locationByKey.get(key);
      if (id === undefined) {
        id = locations.length + 1;
        const line = [];
        for (const g of group) {
          if (g.function === null) {
            m.allSymbolized = false;
            continue;
          }
          const fkey = `${g.function}\0${g.file ?? ''}`;
          let functionId = functionByKey.get(fkey);
          if (functionId === undefined) {
            functionId = functions.length + 1;
            const name = strings.dedup(g.function);
            functions.push(
              new PprofFunction({ id: functionId, name, systemName: name, filename: strings.dedup(g.file ?? '') }),
            );
            functionByKey.set(fkey, functionId);
          }
          line.push({ functionId, line: g.line ?? 0 });
          if (g.line !== undefined) m.anyLine = true;
          else m.allLines = false;
        }
        locations.push(new Location({ id, mappingId: m.mapping.id, address: m.real ? f.address! : f.offset, line }));
        locationByKey.set(key, id);
        m.maxOffset = Math.max(m.maxOffset, f.offset);
      }
      locationId.push(id);
    }
    if (s.allocBytes !== undefined || s.allocCount !== undefined) anyAlloc = true;
    out.push(
      new Sample({
        locationId,
        value: [
          int(s.bytes, 'bytes', index),
          int(s.count, 'count', index),
          int(s.allocBytes ?? 0, 'allocBytes', index),
          int(s.allocCount ?? 0, 'allocCount', index),
        ],
      }),
    );
  });
  for (const { mapping, maxOffset, allSymbolized, real, anyLine, allLines } of mappingByModule.values()) {
    if (!real) mapping.memoryLimit = maxOffset + 1;
    mapping.hasFunctions = allSymbolized;
    // File names and line numbers only where debug info gave them for every location.
    mapping.hasFilenames = allSymbolized && anyLine && allLines;
    mapping.hasLineNumbers = allSymbolized && anyLine && allLines;
  }

  const sampleType = PPROF_SAMPLE_TYPES.map(
    ([type, unit]) => new ValueType({ type: strings.dedup(type), unit: strings.dedup(unit) }),
  );
  const anyReal = [...mappingByModule.values()].some((m) => m.real);
  const comment = [
    strings.dedup(
      anyReal
        ? 'leakscope: location addresses are runtime addresses in the target'
        : "leakscope: location addresses are ELF virtual addresses within each mapping's module",
    ),
  ];
  if (!anyAlloc) comment.push(strings.dedup('leakscope: alloc_space/alloc_objects were not recorded (all 0)'));
  const periodBytes = opts.sampling?.periodBytes ?? 1;
  if (!Number.isSafeInteger(periodBytes) || periodBytes < 1) {
    throw new LeakscopeError('usage', `pprof: sampling period ${periodBytes} bytes; expected an integer >= 1`);
  }
  const profile = new Profile({
    sampleType,
    sample: out,
    mapping: mappings,
    location: locations,
    function: functions,
    stringTable: strings,
    timeNanos: nanos(opts.timeNanos, 'timeNanos'),
    durationNanos: nanos(opts.durationNanos, 'durationNanos'),
    periodType: new ValueType({ type: strings.dedup('space'), unit: strings.dedup('bytes') }),
    period: periodBytes,
    comment,
    defaultSampleType: strings.dedup('inuse_space'),
  });
  return gzipSync(profile.encode());
}
