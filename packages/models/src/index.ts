// Model files, loading and metadata: light to import (tfjs-layers and tfjs-converter load only when a model does).
// Training lives in '@trajlab/models/training'.
export * from './model-files.js';
export * from './io-handler.js';
export * from './metadata.js';
export * from './local-model.js';
export * from './load.js';
