//! Tampering: every single-bit flip of every format is rejected; swaps between tenants,
//! documents and fields are rejected; stream truncation, reordering, duplication, splicing
//! and a wrong key commitment are detected; malformed framing is an error, never a panic.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::collections::HashMap;

use common::{c, d, for_each_bit_flip, p, pattern, rng, t};
use keystead_core::attachment::{AttachmentHeader, TRAILER_LEN};
use keystead_core::edek::{Edek, EdekHeader};
use keystead_core::envelope::{self, EdekPlacement, EncryptedDocument};
use keystead_core::grant::{AccessBlock, Grant};
use keystead_core::seal::{Purpose, SealedKey};
use keystead_core::stream::{
    AttachmentParams, SEGMENT_CT_SIZE, SEGMENT_SIZE, SegmentDecryptor, StreamDecryptor,
    StreamEncryptor,
};
use keystead_core::*;

#[test]
fn leased_edek_every_bit_flip_rejected() {
    let mut r = rng(100);
    let leased = LeasedKey::generate(&mut r);
    let dek = Dek::generate(&mut r);
    let edek = Edek::wrap_leased(
        &mut r,
        t("acme"),
        c("kms"),
        KeyVersion(1),
        &leased,
        b"wrapped-leased-key",
        &dek,
    )
    .unwrap()
    .to_bytes();
    for_each_bit_flip(&edek, |i, b| {
        let res = Edek::parse(b).and_then(|e| e.unwrap_leased(&leased));
        assert!(res.is_err(), "bit {i} accepted");
    });
}

#[test]
fn asymmetric_edek_every_bit_flip_rejected() {
    let mut r = rng(101);
    let kp = EncryptionKeyPair::generate(&mut r);
    let dek = Dek::generate(&mut r);
    let edek = Edek::wrap_asymmetric(&mut r, t("acme"), c("x"), KeyVersion(2), kp.public(), &dek)
        .unwrap()
        .to_bytes();
    for_each_bit_flip(&edek, |i, b| {
        let res = Edek::parse(b).and_then(|e| e.unwrap_asymmetric(&kp));
        assert!(res.is_err(), "bit {i} accepted");
    });
}

/// A stand-in KMS: it answers decrypt only for ciphertexts it issued, like a real KMS.
struct FakeKms(HashMap<Vec<u8>, [u8; 32]>);

#[test]
fn remote_edek_every_bit_flip_yields_no_usable_key() {
    let mut kms = FakeKms(HashMap::new());
    kms.0.insert(b"kms-ct-1".to_vec(), [42; 32]);
    let header = EdekHeader::remote(t("acme"), c("aws"), KeyVersion(1));
    let (dek, edek) = Edek::seal_remote(header, &[42; 32], b"kms-ct-1").unwrap();
    let edek = edek.to_bytes();
    for_each_bit_flip(&edek, |i, b| {
        let Ok(e) = Edek::parse(b) else { return };
        let Some(p) = kms.0.get(e.kms_ciphertext().unwrap()) else {
            return;
        };
        let got = e.open_remote(p).unwrap();
        assert!(
            !got.ct_eq(&dek),
            "bit {i}: the original DEK came out of a tampered EDEK"
        );
    });
}

#[test]
fn field_every_bit_flip_rejected() {
    let mut r = rng(102);
    let dek = Dek::generate(&mut r);
    let (tn, dc, pa) = (t("acme"), d("doc"), p("ssn"));
    let ct = envelope::encrypt_field(&mut r, &dek, &tn, &dc, &pa, b"078-05-1120").unwrap();
    for_each_bit_flip(&ct, |i, b| {
        assert!(
            envelope::decrypt_field(&dek, &tn, &dc, &pa, b).is_err(),
            "bit {i} accepted"
        );
    });
}

