//! Frozen test vectors: `tests/vectors/<format>/*.json` at the repository root.
//!
//! `frozen_vectors` globs every directory, so a new file is a new case. Each vector holds
//! all inputs (keys included), the exact randomness the writer drew (`rng`, hex) and the
//! expected bytes. The check parses the bytes, decrypts/opens them with the inputs,
//! re-serializes them, and regenerates them from the inputs with the recorded randomness:
//! any change to a format, a derivation or the order of random draws fails here.
//!
//! `generate_vectors` (ignored) rewrites the files: run it only for a new format version,
//! never to make a failing check pass.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::path::PathBuf;

use common::{RecordingRng, ReplayRng, pattern};
use keystead_core::attachment::{AttachmentHeader, GroupBinding};
use keystead_core::edek::{Edek, EdekHeader};
use keystead_core::envelope::{self, EdekPlacement, EncryptedDocument};
use keystead_core::grant::{AccessBlock, Grant};
use keystead_core::seal::{Purpose, SealedKey};
use keystead_core::search::{
    self, BlindIndexer, DerivationSecret, DerivedKey, DeterministicCipher, deterministic_secret_id,
};
use keystead_core::stream::{AttachmentParams, StreamDecryptor, StreamEncryptor};
use keystead_core::*;
use serde_json::{Value, json};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

const FORMAT_DIRS: &[&str] = &[
    "edek",
    "field",
    "document",
    "attachment",
    "sealed_key",
    "grant",
    "derive",
    "deterministic",
    "blind_index",
];

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
fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("missing number field {k}"))
}
fn arr32(b: Vec<u8>) -> [u8; 32] {
    b.try_into().expect("32 bytes")
}
fn search_purpose(name: &str) -> search::Purpose {
    search::Purpose::parse(name).unwrap_or_else(|| panic!("unknown search purpose {name}"))
}
/// The searchable-field key the inputs name: derived from `secret` for `tenant`,
/// `secret_id`, `path` and `purpose`.
fn derived_key(i: &Value, purpose: search::Purpose) -> DerivedKey {
    DerivedKey::derive(
        &DerivationSecret::from_bytes(arr32(h(i, "secret"))),
        &TenantId::new(s(i, "tenant")).unwrap(),
        &SecretId::new(s(i, "secret_id")).unwrap(),
        purpose,
        &FieldPath::new(s(i, "path")).unwrap(),
    )
}
fn purpose(name: &str) -> Purpose {
    match name {
        "edek" => Purpose::Edek,
        "grant" => Purpose::Grant,
        "group-key" => Purpose::GroupKey,
        other => panic!("unknown purpose {other}"),
    }
}

// ---- builders: the one place that turns inputs + rng into bytes (generator and check) ----

