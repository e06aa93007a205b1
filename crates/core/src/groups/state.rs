//! The verified state of a group: members, admins, devices, epochs and the log head.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use rand_core::CryptoRng;

use crate::device::DeviceKeys;
use crate::error::{Error, FormatError, Result};
use crate::groups::identity::{DeviceCertificate, UserIdentity, UserRecord};
use crate::groups::log::{EpochKeys, History, KeysKind, LogEntry, Op, epoch_aad};
use crate::ids::{GroupId, RecipientId, UserId};
use crate::keys::{EncryptionKeyPair, EncryptionPublicKey, SigningPublicKey};
use crate::seal::{Purpose, SealedKey};
use crate::wire::{self, Reader};

const CHECKPOINT_MAGIC: &[u8; 3] = b"KSH";

/// The highest `(seq, head)` a client verified for a group. Persist it and pass it to
/// [`GroupState::check_checkpoint`] (or [`GroupState::from_log`]) next time: a log that is
/// shorter ([`Error::Rollback`]) or has another entry at that seq ([`Error::Fork`]) is
/// rejected. Encoding: `"KSH" 0x01 ‖ seq u64 ‖ head [32]` (44 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Sequence number of the head entry.
    pub seq: u64,
    /// Hash of the head entry.
    pub head: [u8; 32],
}

impl Checkpoint {
    /// Length of the encoding.
    pub const LEN: usize = 44;

    /// Serializes the checkpoint.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = Vec::with_capacity(Self::LEN);
        wire::put_magic(&mut out, CHECKPOINT_MAGIC);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.head);
        let mut a = [0u8; Self::LEN];
        a.copy_from_slice(&out);
        a
    }

    /// Parses a checkpoint.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes);
        r.magic(CHECKPOINT_MAGIC)?;
        let seq = r.u64()?;
        let head = r.array()?;
        r.finish()?;
        Ok(Self { seq, head })
    }
}

/// An opened group epoch key: the X25519 key pair documents of that epoch are granted to.
/// Zeroizes on drop; no `Clone`.
pub struct EpochKey {
    epoch: u64,
    pair: EncryptionKeyPair,
}

impl EpochKey {
    /// The epoch number.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// The epoch public key.
    pub fn public(&self) -> &EncryptionPublicKey {
        self.pair.public()
    }
    pub(crate) fn pair(&self) -> &EncryptionKeyPair {
        &self.pair
    }
}

impl core::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EpochKey")
            .field("epoch", &self.epoch)
            .field("public", self.pair.public())
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug)]
struct Share {
    sealed: SealedKey,
    aad: [u8; 32],
}

#[derive(Clone, Debug)]
struct EpochInfo {
    public: EncryptionPublicKey,
    /// The previous epoch key sealed under this one, with its AAD.
    previous: Option<Share>,
    /// The key sealed to each device, with the AAD of the entry that carried it.
    shares: BTreeMap<RecipientId, Share>,
}

#[derive(Clone, Debug, Default)]
struct Membership {
    members: BTreeMap<UserId, UserRecord>,
    admins: BTreeSet<UserId>,
    /// Device id → owner, for uniqueness across the group.
    devices: BTreeMap<RecipientId, UserId>,
}

/// What an entry's operations did, as far as keys are concerned.
struct Effect {
    membership: Membership,
    needs_epoch: bool,
    added_devices: Vec<DeviceCertificate>,
}

/// The result of verifying a group log from genesis: who is in the group, who administers
/// it, the current epoch and the head. Built only by verification, so a value is consistent
/// with a valid log.
#[derive(Clone, Debug)]
pub struct GroupState {
    group: GroupId,
    history: History,
    seq: u64,
    head: [u8; 32],
    /// Hash and epoch (after the entry) of every entry, by seq.
    log: Vec<([u8; 32], u64)>,
    membership: Membership,
    /// Epochs by number − 1.
    epochs: Vec<EpochInfo>,
}

/// A signed entry and, when it starts a new epoch, the new epoch key (for the proposing
/// admin, who needs it to share it later).
#[derive(Debug)]
pub struct Proposal {
    /// The signed entry: publish it (the server accepts one child per parent), then apply.
    pub entry: LogEntry,
    /// The new epoch's key, if the entry starts an epoch.
    pub new_epoch_key: Option<EpochKey>,
}

