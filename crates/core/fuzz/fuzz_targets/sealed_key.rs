//! `SealedKey::parse` on arbitrary bytes.
//!
//! On success: the encoding round-trips byte for byte and `open` runs with the fixed
//! recipient key pair. An open that authenticates must give the fixed DEK the seeds sealed,
//! and the same sealed key must then refuse any other AAD.
#![no_main]

use keystead_core::seal::SealedKey;
use keystead_core_fuzz::{SEAL_AAD, fixtures};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sealed) = SealedKey::parse(data) else {
        return;
    };
    assert_eq!(sealed.to_bytes(), data, "sealed key round trip");

    let f = fixtures();
    if let Ok(key) = sealed.open(&f.recipient_key, SEAL_AAD) {
        assert_eq!(
            &*key,
            f.dek.expose_secret(),
            "open authenticated a foreign key"
        );
        assert!(
            sealed.open(&f.recipient_key, b"another aad").is_err(),
            "a sealed key opened under a different AAD"
        );
    }
});
