//! The `KSP` key-export format: round trip, wrong passphrase, the parameter floor and
//! ceiling, binding of every header field, and robustness of the parser against every
//! truncation, every bit flip and random bytes (it returns errors, never panics).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

mod common;

use common::rng;
use keystead_core::device::DeviceKeys;
use keystead_core::key_export::{KdfParams, MAX_LEN, MIN_LEN, SealedKeys};
use keystead_core::{Error, FormatError, RecipientId};
use rand_core::Rng;

fn device(seed: u64, id: &str) -> DeviceKeys {
    DeviceKeys::generate(&mut rng(seed), RecipientId::new(id).unwrap())
}

fn sealed() -> Vec<u8> {
    let keys = device(1, "device/a");
    SealedKeys::seal(&mut rng(2), &keys, "passphrase")
        .unwrap()
        .to_bytes()
        .unwrap()
}

#[test]
fn round_trip_and_wrong_passphrase() {
    let keys = device(1, "device/a");
    let bytes = sealed();
    assert_eq!(bytes.len(), MIN_LEN - 1 + "device/a".len());
    let parsed = SealedKeys::parse(&bytes).unwrap();
    assert_eq!(parsed.params(), KdfParams::DEFAULT);
    assert_eq!(parsed.id(), keys.id());
    let back = parsed.open("passphrase").unwrap();
    assert_eq!(back.encryption().public(), keys.encryption().public());
    assert_eq!(back.signing().public(), keys.signing().public());
    assert_eq!(parsed.open("Passphrase").unwrap_err(), Error::Decrypt);
    assert_eq!(parsed.open("").unwrap_err(), Error::Usage);
    assert_eq!(parsed.open(&"x".repeat(1025)).unwrap_err(), Error::Limit);
    // Two exports of the same keys differ (fresh salt).
    let again = SealedKeys::seal(&mut rng(3), &keys, "passphrase")
        .unwrap()
        .to_bytes()
        .unwrap();
    assert_ne!(again, bytes);
}

fn with_params(bytes: &[u8], m: u32, t: u32, p: u32) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[5..9].copy_from_slice(&m.to_be_bytes());
    b[9..13].copy_from_slice(&t.to_be_bytes());
    b[13..17].copy_from_slice(&p.to_be_bytes());
    b
}

#[test]
fn parameter_floor_and_ceiling_enforced_on_read() {
    let b = sealed();
    let invalid = Error::Format(FormatError::InvalidValue);
    for (m, t, p) in [
        (65535, 3, 1),
        (65536, 2, 1),
        (65536, 3, 0),
        (1024 * 1024 + 1, 3, 1),
        (65536, 33, 1),
        (65536, 3, 17),
        (0, 0, 0),
        (u32::MAX, u32::MAX, u32::MAX),
    ] {
        assert_eq!(
            SealedKeys::parse(&with_params(&b, m, t, p)).unwrap_err(),
            invalid,
            "{m} {t} {p}"
        );
    }
    // Writing below the floor is refused too.
    let weak = KdfParams {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };
    let keys = device(1, "device/a");
    assert_eq!(
        SealedKeys::seal_with_params(&mut rng(4), &keys, "pw", weak).unwrap_err(),
        Error::Limit
    );
}

#[test]
fn every_header_field_is_bound() {
    // Within the bounds, a changed parameter parses but no longer opens; so does every
    // changed salt, id, public-key and ciphertext byte (a sample of each field).
    let b = sealed();
    let stronger = with_params(&b, 65537, 3, 1);
    assert_eq!(
        SealedKeys::parse(&stronger)
            .unwrap()
            .open("passphrase")
            .unwrap_err(),
        Error::Decrypt
    );
    let id_end = 35 + "device/a".len();
    for pos in [
        17,
        32,
        35,
        id_end - 1,
        id_end,
        id_end + 31,
        id_end + 32,
        id_end + 63,
        id_end + 64,
        b.len() - 1,
    ] {
        let mut c = b.clone();
        c[pos] ^= 1;
        let res = SealedKeys::parse(&c).and_then(|s| s.open("passphrase").map(|_| ()));
        assert!(res.is_err(), "byte {pos} not bound");
    }
}

#[test]
fn parser_never_panics() {
    let b = sealed();
    // Every truncation.
    for n in 0..b.len() {
        assert!(SealedKeys::parse(&b[..n]).is_err(), "truncated to {n}");
    }
    // Every bit flip: an error or a value (flips in the salt or ciphertext parse fine).
    for i in 0..b.len() * 8 {
        let mut c = b.clone();
        c[i / 8] ^= 1 << (i % 8);
        let _ = SealedKeys::parse(&c);
    }
    // Trailing bytes, bad magic, unknown version, unknown KDF.
    let mut t = b.clone();
    t.push(0);
    assert_eq!(
        SealedKeys::parse(&t).unwrap_err(),
        Error::Format(FormatError::TrailingBytes)
    );
    let mut m = b.clone();
    m[0] = b'X';
    assert_eq!(
        SealedKeys::parse(&m).unwrap_err(),
        Error::Format(FormatError::BadMagic)
    );
    let mut v = b.clone();
    v[3] = 2;
    assert_eq!(
        SealedKeys::parse(&v).unwrap_err(),
        Error::Format(FormatError::UnknownVersion(2))
    );
    let mut k = b.clone();
    k[4] = 2;
    assert_eq!(
        SealedKeys::parse(&k).unwrap_err(),
        Error::Format(FormatError::InvalidValue)
    );
    // Random inputs, and random inputs behind a valid prefix.
    let mut r = rng(5);
    for _ in 0..20_000 {
        let len = usize::try_from(r.next_u32()).unwrap() % (MAX_LEN + 40);
        let mut x = vec![0u8; len];
        r.fill_bytes(&mut x);
        if r.next_u32().is_multiple_of(2) && len > 17 {
            x[..17].copy_from_slice(&b[..17]);
        }
        let _ = SealedKeys::parse(&x);
    }
}
