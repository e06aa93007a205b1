//! Test support shared by the native tests and the wasm tests (wasm-pack test).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::rc::Rc;

use chacha20::ChaCha20Rng;
use keystead_core::device::DeviceKeys;
use keystead_core::{DocumentId, RecipientId};
use keystead_wasm::engine::{AccessPolicy, DecryptSession, EncryptSession, Recipient};
use rand_core::SeedableRng;

/// A seeded RNG: tests are reproducible.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// The plaintext pattern of the attachment vectors: byte i = (i * 31 + 7) mod 251.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 31 + 7) % 251).unwrap())
        .collect()
}

pub fn device(seed: u64, id: &str) -> DeviceKeys {
    DeviceKeys::generate(&mut rng(seed), RecipientId::new(id).unwrap())
}

pub fn recipient(keys: &DeviceKeys) -> Recipient {
    Recipient {
        id: keys.id().clone(),
        key: keys.encryption().public().clone(),
    }
}

/// A whole attachment made through the engine: the file and its access block.
pub struct Made {
    pub file: Vec<u8>,
    pub access_block: Vec<u8>,
    pub header_len: usize,
}

pub fn encrypt(
    seed: u64,
    author: &DeviceKeys,
    to: &[&DeviceKeys],
    doc: &str,
    plain: &[u8],
) -> Made {
    let recipients: Vec<Recipient> = to.iter().map(|k| recipient(k)).collect();
    let mut s = EncryptSession::new(
        &mut rng(seed),
        &recipients,
        author,
        DocumentId::new(doc).unwrap(),
        None,
    )
    .unwrap();
    let mut file = s.header().to_vec();
    let header_len = file.len();
    let access_block = s.access_block().to_vec();
    // Uneven pushes, to cross segment boundaries inside a push.
    for chunk in plain.chunks(40_000) {
        s.push(chunk, &mut file).unwrap();
    }
    s.finish(&mut file).unwrap();
    Made {
        file,
        access_block,
        header_len,
    }
}

/// Decrypts `file` through the engine in pushes of `chunk` bytes; the error's code string on
/// failure.
pub fn decrypt(
    file: &[u8],
    access_block: &[u8],
    author: &[u8],
    keys: Rc<DeviceKeys>,
    chunk: usize,
) -> Result<Vec<u8>, &'static str> {
    let policy = AccessPolicy::new(access_block, author, None).map_err(|e| e.code().as_str())?;
    let mut s = DecryptSession::new(policy, keys);
    let mut out = Vec::new();
    for c in file.chunks(chunk.max(1)) {
        s.push(c, &mut out).map_err(|e| e.code().as_str())?;
    }
    s.finish(&mut out).map_err(|e| e.code().as_str())?;
    Ok(out)
}

pub fn hex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

/// Every shared vector file the wasm tests read, compiled in (a browser has no file
/// system). `tests/vectors.rs` checks natively that these lists name every file of the
/// directories, so a new vector cannot be left out.
macro_rules! vector_files {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../../../tests/vectors/", $dir, "/", $name, ".json")))),*]
    };
}

pub const ATTACHMENT_VECTORS: &[(&str, &str)] = vector_files!("attachment":
    "empty", "exactly-one-full-segment", "group-bound", "one-segment", "three-segments");

pub const INTEROP_VECTORS: &[(&str, &str)] = vector_files!("interop":
    "native-empty", "native-four-segments", "native-one-segment",
    "native-wrong-commitment", "wasm-one-full-segment", "wasm-three-segments");

pub const KEY_EXPORT_VECTORS: &[(&str, &str)] = vector_files!("key_export":
    "basic", "unicode-long-id");

/// Records every byte it hands out, so a vector can store the randomness it used.
pub struct RecordingRng {
    inner: ChaCha20Rng,
    pub log: Vec<u8>,
}

impl RecordingRng {
    pub fn new(seed: u64) -> Self {
        Self {
            inner: rng(seed),
            log: Vec::new(),
        }
    }
}

impl rand_core::TryRng for RecordingRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        rand_core::Rng::fill_bytes(&mut self.inner, dst);
        self.log.extend_from_slice(dst);
        Ok(())
    }
}
impl rand_core::TryCryptoRng for RecordingRng {}

