//! EDEK format v1: a self-contained encrypted DEK.
//!
//! ```text
//! header = "KSE" 0x01 | mode u8 | lp16 tenant id | lp16 config id | key version u32
//!          | mode-specific header
//!   remote (1):     (nothing)
//!   leased (2):     leased key id [16] | lp16 KMS-wrapped leased key | salt [24]
//!   asymmetric (3): recipient key fingerprint [32]
//! body   = remote:     lp16 KMS ciphertext (the KMS-encrypted secret P)
//!          leased:     wrapped DEK [32] | tag [16]
//!          asymmetric: HPKE enc [32] | HPKE ciphertext [48]
//! ```
//!
//! * **Remote**: the DEK is `HKDF-SHA256(ikm = P, salt = none, info = header)`, where `P` is
//!   the KMS plaintext, so moving the EDEK to another tenant or config yields a useless key
//!   even with a KMS that binds no AAD.
//! * **Leased**: the DEK is wrapped under a one-use subkey `HKDF-SHA256(ikm = leased key,
//!   salt = the 24 random salt bytes, info = "keystead/v1/edek" ‖ header)` with AES-256-GCM,
//!   a zero nonce and AAD = lp32(header). The EDEK also carries the leased key's id and the
//!   KMS-wrapped leased key, so any ES (or a recovery tool with KMS access) can unwrap it.
//! * **Asymmetric**: the DEK is HPKE-sealed to the tenant's X25519 public key
//!   ([`crate::seal`], purpose `edek`, recipient = tenant id, object = config id,
//!   epoch = key version, aad = lp32(header)).

use alloc::vec::Vec;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::error::{Error, FormatError, Result};
use crate::hazmat::{self, Aes256GcmKey};
use crate::ids::{ConfigId, KeyVersion, MAX_ID_LEN, TenantId};
use crate::keys::{
    Dek, EncryptionKeyPair, EncryptionPublicKey, Fingerprint, LeasedKey, LeasedKeyId,
    SYMMETRIC_KEY_LEN,
};
use crate::seal::{self, ENC_LEN, Purpose, SEALED_KEY_CT_LEN, SealContext};
use crate::wire::{self, Reader};

const MAGIC: &[u8; 3] = b"KSE";
/// Label in the leased-mode subkey derivation.
const LEASED_INFO_LABEL: &[u8] = b"keystead/v1/edek";
/// Largest KMS ciphertext (remote mode) or KMS-wrapped leased key an EDEK may carry.
/// Provider blobs are far smaller (AWS ≈ 200 bytes, RSA-4096 wrap 512 bytes).
pub const MAX_KMS_BLOB: usize = 4096;
/// Length of the random salt of a leased-mode EDEK.
pub const SALT_LEN: usize = 24;
/// Smallest KMS plaintext accepted in remote mode (bytes).
pub const MIN_KMS_PLAINTEXT: usize = 16;
/// Largest KMS plaintext accepted in remote mode (bytes).
pub const MAX_KMS_PLAINTEXT: usize = 64;

/// How the DEK inside an EDEK is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// One KMS call per wrap and per unwrap.
    Remote,
    /// Wrapped locally under a leased key that the KMS wrapped once per lease period.
    Leased,
    /// Sealed to the tenant's public key; unwrapping needs the KMS, wrapping does not.
    Asymmetric,
}

impl Mode {
    fn to_byte(self) -> u8 {
        match self {
            Mode::Remote => 1,
            Mode::Leased => 2,
            Mode::Asymmetric => 3,
        }
    }
}

