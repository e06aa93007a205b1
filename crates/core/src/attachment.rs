//! The attachment content header, trailer and ciphertext layout.
//!
//! ```text
//! header body = "KSA" 0x01 | header length u16 (whole header, body + 96) | nonce [16]
//!               | author Ed25519 key [32] | lp16 document id
//!               | binding u8: 0 = none, 1 = group (lp16 group id | epoch u64 | head hash [32])
//! header      = header body | commitment [32] | signature [64]
//! file        = header | segment 0 | … | segment n-1 | trailer
//! trailer     = "KST" 0x01 | signature [64]
//! ```
//!
//! * `header hash = SHA-256(header body)`.
//! * `commitment = HKDF-SHA256(ikm = DEK, info = "keystead/v1/commit" ‖ header hash)`,
//!   compared in constant time before any plaintext is released: ChaCha20-Poly1305 is not
//!   key-committing, and without it an author could give different recipients different
//!   DEKs that decrypt the same ciphertext to different files.
//! * header signature: Ed25519 by the author over
//!   `"keystead/v1/attachment-header" ‖ header body ‖ commitment`.
//! * trailer signature: over `"keystead/v1/attachment-trailer" ‖ header hash ‖
//!   SHA-256(tag 0 ‖ … ‖ tag n-1) ‖ n (u64)`.
//!
//! Segments are described in [`crate::stream`].

use alloc::vec::Vec;
use core::ops::Range;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::error::{Error, FormatError, Result};
use crate::hazmat::{self, TAG_LEN};
use crate::ids::{DocumentId, GroupId, MAX_ID_LEN};
use crate::keys::{Dek, SigningKeyPair, SigningPublicKey};
use crate::wire::{self, Reader};

const HEADER_MAGIC: &[u8; 3] = b"KSA";
const TRAILER_MAGIC: &[u8; 3] = b"KST";
const COMMIT_LABEL: &[u8] = b"keystead/v1/commit";
const HEADER_SIG_LABEL: &[u8] = b"keystead/v1/attachment-header";
const TRAILER_SIG_LABEL: &[u8] = b"keystead/v1/attachment-trailer";
pub(crate) const PAYLOAD_LABEL: &[u8] = b"keystead/v1/payload";

/// Plaintext bytes in every non-final segment.
pub const SEGMENT_SIZE: usize = 64 * 1024;
/// Ciphertext bytes of a full segment (plaintext + tag).
pub const SEGMENT_CT_SIZE: usize = SEGMENT_SIZE + TAG_LEN;
/// Length of the trailer.
pub const TRAILER_LEN: usize = 4 + 64;
/// Length of the header nonce (the payload-key salt).
pub const HEADER_NONCE_LEN: usize = 16;
/// Smallest possible header: body without group binding and a 1-byte document id.
pub const MIN_HEADER_LEN: usize = 6 + HEADER_NONCE_LEN + 32 + 3 + 1 + 32 + 64;
/// Bytes needed to learn a header's length (see [`AttachmentHeader::encoded_len`]).
pub const HEADER_PREFIX_LEN: usize = 6;

/// The group an attachment is shared through, as of a log head (DESIGN.md: documents carry
/// group id, epoch and head hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupBinding {
    /// The group.
    pub group: GroupId,
    /// The group epoch whose key the DEK is granted to.
    pub epoch: u64,
    /// The hash of the group log entry that was the head when the attachment was made.
    pub head: [u8; 32],
}

/// A parsed attachment content header. Immutable once written: granting and revoking change
/// only the access block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentHeader {
    nonce: [u8; HEADER_NONCE_LEN],
    author: SigningPublicKey,
    document: DocumentId,
    group: Option<GroupBinding>,
    commitment: [u8; 32],
    signature: [u8; 64],
    body: Vec<u8>,
    hash: [u8; 32],
}

