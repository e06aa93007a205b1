//! The escrowed identity key, format `KSR` version 1, and recovery codes.
//!
//! ```text
//! escrow   = header ‖ ciphertext [48]
//! header   = "KSR" 0x01
//!          ‖ secret kind   u8     1 = recovery code, 2 = passphrase
//!          ‖ kdf           u8     1 = Argon2id v1.3
//!          ‖ memory u32 (KiB) ‖ iterations u32 ‖ parallelism u32   (floor and ceiling of KSP)
//!          ‖ salt          [16]
//!          ‖ user id       lp16
//!          ‖ identity key  [32]   Ed25519 public key
//!          ‖ fingerprint   [32]   the identity key's fingerprint
//! key      = HKDF-SHA256(ikm = Argon2id(secret, salt, params), info = "keystead/v1/escrow")
//! ciphertext = ChaCha20-Poly1305(key, 12 zero bytes, aad = lp32(header), identity seed [32])
//! ```
//!
//! The secret is the 16 raw bytes of a [`RecoveryCode`] or the UTF-8 passphrase. The floor
//! is checked when parsing, before any secret is tried. After decryption the seed must
//! reproduce the header's identity key.

use alloc::string::String;
use alloc::vec::Vec;

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, FormatError, Result};
use crate::groups::identity::{UserIdentity, read_signing_key};
use crate::hazmat;
use crate::ids::{MAX_ID_LEN, UserId};
use crate::key_export::{KdfParams, MAX_PASSPHRASE_LEN, SALT_LEN, argon2id_hkdf};
use crate::keys::SigningPublicKey;
use crate::wire::{self, Reader};

const MAGIC: &[u8; 3] = b"KSR";
const KDF_ARGON2ID_13: u8 = 1;
const LABEL: &[u8] = b"keystead/v1/escrow";
const CODE_LABEL: &[u8] = b"keystead/v1/recovery-code";
const CT_LEN: usize = 32 + 16;
/// Shortest encoding (1-byte user id).
pub const MIN_LEN: usize = 4 + 2 + 12 + SALT_LEN + 2 + 1 + 32 + 32 + CT_LEN;
/// Longest encoding (256-byte user id).
pub const MAX_LEN: usize = MIN_LEN - 1 + MAX_ID_LEN;

/// Crockford base32 (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Length of a rendered code without separators: 128 data bits + 12 check bits = 28
/// base32 characters.
const CODE_CHARS: usize = 28;

/// A generated 128-bit recovery code. Rendered as 7 groups of 4 Crockford base32
/// characters: the 128 bits, then a 12-bit check (the first 12 bits of
/// `SHA-256("keystead/v1/recovery-code" ‖ code)`). Parsing ignores case, spaces and dashes,
/// reads `O` as `0` and `I`/`L` as `1`, and rejects a wrong check.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct RecoveryCode([u8; 16]);

