export * from './debug-files.js';
export * from './symbolizer.js';
