//! Acceptance tests of issue 8 (core): groups, epochs, removal, history, log verification,
//! device certificates, grants through groups, escrow and safety codes. Each property is
//! its own test, and each fails if the property breaks.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod common;

use common::rng;
use keystead_core::attachment::{AttachmentHeader, HEADER_PREFIX_LEN};
use keystead_core::device::DeviceKeys;
use keystead_core::grant::{AccessBlock, Grant};
use keystead_core::groups::{
    self, Checkpoint, DeviceCertificate, EscrowSecret, EscrowedIdentity, GroupState, History,
    LogEntry, Op, PinStatus, PinStore, RecoveryCode, UserIdentity, UserRecord, detect_fork,
    safety_code,
};
use keystead_core::key_export::KdfParams;
use keystead_core::keys::{Dek, SigningPublicKey};
use keystead_core::stream::{AttachmentParams, StreamDecryptor, StreamEncryptor};
use keystead_core::{DocumentId, Error, FormatError, GroupId, RecipientId, UserId};
use rand_core::Rng;

struct User {
    identity: UserIdentity,
    devices: Vec<DeviceKeys>,
    record: UserRecord,
}

fn user(seed: u64, name: &str, n_devices: usize) -> User {
    let mut r = rng(seed);
    let identity = UserIdentity::generate(&mut r, UserId::new(name).unwrap());
    let devices: Vec<DeviceKeys> = (0..n_devices)
        .map(|i| DeviceKeys::generate(&mut r, RecipientId::new(format!("{name}/d{i}")).unwrap()))
        .collect();
    let certs = devices
        .iter()
        .map(|d| identity.certify(d).unwrap())
        .collect();
    let record = identity.sign_record(1, certs).unwrap();
    User {
        identity,
        devices,
        record,
    }
}

/// A group state, its log and the admin's current epoch key.
struct Group {
    state: GroupState,
    log: Vec<LogEntry>,
    key: groups::EpochKey,
}

impl Group {
    fn create(seed: u64, history: History, creator: &User, others: &[&User]) -> Self {
        let mut records = vec![creator.record.clone()];
        records.extend(others.iter().map(|u| u.record.clone()));
        let p = GroupState::create(
            &mut rng(seed),
            GroupId::new("team").unwrap(),
            history,
            &creator.identity,
            records,
        )
        .unwrap();
        let state = GroupState::genesis(&p.entry).unwrap();
        Self {
            state,
            log: vec![p.entry],
            key: p.new_epoch_key.unwrap(),
        }
    }

    fn run(&mut self, seed: u64, admin: &User, ops: Vec<Op>) {
        let p = self
            .state
            .propose(&mut rng(seed), &admin.identity, ops, Some(&self.key))
            .unwrap();
        self.state.apply(&p.entry).unwrap();
        self.log.push(p.entry);
        if let Some(k) = p.new_epoch_key {
            self.key = k;
        }
    }
}

/// An attachment shared through the group as of its current state: (header, file, grant).
fn document(
    g: &Group,
    author: &DeviceKeys,
    name: &str,
    body: &[u8],
) -> (AttachmentHeader, Vec<u8>, Grant) {
    let mut r = rng(99);
    let dek = Dek::generate(&mut r);
    let params = AttachmentParams {
        document: DocumentId::new(name).unwrap(),
        group: Some(groups::binding(&g.state)),
    };
    let (mut enc, header) = StreamEncryptor::new(&mut r, &dek, author.signing(), params).unwrap();
    let mut file = header.to_bytes();
    enc.push(body, &mut file).unwrap();
    enc.finish(&mut file).unwrap();
    let grant = groups::grant_to_group(&mut r, &header, &dek, &g.state, author.signing()).unwrap();
    (header, file, grant)
}

