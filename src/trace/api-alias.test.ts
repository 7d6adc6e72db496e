// glibc 2.36 has aligned_alloc and memalign at one address (one function, two names): a uprobe
// there cannot tell which one the program called. The leaf is named from the call instruction
// before the caller's return address (symbols/called-function.ts). A program calling both, directly
// and through tail-calling wrappers, built with a lazy PLT (-O0) and without PLT (-O2 -fno-plt),
// traced with `leakscope leaks --sample-bytes 0` (and --show-internal): each size under the name
// its source calls it by.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { probesAttached, runLeakscope } from '../../test/helpers/leakscope-cli.js';

// Sizes say which call made each block.
const PROGRAM = `#include <stdlib.h>
#include <malloc.h>
#include <unistd.h>
__attribute__((noinline)) void *wrap_aligned(size_t n) { return aligned_alloc(64, n); }
__attribute__((noinline)) void *wrap_memalign(size_t n) { return memalign(64, n); }
volatile void *keep[4];
int main(void) {
  char c;
  if (read(0, &c, 1) != 1) return 1;
  keep[0] = aligned_alloc(64, 1111);
  keep[1] = memalign(64, 2222);
  keep[2] = wrap_aligned(3333);
  keep[3] = wrap_memalign(4444);
  return 0;
}
`;
const CALLED: Record<number, string> = {
  1111: 'aligned_alloc',
  2222: 'memalign',
  3333: 'aligned_alloc',
  4444: 'memalign',
};

interface LeaksJson {
  complete: boolean;
  stacks: { frames: { function: string | null }[]; bytes: number; count: number }[];
}

async function trace(bin: string, extra: string[]): Promise<LeaksJson> {
  const app = spawn(bin, [], { stdio: ['pipe', 'ignore', 'inherit'] });
  const exited = new Promise<number | null>((r) => app.on('close', (code) => r(code)));
  try {
    const run = runLeakscope(['leaks', String(app.pid), '--sample-bytes', '0', '--duration', '60', '--json', ...extra]);
    await probesAttached(run.pid);
    app.stdin.end('\n');
    assert.equal(await exited, 0);
    const r = await run.done;
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as LeaksJson;
  } finally {
    app.kill('SIGKILL');
  }
}

test('aligned_alloc and memalign (one function in glibc): the leaf is the name the program called', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-alias-'));
  try {
    writeFileSync(join(dir, 'a.c'), PROGRAM);
    const variants: Record<string, string[]> = { 'lazy-plt': ['-O0'], 'no-plt': ['-O2', '-fno-plt'] };
    for (const [name, flags] of Object.entries(variants)) {
      const bin = join(dir, name);
      execFileSync('gcc', [...flags, '-g', '-o', bin, join(dir, 'a.c')]);
      for (const extra of [[], ['--show-internal']]) {
        const doc = await trace(bin, extra);
        assert.equal(doc.complete, true);
        const seen: string[] = [];
        for (const [size, api] of Object.entries(CALLED)) {
          const s = doc.stacks.filter((x) => x.bytes === Number(size));
          assert.equal(s.length, 1, `${name} ${extra}: one path of ${size} B`);
          const frames = s[0]!.frames.map((f) => f.function);
          // --show-internal keeps what lies below the API frame (nothing here: alignment 64 goes to _int_memalign unprobed)
          const leaf = frames.findIndex((f) => f === 'aligned_alloc' || f === 'memalign');
          assert.equal(frames[leaf], api, `${name} ${extra}: ${size} B called ${api}: ${frames.join(' <- ')}`);
          assert.ok(frames.slice(leaf + 1).includes('main'));
          seen.push(`${size} B ${frames.slice(0, 3).join('<-')}`);
        }
        console.log(`# ${name} ${extra.join(' ')}: ${seen.join('; ')}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
