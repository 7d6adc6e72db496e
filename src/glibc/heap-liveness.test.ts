// Liveness read from the heap (issue 18) against the fixture's own ground truth: chunks it left
// live (malloc, calloc, realloc, posix_memalign, mmapped) and freed in each of glibc's ways (tcache,
// fastbin, unsorted bin, consolidated, merged into top, munmapped).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFixture } from '../../test/helpers/fixture.js';
import { LiveProcess } from '../target/index.js';
import { Symbolizer } from '../symbols/index.js';
import { debugRoots } from '../symbols/debug-files.js';
import { HeapLiveness } from './heap-liveness.js';

interface ChunkStates {
  fixture: 'chunk-states';
  pid: number;
  chunks: Array<{ name: string; address: number; size: number; live: boolean }>;
}

async function checkAll(withDebugFile: boolean): Promise<void> {
  const saved = withDebugFile ? [] : debugRoots.splice(0, debugRoots.length);
  const fx = await startFixture<ChunkStates>('chunk-states');
  try {
    const truth = fx.truth;
    const space = LiveProcess.open(fx.pid);
    try {
      const h = HeapLiveness.open(space, new Symbolizer(space.modules()));
      assert.match(h.keySource, withDebugFile ? /debug-file/ : /tcache entries/);
      const r = h.check(truth.chunks);
      for (const [i, c] of truth.chunks.entries())
        assert.equal(r.live[i], c.live, `${c.name} at 0x${c.address.toString(16)}: ${r.live[i] ? 'live' : 'freed'}`);
      const freed = truth.chunks.filter((c) => !c.live).length;
      assert.equal(
        Object.values(r.freedBy).reduce((a, b) => a + b, 0),
        freed,
      );
      // Each way of telling is exercised by the fixture.
      for (const why of ['tcache', 'fastbin', 'top', 'unreadable', 'size', 'prev-inuse'])
        assert.ok((r.freedBy[why] ?? 0) > 0, `${why}: ${JSON.stringify(r.freedBy)}`);
      console.log(`# ${withDebugFile ? 'debug file' : 'no debug file'}: freed by ${JSON.stringify(r.freedBy)}`);
    } finally {
      space.close();
    }
  } finally {
    await fx.stop();
    if (!withDebugFile) debugRoots.push(...saved);
  }
}

test('heap liveness: every live chunk live, every freed chunk freed (tcache_key from the debug file)', () =>
  checkAll(true));

test("heap liveness without libc's debug file: tcache_key read from the main thread's tcache", () => checkAll(false));
