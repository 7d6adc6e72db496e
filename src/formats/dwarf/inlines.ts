// Inlined calls from .debug_info: every DW_TAG_inlined_subroutine (DWARF 5 section 3.3.8.2) with
// its pc ranges (DW_AT_low_pc / DW_AT_high_pc, or DW_AT_ranges into .debug_ranges (DWARF 2-4,
// section 2.17.3) or .debug_rnglists (DWARF 5, section 2.17.3 / 7.25)), the function it inlines
// (DW_AT_abstract_origin, followed through DW_AT_specification / DW_AT_abstract_origin to a name)
// and where it was called (DW_AT_call_file: a file number of the unit's line table, DW_AT_call_line).
// Indexed under the concrete DW_TAG_subprogram holding it, so a lookup is a binary search over
// functions and a scan of one function's inlined calls. Units are read when first needed: a first
// pass reads only each unit's own pc ranges; a lookup parses the units holding its pc (and the unit
// of an origin DIE it names), so a large debug file (libc's) costs only the units a stack touches. Forms needing .debug_addr / .debug_str_offsets
// (addrx, strx, rnglistx: split DWARF) leave the entry out. Pure over ElfFile bytes; malformed units
// are skipped (what was read before stays).

import { ByteReader } from '../../binary/byte-reader.js';
import type { ElfFile } from '../elf/index.js';
import type { Abbrev } from './info.js';
import { debugSection, parseAbbrevs, readForm } from './info.js';

const TAG_COMPILE_UNIT = 0x11,
  TAG_PARTIAL_UNIT = 0x3c,
  TAG_SUBPROGRAM = 0x2e,
  TAG_INLINED = 0x1d;
const AT_NAME = 0x03,
  AT_STMT_LIST = 0x10,
  AT_LOW_PC = 0x11,
  AT_HIGH_PC = 0x12,
  AT_ABSTRACT_ORIGIN = 0x31,
  AT_SPECIFICATION = 0x47,
  AT_RANGES = 0x55,
  AT_CALL_FILE = 0x58,
  AT_CALL_LINE = 0x59;
const FORM_ADDR = 0x01,
  FORM_STRP = 0x0e,
  FORM_LINE_STRP = 0x1f;

/** One inlined call: the pc ranges of the inlined body, what it inlines, where it was called. */
export interface InlinedCall {
  ranges: Array<[number, number]>;
  /** DIE offset of the inlined function's abstract DIE (named through `InlineIndex.nameOf`). */
  origin: number;
  callFile: string;
  callLine: number;
  /** Index (in the same function's list) of the inlined call holding this one, or -1. */
  parent: number;
}

export interface InlineIndex {
  /** Concrete functions' pc ranges of the units holding `pc` (parsed now if not yet), sorted by start, each with the inlined calls inside it. */
  functionsAt(pc: number): Array<{ lo: number; hi: number; calls: InlinedCall[] }>;
  nameOf(origin: number): string | undefined;
}

interface Unit {
  cu: number;
  end: number;
  /** The unit DIE's pc ranges; undefined when it has none (then it is parsed for any pc). */
  ranges?: Array<[number, number]>;
  parsed: boolean;
}

/** Caps against hostile files: DIE nesting and the origin chain followed for a name. */
const MAX_DEPTH = 512,
  MAX_ORIGIN_HOPS = 8;

