//! Passphrase-sealed device keys, format `KSP` version 1 (docs/FORMAT.md §23): the bytes the
//! wasm SDK's `exportKeys` returns and `importKeys` reads, the only form in which it lets
//! private keys leave WebAssembly memory.
//!
//! ```text
//! sealed keys = header ‖ ciphertext [80]
//! header      = "KSP" 0x01
//!             ‖ kdf              u8     1 = Argon2id, version 1.3 (0x13)
//!             ‖ memory           u32    KiB, 65 536 ..= 1 048 576
//!             ‖ iterations       u32    3 ..= 32
//!             ‖ parallelism      u32    1 ..= 16
//!             ‖ salt             [16]   random, new for every export
//!             ‖ recipient id     lp16   1..256, identifier rules
//!             ‖ encryption key   [32]   X25519 public key
//!             ‖ signing key      [32]   Ed25519 public key (a valid point)
//! ikm         = Argon2id(password = passphrase (UTF-8), salt, memory, iterations,
//!                        parallelism, output 32 bytes, no secret, no associated data)
//! key         = HKDF-SHA256(salt = none, ikm, info = "keystead/v1/key-export")
//! ciphertext  = ChaCha20-Poly1305(key, nonce = 12 zero bytes, aad = lp32(header),
//!                                 X25519 private key [32] ‖ Ed25519 seed [32]) ‖ tag [16]
//! ```
//!
//! * The parameter floor is DESIGN.md's escrow setting (m = 64 MiB, t = 3, p = 1) and is
//!   enforced on read: an attacker who can edit a stored blob cannot weaken the KDF, and a
//!   weaker blob is `Malformed` before any passphrase is tried. The ceiling bounds the work
//!   a hostile blob can demand.
//! * The key is single-use (a fresh 16-byte salt per export), so the zero nonce is never
//!   reused under one key.
//! * The AAD binds everything before the ciphertext: parameters, salt, recipient id and both
//!   public keys. After decryption the private keys must reproduce the stored public keys.
//! * A wrong passphrase, like any tampering, is `Decrypt`.

use alloc::vec::Vec;

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::device::DeviceKeys;
use crate::error::{Error, FormatError, Result};
use crate::ids::RecipientId;
use crate::keys::{EncryptionKeyPair, EncryptionPublicKey, SigningKeyPair, SigningPublicKey};
use crate::wire::{self, Reader};

const MAGIC: &[u8; 3] = b"KSP";
const KDF_ARGON2ID_13: u8 = 1;
const LABEL: &[u8] = b"keystead/v1/key-export";
/// Length of the random salt.
pub const SALT_LEN: usize = 16;
const SECRETS_LEN: usize = 64;
const TAG_LEN: usize = 16;
const CT_LEN: usize = SECRETS_LEN + TAG_LEN;
const MAX_ID_LEN: usize = 256;
/// Longest accepted passphrase, in UTF-8 bytes.
pub const MAX_PASSPHRASE_LEN: usize = 1024;
/// Shortest encoding (1-byte recipient id).
pub const MIN_LEN: usize = 4 + 1 + 12 + SALT_LEN + 2 + 1 + 64 + CT_LEN;
/// Longest encoding (256-byte recipient id).
pub const MAX_LEN: usize = MIN_LEN - 1 + MAX_ID_LEN;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl KdfParams {
    /// What `exportKeys` writes: m = 64 MiB, t = 3, p = 1 (DESIGN.md's escrow parameters).
    pub const DEFAULT: Self = Self {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };
    /// The weakest parameters a reader accepts (each field separately).
    pub const FLOOR: Self = Self::DEFAULT;
    /// The strongest parameters a reader accepts (each field separately).
    pub const CEILING: Self = Self {
        memory_kib: 1024 * 1024,
        iterations: 32,
        parallelism: 16,
    };

    pub(crate) fn check(&self) -> Result<()> {
        let (lo, hi) = (Self::FLOOR, Self::CEILING);
        let ok = (lo.memory_kib..=hi.memory_kib).contains(&self.memory_kib)
            && (lo.iterations..=hi.iterations).contains(&self.iterations)
            && (lo.parallelism..=hi.parallelism).contains(&self.parallelism);
        if ok {
            Ok(())
        } else {
            Err(FormatError::InvalidValue.into())
        }
    }
}

