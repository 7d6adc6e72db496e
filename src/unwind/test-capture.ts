// Test support (not shipped API): runs test/fixtures/c/unwind-capture.c's binary and reads back what it
// captured, builds modules from its /proc/self/maps, and symbolizes pcs with the ELF files.
// Maps parsing and load-bias arithmetic here are the minimum the tests need (the target layer owns
// the real ones).

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, basename } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Mapping, Module } from '../model/index.js';
import { loadElf, type ElfFile } from '../formats/elf/index.js';
import type { X86Registers } from './unwinder.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const FIXTURE_BIN = join(REPO, 'test/fixtures/build/unwind-capture');
export const FIXTURE_SRC = join(REPO, 'test/fixtures/c/unwind-capture.c');

export interface Capture {
  regs: X86Registers;
  stack: Uint8Array;
  stackAddr: number;
  stackEnd: number;
  chain: string[];
  backtrace: number[];
}

export interface CaptureRun {
  dir: string;
  maps: Mapping[];
  main: Capture;
  thread: Capture;
  signal: Capture;
}

/** Builds the fixture when missing (make -C test/fixtures) and runs it into a fresh directory. */
export function runCaptureFixture(bin = FIXTURE_BIN): CaptureRun {
  if (bin === FIXTURE_BIN && !existsSync(bin))
    execFileSync('make', ['-s', '-C', join(REPO, 'test/fixtures')], { stdio: 'inherit' });
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-unwind-'));
  execFileSync(bin, [dir], { stdio: 'inherit' });
  return {
    dir,
    maps: parseMaps(readFileSync(join(dir, 'maps'), 'utf8')),
    main: readCapture(dir, 'main'),
    thread: readCapture(dir, 'thread'),
    signal: readCapture(dir, 'signal'),
  };
}

function hex(s: string): number {
  return Number(BigInt(s));
}

export function readCapture(dir: string, name: string): Capture {
  const lines = readFileSync(join(dir, `${name}.txt`), 'utf8').split('\n');
  const field = (k: string): string[] => {
    const l = lines.find((x) => x.startsWith(k + ' ') || x === k);
    if (l === undefined) throw new Error(`${name}.txt: no "${k}" line`);
    return l.split(' ').slice(1).filter(Boolean);
  };
  const regs: Record<string, number> = {};
  for (const kv of field('regs')) {
    const [k, v] = kv.split('=');
    regs[k!] = hex(v!);
  }
  const st = field('stack');
  const stack = new Uint8Array(readFileSync(join(dir, `${name}.stack`)));
  if (stack.byteLength !== Number(st[1]))
    throw new Error(`${name}.stack: ${stack.byteLength} bytes, expected ${st[1]}`);
  return {
    regs: regs as unknown as X86Registers,
    stack,
    stackAddr: hex(st[0]!),
    stackEnd: hex(st[3]!),
    chain: field('chain'),
    backtrace: field('backtrace').map(hex),
  };
}

export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S+)\s+([0-9a-f]+)\s+(\S+)\s+(\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    out.push({
      start: parseInt(m[1]!, 16),
      end: parseInt(m[2]!, 16),
      perms: m[3]!,
      offset: parseInt(m[4]!, 16),
      dev: m[5]!,
      inode: Number(m[6]),
      path: m[7]!.trim(),
    });
  }
  return out;
}

/** Modules of file-backed mappings; loadBias = start of the offset-0 mapping - first PT_LOAD vaddr (page-aligned). */
export function modulesFromMaps(maps: Mapping[]): Module[] {
  const byPath = new Map<string, Mapping[]>();
  for (const m of maps) {
    if (!m.path.startsWith('/') || m.inode === 0) continue;
    const l = byPath.get(m.path) ?? [];
    l.push(m);
    byPath.set(m.path, l);
  }
  const mods: Module[] = [];
  for (const [path, ms] of byPath) {
    let elf: ElfFile;
    try {
      elf = loadElf(path);
    } catch {
      continue;
    }
    const first = ms.find((m) => m.offset === 0) ?? ms[0]!;
    const base = first.start - first.offset;
    mods.push({ path, hostPath: path, base, loadBias: base - elf.firstLoadVaddr, mappings: ms, buildId: elf.buildId });
  }
  return mods;
}

/** The separate debug file of an ELF by build-id (/usr/lib/debug/.build-id/xx/rest.debug), if installed. */
export function debugFileByBuildId(buildId: string | undefined): string | undefined {
  if (!buildId) return undefined;
  const p = `/usr/lib/debug/.build-id/${buildId.slice(0, 2)}/${buildId.slice(2)}.debug`;
  return existsSync(p) ? p : undefined;
}

/** Symbolizes runtime pcs: { module basename, function name (debug file's .symtab preferred) }. */
export function symbolizer(mods: Module[]): (pc: number) => { module: string; name: string | undefined } {
  const symFiles = new Map<string, ElfFile[]>();
  return (pc: number) => {
    const m = mods.find((x) => x.mappings.some((mp) => pc >= mp.start && pc < mp.end));
    if (!m) return { module: '[unknown]', name: undefined };
    let files = symFiles.get(m.path);
    if (!files) {
      files = [];
      const dbg = debugFileByBuildId(m.buildId);
      if (dbg) files.push(loadElf(dbg));
      files.push(loadElf(m.hostPath));
      symFiles.set(m.path, files);
    }
    for (const f of files) {
      const s = f.symbolAt(pc - m.loadBias);
      if (s) return { module: basename(m.path), name: s.name.split('@')[0] };
    }
    return { module: basename(m.path), name: undefined };
  };
}

/** Matches names against a chain pattern where '*' stands for one or more frames in libc.so.6. */
export function matchChain(frames: Array<{ module: string; name: string | undefined }>, pattern: string[]): boolean {
  const go = (i: number, j: number): boolean => {
    if (j === pattern.length) return i === frames.length;
    if (pattern[j] === '*') {
      let k = i;
      while (k < frames.length && frames[k]!.module.startsWith('libc.so')) {
        k++;
        if (go(k, j + 1)) return true;
      }
      return false;
    }
    return i < frames.length && frames[i]!.name === pattern[j] && go(i + 1, j + 1);
  };
  return go(0, 0);
}