impl GroupState {
    /// Verifies a whole log from genesis, and, if given, that it reaches and contains the
    /// persisted checkpoint.
    pub fn from_log(entries: &[LogEntry], checkpoint: Option<&Checkpoint>) -> Result<Self> {
        let (first, rest) = entries.split_first().ok_or(Error::LogChain)?;
        let mut state = Self::genesis(first)?;
        for e in rest {
            state.apply(e)?;
        }
        if let Some(cp) = checkpoint {
            state.check_checkpoint(cp)?;
        }
        Ok(state)
    }

    /// Verifies a genesis entry: seq 0, zero parent, `Create` first, signed by the identity
    /// key of a member it adds (who becomes the first admin), epoch 1 sealed to every device.
    pub fn genesis(entry: &LogEntry) -> Result<Self> {
        if entry.seq() != 0 || entry.parent() != &[0; 32] {
            return Err(Error::LogChain);
        }
        let history = match entry.ops().first() {
            Some(Op::Create { history }) => *history,
            _ => return Err(Error::InvalidGroupOp),
        };
        let mut state = Self {
            group: entry.group_id().clone(),
            history,
            seq: 0,
            head: [0; 32],
            log: Vec::new(),
            membership: Membership::default(),
            epochs: Vec::new(),
        };
        let effect = state.effect(
            entry.ops().get(1..).unwrap_or_default(),
            Some(entry.signer()),
        )?;
        let keys = entry.keys().ok_or(Error::InvalidGroupOp)?;
        if keys.kind != KeysKind::NewEpoch || keys.epoch != 1 || keys.previous.is_some() {
            return Err(Error::InvalidGroupOp);
        }
        state.commit(entry, effect)?;
        Ok(state)
    }

    /// Applies the next entry: it must name this state's head as parent and seq + 1
    /// ([`Error::LogChain`]), be signed by a current admin ([`Error::NotAdmin`]) and carry
    /// valid operations and exactly the sealed keys they require ([`Error::InvalidGroupOp`]).
    /// On error the state is unchanged.
    pub fn apply(&mut self, entry: &LogEntry) -> Result<()> {
        if entry.group_id() != &self.group {
            return Err(Error::LogChain);
        }
        if Some(entry.seq()) != self.seq.checked_add(1) || entry.parent() != &self.head {
            return Err(Error::LogChain);
        }
        let signer = entry.signer();
        let is_admin = self.membership.admins.iter().any(|u| {
            self.membership
                .members
                .get(u)
                .is_some_and(|r| *r.identity_key() == signer)
        });
        if !is_admin {
            return Err(Error::NotAdmin);
        }
        let effect = self.effect(entry.ops(), None)?;
        self.commit(entry, effect)
    }

    /// Applies the operations to a copy of the membership, checking each one.
    fn effect(&self, ops: &[Op], genesis_signer: Option<SigningPublicKey>) -> Result<Effect> {
        let mut m = self.membership.clone();
        let mut needs_epoch = false;
        let mut added: Vec<DeviceCertificate> = Vec::new();
        for op in ops {
            match op {
                Op::Create { .. } => return Err(Error::InvalidGroupOp),
                Op::AddMember(rec) => {
                    let user = rec.user_id();
                    if m.members.contains_key(user) {
                        return Err(Error::InvalidGroupOp);
                    }
                    for d in rec.devices() {
                        if m.devices
                            .insert(d.device_id().clone(), user.clone())
                            .is_some()
                        {
                            return Err(Error::InvalidGroupOp);
                        }
                        added.push(d.clone());
                    }
                    m.members.insert(user.clone(), rec.clone());
                }
                Op::RemoveMember(user) => {
                    let rec = m.members.remove(user).ok_or(Error::InvalidGroupOp)?;
                    for d in rec.devices() {
                        m.devices.remove(d.device_id());
                    }
                    added.retain(|d| d.user_id() != user);
                    m.admins.remove(user);
                    needs_epoch = true;
                }
                Op::AddAdmin(user) => {
                    if !m.members.contains_key(user) || !m.admins.insert(user.clone()) {
                        return Err(Error::InvalidGroupOp);
                    }
                }
                Op::RemoveAdmin(user) => {
                    if !m.admins.remove(user) {
                        return Err(Error::InvalidGroupOp);
                    }
                    needs_epoch = true;
                }
                Op::UpdateMember(rec) => {
                    let user = rec.user_id();
                    let old = m.members.get(user).ok_or(Error::InvalidGroupOp)?;
                    old.check_successor(rec)?;
                    for d in old.devices() {
                        match rec.device(d.device_id()) {
                            Some(n) if n == d => {}
                            // A device removed, or its certificate replaced: new epoch.
                            _ => {
                                needs_epoch = true;
                                m.devices.remove(d.device_id());
                                added.retain(|a| a.device_id() != d.device_id());
                            }
                        }
                    }
                    for d in rec.devices() {
                        if old.device(d.device_id()) == Some(d) {
                            continue;
                        }
                        if m.devices
                            .insert(d.device_id().clone(), user.clone())
                            .is_some()
                        {
                            return Err(Error::InvalidGroupOp);
                        }
                        added.push(d.clone());
                    }
                    m.members.insert(user.clone(), rec.clone());
                }
                Op::Rotate => needs_epoch = true,
            }
        }
        if let Some(signer) = genesis_signer {
            // The creator must be a member; it becomes the first admin.
            let creator = m
                .members
                .values()
                .find(|r| *r.identity_key() == signer)
                .map(|r| r.user_id().clone())
                .ok_or(Error::InvalidGroupOp)?;
            m.admins.insert(creator);
            needs_epoch = true;
        }
        if m.admins.is_empty() {
            return Err(Error::InvalidGroupOp);
        }
        if self.history == History::None && !added.is_empty() {
            needs_epoch = true;
        }
        Ok(Effect {
            membership: m,
            needs_epoch,
            added_devices: added,
        })
    }

