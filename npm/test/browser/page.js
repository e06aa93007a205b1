// The browser side of playwright.test.mjs: what an application page does with the package.
import { decryptRange, decryptStream, encryptBlob, encryptStream, httpRangeSource, Identity, init } from 'keystead';

const log = (msg) => {
  document.getElementById('log').textContent += `${msg}\n`;
};

async function sha256(bytes) {
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return [...d].map((b) => b.toString(16).padStart(2, '0')).join('');
}

async function digestStream(stream) {
  // The whole plaintext is hashed at once for simplicity (test files are a few MB).
  return sha256(await new Response(stream).arrayBuffer());
}

let me;
async function ready() {
  await init();
  me ??= Identity.generate('device/browser');
  return me;
}

// Encrypts the file chosen in #file, uploads the ciphertext, downloads it, decrypts it while
// it streams in, and compares.
window.roundTrip = async () => {
  const me = await ready();
  const file = document.getElementById('file').files[0];
  const { stream, accessBlock, documentId } = encryptStream(file, [me], me, { documentId: `upload/${file.name}` });
  const ciphertext = await new Response(stream).blob();
  const put = await fetch(`/files/${encodeURIComponent(file.name)}`, { method: 'PUT', body: ciphertext });
  if (put.status !== 201) throw new Error(`upload failed: ${put.status}`);
  log(`uploaded ${ciphertext.size} bytes of ciphertext for ${file.size} bytes (${documentId})`);
  const res = await fetch(`/files/${encodeURIComponent(file.name)}`);
  const plain = decryptStream(res.body, me, { accessBlock, author: me.signingPublicKey });
  const got = await digestStream(plain);
  const want = await sha256(await file.arrayBuffer());
  log(`round trip ${got === want ? 'ok' : 'MISMATCH'}`);
  return { size: file.size, cipherSize: ciphertext.size, got, want };
};

// Encrypts the file chosen in #big, uploads it, then decrypts [start, end) of it through HTTP
// Range requests, and compares with the same slice of the original file.
window.rangedMiddle = async (start, end) => {
  const me = await ready();
  const file = document.getElementById('big').files[0];
  const t0 = performance.now();
  const { blob, accessBlock } = await encryptBlob(file, [me], me);
  const t1 = performance.now();
  const put = await fetch('/files/big.bin', { method: 'PUT', body: blob });
  if (put.status !== 201) throw new Error(`upload failed: ${put.status}`);
  const source = await httpRangeSource('/files/big.bin');
  const t2 = performance.now();
  const bytes = await decryptRange(source, start, end, me, { accessBlock, author: me.signingPublicKey });
  const t3 = performance.now();
  const want = new Uint8Array(await file.slice(start, end).arrayBuffer());
  const same = bytes.length === want.length && bytes.every((b, i) => b === want[i]);
  log(`ranged ${start}..${end} of ${file.size}: ${same ? 'ok' : 'MISMATCH'}`);
  return { same, length: bytes.length, encryptMs: t1 - t0, rangeMs: t3 - t2, cipherSize: blob.size, got: await sha256(bytes) };
};

// Tampering seen by the page: a truncated download errors the stream with a KeysteadError.
window.truncatedDownload = async () => {
  const me = await ready();
  const { blob, accessBlock } = await encryptBlob(new Blob([new Uint8Array(300000)]), [me], me);
  await fetch('/files/cut.bin', { method: 'PUT', body: blob.slice(0, 200000) });
  const res = await fetch('/files/cut.bin');
  // Read the stream itself: `new Response(stream)` would replace the stream's error with a
  // generic TypeError in Chromium.
  const reader = decryptStream(res.body, me, { accessBlock, author: me.signingPublicKey }).getReader();
  try {
    while (!(await reader.read()).done);
    return { error: null };
  } catch (e) {
    return { error: e.name, code: e.code ?? null, message: String(e.message) };
  }
};

window.pageReady = true;
