//! Round trips of every format and operation, including edge sizes of the stream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use common::{c, d, p, pattern, rng, t};
use keystead_core::attachment::{AttachmentHeader, AttachmentLayout, GroupBinding};
use keystead_core::edek::{Edek, EdekHeader, Mode};
use keystead_core::envelope::{self, EdekPlacement, EncryptedDocument, FieldCipher};
use keystead_core::grant::{AccessBlock, Grant};
use keystead_core::seal::{Purpose, SealedKey};
use keystead_core::stream::{
    AttachmentParams, SEGMENT_CT_SIZE, SEGMENT_SIZE, SegmentDecryptor, StreamDecryptor,
    StreamEncryptor,
};
use keystead_core::*;

#[test]
fn ids_are_validated() {
    assert!(TenantId::new("").is_err());
    assert!(TenantId::new("a".repeat(257)).is_err());
    assert!(TenantId::new("a".repeat(256)).is_ok());
    assert!(TenantId::new("bad\nid").is_err());
    assert_eq!(TenantId::new("acme").unwrap().as_str(), "acme");
}

#[test]
fn leased_edek_round_trip() {
    let mut r = rng(1);
    let leased = LeasedKey::generate(&mut r);
    let dek = Dek::generate(&mut r);
    let edek = Edek::wrap_leased(
        &mut r,
        t("acme"),
        c("kms-1"),
        KeyVersion(3),
        &leased,
        b"kms-blob",
        &dek,
    )
    .unwrap();
    let parsed = Edek::parse(&edek.to_bytes()).unwrap();
    assert_eq!(parsed, edek);
    assert_eq!(parsed.mode(), Mode::Leased);
    assert_eq!(parsed.tenant().as_str(), "acme");
    assert_eq!(parsed.config_id().as_str(), "kms-1");
    assert_eq!(parsed.key_version(), KeyVersion(3));
    assert_eq!(parsed.leased_key_id(), Some(leased.id()));
    assert_eq!(parsed.wrapped_leased_key(), Some(&b"kms-blob"[..]));
    assert!(parsed.unwrap_leased(&leased).unwrap().ct_eq(&dek));
    // Another leased key (other id) and a key with the right id but other bytes both fail.
    assert_eq!(
        parsed
            .unwrap_leased(&LeasedKey::generate(&mut r))
            .unwrap_err(),
        Error::Decrypt
    );
    let forged = LeasedKey::from_bytes(leased.id(), [7; 32]);
    assert_eq!(parsed.unwrap_leased(&forged).unwrap_err(), Error::Decrypt);
    // Mode mismatch is a usage error, not a panic.
    assert_eq!(parsed.open_remote(&[0; 32]).unwrap_err(), Error::Usage);
}

#[test]
fn leased_wraps_never_repeat_subkeys() {
    let mut r = rng(2);
    let leased = LeasedKey::generate(&mut r);
    let dek = Dek::generate(&mut r);
    let a = Edek::wrap_leased(
        &mut r,
        t("acme"),
        c("k"),
        KeyVersion(1),
        &leased,
        b"x",
        &dek,
    )
    .unwrap();
    let b = Edek::wrap_leased(
        &mut r,
        t("acme"),
        c("k"),
        KeyVersion(1),
        &leased,
        b"x",
        &dek,
    )
    .unwrap();
    assert_ne!(
        a.to_bytes(),
        b.to_bytes(),
        "a fresh salt per wrap gives a fresh subkey"
    );
}

#[test]
fn remote_edek_binds_header() {
    let header = EdekHeader::remote(t("acme"), c("aws-1"), KeyVersion(1));
    let (dek, edek) = Edek::seal_remote(header, &[9; 32], b"kms-ciphertext").unwrap();
    let parsed = Edek::parse(&edek.to_bytes()).unwrap();
    assert_eq!(parsed.kms_ciphertext(), Some(&b"kms-ciphertext"[..]));
    assert!(parsed.open_remote(&[9; 32]).unwrap().ct_eq(&dek));
    // The same KMS plaintext under another tenant, config or version gives another DEK.
    for h in [
        EdekHeader::remote(t("other"), c("aws-1"), KeyVersion(1)),
        EdekHeader::remote(t("acme"), c("aws-2"), KeyVersion(1)),
        EdekHeader::remote(t("acme"), c("aws-1"), KeyVersion(2)),
    ] {
        let (other, _) = Edek::seal_remote(h, &[9; 32], b"kms-ciphertext").unwrap();
        assert!(!other.ct_eq(&dek));
    }
    assert_eq!(parsed.open_remote(&[9; 8]).unwrap_err(), Error::InvalidKey);
}