    /// Checks the entry's key section against the effect and records the new state.
    fn commit(&mut self, entry: &LogEntry, effect: Effect) -> Result<()> {
        let current = self.epochs.len() as u64;
        let mut new_epoch: Option<EpochInfo> = None;
        let mut new_shares: Vec<(RecipientId, Share)> = Vec::new();
        match entry.keys() {
            Some(k) if k.kind == KeysKind::NewEpoch => {
                if Some(k.epoch) != current.checked_add(1) {
                    return Err(Error::InvalidGroupOp);
                }
                let aad = epoch_aad(&self.group, entry.seq(), entry.parent(), k.epoch, &k.public)?;
                let all: Vec<&DeviceCertificate> = effect
                    .membership
                    .members
                    .values()
                    .flat_map(|r| r.devices())
                    .collect();
                let shares = match_sealed(&k.sealed, &all, aad)?;
                let previous = match (&k.previous, self.history, current) {
                    (None, _, 0) => None,
                    (Some(p), History::All, c) if c > 0 => Some(Share {
                        sealed: p.clone(),
                        aad,
                    }),
                    (None, History::None, _) => None,
                    _ => return Err(Error::InvalidGroupOp),
                };
                new_epoch = Some(EpochInfo {
                    public: k.public.clone(),
                    previous,
                    shares: shares.into_iter().collect(),
                });
            }
            Some(k) => {
                // A share of the current epoch key with the added devices.
                let info = self.epochs.last().ok_or(Error::InvalidGroupOp)?;
                if effect.needs_epoch
                    || effect.added_devices.is_empty()
                    || k.epoch != current
                    || k.public != info.public
                    || k.previous.is_some()
                {
                    return Err(Error::InvalidGroupOp);
                }
                let aad = epoch_aad(&self.group, entry.seq(), entry.parent(), k.epoch, &k.public)?;
                let added: Vec<&DeviceCertificate> = effect.added_devices.iter().collect();
                new_shares = match_sealed(&k.sealed, &added, aad)?;
            }
            None => {
                if effect.needs_epoch || !effect.added_devices.is_empty() {
                    return Err(Error::InvalidGroupOp);
                }
            }
        }
        // Everything checked: mutate.
        self.membership = effect.membership;
        if let Some(e) = new_epoch {
            self.epochs.push(e);
        }
        if let Some(info) = self.epochs.last_mut() {
            info.shares.extend(new_shares);
        }
        self.seq = entry.seq();
        self.head = entry.hash();
        self.log.push((self.head, self.epochs.len() as u64));
        Ok(())
    }

