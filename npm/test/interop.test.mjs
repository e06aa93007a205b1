// Interop through shared files in tests/vectors/interop/: every attachment there, whether
// written by native keystead-core (native-*) or by this package (wasm-*), decrypts here
// exactly as it does natively (crates/wasm/tests/vectors.rs) and in wasm-pack tests.
//
// KEYSTEAD_WRITE_VECTORS=1 node --test test/interop.test.mjs rewrites the wasm-* files: the
// package encrypts for the reader of the native vectors, so native Rust must open them.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

import { decryptBlob, decryptRange, decryptStream, encryptBlob, Identity, importKeys, init } from 'keystead';
import { hex, pattern, readAll, rejectsWith, streamOf, toHex, vectors, vectorsDir } from './support.mjs';

await init();
const all = vectors('interop');

test('the directory holds vectors from both producers', () => {
  assert.ok(all.some((x) => x.name.startsWith('native-')));
  assert.ok(all.some((x) => x.name.startsWith('wasm-')));
});

for (const { name, v } of all) {
  test(`interop/${name} (${v.producer})`, async () => {
    const me = await importKeys(hex(v.input.reader_keys), v.input.passphrase);
    const opts = { accessBlock: hex(v.output.access_block), author: hex(v.input.author_public_key) };
    const file = hex(v.output.file);
    if (v.expect === 'ok') {
      const want = pattern(v.input.plaintext_len);
      assert.deepEqual(await readAll(decryptStream(streamOf(file, 4096), me, opts)), want);
      assert.deepEqual(new Uint8Array(await (await decryptBlob(new Blob([file]), me, opts)).arrayBuffer()), want);
      const mid = Math.floor(want.length / 2);
      assert.deepEqual(await decryptRange(new Blob([file]), mid, mid + 100, me, opts), want.slice(mid, mid + 100));
    } else {
      await rejectsWith(readAll(decryptStream(streamOf(file, 4096), me, opts)), v.expect);
    }
  });
}

if (process.env.KEYSTEAD_WRITE_VECTORS) {
  test('write the wasm-* vectors', async () => {
    const native = all.find((x) => x.name === 'native-one-segment').v;
    const reader = await importKeys(hex(native.input.reader_keys), native.input.passphrase);
    const author = Identity.generate('device/interop-wasm-author');
    for (const [name, len] of [['wasm-one-full-segment', 65536], ['wasm-three-segments', 2 * 65536 + 5]]) {
      const documentId = `interop/${name}`;
      const { blob, accessBlock } = await encryptBlob(new Blob([pattern(len)]), [reader], author, { documentId });
      const v = {
        description: `interop/${name}: decrypts to the pattern`,
        expect: 'ok',
        format: 'e2e-attachment',
        input: {
          author_public_key: toHex(author.signingPublicKey),
          document: documentId,
          passphrase: native.input.passphrase,
          plaintext_len: len,
          reader_keys: native.input.reader_keys,
        },
        output: { access_block: toHex(accessBlock), file: toHex(new Uint8Array(await blob.arrayBuffer())) },
        producer: 'keystead npm package (wasm, Node; npm/test/interop.test.mjs)',
      };
      writeFileSync(join(vectorsDir, 'interop', `${name}.json`), `${JSON.stringify(v, null, 2)}\n`);
    }
  });
}
