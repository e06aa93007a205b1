// Adversarial ciphertexts through the built package: streamed and ranged decryption reject
// swapped, duplicated, truncated and cross-file segments and a wrong key commitment, and a
// truncated stream always errors, never ends cleanly.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decryptRange, decryptStream, encryptBlob, Identity, importKeys, init } from 'keystead';
import { concat, hex, layout, pattern, readAll, rejectsWith, SEG, SEG_CT, streamOf, TRAILER, vectors } from './support.mjs';

await init();
const author = Identity.generate('device/author');
const reader = Identity.generate('device/reader');
const plain = pattern(4 * SEG + 500); // five segments
const a = await make('doc/a');
const b = await make('doc/b');

async function make(documentId) {
  const { blob, accessBlock } = await encryptBlob(new Blob([plain]), [reader], author, { documentId });
  return { file: new Uint8Array(await blob.arrayBuffer()), accessBlock };
}

const opts = (block = a.accessBlock) => ({ accessBlock: block, author: author.signingPublicKey });

/** Streamed decryption, in several chunkings; all must fail with one of `codes`. */
async function streamFails(file, codes, block) {
  for (const chunk of [1000, SEG_CT, 1 << 20]) {
    await rejectsWith(readAll(decryptStream(streamOf(file, chunk), reader, opts(block))), ...codes);
  }
}

const rangeOf = (file, start, end, block) => decryptRange(new Blob([file]), start, end, reader, opts(block));

test('the unmodified file decrypts', async () => {
  assert.deepEqual(await readAll(decryptStream(streamOf(a.file), reader, opts())), plain);
  assert.deepEqual(await rangeOf(a.file, SEG - 3, SEG + 3), plain.slice(SEG - 3, SEG + 3));
});

test('swapped segments', async () => {
  const { seg } = layout(a.file);
  const [s0, s1] = [seg(0), seg(1)];
  const f = a.file.slice();
  f.set(a.file.subarray(...s1), s0[0]);
  f.set(a.file.subarray(...s0), s1[0]);
  await streamFails(f, ['decrypt_failed']);
  await rejectsWith(rangeOf(f, 0, 10), 'decrypt_failed');
  await rejectsWith(rangeOf(f, SEG, SEG + 10), 'decrypt_failed');
});

test('duplicated segments', async () => {
  const { seg, h } = layout(a.file);
  const s1 = seg(1);
  const f = concat(a.file.subarray(0, s1[1]), a.file.subarray(...s1), a.file.subarray(s1[1]));
  await streamFails(f, ['decrypt_failed']);
  await rejectsWith(rangeOf(f, 2 * SEG, 2 * SEG + 1), 'decrypt_failed');
  // The header repeated in front of the body.
  await streamFails(concat(a.file.subarray(0, h), a.file), ['decrypt_failed', 'malformed']);
});

test('truncation errors, never ends cleanly', async () => {
  const { h } = layout(a.file);
  const cuts = [0, 3, 6, h - 1, h, h + 20, a.file.length - TRAILER, a.file.length - 1];
  for (let i = 1; i <= 4; i++) cuts.push(h + i * SEG_CT, h + i * SEG_CT + TRAILER, h + i * SEG_CT + 1);
  for (const cut of cuts) {
    await streamFails(a.file.subarray(0, cut), ['truncated', 'decrypt_failed', 'bad_signature', 'malformed']);
  }
  await streamFails(a.file.subarray(0, h + 10), ['truncated']);
  // Ranged reads that reach the end of a truncated file fail, even past its end.
  for (const cut of [h + 4 * SEG_CT, a.file.length - TRAILER, a.file.length - 1]) {
    const f = a.file.subarray(0, cut);
    await rejectsWith(rangeOf(f, plain.length - 10, plain.length), 'decrypt_failed', 'truncated', 'malformed');
    await rejectsWith(rangeOf(f, plain.length + 5, plain.length + 6), 'decrypt_failed', 'truncated', 'malformed');
  }
});

test('segments of another file', async () => {
  const { seg } = layout(a.file);
  const f = a.file.slice();
  f.set(b.file.subarray(...layout(b.file).seg(2)), seg(2)[0]);
  await streamFails(f, ['decrypt_failed']);
  await rejectsWith(rangeOf(f, 2 * SEG + 1, 2 * SEG + 2), 'decrypt_failed');
  // Another file's access block.
  await streamFails(a.file, ['decrypt_failed'], b.accessBlock);
  await rejectsWith(rangeOf(a.file, 0, 1, b.accessBlock), 'decrypt_failed');
  // Another file's trailer.
  await streamFails(concat(a.file.subarray(0, a.file.length - TRAILER), b.file.subarray(b.file.length - TRAILER)), ['bad_signature']);
});

test('a wrong key commitment (malicious author) is rejected before any plaintext', async () => {
  const { v } = vectors('interop').find((x) => x.name === 'native-wrong-commitment');
  const victim = await importKeys(hex(v.input.reader_keys), v.input.passphrase);
  const o = { accessBlock: hex(v.output.access_block), author: hex(v.input.author_public_key) };
  const file = hex(v.output.file);
  const received = [];
  const out = decryptStream(streamOf(file, 100), victim, o);
  await rejectsWith(
    (async () => {
      for await (const c of out) received.push(c);
    })(),
    'decrypt_failed',
  );
  assert.equal(received.length, 0);
  await rejectsWith(decryptRange(new Blob([file]), 0, 10, victim, o), 'decrypt_failed');
});

test('wrong author, no grant, untrusted granter', async () => {
  const mallory = Identity.generate('device/mallory');
  const asMallory = { accessBlock: a.accessBlock, author: mallory.signingPublicKey, trustedGranters: [author.signingPublicKey] };
  await rejectsWith(readAll(decryptStream(streamOf(a.file), reader, asMallory)), 'bad_signature');
  await rejectsWith(readAll(decryptStream(streamOf(a.file), mallory, opts())), 'no_grant');
  const untrusted = { ...opts(), trustedGranters: [mallory.signingPublicKey] };
  await rejectsWith(readAll(decryptStream(streamOf(a.file), reader, untrusted)), 'no_grant');
});