impl RecoveryCode {
    /// Draws a fresh code.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut c = Self([0; 16]);
        rng.fill_bytes(&mut c.0);
        c
    }

    fn check_bits(&self) -> u16 {
        let h = hazmat::sha256(&[CODE_LABEL, &self.0]);
        (u16::from(h[0]) << 4) | (u16::from(h[1]) >> 4)
    }

    /// The human-friendly form, e.g. `7ZQ1-…` (34 characters with dashes).
    pub fn render(&self) -> Zeroizing<String> {
        // 140 bits: the code as a big-endian u128, then the 12-bit check.
        let data = u128::from_be_bytes(self.0);
        let check = self.check_bits();
        let mut out = Zeroizing::new(String::with_capacity(34));
        for i in 0..CODE_CHARS {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            let bit = 5 * i; // first bit of this symbol, counting from the top of 140
            let v = symbol(data, check, bit);
            out.push(char::from(ALPHABET[usize::from(v)]));
        }
        out
    }

    /// Parses a rendered code (tolerant of case, spaces and dashes).
    pub fn parse(s: &str) -> Result<Self> {
        let mut bits: u128 = 0;
        let mut check: u16 = 0;
        let mut n = 0usize;
        for c in s.chars() {
            if c == '-' || c == ' ' {
                continue;
            }
            let c = match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                c => c,
            };
            let v = ALPHABET
                .iter()
                .position(|a| char::from(*a) == c)
                .ok_or(FormatError::InvalidValue)?;
            if n >= CODE_CHARS {
                return Err(FormatError::TooLong.into());
            }
            // 5 bits per symbol: the first 128 bits go to the code, the last 12 to the check.
            for k in (0..5).rev() {
                let b = (v >> k) & 1 == 1;
                let pos = 5 * n + (4 - k);
                if pos < 128 {
                    bits = (bits << 1) | u128::from(b);
                } else {
                    check = (check << 1) | u16::from(b);
                }
            }
            n += 1;
        }
        if n != CODE_CHARS {
            return Err(FormatError::UnexpectedEnd.into());
        }
        let code = Self(bits.to_be_bytes());
        bits.zeroize();
        if code.check_bits() != check {
            return Err(FormatError::InvalidValue.into());
        }
        Ok(code)
    }
}

/// The 5-bit symbol starting at bit `bit` of (128-bit data ‖ 12-bit check).
fn symbol(data: u128, check: u16, bit: usize) -> u8 {
    let mut v = 0u8;
    for k in bit..bit + 5 {
        let b = if k < 128 {
            ((data >> (127 - k)) & 1) as u8
        } else {
            ((check >> (139 - k)) & 1) as u8
        };
        v = (v << 1) | b;
    }
    v
}

impl core::fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("RecoveryCode(<redacted>)")
    }
}

/// The secret an escrow is sealed under.
#[derive(Clone, Copy, Debug)]
pub enum EscrowSecret<'a> {
    /// A generated recovery code (the default).
    Code(&'a RecoveryCode),
    /// A passphrase the user chose (opt-in), 1..1024 UTF-8 bytes, used as given.
    Passphrase(&'a str),
}

impl EscrowSecret<'_> {
    fn kind(&self) -> u8 {
        match self {
            EscrowSecret::Code(_) => 1,
            EscrowSecret::Passphrase(_) => 2,
        }
    }
    fn bytes(&self) -> Result<&[u8]> {
        match self {
            EscrowSecret::Code(c) => Ok(&c.0),
            EscrowSecret::Passphrase("") => Err(Error::Usage),
            EscrowSecret::Passphrase(p) if p.len() > MAX_PASSPHRASE_LEN => Err(Error::Limit),
            EscrowSecret::Passphrase(p) => Ok(p.as_bytes()),
        }
    }
}

/// A parsed `KSR` escrow of a user's identity key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscrowedIdentity {
    kind: u8,
    params: KdfParams,
    salt: [u8; SALT_LEN],
    user: UserId,
    identity: SigningPublicKey,
    ciphertext: [u8; CT_LEN],
}

impl EscrowedIdentity {
    /// Seals `identity` under `secret` with Argon2id m = 64 MiB, t = 3, p = 1.
    pub fn seal(
        rng: &mut impl CryptoRng,
        identity: &UserIdentity,
        secret: EscrowSecret<'_>,
    ) -> Result<Self> {
        Self::seal_inner(rng, identity, secret, KdfParams::DEFAULT)
    }

    /// Test-only: seals with parameters below the floor. The result opens in memory, but its
    /// bytes never parse (the floor is enforced on read). Not part of the API.
    #[doc(hidden)]
    pub fn __seal_weak_for_tests(
        rng: &mut impl CryptoRng,
        identity: &UserIdentity,
        secret: EscrowSecret<'_>,
        params: KdfParams,
    ) -> Result<Self> {
        Self::seal_inner(rng, identity, secret, params)
    }

