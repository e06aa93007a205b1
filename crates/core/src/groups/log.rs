//! Group log entries, format `KSL` version 1.
//!
//! ```text
//! entry    = unsigned ‖ signature [64]
//! unsigned = "KSL" 0x01 ‖ group id lp16 ‖ seq u64 (genesis = 0)
//!          ‖ parent hash [32] (all zero for genesis)
//!          ‖ signer [32]            Ed25519 identity key of an admin as of the parent
//!          ‖ op count u16 (1..) ‖ ops
//!          ‖ keys tag u8            0 = none, 1 = new epoch, 2 = current epoch to new devices
//!            [tag ≠ 0: epoch u64 ‖ epoch X25519 public key [32]
//!                     ‖ count u32 ‖ count × sealed key lp16 (KSS, purpose group-key)
//!                     ‖ previous u8 (0 | 1) [‖ sealed key lp16]]
//! op       = 1 create      ‖ history u8 (0 = all, 1 = none)
//!          | 2 add member  ‖ user record lp32 (KSU)
//!          | 3 remove member ‖ user id lp16
//!          | 4 add admin   ‖ user id lp16
//!          | 5 remove admin ‖ user id lp16
//!          | 6 update member ‖ user record lp32 (KSU)
//!          | 7 rotate
//! signature  = Ed25519(signer, "keystead/v1/group-log" ‖ unsigned)
//! entry hash = SHA-256(entry)              (signature included)
//! sealed-key AAD = SHA-256("keystead/v1/group-epoch" ‖ group id lp16 ‖ seq u64 ‖ parent [32]
//!                          ‖ epoch u64 ‖ epoch public key [32])
//! ```
//!
//! Parsing checks the framing, the signature (by the key the entry names) and that every
//! sealed key has purpose group-key, object id = the group id and epoch = the entry's epoch
//! (the previous-epoch key: epoch − 1, recipient id = the group id and fingerprint = the
//! epoch public key's). Whether the signer was an admin, and whether the operations and
//! sealed keys fit the group, is checked by [`crate::groups::GroupState`].

use alloc::vec::Vec;

use crate::error::{Error, FormatError, Result};
use crate::groups::identity::{MAX_RECORD_LEN, UserIdentity, UserRecord, read_signing_key};
use crate::hazmat;
use crate::ids::{GroupId, MAX_ID_LEN, UserId};
use crate::keys::{EncryptionPublicKey, SigningPublicKey};
use crate::seal::{Purpose, SealedKey};
use crate::wire::{self, Reader};

const MAGIC: &[u8; 3] = b"KSL";
const SIG_LABEL: &[u8] = b"keystead/v1/group-log";
const AAD_LABEL: &[u8] = b"keystead/v1/group-epoch";
/// Largest encoded entry (enough for about 10 000 members with several devices each).
pub const MAX_ENTRY_LEN: usize = 64 * 1024 * 1024;
/// Largest sealed key inside an entry.
pub const MAX_SEALED_LEN: usize = 1024;
/// Smallest encoded sealed key (used to bound counts before allocating).
const MIN_SEALED_LEN: usize = 133;

/// Whether members added later can read documents from before they joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum History {
    /// New members receive the current epoch key, and each epoch start carries the previous
    /// epoch key sealed under the new one, so they can walk back to every epoch.
    All,
    /// New members (and new devices of members) get no earlier epoch keys: adding starts a
    /// new epoch and no entry carries a previous-epoch key. Existing members keep the keys
    /// they were given directly.
    None,
}

/// One operation of a log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// First operation of the genesis entry (and only there).
    Create {
        /// The group's history setting (fixed for the group's life).
        history: History,
    },
    /// Adds a member with the devices of its signed user record.
    AddMember(UserRecord),
    /// Removes a member (and its admin role). Starts a new epoch.
    RemoveMember(UserId),
    /// Makes a member an admin.
    AddAdmin(UserId),
    /// Takes the admin role from a member. Starts a new epoch.
    RemoveAdmin(UserId),
    /// Replaces a member's user record by a newer version of it (same identity key): device
    /// changes. Removing a device starts a new epoch.
    UpdateMember(UserRecord),
    /// Starts a new epoch without a membership change.
    Rotate,
}

/// What kind of key material an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeysKind {
    /// A new epoch: its key sealed to every device of the resulting membership.
    NewEpoch,
    /// The current epoch's key sealed to the devices this entry adds.
    Share,
}

/// The key section of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochKeys {
    pub(crate) kind: KeysKind,
    pub(crate) epoch: u64,
    pub(crate) public: EncryptionPublicKey,
    pub(crate) sealed: Vec<SealedKey>,
    pub(crate) previous: Option<SealedKey>,
}

