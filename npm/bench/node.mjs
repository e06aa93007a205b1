// Node throughput of encryptStream/decryptStream (64 MiB, 1 MiB chunks), for the release
// build (pkg/) and, if present, the +simd128 build (pkg-simd/, `node scripts/build.mjs
// --profile simd --out npm/pkg-simd`). Prints MB/s (10^6 bytes/s) and the ratio to the native
// figure given as NATIVE_MBPS (default: docs/BENCHMARKS.md's 1320 MB/s).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { bench } from './common.mjs';

const require = createRequire(import.meta.url);
const native = Number(process.env.NATIVE_MBPS ?? 1320);
const builds = [['release', '../pkg/node/keystead_wasm.js'], ['simd', '../pkg-simd/node/keystead_wasm.js']];

for (const [name, path] of builds) {
  if (!existsSync(new URL(path, import.meta.url))) {
    console.log(`${name}: not built, skipped`);
    continue;
  }
  const m = require(path);
  const k = { ...m, init: async () => {} };
  const r = await bench(k, { runs: Number(process.env.RUNS ?? 5) });
  const f = (x) => `${x.best.toFixed(0)} MB/s best, ${x.median.toFixed(0)} median (${(x.median / native * 100).toFixed(0)} % of native)`;
  console.log(`node ${process.version} ${name}: encrypt ${f(r.encrypt)}; decrypt ${f(r.decrypt)}`);
}
