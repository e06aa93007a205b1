// Lazy initialisation: importing the package loads no wasm; everything but init() refuses
// to run before it with a `usage` KeysteadError; init() is idempotent. (Each test file runs
// in its own process, so nothing here is initialised yet.)
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';

import * as keystead from 'keystead';

const require = createRequire(import.meta.url);
const wasmModule = require.resolve('../pkg/node/keystead_wasm.js');

test('nothing is loaded before init()', async () => {
  assert.ok(!(wasmModule in require.cache), 'the wasm module was loaded at import');
  assert.throws(() => keystead.Identity.generate('device/x'), (e) => e.code === 'usage' && /init\(\)/.test(e.message));
  assert.throws(() => keystead.errorCodes(), (e) => keystead.isKeysteadError(e) && e.code === 'usage');
  await assert.rejects(keystead.importKeys(new Uint8Array(0), 'x'), (e) => e.code === 'usage');
  assert.ok(!({} instanceof keystead.Identity));
});

test('init() loads once', async () => {
  await Promise.all([keystead.init(), keystead.init()]);
  assert.ok(wasmModule in require.cache);
  await keystead.init();
  assert.ok(keystead.Identity.generate('device/x') instanceof keystead.Identity);
});

test('the exports are the documented API', () => {
  assert.deepEqual(Object.keys(keystead).sort(), [
    'Directory',
    'DirectoryConflictError',
    'DirectoryError',
    'Group',
    'Identity',
    'User',
    'createGroup',
    'createUser',
    'decryptBlob',
    'decryptRange',
    'decryptStream',
    'encryptBlob',
    'encryptStream',
    'errorCodes',
    'exportKeys',
    'grantAccess',
    'httpRangeSource',
    'importKeys',
    'init',
    'isKeysteadError',
    'recover',
    'reencrypt',
    'revokeAccess',
    'safetyCode',
  ]);
});