/// A parsed `KSP` blob. Parsing checks framing and the parameter bounds only; the passphrase
/// is checked by [`SealedKeys::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedKeys {
    params: KdfParams,
    salt: [u8; SALT_LEN],
    id: RecipientId,
    encryption_key: EncryptionPublicKey,
    signing_key: SigningPublicKey,
    ciphertext: [u8; CT_LEN],
}

impl SealedKeys {
    /// Seals `keys` under `passphrase` with [`KdfParams::DEFAULT`].
    pub fn seal(rng: &mut impl CryptoRng, keys: &DeviceKeys, passphrase: &str) -> Result<Self> {
        Self::seal_with_params(rng, keys, passphrase, KdfParams::DEFAULT)
    }

    /// Seals `keys` under `passphrase` with explicit parameters (within the floor and
    /// ceiling).
    pub fn seal_with_params(
        rng: &mut impl CryptoRng,
        keys: &DeviceKeys,
        passphrase: &str,
        params: KdfParams,
    ) -> Result<Self> {
        params.check().map_err(|_| Error::Limit)?;
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let mut sealed = Self {
            params,
            salt,
            id: keys.id().clone(),
            encryption_key: keys.encryption().public().clone(),
            signing_key: keys.signing().public(),
            ciphertext: [0u8; CT_LEN],
        };
        let key = derive_key(passphrase, &salt, &params)?;
        let mut buf = Zeroizing::new([0u8; SECRETS_LEN]);
        buf[..32].copy_from_slice(&*keys.encryption().expose_secret());
        buf[32..].copy_from_slice(&*keys.signing().expose_secret());
        let aad = wire::length_prefixed_aad(&sealed.header()?)?;
        let tag = ChaCha20Poly1305::new((&*key).into())
            .encrypt_inout_detached(&[0u8; 12].into(), &aad, (&mut buf[..]).into())
            .map_err(|_| Error::Limit)?;
        sealed.ciphertext[..SECRETS_LEN].copy_from_slice(&buf[..]);
        sealed.ciphertext[SECRETS_LEN..].copy_from_slice(&tag);
        Ok(sealed)
    }

    /// Opens the blob: derives the key from `passphrase`, decrypts, and checks that the
    /// private keys match the stored public keys. Any failure is [`Error::Decrypt`].
    pub fn open(&self, passphrase: &str) -> Result<DeviceKeys> {
        let key = derive_key(passphrase, &self.salt, &self.params)?;
        let aad = wire::length_prefixed_aad(&self.header()?)?;
        let mut buf = Zeroizing::new([0u8; SECRETS_LEN]);
        buf.copy_from_slice(&self.ciphertext[..SECRETS_LEN]);
        let tag: [u8; TAG_LEN] = {
            let mut t = [0u8; TAG_LEN];
            t.copy_from_slice(&self.ciphertext[SECRETS_LEN..]);
            t
        };
        ChaCha20Poly1305::new((&*key).into())
            .decrypt_inout_detached(&[0u8; 12].into(), &aad, (&mut buf[..]).into(), &tag.into())
            .map_err(|_| {
                buf.zeroize();
                Error::Decrypt
            })?;
        let mut x = Zeroizing::new([0u8; 32]);
        let mut s = Zeroizing::new([0u8; 32]);
        x.copy_from_slice(&buf[..32]);
        s.copy_from_slice(&buf[32..]);
        let encryption = EncryptionKeyPair::from_secret_bytes(&x);
        let signing = SigningKeyPair::from_secret_bytes(&s);
        if *encryption.public() != self.encryption_key || signing.public() != self.signing_key {
            return Err(Error::Decrypt);
        }
        Ok(DeviceKeys::from_parts(self.id.clone(), encryption, signing))
    }

