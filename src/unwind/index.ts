export * from './unwinder.js';
export * from './cfi-cache.js';
export * from './module-map.js';
