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
  /**
   * The `Authorization` header value (`Keystead-Device device="…", ts=…, nonce="…",
   * sig="…"`) of one request to the key directory, signed by this device's Ed25519 key
   * (docs/DIRECTORY.md, "Device signatures"; docs/FORMAT.md section 30). `method` in upper
   * case; `host` as the server receives it in `Host` (with the port unless it is the
   * scheme's default); `pathAndQuery` exactly as sent; `body` the request body (`undefined`
   * for none). Each call draws a fresh nonce: sign every request, and every retry, anew.
   * The device id must be a directory device id (`[A-Za-z0-9._~-]{1,128}`; `invalid_id`
   * otherwise). {@link Directory} does this for you.
   */
  signRequest(
    method: string,
    host: string,
    pathAndQuery: string,
    body?: Uint8Array,
    options?: SignRequestOptions,
  ): string;
  /** Zeroizes and releases the private keys. Streams already started keep working. */
  free(): void;
}

/** Options of {@link Identity.signRequest}. */
export interface SignRequestOptions {
  /** Unix seconds to sign (default: `Date.now()`); the server accepts ±300 s. */
  timestamp?: number;
  /** The body's SHA-256 (32 bytes), instead of passing `body` itself (e.g. a large upload). */
  bodySha256?: Uint8Array;
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

// ---- The key directory client (docs/DIRECTORY.md) -------------------------------------

/**
 * A non-2xx answer of the directory (`status`, and the server's `code` such as
 * `unauthenticated`, `replayed_request`, `not_found`, `rate_limited`, `tenant_disabled`;
 * `http_<status>` when the body named none), or no answer at all (`status` 0, code
 * `network_error`, the fetch error as `cause`), or an answer of an unexpected shape (code
 * `bad_response`).
 */
export class DirectoryError extends Error {
  name: "DirectoryError" | "DirectoryConflictError";
  readonly status: number;
  readonly code: string;
  /** Seconds from `Retry-After` (with `429 rate_limited`). */
  readonly retryAfter: number | undefined;
}

/**
 * `409 conflict`: a compare-and-swap lost. For a group entry: another entry took the same
 * parent; fetch it ({@link Directory.syncGroup}), propose again and retry. For a user record
 * or an access block: re-read the current version and retry. Also: the record already exists.
 */
export class DirectoryConflictError extends DirectoryError {
  name: "DirectoryConflictError";
  readonly status: 409;
  readonly code: "conflict";
}

/** Options of the {@link Directory} constructor. */
export interface DirectoryOptions {
  /**
   * The origin whose `/v1/` reaches `keystead serve` with path and `Host` unchanged (the
   * signature covers both). Default in a page: the page's own origin (a reverse proxy).
   */
  baseUrl?: string | URL;
  /** The tenant id. */
  tenant: string;
  /**
   * The device that signs requests; its id must be a directory device id
   * (`[A-Za-z0-9._~-]{1,128}`). Not needed for the token routes
   * ({@link Directory.enroll} needs the device as an argument, {@link Directory.getEscrow}
   * none).
   */
  device?: Identity;
  /** The `fetch` to use (default: the global one). */
  fetch?: typeof fetch;
}

/** What {@link Directory.enroll} registers. */
export interface Enrollment {
  /** The user; its identity key is registered (or must be the registered one). */
  user: User;
  /** The new device. */
  device: Identity;
  /** The device's certificate, from {@link User.addDevice}. */
  certificate: Uint8Array;
  /** The user record listing the device, from {@link User.addDevice}. */
  record: Uint8Array;
  /** The record version this replaces: 0 on first enrollment, the current one after recovery. */
  expectedVersion?: number;
}

/** A device to register with {@link Directory.putUser}. */
export interface NewDevice {
  device: Identity;
  certificate: Uint8Array;
}

/** A registered device, as the directory serves it. */
export interface DirectoryDevice {
  deviceId: string;
  signingKey: Uint8Array;
  certificate: Uint8Array;
}

/**
 * A user as the directory serves it. Verify before trusting: the record's signature (it is
 * checked when a {@link Group} takes it) and the identity key against the one pinned or
 * compared by {@link safetyCode}.
 */
export interface DirectoryUser {
  userId: string;
  /** Absent before enrollment. */
  identityKey: Uint8Array | undefined;
  record: Uint8Array;
  version: number;
  devices: DirectoryDevice[];
}

/** A user record update (compare-and-swap on `expectedVersion`). */
export interface UserUpdate {
  expectedVersion: number;
  record: Uint8Array;
  addDevices?: readonly NewDevice[];
  removeDevices?: readonly string[];
}

/** What {@link Directory.getEscrow} resolves to. */
export interface ReleasedEscrow {
  /** Pass to {@link recover} with the recovery code or passphrase. */
  escrow: Uint8Array;
  /** The user's current record: pass to {@link recover}. */
  record: Uint8Array;
  /** Its version: `expectedVersion` when enrolling the new device. */
  version: number;
}

/** A group's head as the server reports it (not verified). */
export interface GroupHead {
  groupId: string;
  seq: number;
  head: Uint8Array;
}

/** Options of {@link Directory.createGroup} and {@link Directory.appendEntry}. */
export interface GroupIndexOptions {
  /**
   * User ids for the server's member index, which decides who may list, read and append
   * (the log decides membership). On append, replaces the index; omitted, it is unchanged.
   */
  members?: readonly string[];
}

/** One stored log entry. */
export interface StoredEntry {
  seq: number;
  hash: Uint8Array;
  entry: Uint8Array;
}

/** A page of a group log. */
export interface EntriesPage {
  entries: StoredEntry[];
  head: GroupHead;
}

/** A group of {@link Directory.loadMyGroups}: verified, or the error that stopped it. */
export type LoadedGroup =
  | { groupId: string; group: Group; error?: undefined }
  | { groupId: string; group?: undefined; error: unknown };

/**
 * A client of the E2E key directory (docs/DIRECTORY.md), for a user's device. Requests to
 * device routes are signed with {@link Identity.signRequest}; token routes send the token
 * the vendor's backend minted. Every method rejects with a {@link DirectoryError} for a
 * non-2xx answer ({@link DirectoryConflictError} for `409 conflict`), or a
 * {@link KeysteadError} for bad arguments or a log that does not verify.
 */
export class Directory {
  constructor(options: DirectoryOptions);
  /** The signing device, if any. */
  readonly device: Identity | undefined;
  /**
   * Registers the user's identity key, record and a device with an enrollment token (spent).
   * After recovery, with `expectedVersion` the current version. Resolves to the new version.
   */
  enroll(token: string, enrollment: Enrollment): Promise<number>;
  /** A user's identity key, record and devices (any device of the tenant may ask). */
  getUser(userId: string): Promise<DirectoryUser>;
  /** Replaces the user's record, adding or removing devices. Resolves to the new version. */
  putUser(userId: string, update: UserUpdate): Promise<number>;
  /** Stores the user's escrow (from {@link User.escrow}). */
  putEscrow(userId: string, escrow: Uint8Array): Promise<void>;
  /**
   * Releases the escrow with a re-authentication token (spent), with the current record and
   * version. `429 rate_limited` over the release limits (`retryAfter`).
   */
  getEscrow(userId: string, token: string): Promise<ReleasedEscrow>;
  /** The groups whose member index holds `userId` (a device of that user must ask). */
  listMyGroups(userId: string): Promise<GroupHead[]>;
  /** Publishes a genesis entry (from {@link createGroup}). */
  createGroup(groupId: string, entry: Uint8Array, options?: GroupIndexOptions): Promise<GroupHead>;
  /**
   * Appends an entry (from a {@link Group} proposal) whose parent must be the head:
   * {@link DirectoryConflictError} if another entry took that parent.
   */
  appendEntry(groupId: string, entry: Uint8Array, options?: GroupIndexOptions): Promise<GroupHead>;
  /** One page of the log (`from` default 0, `limit` ≤ 1000). */
  getEntries(groupId: string, options?: { from?: number; limit?: number }): Promise<EntriesPage>;
  /**
   * Fetches the whole log and verifies it with {@link Group.fromLog}, against `checkpoint`
   * (persisted from {@link Group.checkpoint}) if given.
   */
  fetchGroup(groupId: string, options?: { checkpoint?: Uint8Array }): Promise<Group>;
  /**
   * Fetches the entries after `group`'s head, verifies and applies them; resolves to how
   * many. Rejects with `log_rollback` if the server's head is behind the group's, `log_fork`
   * if it differs at the same seq (the group is then unchanged).
   */
  syncGroup(group: Group): Promise<number>;
  /**
   * {@link listMyGroups}, then {@link fetchGroup} for each, with the checkpoint persisted for
   * that group id if `checkpoints` has one.
   */
  loadMyGroups(
    userId: string,
    options?: { checkpoints?: Map<string, Uint8Array> | Record<string, Uint8Array> },
  ): Promise<LoadedGroup[]>;
  /** Stores a document's access block; `expectedVersion` 0 creates. Resolves to the version. */
  putAccessBlock(docId: string, block: Uint8Array, expectedVersion?: number): Promise<number>;
  /** A document's access block and its version. */
  getAccessBlock(docId: string): Promise<{ version: number; block: Uint8Array }>;
  /**
   * Uploads a blob (the ciphertext). It is read into memory once to hash it for the
   * signature. Only a device of the user who uploaded a blob may replace it.
   */
  putBlob(blobId: string, data: Blob | Uint8Array | ArrayBuffer): Promise<{ size: number; sha256: string }>;
  /** Downloads a whole blob. */
  getBlob(blobId: string): Promise<Blob>;
  /** Bytes `start..end` (end exclusive) of a blob, by one signed Range request. */
  getBlobRange(blobId: string, start: number, end: number): Promise<Uint8Array>;
  /** A {@link RangeSource} over signed Range requests, for {@link decryptRange}. */
  blobSource(blobId: string): Promise<RangeSource>;
}
