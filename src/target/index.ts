export * from './address-space.js';
export * from './live-process.js';
export * from './core-file.js';
export * from './modules.js';
export * from './find-process.js';
export * from './target-files.js';
export * from './pid-namespace.js';
