export * from './errors.js';
export * from './memory.js';
export * from './stacks.js';
export * from './mem.js';
export * from './leaks.js';
export * from './units.js';
export * from './pools.js';
export * from './release-memory.js';
