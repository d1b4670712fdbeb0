export * from './store.js';
export * from './fs-store.js';
export * from './open.js';
