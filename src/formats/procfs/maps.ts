// /proc/PID/maps and /proc/PID/smaps (proc(5)). Pure parsers over the file text.
import { LeakscopeError } from '../../model/errors.js';
import type { Mapping, MappingUsage, MappingWithUsage } from '../../model/memory.js';

// "start-end perms offset dev inode   path"; path may contain spaces and " (deleted)".
const MAPS_LINE = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) ([0-9a-f]+) (\S+) (\d+)\s*(.*)$/;

export function parseMapsLine(line: string): Mapping {
  const m = MAPS_LINE.exec(line);
  if (!m) throw new LeakscopeError('malformed', `maps: cannot parse line ${JSON.stringify(line.slice(0, 120))}`);
  return {
    start: parseInt(m[1]!, 16),
    end: parseInt(m[2]!, 16),
    perms: m[3]!,
    offset: parseInt(m[4]!, 16),
    dev: m[5]!,
    inode: Number(m[6]),
    path: m[7] ?? '',
  };
}

export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) if (line) out.push(parseMapsLine(line));
  return out;
}

/** smaps: a maps line followed by "Key:   N kB" lines per mapping. Sizes come back in bytes. */
export function parseSmaps(text: string): MappingWithUsage[] {
  const out: MappingWithUsage[] = [];
  let cur: MappingWithUsage | undefined;
  for (const line of text.split('\n')) {
    if (!line) continue;
    const kv = /^([A-Za-z_]+):\s+(\d+) kB$/.exec(line);
    if (kv) {
      if (!cur) throw new LeakscopeError('malformed', `smaps: field before first mapping: ${line}`);
      const u = (cur.usage ??= { rss: 0, pss: 0, swap: 0, anonymous: 0, privateDirty: 0 } as MappingUsage);
      const bytes = Number(kv[2]) * 1024;
      switch (kv[1]) {
        case 'Rss':
          u.rss = bytes;
          break;
        case 'Pss':
          u.pss = bytes;
          break;
        case 'Swap':
          u.swap = bytes;
          break;
        case 'Anonymous':
          u.anonymous = bytes;
          break;
        case 'Private_Dirty':
          u.privateDirty = bytes;
          break;
      }
      continue;
    }
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      cur = parseMapsLine(line);
      out.push(cur);
    }
    // other lines (VmFlags:, THPeligible: ...) are ignored
  }
  return out;
}

/** /proc/PID/status as key -> raw value ("VmRSS" -> "1234 kB"). */
export function parseStatus(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) out.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return out;
}
