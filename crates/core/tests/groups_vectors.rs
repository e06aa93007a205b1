//! Frozen vectors of the group formats: `tests/vectors/{device_cert,user_record,escrow,
//! group_log}/*.json` at the repository root.
//!
//! `frozen_group_vectors` globs each directory, so a new file is a new case. Each vector
//! holds all inputs (seeds and secrets), the randomness the writer drew (`rng`, hex) and the
//! expected bytes. The check parses and verifies the bytes, opens what the inputs can open,
//! and rebuilds the output from the inputs with the recorded randomness: any change to a
//! format, a signature input, a derivation or the order of random draws fails here.
//!
//! `generate_group_vectors` (ignored) rewrites the files: run it only for a new format
//! version, never to make a failing check pass.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod common;

use std::path::PathBuf;

use common::{RecordingRng, ReplayRng};
use keystead_core::device::DeviceKeys;
use keystead_core::groups::{
    Checkpoint, DeviceCertificate, EscrowSecret, EscrowedIdentity, GroupState, History, LogEntry,
    Op, RecoveryCode, UserIdentity, UserRecord,
};
use keystead_core::{EncryptionKeyPair, GroupId, RecipientId, SigningKeyPair, UserId};
use serde_json::{Value, json};

const DIRS: &[&str] = &["device_cert", "user_record", "escrow", "group_log"];

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn h(v: &Value, k: &str) -> Vec<u8> {
    hex::decode(
        v[k].as_str()
            .unwrap_or_else(|| panic!("missing hex field {k}")),
    )
    .unwrap()
}
fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("missing string field {k}"))
}
fn arr32(b: Vec<u8>) -> [u8; 32] {
    b.try_into().expect("32 bytes")
}

fn identity(v: &Value) -> UserIdentity {
    UserIdentity::from_seed(
        UserId::new(s(v, "user")).unwrap(),
        &arr32(h(v, "identity_seed")),
    )
}

fn devices(v: &Value) -> Vec<DeviceKeys> {
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            DeviceKeys::from_parts(
                RecipientId::new(s(d, "id")).unwrap(),
                EncryptionKeyPair::from_secret_bytes(&arr32(h(d, "encryption_secret"))),
                SigningKeyPair::from_secret_bytes(&arr32(h(d, "signing_seed"))),
            )
        })
        .collect()
}

fn record(v: &Value) -> UserRecord {
    let id = identity(v);
    let certs = devices(v).iter().map(|d| id.certify(d).unwrap()).collect();
    id.sign_record(v["version"].as_u64().unwrap(), certs)
        .unwrap()
}

fn history(v: &Value) -> History {
    match s(v, "history") {
        "all" => History::All,
        "none" => History::None,
        other => panic!("history {other}"),
    }
}

