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
  | "source_failed"
  | "not_admin"
  | "log_chain"
  | "log_rollback"
  | "log_fork"
  | "invalid_group_op"
  | "key_changed";

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
  /**
   * Also share the attachment with this group: the header is bound to the group's current
   * epoch and head, and the access block gets a grant to the epoch key, signed by the
   * `signer`. `recipients` may then be empty.
   */
  group?: Group;
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
  /**
   * Open a grant to this (verified) group when the identity has no grant of its own: the
   * header must be bound to the group at an epoch and head of its log, and the identity must
   * be a device that received that epoch's key (directly, or under history `"all"` through
   * a later one). The opened epoch key is cached in the `Group`, so later documents of the
   * same epoch cost one grant opening; the cache serves only identities that opened that
   * epoch's key themselves once.
   */
  group?: Group;
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
 * Grants more devices access to an existing attachment by adding grants to its access block
 * (the file never changes). `granter` opens the DEK from `options.accessBlock` with its own
 * grant (or through `options.group`); the header (`header`: the file's first bytes, at least
 * its header, e.g. the first 707) must be signed by `options.author` and match the DEK's key
 * commitment. Returns the new access block; the new grants are signed by `granter`, so
 * recipients must list its `signingPublicKey` in `trustedGranters` unless it is the author.
 */
export function grantAccess(
  header: Uint8Array,
  granter: Identity,
  recipients: readonly Recipient[],
  options: DecryptOptions,
): Uint8Array;

/** Options of {@link revokeAccess}. */
export interface RevokeOptions {
  /** Also remove every grant to this group (all epochs). */
  group?: Group;
}

/**
 * Removes every grant to `recipients` (matched by public key) and, with `options.group`, to
 * that group; returns the new access block. This withdraws access only as far as the server
 * stops serving the old block: whoever opened the DEK before keeps it (re-encrypting the
 * file under a new DEK is the cryptographic revoke).
 */
export function revokeAccess(
  accessBlock: Uint8Array,
  recipients: readonly Recipient[],
  options?: RevokeOptions,
): Uint8Array;

/** Options of {@link reencrypt}: how to open the old file, and the group to share with. */
export interface ReencryptOptions extends DecryptOptions {
  /** Also grant the new file to this group's current epoch (its header is bound to it). */
  to?: Group;
}

/** What {@link reencrypt} returns. */
export interface Reencrypted {
  /** The new file: a new header, DEK and document signature, the same document id. */
  file: Uint8Array;
  /** Its access block. */
  accessBlock: Uint8Array;
}

/**
 * The cryptographic revoke: decrypts `file` with `identity` (fully checked, trailer
 * included, as {@link decryptBlob} does) and encrypts it again under a fresh DEK, signed by
 * `signer`, for `recipients` and, with `options.to`, the current epoch of that group. Anyone
 * left out cannot open the new file even with the old DEK. Works in memory, so for
 * attachments that fit there.
 */
export function reencrypt(
  file: Uint8Array,
  identity: Identity,
  recipients: readonly Recipient[],
  signer: Identity,
  options: ReencryptOptions,
): Reencrypted;

/**
 * A {@link RangeSource} over HTTP Range requests to `url` (the server must answer `206` with
 * `Content-Range`). `init` is passed to every `fetch` (headers such as `Authorization` are
 * kept; `Range` is set per request).
 */
export function httpRangeSource(url: string | URL, init?: RequestInit): Promise<RangeSource>;

// ---- Users and groups (issue 8; docs/FORMAT.md sections 24–29) -------------------------

/**
 * A user's Ed25519 identity key, as a handle (it never reaches JavaScript except sealed by
 * {@link User.escrow}), and the user's current signed device list (user record, `KSU`).
 * Publishing records to the key directory is up to the caller.
 */
export class User {
  private constructor();
  readonly userId: string;
  /** The Ed25519 identity public key (32 bytes). */
  readonly identityKey: Uint8Array;
  /** Hex fingerprint of the identity key (64 characters). */
  readonly fingerprint: string;
  /** The current signed user record, or `undefined` before the first device is added. */
  readonly record: Uint8Array | undefined;
  /**
   * Certifies `device` as one of this user's devices (the device counter-signs) and signs
   * the next record listing it, which the `User` keeps. In a group, an admin publishes the
   * new record with {@link Group.updateMembers}.
   */
  addDevice(device: Identity): DeviceAdded;
  /** Signs (and keeps) the next record without device `deviceId`; returns it. */
  removeDevice(deviceId: string): Uint8Array;
  /**
   * Escrows the identity key (Argon2id, m = 64 MiB, t = 3, p = 1; format `KSR`): under a fresh
   * 128-bit recovery code by default (returned once, as `recoveryCode`), or under
   * `options.passphrase`. Slow, like {@link exportKeys}.
   */
  escrow(options?: EscrowOptions): Promise<Escrow>;
  /** Zeroizes and releases the identity key. */
  free(): void;
}

/** What {@link User.addDevice} returns. */
export interface DeviceAdded {
  /** The device certificate (`KSC`). */
  certificate: Uint8Array;
  /** The new signed user record (`KSU`), one version up. */
  record: Uint8Array;
}