#[test]
fn field_swaps_between_tenants_documents_paths_rejected() {
    let mut r = rng(103);
    let dek = Dek::generate(&mut r);
    let ct =
        envelope::encrypt_field(&mut r, &dek, &t("acme"), &d("doc-1"), &p("email"), b"x").unwrap();
    assert!(envelope::decrypt_field(&dek, &t("acme"), &d("doc-1"), &p("email"), &ct).is_ok());
    for (tn, dc, pa) in [
        ("evil", "doc-1", "email"),
        ("acme", "doc-2", "email"),
        ("acme", "doc-1", "phone"),
    ] {
        let res = envelope::decrypt_field(&dek, &t(tn), &d(dc), &p(pa), &ct);
        assert_eq!(res.unwrap_err(), Error::Decrypt, "{tn}/{dc}/{pa}");
    }
    // Swapping two fields' ciphertexts inside one document fails too.
    let a = envelope::encrypt_field(&mut r, &dek, &t("acme"), &d("doc-1"), &p("a"), b"1").unwrap();
    assert!(envelope::decrypt_field(&dek, &t("acme"), &d("doc-1"), &p("b"), &a).is_err());
}

#[test]
fn document_every_bit_flip_rejected_both_forms() {
    let mut r = rng(104);
    let leased = LeasedKey::generate(&mut r);
    let dek = Dek::generate(&mut r);
    let edek = Edek::wrap_leased(
        &mut r,
        t("acme"),
        c("k"),
        KeyVersion(1),
        &leased,
        b"w",
        &dek,
    )
    .unwrap();
    let fields: Vec<(FieldPath, &[u8])> = vec![(p("name"), b"Ada"), (p("zip"), b"12345")];
    for placement in [EdekPlacement::Detached, EdekPlacement::Attached(edek)] {
        let attached = matches!(placement, EdekPlacement::Attached(_));
        let bytes = EncryptedDocument::encrypt(
            &mut r,
            &dek,
            t("acme"),
            d("doc-1"),
            placement,
            fields.iter().cloned(),
        )
        .unwrap()
        .to_bytes()
        .unwrap();
        for_each_bit_flip(&bytes, |i, b| {
            let res = EncryptedDocument::parse(b).and_then(|doc| {
                // A detached document is decrypted for the tenant and document the caller
                // expects; an attached one with the DEK its own EDEK yields.
                if doc.tenant() != &t("acme") || doc.document_id() != &d("doc-1") {
                    return Err(Error::Decrypt);
                }
                let k = match doc.edek() {
                    Some(e) => e.unwrap_leased(&leased)?,
                    None => Dek::from_bytes(*dek.expose_secret()),
                };
                doc.decrypt(&k).map(|_| ())
            });
            assert!(res.is_err(), "attached={attached} bit {i} accepted");
        });
    }
}

#[test]
fn document_moved_to_another_tenant_or_id_fails() {
    let mut r = rng(105);
    let dek = Dek::generate(&mut r);
    let fields: Vec<(FieldPath, &[u8])> = vec![(p("f"), b"v")];
    let a = EncryptedDocument::encrypt(
        &mut r,
        &dek,
        t("acme"),
        d("doc-1"),
        EdekPlacement::Detached,
        fields.clone(),
    )
    .unwrap();
    // Re-frame the same field ciphertexts as another tenant's / document's document.
    for (tn, dc) in [("evil", "doc-1"), ("acme", "doc-2")] {
        let fake = EncryptedDocument::encrypt(
            &mut r,
            &dek,
            t(tn),
            d(dc),
            EdekPlacement::Detached,
            fields.clone(),
        )
        .unwrap();
        let mut bytes = fake.to_bytes().unwrap();
        let fake_ct = &fake.fields()[0].1;
        let real_ct = &a.fields()[0].1;
        let pos = bytes
            .windows(fake_ct.len())
            .position(|w| w == &fake_ct[..])
            .unwrap();
        bytes[pos..pos + real_ct.len()].copy_from_slice(real_ct);
        let doc = EncryptedDocument::parse(&bytes).unwrap();
        assert_eq!(doc.decrypt(&dek).unwrap_err(), Error::Decrypt, "{tn}/{dc}");
    }
}

