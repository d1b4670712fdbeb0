export * from './types.js';
export * from './hash.js';
export * from './synthetic.js';
export * from './idx.js';
export { writeCacheFile } from './cache-file.js';
