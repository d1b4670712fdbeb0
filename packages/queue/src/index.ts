export * from './connection.js';
export * from './names.js';
export * from './payloads.js';
export * from './flow.js';
export * from './shutdown.js';
export * from './trace-list.js';
