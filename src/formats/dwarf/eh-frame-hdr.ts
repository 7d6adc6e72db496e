// `.eh_frame_hdr` (LSB 5.0 section 10.6.2): a pointer to `.eh_frame` and a table of
// (initial_location, FDE address) pairs sorted by initial_location, for O(log n) FDE lookup.
//
//   u8 version (1) | u8 eh_frame_ptr_enc | u8 fde_count_enc | u8 table_enc
//   eh_frame_ptr (eh_frame_ptr_enc) | fde_count (fde_count_enc) | table[fde_count] (table_enc, 2 values each)
//
// Table values are relative to the start of .eh_frame_hdr when DW_EH_PE_datarel (0x3b = datarel|sdata4
// is what GNU ld and lld write). Pure over bytes; malformed -> LeakscopeError('malformed').

import { ByteReader } from '../../binary/byte-reader.js';
import { LeakscopeError, isLeakscopeError } from '../../model/errors.js';
import { DW_EH_PE_omit, DW_EH_PE_datarel, DW_EH_PE_absptr, encodedSize, readEncodedPointer } from './cfi.js';

export interface EhFrameHdr {
  version: number;
  /** vaddr of .eh_frame_hdr itself. */
  vaddr: number;
  /** vaddr of .eh_frame, from eh_frame_ptr. */
  ehFrameVaddr: number;
  fdeCount: number;
  /** Encoding of table values; `undefined` table when the table is absent or not binary-searchable. */
  tableEncoding: number;
  /** Offset of the table in `bytes`, and size of one value (an entry is 2 values). */
  tableOffset: number;
  valueSize: number;
  bytes: Uint8Array;
  /** Whether the table can be binary searched (fixed-size encoding, present). */
  searchable: boolean;
}

/** Parses the header of `.eh_frame_hdr` whose first byte is at `vaddr`. */
export function parseEhFrameHdr(bytes: Uint8Array, vaddr: number, label = '.eh_frame_hdr'): EhFrameHdr {
  const r = new ByteReader(bytes, { label });
  try {
    const version = r.u8();
    if (version !== 1) throw new LeakscopeError('malformed', `${label}: version ${version}, expected 1`);
    const ptrEnc = r.u8(),
      countEnc = r.u8(),
      tableEnc = r.u8();
    const bases = { sectionVaddr: vaddr, dataVaddr: vaddr };
    if (ptrEnc === DW_EH_PE_omit) throw new LeakscopeError('malformed', `${label}: no eh_frame_ptr`);
    const ehFrameVaddr = readEncodedPointer(r, ptrEnc, bases).value;
    let fdeCount = 0;
    let searchable = false;
    let valueSize = 0;
    if (countEnc !== DW_EH_PE_omit && tableEnc !== DW_EH_PE_omit) {
      fdeCount = readEncodedPointer(r, countEnc & 0x0f, bases).value;
      valueSize = encodedSize(tableEnc);
      const app = tableEnc & 0x70;
      searchable = valueSize > 0 && (app === DW_EH_PE_datarel || app === DW_EH_PE_absptr) && (tableEnc & 0x80) === 0;
      if (searchable && r.pos + fdeCount * 2 * valueSize > bytes.byteLength) {
        throw new LeakscopeError(
          'malformed',
          `${label}: table of ${fdeCount} entries (${valueSize * 2} bytes each) runs past the section (${bytes.byteLength} bytes)`,
        );
      }
    }
    return {
      version,
      vaddr,
      ehFrameVaddr,
      fdeCount,
      tableEncoding: tableEnc,
      tableOffset: r.pos,
      valueSize,
      bytes,
      searchable,
    };
  } catch (e) {
    if (isLeakscopeError(e) && e.code === 'truncated') throw new LeakscopeError('malformed', e.message, { cause: e });
    throw e;
  }
}

function tableValue(hdr: EhFrameHdr, r: ByteReader, off: number): number {
  r.pos = off;
  return readEncodedPointer(r, hdr.tableEncoding, { sectionVaddr: hdr.vaddr, dataVaddr: hdr.vaddr }).value;
}

/**
 * Binary search: the entry with the greatest initial_location <= vaddr. Returns the FDE's vaddr
 * and its initial_location (the FDE itself still has to be checked for covering `vaddr`).
 * `undefined` when vaddr lies before the first entry or the table is not searchable.
 */
export function searchEhFrameHdr(
  hdr: EhFrameHdr,
  vaddr: number,
): { initialLocation: number; fdeVaddr: number } | undefined {
  if (!hdr.searchable || hdr.fdeCount === 0) return undefined;
  const r = new ByteReader(hdr.bytes, { label: '.eh_frame_hdr' });
  const entry = hdr.valueSize * 2;
  let lo = 0,
    hi = hdr.fdeCount - 1,
    best = -1;
  // log2(fdeCount) iterations.
  while (lo <= hi) {
    const mid = Math.floor((lo + hi) / 2);
    const loc = tableValue(hdr, r, hdr.tableOffset + mid * entry);
    if (loc <= vaddr) {
      best = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  if (best < 0) return undefined;
  const off = hdr.tableOffset + best * entry;
  return { initialLocation: tableValue(hdr, r, off), fdeVaddr: tableValue(hdr, r, off + hdr.valueSize) };
}

/** All table entries (for tests and for checking the table against .eh_frame). */
export function ehFrameHdrEntries(hdr: EhFrameHdr): Array<{ initialLocation: number; fdeVaddr: number }> {
  const out: Array<{ initialLocation: number; fdeVaddr: number }> = [];
  if (!hdr.searchable) return out;
  const r = new ByteReader(hdr.bytes, { label: '.eh_frame_hdr' });
  for (let i = 0; i < hdr.fdeCount; i++) {
    const off = hdr.tableOffset + i * hdr.valueSize * 2;
    out.push({ initialLocation: tableValue(hdr, r, off), fdeVaddr: tableValue(hdr, r, off + hdr.valueSize) });
  }
  return out;
}