/// Builds the output of one vector from its input, drawing randomness from `rng`.
fn build(format: &str, i: &Value, rng: &mut impl rand_core::CryptoRng) -> Value {
    match format {
        "device-cert" => {
            let id = identity(i);
            let d = &devices(i)[0];
            let cert = id.certify(d).unwrap();
            json!({
                "certificate": hex::encode(cert.to_bytes()),
                "identity_fingerprint": hex::encode(id.fingerprint()),
            })
        }
        "user-record" => {
            let rec = record(i);
            json!({ "record": hex::encode(rec.to_bytes()) })
        }
        "escrow" => {
            let id = identity(i);
            let e = match s(i, "kind") {
                "code" => {
                    let code = RecoveryCode::parse(s(i, "recovery_code")).unwrap();
                    EscrowedIdentity::seal(rng, &id, EscrowSecret::Code(&code)).unwrap()
                }
                _ => EscrowedIdentity::seal(rng, &id, EscrowSecret::Passphrase(s(i, "passphrase")))
                    .unwrap(),
            };
            json!({ "escrow": hex::encode(e.to_bytes().unwrap()) })
        }
        "group-log" => {
            let members: Vec<&Value> = i["members"].as_array().unwrap().iter().collect();
            let ids: Vec<UserIdentity> = members.iter().map(|m| identity(m)).collect();
            let records: Vec<UserRecord> = members.iter().map(|m| record(m)).collect();
            let initial = i["initial"].as_u64().unwrap() as usize;
            let p = GroupState::create(
                rng,
                GroupId::new(s(i, "group")).unwrap(),
                history(i),
                &ids[0],
                records[..initial].to_vec(),
            )
            .unwrap();
            let mut state = GroupState::genesis(&p.entry).unwrap();
            let mut key = p.new_epoch_key.unwrap();
            let mut entries = vec![hex::encode(p.entry.to_bytes())];
            for step in i["steps"].as_array().unwrap() {
                let who = step[1].as_u64().unwrap() as usize;
                let op = match step[0].as_str().unwrap() {
                    "add" => Op::AddMember(records[who].clone()),
                    "remove" => Op::RemoveMember(records[who].user_id().clone()),
                    "add-admin" => Op::AddAdmin(records[who].user_id().clone()),
                    "rotate" => Op::Rotate,
                    other => panic!("op {other}"),
                };
                let p = state.propose(rng, &ids[0], vec![op], Some(&key)).unwrap();
                state.apply(&p.entry).unwrap();
                if let Some(k) = p.new_epoch_key {
                    key = k;
                }
                entries.push(hex::encode(p.entry.to_bytes()));
            }
            json!({
                "entries": entries,
                "epoch": state.epoch(),
                "checkpoint": hex::encode(state.checkpoint().to_bytes()),
            })
        }
        other => panic!("unknown format {other}"),
    }
}

