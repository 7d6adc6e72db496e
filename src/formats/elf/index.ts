export * from './elf.js';
export * from './load.js';
export * from './core.js';
export * from './relocations.js';
