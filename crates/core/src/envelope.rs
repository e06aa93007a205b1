//! Records and fields under a per-document DEK, and the encrypted-document format.
//!
//! **Encrypted field** (`KSF`, version 1): `"KSF" 0x01 | nonce [12] | ciphertext | tag [16]`.
//! AES-256-GCM under the DEK with a random 96-bit nonce (one DEK encrypts only one document's
//! fields, far below the random-nonce bound). The AAD is lp32 of the *field header*
//!
//! ```text
//! field header = "KSF" 0x01 | lp16 tenant id | lp16 document id | lp16 field path | nonce [12]
//! ```
//!
//! which is rebuilt from the context the caller names, so a field moved to another tenant,
//! document or path fails to decrypt. The stored field carries only the nonce: 32 bytes of
//! overhead per field.
//!
//! **Encrypted document** (`KSD`, version 1):
//!
//! ```text
//! "KSD" 0x01 | form u8 (1 = detached, 2 = attached) | lp16 tenant id | lp16 document id
//!            | attached only: lp16 EDEK
//!            | field count u16 | count × (lp16 field path | lp32 encrypted field)
//! ```
//!
//! Field paths are strictly increasing (bytewise), so every document has one encoding.

use alloc::vec::Vec;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::edek::Edek;
use crate::error::{Error, FormatError, Result};
use crate::hazmat::{Aes256GcmKey, NONCE_LEN, TAG_LEN};
use crate::ids::{DocumentId, FieldPath, MAX_ID_LEN, TenantId};
use crate::keys::Dek;
use crate::wire::{self, Reader};

const FIELD_MAGIC: &[u8; 3] = b"KSF";
const DOC_MAGIC: &[u8; 3] = b"KSD";
/// Bytes an encrypted field adds to its plaintext.
pub const FIELD_OVERHEAD: usize = 4 + NONCE_LEN + TAG_LEN;
/// Largest field plaintext (the document format's lp32 bound, less the overhead).
pub const MAX_FIELD_LEN: usize = u32::MAX as usize - FIELD_OVERHEAD;
/// Most fields in one encrypted document.
pub const MAX_FIELDS: usize = u16::MAX as usize;

/// Encrypts and decrypts the fields of one document: the DEK's key schedule and the
/// tenant/document binding are set up once and reused for every field.
pub struct FieldCipher<'a> {
    cipher: Aes256GcmKey,
    tenant: &'a TenantId,
    document: &'a DocumentId,
}

impl<'a> FieldCipher<'a> {
    /// Prepares to encrypt or decrypt fields of `document` owned by `tenant` under `dek`.
    pub fn new(dek: &Dek, tenant: &'a TenantId, document: &'a DocumentId) -> Self {
        Self {
            cipher: Aes256GcmKey::new(dek.expose_secret()),
            tenant,
            document,
        }
    }

    fn aad(&self, path: &FieldPath, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>> {
        let t = self.tenant.as_bytes();
        let d = self.document.as_bytes();
        let p = path.as_bytes();
        let header_len = 4 + 6 + t.len() + d.len() + p.len() + NONCE_LEN;
        let mut aad = Vec::with_capacity(4 + header_len);
        // header_len ≤ 4 + 6 + 3 × 256 + 12 because ids are bounded by their types.
        let len = u32::try_from(header_len).map_err(|_| Error::Limit)?;
        aad.extend_from_slice(&len.to_be_bytes());
        wire::put_magic(&mut aad, FIELD_MAGIC);
        let _ = wire::put_lp16(&mut aad, t);
        let _ = wire::put_lp16(&mut aad, d);
        let _ = wire::put_lp16(&mut aad, p);
        aad.extend_from_slice(nonce);
        Ok(aad)
    }

    /// Encrypts one field value.
    pub fn encrypt(
        &self,
        rng: &mut impl CryptoRng,
        path: &FieldPath,
        plaintext: &[u8],
    ) -> Result<Vec<u8>> {
        if plaintext.len() > MAX_FIELD_LEN {
            return Err(Error::Limit);
        }
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(plaintext.len() + FIELD_OVERHEAD);
        wire::put_magic(&mut out, FIELD_MAGIC);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let aad = self.aad(path, &nonce)?;
        let tag = self
            .cipher
            .seal_detached(&nonce, &aad, &mut out[4 + NONCE_LEN..])?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Decrypts one field value encrypted for the same tenant, document and `path`.
    pub fn decrypt(&self, path: &FieldPath, encrypted: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut r = Reader::new(encrypted);
        r.magic(FIELD_MAGIC)?;
        let nonce: [u8; NONCE_LEN] = r.array()?;
        if r.remaining() < TAG_LEN {
            return Err(FormatError::UnexpectedEnd.into());
        }
        let body = r.rest();
        let (ct, tag) = body.split_at(body.len() - TAG_LEN);
        let mut tag_arr = [0u8; TAG_LEN];
        tag_arr.copy_from_slice(tag);
        let mut pt = Zeroizing::new(ct.to_vec());
        let aad = self.aad(path, &nonce)?;
        self.cipher.open_detached(&nonce, &aad, &mut pt, &tag_arr)?;
        Ok(pt)
    }
}

/// Encrypts one field (see [`FieldCipher`] for many fields of one document).
pub fn encrypt_field(
    rng: &mut impl CryptoRng,
    dek: &Dek,
    tenant: &TenantId,
    document: &DocumentId,
    path: &FieldPath,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    FieldCipher::new(dek, tenant, document).encrypt(rng, path, plaintext)
}

/// Decrypts one field.
pub fn decrypt_field(
    dek: &Dek,
    tenant: &TenantId,
    document: &DocumentId,
    path: &FieldPath,
    encrypted: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    FieldCipher::new(dek, tenant, document).decrypt(path, encrypted)
}

/// Where a document's EDEK lives.
// An EDEK is a few hundred bytes at most and documents are built one at a time: boxing it
// would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EdekPlacement {
    /// Stored separately (e.g. its own database column).
    Detached,
    /// Carried inside the document blob.
    Attached(Edek),
}

/// An encrypted document: tenant, document id, optionally its EDEK, and encrypted fields
/// sorted by path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedDocument {
    tenant: TenantId,
    document: DocumentId,
    edek: EdekPlacement,
    fields: Vec<(FieldPath, Vec<u8>)>,
}