impl AttachmentHeader {
    /// Builds and signs a header for a new attachment encrypted under `dek`.
    pub(crate) fn create(
        rng: &mut impl CryptoRng,
        dek: &Dek,
        author: &SigningKeyPair,
        document: DocumentId,
        group: Option<GroupBinding>,
    ) -> Result<Self> {
        let mut nonce = [0u8; HEADER_NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let author_pub = author.public();
        let mut body = Vec::with_capacity(128 + document.as_bytes().len());
        wire::put_magic(&mut body, HEADER_MAGIC);
        body.extend_from_slice(&[0, 0]); // header length, filled in below
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&author_pub.to_bytes());
        wire::put_lp16(&mut body, document.as_bytes())?;
        match &group {
            None => body.push(0),
            Some(g) => {
                body.push(1);
                wire::put_lp16(&mut body, g.group.as_bytes())?;
                body.extend_from_slice(&g.epoch.to_be_bytes());
                body.extend_from_slice(&g.head);
            }
        }
        let total = u16::try_from(body.len() + 32 + 64).map_err(|_| Error::Limit)?;
        body[4..6].copy_from_slice(&total.to_be_bytes());
        let hash = hazmat::sha256(&[&body]);
        let commitment = commitment(dek, &hash)?;
        let signature = author.sign(HEADER_SIG_LABEL, &[&body, &commitment]);
        Ok(Self {
            nonce,
            author: author_pub,
            document,
            group,
            commitment,
            signature,
            body,
            hash,
        })
    }

    /// The total header length announced by its first [`HEADER_PREFIX_LEN`] bytes, so a
    /// reader knows how much to fetch before parsing.
    pub fn encoded_len(prefix: &[u8]) -> Result<usize> {
        let mut r = Reader::new(prefix);
        r.magic(HEADER_MAGIC)?;
        let n = usize::from(r.u16()?);
        if n < MIN_HEADER_LEN {
            return Err(FormatError::InvalidValue.into());
        }
        Ok(n)
    }

    /// Parses exactly one header (no trailing bytes). The signature and commitment are
    /// checked later, against the expected author and the DEK.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let total = Self::encoded_len(bytes)?;
        if bytes.len() != total {
            return Err(if bytes.len() < total {
                FormatError::UnexpectedEnd
            } else {
                FormatError::TrailingBytes
            }
            .into());
        }
        let mut r = Reader::new(bytes);
        r.bytes(HEADER_PREFIX_LEN)?;
        let nonce = r.array()?;
        let author =
            SigningPublicKey::from_bytes(&r.array()?).map_err(|_| FormatError::InvalidValue)?;
        let document = DocumentId::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
        let group = match r.u8()? {
            0 => None,
            1 => Some(GroupBinding {
                group: GroupId::from_wire(r.lp16(1, MAX_ID_LEN)?)?,
                epoch: r.u64()?,
                head: r.array()?,
            }),
            _ => return Err(FormatError::InvalidValue.into()),
        };
        let body_len = bytes.len() - r.remaining();
        let commitment = r.array()?;
        let signature = r.array()?;
        r.finish()?;
        let body = bytes[..body_len].to_vec();
        let hash = hazmat::sha256(&[&body]);
        Ok(Self {
            nonce,
            author,
            document,
            group,
            commitment,
            signature,
            body,
            hash,
        })
    }

    /// Serializes the header.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 96);
        out.extend_from_slice(&self.body);
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.signature);
        out
    }

    /// The encoded length of the header.
    pub fn len(&self) -> usize {
        self.body.len() + 96
    }

    /// Always false: a header is never empty (for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// `SHA-256(header body)`: what grants, the trailer and the commitment bind to.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }
    /// The author's signing key as written in the header (trust it only after comparing it
    /// to a key you trust; decryptors take the expected key as a parameter).
    pub fn author(&self) -> &SigningPublicKey {
        &self.author
    }
    /// The document id.
    pub fn document_id(&self) -> &DocumentId {
        &self.document
    }
    /// The group binding, if the attachment was shared through a group.
    pub fn group(&self) -> Option<&GroupBinding> {
        self.group.as_ref()
    }

    pub(crate) fn nonce(&self) -> &[u8; HEADER_NONCE_LEN] {
        &self.nonce
    }
    pub(crate) fn body(&self) -> &[u8] {
        &self.body
    }

    /// Verifies the author's signature against `expected_author`, then the key commitment
    /// against `dek` in constant time. Nothing may be decrypted before this succeeds.
    pub fn verify(&self, dek: &Dek, expected_author: &SigningPublicKey) -> Result<()> {
        if self.author != *expected_author {
            return Err(Error::Signature);
        }
        self.author.verify(
            HEADER_SIG_LABEL,
            &[&self.body, &self.commitment],
            &self.signature,
        )?;
        self.check_commitment(dek)
    }

    /// Checks that `dek` is the key this header commits to (constant time).
    pub fn check_commitment(&self, dek: &Dek) -> Result<()> {
        let mut expected = commitment(dek, &self.hash)?;
        let ok: bool = expected.ct_eq(&self.commitment).into();
        expected.zeroize();
        if ok { Ok(()) } else { Err(Error::Decrypt) }
    }

    pub(crate) fn sign_trailer(
        &self,
        author: &SigningKeyPair,
        tags_hash: &[u8; 32],
        segments: u64,
    ) -> [u8; TRAILER_LEN] {
        let sig = author.sign(
            TRAILER_SIG_LABEL,
            &[&self.hash, tags_hash, &segments.to_be_bytes()],
        );
        let mut out = [0u8; TRAILER_LEN];
        out[..3].copy_from_slice(TRAILER_MAGIC);
        out[3] = wire::VERSION;
        out[4..].copy_from_slice(&sig);
        out
    }

    pub(crate) fn verify_trailer(
        &self,
        trailer: &[u8],
        tags_hash: &[u8; 32],
        segments: u64,
    ) -> Result<()> {
        let mut r = Reader::new(trailer);
        r.magic(TRAILER_MAGIC)?;
        let sig: [u8; 64] = r.array()?;
        r.finish()?;
        self.author.verify(
            TRAILER_SIG_LABEL,
            &[&self.hash, tags_hash, &segments.to_be_bytes()],
            &sig,
        )
    }
}

