//! Encrypted fields and documents. The first input byte picks the operation (see
//! `keystead_core_fuzz::envelope_op`):
//!
//! * `decrypt_field` with the fixed DEK, tenant, document and field path on the rest: on
//!   success the plaintext is exactly `FIELD_OVERHEAD` bytes shorter than the input.
//! * `EncryptedDocument::parse` on the rest: on success the encoding round-trips byte for
//!   byte, an attached EDEK belongs to the document's tenant, and `decrypt` runs with the
//!   fixed DEK.
#![no_main]

use keystead_core::envelope::{EncryptedDocument, FIELD_OVERHEAD, decrypt_field};
use keystead_core_fuzz::{envelope_op, fixtures};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&op, rest)) = data.split_first() else {
        return;
    };
    match op % envelope_op::COUNT {
        envelope_op::FIELD => field(rest),
        _ => document(rest),
    }
});

fn field(encrypted: &[u8]) {
    let f = fixtures();
    if let Ok(pt) = decrypt_field(&f.dek, &f.tenant, &f.document, &f.path, encrypted) {
        assert_eq!(pt.len() + FIELD_OVERHEAD, encrypted.len());
    }
}

fn document(bytes: &[u8]) {
    let Ok(doc) = EncryptedDocument::parse(bytes) else {
        return;
    };
    let encoded = doc.to_bytes().expect("a parsed document serializes");
    assert_eq!(encoded, bytes, "document round trip");

    if let Some(edek) = doc.edek() {
        assert_eq!(edek.tenant(), doc.tenant());
    }
    // Paths are strictly increasing: one encoding per document.
    assert!(
        doc.fields()
            .windows(2)
            .all(|w| w[0].0.as_bytes() < w[1].0.as_bytes())
    );

    let f = fixtures();
    if let Ok(plain) = doc.decrypt(&f.dek) {
        assert_eq!(plain.len(), doc.fields().len());
        for ((path, pt), (enc_path, ct)) in plain.iter().zip(doc.fields()) {
            assert_eq!(path, enc_path);
            assert_eq!(pt.len() + FIELD_OVERHEAD, ct.len());
        }
    }
}
