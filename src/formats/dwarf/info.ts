// Minimal .debug_info / .debug_abbrev reader: struct member offsets and sizes by typedef
// or struct name. Enough for "offsetof(ngx_cycle_t, connections)" from a binary's DWARF.
// DWARF 2-5 (DWARF 5 spec, sections 7.5 unit headers, 7.5.6 forms); 64-bit DWARF, split
// units and type units are skipped. Compressed sections (SHF_COMPRESSED, ELFCOMPRESS_ZLIB)
// are inflated. Pure over ElfFile bytes.

import { inflateSync } from 'node:zlib';
import { ByteReader } from '../../binary/byte-reader.js';
import { LeakscopeError } from '../../model/errors.js';
import type { ElfFile } from '../elf/index.js';

const SHF_COMPRESSED = 0x800;
const TAG_STRUCT = 0x13,
  TAG_MEMBER = 0x0d,
  TAG_TYPEDEF = 0x16,
  TAG_UNION = 0x17;
const AT_NAME = 0x03,
  AT_BYTE_SIZE = 0x0b,
  AT_TYPE = 0x49,
  AT_MEMBER_LOC = 0x38,
  AT_DECL = 0x3c;

/** Section bytes, inflated when SHF_COMPRESSED (Elf64_Chdr: type u32, reserved u32, size u64, align u64). */
export function debugSection(elf: ElfFile, name: string): Uint8Array | undefined {
  const s = elf.section(name);
  if (!s) return undefined;
  const raw = elf.sectionBytes(s);
  if (!(s.flags & SHF_COMPRESSED)) return raw;
  const r = new ByteReader(raw, { label: `${elf.label} ${name}` });
  if (r.u32At(0) !== 1)
    throw new LeakscopeError('not-supported', `${elf.label} ${name}: compression type ${r.u32At(0)} (only zlib)`);
  const size = r.u64At(8);
  const out = inflateSync(raw.subarray(24));
  if (out.length !== size)
    throw new LeakscopeError('malformed', `${elf.label} ${name}: inflated ${out.length} bytes, header says ${size}`);
  return out;
}

export interface Abbrev {
  tag: number;
  children: boolean;
  attrs: Array<[number, number, number]>;
} // [at, form, implicit_const]

/** The abbreviation table at `off`; with `onlyCode`, read up to that code's entry and stop there. */
export function parseAbbrevs(r: ByteReader, off: number, onlyCode?: number): Map<number, Abbrev> {
  const out = new Map<number, Abbrev>();
  r.seek(off);
  for (;;) {
    const code = r.uleb();
    if (code === 0 || (onlyCode !== undefined && out.has(onlyCode))) break;
    const tag = r.uleb();
    const children = r.u8() === 1;
    const attrs: Array<[number, number, number]> = [];
    for (;;) {
      const at = r.uleb(),
        form = r.uleb();
      let ic = 0;
      if (form === 0x21) ic = r.sleb(); // DW_FORM_implicit_const
      if (at === 0 && form === 0) break;
      attrs.push([at, form, ic]);
    }
    out.set(code, { tag, children, attrs });
  }
  return out;
}

interface Die {
  tag: number;
  name?: string;
  byteSize?: number;
  type?: number;
  memberLoc?: number;
  decl?: boolean;
}

export interface StructLayout {
  [field: string]: number;
  sizeof: number;
}

/**
 * For each wanted name (a typedef like "ngx_cycle_t" or a struct tag like "ngx_cycle_s"),
 * the byte offsets of the wanted members and `sizeof`. Names without a complete definition
 * are left out of the result; members not found make the struct left out too.
 */