/// The mode-specific part of the header.
#[derive(Clone, Debug, PartialEq, Eq)]
enum ModeHeader {
    Remote,
    Leased {
        key_id: LeasedKeyId,
        wrapped_leased_key: Vec<u8>,
        salt: [u8; SALT_LEN],
    },
    Asymmetric {
        fingerprint: Fingerprint,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Body {
    Remote {
        kms_ciphertext: Vec<u8>,
    },
    Leased {
        wrapped: [u8; SYMMETRIC_KEY_LEN],
        tag: [u8; 16],
    },
    Asymmetric {
        enc: [u8; ENC_LEN],
        ct: [u8; SEALED_KEY_CT_LEN],
    },
}

/// The bound part of an EDEK: who it belongs to and under which key. Built before the KMS is
/// called in remote mode, so the ES can pass it (or its fields) as encryption context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdekHeader {
    tenant: TenantId,
    config: ConfigId,
    key_version: KeyVersion,
    mode: ModeHeader,
    /// The exact serialized header: HKDF info and AEAD AAD are computed from these bytes.
    encoded: Vec<u8>,
}

impl EdekHeader {
    fn new(tenant: TenantId, config: ConfigId, key_version: KeyVersion, mode: ModeHeader) -> Self {
        let mut encoded =
            Vec::with_capacity(64 + tenant.as_bytes().len() + config.as_bytes().len());
        wire::put_magic(&mut encoded, MAGIC);
        let mode_byte = match &mode {
            ModeHeader::Remote => Mode::Remote,
            ModeHeader::Leased { .. } => Mode::Leased,
            ModeHeader::Asymmetric { .. } => Mode::Asymmetric,
        }
        .to_byte();
        encoded.push(mode_byte);
        // Ids are ≤ 256 bytes and blobs ≤ MAX_KMS_BLOB by construction: these cannot fail.
        let _ = wire::put_lp16(&mut encoded, tenant.as_bytes());
        let _ = wire::put_lp16(&mut encoded, config.as_bytes());
        encoded.extend_from_slice(&key_version.0.to_be_bytes());
        match &mode {
            ModeHeader::Remote => {}
            ModeHeader::Leased {
                key_id,
                wrapped_leased_key,
                salt,
            } => {
                encoded.extend_from_slice(&key_id.0);
                let _ = wire::put_lp16(&mut encoded, wrapped_leased_key);
                encoded.extend_from_slice(salt);
            }
            ModeHeader::Asymmetric { fingerprint } => encoded.extend_from_slice(fingerprint),
        }
        Self {
            tenant,
            config,
            key_version,
            mode,
            encoded,
        }
    }

    /// The header of a remote-mode EDEK, to be built before the KMS call.
    pub fn remote(tenant: TenantId, config: ConfigId, key_version: KeyVersion) -> Self {
        Self::new(tenant, config, key_version, ModeHeader::Remote)
    }

    fn read(r: &mut Reader<'_>, start: &[u8]) -> Result<Self> {
        r.magic(MAGIC)?;
        let mode = r.u8()?;
        let tenant = TenantId::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
        let config = ConfigId::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
        let key_version = KeyVersion(r.u32()?);
        let mode = match mode {
            1 => ModeHeader::Remote,
            2 => ModeHeader::Leased {
                key_id: LeasedKeyId(r.array()?),
                wrapped_leased_key: r.lp16(1, MAX_KMS_BLOB)?.to_vec(),
                salt: r.array()?,
            },
            3 => ModeHeader::Asymmetric {
                fingerprint: r.array()?,
            },
            _ => return Err(FormatError::InvalidValue.into()),
        };
        let consumed = start.len() - r.remaining();
        Ok(Self {
            tenant,
            config,
            key_version,
            mode,
            encoded: start[..consumed].to_vec(),
        })
    }

    /// The tenant the EDEK belongs to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    /// The KMS configuration that protects it.
    pub fn config_id(&self) -> &ConfigId {
        &self.config
    }
    /// The master key version inside that configuration.
    pub fn key_version(&self) -> KeyVersion {
        self.key_version
    }
    /// The mode.
    pub fn mode(&self) -> Mode {
        match self.mode {
            ModeHeader::Remote => Mode::Remote,
            ModeHeader::Leased { .. } => Mode::Leased,
            ModeHeader::Asymmetric { .. } => Mode::Asymmetric,
        }
    }
    /// The exact serialized header (what HKDF info and the AEAD AAD bind).
    pub fn as_bytes(&self) -> &[u8] {
        &self.encoded
    }
}

/// A parsed EDEK. Parsing checks the framing only; unwrapping authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edek {
    header: EdekHeader,
    body: Body,
}

impl Edek {
    // ---- remote mode -------------------------------------------------------------------

    /// Completes a remote-mode EDEK after the KMS call: `kms_plaintext` is the secret `P` the
    /// KMS generated (or that was encrypted), `kms_ciphertext` its KMS ciphertext. Returns
    /// the DEK `HKDF-SHA256(P, info = header)` and the EDEK.
    pub fn seal_remote(
        header: EdekHeader,
        kms_plaintext: &[u8],
        kms_ciphertext: &[u8],
    ) -> Result<(Dek, Self)> {
        if header.mode() != Mode::Remote {
            return Err(Error::Usage);
        }
        if kms_ciphertext.is_empty() || kms_ciphertext.len() > MAX_KMS_BLOB {
            return Err(Error::Limit);
        }
        let dek = remote_dek(&header, kms_plaintext)?;
        Ok((
            dek,
            Self {
                header,
                body: Body::Remote {
                    kms_ciphertext: kms_ciphertext.to_vec(),
                },
            },
        ))
    }

