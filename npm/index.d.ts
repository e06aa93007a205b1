// Type definitions for `keystead`: end-to-end encrypted, streamed, range-decryptable
// attachments for browsers and Node. The implementation is the WebAssembly module built from
// crates/wasm; this file is the reference for the JavaScript API.

/**
 * Loads and compiles the WebAssembly module. Call (and await) it once before anything else;
 * later calls resolve at once. Nothing is fetched or compiled before the first call.
 *
 * @param input In browsers, where to get the `.wasm` from (default: beside this package, via
 *   `new URL(..., import.meta.url)`): a URL, a `Response`, bytes or a compiled
 *   `WebAssembly.Module`. Ignored in Node.
 */
export function init(
  input?: string | URL | Request | Response | BufferSource | WebAssembly.Module,
): Promise<void>;

/**
 * The stable codes of {@link KeysteadError}. `crates/wasm/src/error.rs` defines the same list,
 * in the same order; tests check that they agree.
 */
export type ErrorCode =
  | "malformed"
  | "decrypt_failed"
  | "bad_signature"
  | "invalid_id"
  | "invalid_key"
  | "truncated"
  | "limit_exceeded"
  | "usage"
  | "no_grant"
  | "invalid_argument"
  | "source_failed";

/**
 * Every error the package throws, rejects with or errors a stream with: a plain `Error` with
 * `name` `"KeysteadError"` and a stable {@link ErrorCode}. Decryption failures are opaque on
 * purpose: a wrong key, tampered, reordered or foreign data all say `decrypt_failed`.
 */
export interface KeysteadError extends Error {
  name: "KeysteadError";
  code: ErrorCode;
  /** For `source_failed`: the error the input stream or range source failed with. */
  cause?: unknown;
}

/** Whether `e` is a {@link KeysteadError}. */
export function isKeysteadError(e: unknown): e is KeysteadError;

/** Every code a {@link KeysteadError} can carry (needs {@link init}). */
export function errorCodes(): ErrorCode[];

/** A device that can be granted access: its id and X25519 public key. */
export interface Recipient {
  /** The device (recipient) id, 1–256 bytes of UTF-8 without control characters. */
  readonly id: string;
  /** The X25519 public key, 32 bytes. */
  readonly publicKey: Uint8Array;
}

/**
 * A device's keys, as a handle: an X25519 key pair that grants are sealed to and an Ed25519
 * key pair that signs what the device writes. The private keys never reach JavaScript except
 * through {@link exportKeys}, sealed under a passphrase. An `Identity` is also a
 * {@link Recipient}. Call `free()` when done to zeroize the keys at once (otherwise they are
 * freed when the object is garbage-collected).
 */
export class Identity implements Recipient {
  private constructor();
  /** Fresh key pairs for the device `id` (e.g. `"device/alice-laptop"`). */
  static generate(id: string): Identity;
  readonly id: string;
  /** The X25519 public key (32 bytes): what others grant to. */
  readonly publicKey: Uint8Array;
  /** The Ed25519 public key (32 bytes): pass it as `author` to decrypt what this device wrote. */
  readonly signingPublicKey: Uint8Array;
  /** Hex fingerprint of the X25519 public key (64 characters), as grants name it. */
  readonly fingerprint: string;
  /** `{ id, publicKey }` as a plain object, e.g. to publish in a key directory. */
  readonly recipient: Recipient;
  /** Zeroizes and releases the private keys. Streams already started keep working. */
  free(): void;
}

/**
 * Seals the identity's private keys under `passphrase` (Argon2id v1.3, m = 64 MiB, t = 3,
 * p = 1; format `KSP` of docs/FORMAT.md). Takes about a second; in a page, prefer a Worker.
 */
export function exportKeys(identity: Identity, passphrase: string): Promise<Uint8Array>;

/**
 * Opens bytes from {@link exportKeys}. Rejects with `decrypt_failed` for a wrong passphrase
 * and `malformed` for damaged bytes or KDF parameters below the floor.
 */
export function importKeys(sealed: Uint8Array, passphrase: string): Promise<Identity>;

/** Options of {@link encryptStream} and {@link encryptBlob}. */
export interface EncryptOptions {
  /**
   * The attachment's document id, bound into the header and every grant (1–256 bytes of
   * UTF-8). Default: `"attachment/"` followed by 32 random hex digits.
   */
  documentId?: string;
}

