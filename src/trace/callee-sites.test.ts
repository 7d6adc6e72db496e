// Call sites of ngx_create_pool found by decoding (callee-sites.ts) against objdump's disassembly:
// in Debian's nginx (direct calls), its Lua module and the test module (calls through the PLT stub).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadElf } from '../formats/elf/index.js';
import { findCalleeSites } from './callee-sites.js';
import { LEAK_MODULE_PATH, ensureFixturesBuilt } from '../../test/helpers/build.js';

/** objdump's call / jmp instructions to ngx_create_pool (direct, @plt, or through the GOT: `# ADDR <ngx_create_pool@...>`). */
function objdumpCalls(path: string): { calls: number[]; jumps: number[]; lines: string[] } {
  const dis = execFileSync('objdump', ['-d', '--no-show-raw-insn', '-w', path], { maxBuffer: 1 << 30 }).toString();
  const calls: number[] = [],
    jumps: number[] = [],
    lines: string[] = [];
  let inPlt = false;
  for (const line of dis.split('\n')) {
    if (line.startsWith('Disassembly of section ')) inPlt = /\.plt/.test(line);
    const m = /^ *([0-9a-f]+):\t(\S+)\s.*<ngx_create_pool(@[^>+]*)?>/.exec(line);
    if (!m || inPlt) continue;
    lines.push(line.trim());
    if (m[2]!.startsWith('call')) calls.push(parseInt(m[1]!, 16));
    else jumps.push(parseInt(m[1]!, 16));
  }
  return { calls, jumps, lines };
}

test('ngx_create_pool call sites: exactly the calls objdump shows, in nginx, the Lua module and the test module', async () => {
  await ensureFixturesBuilt();
  const expected: Record<string, 'direct' | 'plt'> = {
    '/usr/sbin/nginx': 'direct',
    '/usr/lib/nginx/modules/ngx_http_lua_module.so': 'plt',
    [LEAK_MODULE_PATH]: 'plt',
  };
  for (const [path, via] of Object.entries(expected)) {
    const elf = loadElf(path);
    const found = findCalleeSites(elf, 'ngx_create_pool');
    const od = objdumpCalls(path);
    console.log(
      `# ${path}: ${found.sites.length} sites (${od.calls.length} by objdump), ${found.functionsDecoded} functions decoded`,
    );
    assert.ok(found.trusted, `${path}: ${found.problems.join('; ')}`);
    assert.deepEqual(od.jumps, [], 'no tail jumps to ngx_create_pool');
    assert.ok(od.calls.length > 0);
    assert.deepEqual(
      found.sites.map((s) => s.callVaddr),
      od.calls,
      `${path}: objdump's calls:\n${od.lines.join('\n')}`,
    );
    // objdump: the instruction after each call starts at the return site; the probe sits on an instruction boundary.
    const starts = new Set(
      [
        ...execFileSync('objdump', ['-d', '--no-show-raw-insn', '-w', path], { maxBuffer: 1 << 30 })
          .toString()
          .matchAll(/^ *([0-9a-f]+):\t/gm),
      ].map((m) => parseInt(m[1]!, 16)),
    );
    for (const s of found.sites) {
      assert.equal(s.via, via);
      assert.equal(s.returnVaddr - s.callVaddr, via === 'direct' || via === 'plt' ? 5 : 6);
      assert.ok(
        starts.has(s.returnVaddr) && starts.has(s.probeVaddr),
        `0x${s.probeVaddr.toString(16)} is an instruction start`,
      );
      assert.ok(s.callVaddr >= s.functionStart && s.probeVaddr < s.functionEnd);
    }
    assert.ok(
      found.sites.filter((s) => s.probeEmulated).length >= found.sites.length - 1,
      'probes on emulated instructions',
    );
  }
});

test('a module that does not import ngx_create_pool has no sites; libc (no reference at all) is trusted', () => {
  for (const path of ['/usr/lib/nginx/modules/ndk_http_module.so', '/lib/x86_64-linux-gnu/libc.so.6']) {
    const r = findCalleeSites(loadElf(path), 'ngx_create_pool');
    assert.deepEqual(r.sites, []);
    assert.equal(r.trusted, true);
  }
});

/** Builds a shared object from C source with gcc (as a module author would), in a temp dir. */
function buildSo(dir: string, name: string, source: string, flags: string[]): string {
  const c = join(dir, `${name}.c`),
    so = join(dir, `${name}.so`);
  writeFileSync(c, source);
  execFileSync('gcc', ['-O2', '-fPIC', '-shared', ...flags, '-o', so, c]);
  return so;
}

const DECLS = `
typedef struct ngx_pool_s ngx_pool_t;
ngx_pool_t *ngx_create_pool(unsigned long size, void *log);
void ngx_destroy_pool(ngx_pool_t *pool);
extern void keep(ngx_pool_t *p);
`;

test('gcc-built modules: -fno-plt calls through the GOT are sites; a tail call or a taken address makes the result untrusted', () => {
  const dir = mkdtempSync(join(tmpdir(), 'leakscope-callee-sites-'));
  try {
    const calls = `${DECLS}
ngx_pool_t *make(unsigned long n) { ngx_pool_t *p = ngx_create_pool(n, 0); if (p == 0) return 0; keep(p); return p; }
int twice(void) { ngx_pool_t *a = ngx_create_pool(1024, 0); keep(a); ngx_pool_t *b = ngx_create_pool(2048, 0); keep(b); return a != b; }
`;
    for (const [name, flags, via] of [
      ['got', ['-fno-plt'], 'got'],
      ['plt', [], 'plt'],
    ] as const) {
      const so = buildSo(dir, name, calls, [...flags]);
      const r = findCalleeSites(loadElf(so), 'ngx_create_pool');
      const od = objdumpCalls(so);
      assert.ok(r.trusted, r.problems.join('; '));
      assert.equal(od.calls.length, 3, od.lines.join('\n'));
      assert.deepEqual(
        r.sites.map((s) => s.callVaddr),
        od.calls,
        od.lines.join('\n'),
      );
      for (const s of r.sites) {
        assert.equal(s.via, via);
        assert.equal(s.returnVaddr - s.callVaddr, via === 'got' ? 6 : 5);
      }
    }
    const tail = buildSo(
      dir,
      'tail',
      `${DECLS}\nngx_pool_t *make(unsigned long n) { return ngx_create_pool(n, 0); }\n`,
      [],
    );
    const t = findCalleeSites(loadElf(tail), 'ngx_create_pool');
    assert.equal(t.trusted, false);
    assert.match(t.problems.join('; '), /tail call/);
    const taken = buildSo(
      dir,
      'taken',
      `${DECLS}\nngx_pool_t *(*creator)(unsigned long, void *) = ngx_create_pool;\n`,
      [],
    );
    const a = findCalleeSites(loadElf(taken), 'ngx_create_pool');
    assert.equal(a.trusted, false);
    assert.match(a.problems.join('; '), /called through a pointer/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
