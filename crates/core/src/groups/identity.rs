//! Users, their identity keys, device certificates (`KSC`) and signed user records (`KSU`).
//!
//! ```text
//! device cert = body ‖ binding signature [64] ‖ identity signature [64]
//! body        = "KSC" 0x01 ‖ lp16 user id ‖ identity key [32] ‖ lp16 device id
//!               ‖ device X25519 key [32] ‖ device Ed25519 key [32]
//! binding signature  = Ed25519(device key,   "keystead/v1/device-binding" ‖ body)
//! identity signature = Ed25519(identity key, "keystead/v1/device-cert" ‖ body ‖ binding sig)
//!
//! user record = unsigned ‖ signature [64]
//! unsigned    = "KSU" 0x01 ‖ lp16 user id ‖ identity key [32] ‖ version u64 (≥ 1)
//!               ‖ count u16 (1..=64) ‖ count × lp16 device cert
//! signature   = Ed25519(identity key, "keystead/v1/user-record" ‖ unsigned)
//! ```
//!
//! Parsing verifies every signature, so a [`DeviceCertificate`] or [`UserRecord`] value is
//! authentic for the identity key it names. Whether that identity key is the right one for
//! the user is a trust decision: pin it ([`crate::groups::PinStore`]), compare safety codes,
//! or take it from a verified group log.

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::device::DeviceKeys;
use crate::error::{Error, FormatError, Result};
use crate::ids::{MAX_ID_LEN, RecipientId, UserId};
use crate::keys::{EncryptionPublicKey, Fingerprint, SigningKeyPair, SigningPublicKey};
use crate::wire::{self, Reader};

const CERT_MAGIC: &[u8; 3] = b"KSC";
const RECORD_MAGIC: &[u8; 3] = b"KSU";
const CERT_LABEL: &[u8] = b"keystead/v1/device-cert";
const BINDING_LABEL: &[u8] = b"keystead/v1/device-binding";
const RECORD_LABEL: &[u8] = b"keystead/v1/user-record";

/// Most devices in one user record.
pub const MAX_DEVICES: usize = 64;
/// Longest device certificate: two 256-byte ids.
pub const MAX_CERT_LEN: usize = 4 + 2 * (2 + MAX_ID_LEN) + 3 * 32 + 2 * 64;
/// Longest user record.
pub const MAX_RECORD_LEN: usize =
    4 + 2 + MAX_ID_LEN + 32 + 8 + 2 + MAX_DEVICES * (2 + MAX_CERT_LEN) + 64;

/// A user's Ed25519 identity key and user id. The secret zeroizes on drop; there is no
/// `Clone`, and `Debug` prints only the public half.
pub struct UserIdentity {
    user: UserId,
    key: SigningKeyPair,
}

impl UserIdentity {
    /// A fresh identity key for `user`.
    pub fn generate(rng: &mut impl CryptoRng, user: UserId) -> Self {
        Self {
            user,
            key: SigningKeyPair::generate(rng),
        }
    }

    /// Rebuilds an identity from its 32-byte Ed25519 seed (an escrow, or a test vector).
    pub fn from_seed(user: UserId, seed: &[u8; 32]) -> Self {
        Self {
            user,
            key: SigningKeyPair::from_secret_bytes(seed),
        }
    }

    /// The user id.
    pub fn user_id(&self) -> &UserId {
        &self.user
    }

    /// The identity public key.
    pub fn public(&self) -> SigningPublicKey {
        self.key.public()
    }

    /// The identity key's fingerprint (what pinning and group logs record).
    pub fn fingerprint(&self) -> Fingerprint {
        self.key.public().fingerprint()
    }

    /// The 32-byte seed, for the escrow. Never log or store it in the clear.
    pub fn expose_seed(&self) -> zeroize::Zeroizing<[u8; 32]> {
        self.key.expose_secret()
    }

    /// Certifies `device` as one of this user's devices. The device key counter-signs, so
    /// the certificate also proves possession of the device signing key.
    pub fn certify(&self, device: &DeviceKeys) -> Result<DeviceCertificate> {
        DeviceCertificate::issue(self, device)
    }

    /// Signs a user record listing `devices` at `version` (which must exceed every version
    /// the user signed before).
    pub fn sign_record(&self, version: u64, devices: Vec<DeviceCertificate>) -> Result<UserRecord> {
        UserRecord::sign(self, version, devices)
    }

    pub(crate) fn sign(&self, label: &[u8], parts: &[&[u8]]) -> [u8; 64] {
        self.key.sign(label, parts)
    }
}

