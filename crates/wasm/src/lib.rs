//! # keystead-wasm
//!
//! The WebAssembly face of `keystead-core` for browsers and Node: end-to-end encrypted,
//! streamed, range-decryptable attachments. It is published as the npm package `keystead`
//! (`npm/`), whose `index.d.ts` is the reference for the JavaScript API; this crate is the
//! only one in the workspace that uses wasm-bindgen.
//!
//! ## JavaScript API
//!
//! ```text
//! class Identity                                   // a device's key pairs, as a handle
//!   static generate(id: string): Identity
//!   readonly id: string; readonly publicKey: Uint8Array          // X25519: grants seal to it
//!   readonly signingPublicKey: Uint8Array                         // Ed25519: it signs as author
//!   readonly fingerprint: string; readonly recipient: Recipient; free(): void
//! exportKeys(identity, passphrase): Promise<Uint8Array>           // Argon2id-sealed (KSP)
//! importKeys(sealed, passphrase): Promise<Identity>
//! encryptStream(input, recipients, signer, options?): { stream, accessBlock, documentId }
//! decryptStream(input, identity, { accessBlock, author, trustedGranters? }): ReadableStream
//! decryptRange(source, start, end, identity, { accessBlock, author }): Promise<Uint8Array>
//! encryptBlob(blob, recipients, signer, options?): Promise<{ blob, accessBlock, documentId }>
//! decryptBlob(blob, identity, { accessBlock, author, type? }): Promise<Blob>
//! errorCodes(): ErrorCode[]
//! grantAccess(header, granter, recipients, options): Uint8Array  // new access block
//! revokeAccess(accessBlock, recipients, { group? }?): Uint8Array
//! reencrypt(file, identity, recipients, signer, options & { to?: Group })
//!                                                  : { file, accessBlock }   // in memory
//!
//! class User                                       // a user's identity key, as a handle
//!   readonly userId, identityKey, fingerprint; readonly record?: Uint8Array
//!   addDevice(device: Identity): { certificate, record }; removeDevice(id): Uint8Array
//!   escrow({ passphrase? }?): Promise<{ escrow, recoveryCode? }>   // Argon2id (KSR)
//! createUser(userId): User
//! recover(escrow, secret, record?): Promise<User>
//! safetyCode(userIdA, identityKeyA, userIdB, identityKeyB): string
//! createGroup(admin, groupId, memberRecords, { history? }?): { group, entry }
//! class Group                                      // a verified group log state
//!   static fromLog(entries, checkpoint?): Group; apply(entry); checkpoint(): Uint8Array
//!   readonly groupId, history, seq, head, epoch, members; unlock(device: Identity)
//!   addMembers / updateMembers(admin, records), removeMembers / addAdmins /
//!   removeAdmins(admin, userIds), rotateGroup(admin): { entry }   // not applied
//! // encrypt*/decrypt* and grantAccess take `options.group` (see groups.rs)
//! ```
//!
//! The npm package adds, in JavaScript: `init()` (lazy loading of this module),
//! `isKeysteadError()` and `httpRangeSource(url)` (a range source over HTTP Range requests).
//!
//! ## Design
//!
//! * **Content and access are separate** (DESIGN.md). `encryptStream` draws a DEK, writes
//!   the content header (signed by the author, with the key commitment) and one grant per
//!   recipient (the DEK sealed with HPKE to the recipient's X25519 key, signed by the author)
//!   *before* any data flows, so it returns the access block together with the stream. The
//!   file is `header ‖ segments ‖ trailer` and never changes; granting more recipients later
//!   changes only the access block.
//! * **Decryption** opens this identity's grant from the access block, accepting only grants
//!   signed by the expected author (or the keys in `trustedGranters`), checks that the block
//!   belongs to the file's header, that the header is signed by the expected author and that
//!   the DEK matches the key commitment, before any plaintext is released. `decryptStream`
//!   and `decryptBlob` verify the author's trailer signature at the end; a stream that stops
//!   early errors with `truncated`, never ends cleanly. `decryptRange` proves possession of
//!   the DEK only (the trailer needs the whole file).
//! * **Constant memory.** Streams are pull sources: each `read()` of the output pulls input
//!   chunks, copies them into wasm memory in slices of at most 1 MiB and enqueues what they
//!   produce. Ranged reads fetch 16 segments per request.
//! * **Private keys are handles.** `Identity` keeps both private keys in wasm memory
//!   (zeroized on `free()`); the only way out is `exportKeys`, which seals them under a
//!   passphrase with Argon2id v1.3 (m = 64 MiB, t = 3, p = 1, 16-byte salt; the floor is
//!   enforced on import) into the `KSP` format of [`keystead_core::key_export`].
//! * **Errors** are JS `Error`s with `name = "KeysteadError"` and a stable `code`
//!   ([`error::ErrorCode`]); decryption failures stay opaque (`decrypt_failed`).
//! * **Randomness** comes from `crypto.getRandomValues` through `getrandom`.
//!
//! The pure-Rust parts ([`engine`], [`error`]) also build and are
//! tested on the host; the `#[wasm_bindgen]` functions only work inside a JS engine.
#![forbid(unsafe_code)]

pub mod access;
pub mod engine;
pub mod error;
pub mod groups;
pub mod identity;
mod js;
pub mod range;
pub mod request_auth;
pub mod rng;
pub mod streams;

use wasm_bindgen::prelude::*;

pub use error::{Error, ErrorCode};
pub use groups::{Group, User};
pub use identity::Identity;

/// Every error code a `KeysteadError` can carry (the `ErrorCode` union of `index.d.ts`).
#[wasm_bindgen(js_name = errorCodes, unchecked_return_type = "ErrorCode[]")]
pub fn error_codes() -> Vec<String> {
    ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect()
}