#[test]
fn edek_swapped_between_tenants_fails() {
    let mut r = rng(106);
    let leased = LeasedKey::generate(&mut r);
    let dek = Dek::generate(&mut r);
    let a = Edek::wrap_leased(
        &mut r,
        t("acme"),
        c("k"),
        KeyVersion(1),
        &leased,
        b"w",
        &dek,
    )
    .unwrap()
    .to_bytes();
    let b = Edek::wrap_leased(
        &mut r,
        t("evil"),
        c("k"),
        KeyVersion(1),
        &leased,
        b"w",
        &dek,
    )
    .unwrap()
    .to_bytes();
    // Graft acme's salt and wrapped DEK onto evil's header (same lengths: "acme"/"evil").
    let mut graft = b.clone();
    let tail = 24 + 48;
    graft[b.len() - tail..].copy_from_slice(&a[a.len() - tail..]);
    assert_eq!(
        Edek::parse(&graft)
            .unwrap()
            .unwrap_leased(&leased)
            .unwrap_err(),
        Error::Decrypt
    );
}

struct Att {
    dek: Dek,
    author: SigningKeyPair,
    header: AttachmentHeader,
    file: Vec<u8>,
}

fn attachment(seed: u64, len: usize) -> Att {
    let mut r = rng(seed);
    let dek = Dek::generate(&mut r);
    let author = SigningKeyPair::generate(&mut r);
    let params = AttachmentParams {
        document: d("att"),
        group: None,
    };
    let (mut enc, header) = StreamEncryptor::new(&mut r, &dek, &author, params).unwrap();
    let mut file = header.to_bytes();
    enc.push(&pattern(len), &mut file).unwrap();
    enc.finish(&mut file).unwrap();
    Att {
        dek,
        author,
        header,
        file,
    }
}

fn decrypt(file: &[u8], dek: &Dek, author: &SigningPublicKey) -> Result<Vec<u8>> {
    let n = AttachmentHeader::encoded_len(file.get(..6).ok_or(Error::Truncated)?)?;
    let header = AttachmentHeader::parse(file.get(..n).ok_or(Error::Truncated)?)?;
    let mut dec = StreamDecryptor::new(&header, dek, author)?;
    let mut out = Vec::new();
    dec.push(&file[n..], &mut out)?;
    dec.finish(&mut out)?;
    Ok(out)
}

#[test]
fn attachment_header_every_bit_flip_rejected() {
    let a = attachment(200, 100);
    let hlen = a.header.len();
    let mut file = a.file.clone();
    for i in 0..hlen * 8 {
        file[i / 8] ^= 1 << (i % 8);
        assert!(
            decrypt(&file, &a.dek, &a.author.public()).is_err(),
            "header bit {i} accepted"
        );
        file[i / 8] ^= 1 << (i % 8);
    }
}

#[test]
fn attachment_segment_bit_flips_rejected() {
    // One full segment and a short final one. Every bit of the final segment and the trailer
    // is flipped through the streaming decryptor; the full segment's first and last 64 bytes
    // and a stride through its middle through the random-access decryptor.
    let a = attachment(201, SEGMENT_SIZE + 300);
    let author = a.author.public();
    let hlen = a.header.len();
    let final_start = hlen + SEGMENT_CT_SIZE;
    let mut file = a.file.clone();
    for i in final_start * 8..file.len() * 8 {
        file[i / 8] ^= 1 << (i % 8);
        assert!(decrypt(&file, &a.dek, &author).is_err(), "bit {i} accepted");
        file[i / 8] ^= 1 << (i % 8);
    }
    let sd = SegmentDecryptor::new(&a.header, &a.dek, &author, file.len() as u64).unwrap();
    let seg0 = file[hlen..final_start].to_vec();
    let bits = seg0.len() * 8;
    let picks = (0..512)
        .chain(bits - 512..bits)
        .chain((512..bits - 512).step_by(509));
    let mut seg = seg0.clone();
    let mut out = Vec::new();
    for i in picks {
        seg[i / 8] ^= 1 << (i % 8);
        assert!(
            sd.decrypt_segment(0, &seg, &mut out).is_err(),
            "segment bit {i} accepted"
        );
        assert!(out.is_empty(), "plaintext released from a forged segment");
        seg[i / 8] ^= 1 << (i % 8);
    }
    sd.decrypt_segment(0, &seg0, &mut out).unwrap();
    assert_eq!(out, pattern(SEGMENT_SIZE));
}

