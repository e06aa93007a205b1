//! Searchable fields: keys derived from a tenant's derivation secret, deterministic field
//! encryption and blind indexes (DESIGN.md, "Searchable fields"; docs/FORMAT.md, sections
//! 18 to 20).
//!
//! A field opts in to search in one of two ways. Its **deterministic** encryption is equal
//! for equal values, so the backend finds a record by comparing ciphertexts and can still
//! decrypt them. A **blind index** is a keyed, truncated hash stored next to an ordinary
//! (randomized) field: it finds records but cannot be decrypted. Both reveal which records
//! share a value (a short blind index blurs it with false positives); that is their purpose.
//!
//! **Key derivation.** Each tenant has derivation secrets ([`DerivationSecret`], 32 random
//! bytes, named by a [`SecretId`]) that only the Encryption Service holds. A key is bound to
//! the tenant, the secret, the purpose and the field path:
//!
//! ```text
//! key = HKDF-SHA256(salt = none, ikm = secret,
//!                   info = "keystead/v1/derive" ‖ lp16 tenant id ‖ lp16 secret id
//!                          ‖ lp16 purpose ‖ lp16 field path)
//!       → 64 bytes for "deterministic", 32 bytes for "blind_index"
//! ```
//!
//! **Deterministic field** (`KSV`, version 1):
//!
//! ```text
//! stored form = "KSV" 0x01 | lp16 secret id | siv [16] | ciphertext [len(plaintext)]
//! header      = "KSV" 0x01 | lp16 tenant id | lp16 field path | lp16 secret id
//! ```
//!
//! AES-256-SIV (RFC 5297, AES-CMAC, 512-bit key) under the `deterministic` key, with the
//! header as the one and only associated-data component (raw, not `lp32`: S2V separates its
//! components itself) and no nonce. The header is rebuilt from the context the caller names
//! and the secret id of the caller's key, so a field moved to another tenant or path fails
//! to decrypt. The stored form names the secret id so that a reader picks the key while
//! secrets rotate ([`deterministic_secret_id`]); decryption requires it to equal the
//! cipher's, so a relabelled field fails too.
//!
//! **Blind index** (no magic: a raw index token):
//!
//! ```text
//! index = first len bytes of HMAC-SHA256(key, "keystead/v1/blind-index"
//!                                             ‖ lp16 tenant id ‖ lp16 field path ‖ lp32 value)
//! ```
//!
//! with the `blind_index` key and `len` in 1..=32, chosen per field: shorter indexes give
//! false positives (which the caller filters after decrypting) and so hide more.

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, FormatError, Result};
use crate::hazmat::{self, Aes256SivKey, HMAC_KEY_LEN, HMAC_LEN, HmacSha256, SIV_KEY_LEN, SIV_LEN};
use crate::ids::{FieldPath, MAX_ID_LEN, SecretId, TenantId, check_id};
use crate::wire::{self, Reader};

const DETERMINISTIC_MAGIC: &[u8; 3] = b"KSV";
const DERIVE_LABEL: &[u8] = b"keystead/v1/derive";
const BLIND_INDEX_LABEL: &[u8] = b"keystead/v1/blind-index";

/// Length of a derivation secret (bytes).
pub const DERIVATION_SECRET_LEN: usize = 32;
/// Length of the longest derived key (bytes): the 512-bit AES-256-SIV key.
pub const MAX_DERIVED_KEY_LEN: usize = SIV_KEY_LEN;
/// Bytes a deterministic field adds to its plaintext at most: magic and version, a secret id
/// of the longest length with its prefix, and the synthetic IV.
pub const MAX_DETERMINISTIC_OVERHEAD: usize = 4 + 2 + MAX_ID_LEN + SIV_LEN;
/// Largest deterministic field plaintext: every deterministic field fits an `lp32`.
pub const MAX_DETERMINISTIC_LEN: usize = u32::MAX as usize - MAX_DETERMINISTIC_OVERHEAD;
/// Longest blind index (bytes): the whole HMAC-SHA256 output.
pub const MAX_BLIND_INDEX_LEN: usize = HMAC_LEN;
/// Longest value a blind index can be computed over (its length is an `lp32`).
pub const MAX_BLIND_INDEX_VALUE_LEN: usize = u32::MAX as usize;

