//! The primitives, exactly as the formats call them. `pub(crate)`: nothing outside the core
//! reaches in (the hidden `__private` re-export exists only for the crate's own tests and
//! benches, which check these functions against Wycheproof).

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_siv::siv::Aes256Siv;
use chacha20poly1305::ChaCha20Poly1305;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// AEAD key length for both AEADs (bytes).
pub const KEY_LEN: usize = 32;
/// AEAD nonce length for both AEADs (bytes).
pub const NONCE_LEN: usize = 12;
/// AEAD tag length for both AEADs (bytes).
pub const TAG_LEN: usize = 16;

/// AES-256-SIV key length: 512 bits, the first half for S2V (AES-CMAC), the second for CTR.
pub const SIV_KEY_LEN: usize = 64;
/// AES-SIV synthetic IV length (bytes): the IV of the CTR pass and the authentication tag.
pub const SIV_LEN: usize = 16;
/// HMAC-SHA256 key length as the formats use it (bytes).
pub const HMAC_KEY_LEN: usize = 32;
/// HMAC-SHA256 output length (bytes).
pub const HMAC_LEN: usize = 32;

/// HKDF-SHA256 with `info` given as parts that are concatenated (no copy is made).
/// `out` may be at most 255 * 32 bytes.
pub fn hkdf_sha256(salt: Option<&[u8]>, ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<()> {
    Hkdf::<Sha256>::new(salt, ikm)
        .expand_multi_info(info, out)
        .map_err(|_| Error::Limit)
}

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// An AES-256-GCM key schedule with the 96-bit nonce and 128-bit tag the formats use.
pub struct Aes256GcmKey(Aes256Gcm);

impl Aes256GcmKey {
    /// Expands a 256-bit key.
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self(Aes256Gcm::new(key.into()))
    }

    /// Encrypts `buf` in place and returns the tag.
    pub fn seal_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        self.0
            .encrypt_inout_detached(nonce.into(), aad, buf.into())
            .map(Into::into)
            .map_err(|_| Error::Limit)
    }

    /// Decrypts `buf` in place after checking `tag`. On failure `buf` is zeroed, so no
    /// unauthenticated plaintext survives.
    pub fn open_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        self.0
            .decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
            .map_err(|_| {
                buf.fill(0);
                Error::Decrypt
            })
    }
}

/// A ChaCha20-Poly1305 key with the 96-bit nonce and 128-bit tag of the STREAM format.
pub struct ChaChaKey(ChaCha20Poly1305);

impl ChaChaKey {
    /// Wraps a 256-bit key.
    pub fn new(key: &[u8; KEY_LEN]) -> Self {
        Self(ChaCha20Poly1305::new(key.into()))
    }

    /// Encrypts `input` into `output` (same length) and returns the tag: one pass, no
    /// intermediate copy.
    pub fn seal_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        let buf = aes_gcm::aead::inout::InOutBuf::new(input, output).map_err(|_| Error::Limit)?;
        self.0
            .encrypt_inout_detached(nonce.into(), aad, buf)
            .map(Into::into)
            .map_err(|_| Error::Limit)
    }

    /// Decrypts `input` into `output` (same length) after checking `tag`; zeroes `output`
    /// on failure.
    pub fn open_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        let buf = aes_gcm::aead::inout::InOutBuf::new(input, output).map_err(|_| Error::Limit)?;
        self.0
            .decrypt_inout_detached(nonce.into(), aad, buf, tag.into())
            .map_err(|_| {
                output.fill(0);
                Error::Decrypt
            })
    }

    /// Encrypts `buf` in place and returns the tag.
    pub fn seal_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN]> {
        self.0
            .encrypt_inout_detached(nonce.into(), aad, buf.into())
            .map(Into::into)
            .map_err(|_| Error::Limit)
    }

    /// Decrypts `buf` in place after checking `tag`; zeroes `buf` on failure.
    pub fn open_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<()> {
        self.0
            .decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
            .map_err(|_| {
                buf.fill(0);
                Error::Decrypt
            })
    }
}

