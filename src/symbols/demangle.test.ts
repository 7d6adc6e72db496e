// The demangler against GNU c++filt (binutils) on real symbols, and a Rust table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { demangle } from './demangle.js';

/** Exported C++ symbols of an object (nm -D --defined-only), without symbol versions. */
function cxxSymbols(path: string): string[] {
  const out = execFileSync('nm', ['-D', '--defined-only', path], { maxBuffer: 1 << 28 }).toString();
  return [
    ...new Set(
      out
        .split('\n')
        .map((l) => l.split(' ')[2]?.split('@')[0] ?? '')
        .filter((x) => x.startsWith('_Z')),
    ),
  ];
}

function cxxfilt(names: string[]): string[] {
  return execFileSync('c++filt', [], { input: names.join('\n') + '\n', maxBuffer: 1 << 28 })
    .toString()
    .split('\n')
    .slice(0, names.length);
}

for (const [label, path] of [
  ['libstdc++', '/usr/lib/x86_64-linux-gnu/libstdc++.so.6'],
  ['node', process.execPath],
] as const) {
  test(`C++ demangling matches c++filt on ${label}'s exported symbols`, () => {
    assert.ok(existsSync(path), path);
    const all = cxxSymbols(path);
    // every 7th symbol: a few thousand of varied shapes, fast enough for every run
    const names = all.filter((_, i) => i % 7 === 0);
    assert.ok(names.length >= 300, `${names.length} symbols`);
    const want = cxxfilt(names);
    let same = 0,
      declined = 0;
    const wrong: string[] = [];
    names.forEach((name, i) => {
      const got = demangle(name);
      if (got === want[i]) same++;
      else if (got === name) declined++;
      else wrong.push(`${name}\n  ours:     ${got}\n  c++filt:  ${want[i]}`);
    });
    console.log(
      `# ${label}: ${names.length} symbols, ${same} as c++filt, ${declined} left mangled, ${wrong.length} different`,
    );
    // libstdc++: every name as c++filt. node (V8, ICU: packs, decltype, lambdas): at least 97% as
    // c++filt; the known differences are spacing of ">>" after packs and reference-to-array declarators.
    if (label === 'libstdc++')
      assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} names demangled differently from c++filt`);
    else assert.ok(wrong.length <= names.length * 0.02, `${wrong.length} different:\n${wrong.slice(0, 5).join('\n')}`);
    assert.ok(same >= names.length * 0.97, `at least 97% demangled (${same}/${names.length})`);
  });
}

test('C++ names and clones as c++filt prints them', () => {
  const names = [
    '_ZN4node24NodeArrayBufferAllocator21AllocateUninitializedEm',
    '_Z3fooPFviEPKc',
    '_ZNSt6vectorIiSaIiEE9push_backERKi',
    '_ZN12_GLOBAL__N_13barEv',
    '_Z4leakv.cold',
    '_ZZ4mainE1x',
    '_ZN1AC2Ev',
    '_ZN1AD0Ev',
    '_ZTV1A',
    '_ZNK1A3getEv',
    'main',
    'malloc',
  ];
  assert.deepEqual(names.map(demangle), cxxfilt(names));
});

test('Rust symbols: legacy (hash dropped) and v0', () => {
  const table: Array<[string, string]> = [
    ['_ZN4core3ptr13drop_in_place17h0123456789abcdefE', 'core::ptr::drop_in_place'],
    ['_ZN3std2rt10lang_start17h5ac9f7ea8f8e0e0fE', 'std::rt::lang_start'],
    ['_ZN5alloc5alloc18handle_alloc_error17h2f4e5a6b7c8d9e0fE', 'alloc::alloc::handle_alloc_error'],
    [
      '_ZN60_$LT$std..io..error..Error$u20$as$u20$core..fmt..Display$GT$3fmt17h1234567890abcdefE',
      '<std::io::error::Error as core::fmt::Display>::fmt',
    ],
    ['_ZN4leak4main28_$u7b$$u7b$closure$u7d$$u7d$17h0000000000000001E', 'leak::main::{{closure}}'],
    [
      '_ZN70_$LT$alloc..vec..Vec$LT$T$C$A$GT$$u20$as$u20$core..ops..drop..Drop$GT$4drop17h3a2b1c0d9e8f7a6bE',
      '<alloc::vec::Vec<T,A> as core::ops::drop::Drop>::drop',
    ],
    ['_RNvCs1234_7mycrate4main', 'mycrate::main'],
    ['_RNvNtCs1234_7mycrate3foo3bar', 'mycrate::foo::bar'],
    ['_RNvMNtCs1234_7mycrate3fooNtB2_6Parser5parse', '<mycrate::foo::Parser>::parse'],
    ['_RNvXCs1234_7mycrateNtB2_3FooNtNtCs5678_4core5clone5Clone5clone', '<mycrate::Foo as core::clone::Clone>::clone'],
    // rustc 1.x -C symbol-mangling-version=v0 (c++filt shows the same paths with crate hashes m[...])
    ['_RINvCskK7mfDs1mzF_1m7genericNtB2_3FooEB2_', 'm::generic::<m::Foo>'],
    ['_RNvCskK7mfDs1mzF_1m4main', 'm::main'],
  ];
  for (const [mangled, want] of table) assert.equal(demangle(mangled), want, mangled);
});
