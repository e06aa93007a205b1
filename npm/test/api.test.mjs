// The package as a user imports it (`import … from 'keystead'`, resolved through the
// package's exports map to the built module): round trips and argument handling.
import assert from 'node:assert/strict';
import { createReadStream, writeFileSync, mkdtempSync, openAsBlob } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';

import {
  decryptBlob,
  decryptRange,
  decryptStream,
  encryptBlob,
  encryptStream,
  httpRangeSource,
  Identity,
  init,
  isKeysteadError,
} from 'keystead';
import { pattern, readAll, rejectsWith, SEG, streamOf, throwsWith } from './support.mjs';

await init();
const alice = Identity.generate('device/alice');
const bob = Identity.generate('device/bob');
const opts = (accessBlock, author = alice) => ({ accessBlock, author: author.signingPublicKey });

test('the README example', async () => {
  const file = new Blob(['hello, encrypted world']);
  const me = Identity.generate('device/alice-laptop');
  const { blob, accessBlock } = await encryptBlob(file, [me], me);
  const plain = await decryptBlob(blob, me, { accessBlock, author: me.signingPublicKey });
  assert.equal(await plain.text(), 'hello, encrypted world');
});

test('identity handles', () => {
  assert.ok(alice instanceof Identity);
  assert.ok(!({} instanceof Identity));
  assert.equal(alice.id, 'device/alice');
  assert.equal(alice.publicKey.length, 32);
  assert.equal(alice.signingPublicKey.length, 32);
  assert.match(alice.fingerprint, /^[0-9a-f]{64}$/);
  assert.deepEqual(alice.recipient, { id: 'device/alice', publicKey: alice.publicKey });
  assert.throws(() => new Identity(), TypeError);
  throwsWith(() => Identity.generate(''), 'invalid_id');
  throwsWith(() => Identity.generate('a\nb'), 'invalid_id');
  // No private key is reachable from JS.
  const names = [...Object.getOwnPropertyNames(Object.getPrototypeOf(alice)), ...Object.keys(alice)];
  assert.ok(!names.some((n) => /secret|private|seed/i.test(n)), names.join());
});

for (const len of [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG + 12345]) {
  for (const chunk of [1000, SEG, 5 * SEG + 3]) {
    if (len > 200_000 && chunk === 1000) continue; // slow and adds nothing
    test(`stream round trip: ${len} bytes in chunks of ${chunk}`, async () => {
      const plain = pattern(len);
      const enc = encryptStream(streamOf(plain, chunk), [alice, bob.recipient], alice, {
        documentId: `doc/${len}`,
      });
      assert.equal(enc.documentId, `doc/${len}`);
      const file = await readAll(enc.stream);
      for (const reader of [alice, bob]) {
        const out = await readAll(decryptStream(streamOf(file, chunk), reader, opts(enc.accessBlock)));
        assert.deepEqual(out, plain);
      }
    });
  }
}

test('Blob and File inputs, Node file streams, output type', async () => {
  const plain = pattern(300_000);
  const dir = mkdtempSync(join(tmpdir(), 'keystead-'));
  writeFileSync(join(dir, 'plain.bin'), plain);
  const file = await openAsBlob(join(dir, 'plain.bin'));
  const { blob, accessBlock, documentId } = await encryptBlob(file, [bob], alice);
  assert.match(documentId, /^attachment\/[0-9a-f]{32}$/);
  const head = new Uint8Array(await blob.slice(0, 6).arrayBuffer());
  assert.equal(blob.size, ((head[4] << 8) | head[5]) + plain.length + 5 * 16 + 68); // 5 segments
  const out = await decryptBlob(blob, bob, { ...opts(accessBlock), type: 'application/x-test' });
  assert.equal(out.type, 'application/x-test');
  assert.deepEqual(new Uint8Array(await out.arrayBuffer()), plain);
  // A Node Readable, converted to a web stream as the README shows.
  writeFileSync(join(dir, 'cipher.bin'), new Uint8Array(await blob.arrayBuffer()));
  const web = Readable.toWeb(createReadStream(join(dir, 'cipher.bin')));
  assert.deepEqual(await readAll(decryptStream(web, bob, opts(accessBlock))), plain);
  // Ranges from a file-backed Blob.
  const cipher = await openAsBlob(join(dir, 'cipher.bin'));
  assert.deepEqual(await decryptRange(cipher, 100_000, 200_000, bob, opts(accessBlock)), plain.slice(100_000, 200_000));
});

test('ranged reads through a fetcher read only what they need', async () => {
  const plain = pattern(40 * SEG + 7);
  const { blob, accessBlock } = await encryptBlob(new Blob([plain]), [bob], alice);
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const requests = [];
  const source = {
    size: bytes.length,
    async read(start, end) {
      requests.push([start, end]);
      return bytes.slice(start, end);
    },
  };
  const mid = 20 * SEG + 100;
  assert.deepEqual(await decryptRange(source, mid, mid + 3 * SEG, bob, opts(accessBlock)), plain.slice(mid, mid + 3 * SEG));
  const fetched = requests.reduce((n, [s, e]) => n + e - s, 0);
  assert.ok(fetched < 5 * SEG, `fetched ${fetched} bytes for a 3-segment range`);
  assert.equal(requests.length, 2, 'one request for the header, one for the segments');
  // Past the end: clamped, and the final segment is checked.
  assert.deepEqual(await decryptRange(source, plain.length - 5, plain.length + 100, bob, opts(accessBlock)), plain.slice(-5));
  assert.deepEqual(await decryptRange(source, plain.length + 1, plain.length + 2, bob, opts(accessBlock)), new Uint8Array(0));
});