impl fmt::Debug for UserIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserIdentity")
            .field("user", &self.user)
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// A device certificate (`KSC`): the user's identity key vouches for the device's keys, and
/// the device key vouches for the binding. Verified on parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceCertificate {
    user: UserId,
    identity: SigningPublicKey,
    device: RecipientId,
    encryption: EncryptionPublicKey,
    signing: SigningPublicKey,
    bytes: Vec<u8>,
}

impl DeviceCertificate {
    /// Issues a certificate for `device` signed by `identity`.
    pub fn issue(identity: &UserIdentity, device: &DeviceKeys) -> Result<Self> {
        let mut body = Vec::with_capacity(MAX_CERT_LEN);
        wire::put_magic(&mut body, CERT_MAGIC);
        wire::put_lp16(&mut body, identity.user.as_bytes())?;
        body.extend_from_slice(&identity.public().to_bytes());
        wire::put_lp16(&mut body, device.id().as_bytes())?;
        body.extend_from_slice(&device.encryption().public().to_bytes());
        body.extend_from_slice(&device.signing().public().to_bytes());
        let binding = device.signing().sign(BINDING_LABEL, &[&body]);
        let sig = identity.sign(CERT_LABEL, &[&body, &binding]);
        body.extend_from_slice(&binding);
        body.extend_from_slice(&sig);
        Self::parse(&body)
    }

    /// Parses a certificate and verifies both signatures.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_CERT_LEN {
            return Err(FormatError::TooLong.into());
        }
        let mut r = Reader::new(bytes);
        r.magic(CERT_MAGIC)?;
        let user = UserId::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
        let identity = read_signing_key(&mut r)?;
        let device = RecipientId::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
        let encryption =
            EncryptionPublicKey::from_bytes(&r.array()?).map_err(|_| FormatError::InvalidValue)?;
        let signing = read_signing_key(&mut r)?;
        let body_len = bytes.len() - r.remaining();
        let binding: [u8; 64] = r.array()?;
        let sig: [u8; 64] = r.array()?;
        r.finish()?;
        let body = bytes.get(..body_len).ok_or(FormatError::UnexpectedEnd)?;
        signing.verify(BINDING_LABEL, &[body], &binding)?;
        identity.verify(CERT_LABEL, &[body, &binding], &sig)?;
        Ok(Self {
            user,
            identity,
            device,
            encryption,
            signing,
            bytes: bytes.to_vec(),
        })
    }

    /// The encoded certificate.
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// The user the device belongs to.
    pub fn user_id(&self) -> &UserId {
        &self.user
    }
    /// The identity key that signed the certificate.
    pub fn identity_key(&self) -> &SigningPublicKey {
        &self.identity
    }
    /// The device id (the recipient id of keys sealed to the device).
    pub fn device_id(&self) -> &RecipientId {
        &self.device
    }
    /// The device's X25519 key.
    pub fn encryption_key(&self) -> &EncryptionPublicKey {
        &self.encryption
    }
    /// The device's Ed25519 key.
    pub fn signing_key(&self) -> &SigningPublicKey {
        &self.signing
    }
}

/// A user's signed device list (`KSU`): user id, identity key, a version that only
/// increases, and the certificates of the user's current devices. Verified on parse.
///
/// A client that has seen version `n` accepts only a record with the same identity key and
/// a higher version ([`UserRecord::check_successor`]); a device key substituted by a server
/// breaks a signature, and a replayed older record fails the version check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    user: UserId,
    identity: SigningPublicKey,
    version: u64,
    devices: Vec<DeviceCertificate>,
    bytes: Vec<u8>,
}

impl UserRecord {
    fn sign(
        identity: &UserIdentity,
        version: u64,
        devices: Vec<DeviceCertificate>,
    ) -> Result<Self> {
        let mut out = Vec::new();
        wire::put_magic(&mut out, RECORD_MAGIC);
        wire::put_lp16(&mut out, identity.user.as_bytes())?;
        out.extend_from_slice(&identity.public().to_bytes());
        out.extend_from_slice(&version.to_be_bytes());
        let n = u16::try_from(devices.len()).map_err(|_| Error::Limit)?;
        out.extend_from_slice(&n.to_be_bytes());
        for d in &devices {
            wire::put_lp16(&mut out, d.to_bytes())?;
        }
        let sig = identity.sign(RECORD_LABEL, &[&out]);
        out.extend_from_slice(&sig);
        // Re-parsing applies every rule (count, ids, certificate owner) to what we wrote.
        Self::parse(&out).map_err(|e| match e {
            Error::Format(_) => Error::Usage,
            e => e,
        })
    }

