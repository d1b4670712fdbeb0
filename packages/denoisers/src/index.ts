export * from './types.js';
export * from './training-set.js';
export * from './analytic.js';
export * from './factory.js';
export * from './pca.js';
export * from './network.js';
export { kdeChunkSums, kdeExp } from './kde-sums.js';
export * from './pruning-tables.js';
