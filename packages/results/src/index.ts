export * from './arrow.js';
export * from './schemas.js';
export * from './stats.js';
export * from './aggregate.js';
