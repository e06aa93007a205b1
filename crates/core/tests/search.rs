//! Searchable fields: key derivation, deterministic fields (`KSV`) and blind indexes.
//! Determinism, binding to tenant / path / secret id / secret, tampering, truncation, key
//! purposes and lengths, and the byte layouts of docs/FORMAT.md rebuilt independently from
//! the primitives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use common::{for_each_bit_flip, p, t};
use keystead_core::__private::{Aes256SivKey, HmacSha256, hkdf_sha256};
use keystead_core::search::{
    BlindIndexer, DerivationSecret, DerivedKey, DeterministicCipher, MAX_BLIND_INDEX_LEN, Purpose,
    deterministic_secret_id,
};
use keystead_core::{Error, FormatError, SecretId};

fn sid(s: &str) -> SecretId {
    SecretId::new(s).unwrap()
}

fn secret(seed: u8) -> DerivationSecret {
    DerivationSecret::from_bytes([seed; 32])
}

fn det_key(secret: &DerivationSecret, tenant: &str, secret_id: &str, path: &str) -> DerivedKey {
    DerivedKey::derive(
        secret,
        &t(tenant),
        &sid(secret_id),
        Purpose::Deterministic,
        &p(path),
    )
}

fn cipher(seed: u8, tenant: &str, secret_id: &str, path: &str) -> DeterministicCipher {
    let key = det_key(&secret(seed), tenant, secret_id, path);
    DeterministicCipher::new(&key, &t(tenant), &sid(secret_id), &p(path)).unwrap()
}

fn indexer(seed: u8, tenant: &str, path: &str, len: usize) -> BlindIndexer {
    let key = DerivedKey::derive(
        &secret(seed),
        &t(tenant),
        &sid("ds-1"),
        Purpose::BlindIndex,
        &p(path),
    );
    BlindIndexer::new(&key, &t(tenant), &p(path), len).unwrap()
}

