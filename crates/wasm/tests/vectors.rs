//! Shared vector files, natively: `tests/vectors/key_export/` (the `KSP` format of
//! `exportKeys`) and `tests/vectors/interop/` (whole attachments with their access blocks,
//! written by native keystead-core, `native-*`, and by the npm package in Node, `wasm-*`;
//! every one is decrypted here, in wasm by `tests/web.rs` and in Node by
//! `npm/test/interop.test.mjs`).
//!
//! `generate_vectors` (ignored) rewrites the key-export and `native-*` files; the `wasm-*`
//! files come from `KEYSTEAD_WRITE_VECTORS=1 node --test test/interop.test.mjs` in npm/.
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::*;
use keystead_core::attachment::AttachmentHeader;
use keystead_core::grant::{AccessBlock, Grant};
use keystead_core::key_export::{KdfParams, SealedKeys};
use keystead_core::seal::{Purpose, SealedKey};
use keystead_core::{Dek, DocumentId, RecipientId};
use serde_json::{Value, json};

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors")
}

fn read_dir(dir: &str) -> Vec<(String, Value)> {
    let path = vectors_dir().join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no vectors in {}", path.display());
    files
        .into_iter()
        .map(|f| {
            let name = f.file_stem().unwrap().to_string_lossy().into_owned();
            (
                name,
                serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn compiled_in_vector_lists_name_every_file() {
    for (dir, list) in [
        ("attachment", ATTACHMENT_VECTORS),
        ("interop", INTEROP_VECTORS),
        ("key_export", KEY_EXPORT_VECTORS),
    ] {
        let on_disk: Vec<String> = read_dir(dir).into_iter().map(|(n, _)| n).collect();
        let listed: Vec<String> = list.iter().map(|(n, _)| (*n).to_owned()).collect();
        assert_eq!(listed, on_disk, "tests/common/mod.rs lists for {dir}");
    }
}

#[test]
fn key_export_vectors() {
    for (name, v) in read_dir("key_export") {
        assert_eq!(s(&v, "format"), "key-export", "{name}");
        check_key_export(&v);
        let sealed = SealedKeys::parse(&h(&v["output"], "sealed_keys")).unwrap();
        assert_eq!(
            sealed.open("not the passphrase").unwrap_err(),
            keystead_core::Error::Decrypt
        );
    }
}

#[test]
fn interop_vectors() {
    let all = read_dir("interop");
    assert!(all.iter().any(|(n, _)| n.starts_with("native-")));
    assert!(all.iter().any(|(n, _)| n.starts_with("wasm-")));
    for (name, v) in all {
        assert_eq!(s(&v, "format"), "e2e-attachment", "{name}");
        check_interop(&v);
    }
}

// ---- generator -----------------------------------------------------------------------------

fn hex32(seed: u8) -> String {
    hex::encode((0u8..32).map(|i| seed.wrapping_add(i)).collect::<Vec<u8>>())
}

fn write(dir: &str, name: &str, v: &Value) {
    let path = vectors_dir().join(dir);
    std::fs::create_dir_all(&path).unwrap();
    let mut text = serde_json::to_string_pretty(v).unwrap();
    text.push('\n');
    std::fs::write(path.join(format!("{name}.json")), text).unwrap();
}

/// The reader of every interop vector: its keys sealed under the vector's passphrase.
pub const READER_PASSPHRASE: &str = "interop reader passphrase";

#[test]
#[ignore = "rewrites tests/vectors/{key_export,interop/native-*}: only for a new format version"]
fn generate_vectors() {
    // key export
    let cases = [
        (
            "basic",
            json!({
                "recipient_id": "device/ada-laptop", "encryption_secret_key": hex32(0xb0),
                "signing_seed": hex32(0xc0), "passphrase": "correct horse battery staple",
                "memory_kib": 65536, "iterations": 3, "parallelism": 1,
            }),
        ),
        (
            "unicode-long-id",
            json!({
                "recipient_id": format!("gerät/x{}", "é".repeat(124)), "encryption_secret_key": hex32(0xb1),
                "signing_seed": hex32(0xc1), "passphrase": "Pässwörter sind 🔑 — ünïcödé",
                "memory_kib": 65536, "iterations": 4, "parallelism": 2,
            }),
        ),
    ];
    for (seed, (name, input)) in cases.into_iter().enumerate() {
        let mut r = RecordingRng::new(900 + seed as u64);
        let keys = key_export_device(&input);
        let sealed = SealedKeys::seal_with_params(
            &mut r,
            &keys,
            s(&input, "passphrase"),
            key_export_params(&input),
        )
        .unwrap();
        let v = json!({
            "format": "key-export",
            "description": format!("key_export/{name}"),
            "input": input,
            "rng": hex::encode(&r.log),
            "output": {
                "sealed_keys": hex::encode(sealed.to_bytes().unwrap()),
                "encryption_public_key": hex::encode(keys.encryption().public().to_bytes()),
                "signing_public_key": hex::encode(keys.signing().public().to_bytes()),
                "fingerprint": hex::encode(keys.encryption().public().fingerprint()),
            },
        });
        write("key_export", name, &v);
    }

    // interop, written natively
    let reader = device(950, "device/interop-reader");
    let reader_keys = SealedKeys::seal_with_params(
        &mut rng(951),
        &reader,
        READER_PASSPHRASE,
        KdfParams::DEFAULT,
    )
    .unwrap()
    .to_bytes()
    .unwrap();
    let author = device(952, "device/interop-author");
    let other = device(953, "device/someone-else");
    let interop = |name: &str, doc: &str, len: usize, made: &Made, expect: &str, note: &str| {
        let v = json!({
            "format": "e2e-attachment",
            "description": format!("interop/{name}: {note}"),
            "producer": "keystead-core (native Rust, crates/wasm/tests/vectors.rs)",
            "input": {
                "reader_keys": hex::encode(&reader_keys),
                "passphrase": READER_PASSPHRASE,
                "author_public_key": hex::encode(author.signing().public().to_bytes()),
                "document": doc,
                "plaintext_len": len,
            },
            "expect": expect,
            "output": {
                "file": hex::encode(&made.file),
                "access_block": hex::encode(&made.access_block),
            },
        });
        write("interop", name, &v);
    };
    for (i, (name, len)) in [
        ("native-empty", 0usize),
        ("native-one-segment", 1000),
        ("native-four-segments", 3 * 65536 + 17),
    ]
    .into_iter()
    .enumerate()
    {
        let doc = format!("interop/{name}");
        let made = encrypt(
            960 + i as u64,
            &author,
            &[&other, &reader],
            &doc,
            &pattern(len),
        );
        interop(name, &doc, len, &made, "ok", "decrypts to the pattern");
    }

    // A malicious author grants the reader a DEK that does not match the header's key
    // commitment (ChaCha20-Poly1305 is not key-committing): rejected before any plaintext.
    let doc = "interop/native-wrong-commitment";
    let len = 1000;
    let made = encrypt(970, &author, &[&reader], doc, &pattern(len));
    let header = AttachmentHeader::parse(&made.file[..made.header_len]).unwrap();
    let wrong = Dek::generate(&mut rng(971));
    let sealed = SealedKey::seal(
        &mut rng(972),
        Purpose::Grant,
        &RecipientId::new("device/interop-reader").unwrap(),
        reader.encryption().public(),
        DocumentId::new(doc).unwrap().as_str(),
        0,
        header.hash(),
        wrong.expose_secret(),
    )
    .unwrap();
    let mut unsigned = b"KSG\x01".to_vec();
    let sk = sealed.to_bytes();
    unsigned.extend_from_slice(&u16::try_from(sk.len()).unwrap().to_be_bytes());
    unsigned.extend_from_slice(&sk);
    unsigned.extend_from_slice(&author.signing().public().to_bytes());
    let signer = ed25519_dalek::SigningKey::from_bytes(&author.signing().expose_secret());
    let sig = keystead_core::__private::ed25519_sign(
        &signer,
        b"keystead/v1/grant",
        &[header.hash(), &unsigned],
    );
    let mut grant = unsigned;
    grant.extend_from_slice(&sig);
    let mut block = AccessBlock::new(&header);
    block.add(Grant::parse(&grant).unwrap()).unwrap();
    let forged = Made {
        file: made.file,
        access_block: block.to_bytes().unwrap(),
        header_len: made.header_len,
    };
    interop(
        "native-wrong-commitment",
        doc,
        len,
        &forged,
        "decrypt_failed",
        "the author's grant holds a DEK that does not match the key commitment",
    );
}
