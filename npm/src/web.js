// Entry point for browsers and bundlers: ESM, the wasm-bindgen `web` target. `init()`
// fetches and compiles the .wasm on first call (from beside this package, or from `input`).
import { setLoader } from './backend.js';

setLoader(async (input) => {
  const m = await import('../pkg/web/keystead_wasm.js');
  await m.default(input === undefined ? undefined : { module_or_path: input });
  return m;
});

export * from './api.js';
export * from './directory.js';
