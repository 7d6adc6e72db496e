// The versioned documents of every command (`leakscope.<command>/1`): types, one encoder and one
// validating parser each. Reserved for later commands: leakscope.lua/1, leakscope.reach/1,
// leakscope.watch/1 (one module each, same shape: TYPE, encodeX, xDocument check, parseX).
export * from './json-check.js';
export * from './mem.js';
export * from './heap.js';
export * from './pools.js';
export * from './leaks.js';
export * from './analyze.js';
export * from './lua.js';
export * from './parse.js';
