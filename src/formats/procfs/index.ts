export * from './maps.js';