#[test]
fn truncation_is_never_a_clean_end() {
    let a = attachment(202, 2 * SEGMENT_SIZE + 10);
    let author = a.author.public();
    let hlen = a.header.len();
    let full = a.file.len();
    let cuts = [
        hlen, // no segments at all
        hlen + 1,
        hlen + SEGMENT_CT_SIZE,          // at a segment boundary
        hlen + 2 * SEGMENT_CT_SIZE,      // all full segments, no final one
        hlen + 2 * SEGMENT_CT_SIZE + 26, // final segment without trailer
        full - TRAILER_LEN,
        full - 1,
    ];
    for cut in cuts {
        let err = decrypt(&a.file[..cut], &a.dek, &author).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Truncated | Error::Decrypt | Error::Signature | Error::Format(_)
            ),
            "cut {cut}: {err:?}"
        );
    }
    // Cut exactly at the end of a full segment: the decryptor must not mistake the last
    // full segment for a final one.
    let mut dec = StreamDecryptor::new(&a.header, &a.dek, &author).unwrap();
    let mut out = Vec::new();
    dec.push(
        &a.file[hlen..hlen + 2 * SEGMENT_CT_SIZE + TRAILER_LEN],
        &mut out,
    )
    .unwrap();
    assert!(dec.finish(&mut out).is_err());
    assert_eq!(
        decrypt(&a.file, &a.dek, &author).unwrap(),
        pattern(2 * SEGMENT_SIZE + 10)
    );
}

#[test]
fn reordered_duplicated_spliced_segments_rejected() {
    let a = attachment(203, 3 * SEGMENT_SIZE + 10);
    let b = attachment(204, 3 * SEGMENT_SIZE + 10);
    let author = a.author.public();
    let hlen = a.header.len();
    let seg = |f: &[u8], i: usize| {
        f[hlen + i * SEGMENT_CT_SIZE..hlen + (i + 1) * SEGMENT_CT_SIZE].to_vec()
    };
    let header = a.file[..hlen].to_vec();
    let tail = a.file[hlen + 3 * SEGMENT_CT_SIZE..].to_vec();
    let build = |segs: Vec<Vec<u8>>| {
        let mut f = header.clone();
        for s in segs {
            f.extend_from_slice(&s);
        }
        f.extend_from_slice(&tail);
        f
    };
    let f = &a.file;
    let swapped = build(vec![seg(f, 1), seg(f, 0), seg(f, 2)]);
    let duplicated = build(vec![seg(f, 0), seg(f, 0), seg(f, 2)]);
    let dropped = build(vec![seg(f, 0), seg(f, 2)]);
    // b has the same length and the same segment positions, but another header and DEK;
    // a segment of b under a's DEK (or a's header) fails.
    let spliced = build(vec![seg(f, 0), seg(&b.file, 1), seg(f, 2)]);
    for (name, file) in [
        ("swapped", swapped),
        ("duplicated", duplicated),
        ("dropped", dropped),
        ("spliced", spliced),
    ] {
        assert!(decrypt(&file, &a.dek, &author).is_err(), "{name} accepted");
    }
    // Same DEK, two files: segments of one are still rejected in the other (the header's
    // random nonce and bytes are in the payload key and the AAD).
    let mut r = rng(205);
    let dek = Dek::generate(&mut r);
    let mk = |r: &mut chacha20::ChaCha20Rng| {
        let (mut e, h) = StreamEncryptor::new(
            r,
            &dek,
            &a.author,
            AttachmentParams {
                document: d("att"),
                group: None,
            },
        )
        .unwrap();
        let mut file = h.to_bytes();
        e.push(&pattern(2 * SEGMENT_SIZE), &mut file).unwrap();
        e.finish(&mut file).unwrap();
        file
    };
    let f1 = mk(&mut r);
    let f2 = mk(&mut r);
    let mut mixed = f1.clone();
    mixed[hlen..hlen + SEGMENT_CT_SIZE].copy_from_slice(&f2[hlen..hlen + SEGMENT_CT_SIZE]);
    assert!(decrypt(&mixed, &dek, &author).is_err());
    assert!(decrypt(&f1, &dek, &author).is_ok());
}