/** Parses .debug_info for inlined calls. `lineFiles`: file tables by .debug_line unit offset (line.ts). */
export function parseInlines(elf: ElfFile, lineFiles: ReadonlyMap<number, string[]>): InlineIndex {
  const functions: ReturnType<InlineIndex['functionsAt']> = [];
  // Subprogram DIE -> its name: a string, or where it lies (strp / line_strp offset), decoded on lookup.
  const names = new Map<number, string | { sec: Uint8Array | undefined; off: number }>();
  const links = new Map<number, number>(); // DIE -> the DIE its name comes from
  const info = debugSection(elf, '.debug_info');
  const abbrevBytes = debugSection(elf, '.debug_abbrev');
  const units: Unit[] = [];
  let sorted = true;
  const index: InlineIndex = {
    functionsAt(pc: number) {
      for (const u of units) {
        if (u.parsed || (u.ranges && !u.ranges.some(([a, b]) => pc >= a && pc < b))) continue;
        parseUnitOnce(u);
      }
      if (!sorted) {
        functions.sort((a, b) => a.lo - b.lo);
        sorted = true;
      }
      return functions;
    },
    nameOf(origin: number): string | undefined {
      let o: number | undefined = origin;
      for (let i = 0; o !== undefined && i < MAX_ORIGIN_HOPS; i++) {
        if (!names.has(o) && !links.has(o)) {
          // a DIE of another unit (DW_FORM_ref_addr): read that unit
          const at = o;
          const u = units.find((x) => at >= x.cu && at < x.end);
          if (u && !u.parsed) parseUnitOnce(u);
        }
        const n = names.get(o);
        if (typeof n === 'string') return n;
        if (n !== undefined) return strAt(n.sec, n.off);
        o = links.get(o);
      }
      return undefined;
    },
  };
  if (!info || !abbrevBytes) return index;
  const str = debugSection(elf, '.debug_str');
  const lineStr = debugSection(elf, '.debug_line_str');
  const rangesSec = debugSection(elf, '.debug_ranges');
  const rnglists = debugSection(elf, '.debug_rnglists');
  const r = new ByteReader(info, { label: `${elf.label} .debug_info` });
  const ar = new ByteReader(abbrevBytes, { label: `${elf.label} .debug_abbrev` });
  const abbrevCache = new Map<number, Map<number, Abbrev>>();
  function strAt(sec: Uint8Array | undefined, off: number): string | undefined {
    if (!sec || off >= sec.byteLength) return undefined;
    try {
      return new ByteReader(sec).cstringAt(off, 4096);
    } catch {
      return undefined;
    }
  }

  let cu = 0;
  while (cu + 11 <= info.byteLength) {
    const unitLength = r.u32At(cu);
    if (unitLength === 0xffffffff || unitLength < 7) break; // 64-bit DWARF: not produced for x86-64 user code
    const end = Math.min(cu + 4 + unitLength, info.byteLength);
    const u: Unit = { cu, end, parsed: false };
    try {
      parseUnit(u, true);
    } catch {
      u.parsed = true; // malformed unit header: never read it
    }
    units.push(u);
    cu = end;
  }
  return index;

  function parseUnitOnce(u: Unit): void {
    u.parsed = true;
    sorted = false;
    try {
      parseUnit(u, false);
    } catch {
      /* malformed unit: what was read before stays */
    }
  }

  /** `unitDieOnly`: read the unit DIE's pc ranges into `u.ranges` and stop. */
  function parseUnit(u: Unit, unitDieOnly: boolean): void {
    const { cu, end } = u;
    const version = r.u16At(cu + 4);
    let abbrevOff: number, addrSize: number, p: number;
    if (version >= 5) {
      const unitType = r.u8At(cu + 6);
      addrSize = r.u8At(cu + 7);
      abbrevOff = r.u32At(cu + 8);
      p = cu + 12;
      if (unitType !== 1 && unitType !== 3) return; // only compile / partial units
    } else if (version >= 2) {
      abbrevOff = r.u32At(cu + 6);
      addrSize = r.u8At(cu + 10);
      p = cu + 11;
    } else return;
    let abbrevs = abbrevCache.get(abbrevOff);
    if (!abbrevs && unitDieOnly) {
      // the unit DIE's entry alone (whole tables are read for the units a lookup parses)
      const first = new ByteReader(info!, { pos: p }).uleb();
      abbrevs = parseAbbrevs(ar, abbrevOff, first);
    } else if (!abbrevs) {
      abbrevs = parseAbbrevs(ar, abbrevOff);
      abbrevCache.set(abbrevOff, abbrevs);
    }
    let files: string[] = [];
    let cuBase = 0;
    // Parents: the concrete function (index into functions' calls) and the inlined call enclosing each level.
    const stack: Array<{ fn: InlinedCall[] | undefined; inl: number }> = [];
    r.seek(p);
    while (r.pos < end) {
      const dieOff = r.pos;
      const code = r.uleb();
      if (code === 0) {
        stack.pop();
        continue;
      }
      const ab = abbrevs.get(code);
      if (!ab) return; // unknown abbreviation: the rest of the unit cannot be read
      let name: string | { sec: Uint8Array | undefined; off: number } | undefined,
        low: number | undefined,
        high: number | undefined,
        highIsAddr = false,
        ranges: number | undefined,
        origin: number | undefined,
        spec: number | undefined,
        callFile: number | undefined,
        callLine: number | undefined,
        stmtList: number | undefined;
      for (const [at, form, ic] of ab.attrs) {
        const v = readForm(r, form, ic, addrSize, version, cu);
        if (typeof v !== 'number' && typeof v !== 'string') continue;
        switch (at) {
          case AT_NAME:
            name =
              typeof v === 'string'
                ? v
                : form === FORM_STRP
                  ? { sec: str, off: v }
                  : form === FORM_LINE_STRP
                    ? { sec: lineStr, off: v }
                    : undefined;
            break;
          case AT_LOW_PC:
            if (form === FORM_ADDR && typeof v === 'number') low = v;
            break;
          case AT_HIGH_PC:
            if (typeof v === 'number') {
              high = v;
              highIsAddr = form === FORM_ADDR;
            }
            break;
          case AT_RANGES:
            if (typeof v === 'number' && form === 0x17 /* sec_offset */) ranges = v;
            else if (typeof v === 'number' && version < 5 && (form === 0x06 || form === 0x07)) ranges = v; // data4/8 in DWARF 2-3
            break;
          case AT_ABSTRACT_ORIGIN:
            if (typeof v === 'number') origin = v;
            break;
          case AT_SPECIFICATION:
            if (typeof v === 'number') spec = v;
            break;
          case AT_CALL_FILE:
            if (typeof v === 'number') callFile = v;
            break;
          case AT_CALL_LINE:
            if (typeof v === 'number') callLine = v;
            break;
          case AT_STMT_LIST:
            if (typeof v === 'number') stmtList = v;
            break;
        }
      }
      const tag = ab.tag;
      // Only functions are named (an inlined call's origin is a subprogram DIE).
      if (tag === TAG_SUBPROGRAM) {
        if (name !== undefined) names.set(dieOff, name);
        else if (origin !== undefined || spec !== undefined) links.set(dieOff, (origin ?? spec)!);
      }

      const pcRanges = (): Array<[number, number]> => {
        if (low !== undefined && high !== undefined) {
          const hi = highIsAddr ? high : low + high;
          return hi > low ? [[low, hi]] : [];
        }
        if (ranges !== undefined) return version >= 5 ? rnglistAt(ranges, cuBase) : debugRangesAt(ranges, cuBase);
        return [];
      };

      const parent = stack.length ? stack[stack.length - 1]! : { fn: undefined, inl: -1 };
      let here = parent;
      if (tag === TAG_COMPILE_UNIT || tag === TAG_PARTIAL_UNIT) {
        cuBase = low ?? 0;
        files = stmtList !== undefined ? (lineFiles.get(stmtList) ?? []) : [];
        if (unitDieOnly) {
          const rs = pcRanges();
          if (rs.length) u.ranges = rs;
          return;
        }
      } else if (tag === TAG_SUBPROGRAM) {
        const rs = pcRanges();
        if (rs.length) {
          const calls: InlinedCall[] = [];
          for (const [lo, hi] of rs) functions.push({ lo, hi, calls });
          here = { fn: calls, inl: -1 };
        } else here = { fn: undefined, inl: -1 };
      } else if (tag === TAG_INLINED && parent.fn && origin !== undefined) {
        const rs = pcRanges();
        if (rs.length) {
          parent.fn.push({
            ranges: rs,
            origin,
            callFile: callFile !== undefined ? (files[callFile] ?? '') : '',
            callLine: callLine ?? 0,
            parent: parent.inl,
          });
          here = { fn: parent.fn, inl: parent.fn.length - 1 };
        }
      }
      if (ab.children) {
        if (stack.length >= MAX_DEPTH) return;
        stack.push(here);
      }
    }
  }

  /** DWARF 2-4 .debug_ranges list: (begin, end) pairs relative to the base; (max, base) sets it; (0, 0) ends. */
  function debugRangesAt(off: number, base: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    if (!rangesSec) return out;
    const rr = new ByteReader(rangesSec, { label: `${elf.label} .debug_ranges` });
    for (let p = off; p + 16 <= rangesSec.byteLength && out.length < 4096; p += 16) {
      const a = rr.u64nAt(p),
        b = rr.u64nAt(p + 8);
      if (a === 0n && b === 0n) break;
      if (a === 0xffffffffffffffffn) {
        base = Number(b);
        continue;
      }
      if (b > a) out.push([base + Number(a), base + Number(b)]);
    }
    return out;
  }

  /** DWARF 5 .debug_rnglists list (DW_RLE_*); entries through .debug_addr (x forms) are left out. */
  function rnglistAt(off: number, base: number): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    if (!rnglists || off >= rnglists.byteLength) return out;
    const rr = new ByteReader(rnglists, { pos: off, label: `${elf.label} .debug_rnglists` });
    while (!rr.eof && out.length < 4096) {
      const kind = rr.u8();
      switch (kind) {
        case 0: // end_of_list
          return out;
        case 1: // base_addressx
          rr.uleb();
          break;
        case 2: // startx_endx
          rr.uleb();
          rr.uleb();
          break;
        case 3: // startx_length
          rr.uleb();
          rr.uleb();
          break;
        case 4: {
          // offset_pair
          const a = rr.uleb(),
            b = rr.uleb();
          if (b > a) out.push([base + a, base + b]);
          break;
        }
        case 5: // base_address
          base = rr.u64();
          break;
        case 6: {
          // start_end
          const a = rr.u64(),
            b = rr.u64();
          if (b > a) out.push([a, b]);
          break;
        }
        case 7: {
          // start_length
          const a = rr.u64(),
            n = rr.uleb();
          if (n > 0) out.push([a, a + n]);
          break;
        }
        default:
          return out; // unknown entry kind: the rest cannot be read
      }
    }
    return out;
  }
}

