//! Grants and the access block: who may open an attachment's DEK. Kept apart from the
//! immutable content header, so granting and revoking never touch the content bytes.
//!
//! ```text
//! grant        = "KSG" 0x01 | lp16 sealed key (KSS, purpose grant) | granter key [32]
//!                | signature [64]
//! access block = "KSB" 0x01 | content header hash [32] | count u16 | count × lp16 grant
//! ```
//!
//! The granter signs `"keystead/v1/grant" ‖ content header hash ‖ grant` (the grant's bytes
//! before the signature). The sealed DEK's HPKE AAD is the content header hash and its
//! object id the document id, so a grant opens only for the attachment it was made for; and
//! an opened DEK must match the header's key commitment.

use alloc::vec::Vec;

use rand_core::CryptoRng;

use crate::attachment::AttachmentHeader;
use crate::error::{Error, FormatError, Result};
use crate::ids::RecipientId;
use crate::keys::{
    Dek, EncryptionKeyPair, EncryptionPublicKey, Fingerprint, SigningKeyPair, SigningPublicKey,
};
use crate::seal::{Purpose, SealedKey};
use crate::wire::{self, Reader};

const GRANT_MAGIC: &[u8; 3] = b"KSG";
const BLOCK_MAGIC: &[u8; 3] = b"KSB";
const GRANT_SIG_LABEL: &[u8] = b"keystead/v1/grant";
/// Largest encoded grant.
pub const MAX_GRANT_LEN: usize = 1024;
/// Most grants in one access block.
pub const MAX_GRANTS: usize = u16::MAX as usize;

/// One recipient's access to one attachment: its DEK sealed to the recipient's key, signed by
/// the granter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    sealed: SealedKey,
    granter: SigningPublicKey,
    signature: [u8; 64],
}

impl Grant {
    /// Grants `recipient` (a device, or a group epoch when `epoch` is the group's epoch)
    /// access to the attachment with `header`, whose DEK is `dek`.
    pub fn create(
        rng: &mut impl CryptoRng,
        header: &AttachmentHeader,
        dek: &Dek,
        recipient: &RecipientId,
        recipient_key: &EncryptionPublicKey,
        epoch: u64,
        granter: &SigningKeyPair,
    ) -> Result<Self> {
        header.check_commitment(dek)?;
        let sealed = SealedKey::seal(
            rng,
            Purpose::Grant,
            recipient,
            recipient_key,
            header.document_id().as_str(),
            epoch,
            header.hash(),
            dek.expose_secret(),
        )?;
        let granter_pub = granter.public();
        let unsigned = unsigned_bytes(&sealed, &granter_pub)?;
        let signature = granter.sign(GRANT_SIG_LABEL, &[header.hash(), &unsigned]);
        Ok(Self {
            sealed,
            granter: granter_pub,
            signature,
        })
    }

    /// Verifies the granter's signature for the attachment whose header hash is given.
    /// Whether the granter may grant is the caller's policy (e.g. the author or a group
    /// admin); see [`Grant::granter`].
    pub fn verify(&self, header_hash: &[u8; 32]) -> Result<()> {
        let unsigned = unsigned_bytes(&self.sealed, &self.granter)?;
        self.granter
            .verify(GRANT_SIG_LABEL, &[header_hash, &unsigned], &self.signature)
    }

    /// Verifies the grant, opens the DEK with the recipient's key pair and checks it against
    /// the header's key commitment.
    pub fn open(
        &self,
        header: &AttachmentHeader,
        recipient_key: &EncryptionKeyPair,
    ) -> Result<Dek> {
        self.verify(header.hash())?;
        if self.sealed.purpose() != Purpose::Grant
            || self.sealed.object_id() != header.document_id().as_str()
        {
            return Err(Error::Decrypt);
        }
        let key = self.sealed.open(recipient_key, header.hash())?;
        let dek = Dek::from_bytes(*key);
        header.check_commitment(&dek)?;
        Ok(dek)
    }