fn build(format: &str, i: &Value, rng: &mut impl rand_core::CryptoRng) -> Value {
    let tenant = || TenantId::new(s(i, "tenant")).unwrap();
    let config = || ConfigId::new(s(i, "config")).unwrap();
    let version = || KeyVersion(n(i, "key_version") as u32);
    let dek = || Dek::from_bytes(arr32(h(i, "dek")));
    match format {
        "edek-leased" => {
            let id = LeasedKeyId(h(i, "leased_key_id").try_into().unwrap());
            let leased = LeasedKey::from_bytes(id, arr32(h(i, "leased_key")));
            let e = Edek::wrap_leased(
                rng,
                tenant(),
                config(),
                version(),
                &leased,
                &h(i, "wrapped_leased_key"),
                &dek(),
            )
            .unwrap();
            json!({ "edek": hex::encode(e.to_bytes()) })
        }
        "edek-remote" => {
            let header = EdekHeader::remote(tenant(), config(), version());
            let (d, e) =
                Edek::seal_remote(header, &h(i, "kms_plaintext"), &h(i, "kms_ciphertext")).unwrap();
            json!({ "edek": hex::encode(e.to_bytes()), "dek": hex::encode(d.expose_secret()) })
        }
        "edek-asymmetric" => {
            let kp = EncryptionKeyPair::from_secret_bytes(&arr32(h(i, "tenant_secret_key")));
            let e = Edek::wrap_asymmetric(rng, tenant(), config(), version(), kp.public(), &dek())
                .unwrap();
            json!({ "edek": hex::encode(e.to_bytes()), "tenant_public_key": hex::encode(kp.public().to_bytes()) })
        }
        "field" => {
            let ct = envelope::encrypt_field(
                rng,
                &dek(),
                &tenant(),
                &DocumentId::new(s(i, "document")).unwrap(),
                &FieldPath::new(s(i, "path")).unwrap(),
                &h(i, "plaintext"),
            )
            .unwrap();
            json!({ "field": hex::encode(ct) })
        }
        "document" => {
            let placement = match s(i, "form") {
                "detached" => EdekPlacement::Detached,
                "attached" => EdekPlacement::Attached(Edek::parse(&h(i, "edek")).unwrap()),
                other => panic!("unknown form {other}"),
            };
            let fields: Vec<(FieldPath, Vec<u8>)> = i["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| (FieldPath::new(s(f, "path")).unwrap(), h(f, "plaintext")))
                .collect();
            let doc = EncryptedDocument::encrypt(
                rng,
                &dek(),
                tenant(),
                DocumentId::new(s(i, "document")).unwrap(),
                placement,
                fields.iter().map(|(p, v)| (p.clone(), v.as_slice())),
            )
            .unwrap();
            json!({ "document": hex::encode(doc.to_bytes().unwrap()) })
        }
        "attachment" => {
            let author = SigningKeyPair::from_secret_bytes(&arr32(h(i, "author_seed")));
            let group = (!i["group"].is_null()).then(|| GroupBinding {
                group: GroupId::new(s(&i["group"], "group")).unwrap(),
                epoch: n(&i["group"], "epoch"),
                head: arr32(h(&i["group"], "head")),
            });
            let params = AttachmentParams {
                document: DocumentId::new(s(i, "document")).unwrap(),
                group,
            };
            let (mut enc, header) = StreamEncryptor::new(rng, &dek(), &author, params).unwrap();
            let mut file = header.to_bytes();
            enc.push(&pattern(n(i, "plaintext_len") as usize), &mut file)
                .unwrap();
            enc.finish(&mut file).unwrap();
            json!({
                "file": hex::encode(&file),
                "header_len": header.len(),
                "header_hash": hex::encode(header.hash()),
                "author_public_key": hex::encode(author.public().to_bytes()),
            })
        }
        "sealed-key" => {
            let kp = EncryptionKeyPair::from_secret_bytes(&arr32(h(i, "recipient_secret_key")));
            let sk = SealedKey::seal(
                rng,
                purpose(s(i, "purpose")),
                &RecipientId::new(s(i, "recipient_id")).unwrap(),
                kp.public(),
                s(i, "object_id"),
                n(i, "epoch"),
                &h(i, "aad"),
                &arr32(h(i, "secret")),
            )
            .unwrap();
            json!({ "sealed_key": hex::encode(sk.to_bytes()), "recipient_public_key": hex::encode(kp.public().to_bytes()) })
        }
        "grant" => {
            let header = AttachmentHeader::parse(&h(i, "attachment_header")).unwrap();
            let kp = EncryptionKeyPair::from_secret_bytes(&arr32(h(i, "recipient_secret_key")));
            let granter = SigningKeyPair::from_secret_bytes(&arr32(h(i, "granter_seed")));
            let g = Grant::create(
                rng,
                &header,
                &dek(),
                &RecipientId::new(s(i, "recipient_id")).unwrap(),
                kp.public(),
                n(i, "epoch"),
                &granter,
            )
            .unwrap();
            let mut block = AccessBlock::new(&header);
            block.add(g.clone()).unwrap();
            json!({ "grant": hex::encode(g.to_bytes()), "access_block": hex::encode(block.to_bytes().unwrap()) })
        }
        "derive" => {
            let key = derived_key(i, search_purpose(s(i, "purpose")));
            json!({ "key": hex::encode(key.expose_secret()) })
        }
        "deterministic" => {
            let key = derived_key(i, search::Purpose::Deterministic);
            let cipher = DeterministicCipher::new(
                &key,
                &tenant(),
                &SecretId::new(s(i, "secret_id")).unwrap(),
                &FieldPath::new(s(i, "path")).unwrap(),
            )
            .unwrap();
            let ct = cipher.encrypt(&h(i, "plaintext")).unwrap();
            json!({ "key": hex::encode(key.expose_secret()), "encrypted": hex::encode(ct) })
        }
        "blind-index" => {
            let key = derived_key(i, search::Purpose::BlindIndex);
            let indexer = BlindIndexer::new(
                &key,
                &tenant(),
                &FieldPath::new(s(i, "path")).unwrap(),
                n(i, "length") as usize,
            )
            .unwrap();
            let index = indexer.compute(&h(i, "value")).unwrap();
            json!({ "key": hex::encode(key.expose_secret()), "index": hex::encode(index) })
        }
        other => panic!("unknown vector format {other}"),
    }
}

// ---- checks: parse the frozen bytes and open them with the inputs --------------------------

fn check_opens(format: &str, i: &Value, o: &Value) {
    let dek = || Dek::from_bytes(arr32(h(i, "dek")));
    match format {
        "edek-leased" => {
            let bytes = h(o, "edek");
            let e = Edek::parse(&bytes).unwrap();
            assert_eq!(e.to_bytes(), bytes);
            assert_eq!(e.tenant().as_str(), s(i, "tenant"));
            let id = LeasedKeyId(h(i, "leased_key_id").try_into().unwrap());
            let leased = LeasedKey::from_bytes(id, arr32(h(i, "leased_key")));
            assert!(e.unwrap_leased(&leased).unwrap().ct_eq(&dek()));
        }
        "edek-remote" => {
            let bytes = h(o, "edek");
            let e = Edek::parse(&bytes).unwrap();
            assert_eq!(e.to_bytes(), bytes);
            assert_eq!(e.kms_ciphertext().unwrap(), h(i, "kms_ciphertext"));
            let d = e.open_remote(&h(i, "kms_plaintext")).unwrap();
            assert_eq!(d.expose_secret().to_vec(), h(o, "dek"));
        }
        "edek-asymmetric" => {
            let bytes = h(o, "edek");
            let e = Edek::parse(&bytes).unwrap();
            assert_eq!(e.to_bytes(), bytes);
            let kp = EncryptionKeyPair::from_secret_bytes(&arr32(h(i, "tenant_secret_key")));
            assert!(e.unwrap_asymmetric(&kp).unwrap().ct_eq(&dek()));
        }
        "field" => {
            let pt = envelope::decrypt_field(
                &dek(),
                &TenantId::new(s(i, "tenant")).unwrap(),
                &DocumentId::new(s(i, "document")).unwrap(),
                &FieldPath::new(s(i, "path")).unwrap(),
                &h(o, "field"),
            )
            .unwrap();
            assert_eq!(pt.to_vec(), h(i, "plaintext"));
        }
        "document" => {
            let bytes = h(o, "document");
            let doc = EncryptedDocument::parse(&bytes).unwrap();
            assert_eq!(doc.to_bytes().unwrap(), bytes);
            let plain = doc.decrypt(&dek()).unwrap();
            let mut want: Vec<(String, Vec<u8>)> = i["fields"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| (s(f, "path").to_owned(), h(f, "plaintext")))
                .collect();
            want.sort();
            let got: Vec<(String, Vec<u8>)> = plain
                .iter()
                .map(|(p, v)| (p.as_str().to_owned(), v.to_vec()))
                .collect();
            assert_eq!(got, want);
        }
        "attachment" => {
            let file = h(o, "file");
            let hlen = n(o, "header_len") as usize;
            assert_eq!(AttachmentHeader::encoded_len(&file[..6]).unwrap(), hlen);
            let header = AttachmentHeader::parse(&file[..hlen]).unwrap();
            assert_eq!(header.hash().to_vec(), h(o, "header_hash"));
            let author = SigningPublicKey::from_bytes(&arr32(h(o, "author_public_key"))).unwrap();
            let mut dec = StreamDecryptor::new(&header, &dek(), &author).unwrap();
            let mut out = Vec::new();
            dec.push(&file[hlen..], &mut out).unwrap();
            dec.finish(&mut out).unwrap();
            assert_eq!(out, pattern(n(i, "plaintext_len") as usize));
        }
        "sealed-key" => {
            let bytes = h(o, "sealed_key");
            let sk = SealedKey::parse(&bytes).unwrap();
            assert_eq!(sk.to_bytes(), bytes);
            let kp = EncryptionKeyPair::from_secret_bytes(&arr32(h(i, "recipient_secret_key")));
            assert_eq!(sk.open(&kp, &h(i, "aad")).unwrap().to_vec(), h(i, "secret"));
        }
        "grant" => {
            let header = AttachmentHeader::parse(&h(i, "attachment_header")).unwrap();
            let kp = EncryptionKeyPair::from_secret_bytes(&arr32(h(i, "recipient_secret_key")));
            let g = Grant::parse(&h(o, "grant")).unwrap();
            assert_eq!(g.to_bytes(), h(o, "grant"));
            assert!(g.open(&header, &kp).unwrap().ct_eq(&dek()));
            let block = AccessBlock::parse(&h(o, "access_block")).unwrap();
            assert_eq!(block.to_bytes().unwrap(), h(o, "access_block"));
            let found = block.find(&kp.public().fingerprint()).unwrap();
            assert!(found.open(&header, &kp).unwrap().ct_eq(&dek()));
        }
        "derive" => {
            let purpose = search_purpose(s(i, "purpose"));
            let key = h(o, "key");
            assert_eq!(key.len(), purpose.key_len());
            let received = DerivedKey::from_bytes(purpose, &key).unwrap();
            assert_eq!(
                received.expose_secret(),
                derived_key(i, purpose).expose_secret()
            );
        }
        "deterministic" => {
            // Built from the key bytes alone, as a client SDK receives them.
            let key = DerivedKey::from_bytes(search::Purpose::Deterministic, &h(o, "key")).unwrap();
            let secret_id = SecretId::new(s(i, "secret_id")).unwrap();
            let cipher = DeterministicCipher::new(
                &key,
                &TenantId::new(s(i, "tenant")).unwrap(),
                &secret_id,
                &FieldPath::new(s(i, "path")).unwrap(),
            )
            .unwrap();
            let bytes = h(o, "encrypted");
            assert_eq!(deterministic_secret_id(&bytes).unwrap(), secret_id);
            assert_eq!(cipher.decrypt(&bytes).unwrap().to_vec(), h(i, "plaintext"));
            assert_eq!(cipher.encrypt(&h(i, "plaintext")).unwrap(), bytes);
        }
        "blind-index" => {
            let key = DerivedKey::from_bytes(search::Purpose::BlindIndex, &h(o, "key")).unwrap();
            let indexer = BlindIndexer::new(
                &key,
                &TenantId::new(s(i, "tenant")).unwrap(),
                &FieldPath::new(s(i, "path")).unwrap(),
                n(i, "length") as usize,
            )
            .unwrap();
            let index = h(o, "index");
            assert_eq!(index.len() as u64, n(i, "length"));
            assert_eq!(indexer.compute(&h(i, "value")).unwrap(), index);
        }
        other => panic!("unknown vector format {other}"),
    }
}

#[test]
fn frozen_vectors() {
    let mut count = 0;
    for dir in FORMAT_DIRS {
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
                check_opens(format, &v["input"], &v["output"]);
                let mut replay = ReplayRng::new(h(&v, "rng"));
                let regenerated = build(format, &v["input"], &mut replay);
                assert!(replay.exhausted(), "not all recorded randomness was used");
                assert_eq!(regenerated, v["output"], "regenerated bytes differ");
            });
            if let Err(e) = result {
                panic!("vector {name} failed: {e:?}");
            }
            count += 1;
        }
    }
    println!("{count} frozen vectors checked");
}

