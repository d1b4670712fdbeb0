export * from './context.js';
export * from './shard.js';
export * from './study-json.js';
export * from './embedded.js';
export * from './execute.js';
export * from './gits.js';
export * from './pool.js';