    /// Parses a record and verifies its signature and every certificate in it. Each
    /// certificate must name this record's user id and identity key; device ids are unique.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(FormatError::TooLong.into());
        }
        let mut r = Reader::new(bytes);
        r.magic(RECORD_MAGIC)?;
        let user = UserId::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
        let identity = read_signing_key(&mut r)?;
        let version = r.u64()?;
        if version == 0 {
            return Err(FormatError::InvalidValue.into());
        }
        let count = usize::from(r.u16()?);
        if count == 0 || count > MAX_DEVICES {
            return Err(FormatError::InvalidValue.into());
        }
        let mut devices: Vec<DeviceCertificate> = Vec::with_capacity(count);
        for _ in 0..count {
            let cert = DeviceCertificate::parse(r.lp16(1, MAX_CERT_LEN)?)?;
            if cert.user != user || cert.identity != identity {
                return Err(FormatError::InvalidValue.into());
            }
            if devices.iter().any(|d| d.device == cert.device) {
                return Err(FormatError::InvalidValue.into());
            }
            devices.push(cert);
        }
        let unsigned_len = bytes.len() - r.remaining();
        let sig: [u8; 64] = r.array()?;
        r.finish()?;
        let unsigned = bytes
            .get(..unsigned_len)
            .ok_or(FormatError::UnexpectedEnd)?;
        identity.verify(RECORD_LABEL, &[unsigned], &sig)?;
        Ok(Self {
            user,
            identity,
            version,
            devices,
            bytes: bytes.to_vec(),
        })
    }

    /// Checks that `next` may replace this record: same user, same identity key
    /// ([`Error::KeyChanged`] otherwise) and a strictly higher version ([`Error::Rollback`]).
    pub fn check_successor(&self, next: &UserRecord) -> Result<()> {
        if next.user != self.user {
            return Err(Error::InvalidId);
        }
        if next.identity != self.identity {
            return Err(Error::KeyChanged);
        }
        if next.version <= self.version {
            return Err(Error::Rollback);
        }
        Ok(())
    }

    /// A new record, one version up, without the device `device` (`removeDevice`). In a
    /// group, publish it with [`crate::groups::Op::UpdateMember`], which starts a new epoch.
    pub fn without_device(&self, identity: &UserIdentity, device: &RecipientId) -> Result<Self> {
        self.check_signer(identity)?;
        let devices: Vec<_> = self
            .devices
            .iter()
            .filter(|d| &d.device != device)
            .cloned()
            .collect();
        if devices.len() == self.devices.len() {
            return Err(Error::Usage);
        }
        Self::sign(identity, self.next_version()?, devices)
    }

    /// A new record, one version up, with the device certificate `cert` added.
    pub fn with_device(&self, identity: &UserIdentity, cert: DeviceCertificate) -> Result<Self> {
        self.check_signer(identity)?;
        let mut devices = self.devices.clone();
        devices.push(cert);
        Self::sign(identity, self.next_version()?, devices)
    }

    fn next_version(&self) -> Result<u64> {
        self.version.checked_add(1).ok_or(Error::Limit)
    }

    fn check_signer(&self, identity: &UserIdentity) -> Result<()> {
        if identity.user != self.user || identity.public() != self.identity {
            return Err(Error::Usage);
        }
        Ok(())
    }

    /// Checks that `cert` is, byte for byte, the certificate this record lists for its
    /// device id: a device key substituted anywhere is [`Error::KeyChanged`].
    pub fn check_device(&self, cert: &DeviceCertificate) -> Result<()> {
        match self.device(&cert.device) {
            Some(d) if d.bytes == cert.bytes => Ok(()),
            _ => Err(Error::KeyChanged),
        }
    }

    /// The certificate of device `id`, if the record lists it.
    pub fn device(&self, id: &RecipientId) -> Option<&DeviceCertificate> {
        self.devices.iter().find(|d| &d.device == id)
    }

    /// The encoded record.
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }
    /// The user.
    pub fn user_id(&self) -> &UserId {
        &self.user
    }
    /// The identity key that signed the record.
    pub fn identity_key(&self) -> &SigningPublicKey {
        &self.identity
    }
    /// The identity key's fingerprint.
    pub fn identity_fingerprint(&self) -> Fingerprint {
        self.identity.fingerprint()
    }
    /// The record's version.
    pub fn version(&self) -> u64 {
        self.version
    }
    /// The user's devices.
    pub fn devices(&self) -> &[DeviceCertificate] {
        &self.devices
    }
}

pub(crate) fn read_signing_key(r: &mut Reader<'_>) -> Result<SigningPublicKey> {
    SigningPublicKey::from_bytes(&r.array()?).map_err(|_| FormatError::InvalidValue.into())
}
