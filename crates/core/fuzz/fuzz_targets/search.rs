//! Searchable fields. The whole input is fed to `deterministic_secret_id` and to
//! `DeterministicCipher::decrypt` with the fixed cipher (tenant, field path and secret id of
//! the fixtures), and is also encrypted and indexed as a plaintext value:
//!
//! * `deterministic_secret_id` fails exactly when `decrypt` fails with a format error, and
//!   with the same error. A well-framed input naming another secret id is `Decrypt`.
//! * A successful `decrypt` names the fixture secret id, its plaintext is exactly the
//!   framing shorter than the input, and encrypting that plaintext again gives back the
//!   input byte for byte (the cipher is deterministic).
//! * Encrypting the input as a plaintext, then decrypting, gives it back; encrypting twice
//!   gives the same bytes. Its blind index is deterministic and of the configured length.
#![no_main]

use keystead_core::Error;
use keystead_core::search::deterministic_secret_id;
use keystead_core_fuzz::{BLIND_INDEX_LEN, fixtures};
use libfuzzer_sys::fuzz_target;

/// Magic, version, the secret id's length prefix and the synthetic IV.
const FRAMING: usize = 4 + 2 + 16;

fuzz_target!(|data: &[u8]| {
    let f = fixtures();
    let cipher = &f.deterministic;

    // The input as a stored deterministic field.
    let id = deterministic_secret_id(data);
    match (&id, cipher.decrypt(data)) {
        (Ok(id), Ok(pt)) => {
            assert_eq!(id, &f.secret_id, "decrypted under another secret id");
            assert_eq!(pt.len() + FRAMING + id.as_bytes().len(), data.len());
            let again = cipher
                .encrypt(&pt)
                .expect("re-encrypting a decrypted value");
            assert_eq!(again, data, "deterministic round trip");
        }
        (Ok(_), Err(e)) => {
            // Framing is fine: only authentication (or a foreign secret id) can fail.
            assert_eq!(e, Error::Decrypt, "framed input failed with {e:?}");
        }
        (Err(e), Ok(_)) => panic!("decrypted an input whose framing is {e:?}"),
        (Err(a), Err(b)) => assert_eq!(*a, b, "parse and decrypt disagree"),
    }

    // The input as a plaintext value.
    let ct = cipher.encrypt(data).expect("encrypting a fuzz input");
    assert_eq!(cipher.encrypt(data).expect("encrypting again"), ct);
    assert_eq!(deterministic_secret_id(&ct).as_ref(), Ok(&f.secret_id));
    let pt = cipher.decrypt(&ct).expect("decrypting a fresh encryption");
    assert_eq!(&pt[..], data, "encrypt/decrypt round trip");

    let index = f.blind_index.compute(data).expect("indexing a fuzz input");
    assert_eq!(index.len(), BLIND_INDEX_LEN);
    assert_eq!(f.blind_index.compute(data).expect("indexing again"), index);
});