    /// The KMS ciphertext of a remote-mode EDEK, to send to the KMS for decryption.
    pub fn kms_ciphertext(&self) -> Option<&[u8]> {
        match &self.body {
            Body::Remote { kms_ciphertext } => Some(kms_ciphertext),
            _ => None,
        }
    }

    /// Derives the DEK of a remote-mode EDEK from the KMS plaintext.
    ///
    /// No authentication is possible here by design: a wrong plaintext (or an EDEK moved to
    /// another tenant or config) yields a different, useless DEK, and the data's own AEAD
    /// fails.
    pub fn open_remote(&self, kms_plaintext: &[u8]) -> Result<Dek> {
        match self.body {
            Body::Remote { .. } => remote_dek(&self.header, kms_plaintext),
            _ => Err(Error::Usage),
        }
    }

    // ---- leased mode -------------------------------------------------------------------

    /// Wraps `dek` under `leased` (key-leasing mode). `wrapped_leased_key` is the KMS
    /// ciphertext of the leased key, carried in the EDEK for recovery.
    pub fn wrap_leased(
        rng: &mut impl CryptoRng,
        tenant: TenantId,
        config: ConfigId,
        key_version: KeyVersion,
        leased: &LeasedKey,
        wrapped_leased_key: &[u8],
        dek: &Dek,
    ) -> Result<Self> {
        if wrapped_leased_key.is_empty() || wrapped_leased_key.len() > MAX_KMS_BLOB {
            return Err(Error::Limit);
        }
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let header = EdekHeader::new(
            tenant,
            config,
            key_version,
            ModeHeader::Leased {
                key_id: leased.id(),
                wrapped_leased_key: wrapped_leased_key.to_vec(),
                salt,
            },
        );
        let cipher = leased_subkey(leased, &salt, &header)?;
        let mut wrapped = *dek.expose_secret();
        let aad = wire::length_prefixed_aad(&header.encoded)?;
        let tag = cipher.seal_detached(&[0u8; 12], &aad, &mut wrapped)?;
        Ok(Self {
            header,
            body: Body::Leased { wrapped, tag },
        })
    }

    /// The id of the leased key a leased-mode EDEK was wrapped under.
    pub fn leased_key_id(&self) -> Option<LeasedKeyId> {
        match &self.header.mode {
            ModeHeader::Leased { key_id, .. } => Some(*key_id),
            _ => None,
        }
    }

    /// The KMS-wrapped leased key a leased-mode EDEK carries (what the ES sends to the KMS
    /// when the leased key is not in its cache).
    pub fn wrapped_leased_key(&self) -> Option<&[u8]> {
        match &self.header.mode {
            ModeHeader::Leased {
                wrapped_leased_key, ..
            } => Some(wrapped_leased_key),
            _ => None,
        }
    }

    /// Unwraps a leased-mode EDEK. Fails with [`Error::Decrypt`] if `leased` is not the key
    /// named in the EDEK, or anything in the EDEK was altered.
    pub fn unwrap_leased(&self, leased: &LeasedKey) -> Result<Dek> {
        let (ModeHeader::Leased { key_id, salt, .. }, Body::Leased { wrapped, tag }) =
            (&self.header.mode, &self.body)
        else {
            return Err(Error::Usage);
        };
        if !bool::from(key_id.0.ct_eq(&leased.id().0)) {
            return Err(Error::Decrypt);
        }
        let cipher = leased_subkey(leased, salt, &self.header)?;
        let aad = wire::length_prefixed_aad(&self.header.encoded)?;
        let mut dek = *wrapped;
        let res = cipher.open_detached(&[0u8; 12], &aad, &mut dek, tag);
        let out = res.map(|()| Dek::from_bytes(dek));
        dek.zeroize();
        out
    }

    // ---- asymmetric mode ---------------------------------------------------------------

    /// Seals `dek` to the tenant's public key. No KMS call is needed to wrap.
    pub fn wrap_asymmetric(
        rng: &mut impl CryptoRng,
        tenant: TenantId,
        config: ConfigId,
        key_version: KeyVersion,
        tenant_key: &EncryptionPublicKey,
        dek: &Dek,
    ) -> Result<Self> {
        let fingerprint = tenant_key.fingerprint();
        let header = EdekHeader::new(
            tenant,
            config,
            key_version,
            ModeHeader::Asymmetric { fingerprint },
        );
        let info = asym_context(&header, &fingerprint).info()?;
        let aad = wire::length_prefixed_aad(&header.encoded)?;
        let (enc, ct_vec) = seal::hpke_seal(rng, tenant_key, &info, &aad, dek.expose_secret())?;
        let mut ct = [0u8; SEALED_KEY_CT_LEN];
        ct.copy_from_slice(&ct_vec);
        Ok(Self {
            header,
            body: Body::Asymmetric { enc, ct },
        })
    }

