//! Project Wycheproof vectors run against the primitives exactly as the core calls them
//! (`keystead_core::__private`, i.e. `hazmat.rs`), plus X25519 through `x25519-dalek` and the
//! core's HPKE sealing. AES-SIV-CMAC runs through the deterministic-field cipher
//! (`Aes256SivKey`) and HMAC-SHA256 through the blind-index MAC (`HmacSha256`).
//!
//! Result handling:
//! * `valid`: must succeed and give exactly the expected output.
//! * `invalid`: must be rejected. AEAD cases with a key size other than 256 bits, a nonce size
//!   other than 96 bits or a tag size other than 128 bits cannot be expressed through the
//!   core's API (`&[u8; 32]` key, `&[u8; 12]` nonce, `[u8; 16]` tag) and are counted as
//!   "n/a" with the reason. Ed25519 signatures that are not 64 bytes are rejected by the core's
//!   `&[u8; 64]` type (counted as rejected, by length). HKDF output sizes above 255 * 32 *are*
//!   expressible (`out: &mut [u8]`) and must be rejected with `Error::Limit`. AES-SIV cases
//!   with a key other than 512 bits (AES-256-SIV) and HMAC cases with a key other than 256
//!   bits (the derived blind-index key) are "n/a" by key size; HMAC tag sizes are blind-index
//!   lengths (whole bytes, 1 to 32), so both of the file's sizes (128, 256) apply. A SIV
//!   ciphertext shorter than its 16-byte synthetic IV is rejected by the core's `[u8; 16]`
//!   type (counted as rejected, by length).
//! * `acceptable`: may pass or fail; each one is recorded and counted.
//!
//! Every test checks that the number of cases it accounted for equals the number of cases in
//! the file (nothing is silently dropped) and that the applicable counts are non-zero.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use keystead_core::__private::{
    Aes256GcmKey, Aes256SivKey, ChaChaKey, HmacSha256, ed25519_verify, hkdf_sha256,
};
use keystead_core::Error;
use serde::Deserialize;
use serde::de::DeserializeOwned;

// ---------------------------------------------------------------------------------------------
// Loading

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct File<G> {
    algorithm: String,
    number_of_tests: usize,
    test_groups: Vec<G>,
}

fn load<G: DeserializeOwned>(name: &str) -> File<G> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "..",
        "..",
        "tests",
        "vectors",
        "wycheproof",
        name,
    ]
    .iter()
    .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
}

fn arr<const N: usize>(v: &[u8]) -> [u8; N] {
    v.try_into()
        .unwrap_or_else(|_| panic!("expected {N} bytes, got {}", v.len()))
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Valid,
    Invalid,
    Acceptable,
}

/// Per-file tallies.
#[derive(Default)]
struct Tally {
    valid_ok: usize,
    invalid_rejected: usize,
    /// Sub-reasons of `invalid_rejected` worth printing (e.g. "by length").
    rejected_notes: BTreeMap<&'static str, usize>,
    acceptable: usize,
    /// What happened to the acceptable cases.
    acceptable_notes: BTreeMap<&'static str, usize>,
    /// Not applicable, by reason.
    na: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn total(&self) -> usize {
        self.valid_ok + self.invalid_rejected + self.acceptable + self.na.values().sum::<usize>()
    }

    fn notes(m: &BTreeMap<&'static str, usize>) -> String {
        if m.is_empty() {
            return String::new();
        }
        let parts: Vec<String> = m.iter().map(|(k, v)| format!("{v} {k}")).collect();
        format!(" ({})", parts.join(", "))
    }