#[test]
fn asymmetric_edek_round_trip() {
    let mut r = rng(3);
    let tenant_key = EncryptionKeyPair::generate(&mut r);
    let dek = Dek::generate(&mut r);
    let edek = Edek::wrap_asymmetric(
        &mut r,
        t("acme"),
        c("x25519-1"),
        KeyVersion(1),
        tenant_key.public(),
        &dek,
    )
    .unwrap();
    let parsed = Edek::parse(&edek.to_bytes()).unwrap();
    assert_eq!(parsed.mode(), Mode::Asymmetric);
    assert!(parsed.unwrap_asymmetric(&tenant_key).unwrap().ct_eq(&dek));
    let other = EncryptionKeyPair::generate(&mut r);
    assert_eq!(
        parsed.unwrap_asymmetric(&other).unwrap_err(),
        Error::Decrypt
    );
}

#[test]
fn field_round_trip_and_binding() {
    let mut r = rng(4);
    let dek = Dek::generate(&mut r);
    let (tenant, doc, path) = (t("acme"), d("invoice/1"), p("customer.email"));
    let ct = envelope::encrypt_field(&mut r, &dek, &tenant, &doc, &path, b"a@example.com").unwrap();
    assert_eq!(ct.len(), 13 + envelope::FIELD_OVERHEAD);
    let pt = envelope::decrypt_field(&dek, &tenant, &doc, &path, &ct).unwrap();
    assert_eq!(&pt[..], b"a@example.com");
    let cipher = FieldCipher::new(&dek, &tenant, &doc);
    assert_eq!(&cipher.decrypt(&path, &ct).unwrap()[..], b"a@example.com");
    let empty = cipher.encrypt(&mut r, &path, b"").unwrap();
    assert!(cipher.decrypt(&path, &empty).unwrap().is_empty());
}

#[test]
fn document_round_trip_both_forms() {
    let mut r = rng(5);
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
    let fields: Vec<(FieldPath, &[u8])> = vec![(p("b"), b"two"), (p("a"), b"one"), (p("c.d"), b"")];
    for placement in [
        EdekPlacement::Detached,
        EdekPlacement::Attached(edek.clone()),
    ] {
        let doc = EncryptedDocument::encrypt(
            &mut r,
            &dek,
            t("acme"),
            d("doc-1"),
            placement,
            fields.iter().cloned(),
        )
        .unwrap();
        let bytes = doc.to_bytes().unwrap();
        let parsed = EncryptedDocument::parse(&bytes).unwrap();
        assert_eq!(parsed, doc);
        let paths: Vec<_> = parsed
            .fields()
            .iter()
            .map(|(p, _)| p.as_str().to_owned())
            .collect();
        assert_eq!(paths, ["a", "b", "c.d"]);
        let dek2 = match parsed.edek() {
            Some(e) => e.unwrap_leased(&leased).unwrap(),
            None => Dek::from_bytes(*dek.expose_secret()),
        };
        let plain = parsed.decrypt(&dek2).unwrap();
        assert_eq!(&plain[0].1[..], b"one");
        assert_eq!(&plain[1].1[..], b"two");
        assert!(plain[2].1.is_empty());
    }
    // Duplicate paths and an EDEK of another tenant are refused.
    let dup: Vec<(FieldPath, &[u8])> = vec![(p("a"), b"1"), (p("a"), b"2")];
    assert!(
        EncryptedDocument::encrypt(
            &mut r,
            &dek,
            t("acme"),
            d("x"),
            EdekPlacement::Detached,
            dup
        )
        .is_err()
    );
    let foreign = Edek::wrap_leased(
        &mut r,
        t("other"),
        c("k"),
        KeyVersion(1),
        &leased,
        b"w",
        &dek,
    )
    .unwrap();
    assert!(
        EncryptedDocument::encrypt(
            &mut r,
            &dek,
            t("acme"),
            d("x"),
            EdekPlacement::Attached(foreign),
            fields.iter().cloned()
        )
        .is_err()
    );
}

