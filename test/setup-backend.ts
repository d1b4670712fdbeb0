import { backendFromEnv, initBackend } from '@trajlab/backend';

// Every test file runs on the backend TRAJLAB_BACKEND selects (auto: wasm on machines without tfjs-node).
await initBackend(backendFromEnv());