    /// Prints the summary line and checks that everything in the file was accounted for.
    fn finish(&self, name: &str, expected_total: usize, expect_invalid: bool) {
        let na_total: usize = self.na.values().sum();
        let na = if self.na.is_empty() {
            String::from("0 n/a")
        } else {
            let parts: Vec<String> = self.na.iter().map(|(k, v)| format!("{v} {k}")).collect();
            format!("{na_total} n/a ({})", parts.join(", "))
        };
        println!(
            "{name}: {} valid ok, {} invalid rejected{}, {} acceptable{}, {na}",
            self.valid_ok,
            self.invalid_rejected,
            Self::notes(&self.rejected_notes),
            self.acceptable,
            Self::notes(&self.acceptable_notes),
        );
        assert_eq!(
            self.total(),
            expected_total,
            "{name}: accounted for {} cases, the file has {expected_total}",
            self.total()
        );
        assert!(self.valid_ok > 0, "{name}: no valid case was run");
        if expect_invalid {
            assert!(self.invalid_rejected > 0, "{name}: no invalid case was run");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AEADs

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AeadGroup {
    iv_size: usize,
    key_size: usize,
    tag_size: usize,
    tests: Vec<AeadTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AeadTest {
    tc_id: u32,
    key: String,
    iv: String,
    aad: String,
    msg: String,
    ct: String,
    tag: String,
    result: Expect,
    #[allow(dead_code)]
    flags: Vec<String>,
}

/// The two AEAD key types of the core, behind one interface for the test.
trait CoreAead: Sized {
    fn new(key: &[u8; 32]) -> Self;
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8])
    -> keystead_core::Result<[u8; 16]>;
    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; 16],
    ) -> keystead_core::Result<()>;
}

impl CoreAead for Aes256GcmKey {
    fn new(key: &[u8; 32]) -> Self {
        Aes256GcmKey::new(key)
    }
    fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> keystead_core::Result<[u8; 16]> {
        self.seal_detached(nonce, aad, buf)
    }
    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; 16],
    ) -> keystead_core::Result<()> {
        self.open_detached(nonce, aad, buf, tag)
    }
}

impl CoreAead for ChaChaKey {
    fn new(key: &[u8; 32]) -> Self {
        ChaChaKey::new(key)
    }
    fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> keystead_core::Result<[u8; 16]> {
        self.seal_detached(nonce, aad, buf)
    }
    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; 16],
    ) -> keystead_core::Result<()> {
        self.open_detached(nonce, aad, buf, tag)
    }
}

fn run_aead<K: CoreAead>(name: &str, file: &str, expected_algorithm: &str) {
    let f: File<AeadGroup> = load(file);
    assert_eq!(f.algorithm, expected_algorithm);
    let mut t = Tally::default();
    for g in &f.test_groups {
        for tc in &g.tests {
            let id = tc.tc_id;
            let (key, iv, aad, msg, ct, tag) = (
                unhex(&tc.key),
                unhex(&tc.iv),
                unhex(&tc.aad),
                unhex(&tc.msg),
                unhex(&tc.ct),
                unhex(&tc.tag),
            );
            // The group sizes decide applicability (invalid-parameter cases may carry an empty
            // ct/tag); for applicable cases the data must agree with them.
            if g.key_size != 256 {
                *t.na.entry("key size").or_default() += 1;
                continue;
            }
            if g.iv_size != 96 {
                *t.na.entry("nonce size").or_default() += 1;
                continue;
            }
            if g.tag_size != 128 {
                *t.na.entry("tag size").or_default() += 1;
                continue;
            }
            assert_eq!(key.len() * 8, g.key_size, "{name} tc {id}: key size");
            assert_eq!(iv.len() * 8, g.iv_size, "{name} tc {id}: iv size");
            assert_eq!(tag.len() * 8, g.tag_size, "{name} tc {id}: tag size");
            let k = K::new(&arr(&key));
            let nonce: [u8; 12] = arr(&iv);
            let tag: [u8; 16] = arr(&tag);

            // Decryption, as the core calls it.
            let mut buf = ct.clone();
            let opened = k.open(&nonce, &aad, &mut buf, &tag);

            match tc.result {
                Expect::Valid => {
                    assert_eq!(opened, Ok(()), "{name} tc {id}: valid case did not open");
                    assert_eq!(buf, msg, "{name} tc {id}: wrong plaintext");
                    let mut buf = msg.clone();
                    let sealed = k
                        .seal(&nonce, &aad, &mut buf)
                        .unwrap_or_else(|e| panic!("{name} tc {id}: seal failed: {e:?}"));
                    assert_eq!(buf, ct, "{name} tc {id}: wrong ciphertext");
                    assert_eq!(sealed, tag, "{name} tc {id}: wrong tag");
                    t.valid_ok += 1;
                }
                Expect::Invalid => {
                    assert_eq!(
                        opened,
                        Err(Error::Decrypt),
                        "{name} tc {id}: invalid case was accepted"
                    );
                    assert!(
                        buf.iter().all(|&b| b == 0),
                        "{name} tc {id}: unauthenticated plaintext left in the buffer"
                    );
                    t.invalid_rejected += 1;
                }
                Expect::Acceptable => {
                    let note = if opened.is_ok() {
                        assert_eq!(buf, msg, "{name} tc {id}: accepted with wrong plaintext");
                        "opened"
                    } else {
                        "rejected"
                    };
                    *t.acceptable_notes.entry(note).or_default() += 1;
                    t.acceptable += 1;
                }
            }
        }
    }
    t.finish(name, f.number_of_tests, true);
}