    /// Parses a `KSP` blob (no trailing bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        r.magic(MAGIC)?;
        if r.u8()? != KDF_ARGON2ID_13 {
            return Err(FormatError::InvalidValue.into());
        }
        let params = KdfParams {
            memory_kib: r.u32()?,
            iterations: r.u32()?,
            parallelism: r.u32()?,
        };
        params.check()?;
        let salt = r.array()?;
        let id =
            core::str::from_utf8(r.lp16(1, MAX_ID_LEN)?).map_err(|_| FormatError::InvalidValue)?;
        let id = RecipientId::new(id).map_err(|_| FormatError::InvalidValue)?;
        let encryption_key =
            EncryptionPublicKey::from_bytes(&r.array()?).map_err(|_| FormatError::InvalidValue)?;
        let signing_key =
            SigningPublicKey::from_bytes(&r.array()?).map_err(|_| FormatError::InvalidValue)?;
        let ciphertext = r.array()?;
        r.finish()?;
        Ok(Self {
            params,
            salt,
            id,
            encryption_key,
            signing_key,
            ciphertext,
        })
    }

    /// Serializes the blob.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = self.header()?;
        out.extend_from_slice(&self.ciphertext);
        Ok(out)
    }

    /// Everything before the ciphertext (what the AAD binds).
    fn header(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(MAX_LEN);
        wire::put_magic(&mut out, MAGIC);
        out.push(KDF_ARGON2ID_13);
        out.extend_from_slice(&self.params.memory_kib.to_be_bytes());
        out.extend_from_slice(&self.params.iterations.to_be_bytes());
        out.extend_from_slice(&self.params.parallelism.to_be_bytes());
        out.extend_from_slice(&self.salt);
        wire::put_lp16(&mut out, self.id.as_bytes())?;
        out.extend_from_slice(&self.encryption_key.to_bytes());
        out.extend_from_slice(&self.signing_key.to_bytes());
        Ok(out)
    }

    /// The Argon2id parameters.
    pub fn params(&self) -> KdfParams {
        self.params
    }
    /// The recipient id of the sealed device.
    pub fn id(&self) -> &RecipientId {
        &self.id
    }
    /// The X25519 public key of the sealed device.
    pub fn encryption_key(&self) -> &EncryptionPublicKey {
        &self.encryption_key
    }
    /// The Ed25519 public key of the sealed device.
    pub fn signing_key(&self) -> &SigningPublicKey {
        &self.signing_key
    }
}

/// Argon2id → HKDF-SHA256 → the 32-byte sealing key.
fn derive_key(
    passphrase: &str,
    salt: &[u8; SALT_LEN],
    params: &KdfParams,
) -> Result<Zeroizing<[u8; 32]>> {
    if passphrase.is_empty() {
        return Err(Error::Usage);
    }
    if passphrase.len() > MAX_PASSPHRASE_LEN {
        return Err(Error::Limit);
    }
    argon2id_hkdf(passphrase.as_bytes(), salt, params, LABEL)
}

/// `HKDF-SHA256(salt = none, ikm = Argon2id v1.3(secret, salt, params, 32 bytes), info =
/// label)`. Shared with the identity escrow (`groups::escrow`). The caller bounds `secret`.
pub(crate) fn argon2id_hkdf(
    secret: &[u8],
    salt: &[u8; SALT_LEN],
    params: &KdfParams,
    label: &[u8],
) -> Result<Zeroizing<[u8; 32]>> {
    let argon_params = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(32),
    )
    .map_err(|_| Error::Limit)?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut ikm = Zeroizing::new([0u8; 32]);
    // Fails only if the memory cannot be allocated (the inputs are within argon2's limits).
    argon
        .hash_password_into(secret, salt, &mut ikm[..])
        .map_err(|_| Error::Limit)?;
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, &ikm[..])
        .expand(label, &mut key[..])
        .map_err(|_| Error::Limit)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lengths() {
        assert_eq!(MIN_LEN, 180);
        assert_eq!(MAX_LEN, 435);
    }
}
