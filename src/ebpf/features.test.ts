import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { checkEbpfSupport, kernelVersion, requireEbpf } from './features.js';

test('features: kernel version parsing', () => {
  assert.deepEqual(kernelVersion('6.18.44-fc-v669'), [6, 18]);
  assert.deepEqual(kernelVersion('5.4.0-150-generic'), [5, 4]);
  assert.deepEqual(kernelVersion('garbage'), [0, 0]);
});

test('features: every check has a one-line explanation and matches the machine', () => {
  const checks = checkEbpfSupport();
  for (const c of checks) {
    assert.ok(c.detail.length > 0 && !c.detail.includes('\n'), `${c.name}: one line`);
  }
  const pmu = checks.find((c) => c.name === 'uprobe-pmu')!;
  assert.equal(pmu.ok, existsSync('/sys/bus/event_source/devices/uprobe/type'));
  const root = process.getuid?.() === 0;
  if (root) {
    // root on this machine (CI too): everything the runtime needs is there.
    assert.deepEqual(
      checks.filter((c) => !c.ok),
      [],
    );
    assert.doesNotThrow(() => requireEbpf());
  } else {
    assert.throws(() => requireEbpf(), /eBPF tracing unavailable/);
  }
});
