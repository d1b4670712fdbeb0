export * from './build.js';
export * from './png.js';
export * from './svg.js';
export * from './projection.js';
