// The lazily loaded wasm module, shared by the public API (api.js) and the entry points
// (web.js, node.js), which register how to load it for their environment.

let loader = null;
let backend = null;
let loading = null;

/** Registers the environment's loader: `(input) => Promise<wasm-bindgen module>`. */
export function setLoader(fn) {
  loader = fn;
}

/** Loads the wasm module once; later calls resolve at once. */
export function load(input) {
  if (backend) return Promise.resolve();
  if (!loading) {
    loading = loader(input).then(
      (m) => {
        backend = m;
      },
      (e) => {
        loading = null;
        throw e;
      },
    );
  }
  return loading;
}

/** The loaded module, or `null` before `init()`. */
export function loaded() {
  return backend;
}

/** A `KeysteadError` made on the JS side (same shape as the ones from wasm). */
export function keysteadError(code, message) {
  const e = new Error(message);
  e.name = 'KeysteadError';
  e.code = code;
  return e;
}

/** The loaded module, or a `usage` error. */
export function wasm() {
  if (backend) return backend;
  throw keysteadError('usage', 'keystead is not initialised: await init() first');
}