/// An AES-256-SIV key (RFC 5297: S2V over AES-256-CMAC, then AES-256-CTR) used as a
/// deterministic AEAD: exactly one associated-data component and no nonce, so equal inputs
/// give equal outputs.
///
/// `aes-siv`'s `Siv` works through `&mut self` (its CMAC state) and expands the CTR key on
/// every call anyway, so one instance cannot be shared between callers. This type keeps the
/// 64 key bytes (zeroized on drop) and builds the `Siv` per call; that costs one more AES-256
/// key expansion and the CMAC subkey block, and lets `&self` methods run from many threads.
pub struct Aes256SivKey(Zeroizing<[u8; SIV_KEY_LEN]>);

impl Aes256SivKey {
    /// Keeps a 512-bit key.
    pub fn new(key: &[u8; SIV_KEY_LEN]) -> Self {
        Self(Zeroizing::new(*key))
    }

    fn siv(&self) -> Aes256Siv {
        Aes256Siv::new((&*self.0).into())
    }

    /// Encrypts `buf` in place (same length) with `ad` as the single associated-data
    /// component and returns the synthetic IV, which the formats store in front of the
    /// ciphertext.
    pub fn seal_detached(&self, ad: &[u8], buf: &mut [u8]) -> Result<[u8; SIV_LEN]> {
        self.siv()
            .encrypt_inout_detached([ad], buf.into())
            .map(Into::into)
            .map_err(|_| Error::Limit)
    }

    /// Decrypts `buf` in place after checking the synthetic IV `siv` against `ad` and the
    /// plaintext. On failure `buf` is zeroed, so no unauthenticated plaintext survives.
    pub fn open_detached(&self, ad: &[u8], buf: &mut [u8], siv: &[u8; SIV_LEN]) -> Result<()> {
        self.siv()
            .decrypt_inout_detached([ad], buf.into(), siv.into())
            .map_err(|_| {
                buf.fill(0);
                Error::Decrypt
            })
    }
}

impl core::fmt::Debug for Aes256SivKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Aes256SivKey(<redacted>)")
    }
}

/// A keyed HMAC-SHA256 state (RFC 2104) with a 256-bit key. Cloning copies the state after
/// the key blocks (and after anything already absorbed), so a key and a fixed prefix are
/// processed once and reused for every message. The state zeroizes on drop.
#[derive(Clone)]
pub struct HmacSha256(Hmac<Sha256>);

impl HmacSha256 {
    /// Keys a fresh state.
    pub fn new(key: &[u8; HMAC_KEY_LEN]) -> Self {
        // A 32-byte key is shorter than SHA-256's 64-byte block, so HMAC pads it with zeros
        // (RFC 2104, step 1): the padded block is that same key, fed as a whole block.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..HMAC_KEY_LEN].copy_from_slice(key);
        Self(<Hmac<Sha256> as hmac::KeyInit>::new((&*block).into()))
    }

    /// Absorbs `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The 32-byte tag over everything absorbed.
    pub fn finalize(self) -> [u8; HMAC_LEN] {
        self.0.finalize().into_bytes().into()
    }
}

impl core::fmt::Debug for HmacSha256 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("HmacSha256(<redacted>)")
    }
}

/// Ed25519 signature over `label ‖ parts…`, the signed-input convention of every format.
pub fn ed25519_sign(key: &ed25519_dalek::SigningKey, label: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    use ed25519_dalek::Signer;
    let msg = concat(label, parts);
    key.sign(&msg).to_bytes()
}

/// Strict Ed25519 verification (`verify_strict`: rejects non-canonical encodings and
/// small-order keys) of `sig` over `label ‖ parts…`.
pub fn ed25519_verify(
    key: &ed25519_dalek::VerifyingKey,
    label: &[u8],
    parts: &[&[u8]],
    sig: &[u8; 64],
) -> Result<()> {
    let msg = concat(label, parts);
    let sig = ed25519_dalek::Signature::from_bytes(sig);
    key.verify_strict(&msg, &sig).map_err(|_| Error::Signature)
}

fn concat(label: &[u8], parts: &[&[u8]]) -> alloc::vec::Vec<u8> {
    let len = label.len() + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut msg = alloc::vec::Vec::with_capacity(len);
    msg.extend_from_slice(label);
    for p in parts {
        msg.extend_from_slice(p);
    }
    msg
}