fn encrypt_attachment(
    seed: u64,
    data: &[u8],
    chunk: usize,
) -> (Dek, SigningKeyPair, AttachmentHeader, Vec<u8>) {
    let mut r = rng(seed);
    let dek = Dek::generate(&mut r);
    let author = SigningKeyPair::generate(&mut r);
    let params = AttachmentParams {
        document: d("att-1"),
        group: None,
    };
    let (mut enc, header) = StreamEncryptor::new(&mut r, &dek, &author, params).unwrap();
    let mut file = header.to_bytes();
    for part in data.chunks(chunk.max(1)) {
        enc.push(part, &mut file).unwrap();
    }
    enc.finish(&mut file).unwrap();
    (dek, author, header, file)
}

fn decrypt_attachment(
    file: &[u8],
    dek: &Dek,
    author: &SigningPublicKey,
    chunk: usize,
) -> Result<Vec<u8>> {
    let n = AttachmentHeader::encoded_len(&file[..6])?;
    let header = AttachmentHeader::parse(&file[..n])?;
    let mut dec = StreamDecryptor::new(&header, dek, author)?;
    let mut out = Vec::new();
    for part in file[n..].chunks(chunk.max(1)) {
        dec.push(part, &mut out)?;
    }
    dec.finish(&mut out)?;
    Ok(out)
}

#[test]
fn stream_round_trip_edge_sizes() {
    let s = SEGMENT_SIZE;
    for (i, len) in [0, 1, s - 1, s, s + 1, 2 * s, 2 * s + 7, 3 * s + 100]
        .into_iter()
        .enumerate()
    {
        let data = pattern(len);
        for chunk in [1000, s, s + 1, 1 << 20] {
            let (dek, author, header, file) = encrypt_attachment(10 + i as u64, &data, chunk);
            let expected_segments = if len == 0 { 1 } else { len.div_ceil(s) };
            let layout = AttachmentLayout::new(header.len() as u64, file.len() as u64).unwrap();
            assert_eq!(layout.segments(), expected_segments as u64, "len {len}");
            assert_eq!(layout.plaintext_len(), len as u64);
            for dchunk in [1, 4096, s + 16, 1 << 20] {
                if dchunk == 1 && len > s {
                    continue; // byte-at-a-time over large files is slow and adds nothing
                }
                let out = decrypt_attachment(&file, &dek, &author.public(), dchunk).unwrap();
                assert_eq!(out, data, "len {len} chunk {chunk} dchunk {dchunk}");
            }
        }
    }
}

#[test]
fn range_decryption_matches_slices() {
    let s = SEGMENT_SIZE as u64;
    let data = pattern(3 * SEGMENT_SIZE + 1234);
    let (dek, author, header, file) = encrypt_attachment(30, &data, 1 << 20);
    let sd = SegmentDecryptor::new(&header, &dek, &author.public(), file.len() as u64).unwrap();
    let fetch = |r: std::ops::Range<u64>| Ok(file[r.start as usize..r.end as usize].to_vec());
    let len = data.len() as u64;
    for (a, b) in [
        (0, 1),
        (0, len),
        (s - 1, s + 1),
        (s, 2 * s),
        (2 * s + 5, 3 * s + 1000),
        (len - 1, len),
        (10, 10),
        (len, len + 5),
        (100, len + 50),
    ] {
        let got = sd.read_range(a..b, fetch).unwrap();
        let (a2, b2) = (a.min(len) as usize, b.min(len) as usize);
        assert_eq!(got, data[a2..b2.max(a2)], "range {a}..{b}");
    }
}

#[test]
fn grants_and_access_block() {
    let mut r = rng(40);
    let dek = Dek::generate(&mut r);
    let author = SigningKeyPair::generate(&mut r);
    let params = AttachmentParams {
        document: d("att-9"),
        group: Some(GroupBinding {
            group: GroupId::new("team").unwrap(),
            epoch: 4,
            head: [5; 32],
        }),
    };
    let (_enc, header) = StreamEncryptor::new(&mut r, &dek, &author, params).unwrap();
    let header = AttachmentHeader::parse(&header.to_bytes()).unwrap();
    assert_eq!(header.group().unwrap().epoch, 4);
    let alice = EncryptionKeyPair::generate(&mut r);
    let bob = EncryptionKeyPair::generate(&mut r);
    let mut block = AccessBlock::new(&header);
    for (id, kp) in [("alice-phone", &alice), ("bob-laptop", &bob)] {
        let g = Grant::create(
            &mut r,
            &header,
            &dek,
            &RecipientId::new(id).unwrap(),
            kp.public(),
            0,
            &author,
        )
        .unwrap();
        block.add(g).unwrap();
    }
    let block = AccessBlock::parse(&block.to_bytes().unwrap()).unwrap();
    let g = block.find(&bob.public().fingerprint()).unwrap();
    assert_eq!(g.granter(), &author.public());
    assert!(g.open(&header, &bob).unwrap().ct_eq(&dek));
    assert_eq!(g.open(&header, &alice).unwrap_err(), Error::Decrypt);
    let mut block = block;
    assert_eq!(block.revoke(&bob.public().fingerprint()), 1);
    assert!(block.find(&bob.public().fingerprint()).is_none());
    assert!(block.find(&alice.public().fingerprint()).is_some());
    // A grant made with a DEK that is not the header's is refused at creation.
    let wrong = Dek::generate(&mut r);
    assert!(
        Grant::create(
            &mut r,
            &header,
            &wrong,
            &RecipientId::new("x").unwrap(),
            bob.public(),
            0,
            &author
        )
        .is_err()
    );
}