#[test]
fn aes_gcm() {
    run_aead::<Aes256GcmKey>("aes_gcm", "aes_gcm_test.json", "AES-GCM");
}

#[test]
fn chacha20_poly1305() {
    run_aead::<ChaChaKey>(
        "chacha20_poly1305",
        "chacha20_poly1305_test.json",
        "CHACHA20-POLY1305",
    );
}

// ---------------------------------------------------------------------------------------------
// AES-SIV-CMAC (deterministic AEAD: one associated-data component, no nonce)

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DaeadGroup {
    key_size: usize,
    tests: Vec<DaeadTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DaeadTest {
    tc_id: u32,
    key: String,
    aad: String,
    msg: String,
    /// The synthetic IV followed by the ciphertext.
    ct: String,
    result: Expect,
}

#[test]
fn aes_siv_cmac() {
    let name = "aes_siv_cmac";
    let f: File<DaeadGroup> = load("aes_siv_cmac_test.json");
    assert_eq!(f.algorithm, "AES-SIV-CMAC");
    let mut t = Tally::default();
    for g in &f.test_groups {
        for tc in &g.tests {
            let id = tc.tc_id;
            if g.key_size != 512 {
                *t.na.entry("key size").or_default() += 1;
                continue;
            }
            let (key, aad, msg, ct) = (
                unhex(&tc.key),
                unhex(&tc.aad),
                unhex(&tc.msg),
                unhex(&tc.ct),
            );
            assert_eq!(key.len() * 8, g.key_size, "{name} tc {id}: key size");
            let k = Aes256SivKey::new(&arr(&key));
            if ct.len() < 16 {
                assert_eq!(tc.result, Expect::Invalid, "{name} tc {id}: short ct");
                *t.rejected_notes.entry("by length").or_default() += 1;
                t.invalid_rejected += 1;
                continue;
            }
            let (siv, body) = ct.split_at(16);
            let siv: [u8; 16] = arr(siv);

            // Decryption, as the core calls it.
            let mut buf = body.to_vec();
            let opened = k.open_detached(&aad, &mut buf, &siv);

            match tc.result {
                Expect::Valid => {
                    assert_eq!(opened, Ok(()), "{name} tc {id}: valid case did not open");
                    assert_eq!(buf, msg, "{name} tc {id}: wrong plaintext");
                    let mut buf = msg.clone();
                    let sealed = k
                        .seal_detached(&aad, &mut buf)
                        .unwrap_or_else(|e| panic!("{name} tc {id}: seal failed: {e:?}"));
                    assert_eq!(buf, body, "{name} tc {id}: wrong ciphertext");
                    assert_eq!(sealed, siv, "{name} tc {id}: wrong synthetic IV");
                    t.valid_ok += 1;
                }
                Expect::Invalid => {
                    assert_eq!(
                        opened,
                        Err(Error::Decrypt),
                        "{name} tc {id}: invalid case was accepted"
                    );
                    assert!(
                        buf.iter().all(|&b| b == 0),
                        "{name} tc {id}: unauthenticated plaintext left in the buffer"
                    );
                    t.invalid_rejected += 1;
                }
                Expect::Acceptable => {
                    let note = if opened.is_ok() {
                        assert_eq!(buf, msg, "{name} tc {id}: accepted with wrong plaintext");
                        "opened"
                    } else {
                        "rejected"
                    };
                    *t.acceptable_notes.entry(note).or_default() += 1;
                    t.acceptable += 1;
                }
            }
        }
    }
    t.finish(name, f.number_of_tests, true);
}

// ---------------------------------------------------------------------------------------------
// HMAC-SHA256 (blind indexes: a prefix absorbed once, the state cloned, the tag truncated)

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MacGroup {
    key_size: usize,
    tag_size: usize,
    tests: Vec<MacTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MacTest {
    tc_id: u32,
    key: String,
    msg: String,
    tag: String,
    result: Expect,
}

#[test]
fn hmac_sha256() {
    let name = "hmac_sha256";
    let f: File<MacGroup> = load("hmac_sha256_test.json");
    assert_eq!(f.algorithm, "HMACSHA256");
    let mut t = Tally::default();
    for g in &f.test_groups {
        for tc in &g.tests {
            let id = tc.tc_id;
            if g.key_size != 256 {
                *t.na.entry("key size").or_default() += 1;
                continue;
            }
            if g.tag_size % 8 != 0 || !(8..=256).contains(&g.tag_size) {
                *t.na.entry("tag size").or_default() += 1;
                continue;
            }
            let (key, msg, tag) = (unhex(&tc.key), unhex(&tc.msg), unhex(&tc.tag));
            let len = g.tag_size / 8;
            assert_eq!(key.len() * 8, g.key_size, "{name} tc {id}: key size");
            assert_eq!(tag.len(), len, "{name} tc {id}: tag size");

            // As a blind indexer computes: the keyed state with a prefix absorbed is cloned,
            // the rest is absorbed, the tag is truncated.
            let (head, rest) = msg.split_at(msg.len() / 2);
            let mut prefix = HmacSha256::new(&arr(&key));
            prefix.update(head);
            let mut mac = prefix.clone();
            mac.update(rest);
            let full = mac.finalize();
            // Whole message at once, and the clone left the prefix state untouched.
            let mut one = HmacSha256::new(&arr(&key));
            one.update(&msg);
            assert_eq!(
                one.finalize(),
                full,
                "{name} tc {id}: split changed the tag"
            );
            prefix.update(rest);
            assert_eq!(
                prefix.finalize(),
                full,
                "{name} tc {id}: clone shared state"
            );

            let matches = full[..len] == tag[..];
            match tc.result {
                Expect::Valid => {
                    assert!(matches, "{name} tc {id}: wrong tag");
                    t.valid_ok += 1;
                }
                Expect::Invalid => {
                    assert!(!matches, "{name} tc {id}: modified tag matched");
                    *t.rejected_notes.entry("by tag mismatch").or_default() += 1;
                    t.invalid_rejected += 1;
                }
                Expect::Acceptable => {
                    let note = if matches { "matched" } else { "differed" };
                    *t.acceptable_notes.entry(note).or_default() += 1;
                    t.acceptable += 1;
                }
            }
        }
    }
    t.finish(name, f.number_of_tests, true);
}

// ---------------------------------------------------------------------------------------------
// HKDF-SHA256

#[derive(Deserialize)]
struct HkdfGroup {
    tests: Vec<HkdfTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HkdfTest {
    tc_id: u32,
    ikm: String,
    salt: String,
    info: String,
    size: usize,
    okm: String,
    result: Expect,
}

const HKDF_MAX: usize = 255 * 32;

#[test]
fn hkdf_sha256_vectors() {
    let name = "hkdf_sha256";
    let f: File<HkdfGroup> = load("hkdf_sha256_test.json");
    assert_eq!(f.algorithm, "HKDF-SHA-256");
    let mut t = Tally::default();
    for g in &f.test_groups {
        for tc in &g.tests {
            let id = tc.tc_id;
            let (ikm, salt, info, okm) = (
                unhex(&tc.ikm),
                unhex(&tc.salt),
                unhex(&tc.info),
                unhex(&tc.okm),
            );
            let mut out = vec![0u8; tc.size];
            let r = hkdf_sha256(Some(&salt), &ikm, &[&info], &mut out);
            match tc.result {
                Expect::Valid => {
                    assert!(tc.size <= HKDF_MAX);
                    assert_eq!(r, Ok(()), "{name} tc {id}: valid case failed");
                    assert_eq!(out, okm, "{name} tc {id}: wrong output");
                    // The core passes info as parts: any split must give the same output.
                    let (a, b) = info.split_at(info.len() / 2);
                    let mut out2 = vec![0u8; tc.size];
                    hkdf_sha256(Some(&salt), &ikm, &[a, &[], b], &mut out2).unwrap();
                    assert_eq!(out2, okm, "{name} tc {id}: wrong output with split info");
                    if info.is_empty() {
                        let mut out3 = vec![0u8; tc.size];
                        hkdf_sha256(Some(&salt), &ikm, &[], &mut out3).unwrap();
                        assert_eq!(out3, okm, "{name} tc {id}: wrong output with no info parts");
                    }
                    // RFC 5869: an absent salt is the same as an empty one.
                    if salt.is_empty() {
                        let mut out4 = vec![0u8; tc.size];
                        hkdf_sha256(None, &ikm, &[&info], &mut out4).unwrap();
                        assert_eq!(out4, okm, "{name} tc {id}: wrong output with salt None");
                    }
                    t.valid_ok += 1;
                }
                Expect::Invalid => {
                    // The only invalid cases are output sizes beyond 255 * HashLen, which the
                    // core's `out: &mut [u8]` can express: they must fail with Error::Limit.
                    assert!(
                        tc.size > HKDF_MAX,
                        "{name} tc {id}: unexpected kind of invalid case"
                    );
                    assert_eq!(
                        r,
                        Err(Error::Limit),
                        "{name} tc {id}: invalid case accepted"
                    );
                    *t.rejected_notes.entry("by output-size limit").or_default() += 1;
                    t.invalid_rejected += 1;
                }
                Expect::Acceptable => {
                    let note = match r {
                        Ok(()) => {
                            assert_eq!(out, okm, "{name} tc {id}: accepted with wrong output");
                            "computed"
                        }
                        Err(_) => "rejected",
                    };
                    *t.acceptable_notes.entry(note).or_default() += 1;
                    t.acceptable += 1;
                }
            }
        }
    }
    t.finish(name, f.number_of_tests, true);
}

// ---------------------------------------------------------------------------------------------
// Ed25519 (verify_strict, over label ‖ parts)

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EdGroup {
    public_key: EdPublicKey,
    tests: Vec<EdTest>,
}

#[derive(Deserialize)]
struct EdPublicKey {
    pk: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EdTest {
    tc_id: u32,
    msg: String,
    sig: String,
    result: Expect,
}

/// Verifies as the core does: the key parsed like `SigningPublicKey::from_bytes`
/// (`VerifyingKey::from_bytes`), the signature as a fixed 64-byte array, then
/// `hazmat::ed25519_verify`. `Err` if any step rejects.
fn core_ed25519_verify(
    pk: &[u8],
    label: &[u8],
    parts: &[&[u8]],
    sig: &[u8],
) -> Result<(), &'static str> {
    let pk: [u8; 32] = pk.try_into().map_err(|_| "key length")?;
    let core_pk = keystead_core::SigningPublicKey::from_bytes(&pk);
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).map_err(|_| "key encoding")?;
    assert!(
        core_pk.is_ok(),
        "SigningPublicKey::from_bytes disagrees with VerifyingKey"
    );
    let sig: [u8; 64] = sig.try_into().map_err(|_| "by length")?;
    ed25519_verify(&vk, label, parts, &sig).map_err(|e| {
        assert_eq!(e, Error::Signature);
        "by verify_strict"
    })
}

#[test]
fn ed25519() {
    let name = "ed25519";
    let f: File<EdGroup> = load("ed25519_test.json");
    assert_eq!(f.algorithm, "EDDSA");
    let mut t = Tally::default();
    for g in &f.test_groups {
        let pk = unhex(&g.public_key.pk);
        for tc in &g.tests {
            let id = tc.tc_id;
            let (msg, sig) = (unhex(&tc.msg), unhex(&tc.sig));
            let r = core_ed25519_verify(&pk, b"", &[&msg], &sig);
            // The core signs label ‖ parts; splitting the message differently must not matter.
            let (a, b) = msg.split_at(msg.len() / 2);
            let r_split = core_ed25519_verify(&pk, a, &[&[], b], &sig);
            assert_eq!(
                r, r_split,
                "{name} tc {id}: label/parts split changed the result"
            );
            match tc.result {
                Expect::Valid => {
                    assert_eq!(
                        r,
                        Ok(()),
                        "{name} tc {id}: valid signature rejected ({r:?})"
                    );
                    t.valid_ok += 1;
                }
                Expect::Invalid => {
                    let why = r
                        .err()
                        .unwrap_or_else(|| panic!("{name} tc {id}: invalid signature accepted"));
                    *t.rejected_notes.entry(why).or_default() += 1;
                    t.invalid_rejected += 1;
                }
                Expect::Acceptable => {
                    let note = match r {
                        Ok(()) => "accepted",
                        Err(_) => "rejected",
                    };
                    *t.acceptable_notes.entry(note).or_default() += 1;
                    t.acceptable += 1;
                }
            }
        }
    }
    t.finish(name, f.number_of_tests, true);
}

// ---------------------------------------------------------------------------------------------
// X25519
//
// Flag handling. `x25519_dalek::StaticSecret::diffie_hellman` never rejects a public key: it
// clamps the scalar, masks bit 255 of the u-coordinate and reduces it mod p (RFC 7748 §5). So
// every case is computed, and whatever is computed must equal the expected `shared`:
// * Normal, Ktv, EdgeCase* , SpecialPublicKey (valid): exact output required.
// * Twist, NonCanonicalPublic, SmallPublicKey, SpecialPublicKey, EdgeCase* (acceptable):
//   accepted by the raw DH; the result must still be the RFC 7748 value (an acceptable input
//   that is accepted must compute correctly), counted as "computed".
// * LowOrderPublic / ZeroSharedSecret (acceptable): the raw DH gives all zeros (checked against
//   `shared`, and `was_contributory()` is false). The core never uses a raw DH: its HPKE layer
//   (RFC 9180 §7.1.4) rejects it, so sealing to such a key with `SealedKey::seal` must fail
//   with `Error::InvalidKey`, counted as "zero shared secret, seal -> InvalidKey".
// For every case, `SealedKey::seal` to the public key must fail with InvalidKey if and only if
// the expected shared secret is all zeros (a clamped ephemeral scalar kills exactly the
// small-order component, just as the clamped vector scalar does).

#[derive(Deserialize)]
struct XdhGroup {
    curve: String,
    tests: Vec<XdhTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct XdhTest {
    tc_id: u32,
    public: String,
    private: String,
    shared: String,
    result: Expect,
    flags: Vec<String>,
}

fn rng() -> chacha20::ChaCha20Rng {
    use chacha20::rand_core::SeedableRng;
    chacha20::ChaCha20Rng::from_seed([0x57; 32])
}

/// Seals a key to `pk` with the core's HPKE sealing.
fn core_seal_to(rng: &mut chacha20::ChaCha20Rng, pk: &[u8; 32]) -> keystead_core::Result<()> {
    use keystead_core::seal::{Purpose, SealedKey};
    let pk = keystead_core::EncryptionPublicKey::from_bytes(pk)?;
    let rid = keystead_core::RecipientId::new("wycheproof-device")?;
    SealedKey::seal(
        rng,
        Purpose::Grant,
        &rid,
        &pk,
        "doc-1",
        0,
        b"aad",
        &[0x42; 32],
    )
    .map(|_| ())
}

#[test]
fn x25519() {
    let name = "x25519";
    let f: File<XdhGroup> = load("x25519_test.json");
    assert_eq!(f.algorithm, "XDH");
    let mut rng = rng();
    let mut t = Tally::default();
    let mut zero_cases = 0usize;
    for g in &f.test_groups {
        assert_eq!(g.curve, "curve25519");
        for tc in &g.tests {
            let id = tc.tc_id;
            let public: [u8; 32] = arr(&unhex(&tc.public));
            let private: [u8; 32] = arr(&unhex(&tc.private));
            let shared: [u8; 32] = arr(&unhex(&tc.shared));
            let zero_expected = shared == [0u8; 32];
            let zero_flag = tc.flags.iter().any(|f| f == "ZeroSharedSecret");
            assert_eq!(
                zero_flag, zero_expected,
                "{name} tc {id}: flag/shared mismatch"
            );

            let sk = x25519_dalek::StaticSecret::from(private);
            let got = sk.diffie_hellman(&x25519_dalek::PublicKey::from(public));
            assert_eq!(
                got.as_bytes(),
                &shared,
                "{name} tc {id} ({:?}, {:?}): wrong shared secret",
                tc.result,
                tc.flags
            );
            assert_eq!(
                got.was_contributory(),
                !zero_expected,
                "{name} tc {id}: contributory"
            );

            // The core's HPKE sealing rejects exactly the all-zero shared secrets.
            let sealed = core_seal_to(&mut rng, &public);
            if zero_expected {
                assert_eq!(
                    sealed,
                    Err(Error::InvalidKey),
                    "{name} tc {id}: sealing to a low-order key did not fail with InvalidKey"
                );
                zero_cases += 1;
            } else {
                assert_eq!(sealed, Ok(()), "{name} tc {id}: sealing failed");
            }

            match tc.result {
                Expect::Valid => {
                    assert!(!zero_expected);
                    t.valid_ok += 1;
                }
                Expect::Invalid => {
                    // The raw DH never rejects; an invalid X25519 case would have to be a
                    // wrong-output case, which the equality check above already catches.
                    panic!("{name} tc {id}: unexpected invalid case (raw DH computed it)");
                }
                Expect::Acceptable => {
                    let note = if zero_expected {
                        "zero shared secret, seal -> InvalidKey"
                    } else {
                        "computed"
                    };
                    *t.acceptable_notes.entry(note).or_default() += 1;
                    t.acceptable += 1;
                }
            }
        }
    }
    t.finish(name, f.number_of_tests, false);
    assert!(t.acceptable > 0, "{name}: no acceptable case was run");
    assert!(
        zero_cases > 0,
        "{name}: no low-order case reached the HPKE check"
    );
}

/// Sealing to well-known low-order points (u = 0, u = 1, and u = p, the non-canonical zero)
/// fails with InvalidKey, independent of the vector file.
#[test]
fn hpke_seal_rejects_low_order_keys() {
    let mut rng = rng();
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let mut one = [0u8; 32];
    one[0] = 1;
    for pk in [[0u8; 32], one, p] {
        assert_eq!(
            core_seal_to(&mut rng, &pk),
            Err(Error::InvalidKey),
            "{pk:02x?}"
        );
    }
    // And a proper key seals.
    let kp = keystead_core::EncryptionKeyPair::from_secret_bytes(&[9u8; 32]);
    assert_eq!(core_seal_to(&mut rng, &kp.public().to_bytes()), Ok(()));
}