/** Options of {@link User.escrow}. */
export interface EscrowOptions {
  /** Seal under this passphrase instead of a generated recovery code. */
  passphrase?: string;
}

/** What {@link User.escrow} resolves to. */
export interface Escrow {
  /** The sealed identity key (`KSR`), safe to store on the server. */
  escrow: Uint8Array;
  /** The generated recovery code (absent with a passphrase). Show it to the user once. */
  recoveryCode?: string;
}

/** A new user with a fresh identity key (no record until its first device). */
export function createUser(userId: string): User;

/**
 * Opens an escrow with its recovery code (case, spaces and dashes do not matter) or
 * passphrase. Pass the user's latest `record` from the directory so the recovered user can
 * sign its successors (`key_changed` if it carries another identity key). A wrong secret
 * rejects with `decrypt_failed`, a mistyped code with `malformed`.
 */
export function recover(escrow: Uint8Array, secret: string, record?: Uint8Array): Promise<User>;

/**
 * The 60-digit safety code (12 groups of 5 digits) two users compare out of band; the same
 * whichever order they are passed in.
 */
export function safetyCode(
  userIdA: string,
  identityKeyA: Uint8Array,
  userIdB: string,
  identityKeyB: Uint8Array,
): string;

/** Whether members added later can read documents from before they joined. */
export type GroupHistory = "all" | "none";

/** Options of {@link createGroup}. */
export interface GroupOptions {
  /** Default `"all"`. Fixed for the group's life. */
  history?: GroupHistory;
}

/** A member of a {@link Group}. */
export interface GroupMember {
  userId: string;
  identityKey: Uint8Array;
  admin: boolean;
  /** The device ids of the member's record. */
  devices: string[];
}

/** A signed log entry proposed by an admin: publish it, then {@link Group.apply} it. */
export interface ProposedEntry {
  entry: Uint8Array;
}

/** What {@link createGroup} returns. */
export interface CreatedGroup {
  /** The group as of its genesis entry (the admin's epoch key is cached). */
  group: Group;
  /** The genesis entry to publish. */
  entry: Uint8Array;
}

/**
 * Creates group `groupId` with `admin` as its first admin and the users of `members` (signed
 * user records; the admin's own record is added if missing).
 */
export function createGroup(
  admin: User,
  groupId: string,
  members: readonly Uint8Array[],
  options?: GroupOptions,
): CreatedGroup;

/**
 * A verified group: members, admins, epochs and head, as of the log entries applied so far.
 * Only verification builds one. Opened epoch keys are cached inside it (in wasm memory) and
 * zeroized by `free()`.
 *
 * The admin operations (`addMembers`, ...) sign the next entry and return it **without
 * applying it**: publish it (the directory accepts one entry per parent), then pass it to
 * {@link Group.apply} as you would an entry fetched from the directory. If another entry won
 * the race, apply that one and propose again.
 */
export class Group {
  private constructor();
  /**
   * Verifies a whole log from genesis: signatures, chain links (`log_chain`), admin rights
   * (`not_admin`), operations and sealed keys (`invalid_group_op`), and, if given, that it
   * reaches and contains a checkpoint from {@link Group.checkpoint} (`log_rollback`,
   * `log_fork`).
   */
  static fromLog(entries: readonly Uint8Array[], checkpoint?: Uint8Array): Group;
  /** Verifies and applies the next entry; on error the group is unchanged. */
  apply(entry: Uint8Array): void;
  /** Seq and head (44 bytes) to persist and pass to {@link Group.fromLog} next time. */
  checkpoint(): Uint8Array;
  readonly groupId: string;
  readonly history: GroupHistory;
  /** Sequence number of the last applied entry (genesis = 0). */
  readonly seq: number;
  /** Hash of the last applied entry (32 bytes). */
  readonly head: Uint8Array;
  /** The current epoch (1 after genesis; removals and rotations start a new one). */
  readonly epoch: number;
  readonly members: GroupMember[];
  /**
   * Opens and caches the current epoch key with `device`, a member's device. An admin needs
   * it before proposing on a group loaded with {@link Group.fromLog} (to share the key with
   * added devices and, under history `"all"`, to chain it to the next epoch).
   */
  unlock(device: Identity): void;
  /** Signs an entry adding the users of `records` (signed user records). */
  addMembers(admin: User, records: readonly Uint8Array[]): ProposedEntry;
  /** Signs an entry replacing members' records by newer versions (device changes). */
  updateMembers(admin: User, records: readonly Uint8Array[]): ProposedEntry;
  /** Signs an entry removing members: a new epoch they do not receive. */
  removeMembers(admin: User, userIds: readonly string[]): ProposedEntry;
  /** Signs an entry making members admins. */
  addAdmins(admin: User, userIds: readonly string[]): ProposedEntry;
  /** Signs an entry taking the admin role from members (a new epoch). */
  removeAdmins(admin: User, userIds: readonly string[]): ProposedEntry;
  /** Signs an entry starting a new epoch without a membership change. */
  rotateGroup(admin: User): ProposedEntry;
  /** Zeroizes the cached epoch keys and releases the state. */
  free(): void;
}
