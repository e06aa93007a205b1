//! Criterion benchmarks of groups (issue 8) with a 10 000-member group, one device each:
//! adding a member, removing a member (a new epoch sealed to 9 999 devices), and opening a
//! document through the group cold (verify the log from genesis, open the epoch key, open
//! the grant) and warm (state and epoch key cached: open the grant only).
//!
//! Documents never enter adding or removing: a document binds to an epoch, and membership
//! changes touch only the log. The figures are therefore the same with 0 or 10 000
//! documents (the functions do not take documents as input).
//!
//! Run with `cargo bench -p keystead-core --bench groups` (slow: see docs/BENCHMARKS.md).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use rand_core::SeedableRng;

use keystead_core::device::DeviceKeys;
use keystead_core::groups::{self, GroupState, History, LogEntry, Op, UserIdentity, UserRecord};
use keystead_core::stream::{AttachmentParams, StreamEncryptor};
use keystead_core::{Dek, DocumentId, GroupId, RecipientId, UserId};

const MEMBERS: usize = 10_000;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn member(r: &mut ChaCha20Rng, i: usize) -> (UserIdentity, DeviceKeys, UserRecord) {
    let id = UserIdentity::generate(r, UserId::new(format!("user-{i}")).unwrap());
    let dev = DeviceKeys::generate(r, RecipientId::new(format!("user-{i}/d0")).unwrap());
    let cert = id.certify(&dev).unwrap();
    let rec = id.sign_record(1, vec![cert]).unwrap();
    (id, dev, rec)
}

fn bench_groups(c: &mut Criterion) {
    let mut r = rng(1);
    let members: Vec<_> = (0..MEMBERS).map(|i| member(&mut r, i)).collect();
    let (admin, admin_dev, _) = &members[0];
    let records: Vec<UserRecord> = members.iter().map(|m| m.2.clone()).collect();
    let p = GroupState::create(
        &mut r,
        GroupId::new("big-team").unwrap(),
        History::All,
        admin,
        records,
    )
    .unwrap();
    let genesis_bytes = p.entry.to_bytes().to_vec();
    let state = GroupState::genesis(&p.entry).unwrap();
    let key = p.new_epoch_key.unwrap();
    let (_, _, newcomer) = member(&mut r, MEMBERS);

    // One document shared through the group.
    let dek = Dek::generate(&mut r);
    let params = AttachmentParams {
        document: DocumentId::new("doc/1").unwrap(),
        group: Some(groups::binding(&state)),
    };
    let (mut enc, header) =
        StreamEncryptor::new(&mut r, &dek, admin_dev.signing(), params).unwrap();
    let mut file = header.to_bytes();
    enc.push(b"hello", &mut file).unwrap();
    enc.finish(&mut file).unwrap();
    let grant = groups::grant_to_group(&mut r, &header, &dek, &state, admin_dev.signing()).unwrap();
    let reader = &members[MEMBERS - 1].1;

    let mut g = c.benchmark_group("groups (10 000 members)");
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(5));

    g.bench_function("add one member (propose + apply)", |b| {
        b.iter_batched(
            || state.clone(),
            |mut s| {
                let p = s
                    .propose(
                        &mut rng(2),
                        admin,
                        vec![Op::AddMember(newcomer.clone())],
                        Some(&key),
                    )
                    .unwrap();
                s.apply(&p.entry).unwrap();
                black_box(s.seq())
            },
            BatchSize::LargeInput,
        );
    });

    let victim = members[1].2.user_id().clone();
    g.bench_function(
        "remove one member (new epoch to 9 999 devices; propose + apply)",
        |b| {
            b.iter_batched(
                || state.clone(),
                |mut s| {
                    let p = s
                        .propose(
                            &mut rng(3),
                            admin,
                            vec![Op::RemoveMember(victim.clone())],
                            Some(&key),
                        )
                        .unwrap();
                    s.apply(&p.entry).unwrap();
                    black_box(s.epoch())
                },
                BatchSize::LargeInput,
            );
        },
    );

    g.bench_function(
        "cold open (parse + verify log from genesis, open epoch key, open grant)",
        |b| {
            b.iter(|| {
                let entry = LogEntry::parse(&genesis_bytes).unwrap();
                let s = GroupState::from_log(&[entry], None).unwrap();
                let dek = groups::open_through_group(&grant, &header, &s, reader).unwrap();
                black_box(dek.expose_secret()[0])
            });
        },
    );

    let cached = state.open_epoch_key(1, reader).unwrap();
    g.bench_function("warm open (state and epoch key cached: open grant)", |b| {
        b.iter(|| {
            let dek = groups::open_group_grant(&grant, &header, &state, &cached).unwrap();
            black_box(dek.expose_secret()[0])
        });
    });
    g.finish();
    println!("genesis entry: {} bytes", genesis_bytes.len());
}

criterion_group!(benches, bench_groups);
criterion_main!(benches);