fn lp16(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

// ---- purposes and key derivation ----------------------------------------------------------

#[test]
fn purpose_strings_and_key_lengths() {
    for purpose in [Purpose::Deterministic, Purpose::BlindIndex] {
        assert_eq!(Purpose::parse(purpose.as_str()), Some(purpose));
    }
    assert_eq!(Purpose::Deterministic.as_str(), "deterministic");
    assert_eq!(Purpose::BlindIndex.as_str(), "blind_index");
    assert_eq!(Purpose::Deterministic.key_len(), 64);
    assert_eq!(Purpose::BlindIndex.key_len(), 32);
    for bad in ["", "Deterministic", "blind-index", "blind_index ", "edek"] {
        assert_eq!(Purpose::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn secret_ids_are_validated() {
    assert!(SecretId::new("ds-1").is_ok());
    assert!(SecretId::new("").is_err());
    assert!(SecretId::new("s".repeat(257)).is_err());
    assert!(SecretId::new("ds\n1").is_err());
}

#[test]
fn derive_is_deterministic_and_has_the_purpose_length() {
    let s = secret(1);
    for purpose in [Purpose::Deterministic, Purpose::BlindIndex] {
        let a = DerivedKey::derive(&s, &t("acme"), &sid("ds-1"), purpose, &p("email"));
        let b = DerivedKey::derive(&s, &t("acme"), &sid("ds-1"), purpose, &p("email"));
        assert_eq!(a.purpose(), purpose);
        assert_eq!(a.expose_secret().len(), purpose.key_len());
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert!(a.expose_secret().iter().any(|&x| x != 0));
    }
}

#[test]
fn derive_separates_purpose_path_tenant_secret_id_and_secret() {
    let base = |s: &DerivationSecret, tenant: &str, id: &str, purpose, path: &str| {
        DerivedKey::derive(s, &t(tenant), &sid(id), purpose, &p(path))
            .expose_secret()
            .to_vec()
    };
    let s1 = secret(1);
    let s2 = secret(2);
    let reference = base(&s1, "acme", "ds-1", Purpose::Deterministic, "email");
    let others = [
        (
            "purpose",
            base(&s1, "acme", "ds-1", Purpose::BlindIndex, "email"),
        ),
        (
            "path",
            base(&s1, "acme", "ds-1", Purpose::Deterministic, "phone"),
        ),
        (
            "tenant",
            base(&s1, "evil", "ds-1", Purpose::Deterministic, "email"),
        ),
        (
            "secret id",
            base(&s1, "acme", "ds-2", Purpose::Deterministic, "email"),
        ),
        (
            "secret",
            base(&s2, "acme", "ds-1", Purpose::Deterministic, "email"),
        ),
        // Length prefixes keep adjacent components apart.
        (
            "boundary",
            base(&s1, "acm", "eds-1", Purpose::Deterministic, "email"),
        ),
    ];
    for (what, key) in &others {
        // Compare the common 32-byte prefix too, so a blind-index key that were just a
        // truncation of the deterministic key would be caught.
        assert_ne!(reference[..32], key[..32], "{what}");
    }
}

#[test]
fn derive_matches_the_documented_hkdf_call() {
    let s = secret(9);
    for (tenant, id, purpose, path) in [
        ("acme", "ds-1", Purpose::Deterministic, "customer.email"),
        ("mandant-ä", "ds-2", Purpose::BlindIndex, "adresse.straße"),
    ] {
        let mut info = b"keystead/v1/derive".to_vec();
        lp16(&mut info, tenant.as_bytes());
        lp16(&mut info, id.as_bytes());
        lp16(&mut info, purpose.as_str().as_bytes());
        lp16(&mut info, path.as_bytes());
        let mut want = vec![0u8; purpose.key_len()];
        hkdf_sha256(None, s.expose_secret(), &[&info], &mut want).unwrap();
        let got = DerivedKey::derive(&s, &t(tenant), &sid(id), purpose, &p(path));
        assert_eq!(got.expose_secret(), &want[..]);
    }
}

#[test]
fn derived_key_from_bytes_checks_the_length() {
    for purpose in [Purpose::Deterministic, Purpose::BlindIndex] {
        for len in [0, 1, 31, 33, 63, 65, 128] {
            if len == purpose.key_len() {
                continue;
            }
            assert_eq!(
                DerivedKey::from_bytes(purpose, &vec![7; len]).unwrap_err(),
                Error::InvalidKey,
                "{purpose} {len}"
            );
        }
        let k = DerivedKey::from_bytes(purpose, &vec![7; purpose.key_len()]).unwrap();
        assert_eq!(k.purpose(), purpose);
        assert_eq!(k.expose_secret(), &vec![7; purpose.key_len()][..]);
    }
}

#[test]
fn a_key_sent_as_bytes_works_like_the_derived_one() {
    let s = secret(3);
    let derived = det_key(&s, "acme", "ds-1", "email");
    let received = DerivedKey::from_bytes(Purpose::Deterministic, derived.expose_secret()).unwrap();
    let a = DeterministicCipher::new(&derived, &t("acme"), &sid("ds-1"), &p("email")).unwrap();
    let b = DeterministicCipher::new(&received, &t("acme"), &sid("ds-1"), &p("email")).unwrap();
    let ct = a.encrypt(b"ada@example.com").unwrap();
    assert_eq!(b.encrypt(b"ada@example.com").unwrap(), ct);
    assert_eq!(&b.decrypt(&ct).unwrap()[..], b"ada@example.com");
}

#[test]
fn secrets_and_keys_do_not_print_key_material() {
    let s = DerivationSecret::from_bytes([0xab; 32]);
    let k = DerivedKey::from_bytes(Purpose::Deterministic, &[0xcd; 64]).unwrap();
    let c = DeterministicCipher::new(&k, &t("acme"), &sid("ds-1"), &p("email")).unwrap();
    let bk = DerivedKey::from_bytes(Purpose::BlindIndex, &[0xef; 32]).unwrap();
    let i = BlindIndexer::new(&bk, &t("acme"), &p("email"), 16).unwrap();
    for text in [
        format!("{s:?}"),
        format!("{k:?}"),
        format!("{c:?}"),
        format!("{bk:?}"),
        format!("{i:?}"),
    ] {
        for needle in ["ab", "AB", "171", "cd", "CD", "205", "ef", "EF", "239"] {
            assert!(!text.contains(needle), "{text} contains {needle}");
        }
    }
}

// ---- deterministic fields -------------------------------------------------------------------

#[test]
fn deterministic_same_input_same_output() {
    let a = cipher(1, "acme", "ds-1", "email");
    let b = cipher(1, "acme", "ds-1", "email");
    let x = a.encrypt(b"ada@example.com").unwrap();
    assert_eq!(a.encrypt(b"ada@example.com").unwrap(), x);
    assert_eq!(b.encrypt(b"ada@example.com").unwrap(), x);
    assert_ne!(a.encrypt(b"bob@example.com").unwrap(), x);
    assert_ne!(a.encrypt(b"ada@example.co").unwrap(), x);
}

#[test]
fn deterministic_round_trips_every_s2v_length_class() {
    let c = cipher(2, "acme", "ds-1", "notes");
    // Empty, shorter than a block, exactly a block, longer (S2V pads below 16 bytes and
    // xors the last block from 16 on).
    for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 1000] {
        let pt: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        let ct = c.encrypt(&pt).unwrap();
        assert_eq!(ct.len(), 4 + 2 + 4 + 16 + len, "len {len}");
        assert_eq!(&ct[..4], b"KSV\x01");
        assert_eq!(&ct[4..10], b"\x00\x04ds-1");
        assert_eq!(&c.decrypt(&ct).unwrap()[..], &pt[..], "len {len}");
        assert_eq!(deterministic_secret_id(&ct).unwrap(), sid("ds-1"));
    }
}

#[test]
fn deterministic_unicode_ids_round_trip() {
    let c = cipher(3, "mandant-ä", "geheimnis-ß", "adresse.straße");
    let ct = c.encrypt("Müllerstraße 1".as_bytes()).unwrap();
    assert_eq!(deterministic_secret_id(&ct).unwrap(), sid("geheimnis-ß"));
    assert_eq!(&c.decrypt(&ct).unwrap()[..], "Müllerstraße 1".as_bytes());
}

#[test]
fn deterministic_contexts_differ_and_do_not_cross_decrypt() {
    let reference = cipher(1, "acme", "ds-1", "email");
    let ct = reference.encrypt(b"ada@example.com").unwrap();
    for (what, other) in [
        ("tenant", cipher(1, "evil", "ds-1", "email")),
        ("path", cipher(1, "acme", "ds-1", "phone")),
        ("secret id", cipher(1, "acme", "ds-2", "email")),
        ("secret", cipher(2, "acme", "ds-1", "email")),
    ] {
        let other_ct = other.encrypt(b"ada@example.com").unwrap();
        // The ciphertext proper (after the secret id prefix) differs, not only the prefix.
        assert_ne!(
            other_ct[other_ct.len() - 31..],
            ct[ct.len() - 31..],
            "{what}"
        );
        assert_eq!(other.decrypt(&ct).unwrap_err(), Error::Decrypt, "{what}");
        assert_eq!(
            reference.decrypt(&other_ct).unwrap_err(),
            Error::Decrypt,
            "{what}"
        );
    }
}

#[test]
fn deterministic_header_binds_tenant_path_and_secret_id_under_one_key() {
    // The same key bytes used under another context: only the associated data differs, so
    // this checks the header binding itself, independent of the key derivation.
    let key = det_key(&secret(4), "acme", "ds-1", "email");
    let make = |tenant: &str, id: &str, path: &str| {
        DeterministicCipher::new(&key, &t(tenant), &sid(id), &p(path)).unwrap()
    };
    let reference = make("acme", "ds-1", "email");
    let ct = reference.encrypt(b"value").unwrap();
    for (what, other) in [
        ("tenant", make("evil", "ds-1", "email")),
        ("path", make("acme", "ds-1", "phone")),
        // Same id length, so relabelling the prefix keeps the framing valid.
        ("secret id", make("acme", "ds-9", "email")),
        // Length prefixes keep tenant and path apart.
        ("boundary", make("acm", "ds-1", "eemail")),
    ] {
        let mut moved = ct.clone();
        moved[4..10].copy_from_slice(&other.encrypt(b"").unwrap()[4..10]);
        assert_eq!(other.decrypt(&moved).unwrap_err(), Error::Decrypt, "{what}");
        assert_ne!(other.encrypt(b"value").unwrap(), moved, "{what}");
    }
}

#[test]
fn deterministic_rejects_another_secret_id() {
    let a = cipher(5, "acme", "ds-1", "email");
    let b = cipher(5, "acme", "ds-22", "email");
    let ct = b.encrypt(b"x").unwrap();
    assert_eq!(deterministic_secret_id(&ct).unwrap(), sid("ds-22"));
    assert_eq!(a.decrypt(&ct).unwrap_err(), Error::Decrypt);
}

#[test]
fn deterministic_every_bit_flip_rejected() {
    let c = cipher(6, "acme", "ds-1", "ssn");
    for pt in [
        &b""[..],
        b"078-05-1120",
        b"a value longer than one AES block",
    ] {
        let ct = c.encrypt(pt).unwrap();
        for_each_bit_flip(&ct, |i, b| {
            assert!(
                c.decrypt(b).is_err(),
                "bit {i} accepted ({} bytes)",
                pt.len()
            );
        });
    }
}

#[test]
fn deterministic_every_strict_prefix_and_a_trailing_byte_rejected() {
    let c = cipher(7, "acme", "ds-1", "ssn");
    for pt in [&b""[..], b"078-05-1120"] {
        let ct = c.encrypt(pt).unwrap();
        for n in 0..ct.len() {
            assert!(c.decrypt(&ct[..n]).is_err(), "prefix of {n} bytes accepted");
        }
        for extra in [0u8, 0xff] {
            let mut longer = ct.clone();
            longer.push(extra);
            assert_eq!(c.decrypt(&longer).unwrap_err(), Error::Decrypt);
        }
    }
}

#[test]
fn deterministic_framing_errors() {
    let c = cipher(8, "acme", "ds-1", "email");
    let ct = c.encrypt(b"hello").unwrap();
    let fmt = |e: FormatError| Err::<SecretId, _>(Error::Format(e));

    let mut bad_magic = ct.clone();
    bad_magic[2] = b'F';
    assert_eq!(
        deterministic_secret_id(&bad_magic),
        fmt(FormatError::BadMagic)
    );
    let mut v2 = ct.clone();
    v2[3] = 2;
    assert_eq!(
        deterministic_secret_id(&v2),
        fmt(FormatError::UnknownVersion(2))
    );
    // An empty secret id, then a full SIV.
    let mut empty_id = b"KSV\x01\x00\x00".to_vec();
    empty_id.extend_from_slice(&[0; 16]);
    assert_eq!(
        deterministic_secret_id(&empty_id),
        fmt(FormatError::InvalidValue)
    );
    // A secret id longer than 256 bytes.
    let mut long_id = b"KSV\x01\x01\x01".to_vec();
    long_id.extend_from_slice(&[b'a'; 257 + 16]);
    assert_eq!(deterministic_secret_id(&long_id), fmt(FormatError::TooLong));
    // A control character in the secret id.
    let mut control = ct.clone();
    control[6] = b'\n';
    assert_eq!(
        deterministic_secret_id(&control),
        fmt(FormatError::InvalidValue)
    );
    // The SIV cut short.
    assert_eq!(
        deterministic_secret_id(&ct[..10 + 15]),
        fmt(FormatError::UnexpectedEnd)
    );
    assert_eq!(
        deterministic_secret_id(&ct[..10 + 16]).unwrap(),
        sid("ds-1")
    );
    // decrypt reports the same framing errors.
    for bad in [
        &bad_magic[..],
        &v2,
        &empty_id,
        &long_id,
        &control,
        &ct[..25],
    ] {
        assert_eq!(
            c.decrypt(bad).unwrap_err(),
            deterministic_secret_id(bad).unwrap_err()
        );
    }
}

#[test]
fn deterministic_needs_a_deterministic_key() {
    let s = secret(9);
    let bi = DerivedKey::derive(&s, &t("acme"), &sid("ds-1"), Purpose::BlindIndex, &p("e"));
    assert_eq!(
        DeterministicCipher::new(&bi, &t("acme"), &sid("ds-1"), &p("e")).unwrap_err(),
        Error::InvalidKey
    );
    let det = det_key(&s, "acme", "ds-1", "e");
    assert_eq!(
        BlindIndexer::new(&det, &t("acme"), &p("e"), 16).unwrap_err(),
        Error::InvalidKey
    );
}

#[test]
fn deterministic_matches_the_documented_layout() {
    let key = det_key(&secret(10), "acme", "ds-7", "customer.email");
    let c = DeterministicCipher::new(&key, &t("acme"), &sid("ds-7"), &p("customer.email")).unwrap();
    let pt = b"ada@example.com";
    let ct = c.encrypt(pt).unwrap();

    let mut header = b"KSV\x01".to_vec();
    lp16(&mut header, b"acme");
    lp16(&mut header, b"customer.email");
    lp16(&mut header, b"ds-7");
    let siv = Aes256SivKey::new(key.expose_secret().try_into().unwrap());
    let mut body = pt.to_vec();
    let tag = siv.seal_detached(&header, &mut body).unwrap();

    let mut want = b"KSV\x01".to_vec();
    lp16(&mut want, b"ds-7");
    want.extend_from_slice(&tag);
    want.extend_from_slice(&body);
    assert_eq!(ct, want);
}

// ---- blind indexes --------------------------------------------------------------------------

#[test]
fn blind_index_is_deterministic() {
    let a = indexer(1, "acme", "email", 16);
    let b = indexer(1, "acme", "email", 16);
    let x = a.compute(b"ada@example.com").unwrap();
    assert_eq!(x.len(), 16);
    assert_eq!(a.compute(b"ada@example.com").unwrap(), x);
    assert_eq!(b.compute(b"ada@example.com").unwrap(), x);
    assert_ne!(a.compute(b"bob@example.com").unwrap(), x);
    // The empty value has an index too, different from a one-byte zero value.
    let empty = a.compute(b"").unwrap();
    assert_eq!(empty.len(), 16);
    assert_ne!(empty, a.compute(b"\0").unwrap());
}

#[test]
fn blind_index_separates_tenant_path_and_secret() {
    let reference = indexer(1, "acme", "email", 32).compute(b"v").unwrap();
    for (what, other) in [
        ("tenant", indexer(1, "evil", "email", 32)),
        ("path", indexer(1, "acme", "phone", 32)),
        ("secret", indexer(2, "acme", "email", 32)),
    ] {
        assert_ne!(other.compute(b"v").unwrap(), reference, "{what}");
    }
    // The same key under another context: the message binds tenant and path by itself.
    let key = DerivedKey::from_bytes(Purpose::BlindIndex, &[5; 32]).unwrap();
    let idx = |tenant: &str, path: &str| {
        BlindIndexer::new(&key, &t(tenant), &p(path), 32)
            .unwrap()
            .compute(b"v")
            .unwrap()
    };
    let base = idx("acme", "email");
    assert_ne!(idx("evil", "email"), base);
    assert_ne!(idx("acme", "phone"), base);
    assert_ne!(idx("acm", "eemail"), base);
}

#[test]
fn blind_index_lengths_truncate_one_tag() {
    let full = indexer(3, "acme", "email", 32).compute(b"value").unwrap();
    assert_eq!(full.len(), 32);
    for len in [1usize, 2, 16, 31, 32] {
        let i = indexer(3, "acme", "email", len);
        assert_eq!(i.index_len(), len);
        assert_eq!(i.compute(b"value").unwrap(), full[..len], "len {len}");
    }
    let key = DerivedKey::from_bytes(Purpose::BlindIndex, &[5; 32]).unwrap();
    for len in [0, MAX_BLIND_INDEX_LEN + 1, 64, usize::MAX] {
        assert_eq!(
            BlindIndexer::new(&key, &t("acme"), &p("email"), len).unwrap_err(),
            Error::Limit,
            "len {len}"
        );
    }
}

#[test]
fn blind_index_matches_the_documented_hmac_call() {
    let key = DerivedKey::derive(
        &secret(11),
        &t("mandant-ä"),
        &sid("ds-1"),
        Purpose::BlindIndex,
        &p("adresse.straße"),
    );
    let indexer = BlindIndexer::new(&key, &t("mandant-ä"), &p("adresse.straße"), 32).unwrap();
    for value in [&b""[..], b"M\xc3\xbcller", &[0xa5; 300]] {
        let mut msg = b"keystead/v1/blind-index".to_vec();
        lp16(&mut msg, "mandant-ä".as_bytes());
        lp16(&mut msg, "adresse.straße".as_bytes());
        msg.extend_from_slice(&(value.len() as u32).to_be_bytes());
        msg.extend_from_slice(value);
        let mut mac = HmacSha256::new(key.expose_secret().try_into().unwrap());
        mac.update(&msg);
        assert_eq!(indexer.compute(value).unwrap(), mac.finalize());
    }
}
