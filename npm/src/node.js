// Entry point for Node (≥ 20): ESM over the wasm-bindgen `nodejs` target, which compiles the
// .wasm synchronously when it is first required: here, on the first `init()`.
import { createRequire } from 'node:module';
import { setLoader } from './backend.js';

const require = createRequire(import.meta.url);
setLoader(async () => require('../pkg/node/keystead_wasm.js'));

export * from './api.js';
export * from './directory.js';
