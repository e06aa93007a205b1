//! `groups::DeviceCertificate::parse` and `groups::UserRecord::parse` on arbitrary bytes.
//!
//! The first byte picks the parser. On success the value round-trips byte for byte, and a
//! record's certificates all name the record's user and identity key.
#![no_main]

use keystead_core::groups::{DeviceCertificate, UserRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(c) = DeviceCertificate::parse(bytes) {
            assert_eq!(c.to_bytes(), bytes, "certificate round trip");
        }
    } else if let Ok(r) = UserRecord::parse(bytes) {
        assert_eq!(r.to_bytes(), bytes, "record round trip");
        assert!(r.version() >= 1);
        for d in r.devices() {
            assert_eq!(d.user_id(), r.user_id());
            assert_eq!(d.identity_key(), r.identity_key());
            assert_eq!(r.check_device(d), Ok(()));
        }
    }
});
