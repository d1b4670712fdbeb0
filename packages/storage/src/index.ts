export * from './store.js';
export * from './fs-store.js';
export * from './open.js';
export * from './s3-store.js';
export * from './remembering-store.js';