    /// Checks a persisted checkpoint against this (verified) state: the log must reach its
    /// seq ([`Error::Rollback`]) and have the same entry there ([`Error::Fork`]).
    pub fn check_checkpoint(&self, cp: &Checkpoint) -> Result<()> {
        if cp.seq > self.seq {
            return Err(Error::Rollback);
        }
        let i = usize::try_from(cp.seq).map_err(|_| Error::Rollback)?;
        match self.log.get(i) {
            Some((h, _)) if *h == cp.head => Ok(()),
            _ => Err(Error::Fork),
        }
    }

    /// The checkpoint to persist after verifying this state.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            seq: self.seq,
            head: self.head,
        }
    }

    /// Signs an entry with `ops` as the next one, as admin `signer`. Starts a new epoch when
    /// the operations require it (removals, rotation, or additions under `history: none`),
    /// sealing a fresh epoch key to every device of the resulting membership and, under
    /// `history: all`, the current key under the new one; otherwise seals the current epoch
    /// key to added devices. `current` is the current epoch key (needed unless the group has
    /// `history: none` and the entry starts an epoch or adds nobody).
    pub fn propose(
        &self,
        rng: &mut impl CryptoRng,
        signer: &UserIdentity,
        ops: Vec<Op>,
        current: Option<&EpochKey>,
    ) -> Result<Proposal> {
        let effect = self.effect(&ops, None)?;
        let next_seq = self.seq.checked_add(1).ok_or(Error::Limit)?;
        self.build(
            rng, signer, ops, current, effect, next_seq, self.head, false,
        )
    }

    /// Signs a genesis entry creating `group` with `members` (whose records must include
    /// `creator`'s own), plus `Create { history }`. Returns the entry and epoch 1's key.
    pub fn create(
        rng: &mut impl CryptoRng,
        group: GroupId,
        history: History,
        creator: &UserIdentity,
        members: Vec<UserRecord>,
    ) -> Result<Proposal> {
        let state = Self {
            group,
            history,
            seq: 0,
            head: [0; 32],
            log: Vec::new(),
            membership: Membership::default(),
            epochs: Vec::new(),
        };
        let mut ops = Vec::with_capacity(members.len() + 1);
        ops.push(Op::Create { history });
        ops.extend(members.into_iter().map(Op::AddMember));
        let effect = state.effect(ops.get(1..).unwrap_or_default(), Some(creator.public()))?;
        state.build(rng, creator, ops, None, effect, 0, [0; 32], false)
    }

    /// Test-only: like [`GroupState::propose`] but seals to the devices a key that does not
    /// match the signed epoch public key (a malicious admin). Not part of the API.
    #[doc(hidden)]
    pub fn __propose_mismatched_key(
        &self,
        rng: &mut impl CryptoRng,
        signer: &UserIdentity,
        ops: Vec<Op>,
        current: Option<&EpochKey>,
    ) -> Result<Proposal> {
        let effect = self.effect(&ops, None)?;
        self.build(
            rng,
            signer,
            ops,
            current,
            effect,
            self.seq.checked_add(1).ok_or(Error::Limit)?,
            self.head,
            true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        rng: &mut impl CryptoRng,
        signer: &UserIdentity,
        ops: Vec<Op>,
        current: Option<&EpochKey>,
        effect: Effect,
        seq: u64,
        parent: [u8; 32],
        mismatch: bool,
    ) -> Result<Proposal> {
        let cur_epoch = self.epochs.len() as u64;
        let check_current = |k: Option<&EpochKey>| -> Result<()> {
            match (k, self.epochs.last()) {
                (Some(k), Some(info)) if k.epoch == cur_epoch && *k.public() == info.public => {
                    Ok(())
                }
                _ => Err(Error::Usage),
            }
        };
        let (keys, new_key) = if effect.needs_epoch {
            let epoch = cur_epoch.checked_add(1).ok_or(Error::Limit)?;
            let pair = EncryptionKeyPair::generate(rng);
            let aad = epoch_aad(&self.group, seq, &parent, epoch, pair.public())?;
            let secret = if mismatch {
                EncryptionKeyPair::generate(rng).expose_secret()
            } else {
                pair.expose_secret()
            };
            let devices: Vec<&DeviceCertificate> = effect
                .membership
                .members
                .values()
                .flat_map(|r| r.devices())
                .collect();
            let sealed = seal_all(rng, &self.group, epoch, &devices, &aad, &secret)?;
            let previous = if self.history == History::All && cur_epoch > 0 {
                check_current(current)?;
                let cur = current.ok_or(Error::Usage)?;
                Some(SealedKey::seal(
                    rng,
                    Purpose::GroupKey,
                    &group_recipient(&self.group)?,
                    pair.public(),
                    self.group.as_str(),
                    cur_epoch,
                    &aad,
                    &cur.pair.expose_secret(),
                )?)
            } else {
                None
            };
            let keys = EpochKeys {
                kind: KeysKind::NewEpoch,
                epoch,
                public: pair.public().clone(),
                sealed,
                previous,
            };
            (Some(keys), Some(EpochKey { epoch, pair }))
        } else if !effect.added_devices.is_empty() {
            check_current(current)?;
            let cur = current.ok_or(Error::Usage)?;
            let aad = epoch_aad(&self.group, seq, &parent, cur_epoch, cur.public())?;
            let devices: Vec<&DeviceCertificate> = effect.added_devices.iter().collect();
            let secret = cur.pair.expose_secret();
            let sealed = seal_all(rng, &self.group, cur_epoch, &devices, &aad, &secret)?;
            let keys = EpochKeys {
                kind: KeysKind::Share,
                epoch: cur_epoch,
                public: cur.public().clone(),
                sealed,
                previous: None,
            };
            (Some(keys), None)
        } else {
            (None, None)
        };
        let entry = LogEntry::sign(signer, &self.group, seq, &parent, &ops, keys.as_ref())?;
        Ok(Proposal {
            entry,
            new_epoch_key: new_key,
        })
    }

    /// Opens the key of `epoch` with a member device's keys: directly if a key was sealed to
    /// the device in that epoch, otherwise (under `history: all`) from a later epoch's key
    /// by walking back the chain of previous-epoch keys. Every opened key must derive the
    /// epoch public key the log signed ([`Error::Decrypt`] otherwise, as for any failure).
    pub fn open_epoch_key(&self, epoch: u64, device: &DeviceKeys) -> Result<EpochKey> {
        let idx = self.epoch_index(epoch)?;
        let mut found = None;
        for (i, info) in self.epochs.iter().enumerate().skip(idx) {
            if info.shares.contains_key(device.id()) {
                found = Some(i);
                break;
            }
            if self.history == History::None {
                // No chain to walk back along: only a direct share helps.
                break;
            }
        }
        let i = found.ok_or(Error::Decrypt)?;
        let info = self.epochs.get(i).ok_or(Error::Decrypt)?;
        let share = info.shares.get(device.id()).ok_or(Error::Decrypt)?;
        let mut key = open_share(share, device.encryption(), i as u64 + 1, &info.public)?;
        while key.epoch > epoch {
            key = self.previous_epoch_key(&key)?;
        }
        Ok(key)
    }

    /// Opens the key of the epoch before `newer`'s from the chain (`history: all`).
    pub fn previous_epoch_key(&self, newer: &EpochKey) -> Result<EpochKey> {
        let i = self.epoch_index(newer.epoch)?;
        let info = self.epochs.get(i).ok_or(Error::Decrypt)?;
        if info.public != *newer.public() {
            return Err(Error::Decrypt);
        }
        let prev = info.previous.as_ref().ok_or(Error::Decrypt)?;
        let pi = i.checked_sub(1).ok_or(Error::Decrypt)?;
        let pinfo = self.epochs.get(pi).ok_or(Error::Decrypt)?;
        open_share(prev, &newer.pair, newer.epoch - 1, &pinfo.public)
    }

    fn epoch_index(&self, epoch: u64) -> Result<usize> {
        let i = usize::try_from(epoch).map_err(|_| Error::Decrypt)?;
        let i = i.checked_sub(1).ok_or(Error::Decrypt)?;
        if i >= self.epochs.len() {
            return Err(Error::Decrypt);
        }
        Ok(i)
    }

    /// The group.
    pub fn group_id(&self) -> &GroupId {
        &self.group
    }
    /// The history setting.
    pub fn history(&self) -> History {
        self.history
    }
    /// Sequence number of the head entry.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// Hash of the head entry.
    pub fn head(&self) -> &[u8; 32] {
        &self.head
    }
    /// The current epoch (1 after genesis).
    pub fn epoch(&self) -> u64 {
        self.epochs.len() as u64
    }
    /// The public key of `epoch`.
    pub fn epoch_public_key(&self, epoch: u64) -> Option<&EncryptionPublicKey> {
        self.epoch_index(epoch)
            .ok()
            .and_then(|i| self.epochs.get(i))
            .map(|e| &e.public)
    }
    /// The epoch that was current after the entry with hash `head`, if the log has it.
    pub fn epoch_at(&self, head: &[u8; 32]) -> Option<u64> {
        self.log.iter().find(|(h, _)| h == head).map(|(_, e)| *e)
    }
    /// The members' current user records, by user id.
    pub fn members(&self) -> impl Iterator<Item = &UserRecord> {
        self.membership.members.values()
    }
    /// The member `user`'s record.
    pub fn member(&self, user: &UserId) -> Option<&UserRecord> {
        self.membership.members.get(user)
    }
    /// Whether `user` is an admin.
    pub fn is_admin(&self, user: &UserId) -> bool {
        self.membership.admins.contains(user)
    }
    /// The admins' user ids.
    pub fn admins(&self) -> impl Iterator<Item = &UserId> {
        self.membership.admins.iter()
    }
    /// Every current member device.
    pub fn devices(&self) -> impl Iterator<Item = &DeviceCertificate> {
        self.membership.members.values().flat_map(|r| r.devices())
    }
}

