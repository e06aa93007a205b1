// exportKeys / importKeys: the frozen KSP vectors open in Node, round trips, wrong
// passphrases and damaged or weakened blobs.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decryptBlob, encryptBlob, exportKeys, Identity, importKeys, init } from 'keystead';
import { hex, rejectsWith, toHex, vectors } from './support.mjs';

await init();

for (const { name, v } of vectors('key_export')) {
  test(`key_export/${name} opens`, async () => {
    const id = await importKeys(hex(v.output.sealed_keys), v.input.passphrase);
    assert.equal(id.id, v.input.recipient_id);
    assert.equal(toHex(id.publicKey), v.output.encryption_public_key);
    assert.equal(toHex(id.signingPublicKey), v.output.signing_public_key);
    assert.equal(id.fingerprint, v.output.fingerprint);
    await rejectsWith(importKeys(hex(v.output.sealed_keys), `${v.input.passphrase}!`), 'decrypt_failed');
  });
}

test('export, import, and the imported keys work', async () => {
  const me = Identity.generate('device/me');
  const sealed = await exportKeys(me, 'a long passphrase');
  assert.ok(sealed instanceof Uint8Array);
  assert.equal(sealed.length, 180 - 1 + 'device/me'.length);
  assert.deepEqual([...sealed.subarray(0, 4)], [0x4b, 0x53, 0x50, 0x01]); // "KSP" 1
  const again = await exportKeys(me, 'a long passphrase');
  assert.notDeepEqual(again, sealed); // fresh salt every time
  const back = await importKeys(sealed, 'a long passphrase');
  assert.ok(back instanceof Identity);
  assert.equal(back.fingerprint, me.fingerprint);
  // The imported identity opens what was encrypted for the original, and signs as it.
  const { blob, accessBlock } = await encryptBlob(new Blob(['x']), [me], back);
  const out = await decryptBlob(blob, me, { accessBlock, author: me.signingPublicKey });
  assert.equal(await out.text(), 'x');
});

test('bad passphrases and blobs', async () => {
  const me = Identity.generate('device/me');
  await rejectsWith(exportKeys(me, ''), 'usage');
  await rejectsWith(exportKeys(me, 'x'.repeat(1025)), 'limit_exceeded');
  await rejectsWith(exportKeys('me', 'pw'), 'invalid_argument');
  const sealed = await exportKeys(me, 'pw');
  await rejectsWith(importKeys(sealed, 'PW'), 'decrypt_failed');
  await rejectsWith(importKeys(sealed.subarray(0, 50), 'pw'), 'malformed');
  await rejectsWith(importKeys(new Uint8Array([...sealed, 0]), 'pw'), 'malformed');
  // Memory cost lowered to 32 MiB: below the floor, refused before any passphrase is tried.
  const weak = sealed.slice();
  weak.set([0, 0, 0x80, 0], 5);
  await rejectsWith(importKeys(weak, 'pw'), 'malformed');
  // A flipped ciphertext bit.
  const flipped = sealed.slice();
  flipped[flipped.length - 1] ^= 1;
  await rejectsWith(importKeys(flipped, 'pw'), 'decrypt_failed');
  await rejectsWith(importKeys('not bytes', 'pw'), 'invalid_argument');
});
