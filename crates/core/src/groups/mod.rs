//! End-to-end identities and groups (DESIGN.md, "E2E identities and groups";
//! docs/FORMAT.md sections 24 to 29).
//!
//! * [`identity`]: a user's Ed25519 identity key ([`UserIdentity`]), device certificates
//!   ([`DeviceCertificate`], `KSC`) and the signed device list ([`UserRecord`], `KSU`).
//! * [`escrow`]: the identity key escrowed under a recovery code or passphrase
//!   ([`EscrowedIdentity`], `KSR`; Argon2id with the floor enforced on read).
//! * [`safety`]: pinning identity keys on first use ([`PinStore`]) and safety codes.
//! * [`log`] and [`state`]: the signed group log ([`LogEntry`], `KSL`) and its verifier
//!   ([`GroupState`]), with epochs, sealed epoch keys and checkpoints.
//! * This module: granting attachments to a group epoch and opening them through a group.
//!
//! Removing a member or device never touches documents: documents bind to an epoch, and
//! a removal starts a new epoch whose key the removed party never receives. Documents made
//! later are out of its reach; access to existing documents is withdrawn by the server
//! (it stops serving the grant) or cryptographically by [`reencrypt`].

pub mod escrow;
pub mod identity;
pub mod log;
pub mod safety;
pub mod state;

use alloc::vec::Vec;

use rand_core::CryptoRng;

pub use escrow::{EscrowSecret, EscrowedIdentity, RecoveryCode};
pub use identity::{DeviceCertificate, UserIdentity, UserRecord};
pub use log::{EpochKeys, History, KeysKind, LogEntry, Op};
pub use safety::{PinStatus, PinStore, check_pin, safety_code};
pub use state::{Checkpoint, EpochKey, GroupState, Proposal, detect_fork};

use crate::attachment::{AttachmentHeader, GroupBinding};
use crate::device::DeviceKeys;
use crate::error::{Error, Result};
use crate::grant::Grant;
use crate::keys::{Dek, SigningKeyPair, SigningPublicKey};
use crate::stream::{AttachmentParams, StreamDecryptor, StreamEncryptor};

/// The binding a new attachment shared through `state`'s group carries: group id, current
/// epoch and head hash. Put it in [`AttachmentParams::group`].
pub fn binding(state: &GroupState) -> GroupBinding {
    GroupBinding {
        group: state.group_id().clone(),
        epoch: state.epoch(),
        head: *state.head(),
    }
}

/// Grants the attachment with `header` (whose DEK is `dek`) to the group's epoch key: a
/// `KSG` whose sealed DEK has recipient id = the group id and epoch = the header's epoch.
/// The header must be bound to this group, at an epoch and head the verified log has.
pub fn grant_to_group(
    rng: &mut impl CryptoRng,
    header: &AttachmentHeader,
    dek: &Dek,
    state: &GroupState,
    granter: &SigningKeyPair,
) -> Result<Grant> {
    let b = check_binding(header, state)?;
    let pk = state.epoch_public_key(b.epoch).ok_or(Error::Usage)?;
    let recipient = state::group_recipient(state.group_id())?;
    Grant::create(rng, header, dek, &recipient, pk, b.epoch, granter)
}

fn check_binding<'h>(header: &'h AttachmentHeader, state: &GroupState) -> Result<&'h GroupBinding> {
    let b = header.group().ok_or(Error::Decrypt)?;
    if &b.group != state.group_id() || state.epoch_at(&b.head) != Some(b.epoch) {
        return Err(Error::Decrypt);
    }
    Ok(b)
}

/// Opens a group grant with an already opened epoch key (the warm path). Checks that the
/// header is bound to this group at an epoch and head of the verified log, that the grant is
/// addressed to the group for that epoch, then opens it ([`Grant::open`]). Any failure is
/// [`Error::Decrypt`] or [`Error::Signature`].
pub fn open_group_grant(
    grant: &Grant,
    header: &AttachmentHeader,
    state: &GroupState,
    key: &EpochKey,
) -> Result<Dek> {
    let b = check_binding(header, state)?;
    if grant.recipient_id().as_str() != state.group_id().as_str()
        || grant.epoch() != b.epoch
        || key.epoch() != b.epoch
    {
        return Err(Error::Decrypt);
    }
    grant.open(header, key.pair())
}

/// Opens a group grant with a member device's keys (the cold path): opens the epoch key
/// named by the header ([`GroupState::open_epoch_key`]), then the grant.
pub fn open_through_group(
    grant: &Grant,
    header: &AttachmentHeader,
    state: &GroupState,
    device: &DeviceKeys,
) -> Result<Dek> {
    let b = check_binding(header, state)?;
    let key = state.open_epoch_key(b.epoch, device)?;
    open_group_grant(grant, header, state, &key)
}

/// Re-encrypts a whole attachment file (header ‖ segments ‖ trailer) under a fresh DEK: the
/// cryptographic revoke. Decrypts with `old_dek` (checking the author `expected_author`,
/// the key commitment and the trailer), and encrypts under a new DEK with a new header for
/// `params`, signed by `author`. Returns the new DEK (grant it again) and the new file.
/// Works on an in-memory file; callers streaming large files drive [`StreamDecryptor`] and
/// [`StreamEncryptor`] the same way chunk by chunk.
pub fn reencrypt(
    rng: &mut impl CryptoRng,
    file: &[u8],
    old_dek: &Dek,
    expected_author: &SigningPublicKey,
    author: &SigningKeyPair,
    params: AttachmentParams,
) -> Result<(Dek, Vec<u8>)> {
    let prefix = file
        .get(..crate::attachment::HEADER_PREFIX_LEN)
        .ok_or(Error::Truncated)?;
    let hlen = AttachmentHeader::encoded_len(prefix)?;
    let header = AttachmentHeader::parse(file.get(..hlen).ok_or(Error::Truncated)?)?;
    let body = file.get(hlen..).ok_or(Error::Truncated)?;
    let mut dec = StreamDecryptor::new(&header, old_dek, expected_author)?;
    let dek = Dek::generate(rng);
    let (mut enc, new_header) = StreamEncryptor::new(rng, &dek, author, params)?;
    let mut out = new_header.to_bytes();
    let mut plain = zeroize::Zeroizing::new(Vec::new());
    for chunk in body.chunks(crate::attachment::SEGMENT_CT_SIZE) {
        plain.clear();
        dec.push(chunk, &mut plain)?;
        enc.push(&plain, &mut out)?;
    }
    plain.clear();
    dec.finish(&mut plain)?;
    enc.push(&plain, &mut out)?;
    enc.finish(&mut out)?;
    Ok((dek, out))
}