    fn seal_inner(
        rng: &mut impl CryptoRng,
        identity: &UserIdentity,
        secret: EscrowSecret<'_>,
        params: KdfParams,
    ) -> Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let mut e = Self {
            kind: secret.kind(),
            params,
            salt,
            user: identity.user_id().clone(),
            identity: identity.public(),
            ciphertext: [0; CT_LEN],
        };
        let key = argon2id_hkdf(secret.bytes()?, &salt, &params, LABEL)?;
        let aad = wire::length_prefixed_aad(&e.header()?)?;
        let mut buf = identity.expose_seed();
        let tag = ChaCha20Poly1305::new((&*key).into())
            .encrypt_inout_detached(&[0u8; 12].into(), &aad, (&mut buf[..]).into())
            .map_err(|_| Error::Limit)?;
        e.ciphertext[..32].copy_from_slice(&buf[..]);
        e.ciphertext[32..].copy_from_slice(&tag);
        Ok(e)
    }

    /// Opens the escrow. A wrong secret, a secret of the other kind, or any tampering is
    /// [`Error::Decrypt`].
    pub fn open(&self, secret: EscrowSecret<'_>) -> Result<UserIdentity> {
        if secret.kind() != self.kind {
            return Err(Error::Decrypt);
        }
        let key = argon2id_hkdf(secret.bytes()?, &self.salt, &self.params, LABEL)?;
        let aad = wire::length_prefixed_aad(&self.header()?)?;
        let mut buf = Zeroizing::new([0u8; 32]);
        buf.copy_from_slice(&self.ciphertext[..32]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&self.ciphertext[32..]);
        ChaCha20Poly1305::new((&*key).into())
            .decrypt_inout_detached(&[0u8; 12].into(), &aad, (&mut buf[..]).into(), &tag.into())
            .map_err(|_| Error::Decrypt)?;
        let id = UserIdentity::from_seed(self.user.clone(), &buf);
        if id.public() != self.identity {
            return Err(Error::Decrypt);
        }
        Ok(id)
    }

    /// Parses a `KSR` blob, enforcing the Argon2id floor and ceiling.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        r.magic(MAGIC)?;
        let kind = r.u8()?;
        if kind != 1 && kind != 2 {
            return Err(FormatError::InvalidValue.into());
        }
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
        let user = UserId::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
        let identity = read_signing_key(&mut r)?;
        let fp: [u8; 32] = r.array()?;
        if fp != identity.fingerprint() {
            return Err(FormatError::InvalidValue.into());
        }
        let ciphertext = r.array()?;
        r.finish()?;
        Ok(Self {
            kind,
            params,
            salt,
            user,
            identity,
            ciphertext,
        })
    }

    /// Serializes the blob.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = self.header()?;
        out.extend_from_slice(&self.ciphertext);
        Ok(out)
    }

    fn header(&self) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(MAX_LEN);
        wire::put_magic(&mut out, MAGIC);
        out.push(self.kind);
        out.push(KDF_ARGON2ID_13);
        out.extend_from_slice(&self.params.memory_kib.to_be_bytes());
        out.extend_from_slice(&self.params.iterations.to_be_bytes());
        out.extend_from_slice(&self.params.parallelism.to_be_bytes());
        out.extend_from_slice(&self.salt);
        wire::put_lp16(&mut out, self.user.as_bytes())?;
        out.extend_from_slice(&self.identity.to_bytes());
        out.extend_from_slice(&self.identity.fingerprint());
        Ok(out)
    }

    /// Whether the escrow is sealed under a recovery code (`true`) or a passphrase.
    pub fn is_recovery_code(&self) -> bool {
        self.kind == 1
    }
    /// The Argon2id parameters.
    pub fn params(&self) -> KdfParams {
        self.params
    }
    /// The user.
    pub fn user_id(&self) -> &UserId {
        &self.user
    }
    /// The escrowed identity public key.
    pub fn identity_key(&self) -> &SigningPublicKey {
        &self.identity
    }
}
