//! Key types. Secrets zeroize on drop, have no `Clone`, no `Serialize` and a `Debug` that
//! prints no key material. Raw secret bytes leave a type only through a method whose name
//! says so (`expose_secret`).

use core::fmt;

use hpke::kem::{Kem as _, X25519HkdfSha256};
use hpke::{Deserializable, Serializable};
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, Result};
use crate::hazmat;

/// Length of a DEK, a leased key and every other symmetric key in the formats.
pub const SYMMETRIC_KEY_LEN: usize = 32;

/// A data encryption key: 32 random bytes, one per record, document or attachment, new on
/// every update.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct Dek([u8; SYMMETRIC_KEY_LEN]);

impl Dek {
    /// Draws a fresh DEK from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut k = Self([0; SYMMETRIC_KEY_LEN]);
        rng.fill_bytes(&mut k.0);
        k
    }

    /// Takes ownership of key bytes received from the Encryption Service (or from a sealed
    /// grant). The caller should zeroize its own copy.
    pub fn from_bytes(bytes: [u8; SYMMETRIC_KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw key bytes. Only for handing the DEK to its owner (the ES answering an
    /// unwrap); never log, store or display them.
    pub fn expose_secret(&self) -> &[u8; SYMMETRIC_KEY_LEN] {
        &self.0
    }

    /// Constant-time comparison (for tests and recovery tools).
    pub fn ct_eq(&self, other: &Dek) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek(<redacted>)")
    }
}

/// The identifier of a leased key: 16 random bytes, new for every lease period. EDEKs
/// wrapped under a leased key name it, so an ES finds the key in its cache.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeasedKeyId(pub [u8; 16]);

impl LeasedKeyId {
    /// Draws a fresh id.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut id = [0; 16];
        rng.fill_bytes(&mut id);
        Self(id)
    }
}

impl fmt::Debug for LeasedKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LeasedKeyId(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// A leased key: 32 random bytes, wrapped once by the tenant's KMS per lease period and kept
/// in zeroizing memory by the ES, which wraps DEKs under it locally.
#[derive(ZeroizeOnDrop)]
pub struct LeasedKey {
    #[zeroize(skip)]
    id: LeasedKeyId,
    key: [u8; SYMMETRIC_KEY_LEN],
}

impl LeasedKey {
    /// Draws a fresh leased key with a fresh id.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let id = LeasedKeyId::generate(rng);
        let mut key = [0; SYMMETRIC_KEY_LEN];
        rng.fill_bytes(&mut key);
        Self { id, key }
    }

    /// Rebuilds a leased key from the bytes a KMS unwrapped and the id the EDEK carried.
    pub fn from_bytes(id: LeasedKeyId, key: [u8; SYMMETRIC_KEY_LEN]) -> Self {
        Self { id, key }
    }

    /// The key's id.
    pub fn id(&self) -> LeasedKeyId {
        self.id
    }

    /// The raw key bytes, for sending to the KMS to be wrapped. Never log or store them.
    pub fn expose_secret(&self) -> &[u8; SYMMETRIC_KEY_LEN] {
        &self.key
    }
}

impl fmt::Debug for LeasedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeasedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The fingerprint of a public key: `SHA-256("keystead/v1/fingerprint" ‖ kind ‖ key)`, where
/// kind is 1 for X25519 encryption keys and 2 for Ed25519 signing keys.
pub type Fingerprint = [u8; 32];

const FP_LABEL: &[u8] = b"keystead/v1/fingerprint";

/// An X25519 public key that keys can be sealed to (HPKE, DHKEM(X25519, HKDF-SHA256)).
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionPublicKey {
    key: <X25519HkdfSha256 as hpke::Kem>::PublicKey,
    bytes: [u8; 32],
}

impl EncryptionPublicKey {
    /// Parses 32 bytes. Every 32-byte string is an X25519 public key; low-order points are
    /// refused at sealing time, when the shared secret would be zero.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let key = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(bytes)
            .map_err(|_| Error::InvalidKey)?;
        Ok(Self { key, bytes: *bytes })
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }

    /// The key's fingerprint (see [`Fingerprint`]).
    pub fn fingerprint(&self) -> Fingerprint {
        hazmat::sha256(&[FP_LABEL, &[1], &self.bytes])
    }

    pub(crate) fn hpke(&self) -> &<X25519HkdfSha256 as hpke::Kem>::PublicKey {
        &self.key
    }
}