#[test]
fn wrong_commitment_and_wrong_author_rejected_before_plaintext() {
    let a = attachment(206, 1000);
    let mut r = rng(207);
    // Another DEK: the key commitment check fails before any segment is decrypted.
    let other = Dek::generate(&mut r);
    let err = StreamDecryptor::new(&a.header, &other, &a.author.public())
        .err()
        .unwrap();
    assert_eq!(err, Error::Decrypt);
    assert!(
        SegmentDecryptor::new(&a.header, &other, &a.author.public(), a.file.len() as u64).is_err()
    );
    // Another expected author: rejected even though the signature is valid for the header's key.
    let mallory = SigningKeyPair::generate(&mut r);
    let err = StreamDecryptor::new(&a.header, &a.dek, &mallory.public())
        .err()
        .unwrap();
    assert_eq!(err, Error::Signature);
    // A co-recipient who knows the DEK re-encrypts different content under the author's
    // header: segments authenticate, but the author's trailer signature does not.
    let hlen = a.header.len();
    let mut forged = a.file[..hlen].to_vec();
    let sd_header = AttachmentHeader::parse(&forged).unwrap();
    let body = {
        // Re-create segments with the DEK by encrypting through a fresh encryptor that
        // reuses the header is not possible through the API; instead, take a valid file of
        // the same DEK and author but different content, and graft its body.
        let (mut e, h2) = StreamEncryptor::new(
            &mut r,
            &a.dek,
            &mallory,
            AttachmentParams {
                document: d("att"),
                group: None,
            },
        )
        .unwrap();
        let mut f = h2.to_bytes();
        e.push(b"forged", &mut f).unwrap();
        e.finish(&mut f).unwrap();
        f[h2.len()..].to_vec()
    };
    forged.extend_from_slice(&body);
    assert!(decrypt(&forged, &a.dek, &sd_header.author().clone()).is_err());
}

#[test]
fn grant_and_sealed_key_every_bit_flip_rejected() {
    let mut r = rng(208);
    let a = attachment(209, 10);
    let bob = EncryptionKeyPair::generate(&mut r);
    let grant = Grant::create(
        &mut r,
        &a.header,
        &a.dek,
        &RecipientId::new("bob").unwrap(),
        bob.public(),
        0,
        &a.author,
    )
    .unwrap();
    let bytes = grant.to_bytes();
    for_each_bit_flip(&bytes, |i, b| {
        assert!(
            Grant::parse(b)
                .and_then(|g| g.open(&a.header, &bob))
                .is_err(),
            "grant bit {i} accepted"
        );
    });
    let mut block = AccessBlock::new(&a.header);
    block.add(grant).unwrap();
    let bytes = block.to_bytes().unwrap();
    let bob_fp = bob.public().fingerprint();
    for_each_bit_flip(&bytes, |i, b| {
        let res = AccessBlock::parse(b).and_then(|blk| {
            if blk.header_hash() != a.header.hash() {
                return Err(Error::Decrypt);
            }
            blk.find(&bob_fp)
                .ok_or(Error::Decrypt)?
                .open(&a.header, &bob)
                .map(|_| ())
        });
        assert!(res.is_err(), "access block bit {i} accepted");
    });
    let sk = SealedKey::seal(
        &mut r,
        Purpose::GroupKey,
        &RecipientId::new("bob").unwrap(),
        bob.public(),
        "g",
        1,
        b"ctx",
        &[1; 32],
    )
    .unwrap()
    .to_bytes();
    for_each_bit_flip(&sk, |i, b| {
        assert!(
            SealedKey::parse(b)
                .and_then(|k| k.open(&bob, b"ctx"))
                .is_err(),
            "sealed key bit {i} accepted"
        );
    });
}