/// Hands out exactly the recorded bytes, then panics.
pub struct ReplayRng {
    bytes: Vec<u8>,
    pos: usize,
}

impl ReplayRng {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, pos: 0 }
    }
    pub fn exhausted(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

impl rand_core::TryRng for ReplayRng {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        let end = self.pos + dst.len();
        assert!(end <= self.bytes.len(), "recorded randomness exhausted");
        dst.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(())
    }
}
impl rand_core::TryCryptoRng for ReplayRng {}

// ---- checks of the shared vector files, run natively (tests/vectors.rs) and in wasm ----

use keystead_core::key_export::{KdfParams, SealedKeys};
use serde_json::Value;

pub fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("missing string field {k}"))
}
pub fn h(v: &Value, k: &str) -> Vec<u8> {
    hex(s(v, k))
}
pub fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64()
        .unwrap_or_else(|| panic!("missing number field {k}"))
}
pub fn arr32(b: Vec<u8>) -> [u8; 32] {
    b.try_into().unwrap()
}

/// The device keys a key-export vector's inputs describe.
pub fn key_export_device(i: &Value) -> DeviceKeys {
    DeviceKeys::from_parts(
        RecipientId::new(s(i, "recipient_id")).unwrap(),
        keystead_core::EncryptionKeyPair::from_secret_bytes(&arr32(h(i, "encryption_secret_key"))),
        keystead_core::SigningKeyPair::from_secret_bytes(&arr32(h(i, "signing_seed"))),
    )
}

pub fn key_export_params(i: &Value) -> KdfParams {
    KdfParams {
        memory_kib: u32::try_from(n(i, "memory_kib")).unwrap(),
        iterations: u32::try_from(n(i, "iterations")).unwrap(),
        parallelism: u32::try_from(n(i, "parallelism")).unwrap(),
    }
}

/// Parses, opens and regenerates a key-export vector.
pub fn check_key_export(v: &Value) {
    let (i, o) = (&v["input"], &v["output"]);
    let bytes = h(o, "sealed_keys");
    let sealed = SealedKeys::parse(&bytes).unwrap();
    assert_eq!(sealed.to_bytes().unwrap(), bytes);
    assert_eq!(sealed.params(), key_export_params(i));
    assert_eq!(sealed.id().as_str(), s(i, "recipient_id"));
    let keys = sealed.open(s(i, "passphrase")).unwrap();
    assert_eq!(
        keys.encryption().public().to_bytes().to_vec(),
        h(o, "encryption_public_key")
    );
    assert_eq!(
        keys.signing().public().to_bytes().to_vec(),
        h(o, "signing_public_key")
    );
    // (The X25519 private key comes back clamped, RFC 7748: compare its public key above.)
    assert_eq!(
        keys.signing().expose_secret().to_vec(),
        h(i, "signing_seed")
    );
    let mut replay = ReplayRng::new(hex(s(v, "rng")));
    let again = SealedKeys::seal_with_params(
        &mut replay,
        &key_export_device(i),
        s(i, "passphrase"),
        key_export_params(i),
    )
    .unwrap();
    assert!(replay.exhausted());
    assert_eq!(again.to_bytes().unwrap(), bytes);
}

/// Opens an interop vector's reader keys and decrypts its file; compares with the expected
/// plaintext, or the expected error code.
pub fn check_interop(v: &Value) {
    let i = &v["input"];
    let o = &v["output"];
    let keys = SealedKeys::parse(&h(i, "reader_keys"))
        .unwrap()
        .open(s(i, "passphrase"))
        .unwrap();
    let keys = Rc::new(keys);
    let file = h(o, "file");
    let block = h(o, "access_block");
    let author = h(i, "author_public_key");
    for chunk in [file.len().max(1), 7, 65_552, 65_553] {
        let res = decrypt(&file, &block, &author, Rc::clone(&keys), chunk);
        match s(v, "expect") {
            "ok" => assert_eq!(
                res.unwrap(),
                pattern(usize::try_from(n(i, "plaintext_len")).unwrap()),
                "{}",
                s(v, "description")
            ),
            code => assert_eq!(res.unwrap_err(), code, "{}", s(v, "description")),
        }
    }
}
