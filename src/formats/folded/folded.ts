// Folded ("collapsed") stacks, the text format of Brendan Gregg's FlameGraph tools
// (https://github.com/brendangregg/FlameGraph#2-fold-stacks): one line per call path,
//   root;caller;...;leaf VALUE\n
// Readers we must satisfy:
// - flamegraph.pl splits each line at the last run of spaces before the number.
// - speedscope (jlfwong/speedscope src/import/bg-flamegraph.ts, commit 21167e6) splits the file
//   on '\n', matches each line against /^(.*) (\d+)$/ and splits the stack on ';'. JavaScript's
//   `.` does not match '\n', '\r', U+2028 or U+2029, and VALUE must be decimal digits only.
// So frame names are sanitized: ';' -> ':' (as FlameGraph's stackcollapse-perf.pl does), every
// control character and U+2028/U+2029 -> ' ', and an empty name -> '[unknown]'. Values are
// written as non-negative integers (estimates from sampling are rounded).

import { LeakscopeError } from '../../model/errors.js';
import { frameLabel, type Frame, type StackSample } from '../../model/stacks.js';

export type FoldedWeight = 'bytes' | 'count';

/** Name shown for a path with no frames at all (the folded format cannot express zero frames). */
export const EMPTY_STACK_LABEL = '[unknown]';

/** A frame name as it can appear in a folded line (see the rules at the top of this file). */
export function sanitizeFoldedName(name: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
  const s = name.replace(/;/g, ':').replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, ' ');
  return s === '' ? '[unknown]' : s;
}

/**
 * A frame's name in a folded line, keeping call sites apart: `function:LINE` when debug info gave
 * the line, else a caller frame's `function+0xOFFSET` (its return address within the function);
 * the leaf (the allocation API) keeps its bare name. Frames without those fields: frameLabel.
 */
export function callSiteLabel(f: Frame, index: number, detail = false): string {
  const name = frameLabel(f);
  if (f.function === null) return name;
  if (f.line !== undefined)
    return detail && index > 0 && f.functionOffset !== undefined
      ? `${name}:${f.line}+0x${f.functionOffset.toString(16)}`
      : `${name}:${f.line}`;
  if (index > 0 && f.functionOffset !== undefined) return `${name}+0x${f.functionOffset.toString(16)}`;
  return name;
}

function weightOf(s: StackSample, weight: FoldedWeight, index: number): number {
  const v = weight === 'bytes' ? s.bytes : s.count;
  if (!Number.isFinite(v) || v < 0) {
    throw new LeakscopeError(
      'malformed',
      `folded: sample ${index} has ${weight} = ${v}; expected a finite number >= 0`,
    );
  }
  return v;
}

/**
 * Folded text for `samples`, one line per distinct path (paths equal after sanitizing are
 * merged and their values summed), sorted by path, root first. Paths whose rounded value is 0
 * are left out. Ends with '\n' unless empty.
 */
export function toFolded(samples: readonly StackSample[], weight: FoldedWeight): string {
  const sums = new Map<string, number>();
  // Two call sites on one source line (f(g(), g())) would share a `function:LINE` path: such
  // paths spell the line's call sites out (`function:LINE+0xOFFSET`).
  const pathOf = (s: StackSample, detail: boolean) => {
    const names = s.frames.map((f, j) => sanitizeFoldedName(callSiteLabel(f, j, detail))).reverse();
    return names.length ? names.join(';') : EMPTY_STACK_LABEL;
  };
  const sites = new Map<string, Set<string>>();
  for (const s of samples) {
    const p = pathOf(s, false);
    const id = s.frames.map((f) => `${f.module}+${f.offset}`).join(',');
    let set = sites.get(p);
    if (!set) sites.set(p, (set = new Set()));
    set.add(id);
  }
  samples.forEach((s, i) => {
    const v = weightOf(s, weight, i);
    let path = pathOf(s, false);
    if (sites.get(path)!.size > 1) path = pathOf(s, true);
    sums.set(path, (sums.get(path) ?? 0) + v);
  });
  const lines: string[] = [];
  for (const path of [...sums.keys()].sort()) {
    const v = Math.round(sums.get(path)!);
    if (v > 0) lines.push(`${path} ${v}\n`);
  }
  return lines.join('');
}

/** `module+0xOFFSET`, the label `frameLabel` gives an unsymbolized frame. */
const UNSYMBOLIZED = /^(.+)\+0x([0-9a-f]+)$/;

function frameFromName(name: string): Frame {
  const m = UNSYMBOLIZED.exec(name);
  if (m) {
    const offset = parseInt(m[2]!, 16);
    if (Number.isSafeInteger(offset)) return { function: null, module: m[1]!, offset };
  }
  return { function: name, module: '[unknown]', offset: 0 };
}

/**
 * Samples from folded text. Each non-blank line must match speedscope's rule /^(.*) (\d+)$/
 * (a trailing '\r' is dropped first); otherwise throws `LeakscopeError('malformed')` naming the
 * line. The value fills `bytes` or `count` (per `weight`); the other field is 0. Frames come back
 * leaf first; a name `module+0xOFFSET` becomes an unsymbolized frame, any other name a frame with
 * module "[unknown]" and offset 0 (folded text does not carry them). Lines are not merged.
 */
export function parseFolded(text: string, weight: FoldedWeight = 'bytes'): StackSample[] {
  const samples: StackSample[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.endsWith('\r') ? lines[i]!.slice(0, -1) : lines[i]!;
    if (line.trim() === '') continue;
    const m = /^(.*) (\d+)$/.exec(line);
    if (!m) {
      const shown = line.length > 80 ? `${line.slice(0, 80)}...` : line;
      throw new LeakscopeError(
        'malformed',
        `folded line ${i + 1}: expected "frame;...;frame VALUE", found ${JSON.stringify(shown)}`,
      );
    }
    const value = Number(m[2]!);
    if (!Number.isSafeInteger(value)) {
      throw new LeakscopeError('malformed', `folded line ${i + 1}: value ${m[2]} exceeds 2^53 - 1`);
    }
    const frames = m[1]!.split(';').map(frameFromName).reverse();
    samples.push(weight === 'bytes' ? { frames, bytes: value, count: 0 } : { frames, bytes: 0, count: value });
  }
  return samples;
}
