//! Sealing keys to X25519 public keys: HPKE (RFC 9180) base mode with
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305, through the `hpke` crate.
//!
//! `info = "keystead/v1/" ‖ purpose ‖ lp16(recipient id) ‖ lp16(key fingerprint) ‖
//! lp16(object id) ‖ lp16(epoch as u64 BE)`, and the AAD is the content-header hash (or the
//! EDEK header for asymmetric EDEKs), so a sealed key opens only for the recipient, key,
//! object and epoch it was made for.
//!
//! [`SealedKey`] is the standalone byte format (magic `KSS`), used by grants and group keys.

use alloc::string::String;
use alloc::vec::Vec;

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{Error, FormatError, Result};
use crate::ids::{MAX_ID_LEN, RecipientId, check_id};
use crate::keys::{EncryptionKeyPair, EncryptionPublicKey, Fingerprint};
use crate::wire::{self, Reader};

/// Length of an HPKE encapsulated key for DHKEM(X25519).
pub const ENC_LEN: usize = 32;
/// Length of a sealed 32-byte key: ciphertext plus the ChaCha20-Poly1305 tag.
pub const SEALED_KEY_CT_LEN: usize = 32 + 16;

const MAGIC: &[u8; 3] = b"KSS";

/// What a sealed key is for. Part of the HPKE info, so a key sealed for one purpose never
/// opens as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// A DEK sealed to a tenant's asymmetric master key (asymmetric EDEK mode).
    Edek,
    /// An attachment DEK sealed to a device or a group epoch key (a grant).
    Grant,
    /// A group epoch key sealed to a member device or to the next epoch.
    GroupKey,
}

impl Purpose {
    /// The purpose's string in the HPKE info.
    pub fn label(self) -> &'static str {
        match self {
            Purpose::Edek => "edek",
            Purpose::Grant => "grant",
            Purpose::GroupKey => "group-key",
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            Purpose::Edek => 1,
            Purpose::Grant => 2,
            Purpose::GroupKey => 3,
        }
    }

    fn from_byte(b: u8) -> Result<Self> {
        match b {
            1 => Ok(Purpose::Edek),
            2 => Ok(Purpose::Grant),
            3 => Ok(Purpose::GroupKey),
            _ => Err(FormatError::InvalidValue.into()),
        }
    }
}

/// Everything that goes into the HPKE info of one sealed key.
#[derive(Clone, Copy, Debug)]
pub struct SealContext<'a> {
    /// What the key is for.
    pub purpose: Purpose,
    /// Who may open it (device id, group id, or tenant id).
    pub recipient_id: &'a [u8],
    /// The fingerprint of the recipient's public key.
    pub fingerprint: &'a Fingerprint,
    /// The document, group or KMS config the key belongs to.
    pub object_id: &'a [u8],
    /// Group epoch, or key version; 0 where neither applies.
    pub epoch: u64,
}

impl SealContext<'_> {
    /// The HPKE `info` string (see the module docs).
    pub fn info(&self) -> Result<Vec<u8>> {
        let mut info = Vec::with_capacity(
            12 + 9 + self.recipient_id.len() + self.object_id.len() + 32 + 8 + 8,
        );
        info.extend_from_slice(b"keystead/v1/");
        info.extend_from_slice(self.purpose.label().as_bytes());
        wire::put_lp16(&mut info, self.recipient_id)?;
        wire::put_lp16(&mut info, self.fingerprint)?;
        wire::put_lp16(&mut info, self.object_id)?;
        wire::put_lp16(&mut info, &self.epoch.to_be_bytes())?;
        Ok(info)
    }
}

/// HPKE base-mode single-shot seal.
pub(crate) fn hpke_seal(
    rng: &mut impl CryptoRng,
    pk: &EncryptionPublicKey,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<([u8; ENC_LEN], Vec<u8>)> {
    let (enc, ct) =
        hpke::single_shot_seal_with_rng::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeS::Base,
            pk.hpke(),
            info,
            plaintext,
            aad,
            rng,
        )
        // The only failure for X25519 is a low-order recipient key (all-zero shared secret).
        .map_err(|_| Error::InvalidKey)?;
    let mut enc_bytes = [0u8; ENC_LEN];
    enc_bytes.copy_from_slice(&enc.to_bytes());
    Ok((enc_bytes, ct))
}

/// HPKE base-mode single-shot open. The plaintext is returned in zeroizing memory.
pub(crate) fn hpke_open(
    kp: &EncryptionKeyPair,
    enc: &[u8; ENC_LEN],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc)
        .map_err(|_| Error::Decrypt)?;
    hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        kp.hpke_secret(),
        &enc,
        info,
        ciphertext,
        aad,
    )
    .map(Zeroizing::new)
    .map_err(|_| Error::Decrypt)
}