test('argument errors are invalid_argument KeysteadErrors', async () => {
  const { accessBlock } = encryptStream(streamOf(pattern(10)), [alice], alice);
  throwsWith(() => encryptStream('nope', [alice], alice), 'invalid_argument');
  throwsWith(() => encryptStream(streamOf(pattern(1)), [], alice), 'invalid_argument');
  throwsWith(() => encryptStream(streamOf(pattern(1)), alice, alice), 'invalid_argument');
  throwsWith(() => encryptStream(streamOf(pattern(1)), [{ id: 'x', publicKey: new Uint8Array(31) }], alice), 'invalid_key');
  throwsWith(() => encryptStream(streamOf(pattern(1)), [alice], alice.signingPublicKey), 'invalid_argument');
  throwsWith(() => encryptStream(streamOf(pattern(1)), [alice], alice, { documentId: '' }), 'invalid_id');
  throwsWith(() => decryptStream(streamOf(pattern(1)), alice, {}), 'invalid_argument');
  throwsWith(() => decryptStream(streamOf(pattern(1)), alice, { accessBlock, author: new Uint8Array(3) }), 'invalid_key');
  throwsWith(() => decryptStream(streamOf(pattern(1)), alice, { accessBlock: new Uint8Array(5), author: alice.signingPublicKey }), 'malformed');
  const locked = streamOf(pattern(1));
  locked.getReader();
  throwsWith(() => encryptStream(locked, [alice], alice), 'invalid_argument');
  await rejectsWith(encryptBlob('not a blob', [alice], alice), 'invalid_argument');
  await rejectsWith(decryptRange(new Blob([]), -1, 5, alice, opts(accessBlock)), 'invalid_argument');
  await rejectsWith(decryptRange(new Blob([]), 0.5, 5, alice, opts(accessBlock)), 'invalid_argument');
  await rejectsWith(decryptRange({ size: 10 }, 0, 5, alice, opts(accessBlock)), 'invalid_argument');
  await rejectsWith(decryptBlob(new Blob([]), 'alice', opts(accessBlock)), 'invalid_argument');
  // A stream of strings, not bytes.
  const strings = new ReadableStream({ start(c) { c.enqueue('text'); c.close(); } });
  await assert.rejects(readAll(encryptStream(strings, [alice], alice).stream), (e) => isKeysteadError(e) && e.code === 'invalid_argument');
});

test('an identity freed mid-stream does not break a running stream', async () => {
  const carol = Identity.generate('device/carol');
  const plain = pattern(4 * SEG);
  const enc = encryptStream(streamOf(plain), [carol], carol);
  const author = carol.signingPublicKey;
  const out = decryptStream(enc.stream, carol, { accessBlock: enc.accessBlock, author });
  carol.free();
  assert.deepEqual(await readAll(out), plain);
});

test('cancelling the output cancels the input', async () => {
  let cancelled = null;
  const input = new ReadableStream({
    pull(c) {
      c.enqueue(pattern(SEG));
    },
    cancel(reason) {
      cancelled = reason;
    },
  });
  const { stream } = encryptStream(input, [alice], alice);
  const reader = stream.getReader();
  await reader.read();
  await reader.read();
  await reader.cancel('enough');
  assert.equal(cancelled, 'enough');
});

test('an erroring input stream errors the output with source_failed', async () => {
  let n = 0;
  const input = new ReadableStream({
    pull(c) {
      if (n++ < 2) c.enqueue(pattern(SEG));
      else c.error(new Error('disk on fire'));
    },
  });
  await assert.rejects(readAll(encryptStream(input, [alice], alice).stream), (e) => {
    assert.equal(e.code, 'source_failed');
    assert.equal(e.cause.message, 'disk on fire');
    return true;
  });
});

test('httpRangeSource reads ranges over HTTP', async () => {
  const { startServer } = await import('./server.mjs');
  const server = await startServer();
  try {
    const plain = pattern(10 * SEG + 3);
    const { blob, accessBlock } = await encryptBlob(new Blob([plain]), [bob], alice);
    server.files.set('a.bin', Buffer.from(await blob.arrayBuffer()));
    const source = await httpRangeSource(`${server.url}/files/a.bin`, { headers: { 'X-Test': '1' } });
    assert.equal(source.size, blob.size);
    const got = await decryptRange(source, 5 * SEG - 10, 5 * SEG + 10, bob, opts(accessBlock));
    assert.deepEqual(got, plain.slice(5 * SEG - 10, 5 * SEG + 10));
    assert.ok(server.stats.bytesServed < 3 * SEG, `served ${server.stats.bytesServed} bytes`);
    assert.equal(server.stats.fullGets, 0);
    await rejectsWith(httpRangeSource(`${server.url}/files/missing.bin`), 'source_failed');
  } finally {
    await server.close();
  }
});
