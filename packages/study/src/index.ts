export * from './spec.js';
export * from './errors.js';
export * from './canonical.js';
export * from './datasets.js';
export * from './resolve.js';
export * from './plan.js';
export * from './remote-data.js';