/// What a derived key is for. Part of the derivation, so a key derived for one purpose is
/// unrelated to the key of the other purpose for the same tenant, secret and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Deterministic field encryption (AES-256-SIV, 64-byte key).
    Deterministic,
    /// Blind indexes (HMAC-SHA256, 32-byte key).
    BlindIndex,
}

impl Purpose {
    /// The purpose's string, as it appears in the derivation info and in the API
    /// (`"deterministic"`, `"blind_index"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Deterministic => "deterministic",
            Purpose::BlindIndex => "blind_index",
        }
    }

    /// Parses the string [`Purpose::as_str`] gives; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "deterministic" => Some(Purpose::Deterministic),
            "blind_index" => Some(Purpose::BlindIndex),
            _ => None,
        }
    }

    /// The length of a key for this purpose (bytes): 64 for AES-256-SIV, whose 512-bit key
    /// is two AES-256 keys, and 32 for HMAC-SHA256.
    pub fn key_len(self) -> usize {
        match self {
            Purpose::Deterministic => SIV_KEY_LEN,
            Purpose::BlindIndex => HMAC_KEY_LEN,
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A tenant's derivation secret: 32 random bytes that the keys of deterministic fields and
/// blind indexes are derived from. It lives only in the Encryption Service (wrapped by the
/// tenant's KMS at rest); clients receive derived keys, never the secret.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DerivationSecret([u8; DERIVATION_SECRET_LEN]);

impl DerivationSecret {
    /// Draws a fresh secret from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut s = Self([0; DERIVATION_SECRET_LEN]);
        rng.fill_bytes(&mut s.0);
        s
    }

    /// Takes ownership of secret bytes unwrapped by the KMS. The caller should zeroize its
    /// own copy.
    pub fn from_bytes(bytes: [u8; DERIVATION_SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw secret bytes, for sending to the KMS to be wrapped. Never log or store them.
    pub fn expose_secret(&self) -> &[u8; DERIVATION_SECRET_LEN] {
        &self.0
    }
}

impl fmt::Debug for DerivationSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivationSecret(<redacted>)")
    }
}

/// A key derived from a [`DerivationSecret`] for one tenant, secret, purpose and field path:
/// 64 bytes for [`Purpose::Deterministic`], 32 for [`Purpose::BlindIndex`].
#[derive(ZeroizeOnDrop)]
pub struct DerivedKey {
    #[zeroize(skip)]
    purpose: Purpose,
    key: [u8; MAX_DERIVED_KEY_LEN],
}

impl DerivedKey {
    /// Derives the key of `purpose` for `path` of `tenant` from `secret`, whose id is
    /// `secret_id` (see the module documentation for the exact HKDF call).
    pub fn derive(
        secret: &DerivationSecret,
        tenant: &TenantId,
        secret_id: &SecretId,
        purpose: Purpose,
        path: &FieldPath,
    ) -> Self {
        let (t, s, p, f) = (
            tenant.as_bytes(),
            secret_id.as_bytes(),
            purpose.as_str().as_bytes(),
            path.as_bytes(),
        );
        let info: [&[u8]; 9] = [
            DERIVE_LABEL,
            &len16(t),
            t,
            &len16(s),
            s,
            &len16(p),
            p,
            &len16(f),
            f,
        ];
        let mut key = Self {
            purpose,
            key: [0; MAX_DERIVED_KEY_LEN],
        };
        let derived = hazmat::hkdf_sha256(
            None,
            secret.expose_secret(),
            &info,
            &mut key.key[..purpose.key_len()],
        );
        // HKDF-SHA256 fails only for outputs longer than 255 × 32 bytes; ours are 32 or 64.
        debug_assert!(derived.is_ok(), "HKDF output within bounds");
        key
    }

    /// Rebuilds a key received from the Encryption Service. `bytes` must be exactly
    /// [`Purpose::key_len`] long, else [`Error::InvalidKey`]. The caller should zeroize its
    /// own copy.
    pub fn from_bytes(purpose: Purpose, bytes: &[u8]) -> Result<Self> {
        if bytes.len() != purpose.key_len() {
            return Err(Error::InvalidKey);
        }
        let mut key = Self {
            purpose,
            key: [0; MAX_DERIVED_KEY_LEN],
        };
        key.key[..bytes.len()].copy_from_slice(bytes);
        Ok(key)
    }

    /// What the key is for.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// The raw key bytes ([`Purpose::key_len`] of them), for the Encryption Service's answer
    /// to a derive. Never log or store them.
    pub fn expose_secret(&self) -> &[u8] {
        &self.key[..self.purpose.key_len()]
    }

    fn require(&self, purpose: Purpose) -> Result<()> {
        if self.purpose == purpose {
            Ok(())
        } else {
            Err(Error::InvalidKey)
        }
    }
}

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DerivedKey")
            .field("purpose", &self.purpose)
            .finish_non_exhaustive()
    }
}

