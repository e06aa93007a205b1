//! `grant::Grant::parse` and `grant::AccessBlock::parse` on arbitrary bytes.
//!
//! The first byte picks the parser. On success the value round-trips byte for byte (an
//! access block has verified every grant's signature against its header hash).
#![no_main]

use keystead_core::grant::{AccessBlock, Grant};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(g) = Grant::parse(bytes) {
            assert_eq!(g.to_bytes(), bytes, "grant round trip");
        }
    } else if let Ok(b) = AccessBlock::parse(bytes) {
        assert_eq!(b.to_bytes().expect("a parsed block serializes"), bytes, "block round trip");
        for g in b.grants() {
            assert!(g.verify(b.header_hash()).is_ok());
        }
    }
});