#[test]
fn sealed_key_round_trip() {
    let mut r = rng(50);
    let kp = EncryptionKeyPair::generate(&mut r);
    let rid = RecipientId::new("device-1").unwrap();
    let sk = SealedKey::seal(
        &mut r,
        Purpose::GroupKey,
        &rid,
        kp.public(),
        "group-7",
        12,
        b"aad",
        &[3; 32],
    )
    .unwrap();
    let parsed = SealedKey::parse(&sk.to_bytes()).unwrap();
    assert_eq!(parsed, sk);
    assert_eq!(*parsed.open(&kp, b"aad").unwrap(), [3; 32]);
    assert_eq!(parsed.open(&kp, b"other").unwrap_err(), Error::Decrypt);
    // Key pair export/import keeps the same public key.
    let again = EncryptionKeyPair::from_secret_bytes(&kp.expose_secret());
    assert_eq!(again.public(), kp.public());
}

#[test]
fn secrets_do_not_print() {
    let mut r = rng(60);
    let dek = Dek::generate(&mut r);
    let hex: String = dek
        .expose_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let s = format!("{dek:?}");
    assert!(!s.contains(&hex[..8]) && s.contains("redacted"));
    let lk = LeasedKey::generate(&mut r);
    let lk_hex: String = lk
        .expose_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!format!("{lk:?}").contains(&lk_hex[..8]));
    let sk = SigningKeyPair::generate(&mut r);
    let sk_hex: String = sk
        .expose_secret()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(!format!("{sk:?}").contains(&sk_hex[..8]));
}

#[test]
fn stream_random_chunking_round_trip() {
    use rand_core::Rng;
    let data = pattern(4 * SEGMENT_SIZE + 3);
    let (dek, author, header, file) = encrypt_attachment(70, &data, SEGMENT_SIZE - 3);
    let mut r = rng(71);
    for _ in 0..20 {
        let hlen = header.len();
        let mut dec = StreamDecryptor::new(&header, &dek, &author.public()).unwrap();
        let mut out = Vec::new();
        let mut rest = &file[hlen..];
        while !rest.is_empty() {
            let n = ((r.next_u32() as usize) % (2 * SEGMENT_CT_SIZE)).clamp(1, rest.len());
            dec.push(&rest[..n], &mut out).unwrap();
            rest = &rest[n..];
        }
        dec.finish(&mut out).unwrap();
        assert_eq!(out, data);
    }
}

#[test]
fn layout_rejects_impossible_lengths() {
    use keystead_core::attachment::TRAILER_LEN;
    assert_eq!(
        AttachmentLayout::new(u64::MAX, u64::MAX).unwrap_err(),
        Error::Truncated
    );
    assert_eq!(
        AttachmentLayout::new(200, 10).unwrap_err(),
        Error::Truncated
    );
    // A body whose last segment would be shorter than a tag.
    let seg = SEGMENT_CT_SIZE as u64;
    let bad = 200 + seg + 5 + TRAILER_LEN as u64;
    assert!(AttachmentLayout::new(200, bad).is_err());
    let ok = AttachmentLayout::new(200, 200 + seg + 16 + TRAILER_LEN as u64).unwrap();
    assert_eq!(ok.segments(), 2);
    assert_eq!(ok.plaintext_len(), SEGMENT_SIZE as u64);
    assert_eq!(ok.trailer_range().end, 200 + seg + 16 + TRAILER_LEN as u64);
}