/// The 2-byte big-endian length of an identifier or purpose string.
fn len16(bytes: &[u8]) -> [u8; 2] {
    // Identifiers are at most MAX_ID_LEN bytes by construction and purpose strings are
    // constants, so the length always fits; saturating keeps the function total.
    u16::try_from(bytes.len()).unwrap_or(u16::MAX).to_be_bytes()
}

/// Encrypts and decrypts the deterministic values of one field path of one tenant under one
/// derivation secret. The key and the associated data are set up once and reused; the
/// methods take `&self`, so one cipher can serve many threads.
pub struct DeterministicCipher {
    cipher: Aes256SivKey,
    secret_id: SecretId,
    /// The deterministic field header: the single AES-SIV associated-data component.
    header: Vec<u8>,
}

impl DeterministicCipher {
    /// Prepares to encrypt or decrypt values of `path` owned by `tenant` under `key`, which
    /// must be a [`Purpose::Deterministic`] key derived from the secret `secret_id`
    /// ([`Error::InvalidKey`] otherwise). The secret id is written into every value.
    pub fn new(
        key: &DerivedKey,
        tenant: &TenantId,
        secret_id: &SecretId,
        path: &FieldPath,
    ) -> Result<Self> {
        key.require(Purpose::Deterministic)?;
        let mut siv_key = Zeroizing::new([0u8; SIV_KEY_LEN]);
        siv_key.copy_from_slice(key.expose_secret());
        let (t, p, s) = (tenant.as_bytes(), path.as_bytes(), secret_id.as_bytes());
        let mut header = Vec::with_capacity(4 + 6 + t.len() + p.len() + s.len());
        wire::put_magic(&mut header, DETERMINISTIC_MAGIC);
        wire::put_lp16(&mut header, t)?;
        wire::put_lp16(&mut header, p)?;
        wire::put_lp16(&mut header, s)?;
        Ok(Self {
            cipher: Aes256SivKey::new(&siv_key),
            secret_id: secret_id.clone(),
            header,
        })
    }

    /// The secret id this cipher writes and accepts.
    pub fn secret_id(&self) -> &SecretId {
        &self.secret_id
    }

    /// Encrypts one value. Equal plaintexts give equal bytes: that is what makes the field
    /// searchable. At most [`MAX_DETERMINISTIC_LEN`] bytes ([`Error::Limit`] above).
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>> {
        if plaintext.len() > MAX_DETERMINISTIC_LEN {
            return Err(Error::Limit);
        }
        let s = self.secret_id.as_bytes();
        let prefix = 4 + 2 + s.len();
        let mut out = Vec::with_capacity(prefix + SIV_LEN + plaintext.len());
        wire::put_magic(&mut out, DETERMINISTIC_MAGIC);
        wire::put_lp16(&mut out, s)?;
        out.extend_from_slice(&[0; SIV_LEN]);
        out.extend_from_slice(plaintext);
        let siv = self
            .cipher
            .seal_detached(&self.header, &mut out[prefix + SIV_LEN..])?;
        out[prefix..prefix + SIV_LEN].copy_from_slice(&siv);
        Ok(out)
    }

    /// Decrypts one value encrypted for the same tenant, field path and secret. A value
    /// naming another secret id, or failing authentication, is [`Error::Decrypt`]; framing
    /// errors are [`Error::Format`].
    pub fn decrypt(&self, encrypted: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let (secret_id, siv, ct) = parse_deterministic(encrypted)?;
        if secret_id != self.secret_id.as_str() {
            return Err(Error::Decrypt);
        }
        let mut pt = Zeroizing::new(ct.to_vec());
        self.cipher.open_detached(&self.header, &mut pt, &siv)?;
        Ok(pt)
    }
}