fn commitment(dek: &Dek, header_hash: &[u8; 32]) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hazmat::hkdf_sha256(
        None,
        dek.expose_secret(),
        &[COMMIT_LABEL, header_hash],
        &mut out,
    )?;
    Ok(out)
}

/// Where everything is in an encrypted attachment of a known total length: what a ranged
/// reader needs to map plaintext offsets to ciphertext byte ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachmentLayout {
    header_len: u64,
    segments: u64,
    last_ct_len: u64,
}

impl AttachmentLayout {
    /// Computes the layout from the header length and the whole file's length. A length
    /// that no valid attachment can have is an error.
    pub fn new(header_len: u64, total_len: u64) -> Result<Self> {
        let seg_ct = SEGMENT_CT_SIZE as u64;
        let body = header_len
            .checked_add(TRAILER_LEN as u64)
            .and_then(|fixed| total_len.checked_sub(fixed))
            .filter(|b| *b >= TAG_LEN as u64)
            .ok_or(Error::Truncated)?;
        let segments = body.div_ceil(seg_ct);
        let last_ct_len = body - (segments - 1) * seg_ct;
        if last_ct_len < TAG_LEN as u64 {
            return Err(FormatError::InvalidValue.into());
        }
        Ok(Self {
            header_len,
            segments,
            last_ct_len,
        })
    }

    /// Number of segments (at least 1).
    pub fn segments(&self) -> u64 {
        self.segments
    }

    /// Plaintext length of the whole attachment.
    pub fn plaintext_len(&self) -> u64 {
        (self.segments - 1) * SEGMENT_SIZE as u64 + self.last_ct_len - TAG_LEN as u64
    }

    /// The byte range of segment `index` in the file.
    pub fn segment_range(&self, index: u64) -> Result<Range<u64>> {
        if index >= self.segments {
            return Err(Error::Limit);
        }
        let start = self.header_len + index * SEGMENT_CT_SIZE as u64;
        let len = if index + 1 == self.segments {
            self.last_ct_len
        } else {
            SEGMENT_CT_SIZE as u64
        };
        Ok(start..start + len)
    }

    /// The byte range of the trailer in the file.
    pub fn trailer_range(&self) -> Range<u64> {
        let start =
            self.header_len + (self.segments - 1) * SEGMENT_CT_SIZE as u64 + self.last_ct_len;
        start..start + TRAILER_LEN as u64
    }

    /// The segment indexes that hold plaintext bytes `range` (clamped to the plaintext).
    pub fn segments_for(&self, range: Range<u64>) -> Range<u64> {
        let end = range.end.min(self.plaintext_len());
        if range.start >= end {
            return 0..0;
        }
        let seg = SEGMENT_SIZE as u64;
        range.start / seg..(end - 1) / seg + 1
    }
}
