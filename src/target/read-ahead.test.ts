// The reader thread (process_vm_readv, pread from the first byte it cannot read) against pread on
// /proc/PID/mem (LiveProcess.readInto, the kernel's other interface): same byte counts and bytes
// at mapping ends running into gaps or other mappings, inside PROT_NONE mappings (pread reads them,
// process_vm_readv cannot), and after the target exited (nothing, as pread).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveProcess } from './index.js';
import { ReadAhead } from './read-ahead.js';
import { ensureFixturesBuilt } from '../../test/helpers/build.js';
import { startFixture } from '../../test/helpers/fixture.js';

const SLOT = 64 << 10;

function readBoth(space: LiveProcess, ra: ReadAhead, addr: number, len: number): { ra: Buffer; pread: Buffer } {
  ra.slots[0].fill(0xa5);
  ra.start(space.memoryFd()!, 0, addr, len, space.memoryPid()!);
  const got = ra.wait(0);
  const ref = Buffer.alloc(len);
  const n = space.readInto(addr, ref, 0, len);
  return { ra: Buffer.from(ra.slots[0].subarray(0, got)), pread: ref.subarray(0, n) };
}

test('read-ahead: process_vm_readv windows read what pread reads (mapping ends, gaps, PROT_NONE, exited)', async () => {
  await ensureFixturesBuilt();
  const fx = await startFixture('heap-pattern');
  let space: LiveProcess | undefined;
  try {
    space = LiveProcess.open(fx.pid);
    const ra = ReadAhead.get(SLOT);
    assert.ok(ra, 'the reader thread starts');
    const maps = space.mappings();
    let windows = 0,
      short = 0,
      protNone = 0;
    for (const m of maps) {
      if (m.path === '[vsyscall]' || m.path === '[vvar]') continue;
      const len = Math.min(SLOT, m.end - m.start + 8192);
      // The mapping's start, and its last 8 KiB running into whatever follows (gap or mapping).
      for (const addr of [m.start, Math.max(m.start, m.end - 8192)]) {
        const r = readBoth(space, ra, addr, len);
        assert.equal(r.ra.length, r.pread.length, `bytes read at 0x${addr.toString(16)} (${m.perms} ${m.path})`);
        assert.ok(r.ra.equals(r.pread), `same bytes at 0x${addr.toString(16)} (${m.perms} ${m.path})`);
        windows++;
        if (r.pread.length < len) short++;
        if (!m.perms.startsWith('r') && r.pread.length > 0) protNone++;
      }
    }
    assert.ok(short > 0, 'some windows ran into unreadable memory');
    assert.ok(protNone > 0, 'some PROT_NONE pages (thread stack guards, reserved heap) were read through pread');
    console.log(`# read-ahead: ${windows} windows, ${short} short, ${protNone} in PROT_NONE mappings`);

    // The target exits: the reader reads nothing, as pread (its pid may be reused: never read by pid then).
    const heap = maps.find((m) => m.path === '[heap]')!;
    await fx.stop();
    const r = readBoth(space, ra, heap.start, SLOT);
    assert.equal(r.pread.length, 0, 'pread after exit');
    assert.equal(r.ra.length, 0, 'reader after exit');
  } finally {
    space?.close();
    await fx.stop();
  }
});