    /// Opens an asymmetric-mode EDEK with the tenant's private key (held by the KMS).
    pub fn unwrap_asymmetric(&self, tenant_key: &EncryptionKeyPair) -> Result<Dek> {
        let (ModeHeader::Asymmetric { fingerprint }, Body::Asymmetric { enc, ct }) =
            (&self.header.mode, &self.body)
        else {
            return Err(Error::Usage);
        };
        if !bool::from(tenant_key.public().fingerprint().ct_eq(fingerprint)) {
            return Err(Error::Decrypt);
        }
        let info = asym_context(&self.header, fingerprint).info()?;
        let aad = wire::length_prefixed_aad(&self.header.encoded)?;
        let pt = seal::hpke_open(tenant_key, enc, &info, &aad, ct)?;
        let mut key = [0u8; SYMMETRIC_KEY_LEN];
        if pt.len() != SYMMETRIC_KEY_LEN {
            return Err(Error::Decrypt);
        }
        key.copy_from_slice(&pt);
        Ok(Dek::from_bytes(key))
    }

    // ---- common ------------------------------------------------------------------------

    /// The header (tenant, config, key version, mode).
    pub fn header(&self) -> &EdekHeader {
        &self.header
    }
    /// The tenant the EDEK belongs to.
    pub fn tenant(&self) -> &TenantId {
        &self.header.tenant
    }
    /// The KMS configuration that protects it.
    pub fn config_id(&self) -> &ConfigId {
        &self.header.config
    }
    /// The master key version.
    pub fn key_version(&self) -> KeyVersion {
        self.header.key_version
    }
    /// The mode.
    pub fn mode(&self) -> Mode {
        self.header.mode()
    }

    /// Serializes the EDEK.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header.encoded.len() + 96);
        out.extend_from_slice(&self.header.encoded);
        match &self.body {
            // Bounded by MAX_KMS_BLOB at construction and parse: cannot fail.
            Body::Remote { kms_ciphertext } => {
                let _ = wire::put_lp16(&mut out, kms_ciphertext);
            }
            Body::Leased { wrapped, tag } => {
                out.extend_from_slice(wrapped);
                out.extend_from_slice(tag);
            }
            Body::Asymmetric { enc, ct } => {
                out.extend_from_slice(enc);
                out.extend_from_slice(ct);
            }
        }
        out
    }

    /// Parses an EDEK. Unknown versions and modes, oversize lengths and trailing bytes are
    /// errors.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        let header = EdekHeader::read(&mut r, bytes)?;
        let body = match header.mode {
            ModeHeader::Remote => Body::Remote {
                kms_ciphertext: r.lp16(1, MAX_KMS_BLOB)?.to_vec(),
            },
            ModeHeader::Leased { .. } => Body::Leased {
                wrapped: r.array()?,
                tag: r.array()?,
            },
            ModeHeader::Asymmetric { .. } => Body::Asymmetric {
                enc: r.array()?,
                ct: r.array()?,
            },
        };
        r.finish()?;
        Ok(Self { header, body })
    }
}

fn remote_dek(header: &EdekHeader, kms_plaintext: &[u8]) -> Result<Dek> {
    if !(MIN_KMS_PLAINTEXT..=MAX_KMS_PLAINTEXT).contains(&kms_plaintext.len()) {
        return Err(Error::InvalidKey);
    }
    let mut key = [0u8; SYMMETRIC_KEY_LEN];
    hazmat::hkdf_sha256(None, kms_plaintext, &[&header.encoded], &mut key)?;
    Ok(Dek::from_bytes(key))
}

fn leased_subkey(
    leased: &LeasedKey,
    salt: &[u8; SALT_LEN],
    header: &EdekHeader,
) -> Result<Aes256GcmKey> {
    let mut subkey = [0u8; SYMMETRIC_KEY_LEN];
    hazmat::hkdf_sha256(
        Some(salt),
        leased.expose_secret(),
        &[LEASED_INFO_LABEL, &header.encoded],
        &mut subkey,
    )?;
    let cipher = Aes256GcmKey::new(&subkey);
    subkey.zeroize();
    Ok(cipher)
}

fn asym_context<'a>(header: &'a EdekHeader, fingerprint: &'a Fingerprint) -> SealContext<'a> {
    SealContext {
        purpose: Purpose::Edek,
        recipient_id: header.tenant.as_bytes(),
        fingerprint,
        object_id: header.config.as_bytes(),
        epoch: u64::from(header.key_version.0),
    }
}
