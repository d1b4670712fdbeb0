// Training denoisers (imports tfjs-layers): networks, the EDM trainer, checkpoints, evaluation, wasm kernels.
export * from './architectures.js';
export * from './wasm-kernels.js';
export * from './train.js';
export * from './evaluate.js';
export * from './adam.js';
export * from './network-io.js';