impl EpochKeys {
    /// New epoch or share of the current one.
    pub fn kind(&self) -> KeysKind {
        self.kind
    }
    /// The epoch number.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// The epoch's X25519 public key (signed by the entry).
    pub fn public(&self) -> &EncryptionPublicKey {
        &self.public
    }
    /// The epoch key sealed to devices.
    pub fn sealed(&self) -> &[SealedKey] {
        &self.sealed
    }
    /// The previous epoch key sealed under this epoch's key.
    pub fn previous(&self) -> Option<&SealedKey> {
        self.previous.as_ref()
    }
}

/// A parsed, signature-checked group log entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    group: GroupId,
    seq: u64,
    parent: [u8; 32],
    signer: SigningPublicKey,
    ops: Vec<Op>,
    keys: Option<EpochKeys>,
    bytes: Vec<u8>,
    hash: [u8; 32],
}

/// The HPKE AAD of epoch keys sealed in the entry (group id, seq, parent) for `epoch` with
/// public key `public`.
pub(crate) fn epoch_aad(
    group: &GroupId,
    seq: u64,
    parent: &[u8; 32],
    epoch: u64,
    public: &EncryptionPublicKey,
) -> Result<[u8; 32]> {
    let mut g = Vec::with_capacity(2 + MAX_ID_LEN);
    wire::put_lp16(&mut g, group.as_bytes())?;
    Ok(hazmat::sha256(&[
        AAD_LABEL,
        &g,
        &seq.to_be_bytes(),
        parent,
        &epoch.to_be_bytes(),
        &public.to_bytes(),
    ]))
}

impl LogEntry {
    /// Parses an entry and verifies its signature by the signer key it names.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(FormatError::TooLong.into());
        }
        let mut r = Reader::new(bytes);
        r.magic(MAGIC)?;
        let group = GroupId::from_wire(r.lp16(1, MAX_ID_LEN)?)?;
        let seq = r.u64()?;
        let parent: [u8; 32] = r.array()?;
        if (seq == 0) != (parent == [0; 32]) {
            return Err(FormatError::InvalidValue.into());
        }
        let signer = read_signing_key(&mut r)?;
        let n_ops = usize::from(r.u16()?);
        if n_ops == 0 || n_ops > r.remaining() {
            return Err(FormatError::InvalidValue.into());
        }
        let mut ops = Vec::with_capacity(n_ops);
        for _ in 0..n_ops {
            ops.push(read_op(&mut r)?);
        }
        let keys = match r.u8()? {
            0 => None,
            tag @ (1 | 2) => {
                let kind = if tag == 1 {
                    KeysKind::NewEpoch
                } else {
                    KeysKind::Share
                };
                let epoch = r.u64()?;
                let public = EncryptionPublicKey::from_bytes(&r.array()?)
                    .map_err(|_| FormatError::InvalidValue)?;
                let count = usize::try_from(r.u32()?).map_err(|_| FormatError::TooLong)?;
                if count > r.remaining() / MIN_SEALED_LEN {
                    return Err(FormatError::UnexpectedEnd.into());
                }
                let mut sealed = Vec::with_capacity(count);
                for _ in 0..count {
                    let s = SealedKey::parse(r.lp16(1, MAX_SEALED_LEN)?)?;
                    if s.purpose() != Purpose::GroupKey
                        || s.object_id() != group.as_str()
                        || s.epoch() != epoch
                    {
                        return Err(FormatError::InvalidValue.into());
                    }
                    sealed.push(s);
                }
                let previous = match r.u8()? {
                    0 => None,
                    1 => {
                        let s = SealedKey::parse(r.lp16(1, MAX_SEALED_LEN)?)?;
                        if kind != KeysKind::NewEpoch
                            || s.purpose() != Purpose::GroupKey
                            || s.object_id() != group.as_str()
                            || s.recipient_id().as_str() != group.as_str()
                            || s.fingerprint() != &public.fingerprint()
                            || Some(s.epoch()) != epoch.checked_sub(1)
                        {
                            return Err(FormatError::InvalidValue.into());
                        }
                        Some(s)
                    }
                    _ => return Err(FormatError::InvalidValue.into()),
                };
                Some(EpochKeys {
                    kind,
                    epoch,
                    public,
                    sealed,
                    previous,
                })
            }
            _ => return Err(FormatError::InvalidValue.into()),
        };
        let unsigned_len = bytes.len() - r.remaining();
        let sig: [u8; 64] = r.array()?;
        r.finish()?;
        let unsigned = bytes
            .get(..unsigned_len)
            .ok_or(FormatError::UnexpectedEnd)?;
        signer.verify(SIG_LABEL, &[unsigned], &sig)?;
        Ok(Self {
            group,
            seq,
            parent,
            signer,
            ops,
            keys,
            hash: hazmat::sha256(&[bytes]),
            bytes: bytes.to_vec(),
        })
    }

    /// Encodes and signs an entry (the admin side; [`crate::groups::GroupState::propose`]).
    pub(crate) fn sign(
        signer: &UserIdentity,
        group: &GroupId,
        seq: u64,
        parent: &[u8; 32],
        ops: &[Op],
        keys: Option<&EpochKeys>,
    ) -> Result<Self> {
        let mut out = Vec::new();
        wire::put_magic(&mut out, MAGIC);
        wire::put_lp16(&mut out, group.as_bytes())?;
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(parent);
        out.extend_from_slice(&signer.public().to_bytes());
        let n = u16::try_from(ops.len()).map_err(|_| Error::Limit)?;
        out.extend_from_slice(&n.to_be_bytes());
        for op in ops {
            write_op(&mut out, op)?;
        }
        match keys {
            None => out.push(0),
            Some(k) => {
                out.push(match k.kind {
                    KeysKind::NewEpoch => 1,
                    KeysKind::Share => 2,
                });
                out.extend_from_slice(&k.epoch.to_be_bytes());
                out.extend_from_slice(&k.public.to_bytes());
                let c = u32::try_from(k.sealed.len()).map_err(|_| Error::Limit)?;
                out.extend_from_slice(&c.to_be_bytes());
                for s in &k.sealed {
                    wire::put_lp16(&mut out, &s.to_bytes())?;
                }
                match &k.previous {
                    None => out.push(0),
                    Some(p) => {
                        out.push(1);
                        wire::put_lp16(&mut out, &p.to_bytes())?;
                    }
                }
            }
        }
        let sig = signer.sign(SIG_LABEL, &[&out]);
        out.extend_from_slice(&sig);
        if out.len() > MAX_ENTRY_LEN {
            return Err(Error::Limit);
        }
        Self::parse(&out)
    }

    /// `SHA-256` of the whole entry, signature included: the next entry's parent.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }
    /// The sequence number (genesis = 0).
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// The parent entry's hash (all zero for genesis).
    pub fn parent(&self) -> &[u8; 32] {
        &self.parent
    }
    /// The group.
    pub fn group_id(&self) -> &GroupId {
        &self.group
    }
    /// The identity key that signed the entry (an admin's, as of the parent; for genesis,
    /// the creator's).
    pub fn signer(&self) -> SigningPublicKey {
        self.signer
    }
    /// The operations.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
    /// The key section, if any.
    pub fn keys(&self) -> Option<&EpochKeys> {
        self.keys.as_ref()
    }
    /// The encoded entry.
    pub fn to_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