#[test]
fn grant_for_another_attachment_rejected() {
    let mut r = rng(210);
    let a = attachment(211, 10);
    let b = attachment(212, 10);
    let bob = EncryptionKeyPair::generate(&mut r);
    let g = Grant::create(
        &mut r,
        &a.header,
        &a.dek,
        &RecipientId::new("bob").unwrap(),
        bob.public(),
        0,
        &a.author,
    )
    .unwrap();
    assert!(g.open(&b.header, &bob).is_err());
    let mut block = AccessBlock::new(&b.header);
    assert_eq!(block.add(g).unwrap_err(), Error::Signature);
}

/// Every format: a wrong version byte, a trailing byte and an oversize length are errors.
#[test]
fn framing_errors_never_panic() {
    let mut r = rng(213);
    let leased = LeasedKey::generate(&mut r);
    let dek = Dek::generate(&mut r);
    let kp = EncryptionKeyPair::generate(&mut r);
    let a = attachment(214, 10);
    let edek = Edek::wrap_leased(
        &mut r,
        t("acme"),
        c("k"),
        KeyVersion(1),
        &leased,
        b"w",
        &dek,
    )
    .unwrap();
    let doc = EncryptedDocument::encrypt(
        &mut r,
        &dek,
        t("acme"),
        d("x"),
        EdekPlacement::Attached(edek.clone()),
        vec![(p("f"), &b"v"[..])],
    )
    .unwrap()
    .to_bytes()
    .unwrap();
    let field = envelope::encrypt_field(&mut r, &dek, &t("acme"), &d("x"), &p("f"), b"v").unwrap();
    let grant = Grant::create(
        &mut r,
        &a.header,
        &a.dek,
        &RecipientId::new("r").unwrap(),
        kp.public(),
        0,
        &a.author,
    )
    .unwrap();
    let mut block = AccessBlock::new(&a.header);
    block.add(grant.clone()).unwrap();
    let sealed = SealedKey::seal(
        &mut r,
        Purpose::Grant,
        &RecipientId::new("r").unwrap(),
        kp.public(),
        "o",
        0,
        b"",
        &[0; 32],
    )
    .unwrap();

    type Parse = fn(&[u8]) -> Result<()>;
    let cases: Vec<(&str, Vec<u8>, Parse)> = vec![
        ("edek", edek.to_bytes(), |b| Edek::parse(b).map(|_| ())),
        ("document", doc, |b| EncryptedDocument::parse(b).map(|_| ())),
        ("header", a.header.to_bytes(), |b| {
            AttachmentHeader::parse(b).map(|_| ())
        }),
        ("grant", grant.to_bytes(), |b| Grant::parse(b).map(|_| ())),
        ("block", block.to_bytes().unwrap(), |b| {
            AccessBlock::parse(b).map(|_| ())
        }),
        ("sealed", sealed.to_bytes(), |b| {
            SealedKey::parse(b).map(|_| ())
        }),
    ];
    for (name, bytes, parse) in cases {
        parse(&bytes).unwrap_or_else(|e| panic!("{name}: valid bytes rejected: {e:?}"));
        let mut v = bytes.clone();
        v[3] = 2;
        assert_eq!(
            parse(&v).unwrap_err(),
            Error::Format(FormatError::UnknownVersion(2)),
            "{name}"
        );
        v[3] = 0;
        assert_eq!(
            parse(&v).unwrap_err(),
            Error::Format(FormatError::UnknownVersion(0)),
            "{name}"
        );
        let mut v = bytes.clone();
        v.push(0);
        assert!(parse(&v).is_err(), "{name}: trailing byte accepted");
        let mut v = bytes.clone();
        v[0] ^= 0x20;
        assert_eq!(
            parse(&v).unwrap_err(),
            Error::Format(FormatError::BadMagic),
            "{name}"
        );
        for n in 0..bytes.len() {
            assert!(
                parse(&bytes[..n]).is_err(),
                "{name}: prefix of {n} bytes accepted"
            );
        }
    }
    // The field's magic and version are checked on decrypt too.
    let mut v = field.clone();
    v[3] = 9;
    assert_eq!(
        envelope::decrypt_field(&dek, &t("acme"), &d("x"), &p("f"), &v).unwrap_err(),
        Error::Format(FormatError::UnknownVersion(9))
    );
    // Oversize lengths: an EDEK whose wrapped-leased-key length claims 0xFFFF bytes, and a
    // remote EDEK over MAX_KMS_BLOB.
    let mut e = edek.to_bytes();
    let pos = 4 + 1 + 2 + 4 + 2 + 1 + 4 + 16; // magic, mode, lp16 "acme", lp16 "k", version, key id
    e[pos..pos + 2].copy_from_slice(&[0xFF, 0xFF]);
    assert_eq!(
        Edek::parse(&e).unwrap_err(),
        Error::Format(FormatError::TooLong)
    );
    let (_, remote) = Edek::seal_remote(
        EdekHeader::remote(t("a"), c("b"), KeyVersion(1)),
        &[1; 32],
        b"c",
    )
    .unwrap();
    let mut e = remote.to_bytes();
    let n = e.len();
    e[n - 3..n - 1].copy_from_slice(&4097u16.to_be_bytes());
    assert_eq!(
        Edek::parse(&e).unwrap_err(),
        Error::Format(FormatError::TooLong)
    );
    // Header length field lying about the header.
    let mut h = a.header.to_bytes();
    h[4..6].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(AttachmentHeader::parse(&h).is_err());
    h[4..6].copy_from_slice(&1u16.to_be_bytes());
    assert!(AttachmentHeader::parse(&h).is_err());
}

