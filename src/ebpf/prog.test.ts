import { test } from 'node:test';
import assert from 'node:assert/strict';
import { R0, R1, R2, R10, exit, ldx, mov64, stx } from './asm.js';
import { checkPrivileges } from './features.js';
import { listObjectIds, loadProgram } from './prog.js';
import { isLeakscopeError } from '../model/errors.js';

const priv = checkPrivileges();
const skip = priv.ok ? false : `needs CAP_BPF: ${priv.detail}`;

test('prog: a valid program loads and has a kernel id', { skip }, () => {
  const p = loadProgram({ name: 'ok', body: [mov64(R0, 0), exit()] });
  try {
    assert.ok(p.fd > 0);
    assert.ok(listObjectIds('prog').includes(p.id()));
  } finally {
    p.close();
  }
});

test('prog: reading an uninitialised register fails with the verifier message', { skip }, () => {
  assert.throws(
    () => loadProgram({ name: 'bad_reg', body: [mov64(R0, R2), exit()] }),
    (e: unknown) => {
      assert.ok(isLeakscopeError(e));
      assert.equal(e.code, 'malformed');
      assert.match(e.message, /R2 !read_ok/); // kernel/bpf/verifier.c check_reg_arg()
      assert.match(e.message, /load program bad_reg/);
      return true;
    },
  );
});

test('prog: an out-of-bounds stack access fails with the verifier message', { skip }, () => {
  assert.throws(
    () => loadProgram({ name: 'bad_stack', body: [stx('dw', R10, 8, R1), mov64(R0, 0), exit()] }),
    (e: unknown) => {
      assert.ok(isLeakscopeError(e));
      assert.equal(e.code, 'malformed');
      assert.match(e.message, /invalid write to stack R10 off=8 size=8/);
      return true;
    },
  );
  assert.throws(
    () => loadProgram({ name: 'bad_read', body: [ldx('dw', R0, R10, -520), exit()] }),
    /invalid read from stack R10 off=-520 size=8|invalid stack off=-520/,
  );
});

test('prog: a program without exit is rejected with the log', { skip }, () => {
  assert.throws(
    () => loadProgram({ name: 'no_exit', body: [mov64(R0, 0)] }),
    /last insn is not an exit or jmp|jump out of range/,
  );
});