/// Compares two entries that claim the same parent, given the verified state at that
/// parent. If they are different and both valid children, the log forked:
/// [`Error::Fork`] (show it; do not pick one). If they are the same entry, or at least one
/// is not a valid child, there is no fork (`Ok`); an invalid one is rejected by
/// [`GroupState::apply`] anyway.
pub fn detect_fork(state_at_parent: &GroupState, a: &LogEntry, b: &LogEntry) -> Result<()> {
    if a.hash() == b.hash() {
        return Ok(());
    }
    let mut sa = state_at_parent.clone();
    let mut sb = state_at_parent.clone();
    if sa.apply(a).is_ok() && sb.apply(b).is_ok() {
        return Err(Error::Fork);
    }
    Ok(())
}

/// Checks that `sealed` holds exactly one key for each of `devices`, addressed to the
/// device id and key fingerprint of its certificate.
fn match_sealed(
    sealed: &[SealedKey],
    devices: &[&DeviceCertificate],
    aad: [u8; 32],
) -> Result<Vec<(RecipientId, Share)>> {
    if sealed.len() != devices.len() {
        return Err(Error::InvalidGroupOp);
    }
    let by_id: BTreeMap<&RecipientId, &DeviceCertificate> =
        devices.iter().map(|d| (d.device_id(), *d)).collect();
    let mut out: BTreeMap<RecipientId, Share> = BTreeMap::new();
    for s in sealed {
        let cert = by_id.get(s.recipient_id()).ok_or(Error::InvalidGroupOp)?;
        if *s.fingerprint() != cert.encryption_key().fingerprint() {
            return Err(Error::InvalidGroupOp);
        }
        let share = Share {
            sealed: s.clone(),
            aad,
        };
        if out.insert(s.recipient_id().clone(), share).is_some() {
            return Err(Error::InvalidGroupOp);
        }
    }
    Ok(out.into_iter().collect())
}

