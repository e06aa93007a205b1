//! Criterion benchmarks of the core's hot paths: field envelopes, leased EDEKs, streamed
//! attachments, HPKE sealing and searchable fields. Results and goals are recorded in `docs/BENCHMARKS.md`.
//!
//! Run with `cargo bench -p keystead-core --bench core`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use chacha20::ChaCha20Rng;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::{Rng, SeedableRng};

use keystead_core::__private::ChaChaKey;
use keystead_core::attachment::AttachmentHeader;
use keystead_core::edek::Edek;
use keystead_core::envelope::{FieldCipher, decrypt_field, encrypt_field};
use keystead_core::seal::{Purpose, SealedKey};
use keystead_core::search::{
    self, BlindIndexer, DerivationSecret, DerivedKey, DeterministicCipher,
};
use keystead_core::stream::{AttachmentParams, SEGMENT_SIZE, StreamDecryptor, StreamEncryptor};
use keystead_core::{
    ConfigId, Dek, DocumentId, EncryptionKeyPair, FieldPath, KeyVersion, LeasedKey, RecipientId,
    SecretId, SigningKeyPair, SigningPublicKey, TenantId,
};

/// Field sizes: "100 B" and "10 KB" (10 KiB).
const FIELD_SIZES: [(usize, &str); 2] = [(100, "100 B"), (10 * 1024, "10 KB")];
/// Attachment size for the stream benchmarks.
const STREAM_LEN: usize = 64 * 1024 * 1024;
/// Size of each `push` into the stream encryptor and decryptor.
const CHUNK: usize = 1024 * 1024;

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(0x6b65_7973_7465_6164)
}

fn random_bytes(rng: &mut ChaCha20Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill_bytes(&mut v);
    v
}

struct Ids {
    tenant: TenantId,
    document: DocumentId,
    path: FieldPath,
    config: ConfigId,
}

fn ids() -> Ids {
    Ids {
        tenant: TenantId::new("tenant-0001").unwrap(),
        document: DocumentId::new("customers/8f14e45f-ceea-467f-a0e6-1b3c5e0c9a21").unwrap(),
        path: FieldPath::new("address.street").unwrap(),
        config: ConfigId::new("aws-kms-eu-west-1").unwrap(),
    }
}

fn bench_fields(c: &mut Criterion) {
    let mut rng = rng();
    let ids = ids();
    let dek = Dek::generate(&mut rng);
    let cipher = FieldCipher::new(&dek, &ids.tenant, &ids.document);

    let mut group = c.benchmark_group("field");
    for (len, label) in FIELD_SIZES {
        let pt = random_bytes(&mut rng, len);
        let ct = cipher.encrypt(&mut rng, &ids.path, &pt).unwrap();
        group.throughput(Throughput::Bytes(len as u64));

        group.bench_function(format!("encrypt {label}"), |b| {
            b.iter(|| {
                cipher
                    .encrypt(&mut rng, black_box(&ids.path), black_box(&pt))
                    .unwrap()
            });
        });
        group.bench_function(format!("decrypt {label}"), |b| {
            b.iter(|| {
                cipher
                    .decrypt(black_box(&ids.path), black_box(&ct))
                    .unwrap()
            });
        });
    }

    // The goal of ≤ 2 µs is for the pair, so measure it as one iteration.
    let pt = random_bytes(&mut rng, 100);
    group.throughput(Throughput::Bytes(100));
    group.bench_function("encrypt+decrypt 100 B", |b| {
        b.iter(|| {
            let ct = cipher
                .encrypt(&mut rng, black_box(&ids.path), black_box(&pt))
                .unwrap();
            cipher.decrypt(black_box(&ids.path), &ct).unwrap()
        });
    });

    // The one-shot functions build a FieldCipher (AES key schedule, GHASH key) per call:
    // the difference to the rows above is the key-schedule cost.
    group.bench_function("encrypt 100 B (FieldCipher per call)", |b| {
        b.iter(|| {
            encrypt_field(
                &mut rng,
                black_box(&dek),
                &ids.tenant,
                &ids.document,
                black_box(&ids.path),
                black_box(&pt),
            )
            .unwrap()
        });
    });
    group.bench_function("encrypt+decrypt 100 B (FieldCipher per call)", |b| {
        b.iter(|| {
            let ct = encrypt_field(
                &mut rng,
                black_box(&dek),
                &ids.tenant,
                &ids.document,
                black_box(&ids.path),
                black_box(&pt),
            )
            .unwrap();
            decrypt_field(
                black_box(&dek),
                &ids.tenant,
                &ids.document,
                black_box(&ids.path),
                &ct,
            )
            .unwrap()
        });
    });
    group.finish();
}