impl fmt::Debug for DeterministicCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeterministicCipher")
            .field("secret_id", &self.secret_id)
            .finish_non_exhaustive()
    }
}

/// Splits a deterministic field into its secret id (checked against the identifier rules,
/// without allocating), the synthetic IV and the ciphertext. Checks the framing only.
// On 32-bit targets (wasm32) the length limit is `usize::MAX`, so the check below is
// trivially false there; it still matters on 64-bit hosts.
#[allow(clippy::absurd_extreme_comparisons)]
fn parse_deterministic(encrypted: &[u8]) -> Result<(&str, [u8; SIV_LEN], &[u8])> {
    if encrypted.len() > MAX_DETERMINISTIC_LEN + MAX_DETERMINISTIC_OVERHEAD {
        return Err(FormatError::TooLong.into());
    }
    let mut r = Reader::new(encrypted);
    r.magic(DETERMINISTIC_MAGIC)?;
    let secret_id = core::str::from_utf8(r.lp16(1, MAX_ID_LEN)?)
        .ok()
        .filter(|s| check_id(s).is_ok())
        .ok_or(FormatError::InvalidValue)?;
    let siv: [u8; SIV_LEN] = r.array()?;
    Ok((secret_id, siv, r.rest()))
}

/// The secret id a deterministic field names, read from its prefix without decrypting, so
/// the caller can pick the key (during a rotation a field may be under either secret). Fails
/// exactly when the framing is invalid: bad magic or version, a malformed secret id, or fewer
/// than 16 bytes for the synthetic IV.
pub fn deterministic_secret_id(encrypted: &[u8]) -> Result<SecretId> {
    let (secret_id, _, _) = parse_deterministic(encrypted)?;
    SecretId::from_wire(secret_id.as_bytes())
}

/// Computes the blind indexes of one field path of one tenant. The keyed HMAC state, with
/// the label, tenant and path already absorbed, is prepared once and copied per value.
#[derive(Clone)]
pub struct BlindIndexer {
    mac: HmacSha256,
    len: usize,
}

impl BlindIndexer {
    /// Prepares to index values of `path` owned by `tenant` with `key`, which must be a
    /// [`Purpose::BlindIndex`] key ([`Error::InvalidKey`] otherwise), giving indexes of `len`
    /// bytes: 1 to [`MAX_BLIND_INDEX_LEN`] ([`Error::Limit`] otherwise).
    pub fn new(key: &DerivedKey, tenant: &TenantId, path: &FieldPath, len: usize) -> Result<Self> {
        key.require(Purpose::BlindIndex)?;
        if !(1..=MAX_BLIND_INDEX_LEN).contains(&len) {
            return Err(Error::Limit);
        }
        let mut hmac_key = Zeroizing::new([0u8; HMAC_KEY_LEN]);
        hmac_key.copy_from_slice(key.expose_secret());
        let mut mac = HmacSha256::new(&hmac_key);
        let (t, p) = (tenant.as_bytes(), path.as_bytes());
        mac.update(BLIND_INDEX_LABEL);
        mac.update(&len16(t));
        mac.update(t);
        mac.update(&len16(p));
        mac.update(p);
        Ok(Self { mac, len })
    }

    /// The length of the indexes this indexer gives (bytes).
    pub fn index_len(&self) -> usize {
        self.len
    }

    /// The blind index of `value`: [`BlindIndexer::index_len`] bytes, equal for equal values.
    /// Values longer than [`MAX_BLIND_INDEX_VALUE_LEN`] are an [`Error::Limit`].
    pub fn compute(&self, value: &[u8]) -> Result<Vec<u8>> {
        let n = u32::try_from(value.len()).map_err(|_| Error::Limit)?;
        let mut mac = self.mac.clone();
        mac.update(&n.to_be_bytes());
        mac.update(value);
        let tag = Zeroizing::new(mac.finalize());
        Ok(tag[..self.len].to_vec())
    }
}

impl fmt::Debug for BlindIndexer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlindIndexer")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}
