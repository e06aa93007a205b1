// The benchmark body shared by Node (bench/node.mjs) and Chromium (bench/browser.mjs):
// encrypt and decrypt SIZE bytes through the streaming API, input in 1 MiB chunks.
export const MiB = 1024 * 1024;

function chunks(bytes, size) {
  const out = [];
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size));
  return out;
}

function streamOfChunks(list) {
  let i = 0;
  return new ReadableStream({
    pull(c) {
      if (i < list.length) c.enqueue(list[i++]);
      else c.close();
    },
  });
}

async function drain(stream, keep) {
  const parts = [];
  let n = 0;
  for await (const c of stream) {
    n += c.length;
    if (keep) parts.push(c);
  }
  return { n, parts };
}

/** Runs `runs` timed iterations of each direction; returns the best and median MB/s. */
export async function bench(k, { size = 64 * MiB, runs = 5, now = () => performance.now() } = {}) {
  await k.init();
  const me = k.Identity.generate('device/bench');
  const plain = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(plain.subarray(i, i + 65536));
  const input = chunks(plain, MiB);
  // One ciphertext to decrypt, re-chunked to 1 MiB.
  const enc = k.encryptStream(streamOfChunks(input), [me], me);
  const { parts } = await drain(enc.stream, true);
  const file = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    file.set(p, at);
    at += p.length;
  }
  const cipherChunks = chunks(file, MiB);
  const opts = { accessBlock: enc.accessBlock, author: me.signingPublicKey };
  const results = { encrypt: [], decrypt: [] };
  for (let r = 0; r < runs + 1; r++) {
    let t = now();
    const e = k.encryptStream(streamOfChunks(input), [me], me);
    const ne = (await drain(e.stream, false)).n;
    const te = now() - t;
    t = now();
    const nd = (await drain(k.decryptStream(streamOfChunks(cipherChunks), me, opts), false)).n;
    const td = now() - t;
    if (ne !== file.length || nd !== size) throw new Error('length mismatch');
    if (r === 0) continue; // warm-up
    results.encrypt.push(size / 1e6 / (te / 1e3));
    results.decrypt.push(size / 1e6 / (td / 1e3));
  }
  const summary = (xs) => {
    const s = [...xs].sort((a, b) => a - b);
    return { best: s[s.length - 1], median: s[Math.floor(s.length / 2)], runs: s };
  };
  return { size, encrypt: summary(results.encrypt), decrypt: summary(results.decrypt) };
}