export function structLayoutsFromDwarf(
  elf: ElfFile,
  wanted: Record<string, readonly string[]>,
): Record<string, StructLayout> {
  const info = debugSection(elf, '.debug_info');
  const abbrevBytes = debugSection(elf, '.debug_abbrev');
  if (!info || !abbrevBytes) return {};
  const str = debugSection(elf, '.debug_str');
  const lineStr = debugSection(elf, '.debug_line_str');
  const r = new ByteReader(info, { label: `${elf.label} .debug_info` });
  const ar = new ByteReader(abbrevBytes, { label: `${elf.label} .debug_abbrev` });
  const strAt = (sec: Uint8Array | undefined, off: number) =>
    sec ? new ByteReader(sec).cstringAt(off, 1024) : undefined;
  const names = new Set(Object.keys(wanted));
  const typedefs = new Map<string, number>(); // typedef name -> referenced DIE offset
  const structs = new Map<number, { name?: string; byteSize: number; members: Map<string, number> }>();
  const structByName = new Map<string, number>();
  const abbrevCache = new Map<number, Map<number, Abbrev>>();
  const declNames = new Map<number, string>(); // declaration-only struct DIE -> tag name

  let cu = 0;
  while (cu + 11 <= info.byteLength) {
    const unitLength = r.u32At(cu);
    if (unitLength === 0xffffffff) break; // 64-bit DWARF: not produced for x86-64 user code
    const end = cu + 4 + unitLength;
    const version = r.u16At(cu + 4);
    let abbrevOff: number, addrSize: number, p: number;
    if (version >= 5) {
      const unitType = r.u8At(cu + 6);
      addrSize = r.u8At(cu + 7);
      abbrevOff = r.u32At(cu + 8);
      p = cu + 12;
      if (unitType !== 1 && unitType !== 3) {
        cu = end;
        continue;
      } // only compile / partial units
    } else if (version >= 2) {
      abbrevOff = r.u32At(cu + 6);
      addrSize = r.u8At(cu + 10);
      p = cu + 11;
    } else {
      cu = end;
      continue;
    }
    let abbrevs = abbrevCache.get(abbrevOff);
    if (!abbrevs) {
      abbrevs = parseAbbrevs(ar, abbrevOff);
      abbrevCache.set(abbrevOff, abbrevs);
    }
    // Stack of the enclosing struct DIE offsets (-1 for non-struct parents).
    const stack: number[] = [];
    r.seek(p);
    while (r.pos < end) {
      const dieOff = r.pos;
      const code = r.uleb();
      if (code === 0) {
        stack.pop();
        continue;
      }
      const ab = abbrevs.get(code);
      if (!ab)
        throw new LeakscopeError(
          'malformed',
          `${elf.label}: abbrev code ${code} unknown at .debug_info+0x${dieOff.toString(16)}`,
        );
      const die: Die = { tag: ab.tag };
      for (const [at, form, ic] of ab.attrs) {
        const v = readForm(r, form, ic, addrSize, version, cu);
        if (at === AT_NAME) {
          if (typeof v === 'string') die.name = v;
          else if (form === 0x0e) die.name = strAt(str, v as number);
          else if (form === 0x1f) die.name = strAt(lineStr, v as number);
        } else if (at === AT_BYTE_SIZE && typeof v === 'number') die.byteSize = v;
        else if (at === AT_TYPE && typeof v === 'number') die.type = v;
        else if (at === AT_MEMBER_LOC) {
          if (typeof v === 'number') die.memberLoc = v;
          else if (v instanceof Uint8Array && v[0] === 0x23) die.memberLoc = new ByteReader(v, { pos: 1 }).uleb(); // DW_OP_plus_uconst
        } else if (at === AT_DECL) die.decl = true;
      }
      const parent = stack.length ? stack[stack.length - 1]! : -1;
      if (
        die.tag === TAG_TYPEDEF &&
        die.name &&
        names.has(die.name) &&
        die.type !== undefined &&
        !typedefs.has(die.name)
      )
        typedefs.set(die.name, die.type);
      if ((die.tag === TAG_STRUCT || die.tag === TAG_UNION) && !die.decl && die.byteSize !== undefined) {
        structs.set(dieOff, { name: die.name, byteSize: die.byteSize, members: new Map() });
        if (die.name && !structByName.has(die.name)) structByName.set(die.name, dieOff);
      } else if ((die.tag === TAG_STRUCT || die.tag === TAG_UNION) && die.decl && die.name)
        declNames.set(dieOff, die.name);
      if (die.tag === TAG_MEMBER && parent >= 0 && die.name !== undefined) {
        structs.get(parent)?.members.set(die.name, die.memberLoc ?? 0);
      }
      if (ab.children)
        stack.push((die.tag === TAG_STRUCT || die.tag === TAG_UNION) && structs.has(dieOff) ? dieOff : -1);
    }
    cu = end;
  }

  const out: Record<string, StructLayout> = {};
  for (const [name, fields] of Object.entries(wanted)) {
    const off = typedefs.get(name) ?? structByName.get(name);
    let s = off !== undefined ? structs.get(off) : undefined;
    // typedef of a declaration-only struct in its CU: the complete struct by its tag name
    if (!s && off !== undefined && declNames.has(off)) {
      const full = structByName.get(declNames.get(off)!);
      if (full !== undefined) s = structs.get(full);
    }
    if (!s) continue;
    const layout: StructLayout = { sizeof: s.byteSize };
    let ok = true;
    for (const f of fields) {
      if (f === 'sizeof') continue;
      const m = s.members.get(f);
      if (m === undefined) {
        ok = false;
        break;
      }
      layout[f] = m;
    }
    if (ok) out[name] = layout;
  }
  return out;
}

