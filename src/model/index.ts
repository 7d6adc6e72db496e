export * from './errors.js';
export * from './memory.js';