impl EncryptedDocument {
    /// Encrypts `fields` under `dek`. Paths must be unique; they are stored sorted. For the
    /// attached form pass the EDEK, which must belong to `tenant`.
    pub fn encrypt<'f>(
        rng: &mut impl CryptoRng,
        dek: &Dek,
        tenant: TenantId,
        document: DocumentId,
        edek: EdekPlacement,
        fields: impl IntoIterator<Item = (FieldPath, &'f [u8])>,
    ) -> Result<Self> {
        if let EdekPlacement::Attached(e) = &edek
            && e.tenant() != &tenant
        {
            return Err(Error::Usage);
        }
        let mut plain: Vec<(FieldPath, &[u8])> = fields.into_iter().collect();
        plain.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if plain.windows(2).any(|w| w[0].0 == w[1].0) || plain.len() > MAX_FIELDS {
            return Err(Error::Usage);
        }
        let cipher = FieldCipher::new(dek, &tenant, &document);
        let mut enc = Vec::with_capacity(plain.len());
        for (path, value) in plain {
            let ct = cipher.encrypt(rng, &path, value)?;
            enc.push((path, ct));
        }
        Ok(Self {
            tenant,
            document,
            edek,
            fields: enc,
        })
    }

    /// Decrypts every field. Fails as a whole if any field fails.
    pub fn decrypt(&self, dek: &Dek) -> Result<Vec<(FieldPath, Zeroizing<Vec<u8>>)>> {
        let cipher = FieldCipher::new(dek, &self.tenant, &self.document);
        self.fields
            .iter()
            .map(|(path, ct)| Ok((path.clone(), cipher.decrypt(path, ct)?)))
            .collect()
    }

    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    /// The document id.
    pub fn document_id(&self) -> &DocumentId {
        &self.document
    }
    /// The attached EDEK, if this is the attached form.
    pub fn edek(&self) -> Option<&Edek> {
        match &self.edek {
            EdekPlacement::Attached(e) => Some(e),
            EdekPlacement::Detached => None,
        }
    }
    /// The encrypted fields, sorted by path.
    pub fn fields(&self) -> &[(FieldPath, Vec<u8>)] {
        &self.fields
    }

    /// Serializes the document.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        wire::put_magic(&mut out, DOC_MAGIC);
        out.push(match self.edek {
            EdekPlacement::Detached => 1,
            EdekPlacement::Attached(_) => 2,
        });
        wire::put_lp16(&mut out, self.tenant.as_bytes())?;
        wire::put_lp16(&mut out, self.document.as_bytes())?;
        if let EdekPlacement::Attached(e) = &self.edek {
            wire::put_lp16(&mut out, &e.to_bytes())?;
        }
        let count = u16::try_from(self.fields.len()).map_err(|_| Error::Limit)?;
        out.extend_from_slice(&count.to_be_bytes());
        for (path, ct) in &self.fields {
            wire::put_lp16(&mut out, path.as_bytes())?;
            wire::put_lp32(&mut out, ct)?;
        }
        Ok(out)
    }

    /// Parses a document. Checks framing, sorted unique paths, and that an attached EDEK
    /// belongs to the document's tenant; decryption authenticates the rest.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        r.magic(DOC_MAGIC)?;
        let form = r.u8()?;
        let tenant = TenantId::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
        let document = DocumentId::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
        let edek = match form {
            1 => EdekPlacement::Detached,
            2 => {
                let e = Edek::parse(r.lp16(1, usize::from(u16::MAX))?)?;
                if e.tenant() != &tenant {
                    return Err(FormatError::InvalidValue.into());
                }
                EdekPlacement::Attached(e)
            }
            _ => return Err(FormatError::InvalidValue.into()),
        };
        let count = usize::from(r.u16()?);
        // Each field takes at least 2 + 1 + 4 + FIELD_OVERHEAD bytes: refuse counts the input
        // cannot hold before allocating.
        if count > r.remaining() / (7 + FIELD_OVERHEAD) {
            return Err(FormatError::UnexpectedEnd.into());
        }
        let mut fields: Vec<(FieldPath, Vec<u8>)> = Vec::with_capacity(count);
        for _ in 0..count {
            let path = FieldPath::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
            if let Some((prev, _)) = fields.last()
                && prev.as_bytes() >= path.as_bytes()
            {
                return Err(FormatError::InvalidValue.into());
            }
            let ct = r.lp32(FIELD_OVERHEAD, u32::MAX as usize)?;
            fields.push((path, ct.to_vec()));
        }
        r.finish()?;
        Ok(Self {
            tenant,
            document,
            edek,
            fields,
        })
    }
}
