// `leakscope heap --reach`: the terminal section of a `leakscope.heap/1` document's `reachability`
// (DESIGN.md). The renderer never reads the target.
import type { HeapDocument } from '../contract/heap.js';
import { formatBytes, safeText, textTable } from './text-format.js';

type Reachability = NonNullable<HeapDocument['reachability']>;
type ClassCount = Reachability['reachable'];
type ReachClass = 'definitelyLost' | 'indirectlyLost' | 'possiblyLost' | 'reachable' | 'unknown';

const LABELS: Record<ReachClass, string> = {
  definitelyLost: 'definitely lost',
  indirectlyLost: 'indirectly lost',
  possiblyLost: 'possibly lost',
  reachable: 'reachable',
  unknown: 'unknown',
};
const CLASSES = Object.keys(LABELS) as ReachClass[];
const hex = (n: number) => `0x${n.toString(16)}`;
const cell = (c: ClassCount) => (c.chunks ? `${c.chunks} / ${formatBytes(c.bytes)}` : '0');

export function renderReachTable(r: Reachability): string {
  const out: string[] = ["reachability of in-use chunks (valgrind's classes; chunk sizes, header included):"];
  out.push(
    textTable(
      ['class', 'chunks', 'bytes'],
      [
        ...CLASSES.map((k) => [LABELS[k], String(r[k].chunks), formatBytes(r[k].bytes)]),
        ["(glibc's own: tcache)", String(r.allocator.chunks), formatBytes(r.allocator.bytes)],
      ],
    ),
  );
  out.push('', 'per chunk-size bucket (chunks / bytes):');
  out.push(
    textTable(
      ['bucket', ...CLASSES.map((k) => LABELS[k])],
      r.buckets.map((b) => [
        `${formatBytes(b.minBytes)} – ${formatBytes(b.maxBytes)}`,
        ...CLASSES.map((k) => cell(b[k])),
      ]),
    ),
  );
  if (r.largestLost.length) {
    out.push('', 'largest lost chunks (definitely lost: with the blocks only they point to):');
    for (const c of r.largestLost) {
      out.push(
        `  ${hex(c.address)}  ${LABELS[c.class]}  chunk ${formatBytes(c.chunkSize)}${c.groupChunks > 1 ? `, group of ${c.groupChunks} chunks / ${formatBytes(c.groupBytes)}` : ''}`,
      );
      for (let o = 0; o < c.hex.length; o += 32) {
        const h = c.hex
          .slice(o, o + 32)
          .replace(/(..)/g, '$1 ')
          .trimEnd();
        out.push(`    ${h.padEnd(47)}  ${safeText(c.ascii.slice(o / 2, o / 2 + 16))}`);
      }
    }
  }
  out.push('', 'roots scanned:');
  out.push(
    textTable(
      ['kind', 'name', 'ranges', 'bytes', 'start ptrs', 'interior ptrs'],
      r.roots
        .slice(0, 20)
        .map((x) => [
          x.kind,
          safeText(x.name),
          String(x.ranges),
          formatBytes(x.bytes),
          String(x.startPointers),
          String(x.interiorPointers),
        ]),
    ),
  );
  if (r.roots.length > 20) out.push(`  ... ${r.roots.length - 20} more`);
  for (const n of r.notes) out.push(`note: ${safeText(n)}`);
  return out.join('\n');
}