    /// The recipient.
    pub fn recipient_id(&self) -> &RecipientId {
        self.sealed.recipient_id()
    }
    /// Fingerprint of the recipient's public key.
    pub fn recipient_fingerprint(&self) -> &Fingerprint {
        self.sealed.fingerprint()
    }
    /// The group epoch (0 for a device recipient).
    pub fn epoch(&self) -> u64 {
        self.sealed.epoch()
    }
    /// Who signed the grant.
    pub fn granter(&self) -> &SigningPublicKey {
        &self.granter
    }

    /// Serializes the grant.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Bounded: a sealed key is < 600 bytes.
        let mut out = unsigned_bytes(&self.sealed, &self.granter).unwrap_or_default();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses a grant (no trailing bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        r.magic(GRANT_MAGIC)?;
        let sealed = SealedKey::parse(r.lp16(1, MAX_GRANT_LEN)?)?;
        let granter =
            SigningPublicKey::from_bytes(&r.array()?).map_err(|_| FormatError::InvalidValue)?;
        let signature = r.array()?;
        r.finish()?;
        Ok(Self {
            sealed,
            granter,
            signature,
        })
    }
}

fn unsigned_bytes(sealed: &SealedKey, granter: &SigningPublicKey) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    wire::put_magic(&mut out, GRANT_MAGIC);
    wire::put_lp16(&mut out, &sealed.to_bytes())?;
    out.extend_from_slice(&granter.to_bytes());
    Ok(out)
}

/// The grants of one attachment, bound to its content header hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessBlock {
    header_hash: [u8; 32],
    grants: Vec<Grant>,
}

impl AccessBlock {
    /// An empty access block for the attachment with `header`.
    pub fn new(header: &AttachmentHeader) -> Self {
        Self {
            header_hash: *header.hash(),
            grants: Vec::new(),
        }
    }

    /// Adds a grant after verifying its signature against this block's header hash.
    pub fn add(&mut self, grant: Grant) -> Result<()> {
        grant.verify(&self.header_hash)?;
        if self.grants.len() >= MAX_GRANTS {
            return Err(Error::Limit);
        }
        self.grants.push(grant);
        Ok(())
    }

    /// Removes every grant to the key with `fingerprint`; returns how many were removed.
    /// (Revoking access to an existing attachment this way relies on the server no longer
    /// serving the grant; the cryptographic revoke is re-encryption under a new DEK.)
    pub fn revoke(&mut self, fingerprint: &Fingerprint) -> usize {
        let before = self.grants.len();
        self.grants
            .retain(|g| g.recipient_fingerprint() != fingerprint);
        before - self.grants.len()
    }

    /// The grant for the key with `fingerprint`, if any.
    pub fn find(&self, fingerprint: &Fingerprint) -> Option<&Grant> {
        self.grants
            .iter()
            .find(|g| g.recipient_fingerprint() == fingerprint)
    }

    /// All grants.
    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }

    /// The content header hash the block belongs to.
    pub fn header_hash(&self) -> &[u8; 32] {
        &self.header_hash
    }

    /// Serializes the block.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        wire::put_magic(&mut out, BLOCK_MAGIC);
        out.extend_from_slice(&self.header_hash);
        let n = u16::try_from(self.grants.len()).map_err(|_| Error::Limit)?;
        out.extend_from_slice(&n.to_be_bytes());
        for g in &self.grants {
            wire::put_lp16(&mut out, &g.to_bytes())?;
        }
        Ok(out)
    }

    /// Parses a block and verifies every grant's signature against its header hash.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        r.magic(BLOCK_MAGIC)?;
        let header_hash = r.array()?;
        let count = usize::from(r.u16()?);
        if count > r.remaining() / 2 {
            return Err(FormatError::UnexpectedEnd.into());
        }
        let mut grants = Vec::with_capacity(count);
        for _ in 0..count {
            let g = Grant::parse(r.lp16(1, MAX_GRANT_LEN)?)?;
            g.verify(&header_hash)?;
            grants.push(g);
        }
        r.finish()?;
        Ok(Self {
            header_hash,
            grants,
        })
    }
}