fn read_op(r: &mut Reader<'_>) -> Result<Op> {
    Ok(match r.u8()? {
        1 => Op::Create {
            history: match r.u8()? {
                0 => History::All,
                1 => History::None,
                _ => return Err(FormatError::InvalidValue.into()),
            },
        },
        2 => Op::AddMember(UserRecord::parse(r.lp32(1, MAX_RECORD_LEN)?)?),
        3 => Op::RemoveMember(UserId::from_wire(r.lp16(1, MAX_ID_LEN)?)?),
        4 => Op::AddAdmin(UserId::from_wire(r.lp16(1, MAX_ID_LEN)?)?),
        5 => Op::RemoveAdmin(UserId::from_wire(r.lp16(1, MAX_ID_LEN)?)?),
        6 => Op::UpdateMember(UserRecord::parse(r.lp32(1, MAX_RECORD_LEN)?)?),
        7 => Op::Rotate,
        _ => return Err(FormatError::InvalidValue.into()),
    })
}

fn write_op(out: &mut Vec<u8>, op: &Op) -> Result<()> {
    match op {
        Op::Create { history } => {
            out.push(1);
            out.push(match history {
                History::All => 0,
                History::None => 1,
            });
        }
        Op::AddMember(rec) => {
            out.push(2);
            wire::put_lp32(out, rec.to_bytes())?;
        }
        Op::RemoveMember(u) => {
            out.push(3);
            wire::put_lp16(out, u.as_bytes())?;
        }
        Op::AddAdmin(u) => {
            out.push(4);
            wire::put_lp16(out, u.as_bytes())?;
        }
        Op::RemoveAdmin(u) => {
            out.push(5);
            wire::put_lp16(out, u.as_bytes())?;
        }
        Op::UpdateMember(rec) => {
            out.push(6);
            wire::put_lp32(out, rec.to_bytes())?;
        }
        Op::Rotate => out.push(7),
    }
    Ok(())
}
