// DWARF line number tables (.debug_line), versions 2-5: address -> source file and line.
// Layout and state machine: DWARF 5 standard section 6.2 (DWARF 4 section 6.2 for the older
// header with include_directories / file_names lists). Version 5 file entries are described by
// format tables (DW_LNCT_*) and may name strings in .debug_line_str or .debug_str.
// Compressed sections (SHF_COMPRESSED, ELFCOMPRESS_ZLIB) are inflated.

import { inflateSync } from 'node:zlib';
import { ByteReader } from '../../binary/byte-reader.js';
import type { ElfFile } from '../elf/index.js';
import { LeakscopeError } from '../../model/errors.js';

export interface LineRow {
  address: number;
  file: string;
  line: number;
}

/** Rows of every sequence, sorted by address; a row with line 0 marks the first address past a sequence. */
export interface LineTable {
  rows: LineRow[];
  /** Each unit's file names by the unit's .debug_line offset (a CU's DW_AT_stmt_list), indexed by file number. */
  files?: Map<number, string[]>;
}

const SHF_COMPRESSED = 0x800;
const ELFCOMPRESS_ZLIB = 1;

/** A debug section's bytes, inflated when compressed; empty when absent. */
export function debugSectionBytes(elf: ElfFile, name: string): Uint8Array {
  const sec = elf.section(name);
  if (!sec) return new Uint8Array(0);
  const raw = elf.sectionBytes(sec);
  if (!(sec.flags & SHF_COMPRESSED)) return raw;
  const r = new ByteReader(raw, { label: `${elf.label} ${name}` });
  const type = r.u32();
  r.u32();
  const size = r.u64();
  r.u64();
  if (type !== ELFCOMPRESS_ZLIB)
    throw new LeakscopeError('not-supported', `${elf.label} ${name}: compression type ${type}`);
  const out = inflateSync(raw.subarray(r.pos), { maxOutputLength: Math.max(size, 1) });
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

// DW_FORM_* used in v5 entry formats
const FORM = {
  block: 0x09,
  data1: 0x0b,
  data2: 0x05,
  data4: 0x06,
  data8: 0x07,
  data16: 0x1e,
  string: 0x08,
  strp: 0x0e,
  line_strp: 0x1f,
  udata: 0x0f,
  strx: 0x1a,
  strx1: 0x25,
  strx2: 0x26,
  strx4: 0x28,
} as const;
const LNCT_PATH = 1,
  LNCT_DIRECTORY_INDEX = 2;

/** Parses every unit of a .debug_line section. Malformed units end the parse (rows so far are kept). */
export function parseDebugLine(elf: ElfFile): LineTable {
  const bytes = debugSectionBytes(elf, '.debug_line');
  const lineStr = debugSectionBytes(elf, '.debug_line_str');
  const str = debugSectionBytes(elf, '.debug_str');
  const rows: LineRow[] = [];
  const files = new Map<number, string[]>();
  const r = new ByteReader(bytes, { label: `${elf.label} .debug_line` });
  while (r.remaining > 0) {
    const unitStart = r.pos;
    let unitLength = r.u32();
    let offsetSize = 4;
    if (unitLength === 0xffffffff) {
      unitLength = r.u64();
      offsetSize = 8;
    }
    const unitEnd = r.pos + unitLength;
    if (unitEnd > bytes.byteLength || unitLength === 0) break;
    try {
      parseUnit(
        new ByteReader(bytes.subarray(0, unitEnd), { pos: r.pos, label: r.label }),
        offsetSize,
        lineStr,
        str,
        rows,
        (f) => files.set(unitStart, f),
      );
    } catch {
      /* a malformed unit: skip it */
    }
    r.seek(unitEnd);
  }
  // End markers first at equal addresses: a sequence starting where another ends wins.
  rows.sort((a, b) => a.address - b.address || (a.line === 0 ? 0 : 1) - (b.line === 0 ? 0 : 1));
  return { rows, files };
}

function cstr(b: Uint8Array, off: number): string {
  if (off >= b.byteLength) return '';
  let end = off;
  while (end < b.byteLength && b[end] !== 0) end++;
  return Buffer.from(b.buffer, b.byteOffset + off, end - off).toString('utf8');
}

function parseUnit(
  r: ByteReader,
  offsetSize: number,
  lineStr: Uint8Array,
  str: Uint8Array,
  rows: LineRow[],
  onFiles: (files: string[]) => void,
): void {
  const version = r.u16();
  if (version < 2 || version > 5) throw new Error(`version ${version}`);
  let addressSize = 8;
  if (version >= 5) {
    addressSize = r.u8();
    r.u8();
  }
  const headerLength = offsetSize === 8 ? r.u64() : r.u32();
  const programStart = r.pos + headerLength;
  const minInsn = r.u8();
  const maxOps = version >= 4 ? r.u8() : 1;
  void maxOps;
  const defaultIsStmt = r.u8() !== 0;
  void defaultIsStmt;
  const lineBase = r.i8();
  const lineRange = r.u8();
  const opcodeBase = r.u8();
  const stdLengths: number[] = [];
  for (let i = 1; i < opcodeBase; i++) stdLengths.push(r.u8());
  const dirs: string[] = [];
  const files: string[] = [];
  const join = (dir: string | undefined, name: string) => (name.startsWith('/') || !dir ? name : `${dir}/${name}`);
  if (version >= 5) {
    const readForm = (form: number): string | number => {
      switch (form) {
        case FORM.string:
          return r.cstring(65536);
        case FORM.line_strp:
          return cstr(lineStr, offsetSize === 8 ? r.u64() : r.u32());
        case FORM.strp:
          return cstr(str, offsetSize === 8 ? r.u64() : r.u32());
        case FORM.udata:
          return r.uleb();
        case FORM.data1:
          return r.u8();
        case FORM.data2:
          return r.u16();
        case FORM.data4:
          return r.u32();
        case FORM.data8:
          return r.u64();
        case FORM.data16:
          r.skip(16);
          return 0;
        case FORM.block:
          r.skip(r.uleb());
          return 0;
        default:
          throw new Error(`form 0x${form.toString(16)}`);
      }
    };
    const entries = (): Array<{ path: string; dir: number }> => {
      const fmtCount = r.u8();
      const fmt: Array<[number, number]> = [];
      for (let i = 0; i < fmtCount; i++) fmt.push([r.uleb(), r.uleb()]);
      const n = r.uleb();
      const out: Array<{ path: string; dir: number }> = [];
      for (let i = 0; i < n; i++) {
        let path = '',
          dir = 0;
        for (const [type, form] of fmt) {
          const v = readForm(form);
          if (type === LNCT_PATH) path = String(v);
          else if (type === LNCT_DIRECTORY_INDEX) dir = Number(v);
        }
        out.push({ path, dir });
      }
      return out;
    };
    for (const d of entries()) dirs.push(d.path);
    for (const f of entries()) files.push(join(dirs[f.dir], f.path));
  } else {
    for (;;) {
      const d = r.cstring(65536);
      if (!d) break;
      dirs.push(d);
    }
    files.push(''); // file numbers are 1-based before DWARF 5
    for (;;) {
      const name = r.cstring(65536);
      if (!name) break;
      const dir = r.uleb();
      r.uleb();
      r.uleb();
      files.push(join(dir ? dirs[dir - 1] : undefined, name));
    }
  }
  onFiles(files);
  r.seek(programStart);
  // The state machine (DWARF 5 section 6.2.2); op_index is ignored (x86: max_ops = 1).
  let address = 0,
    file = 1,
    line = 1;
  const reset = () => {
    address = 0;
    file = 1;
    line = 1;
  };
  const emit = () => rows.push({ address, file: files[file] ?? '', line });
  while (r.remaining > 0) {
    const op = r.u8();
    if (op >= opcodeBase) {
      const adj = op - opcodeBase;
      address += Math.floor(adj / lineRange) * minInsn;
      line += lineBase + (adj % lineRange);
      emit();
      continue;
    }
    switch (op) {
      case 0: {
        const len = r.uleb();
        const end = r.pos + len;
        const sub = len ? r.u8() : 0;
        if (sub === 1) {
          rows.push({ address, file: '', line: 0 });
          reset();
        } else if (sub === 2) address = addressSize === 8 ? r.u64() : r.u32();
        r.seek(end);
        break;
      }
      case 1:
        emit();
        break;
      case 2:
        address += r.uleb() * minInsn;
        break;
      case 3:
        line += r.sleb();
        break;
      case 4:
        file = r.uleb();
        break;
      case 5:
        r.uleb();
        break;
      case 6:
      case 7:
      case 10:
      case 11:
        break;
      case 8:
        address += Math.floor((255 - opcodeBase) / lineRange) * minInsn;
        break;
      case 9:
        address += r.u16();
        break;
      case 12:
        r.uleb();
        break;
      default:
        for (let i = 0; i < (stdLengths[op - 1] ?? 0); i++) r.uleb();
    }
  }
}

/** The row covering `address` (greatest row address <= address, not past its sequence's end), or undefined. */
export function lineAt(t: LineTable, address: number): LineRow | undefined {
  const rows = t.rows;
  let lo = 0,
    hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (rows[mid]!.address <= address) lo = mid + 1;
    else hi = mid;
  }
  const row = rows[lo - 1];
  return row && row.line > 0 ? row : undefined;
}
