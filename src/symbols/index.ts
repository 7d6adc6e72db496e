export * from './debug-files.js';
export * from './symbolizer.js';
export * from './called-function.js';
