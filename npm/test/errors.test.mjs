// Error codes: the `ErrorCode` union of index.d.ts lists exactly what the built module
// reports (crates/wasm/tests/error_codes.rs checks the Rust list against the same union).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { errorCodes, init, isKeysteadError } from 'keystead';

await init();

test('index.d.ts and the module agree on the error codes', () => {
  const dts = readFileSync(new URL('../index.d.ts', import.meta.url), 'utf8');
  const union = /export type ErrorCode =([^;]*);/.exec(dts)[1];
  const declared = [...union.matchAll(/"([a-z_]+)"/g)].map((m) => m[1]);
  assert.deepEqual(errorCodes(), declared);
  assert.equal(new Set(declared).size, declared.length);
});

test('isKeysteadError', () => {
  assert.ok(!isKeysteadError(new Error('x')));
  assert.ok(!isKeysteadError({ name: 'KeysteadError', code: 'usage' })); // not an Error
  const e = Object.assign(new Error('x'), { name: 'KeysteadError', code: 'usage' });
  assert.ok(isKeysteadError(e));
});
