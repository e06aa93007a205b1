// Browser end-to-end test: Debian's Chromium driven by playwright-core (no downloaded
// browser). A page imports the package by name, encrypts a file chosen in an
// <input type=file>, uploads the ciphertext to a local server, downloads and decrypts it;
// then decrypts the middle of a 50 MB file through HTTP Range requests.
import assert from 'node:assert/strict';
import { createHash, randomFillSync } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { launchChromium } from './chromium.mjs';

import { startServer } from '../server.mjs';

const MB = 1024 * 1024;
let server;
let browser;
let page;
let dir;

function randomFile(path, size) {
  const fd = openSync(path, 'w');
  const buf = Buffer.alloc(MB);
  for (let left = size; left > 0; left -= MB) {
    randomFillSync(buf);
    writeSync(fd, buf, 0, Math.min(MB, left));
  }
  closeSync(fd);
}

function sliceOf(path, start, end) {
  const fd = openSync(path, 'r');
  const buf = Buffer.alloc(end - start);
  readSync(fd, buf, 0, end - start, start);
  closeSync(fd);
  return buf;
}

before(async () => {
  server = await startServer();
  dir = mkdtempSync(join(tmpdir(), 'keystead-browser-'));
  browser = await launchChromium();
  page = await browser.newPage();
  page.on('console', (m) => console.log(`[page] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`[page error] ${e}`));
  await page.goto(`${server.url}/test/browser/index.html`);
  await page.waitForFunction(() => window.pageReady === true);
});

after(async () => {
  await browser?.close();
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('a file chosen in <input type=file>: encrypt, upload, download, decrypt, compare', async () => {
  const path = join(dir, 'report.pdf');
  randomFile(path, 5 * MB + 12345);
  await page.setInputFiles('#file', path);
  const r = await page.evaluate(() => window.roundTrip());
  const want = createHash('sha256').update(sliceOf(path, 0, 5 * MB + 12345)).digest('hex');
  assert.equal(r.want, want);
  assert.equal(r.got, want);
  assert.equal(server.stats.uploads >= 1, true);
  // The server stored ciphertext, not the file.
  const stored = server.files.get('report.pdf');
  assert.equal(stored.length, r.cipherSize);
  assert.notEqual(createHash('sha256').update(stored).digest('hex'), want);
});

test('ranged decrypt of the middle of a 50 MB file through HTTP Range requests', async () => {
  const size = 50 * MB;
  const path = join(dir, 'big.bin');
  randomFile(path, size);
  await page.setInputFiles('#big', path);
  const [start, end] = [25 * MB - 1000, 26 * MB + 1000];
  const before = { ...server.stats };
  const r = await page.evaluate(([s, e]) => window.rangedMiddle(s, e), [start, end]);
  assert.ok(r.same);
  assert.equal(r.length, end - start);
  assert.equal(r.got, createHash('sha256').update(sliceOf(path, start, end)).digest('hex'));
  const served = server.stats.bytesServed - before.bytesServed;
  const requests = server.stats.rangeGets - before.rangeGets;
  console.log(
    `50 MB file: encrypt ${r.encryptMs.toFixed(0)} ms in the page; ranged read of ${end - start} bytes ` +
      `took ${r.rangeMs.toFixed(1)} ms, ${requests} Range requests, ${served} bytes served`,
  );
  assert.equal(server.stats.fullGets, before.fullGets, 'no full download');
  assert.ok(served < 2 * MB, `served ${served} bytes for a ~1 MB range`);
});

test('a truncated download errors the decrypted stream', async () => {
  const r = await page.evaluate(() => window.truncatedDownload());
  assert.equal(r.error, 'KeysteadError');
  assert.ok(['truncated', 'decrypt_failed'].includes(r.code), r.code);
});
