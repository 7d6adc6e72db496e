export * from './chunks.js';
export * from './layouts.js';
export * from './resolve-layouts.js';
export * from './pool.js';
export * from './cycle.js';
export * from './references.js';
export * from './pools.js';
export * from './shm.js';