#[test]
fn decryptor_refuses_use_after_error() {
    let a = attachment(215, SEGMENT_SIZE * 2);
    let hlen = a.header.len();
    let mut file = a.file.clone();
    file[hlen + 5] ^= 1;
    let mut dec = StreamDecryptor::new(&a.header, &a.dek, &a.author.public()).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        dec.push(&file[hlen..], &mut out).unwrap_err(),
        Error::Decrypt
    );
    assert!(out.is_empty());
    assert_eq!(dec.push(&[0], &mut out).unwrap_err(), Error::Usage);
}

#[test]
fn cut_at_segment_boundary_reports_truncated() {
    let a = attachment(216, 3 * SEGMENT_SIZE);
    let hlen = a.header.len();
    // Two full segments and the trailer bytes: the second segment is not a final one.
    let mut dec = StreamDecryptor::new(&a.header, &a.dek, &a.author.public()).unwrap();
    let mut out = Vec::new();
    dec.push(&a.file[hlen..hlen + 2 * SEGMENT_CT_SIZE], &mut out)
        .unwrap();
    dec.push(&a.file[a.file.len() - TRAILER_LEN..], &mut out)
        .unwrap();
    assert_eq!(dec.finish(&mut out).unwrap_err(), Error::Truncated);
    // A tampered final segment is a decryption failure, not a truncation.
    let mut file = a.file.clone();
    let n = file.len();
    file[n - TRAILER_LEN - 1] ^= 1;
    assert_eq!(
        decrypt(&file, &a.dek, &a.author.public()).unwrap_err(),
        Error::Decrypt
    );
}