impl fmt::Debug for EncryptionPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EncryptionPublicKey(")?;
        for b in &self.bytes[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// An X25519 key pair for opening sealed keys. The private half zeroizes on drop.
pub struct EncryptionKeyPair {
    secret: <X25519HkdfSha256 as hpke::Kem>::PrivateKey,
    public: EncryptionPublicKey,
}

impl EncryptionKeyPair {
    /// Generates a key pair from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        let mut ikm = [0u8; 32];
        rng.fill_bytes(&mut ikm);
        let kp = Self::from_secret_bytes(&ikm);
        ikm.zeroize();
        kp
    }

    /// Rebuilds a key pair from its 32-byte private key (clamped as X25519 requires).
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        // An X25519 private key is any 32 bytes (RFC 7748 clamps on use), so parsing cannot
        // fail for this KEM; the fallback keeps the function total without a panic.
        let secret = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(secret)
            .unwrap_or_else(|_| X25519HkdfSha256::derive_keypair(secret).0);
        let pk = X25519HkdfSha256::sk_to_pk(&secret);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&pk.to_bytes());
        Self {
            secret,
            public: EncryptionPublicKey { key: pk, bytes },
        }
    }

    /// The public half.
    pub fn public(&self) -> &EncryptionPublicKey {
        &self.public
    }

    /// The raw private key, for an export API that encrypts it (e.g. under a passphrase).
    /// Never log or store it in the clear.
    pub fn expose_secret(&self) -> zeroize::Zeroizing<[u8; 32]> {
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        out.copy_from_slice(&self.secret.to_bytes());
        out
    }

    pub(crate) fn hpke_secret(&self) -> &<X25519HkdfSha256 as hpke::Kem>::PrivateKey {
        &self.secret
    }
}

impl fmt::Debug for EncryptionKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key, verified with `verify_strict`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigningPublicKey(ed25519_dalek::VerifyingKey);

impl SigningPublicKey {
    /// Parses a 32-byte compressed point; rejects encodings that are not points.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| Error::InvalidKey)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The key's fingerprint (see [`Fingerprint`]).
    pub fn fingerprint(&self) -> Fingerprint {
        hazmat::sha256(&[FP_LABEL, &[2], self.0.as_bytes()])
    }

    pub(crate) fn verify(&self, label: &[u8], parts: &[&[u8]], sig: &[u8; 64]) -> Result<()> {
        hazmat::ed25519_verify(&self.0, label, parts, sig)
    }
}

impl fmt::Debug for SigningPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningPublicKey(")?;
        for b in &self.0.as_bytes()[..8] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// An Ed25519 signing key pair (an author's or granter's device key). Zeroizes on drop.
pub struct SigningKeyPair(ed25519_dalek::SigningKey);

impl SigningKeyPair {
    /// Generates a key pair from `rng`.
    pub fn generate(rng: &mut impl CryptoRng) -> Self {
        Self(ed25519_dalek::SigningKey::generate(rng))
    }

    /// Rebuilds a key pair from its 32-byte seed.
    pub fn from_secret_bytes(seed: &[u8; 32]) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// The public half.
    pub fn public(&self) -> SigningPublicKey {
        SigningPublicKey(self.0.verifying_key())
    }

    /// The 32-byte seed, for an export API that encrypts it. Never log or store it in clear.
    pub fn expose_secret(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    pub(crate) fn sign(&self, label: &[u8], parts: &[&[u8]]) -> [u8; 64] {
        hazmat::ed25519_sign(&self.0, label, parts)
    }

    /// A copy for an object that must own the key (e.g. a stream encryptor). Crate-private
    /// so that secrets are never cloned by accident outside the core.
    pub(crate) fn duplicate(&self) -> Self {
        Self(ed25519_dalek::SigningKey::from_bytes(self.0.as_bytes()))
    }
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}
