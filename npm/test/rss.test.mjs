// Constant memory: 1 GiB streamed through encryptStream → decryptStream in one pipeline, in
// Node, with the input and output hashed on the fly. Prints the peak RSS (getrusage maxrss)
// and fails if it reaches 200 MB. Not a timing test: the time is printed, never asserted.
//
// Runs when KEYSTEAD_RSS_TEST=1 (`npm run test:rss`); KEYSTEAD_RSS_BYTES overrides the size.
import assert from 'node:assert/strict';
import { createHash, randomFillSync } from 'node:crypto';
import { test } from 'node:test';

import { decryptStream, encryptStream, Identity, init } from 'keystead';

const TOTAL = Number(process.env.KEYSTEAD_RSS_BYTES ?? 1024 ** 3);
const CHUNK = 1024 * 1024;
const LIMIT = 200 * 1000 * 1000;

test(`${TOTAL} bytes through encrypt → decrypt in constant memory`, { skip: !process.env.KEYSTEAD_RSS_TEST }, async () => {
  await init();
  const me = Identity.generate('device/rss');
  const seed = randomFillSync(Buffer.alloc(CHUNK));
  const inHash = createHash('sha256');
  let produced = 0;
  const source = new ReadableStream({
    pull(c) {
      if (produced >= TOTAL) {
        c.close();
        return;
      }
      const n = Math.min(CHUNK, TOTAL - produced);
      const chunk = Buffer.allocUnsafe(n);
      seed.copy(chunk, 0, 0, n);
      chunk.writeUInt32LE(produced / CHUNK, 0); // every chunk differs
      inHash.update(chunk);
      produced += n;
      c.enqueue(chunk);
    },
  });
  const { stream, accessBlock } = encryptStream(source, [me], me);
  const plain = decryptStream(stream, me, { accessBlock, author: me.signingPublicKey });
  const outHash = createHash('sha256');
  let received = 0;
  let sampledPeak = 0;
  const t0 = performance.now();
  for await (const c of plain) {
    outHash.update(c);
    received += c.length;
    if ((received & (64 * CHUNK - 1)) === 0) sampledPeak = Math.max(sampledPeak, process.memoryUsage().rss);
  }
  const seconds = (performance.now() - t0) / 1000;
  const peak = process.resourceUsage().maxRSS * 1024; // maxRSS is in KiB
  assert.equal(received, TOTAL);
  assert.equal(outHash.digest('hex'), inHash.digest('hex'));
  console.log(
    `streamed ${(TOTAL / 2 ** 30).toFixed(2)} GiB encrypt→decrypt in ${seconds.toFixed(1)} s ` +
      `(${(TOTAL / 1e6 / seconds).toFixed(0)} MB/s through both); peak RSS ${(peak / 1e6).toFixed(1)} MB ` +
      `(sampled rss max ${(sampledPeak / 1e6).toFixed(1)} MB; limit ${LIMIT / 1e6} MB)`,
  );
  assert.ok(peak < LIMIT, `peak RSS ${peak} bytes`);
});
