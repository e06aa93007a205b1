// Helpers shared by the Node tests (not a test file itself).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const vectorsDir = join(dirname(fileURLToPath(import.meta.url)), '../../tests/vectors');

/** The JSON vectors of `tests/vectors/<dir>`, sorted by file name. */
export function vectors(dir) {
  return readdirSync(join(vectorsDir, dir))
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ name: f.replace(/\.json$/, ''), v: JSON.parse(readFileSync(join(vectorsDir, dir, f), 'utf8')) }));
}

export const SEG = 65536;
export const SEG_CT = SEG + 16;
export const TRAILER = 68;

/** The vectors' plaintext pattern: byte i = (i * 31 + 7) mod 251. */
export function pattern(n) {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + 7) % 251;
  return out;
}

export const hex = (s) => Uint8Array.from(Buffer.from(s, 'hex'));
export const toHex = (b) => Buffer.from(b).toString('hex');

/** A ReadableStream delivering `bytes` in chunks of `size`. */
export function streamOf(bytes, size = 65536) {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) {
        c.close();
        return;
      }
      c.enqueue(bytes.slice(at, at + size));
      at += size;
    },
  });
}

/** Reads a stream to its end. */
export async function readAll(stream) {
  const parts = [];
  let n = 0;
  for await (const chunk of stream) {
    parts.push(chunk);
    n += chunk.length;
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Asserts that `promise` rejects with a KeysteadError of one of `codes`. */
export async function rejectsWith(promise, ...codes) {
  await assert.rejects(promise, (e) => {
    assert.equal(e.name, 'KeysteadError', `not a KeysteadError: ${e}`);
    assert.ok(codes.includes(e.code), `code ${e.code}, expected ${codes.join(' or ')} (${e.message})`);
    return true;
  });
}

/** Asserts that `fn` throws a KeysteadError with `code`. */
export function throwsWith(fn, code) {
  assert.throws(fn, (e) => e.name === 'KeysteadError' && e.code === code);
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Offsets of an attachment file: header length and the byte range of segment i. */
export function layout(file) {
  const h = (file[4] << 8) | file[5];
  const body = file.length - h - TRAILER;
  const n = Math.ceil(body / SEG_CT);
  return {
    h,
    n,
    seg: (i) => [h + i * SEG_CT, Math.min(h + (i + 1) * SEG_CT, file.length - TRAILER)],
  };
}
