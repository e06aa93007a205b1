//! `groups::EscrowedIdentity::parse` and `groups::RecoveryCode::parse` on arbitrary bytes.
//!
//! Parsing only: `open` is a 64 MiB Argon2id derivation by design. On success the blob
//! round-trips byte for byte, its length is within bounds and its parameters within the
//! floor and ceiling; a parsed recovery code renders to a string that parses back to it.
#![no_main]

use keystead_core::groups::escrow::{MAX_LEN, MIN_LEN};
use keystead_core::groups::{EscrowedIdentity, RecoveryCode};
use keystead_core::key_export::KdfParams;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = EscrowedIdentity::parse(data) {
        assert_eq!(e.to_bytes().expect("a parsed blob serializes"), data);
        assert!((MIN_LEN..=MAX_LEN).contains(&data.len()));
        let (p, lo, hi) = (e.params(), KdfParams::FLOOR, KdfParams::CEILING);
        assert!((lo.memory_kib..=hi.memory_kib).contains(&p.memory_kib));
        assert!((lo.iterations..=hi.iterations).contains(&p.iterations));
        assert!((lo.parallelism..=hi.parallelism).contains(&p.parallelism));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(code) = RecoveryCode::parse(s) {
            let rendered = code.render();
            let again = RecoveryCode::parse(&rendered).expect("a rendered code parses");
            assert_eq!(*again.render(), *rendered);
        }
    }
});
