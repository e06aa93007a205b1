//! # keystead-core
//!
//! The cryptographic core of Keystead: key types, the byte formats of DESIGN.md and the
//! operations on them. It is `no_std` + `alloc`, performs no I/O, reads no clock and has no
//! global random number generator: callers pass a [`rand_core::CryptoRng`] wherever fresh
//! randomness is needed.
//!
//! * [`edek`]: self-contained encrypted DEKs in remote-key, key-leasing and asymmetric mode.
//! * [`envelope`]: records and fields under a per-document DEK (AES-256-GCM), and the
//!   encrypted-document format (detached or attached EDEK).
//! * [`stream`] and [`attachment`]: streamed, range-decryptable attachments (STREAM over
//!   ChaCha20-Poly1305 with a key commitment and author signatures).
//! * [`seal`] and [`grant`]: HPKE sealing of keys to X25519 public keys, and signed grants
//!   collected in an access block.
//! * [`device`] and [`key_export`]: a device's key pairs, and their passphrase-sealed export
//!   (Argon2id, format `KSP`) that the wasm SDK's `exportKeys` / `importKeys` use.
//! * [`groups`]: end-to-end identities and groups: user identity keys, device certificates
//!   and user records, identity escrow under a recovery code, key pinning and safety codes,
//!   and the signed group log with its epoch keys and group grants.
//! * [`search`]: searchable fields: keys derived per tenant, field path and purpose from a
//!   derivation secret, deterministic field encryption (AES-256-SIV) and blind indexes
//!   (truncated HMAC-SHA256).
//! * [`request_auth`]: the signed input of HTTP requests authenticated by a device's
//!   Ed25519 key (the key directory's `Keystead-Device` scheme).
//!
//! Every byte format is specified in `docs/FORMAT.md`; frozen vectors live in
//! `tests/vectors/`.
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod error;
pub(crate) mod hazmat;
pub(crate) mod wire;

pub mod attachment;
pub mod device;
pub mod edek;
pub mod envelope;
pub mod grant;
pub mod groups;
pub mod ids;
pub mod key_export;
pub mod keys;
pub mod request_auth;
pub mod seal;
pub mod search;
pub mod stream;

pub use error::{Error, FormatError, Result};
pub use ids::{
    ConfigId, DocumentId, FieldPath, GroupId, KeyVersion, RecipientId, SecretId, TenantId, UserId,
};
pub use keys::{
    Dek, EncryptionKeyPair, EncryptionPublicKey, LeasedKey, LeasedKeyId, SigningKeyPair,
    SigningPublicKey,
};

/// Hidden re-exports for the crate's own tests, benches and fuzz targets. Not a public API:
/// it may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::hazmat::*;
}