fn seal_all(
    rng: &mut impl CryptoRng,
    group: &GroupId,
    epoch: u64,
    devices: &[&DeviceCertificate],
    aad: &[u8; 32],
    secret: &[u8; 32],
) -> Result<Vec<SealedKey>> {
    devices
        .iter()
        .map(|d| {
            SealedKey::seal(
                rng,
                Purpose::GroupKey,
                d.device_id(),
                d.encryption_key(),
                group.as_str(),
                epoch,
                aad,
                secret,
            )
        })
        .collect()
}

fn open_share(
    share: &Share,
    kp: &EncryptionKeyPair,
    epoch: u64,
    expected: &EncryptionPublicKey,
) -> Result<EpochKey> {
    if share.sealed.epoch() != epoch {
        return Err(Error::Decrypt);
    }
    let secret = share.sealed.open(kp, &share.aad)?;
    let pair = EncryptionKeyPair::from_secret_bytes(&secret);
    if pair.public() != expected {
        return Err(Error::Decrypt);
    }
    Ok(EpochKey { epoch, pair })
}

/// The recipient id of keys sealed to a group epoch key: the group id.
pub(crate) fn group_recipient(group: &GroupId) -> Result<RecipientId> {
    RecipientId::new(group.as_str()).map_err(|_| FormatError::InvalidValue.into())
}