/** Reads one attribute value: number (constants, offsets, refs made CU-absolute), string, or block bytes. */
export function readForm(
  r: ByteReader,
  form: number,
  ic: number,
  addrSize: number,
  version: number,
  cu: number,
): number | string | Uint8Array | undefined {
  switch (form) {
    case 0x01:
      return addrSize === 8 ? r.u64() : r.u32(); // addr
    case 0x0b:
      return r.u8(); // data1
    case 0x05:
      return r.u16(); // data2
    case 0x06:
      return r.u32(); // data4
    case 0x07:
      return r.u64(); // data8
    case 0x1e:
      r.skip(16);
      return undefined; // data16
    case 0x0d:
      return r.sleb(); // sdata
    case 0x0f:
      return r.uleb(); // udata
    case 0x08:
      return r.cstring(4096); // string
    case 0x0e:
    case 0x1f:
    case 0x17:
      return r.u32(); // strp, line_strp, sec_offset
    case 0x1a:
    case 0x25:
    case 0x26:
    case 0x27:
    case 0x28:
    case 0x29:
    case 0x2a:
    case 0x2b:
    case 0x2c: {
      // strx*, addrx*
      const w =
        form === 0x1a
          ? -1
          : form === 0x25 || form === 0x29
            ? 1
            : form === 0x26 || form === 0x2a
              ? 2
              : form === 0x27 || form === 0x2b
                ? 3
                : 4;
      if (w === -1) r.uleb();
      else r.skip(w);
      return undefined;
    }
    case 0x1b:
    case 0x22:
    case 0x23:
      r.uleb();
      return undefined; // addrx, loclistx, rnglistx
    case 0x11:
      return cu + r.u8(); // ref1
    case 0x12:
      return cu + r.u16(); // ref2
    case 0x13:
      return cu + r.u32(); // ref4
    case 0x14:
      return cu + r.u64(); // ref8
    case 0x15:
      return cu + r.uleb(); // ref_udata
    case 0x10:
      return version <= 2 ? (addrSize === 8 ? r.u64() : r.u32()) : r.u32(); // ref_addr (section offset)
    case 0x20:
      r.skip(8);
      return undefined; // ref_sig8
    case 0x1c:
    case 0x24:
      r.skip(4);
      return undefined; // ref_sup4, strp_sup
    case 0x18:
      return r.take(r.uleb()); // exprloc
    case 0x09:
      return r.take(r.uleb()); // block
    case 0x0a:
      return r.take(r.u8()); // block1
    case 0x03:
      return r.take(r.u16()); // block2
    case 0x04:
      return r.take(r.u32()); // block4
    case 0x0c:
      return r.u8(); // flag
    case 0x19:
      return 1; // flag_present
    case 0x21:
      return ic; // implicit_const
    case 0x16:
      return readForm(r, r.uleb(), ic, addrSize, version, cu); // indirect
    default:
      throw new LeakscopeError(
        'not-supported',
        `DWARF form 0x${form.toString(16)} at .debug_info+0x${r.pos.toString(16)}`,
      );
  }
}