/**
 * The inlined calls holding ELF vaddr `pc`, innermost first, each with the inlined function's name
 * (undefined when unnamed) and its call site. Empty when `pc` is in no inlined code.
 */
export function inlinedAt(
  index: InlineIndex,
  pc: number,
): Array<{ name: string | undefined; callFile: string; callLine: number }> {
  const fns = index.functionsAt(pc);
  let lo = 0,
    hi = fns.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (fns[mid]!.lo <= pc) lo = mid + 1;
    else hi = mid;
  }
  // Ranges of one function may be listed apart (hot / cold parts); walk back over a few candidates.
  for (let i = lo - 1; i >= 0 && i >= lo - 4; i--) {
    const f = fns[i]!;
    if (pc < f.lo || pc >= f.hi) continue;
    // The deepest inlined call holding pc: the last one listed (children follow their parents).
    let deepest = -1;
    for (let k = f.calls.length - 1; k >= 0; k--) {
      if (f.calls[k]!.ranges.some(([a, b]) => pc >= a && pc < b)) {
        deepest = k;
        break;
      }
    }
    const out: Array<{ name: string | undefined; callFile: string; callLine: number }> = [];
    for (let k = deepest, n = 0; k >= 0 && n < MAX_DEPTH; k = f.calls[k]!.parent, n++) {
      const c = f.calls[k]!;
      out.push({ name: index.nameOf(c.origin), callFile: c.callFile, callLine: c.callLine });
    }
    return out;
  }
  return [];
}