/** What {@link encryptStream} returns. */
export interface EncryptedStream {
  /** The ciphertext: header, segments, signed trailer. Store it as one immutable object. */
  stream: ReadableStream<Uint8Array>;
  /** The grants (format `KSB`), stored apart from the ciphertext; recipients need it. */
  accessBlock: Uint8Array;
  /** The document id bound into the ciphertext. */
  documentId: string;
}

/** What {@link encryptBlob} resolves to. */
export interface EncryptedBlob {
  blob: Blob;
  accessBlock: Uint8Array;
  documentId: string;
}

/** Who is trusted when decrypting, and the grants to open. */
export interface DecryptOptions {
  /** The access block returned when the attachment was encrypted (or updated since). */
  accessBlock: Uint8Array;
  /**
   * The Ed25519 public key of the author you expect (their `signingPublicKey`, from your key
   * directory). Content signed by anyone else is rejected with `bad_signature`.
   */
  author: Uint8Array;
  /**
   * Ed25519 keys whose grants are accepted. Default: the author only. A grant from anyone
   * else is ignored (`no_grant` if nothing else fits).
   */
  trustedGranters?: Uint8Array[];
}

/** Options of {@link decryptBlob}. */
export interface DecryptBlobOptions extends DecryptOptions {
  /** The MIME type of the plaintext Blob. */
  type?: string;
}

/**
 * A file readable by byte ranges: `read(start, end)` resolves to exactly the bytes
 * `start..end` (end exclusive) of the ciphertext, `size` is its total length.
 */
export interface RangeSource {
  readonly size: number;
  read(start: number, end: number): Promise<Uint8Array | ArrayBuffer>;
}

/**
 * Encrypts `input` for `recipients`, signed by `signer`. The header and the grants are made
 * before any data flows, so `accessBlock` is ready at once. Memory stays constant whatever
 * the size: each read of `stream` pulls input, at most 1 MiB at a time.
 */
export function encryptStream(
  input: ReadableStream<Uint8Array> | Blob,
  recipients: readonly Recipient[],
  signer: Identity,
  options?: EncryptOptions,
): EncryptedStream;

/**
 * Decrypts `input` with `identity`'s grant. Each segment's plaintext is released once it
 * authenticates; the stream closes only after the author's trailer signature verified, and
 * errors (with `truncated`, `decrypt_failed`, `bad_signature`, ...) otherwise, never ending
 * early in silence. Treat the plaintext as authentic only once the stream has closed.
 */
export function decryptStream(
  input: ReadableStream<Uint8Array> | Blob,
  identity: Identity,
  options: DecryptOptions,
): ReadableStream<Uint8Array>;

/** Encrypts a Blob or File. Convenience over {@link encryptStream}. */
export function encryptBlob(
  blob: Blob,
  recipients: readonly Recipient[],
  signer: Identity,
  options?: EncryptOptions,
): Promise<EncryptedBlob>;

/**
 * Decrypts a Blob; resolves only after the whole file, trailer signature included, verified.
 * Convenience over {@link decryptStream}.
 */
export function decryptBlob(
  blob: Blob,
  identity: Identity,
  options: DecryptBlobOptions,
): Promise<Blob>;

/**
 * Decrypts plaintext bytes `start..end` (end exclusive, clamped to the plaintext length; at
 * most 1 GiB per call, `limit_exceeded` above) reading only the segments needed, up to 16
 * per request. Checks the header (author, key
 * commitment) and every segment read, which proves the bytes come from a holder of the key;
 * only full decryption also checks the author's trailer signature. A range that reaches the
 * end also reads the final segment, so a truncated file is an error.
 */
export function decryptRange(
  source: Blob | RangeSource,
  start: number,
  end: number,
  identity: Identity,
  options: DecryptOptions,
): Promise<Uint8Array>;

/**
 * A {@link RangeSource} over HTTP Range requests to `url` (the server must answer `206` with
 * `Content-Range`). `init` is passed to every `fetch` (headers such as `Authorization` are
 * kept; `Range` is set per request).
 */
export function httpRangeSource(url: string | URL, init?: RequestInit): Promise<RangeSource>;
