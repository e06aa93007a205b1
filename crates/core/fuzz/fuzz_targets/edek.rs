//! `Edek::parse` on arbitrary bytes.
//!
//! On success: the encoding round-trips byte for byte, the mode-specific accessors agree with
//! the mode, and every unwrap path runs against the fixed keys (errors are fine, panics are
//! not). An unwrap that authenticates must yield the fixed DEK the seeds were made with.
#![no_main]

use keystead_core::edek::{Edek, Mode};
use keystead_core_fuzz::{REMOTE_PLAINTEXT, fixtures};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(edek) = Edek::parse(data) else {
        return;
    };
    let f = fixtures();

    // Parsing keeps the exact bytes: serializing gives the input back, and the header is a
    // prefix of it.
    assert_eq!(edek.to_bytes(), data, "EDEK round trip");
    assert!(data.starts_with(edek.header().as_bytes()));
    assert_eq!(edek.header().mode(), edek.mode());
    assert_eq!(edek.tenant(), edek.header().tenant());

    // The accessors that belong to one mode answer only for that mode.
    let mode = edek.mode();
    assert_eq!(edek.kms_ciphertext().is_some(), mode == Mode::Remote);
    assert_eq!(edek.leased_key_id().is_some(), mode == Mode::Leased);
    assert_eq!(edek.wrapped_leased_key().is_some(), mode == Mode::Leased);

    // Remote mode cannot authenticate (a wrong P just gives a useless DEK), so a plaintext of
    // valid length must always derive a key; the other modes refuse it.
    assert_eq!(
        edek.open_remote(&REMOTE_PLAINTEXT).is_ok(),
        mode == Mode::Remote
    );

    if let Ok(dek) = edek.unwrap_leased(&f.leased) {
        assert_eq!(mode, Mode::Leased);
        assert!(
            dek.ct_eq(&f.dek),
            "leased unwrap authenticated a foreign DEK"
        );
    }
    if let Ok(dek) = edek.unwrap_asymmetric(&f.tenant_key) {
        assert_eq!(mode, Mode::Asymmetric);
        assert!(
            dek.ct_eq(&f.dek),
            "asymmetric unwrap authenticated a foreign DEK"
        );
    }
});