/// A 32-byte key sealed to one recipient public key (format `KSS`, version 1).
///
/// ```text
/// "KSS" 0x01 | purpose u8 | lp16 recipient id | fingerprint [32] | lp16 object id
///            | epoch u64 | enc [32] | lp16 ciphertext (48)
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedKey {
    purpose: Purpose,
    recipient_id: RecipientId,
    fingerprint: Fingerprint,
    object_id: String,
    epoch: u64,
    enc: [u8; ENC_LEN],
    ciphertext: [u8; SEALED_KEY_CT_LEN],
}

impl SealedKey {
    /// Seals `secret` to `pk`. `object_id` is the document or group id, `aad` the content
    /// header hash (or other context the opener must present).
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        rng: &mut impl CryptoRng,
        purpose: Purpose,
        recipient_id: &RecipientId,
        pk: &EncryptionPublicKey,
        object_id: &str,
        epoch: u64,
        aad: &[u8],
        secret: &[u8; 32],
    ) -> Result<Self> {
        check_id(object_id)?;
        let fingerprint = pk.fingerprint();
        let ctx = SealContext {
            purpose,
            recipient_id: recipient_id.as_bytes(),
            fingerprint: &fingerprint,
            object_id: object_id.as_bytes(),
            epoch,
        };
        let (enc, ct) = hpke_seal(rng, pk, &ctx.info()?, aad, secret)?;
        let mut ciphertext = [0u8; SEALED_KEY_CT_LEN];
        ciphertext.copy_from_slice(&ct);
        Ok(Self {
            purpose,
            recipient_id: recipient_id.clone(),
            fingerprint,
            object_id: String::from(object_id),
            epoch,
            enc,
            ciphertext,
        })
    }

    /// Opens the key with the recipient's key pair, presenting the same `aad`. Fails with
    /// [`Error::Decrypt`] if the key pair is not the one sealed to, or anything was altered.
    pub fn open(&self, kp: &EncryptionKeyPair, aad: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        if !bool::from(kp.public().fingerprint().ct_eq(&self.fingerprint)) {
            return Err(Error::Decrypt);
        }
        let pt = hpke_open(
            kp,
            &self.enc,
            &self.context().info()?,
            aad,
            &self.ciphertext,
        )?;
        let mut out = Zeroizing::new([0u8; 32]);
        if pt.len() != 32 {
            return Err(Error::Decrypt);
        }
        out.copy_from_slice(&pt);
        Ok(out)
    }

    fn context(&self) -> SealContext<'_> {
        SealContext {
            purpose: self.purpose,
            recipient_id: self.recipient_id.as_bytes(),
            fingerprint: &self.fingerprint,
            object_id: self.object_id.as_bytes(),
            epoch: self.epoch,
        }
    }

    /// What the key is for.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }
    /// Who may open it.
    pub fn recipient_id(&self) -> &RecipientId {
        &self.recipient_id
    }
    /// Fingerprint of the recipient public key.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }
    /// The document or group the key belongs to.
    pub fn object_id(&self) -> &str {
        &self.object_id
    }
    /// The group epoch (0 for device recipients).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Serializes to the `KSS` format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 1 + 2 + 32 + 2 + 8 + 32 + 2 + 48 + 64);
        self.write(&mut out);
        out
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        wire::put_magic(out, MAGIC);
        out.push(self.purpose.to_byte());
        // Lengths are bounded by construction (ids ≤ 256 bytes), so these cannot fail.
        let _ = wire::put_lp16(out, self.recipient_id.as_bytes());
        out.extend_from_slice(&self.fingerprint);
        let _ = wire::put_lp16(out, self.object_id.as_bytes());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.enc);
        let _ = wire::put_lp16(out, &self.ciphertext);
    }

    /// Parses the `KSS` format; trailing bytes are an error.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let k = Self::read(&mut r)?;
        r.finish()?;
        Ok(k)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        r.magic(MAGIC)?;
        let purpose = Purpose::from_byte(r.u8()?)?;
        let recipient_id = RecipientId::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
        let fingerprint = r.array()?;
        let object_id = r.lp16(1, MAX_ID_LEN)?;
        let object_id = core::str::from_utf8(object_id).map_err(|_| FormatError::InvalidValue)?;
        check_id(object_id).map_err(|_| FormatError::InvalidValue)?;
        let epoch = r.u64()?;
        let enc = r.array()?;
        let ct = r.lp16(SEALED_KEY_CT_LEN, SEALED_KEY_CT_LEN)?;
        let mut ciphertext = [0u8; SEALED_KEY_CT_LEN];
        ciphertext.copy_from_slice(ct);
        Ok(Self {
            purpose,
            recipient_id,
            fingerprint,
            object_id: String::from(object_id),
            epoch,
            enc,
            ciphertext,
        })
    }
}
