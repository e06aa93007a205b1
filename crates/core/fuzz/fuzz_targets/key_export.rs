//! `key_export::SealedKeys::parse` on arbitrary bytes.
//!
//! On success: the encoding round-trips byte for byte, its length lies within the format's
//! bounds, and the parsed parameters lie within the floor and ceiling that reading enforces.
//! `open` is not run: each call is a 64 MiB Argon2id derivation by design, which would turn
//! the fuzzer into a KDF benchmark; the binding of every header byte is tested instead in
//! crates/core/tests/key_export.rs.
#![no_main]

use keystead_core::key_export::{KdfParams, MAX_LEN, MIN_LEN, SealedKeys};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sealed) = SealedKeys::parse(data) else {
        return;
    };
    let bytes = sealed.to_bytes().expect("a parsed blob serializes");
    assert_eq!(bytes, data, "sealed keys round trip");
    assert!(
        (MIN_LEN..=MAX_LEN).contains(&data.len()),
        "length out of bounds"
    );
    let (p, lo, hi) = (sealed.params(), KdfParams::FLOOR, KdfParams::CEILING);
    assert!((lo.memory_kib..=hi.memory_kib).contains(&p.memory_kib));
    assert!((lo.iterations..=hi.iterations).contains(&p.iterations));
    assert!((lo.parallelism..=hi.parallelism).contains(&p.parallelism));
    assert_eq!(
        data.len(),
        MIN_LEN - 1 + sealed.id().as_bytes().len(),
        "length disagrees with the recipient id"
    );
});