/// Checks that the output's bytes parse, verify and open with the inputs.
fn check(format: &str, i: &Value, o: &Value) {
    match format {
        "device-cert" => {
            let c = DeviceCertificate::parse(&h(o, "certificate")).unwrap();
            assert_eq!(
                c.identity_key().fingerprint().to_vec(),
                h(o, "identity_fingerprint")
            );
            assert_eq!(c.encryption_key(), devices(i)[0].encryption().public());
        }
        "user-record" => {
            let r = UserRecord::parse(&h(o, "record")).unwrap();
            assert_eq!(r.devices().len(), devices(i).len());
            assert_eq!(r.version(), i["version"].as_u64().unwrap());
        }
        "escrow" => {
            let e = EscrowedIdentity::parse(&h(o, "escrow")).unwrap();
            let id = match s(i, "kind") {
                "code" => {
                    let code = RecoveryCode::parse(s(i, "recovery_code")).unwrap();
                    assert_eq!(*code.render(), s(i, "recovery_code"));
                    e.open(EscrowSecret::Code(&code)).unwrap()
                }
                _ => e
                    .open(EscrowSecret::Passphrase(s(i, "passphrase")))
                    .unwrap(),
            };
            assert_eq!(id.public(), identity(i).public());
        }
        "group-log" => {
            let entries: Vec<LogEntry> = o["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| LogEntry::parse(&hex::decode(e.as_str().unwrap()).unwrap()).unwrap())
                .collect();
            let cp = Checkpoint::parse(&h(o, "checkpoint")).unwrap();
            let state = GroupState::from_log(&entries, Some(&cp)).unwrap();
            assert_eq!(state.epoch(), o["epoch"].as_u64().unwrap());
            // Every current member device opens the current epoch key.
            for m in i["members"].as_array().unwrap() {
                let user = UserId::new(s(m, "user")).unwrap();
                if state.member(&user).is_some() {
                    for d in devices(m) {
                        state.open_epoch_key(state.epoch(), &d).unwrap();
                    }
                }
            }
        }
        other => panic!("unknown format {other}"),
    }
}

#[test]
fn frozen_group_vectors() {
    let mut count = 0;
    for dir in DIRS {
        let path = vectors_dir().join(dir);
        let mut files: Vec<_> = std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        assert!(!files.is_empty(), "no vectors in {}", path.display());
        for file in files {
            let v: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            let name = file.display().to_string();
            let format = s(&v, "format");
            let result = std::panic::catch_unwind(|| {
                check(format, &v["input"], &v["output"]);
                let mut replay = ReplayRng::new(h(&v, "rng"));
                let rebuilt = build(format, &v["input"], &mut replay);
                assert!(replay.exhausted(), "not all recorded randomness was used");
                assert_eq!(rebuilt, v["output"], "regenerated bytes differ");
            });
            if let Err(e) = result {
                panic!("vector {name} failed: {e:?}");
            }
            count += 1;
        }
    }
    println!("{count} frozen group vectors checked");
}

// ---- generator --------------------------------------------------------------------------------

fn hex32(seed: u8) -> String {
    hex::encode((0..32u8).map(|i| seed.wrapping_add(i)).collect::<Vec<u8>>())
}

fn member(name: &str, seed: u8, n_devices: u8) -> Value {
    let devices: Vec<Value> = (0..n_devices)
        .map(|k| {
            json!({
                // A 256-byte user id gets a 256-byte device id (the longest allowed).
                "id": if name.len() > 200 { "d".repeat(256) } else { format!("{name}/device-{k}") },
                "encryption_secret": hex32(seed.wrapping_add(0x40 + k)),
                "signing_seed": hex32(seed.wrapping_add(0x80 + k)),
            })
        })
        .collect();
    json!({ "user": name, "identity_seed": hex32(seed), "version": 1, "devices": devices })
}

#[test]
#[ignore = "rewrites tests/vectors: run only when adding a format version"]
fn generate_group_vectors() {
    let ada = member("ada", 0x10, 1);
    let bob = member("bob", 0x20, 2);
    let cy = member("cy", 0x30, 1);
    let long = member(&"u".repeat(256), 0x50, 1);
    let mut code_rng = RecordingRng::new(7);
    let code = RecoveryCode::generate(&mut code_rng);
    let cases: Vec<(&str, &str, &str, Value)> = vec![
        ("device_cert", "basic", "device-cert", ada.clone()),
        ("device_cert", "long-ids", "device-cert", long.clone()),
        ("user_record", "one-device", "user-record", ada.clone()),
        ("user_record", "two-devices", "user-record", bob.clone()),
        (
            "escrow",
            "recovery-code",
            "escrow",
            json!({ "user": "ada", "identity_seed": hex32(0x10), "kind": "code",
                    "recovery_code": code.render().as_str() }),
        ),
        (
            "escrow",
            "passphrase",
            "escrow",
            json!({ "user": "ada", "identity_seed": hex32(0x10), "kind": "passphrase",
                    "passphrase": "correct horse battery staple" }),
        ),
        (
            "group_log",
            "history-all",
            "group-log",
            json!({ "group": "team-blue", "history": "all", "initial": 2,
                    "members": [ada, bob, cy],
                    "steps": [["add", 2], ["add-admin", 1], ["remove", 1], ["rotate", 0]] }),
        ),
        (
            "group_log",
            "history-none",
            "group-log",
            json!({ "group": "team-red", "history": "none", "initial": 2,
                    "members": [member("ada", 0x10, 1), member("bob", 0x20, 2), member("cy", 0x30, 1)],
                    "steps": [["add", 2], ["remove", 1]] }),
        ),
    ];
    for (dir, name, format, input) in cases {
        let mut r = RecordingRng::new(0x6b73 + name.len() as u64);
        let output = build(format, &input, &mut r);
        let v = json!({
            "format": format,
            "description": format!("{dir}/{name}"),
            "input": input,
            "rng": hex::encode(r.take()),
            "output": output,
        });
        let path = vectors_dir().join(dir);
        std::fs::create_dir_all(&path).unwrap();
        let mut text = serde_json::to_string_pretty(&v).unwrap();
        text.push('\n');
        std::fs::write(path.join(format!("{name}.json")), text).unwrap();
    }
}