fn read(
    state: &GroupState,
    device: &DeviceKeys,
    doc: &(AttachmentHeader, Vec<u8>, Grant),
    author: &SigningPublicKey,
) -> Result<Vec<u8>, Error> {
    let (header, file, grant) = doc;
    let dek = groups::open_through_group(grant, header, state, device)?;
    let mut dec = StreamDecryptor::new(header, &dek, author)?;
    let mut out = Vec::new();
    dec.push(&file[header.len()..], &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}

#[test]
fn removed_member_cannot_open_document_created_after_removal() {
    let (ada, bob, cy) = (user(1, "ada", 1), user(2, "bob", 1), user(3, "cy", 1));
    let mut g = Group::create(10, History::All, &ada, &[&bob, &cy]);
    let before = document(&g, &ada.devices[0], "doc/before", b"old");
    g.run(
        11,
        &ada,
        vec![Op::RemoveMember(bob.record.user_id().clone())],
    );
    assert_eq!(g.state.epoch(), 2);
    let after = document(&g, &ada.devices[0], "doc/after", b"new");
    let author = ada.devices[0].signing().public();
    // Bob's device cannot open the new epoch key, so not the new document...
    assert_eq!(
        read(&g.state, &bob.devices[0], &after, &author).unwrap_err(),
        Error::Decrypt
    );
    assert!(g.state.open_epoch_key(2, &bob.devices[0]).is_err());
    // ...even with the epoch-1 key he had.
    let k1 = g.state.open_epoch_key(1, &bob.devices[0]).unwrap();
    assert!(groups::open_group_grant(&after.2, &after.0, &g.state, &k1).is_err());
    // What he could read before stays readable to him (nothing can change that).
    assert_eq!(
        read(&g.state, &bob.devices[0], &before, &author).unwrap(),
        b"old"
    );
    // Cy still reads both.
    assert_eq!(
        read(&g.state, &cy.devices[0], &after, &author).unwrap(),
        b"new"
    );
    assert!(g.state.member(bob.record.user_id()).is_none());
}

#[test]
fn removed_member_epoch_key_does_not_open_new_grant() {
    let (ada, bob) = (user(1, "ada", 1), user(2, "bob", 1));
    let mut g = Group::create(10, History::All, &ada, &[&bob]);
    g.run(
        11,
        &ada,
        vec![Op::RemoveMember(bob.record.user_id().clone())],
    );
    let after = document(&g, &ada.devices[0], "doc/after", b"new");
    let k1 = g.state.open_epoch_key(1, &bob.devices[0]).unwrap();
    assert_eq!(
        groups::open_group_grant(&after.2, &after.0, &g.state, &k1).unwrap_err(),
        Error::Decrypt
    );
}

#[test]
fn removed_device_cannot_open_document_created_after_removal() {
    let (ada, bob) = (user(1, "ada", 1), user(2, "bob", 2));
    let mut g = Group::create(20, History::All, &ada, &[&bob]);
    let lost = bob.devices[1].id().clone();
    let new_record = bob.record.without_device(&bob.identity, &lost).unwrap();
    assert_eq!(new_record.version(), 2);
    g.run(21, &ada, vec![Op::UpdateMember(new_record)]);
    assert_eq!(g.state.epoch(), 2, "removing a device starts an epoch");
    let after = document(&g, &ada.devices[0], "doc/after", b"new");
    let author = ada.devices[0].signing().public();
    assert_eq!(
        read(&g.state, &bob.devices[1], &after, &author).unwrap_err(),
        Error::Decrypt
    );
    // Bob's remaining device reads it.
    assert_eq!(
        read(&g.state, &bob.devices[0], &after, &author).unwrap(),
        b"new"
    );
}

#[test]
fn remaining_and_added_members_open_old_and_new_documents() {
    let (ada, bob, cy, dan) = (
        user(1, "ada", 1),
        user(2, "bob", 1),
        user(3, "cy", 2),
        user(4, "dan", 1),
    );
    let mut g = Group::create(30, History::All, &ada, &[&bob]);
    let author = ada.devices[0].signing().public();
    let e1 = document(&g, &ada.devices[0], "doc/e1", b"epoch one");
    g.run(
        31,
        &ada,
        vec![Op::RemoveMember(bob.record.user_id().clone())],
    );
    let e2 = document(&g, &ada.devices[0], "doc/e2", b"epoch two");
    // Adding a member under history: all shares the current key; no new epoch.
    g.run(32, &ada, vec![Op::AddMember(cy.record.clone())]);
    assert_eq!(g.state.epoch(), 2);
    let e2b = document(&g, &ada.devices[0], "doc/e2b", b"epoch two, later");
    g.run(33, &ada, vec![Op::Rotate]);
    g.run(34, &ada, vec![Op::AddMember(dan.record.clone())]);
    let e3 = document(&g, &ada.devices[0], "doc/e3", b"epoch three");
    for d in [
        &ada.devices[0],
        &cy.devices[0],
        &cy.devices[1],
        &dan.devices[0],
    ] {
        for (doc, want) in [
            (&e1, &b"epoch one"[..]),
            (&e2, b"epoch two"),
            (&e2b, b"epoch two, later"),
            (&e3, b"epoch three"),
        ] {
            assert_eq!(
                read(&g.state, d, doc, &author).unwrap(),
                want,
                "{:?}",
                d.id()
            );
        }
    }
    // A client verifying the whole log from scratch reaches the same state.
    let fresh = GroupState::from_log(&g.log, Some(&g.state.checkpoint())).unwrap();
    assert_eq!(fresh.head(), g.state.head());
    assert_eq!(
        read(&fresh, &dan.devices[0], &e1, &author).unwrap(),
        b"epoch one"
    );
}

#[test]
fn history_none_new_members_cannot_open_old_documents() {
    let (ada, bob, cy) = (user(1, "ada", 1), user(2, "bob", 1), user(3, "cy", 1));
    let mut g = Group::create(40, History::None, &ada, &[&bob]);
    let author = ada.devices[0].signing().public();
    let old = document(&g, &ada.devices[0], "doc/old", b"before cy");
    g.run(41, &ada, vec![Op::AddMember(cy.record.clone())]);
    assert_eq!(
        g.state.epoch(),
        2,
        "adding under history: none starts an epoch"
    );
    assert!(g.log[1].keys().unwrap().previous().is_none());
    let new = document(&g, &ada.devices[0], "doc/new", b"after cy");
    assert_eq!(
        read(&g.state, &cy.devices[0], &old, &author).unwrap_err(),
        Error::Decrypt
    );
    assert_eq!(
        read(&g.state, &cy.devices[0], &new, &author).unwrap(),
        b"after cy"
    );
    // Existing members keep reading both.
    assert_eq!(
        read(&g.state, &bob.devices[0], &old, &author).unwrap(),
        b"before cy"
    );
    assert_eq!(
        read(&g.state, &bob.devices[0], &new, &author).unwrap(),
        b"after cy"
    );
}

#[test]
fn entry_not_signed_by_admin_as_of_parent_is_rejected() {
    let (ada, bob, cy) = (user(1, "ada", 1), user(2, "bob", 1), user(3, "cy", 1));
    let mut g = Group::create(50, History::All, &ada, &[&bob, &cy]);
    // Bob is a member, not an admin.
    let p = g
        .state
        .propose(
            &mut rng(51),
            &bob.identity,
            vec![Op::RemoveMember(cy.record.user_id().clone())],
            Some(&g.key),
        )
        .unwrap();
    assert_eq!(
        g.state.clone().apply(&p.entry).unwrap_err(),
        Error::NotAdmin
    );
    // An outsider neither.
    let eve = user(9, "eve", 1);
    let p = g
        .state
        .propose(&mut rng(52), &eve.identity, vec![Op::Rotate], Some(&g.key))
        .unwrap();
    assert_eq!(
        g.state.clone().apply(&p.entry).unwrap_err(),
        Error::NotAdmin
    );
    // Bob made admin, then demoted: his later entry is rejected (admin as of the parent).
    g.run(53, &ada, vec![Op::AddAdmin(bob.record.user_id().clone())]);
    let ok = g
        .state
        .propose(&mut rng(54), &bob.identity, vec![Op::Rotate], Some(&g.key))
        .unwrap();
    assert!(g.state.clone().apply(&ok.entry).is_ok());
    g.run(
        55,
        &ada,
        vec![Op::RemoveAdmin(bob.record.user_id().clone())],
    );
    let late = g
        .state
        .propose(&mut rng(56), &bob.identity, vec![Op::Rotate], Some(&g.key))
        .unwrap();
    assert_eq!(
        g.state.clone().apply(&late.entry).unwrap_err(),
        Error::NotAdmin
    );
    // Invalid operations: the last admin cannot leave; a non-member cannot be removed.
    assert_eq!(
        g.state
            .propose(
                &mut rng(57),
                &ada.identity,
                vec![Op::RemoveAdmin(ada.record.user_id().clone())],
                Some(&g.key)
            )
            .unwrap_err(),
        Error::InvalidGroupOp
    );
    assert_eq!(
        g.state
            .propose(
                &mut rng(58),
                &ada.identity,
                vec![Op::RemoveMember(UserId::new("nobody").unwrap())],
                Some(&g.key)
            )
            .unwrap_err(),
        Error::InvalidGroupOp
    );
}

fn long_log() -> (Group, User, User) {
    let (ada, bob, cy) = (user(1, "ada", 1), user(2, "bob", 1), user(3, "cy", 1));
    let mut g = Group::create(60, History::All, &ada, &[&bob]);
    g.run(61, &ada, vec![Op::AddMember(cy.record.clone())]);
    g.run(62, &ada, vec![Op::Rotate]);
    g.run(
        63,
        &ada,
        vec![Op::RemoveMember(bob.record.user_id().clone())],
    );
    (g, bob, cy)
}

#[test]
fn dropped_entry_is_detected() {
    let (g, _, _) = long_log();
    for i in 1..g.log.len() - 1 {
        let mut log = g.log.clone();
        log.remove(i);
        assert_eq!(
            GroupState::from_log(&log, None).unwrap_err(),
            Error::LogChain,
            "dropped {i}"
        );
    }
    // Dropping genesis too.
    assert_eq!(
        GroupState::from_log(&g.log[1..], None).unwrap_err(),
        Error::LogChain
    );
}

#[test]
fn reordered_entries_are_detected() {
    let (g, _, _) = long_log();
    let mut log = g.log.clone();
    log.swap(1, 2);
    assert_eq!(
        GroupState::from_log(&log, None).unwrap_err(),
        Error::LogChain
    );
    let mut log = g.log.clone();
    log.swap(2, 3);
    assert_eq!(
        GroupState::from_log(&log, None).unwrap_err(),
        Error::LogChain
    );
}

#[test]
fn withheld_tail_hiding_a_removal_is_detected_against_checkpoint() {
    let (g, bob, _) = long_log();
    // The client verified the full log (with bob's removal) and persisted the checkpoint.
    let cp = Checkpoint::parse(&g.state.checkpoint().to_bytes()).unwrap();
    assert_eq!(cp, g.state.checkpoint());
    // A server withholds the last entry: the shorter log is valid on its own and still
    // lists bob as a member...
    let short = &g.log[..g.log.len() - 1];
    let s = GroupState::from_log(short, None).unwrap();
    assert!(s.member(bob.record.user_id()).is_some());
    // ...but not against the checkpoint.
    assert_eq!(
        GroupState::from_log(short, Some(&cp)).unwrap_err(),
        Error::Rollback
    );
    assert_eq!(s.check_checkpoint(&cp).unwrap_err(), Error::Rollback);
    // The full log passes.
    GroupState::from_log(&g.log, Some(&cp)).unwrap();
}

#[test]
fn fork_is_detected() {
    let (ada, bob, cy) = (user(1, "ada", 1), user(2, "bob", 1), user(3, "cy", 1));
    let mut g = Group::create(70, History::All, &ada, &[&bob, &cy]);
    g.run(71, &ada, vec![Op::AddAdmin(bob.record.user_id().clone())]);
    let at_parent = g.state.clone();
    // Two admins each sign a valid child of the same parent.
    let a = at_parent
        .propose(
            &mut rng(72),
            &ada.identity,
            vec![Op::RemoveMember(cy.record.user_id().clone())],
            Some(&g.key),
        )
        .unwrap();
    let b = at_parent
        .propose(&mut rng(73), &bob.identity, vec![Op::Rotate], Some(&g.key))
        .unwrap();
    assert_eq!(a.entry.parent(), b.entry.parent());
    assert_eq!(
        detect_fork(&at_parent, &a.entry, &b.entry).unwrap_err(),
        Error::Fork
    );
    // The same entry twice is not a fork; nor is a valid entry next to an invalid one.
    detect_fork(&at_parent, &a.entry, &a.entry).unwrap();
    let eve = user(9, "eve", 1);
    let bad = at_parent
        .propose(&mut rng(74), &eve.identity, vec![Op::Rotate], Some(&g.key))
        .unwrap();
    detect_fork(&at_parent, &a.entry, &bad.entry).unwrap();
    // A client that checkpointed after branch a sees branch b as a fork.
    let mut sa = at_parent.clone();
    sa.apply(&a.entry).unwrap();
    let mut sb = at_parent.clone();
    sb.apply(&b.entry).unwrap();
    assert_eq!(
        sb.check_checkpoint(&sa.checkpoint()).unwrap_err(),
        Error::Fork
    );
}

#[test]
fn substituted_device_key_is_detected() {
    let bob = user(2, "bob", 2);
    let mallory_device = DeviceKeys::generate(&mut rng(66), bob.devices[0].id().clone());
    // 1. Replacing the device X25519 key inside the record breaks the signatures.
    let mut bytes = bob.record.to_bytes().to_vec();
    let cert0 = bob.record.devices()[0].to_bytes();
    let pos = bytes.windows(cert0.len()).position(|w| w == cert0).unwrap();
    let key_off = pos + cert0.len() - 128 - 64; // the X25519 key inside the certificate
    bytes[key_off..key_off + 32].copy_from_slice(&mallory_device.encryption().public().to_bytes());
    assert_eq!(UserRecord::parse(&bytes).unwrap_err(), Error::Signature);
    // 2. A certificate for a substituted device made by another identity key does not fit
    // the record (and a record by that identity is a changed key for a pinning client).
    let mallory = UserIdentity::generate(&mut rng(67), bob.record.user_id().clone());
    let forged = mallory.certify(&mallory_device).unwrap();
    assert_eq!(
        bob.record.check_device(&forged).unwrap_err(),
        Error::KeyChanged
    );
    let forged_record = mallory.sign_record(2, vec![forged]).unwrap();
    assert_eq!(
        bob.record.check_successor(&forged_record).unwrap_err(),
        Error::KeyChanged
    );
    let mut pins = PinStore::new();
    assert_eq!(
        pins.observe(bob.record.user_id(), bob.record.identity_key()),
        PinStatus::New
    );
    assert_eq!(
        pins.observe(bob.record.user_id(), bob.record.identity_key()),
        PinStatus::Match
    );
    let changed = pins.observe(forged_record.user_id(), forged_record.identity_key());
    assert_eq!(changed, PinStatus::Changed);
    assert_eq!(changed.into_result().unwrap_err(), Error::KeyChanged);
    // 3. In a group, an update with a different identity key is refused.
    let ada = user(1, "ada", 1);
    let g = Group::create(80, History::All, &ada, &[&bob]);
    assert_eq!(
        g.state
            .propose(
                &mut rng(81),
                &ada.identity,
                vec![Op::UpdateMember(forged_record)],
                Some(&g.key)
            )
            .unwrap_err(),
        Error::KeyChanged
    );
    // 4. A replayed older record is refused.
    let v2 = bob
        .record
        .without_device(&bob.identity, bob.devices[1].id())
        .unwrap();
    assert_eq!(
        v2.check_successor(&bob.record).unwrap_err(),
        Error::Rollback
    );
    // 5. A certificate proves possession of the device key: swapping the device signing key
    // breaks the binding signature.
    let mut c = cert0.to_vec();
    let sk_off = c.len() - 128 - 32;
    c[sk_off..sk_off + 32].copy_from_slice(&mallory_device.signing().public().to_bytes());
    assert!(DeviceCertificate::parse(&c).is_err());
}

#[test]
fn sealed_epoch_key_not_matching_signed_public_key_is_rejected() {
    let (ada, bob, cy) = (user(1, "ada", 1), user(2, "bob", 1), user(3, "cy", 1));
    let g = Group::create(90, History::All, &ada, &[&bob, &cy]);
    let p = g
        .state
        .__propose_mismatched_key(
            &mut rng(91),
            &ada.identity,
            vec![Op::RemoveMember(cy.record.user_id().clone())],
            Some(&g.key),
        )
        .unwrap();
    // The entry is well-formed and signed by an admin, so it applies...
    let mut s = g.state.clone();
    s.apply(&p.entry).unwrap();
    // ...but no member accepts the epoch key it carries.
    assert_eq!(
        s.open_epoch_key(2, &bob.devices[0]).unwrap_err(),
        Error::Decrypt
    );
    assert_eq!(
        s.open_epoch_key(2, &ada.devices[0]).unwrap_err(),
        Error::Decrypt
    );
    // A sealed key moved from another entry or epoch does not open either: splice epoch 2's
    // honest share for bob into a different entry position is prevented by the AAD, which
    // binds seq and parent; an honest entry still opens.
    let honest = g
        .state
        .propose(
            &mut rng(92),
            &ada.identity,
            vec![Op::RemoveMember(cy.record.user_id().clone())],
            Some(&g.key),
        )
        .unwrap();
    let mut s2 = g.state.clone();
    s2.apply(&honest.entry).unwrap();
    s2.open_epoch_key(2, &bob.devices[0]).unwrap();
}

#[test]
fn entry_proposed_against_a_stale_parent_does_not_apply() {
    // An entry signed against an older head (here: before another admin entry landed) no
    // longer fits; the admin must re-propose against the new head.
    let (ada, bob) = (user(1, "ada", 1), user(2, "bob", 1));
    let mut g = Group::create(95, History::All, &ada, &[&bob]);
    let p = g
        .state
        .propose(&mut rng(96), &ada.identity, vec![Op::Rotate], Some(&g.key))
        .unwrap();
    let keys_e2 = p.entry.keys().unwrap().clone();
    g.run(97, &ada, vec![Op::AddAdmin(bob.record.user_id().clone())]); // seq 1, no epoch
    // The honest entry no longer fits (parent moved).
    assert_eq!(
        g.state.clone().apply(&p.entry).unwrap_err(),
        Error::LogChain
    );
    assert_eq!(keys_e2.epoch(), 2);
}

#[test]
fn grant_and_revoke_leave_content_bytes_unchanged() {
    let (ada, bob) = (user(1, "ada", 1), user(2, "bob", 1));
    let g = Group::create(100, History::All, &ada, &[&bob]);
    let (header, file, group_grant) = document(&g, &ada.devices[0], "doc/x", &vec![7u8; 200_000]);
    let content_before = file.clone();
    let mut block = AccessBlock::new(&header);
    block.add(group_grant.clone()).unwrap();
    // Grant to bob's device directly, then revoke it, then revoke the group.
    let dek = groups::open_through_group(&group_grant, &header, &g.state, &ada.devices[0]).unwrap();
    let direct = Grant::create(
        &mut rng(101),
        &header,
        &dek,
        bob.devices[0].id(),
        bob.devices[0].encryption().public(),
        0,
        ada.devices[0].signing(),
    )
    .unwrap();
    block.add(direct).unwrap();
    let b1 = block.to_bytes().unwrap();
    assert_eq!(
        block.revoke(&bob.devices[0].encryption().public().fingerprint()),
        1
    );
    assert_eq!(
        block.revoke(&g.state.epoch_public_key(1).unwrap().fingerprint()),
        1
    );
    let b2 = block.to_bytes().unwrap();
    assert_ne!(b1, b2);
    // Header and every segment byte are unchanged.
    assert_eq!(file, content_before);
    assert_eq!(&file[..header.len()], header.to_bytes().as_slice());
    // Re-encryption (the cryptographic revoke) produces a new header and payload.
    let params = AttachmentParams {
        document: DocumentId::new("doc/x").unwrap(),
        group: Some(groups::binding(&g.state)),
    };
    let author = ada.devices[0].signing().public();
    let (new_dek, new_file) = groups::reencrypt(
        &mut rng(102),
        &file,
        &dek,
        &author,
        ada.devices[0].signing(),
        params,
    )
    .unwrap();
    assert!(!new_dek.ct_eq(&dek));
    assert_ne!(new_file[..64], file[..64]);
    let hlen = AttachmentHeader::encoded_len(&new_file[..HEADER_PREFIX_LEN]).unwrap();
    let nh = AttachmentHeader::parse(&new_file[..hlen]).unwrap();
    let mut dec = StreamDecryptor::new(&nh, &new_dek, &author).unwrap();
    let mut out = Vec::new();
    dec.push(&new_file[hlen..], &mut out).unwrap();
    dec.finish(&mut out).unwrap();
    assert_eq!(out, vec![7u8; 200_000]);
    assert!(StreamDecryptor::new(&nh, &dek, &author).is_err());
}

#[test]
fn escrow_round_trip_recovery_code_and_passphrase() {
    let ada = UserIdentity::generate(&mut rng(1), UserId::new("ada").unwrap());
    let code = RecoveryCode::generate(&mut rng(2));
    let rendered = code.render();
    assert_eq!(rendered.len(), 34);
    let e = EscrowedIdentity::seal(&mut rng(3), &ada, EscrowSecret::Code(&code)).unwrap();
    let bytes = e.to_bytes().unwrap();
    let parsed = EscrowedIdentity::parse(&bytes).unwrap();
    assert!(parsed.is_recovery_code());
    // The code typed back in lower case with spaces instead of dashes.
    let typed = rendered.to_lowercase().replace('-', " ");
    let back = RecoveryCode::parse(&typed).unwrap();
    let id = parsed.open(EscrowSecret::Code(&back)).unwrap();
    assert_eq!(id.public(), ada.public());
    assert_eq!(id.user_id(), ada.user_id());
    // The recovered identity certifies a fresh device that verifies under the old key.
    let fresh = DeviceKeys::generate(&mut rng(4), RecipientId::new("ada/new-browser").unwrap());
    let cert = id.certify(&fresh).unwrap();
    assert_eq!(cert.identity_key(), &ada.public());
    // Passphrase (opt-in).
    let e = EscrowedIdentity::seal(&mut rng(5), &ada, EscrowSecret::Passphrase("tr0ub4dor & 3"))
        .unwrap();
    let parsed = EscrowedIdentity::parse(&e.to_bytes().unwrap()).unwrap();
    assert!(!parsed.is_recovery_code());
    assert_eq!(
        parsed
            .open(EscrowSecret::Passphrase("tr0ub4dor & 3"))
            .unwrap()
            .public(),
        ada.public()
    );
    assert_eq!(
        parsed
            .open(EscrowSecret::Passphrase("tr0ub4dor & 4"))
            .unwrap_err(),
        Error::Decrypt
    );
    assert_eq!(
        parsed.open(EscrowSecret::Code(&back)).unwrap_err(),
        Error::Decrypt
    );
}

#[test]
fn escrow_wrong_code_fails() {
    let ada = UserIdentity::generate(&mut rng(1), UserId::new("ada").unwrap());
    let code = RecoveryCode::generate(&mut rng(2));
    let e = EscrowedIdentity::seal(&mut rng(3), &ada, EscrowSecret::Code(&code)).unwrap();
    let other = RecoveryCode::generate(&mut rng(4));
    assert_eq!(
        e.open(EscrowSecret::Code(&other)).unwrap_err(),
        Error::Decrypt
    );
    // A typo is caught by the check characters before any Argon2 work.
    let mut typo: Vec<char> = code.render().chars().collect();
    typo[0] = if typo[0] == 'A' { 'B' } else { 'A' };
    let typo: String = typo.into_iter().collect();
    assert!(RecoveryCode::parse(&typo).is_err());
    assert!(RecoveryCode::parse("").is_err());
    assert!(RecoveryCode::parse(&format!("{}0", code.render().as_str())).is_err());
    assert!(RecoveryCode::parse("U").is_err());
}

#[test]
fn escrow_floor_enforced_on_read() {
    let ada = UserIdentity::generate(&mut rng(1), UserId::new("ada").unwrap());
    let code = RecoveryCode::generate(&mut rng(2));
    let weak = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
    let e =
        EscrowedIdentity::__seal_weak_for_tests(&mut rng(3), &ada, EscrowSecret::Code(&code), weak)
            .unwrap();
    // Opens in memory, but its bytes never parse.
    assert_eq!(
        e.open(EscrowSecret::Code(&code)).unwrap().public(),
        ada.public()
    );
    let bytes = e.to_bytes().unwrap();
    assert_eq!(
        EscrowedIdentity::parse(&bytes).unwrap_err(),
        Error::Format(FormatError::InvalidValue)
    );
    // Lowering the parameters of a strong blob is refused on read, too.
    let strong = EscrowedIdentity::seal(&mut rng(3), &ada, EscrowSecret::Code(&code))
        .unwrap()
        .to_bytes()
        .unwrap();
    for (m, t, p) in [
        (65535u32, 3u32, 1u32),
        (65536, 2, 1),
        (65536, 3, 0),
        (1024 * 1024 + 1, 3, 1),
    ] {
        let mut b = strong.clone();
        b[6..10].copy_from_slice(&m.to_be_bytes());
        b[10..14].copy_from_slice(&t.to_be_bytes());
        b[14..18].copy_from_slice(&p.to_be_bytes());
        assert_eq!(
            EscrowedIdentity::parse(&b).unwrap_err(),
            Error::Format(FormatError::InvalidValue)
        );
    }
    // The header is bound: a changed user id byte parses and fails to open.
    let mut b = strong.clone();
    let uid = 4 + 2 + 12 + 16 + 2;
    b[uid] ^= 0x20; // 'a' -> 'A'
    let p = EscrowedIdentity::parse(&b).unwrap();
    assert_eq!(
        p.open(EscrowSecret::Code(&code)).unwrap_err(),
        Error::Decrypt
    );
    // Every truncation and trailing bytes are errors.
    for n in 0..strong.len() {
        assert!(EscrowedIdentity::parse(&strong[..n]).is_err());
    }
    let mut t = strong.clone();
    t.push(0);
    assert_eq!(
        EscrowedIdentity::parse(&t).unwrap_err(),
        Error::Format(FormatError::TrailingBytes)
    );
}

#[test]
fn safety_code_symmetric_and_changes_with_a_key() {
    let (a, b) = (user(1, "ada", 1), user(2, "bob", 1));
    let ab = safety_code(
        a.record.user_id(),
        &a.identity.public(),
        b.record.user_id(),
        &b.identity.public(),
    )
    .unwrap();
    let ba = safety_code(
        b.record.user_id(),
        &b.identity.public(),
        a.record.user_id(),
        &a.identity.public(),
    )
    .unwrap();
    assert_eq!(ab, ba);
    assert_eq!(ab.len(), 60 + 11);
    assert!(
        ab.split(' ')
            .all(|g| g.len() == 5 && g.bytes().all(|c| c.is_ascii_digit()))
    );
    let b2 = UserIdentity::generate(&mut rng(22), UserId::new("bob").unwrap());
    let changed = safety_code(
        a.record.user_id(),
        &a.identity.public(),
        b2.user_id(),
        &b2.public(),
    )
    .unwrap();
    assert_ne!(ab, changed);
    // The user id is bound too.
    let renamed = safety_code(
        a.record.user_id(),
        &a.identity.public(),
        &UserId::new("bobby").unwrap(),
        &b.identity.public(),
    )
    .unwrap();
    assert_ne!(ab, renamed);
}

#[test]
fn parsers_reject_truncation_trailing_bytes_and_never_panic() {
    let (ada, bob) = (user(1, "ada", 1), user(2, "bob", 2));
    let mut g = Group::create(110, History::All, &ada, &[&bob]);
    g.run(
        111,
        &ada,
        vec![Op::RemoveMember(bob.record.user_id().clone())],
    );
    let cert = bob.record.devices()[0].to_bytes().to_vec();
    let rec = bob.record.to_bytes().to_vec();
    let entry = g.log[1].to_bytes().to_vec();
    let genesis = g.log[0].to_bytes().to_vec();
    let cp = g.state.checkpoint().to_bytes().to_vec();
    type P = fn(&[u8]) -> bool;
    let cases: [(&[u8], P); 5] = [
        (&cert, |b| DeviceCertificate::parse(b).is_ok()),
        (&rec, |b| UserRecord::parse(b).is_ok()),
        (&entry, |b| LogEntry::parse(b).is_ok()),
        (&genesis, |b| LogEntry::parse(b).is_ok()),
        (&cp, |b| Checkpoint::parse(b).is_ok()),
    ];
    let mut r = rng(5);
    for (bytes, ok) in cases {
        assert!(ok(bytes));
        for n in 0..bytes.len() {
            assert!(!ok(&bytes[..n]), "truncated to {n}");
        }
        let mut t = bytes.to_vec();
        t.push(0);
        assert!(!ok(&t));
        let mut v = bytes.to_vec();
        v[3] = 2;
        assert!(!ok(&v), "unknown version");
        // Random single-byte changes: never a panic.
        for _ in 0..300 {
            let mut c = bytes.to_vec();
            let i = (r.next_u32() as usize) % c.len();
            c[i] ^= 1 << (r.next_u32() % 8);
            let _ = ok(&c);
        }
    }
    // The entry's prefix is the fixed one the server parses.
    assert_eq!(&entry[..4], b"KSL\x01");
    assert_eq!(&entry[4..6], &[0, 4]);
    assert_eq!(&entry[6..10], b"team");
    assert_eq!(&entry[10..18], &1u64.to_be_bytes());
    assert_eq!(&entry[18..50], &g.log[0].hash());
    let e = LogEntry::parse(&entry).unwrap();
    assert_eq!(e.hash(), keystead_core::__private::sha256(&[&entry]));
    assert_eq!(e.seq(), 1);
    assert_eq!(e.group_id().as_str(), "team");
    assert_eq!(e.signer(), ada.identity.public());
}

#[test]
fn added_device_of_a_member_gets_the_current_key_or_a_new_epoch() {
    let (ada, bob) = (user(1, "ada", 1), user(2, "bob", 1));
    let author = ada.devices[0].signing().public();
    let laptop = DeviceKeys::generate(&mut rng(120), RecipientId::new("bob/laptop").unwrap());
    let with_laptop = bob
        .record
        .with_device(&bob.identity, bob.identity.certify(&laptop).unwrap())
        .unwrap();
    // history: all — the current key is shared with the new device; it reads old documents.
    let mut g = Group::create(121, History::All, &ada, &[&bob]);
    let old = document(&g, &ada.devices[0], "doc/old", b"old");
    g.run(122, &ada, vec![Op::UpdateMember(with_laptop.clone())]);
    assert_eq!(g.state.epoch(), 1);
    assert_eq!(read(&g.state, &laptop, &old, &author).unwrap(), b"old");
    // history: none — a new epoch; the new device does not read old documents.
    let mut g = Group::create(123, History::None, &ada, &[&bob]);
    let old = document(&g, &ada.devices[0], "doc/old", b"old");
    g.run(124, &ada, vec![Op::UpdateMember(with_laptop)]);
    assert_eq!(g.state.epoch(), 2);
    assert_eq!(
        read(&g.state, &laptop, &old, &author).unwrap_err(),
        Error::Decrypt
    );
    let new = document(&g, &ada.devices[0], "doc/new", b"new");
    assert_eq!(read(&g.state, &laptop, &new, &author).unwrap(), b"new");
    // An entry that adds no device and removes nothing carries no key material.
    let p = g
        .state
        .propose(
            &mut rng(125),
            &ada.identity,
            vec![Op::AddAdmin(bob.record.user_id().clone())],
            Some(&g.key),
        )
        .unwrap();
    assert!(p.entry.keys().is_none());
}

#[test]
fn every_bit_flip_of_a_signed_group_format_is_rejected() {
    // A server relays entries, records and certificates but cannot change a bit of them.
    let (ada, bob) = (user(1, "ada", 1), user(2, "bob", 2));
    let mut g = Group::create(130, History::All, &ada, &[&bob]);
    g.run(
        131,
        &ada,
        vec![Op::RemoveMember(bob.record.user_id().clone())],
    );
    let cert = bob.record.devices()[0].to_bytes().to_vec();
    let rec = bob.record.to_bytes().to_vec();
    let entry = g.log[1].to_bytes().to_vec();
    common::for_each_bit_flip(&cert, |i, b| {
        assert!(DeviceCertificate::parse(b).is_err(), "certificate bit {i}");
    });
    common::for_each_bit_flip(&rec, |i, b| {
        assert!(UserRecord::parse(b).is_err(), "record bit {i}");
    });
    common::for_each_bit_flip(&entry, |i, b| {
        assert!(LogEntry::parse(b).is_err(), "entry bit {i}");
    });
}

#[test]
fn group_grant_requires_a_binding_to_the_verified_log() {
    let (ada, bob) = (user(1, "ada", 1), user(2, "bob", 1));
    let mut g = Group::create(140, History::All, &ada, &[&bob]);
    let doc = document(&g, &ada.devices[0], "doc/1", b"x");
    let key = g.state.open_epoch_key(1, &bob.devices[0]).unwrap();
    groups::open_group_grant(&doc.2, &doc.0, &g.state, &key).unwrap();
    // A client whose verified log does not contain the document's head (another group's
    // state, here: a different genesis) refuses it.
    let other = Group::create(141, History::All, &ada, &[&bob]);
    assert_ne!(other.state.head(), g.state.head());
    assert_eq!(
        groups::open_through_group(&doc.2, &doc.0, &other.state, &bob.devices[0]).unwrap_err(),
        Error::Decrypt
    );
    // An epoch key of another epoch is refused before any decryption.
    g.run(142, &ada, vec![Op::Rotate]);
    let k2 = g.state.open_epoch_key(2, &bob.devices[0]).unwrap();
    assert_eq!(
        groups::open_group_grant(&doc.2, &doc.0, &g.state, &k2).unwrap_err(),
        Error::Decrypt
    );
    // A header without a group binding is not a group document.
    let mut r = rng(143);
    let dek = Dek::generate(&mut r);
    let params = AttachmentParams {
        document: DocumentId::new("doc/2").unwrap(),
        group: None,
    };
    let (_enc, header) =
        StreamEncryptor::new(&mut r, &dek, ada.devices[0].signing(), params).unwrap();
    assert_eq!(
        groups::grant_to_group(&mut r, &header, &dek, &g.state, ada.devices[0].signing())
            .unwrap_err(),
        Error::Decrypt
    );
}