fn bench_edek(c: &mut Criterion) {
    let mut rng = rng();
    let ids = ids();
    let leased = LeasedKey::generate(&mut rng);
    // Stand-in for the KMS ciphertext of the leased key (AWS-sized).
    let wrapped_leased_key = random_bytes(&mut rng, 184);
    let dek = Dek::generate(&mut rng);
    let version = KeyVersion(3);
    let edek = Edek::wrap_leased(
        &mut rng,
        ids.tenant.clone(),
        ids.config.clone(),
        version,
        &leased,
        &wrapped_leased_key,
        &dek,
    )
    .unwrap();
    let edek_bytes = edek.to_bytes();

    let mut group = c.benchmark_group("edek leased");
    group.throughput(Throughput::Elements(1));
    group.bench_function("wrap", |b| {
        // The ids are taken by value: clone them outside the timed routine.
        b.iter_batched(
            || (ids.tenant.clone(), ids.config.clone()),
            |(tenant, config)| {
                Edek::wrap_leased(
                    &mut rng,
                    tenant,
                    config,
                    version,
                    black_box(&leased),
                    black_box(&wrapped_leased_key),
                    black_box(&dek),
                )
                .unwrap()
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("unwrap", |b| {
        b.iter(|| black_box(&edek).unwrap_leased(black_box(&leased)).unwrap());
    });
    group.throughput(Throughput::Bytes(edek_bytes.len() as u64));
    group.bench_function("parse", |b| {
        b.iter(|| Edek::parse(black_box(&edek_bytes)).unwrap());
    });
    group.finish();
}

/// Decrypts a whole attachment file into `out` (cleared first), pushing 1 MiB at a time.
fn decrypt_file(
    file: &[u8],
    header_len: usize,
    dek: &Dek,
    author: &SigningPublicKey,
    out: &mut Vec<u8>,
) {
    out.clear();
    let header = AttachmentHeader::parse(&file[..header_len]).unwrap();
    let mut dec = StreamDecryptor::new(&header, dek, author).unwrap();
    for chunk in file[header_len..].chunks(CHUNK) {
        dec.push(chunk, out).unwrap();
    }
    dec.finish(out).unwrap();
}

fn bench_stream(c: &mut Criterion) {
    let mut rng = rng();
    let ids = ids();
    let dek = Dek::generate(&mut rng);
    let author = SigningKeyPair::generate(&mut rng);
    let author_pk = author.public();
    let params = AttachmentParams {
        document: ids.document.clone(),
        group: None,
    };
    let plaintext = random_bytes(&mut rng, STREAM_LEN);

    // A pre-encrypted file (header ‖ segments ‖ trailer) for the decryption benchmark.
    let file = {
        let (mut enc, header) =
            StreamEncryptor::new(&mut rng, &dek, &author, params.clone()).unwrap();
        let mut file = header.to_bytes();
        for chunk in plaintext.chunks(CHUNK) {
            enc.push(chunk, &mut file).unwrap();
        }
        enc.finish(&mut file).unwrap();
        file
    };
    let header_len = AttachmentHeader::encoded_len(&file).unwrap();
    // Check the round trip once, outside the measurements.
    let mut check = Vec::with_capacity(STREAM_LEN);
    decrypt_file(&file, header_len, &dek, &author_pk, &mut check);
    assert!(check == plaintext, "stream round trip");
    drop(check);

    let mut group = c.benchmark_group("stream");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(STREAM_LEN as u64));

    let mut out = Vec::with_capacity(file.len());
    group.bench_function("encrypt 64 MiB", |b| {
        b.iter(|| {
            out.clear();
            let (mut enc, header) =
                StreamEncryptor::new(&mut rng, &dek, &author, params.clone()).unwrap();
            out.extend_from_slice(&header.to_bytes());
            for chunk in black_box(&plaintext).chunks(CHUNK) {
                enc.push(chunk, &mut out).unwrap();
            }
            enc.finish(&mut out).unwrap();
            black_box(out.len())
        });
    });

    // Reference ceiling: the bare AEAD over the same bytes, 64 KiB segments sealed in place
    // (no buffering, no copies, no header or trailer). The gap to "encrypt 64 MiB" is the
    // stream layer's own cost.
    let key = ChaChaKey::new(&[7u8; 32]);
    let mut buf = plaintext.clone();
    group.bench_function("baseline ChaCha20-Poly1305 in place 64 MiB", |b| {
        b.iter(|| {
            let mut nonce = [0u8; 12];
            for (i, seg) in buf.chunks_mut(SEGMENT_SIZE).enumerate() {
                nonce[3..11].copy_from_slice(&(i as u64).to_be_bytes());
                black_box(key.seal_detached(&nonce, b"aad", seg).unwrap());
            }
        });
    });
    drop(buf);

    let mut out = Vec::with_capacity(STREAM_LEN);
    group.bench_function("decrypt 64 MiB", |b| {
        b.iter(|| {
            decrypt_file(black_box(&file), header_len, &dek, &author_pk, &mut out);
            black_box(out.len())
        });
    });
    group.finish();
}

fn bench_seal(c: &mut Criterion) {
    let mut rng = rng();
    let ids = ids();
    let recipient = RecipientId::new("device-7c9e6679").unwrap();
    let kp = EncryptionKeyPair::generate(&mut rng);
    let secret: [u8; 32] = random_bytes(&mut rng, 32).try_into().unwrap();
    let aad = [0x5au8; 32]; // stands in for a content-header hash
    let object = ids.document.as_str();
    let sealed = SealedKey::seal(
        &mut rng,
        Purpose::Grant,
        &recipient,
        kp.public(),
        object,
        0,
        &aad,
        &secret,
    )
    .unwrap();

    let mut group = c.benchmark_group("hpke");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal 32 B key", |b| {
        b.iter(|| {
            SealedKey::seal(
                &mut rng,
                Purpose::Grant,
                &recipient,
                black_box(kp.public()),
                object,
                0,
                &aad,
                black_box(&secret),
            )
            .unwrap()
        });
    });
    group.bench_function("open 32 B key", |b| {
        b.iter(|| black_box(&sealed).open(black_box(&kp), &aad).unwrap());
    });
    group.finish();
}

fn bench_search(c: &mut Criterion) {
    let mut rng = rng();
    let ids = ids();
    let secret = DerivationSecret::generate(&mut rng);
    let secret_id = SecretId::new("ds-1").unwrap();
    let derive = |purpose| DerivedKey::derive(&secret, &ids.tenant, &secret_id, purpose, &ids.path);
    let det_key = derive(search::Purpose::Deterministic);
    let cipher = DeterministicCipher::new(&det_key, &ids.tenant, &secret_id, &ids.path).unwrap();
    let indexer = BlindIndexer::new(
        &derive(search::Purpose::BlindIndex),
        &ids.tenant,
        &ids.path,
        16,
    )
    .unwrap();
    let pt = random_bytes(&mut rng, 100);
    let ct = cipher.encrypt(&pt).unwrap();

    let mut group = c.benchmark_group("search");
    group.throughput(Throughput::Bytes(100));
    group.bench_function("deterministic encrypt 100 B", |b| {
        b.iter(|| cipher.encrypt(black_box(&pt)).unwrap());
    });
    group.bench_function("deterministic decrypt 100 B", |b| {
        b.iter(|| cipher.decrypt(black_box(&ct)).unwrap());
    });
    group.bench_function("blind index 100 B", |b| {
        b.iter(|| indexer.compute(black_box(&pt)).unwrap());
    });
    group.throughput(Throughput::Elements(1));
    group.bench_function("derive deterministic key", |b| {
        b.iter(|| {
            DerivedKey::derive(
                black_box(&secret),
                &ids.tenant,
                &secret_id,
                search::Purpose::Deterministic,
                black_box(&ids.path),
            )
        });
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_fields,
    bench_edek,
    bench_stream,
    bench_seal,
    bench_search
);
criterion_main!(benches);