// ---- generator --------------------------------------------------------------------------------

fn hex32(seed: u8) -> String {
    hex::encode(
        [seed; 32]
            .iter()
            .enumerate()
            .map(|(i, b)| b.wrapping_add(i as u8))
            .collect::<Vec<u8>>(),
    )
}

#[test]
#[ignore = "rewrites tests/vectors: run only when adding a format version"]
fn generate_vectors() {
    let leased = json!({
        "tenant": "acme", "config": "builtin-1", "key_version": 3,
        "leased_key_id": hex::encode([0x11u8; 16]), "leased_key": hex32(0x20),
        "wrapped_leased_key": hex::encode(b"kms-wrapped-leased-key-blob"), "dek": hex32(0x40),
    });
    let long_ids = json!({
        "tenant": "t".repeat(256), "config": "c".repeat(256), "key_version": u32::MAX,
        "leased_key_id": hex::encode([0xFFu8; 16]), "leased_key": hex32(0x21),
        "wrapped_leased_key": hex::encode(vec![0xAB; 512]), "dek": hex32(0x41),
    });
    let leased_edek_hex = {
        let mut r = RecordingRng::new(1);
        build("edek-leased", &leased, &mut r)["edek"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let author_seed = hex32(0x60);
    let att_dek = hex32(0x61);
    // The header of the "group" attachment vector, for the grant vectors.
    let att_group = json!({
        "dek": att_dek, "author_seed": author_seed, "document": "attachment/7",
        "group": { "group": "team-blue", "epoch": 5, "head": hex32(0x62) }, "plaintext_len": 100,
    });
    let cases: Vec<(&str, &str, &str, Value)> = vec![
        ("edek", "leased-basic", "edek-leased", leased.clone()),
        ("edek", "leased-max-lengths", "edek-leased", long_ids),
        (
            "edek",
            "remote-basic",
            "edek-remote",
            json!({
                "tenant": "acme", "config": "aws-kms-1", "key_version": 1,
                "kms_plaintext": hex32(0x30), "kms_ciphertext": hex::encode(b"aws-ciphertext-blob"),
            }),
        ),
        (
            "edek",
            "asymmetric-basic",
            "edek-asymmetric",
            json!({
                "tenant": "acme", "config": "x25519-1", "key_version": 7,
                "tenant_secret_key": hex32(0x50), "dek": hex32(0x42),
            }),
        ),
        (
            "field",
            "basic",
            "field",
            json!({
                "dek": hex32(0x43), "tenant": "acme", "document": "invoice/991", "path": "customer.email",
                "plaintext": hex::encode(b"ada@example.com"),
            }),
        ),
        (
            "field",
            "empty",
            "field",
            json!({
                "dek": hex32(0x43), "tenant": "acme", "document": "invoice/991", "path": "notes",
                "plaintext": "",
            }),
        ),
        (
            "field",
            "unicode-ids",
            "field",
            json!({
                "dek": hex32(0x44), "tenant": "mandant-ä", "document": "文書-1", "path": "adresse.straße",
                "plaintext": hex::encode("Müllerstraße 1".as_bytes()),
            }),
        ),
        (
            "document",
            "detached",
            "document",
            json!({
                "dek": hex32(0x40), "tenant": "acme", "document": "customer/17", "form": "detached",
                "fields": [
                    { "path": "name", "plaintext": hex::encode(b"Ada Lovelace") },
                    { "path": "address.city", "plaintext": hex::encode(b"London") },
                    { "path": "empty", "plaintext": "" },
                ],
            }),
        ),
        (
            "document",
            "attached",
            "document",
            json!({
                "dek": hex32(0x40), "tenant": "acme", "document": "customer/18", "form": "attached",
                "edek": leased_edek_hex,
                "fields": [ { "path": "ssn", "plaintext": hex::encode(b"078-05-1120") } ],
            }),
        ),
        (
            "attachment",
            "empty",
            "attachment",
            json!({
                "dek": att_dek, "author_seed": author_seed, "document": "attachment/1", "group": null, "plaintext_len": 0,
            }),
        ),
        (
            "attachment",
            "one-segment",
            "attachment",
            json!({
                "dek": att_dek, "author_seed": author_seed, "document": "attachment/2", "group": null, "plaintext_len": 1000,
            }),
        ),
        (
            "attachment",
            "exactly-one-full-segment",
            "attachment",
            json!({
                "dek": att_dek, "author_seed": author_seed, "document": "attachment/3", "group": null, "plaintext_len": 65536,
            }),
        ),
        (
            "attachment",
            "three-segments",
            "attachment",
            json!({
                "dek": att_dek, "author_seed": author_seed, "document": "attachment/4", "group": null, "plaintext_len": 2 * 65536 + 5,
            }),
        ),
        ("attachment", "group-bound", "attachment", att_group.clone()),
        (
            "sealed_key",
            "group-key",
            "sealed-key",
            json!({
                "recipient_secret_key": hex32(0x70), "purpose": "group-key", "recipient_id": "device/ada-phone",
                "object_id": "team-blue", "epoch": 5, "aad": hex32(0x71), "secret": hex32(0x72),
            }),
        ),
        (
            "sealed_key",
            "grant-empty-aad",
            "sealed-key",
            json!({
                "recipient_secret_key": hex32(0x73), "purpose": "grant", "recipient_id": "device/bob-laptop",
                "object_id": "attachment/9", "epoch": 0, "aad": "", "secret": hex32(0x74),
            }),
        ),
        // Searchable fields draw no randomness: their "rng" is empty.
        (
            "derive",
            "deterministic-basic",
            "derive",
            json!({
                "secret": hex32(0xa0), "tenant": "acme", "secret_id": "ds-1",
                "purpose": "deterministic", "path": "customer.email",
            }),
        ),
        (
            "derive",
            "blind-index-basic",
            "derive",
            json!({
                "secret": hex32(0xa0), "tenant": "acme", "secret_id": "ds-1",
                "purpose": "blind_index", "path": "customer.email",
            }),
        ),
        (
            "derive",
            "unicode-ids",
            "derive",
            json!({
                "secret": hex32(0xa1), "tenant": "mandant-ä", "secret_id": "schlüssel-2",
                "purpose": "deterministic", "path": "adresse.straße",
            }),
        ),
        (
            "deterministic",
            "basic",
            "deterministic",
            json!({
                "secret": hex32(0xa0), "tenant": "acme", "secret_id": "ds-1", "path": "customer.email",
                "plaintext": hex::encode(b"ada@example.com"),
            }),
        ),
        (
            "deterministic",
            "empty",
            "deterministic",
            json!({
                "secret": hex32(0xa0), "tenant": "acme", "secret_id": "ds-1", "path": "notes",
                "plaintext": "",
            }),
        ),
        (
            "deterministic",
            "unicode-ids",
            "deterministic",
            json!({
                "secret": hex32(0xa1), "tenant": "mandant-ä", "secret_id": "schlüssel-2",
                "path": "adresse.straße", "plaintext": hex::encode("Müllerstraße 1".as_bytes()),
            }),
        ),
        (
            "blind_index",
            "basic",
            "blind-index",
            json!({
                "secret": hex32(0xa0), "tenant": "acme", "secret_id": "ds-1", "path": "customer.email",
                "length": 16, "value": hex::encode(b"ada@example.com"),
            }),
        ),
        (
            "blind_index",
            "empty-value-full-length",
            "blind-index",
            json!({
                "secret": hex32(0xa0), "tenant": "acme", "secret_id": "ds-1", "path": "notes",
                "length": 32, "value": "",
            }),
        ),
        (
            "blind_index",
            "unicode-ids-short",
            "blind-index",
            json!({
                "secret": hex32(0xa1), "tenant": "mandant-ä", "secret_id": "schlüssel-2",
                "path": "adresse.straße", "length": 1, "value": hex::encode("Müllerstraße 1".as_bytes()),
            }),
        ),
    ];
    let mut outputs = std::collections::HashMap::new();
    let write = |dir: &str, name: &str, v: &Value| {
        let path = vectors_dir().join(dir);
        std::fs::create_dir_all(&path).unwrap();
        let mut text = serde_json::to_string_pretty(v).unwrap();
        text.push('\n');
        std::fs::write(path.join(format!("{name}.json")), text).unwrap();
    };
    for (seed, (dir, name, format, input)) in cases.into_iter().enumerate() {
        let mut r = RecordingRng::new(100 + seed as u64);
        let output = build(format, &input, &mut r);
        outputs.insert(name, output.clone());
        let v = json!({ "format": format, "description": format!("{dir}/{name}"), "input": input, "rng": hex::encode(r.take()), "output": output });
        write(dir, name, &v);
    }
    // Grants refer to the group-bound attachment's header.
    let file = hex::decode(outputs["group-bound"]["file"].as_str().unwrap()).unwrap();
    let hlen = outputs["group-bound"]["header_len"].as_u64().unwrap() as usize;
    for (i, (name, rid, epoch, granter)) in [
        (
            "device-recipient",
            "device/ada-phone",
            0u64,
            author_seed.clone(),
        ),
        ("group-epoch-recipient", "team-blue", 5u64, hex32(0x80)),
    ]
    .into_iter()
    .enumerate()
    {
        let input = json!({
            "attachment_header": hex::encode(&file[..hlen]), "dek": att_dek, "recipient_id": rid,
            "recipient_secret_key": hex32(0x90 + i as u8), "epoch": epoch, "granter_seed": granter,
        });
        let mut r = RecordingRng::new(500 + i as u64);
        let output = build("grant", &input, &mut r);
        let v = json!({ "format": "grant", "description": format!("grant/{name}"), "input": input, "rng": hex::encode(r.take()), "output": output });
        write("grant", name, &v);
    }
}
