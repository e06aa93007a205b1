//! Fixtures shared by the fuzz targets (`fuzz_targets/*.rs`) and the seed generator
//! (`src/bin/make_seeds.rs`).
//!
//! Everything here is deterministic: the keys are fixed byte strings and the one reference
//! attachment header is made with a seeded ChaCha20 RNG. The seeds are therefore encodings
//! made under exactly the keys the targets hold, so mutations of a seed reach the
//! authenticated paths (unwrap, open, decrypt) and not only the framing checks.
//!
//! The module also defines how the targets that take more than one value read their input
//! ([`Input`], [`stream_input`], [`SegmentsInput`]): the generator encodes seeds with the same
//! functions the targets decode them with, so the two cannot drift apart.
//!
//! Invariant the targets rely on: every seed that wraps, seals or encrypts a key or data
//! key uses [`Fixtures::dek`] (or [`REMOTE_PLAINTEXT`] in remote mode). A successful
//! authenticated unwrap of anything else would mean the fuzzer forged a tag, so the targets
//! assert it.

use std::sync::OnceLock;

use chacha20::ChaCha20Rng;
use keystead_core::attachment::{AttachmentHeader, GroupBinding};
use keystead_core::search::{
    BlindIndexer, DerivationSecret, DerivedKey, DeterministicCipher, Purpose,
};
use keystead_core::stream::{AttachmentParams, StreamEncryptor};
use keystead_core::{
    ConfigId, Dek, DocumentId, EncryptionKeyPair, FieldPath, GroupId, KeyVersion, LeasedKey,
    LeasedKeyId, RecipientId, SecretId, SigningKeyPair, TenantId,
};
use rand_core::SeedableRng;

/// Tenant of every EDEK and document seed.
pub const TENANT: &str = "tenant-fuzz";
/// KMS configuration of every EDEK seed.
pub const CONFIG: &str = "kms-config-1";
/// Master key version of every EDEK seed.
pub const KEY_VERSION: KeyVersion = KeyVersion(7);
/// Document id of the document, field and attachment seeds.
pub const DOCUMENT: &str = "doc-0042";
/// Field path the `envelope` target decrypts single fields under.
pub const FIELD_PATH: &str = "address.street";
/// Recipient id of the sealed-key and grant seeds.
pub const RECIPIENT: &str = "device-7";
/// Group the reference attachment is bound to.
pub const GROUP: &str = "group-red";
/// The KMS plaintext `P` of the remote-mode EDEK seed, and what the `edek` target passes to
/// `open_remote`.
pub const REMOTE_PLAINTEXT: [u8; 32] = [0x77; 32];
/// The AAD the sealed-key seeds were sealed with and the `sealed_key` target opens with.
pub const SEAL_AAD: &[u8] = b"keystead-fuzz/sealed-key-aad";
/// Derivation secret id of the `search` target's deterministic cipher and of its seeds.
pub const SECRET_ID: &str = "ds-1";
/// Blind-index length (bytes) of the `search` target's indexer.
pub const BLIND_INDEX_LEN: usize = 16;

const DEK_BYTES: [u8; 32] = [0x11; 32];
const LEASED_KEY_ID: [u8; 16] = [0x22; 16];
const LEASED_KEY_BYTES: [u8; 32] = [0x33; 32];
const TENANT_SECRET: [u8; 32] = [0x44; 32];
const AUTHOR_SEED: [u8; 32] = [0x55; 32];
const RECIPIENT_SECRET: [u8; 32] = [0x66; 32];
const DERIVATION_SECRET: [u8; 32] = [0x88; 32];

/// RNG stream that makes the reference attachment header (see [`reference_encryptor`]).
const REFERENCE_HEADER_STREAM: u64 = 0x6b73_6174_7461_6368;

/// A ChaCha20 RNG seeded from `stream`: the same stream always yields the same bytes.
pub fn rng(stream: u64) -> ChaCha20Rng {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&stream.to_be_bytes());
    seed[8..].copy_from_slice(&[0x5a; 24]);
    ChaCha20Rng::from_seed(seed)
}

/// The fixed keys and identifiers, and the reference attachment header.
pub struct Fixtures {
    /// The data key every seed wraps, seals or encrypts under.
    pub dek: Dek,
    /// The leased key of the leased-mode EDEK seed.
    pub leased: LeasedKey,
    /// The tenant's asymmetric master key (asymmetric-mode EDEKs).
    pub tenant_key: EncryptionKeyPair,
    /// The recipient device key (sealed keys and grants).
    pub recipient_key: EncryptionKeyPair,
    /// The attachment author and granter.
    pub author: SigningKeyPair,
    /// Typed forms of the constants above.
    pub tenant: TenantId,
    /// See [`CONFIG`].
    pub config: ConfigId,
    /// See [`DOCUMENT`].
    pub document: DocumentId,
    /// See [`FIELD_PATH`].
    pub path: FieldPath,
    /// See [`RECIPIENT`].
    pub recipient: RecipientId,
    /// The one valid attachment header the stream and segment decryptors are fed against.
    pub header: AttachmentHeader,
    /// See [`SECRET_ID`].
    pub secret_id: SecretId,
    /// The deterministic cipher of [`TENANT`], [`FIELD_PATH`] and [`SECRET_ID`], keyed from
    /// a fixed derivation secret.
    pub deterministic: DeterministicCipher,
    /// The blind indexer of the same tenant and path ([`BLIND_INDEX_LEN`]-byte indexes).
    pub blind_index: BlindIndexer,
}

/// The process-wide fixtures, built on first use. Building them costs a few scalar
/// multiplications and a signature, far too much to repeat on every fuzz input.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dek = Dek::from_bytes(DEK_BYTES);
        let author = SigningKeyPair::from_secret_bytes(&AUTHOR_SEED);
        let (_, header) = reference_encryptor(&dek, &author);
        let (tenant, path) = (id(TenantId::new(TENANT)), id(FieldPath::new(FIELD_PATH)));
        let secret_id = id(SecretId::new(SECRET_ID));
        let secret = DerivationSecret::from_bytes(DERIVATION_SECRET);
        let derive = |purpose| DerivedKey::derive(&secret, &tenant, &secret_id, purpose, &path);
        let deterministic =
            DeterministicCipher::new(&derive(Purpose::Deterministic), &tenant, &secret_id, &path)
                .expect("the fixture deterministic cipher can be built");
        let blind_index = BlindIndexer::new(
            &derive(Purpose::BlindIndex),
            &tenant,
            &path,
            BLIND_INDEX_LEN,
        )
        .expect("the fixture blind indexer can be built");
        Fixtures {
            leased: LeasedKey::from_bytes(LeasedKeyId(LEASED_KEY_ID), LEASED_KEY_BYTES),
            tenant_key: EncryptionKeyPair::from_secret_bytes(&TENANT_SECRET),
            recipient_key: EncryptionKeyPair::from_secret_bytes(&RECIPIENT_SECRET),
            tenant,
            config: id(ConfigId::new(CONFIG)),
            document: id(DocumentId::new(DOCUMENT)),
            path,
            recipient: id(RecipientId::new(RECIPIENT)),
            dek,
            author,
            header,
            secret_id,
            deterministic,
            blind_index,
        }
    })
}

/// Unwraps an identifier built from one of the constants above; they are valid by
/// construction, so a failure is a broken fixture, not a finding.
fn id<T>(r: keystead_core::Result<T>) -> T {
    r.expect("fixture identifiers are valid")
}

/// A stream encryptor for the reference attachment. Its RNG stream is fixed, so every call
/// yields the same header (the header nonce is the only randomness, and Ed25519 signing is
/// deterministic) and the same ciphertext for the same plaintext.
pub fn reference_encryptor(
    dek: &Dek,
    author: &SigningKeyPair,
) -> (StreamEncryptor, AttachmentHeader) {
    let params = AttachmentParams {
        document: id(DocumentId::new(DOCUMENT)),
        group: Some(GroupBinding {
            group: id(GroupId::new(GROUP)),
            epoch: 3,
            head: [0xab; 32],
        }),
    };
    StreamEncryptor::new(&mut rng(REFERENCE_HEADER_STREAM), dek, author, params)
        .expect("the reference attachment header can be built")
}

/// The complete body (every segment, then the trailer) of the reference attachment holding
/// `plaintext`. Deterministic: see [`reference_encryptor`].
pub fn reference_body(plaintext: &[u8]) -> Vec<u8> {
    let f = fixtures();
    let (mut enc, header) = reference_encryptor(&f.dek, &f.author);
    assert_eq!(header, f.header, "the reference header is deterministic");
    let mut out = Vec::with_capacity(plaintext.len() + plaintext.len() / 1024 + 128);
    enc.push(plaintext, &mut out)
        .expect("encrypting the reference attachment");
    enc.finish(&mut out)
        .expect("finishing the reference attachment");
    out
}

/// The operations of the `attachment` target, chosen by the input's first byte (modulo
/// [`attachment_op::COUNT`]).
pub mod attachment_op {
    /// `AttachmentHeader::encoded_len` on the rest.
    pub const ENCODED_LEN: u8 = 0;
    /// `AttachmentHeader::parse` on the rest, round trip, verify against the fixtures.
    pub const HEADER: u8 = 1;
    /// `Grant::parse` on the rest, round trip, verify and open against the reference header.
    pub const GRANT: u8 = 2;
    /// `AccessBlock::parse` on the rest, round trip, lookups.
    pub const ACCESS_BLOCK: u8 = 3;
    /// `AttachmentLayout::new` with two u64 (big-endian) from the rest, then its accessors.
    pub const LAYOUT: u8 = 4;
    /// `StreamDecryptor::push`/`finish` on the rest, split by [`crate::split_stream_input`].
    pub const STREAM: u8 = 5;
    /// `SegmentDecryptor` on the rest, read by [`crate::SegmentsInput`].
    pub const SEGMENTS: u8 = 6;
    /// Number of operations.
    pub const COUNT: u8 = 7;
}

/// The operations of the `envelope` target, chosen by the input's first byte (modulo 2).
pub mod envelope_op {
    /// `decrypt_field` with the fixed DEK, tenant, document and path on the rest.
    pub const FIELD: u8 = 0;
    /// `EncryptedDocument::parse` on the rest, round trip, decrypt with the fixed DEK.
    pub const DOCUMENT: u8 = 1;
    /// Number of operations.
    pub const COUNT: u8 = 2;
}

/// A forgiving big-endian reader over fuzz input: each read returns `None` once the input
/// is exhausted, so a target simply returns on short input.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    /// Wraps `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self(data)
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    /// The next byte.
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    /// The next big-endian u16.
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.array()?))
    }

    /// The next big-endian u32.
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.array()?))
    }

    /// The next big-endian u64.
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.array()?))
    }

    /// Everything not read yet.
    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// Most explicit cut points in a stream input (a few are enough to hit every buffering case:
/// a chunk ending inside a segment, on a boundary, inside the trailer).
pub const MAX_CUTS: usize = 7;

/// Encodes a stream-decryptor input: `cuts` chunk lengths, then `body`.
///
/// Layout: `n u8 | n × chunk length u16 | body`. The body is pushed as chunks of those
/// lengths (each clamped to what is left) and then whatever remains as one last chunk.
pub fn stream_input(cuts: &[u16], body: &[u8]) -> Vec<u8> {
    assert!(cuts.len() <= MAX_CUTS);
    let mut out = Vec::with_capacity(1 + 2 * cuts.len() + body.len());
    out.push(cuts.len() as u8);
    for c in cuts {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(body);
    out
}

/// Decodes a [`stream_input`]: the chunks to push, in order, and the whole body they cover.
pub fn split_stream_input(data: &[u8]) -> Option<(Vec<&[u8]>, &[u8])> {
    let mut input = Input::new(data);
    let n = usize::from(input.u8()?) % (MAX_CUTS + 1);
    let mut lens = [0u16; MAX_CUTS];
    for len in lens.iter_mut().take(n) {
        *len = input.u16()?;
    }
    let body = input.rest();
    let mut chunks = Vec::with_capacity(n + 1);
    let mut rest = body;
    for &len in &lens[..n] {
        let (chunk, tail) = rest.split_at(usize::from(len).min(rest.len()));
        chunks.push(chunk);
        rest = tail;
    }
    chunks.push(rest);
    Some((chunks, body))
}

/// The input of the segment-decryptor operation.
///
/// Layout: `flags u8 | segment index u32 | range start u32 | range length u32
/// | (flags bit 0 only) total length u64 | body`. The body plays the bytes after the header
/// of a file of `header.len() + body.len()` bytes, unless flags bit 0 gives another total
/// length, which lets the fuzzer pick layouts the body does not fill.
#[derive(Clone, Copy, Debug)]
pub struct SegmentsInput<'a> {
    /// The file length announced to `SegmentDecryptor::new`, if not the body's own.
    pub explicit_total: Option<u64>,
    /// The segment `decrypt_segment` is asked for.
    pub index: u32,
    /// Start of the plaintext range `read_range` is asked for.
    pub start: u32,
    /// Length of that range.
    pub len: u32,
    /// The bytes after the header.
    pub body: &'a [u8],
}

impl<'a> SegmentsInput<'a> {
    /// Decodes the layout above.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let mut input = Input::new(data);
        let flags = input.u8()?;
        let index = input.u32()?;
        let start = input.u32()?;
        let len = input.u32()?;
        let explicit_total = if flags & 1 == 1 {
            Some(input.u64()?)
        } else {
            None
        };
        Some(Self {
            explicit_total,
            index,
            start,
            len,
            body: input.rest(),
        })
    }

    /// Encodes it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(21 + self.body.len());
        out.push(u8::from(self.explicit_total.is_some()));
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.start.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        if let Some(total) = self.explicit_total {
            out.extend_from_slice(&total.to_be_bytes());
        }
        out.extend_from_slice(self.body);
        out
    }
}

/// The fixed two-member group of the `group_log` target: its admin (`ada`), the second
/// member (`bob`), the genesis entry and the epoch-1 key. Deterministic; built anew on
/// each call (the epoch key cannot be cloned), so call it once.
pub struct GroupFixture {
    /// The creator and only admin.
    pub admin: keystead_core::groups::UserIdentity,
    /// The other member.
    pub member: keystead_core::groups::UserIdentity,
    /// Both members' user records.
    pub records: Vec<keystead_core::groups::UserRecord>,
    /// The genesis entry.
    pub genesis: keystead_core::groups::LogEntry,
    /// The state after genesis.
    pub state: keystead_core::groups::GroupState,
    /// The epoch-1 key.
    pub key: keystead_core::groups::EpochKey,
}

/// Builds the [`GroupFixture`].
pub fn group_fixture() -> GroupFixture {
    use keystead_core::device::DeviceKeys;
    use keystead_core::groups::{GroupState, History, UserIdentity};
    use keystead_core::{GroupId, RecipientId, UserId};
    let mut r = rng(0x6772_6f75_702d_6c6f);
    let mut records = Vec::new();
    let mut ids = Vec::new();
    for name in ["ada", "bob"] {
        let id = UserIdentity::generate(&mut r, UserId::new(name).expect("fixed id"));
        let dev = DeviceKeys::generate(
            &mut r,
            RecipientId::new(format!("{name}/d0")).expect("fixed id"),
        );
        let cert = id.certify(&dev).expect("fixed device");
        records.push(id.sign_record(1, vec![cert]).expect("fixed record"));
        ids.push(id);
    }
    let p = GroupState::create(
        &mut r,
        GroupId::new(GROUP).expect("fixed id"),
        History::All,
        &ids[0],
        records.clone(),
    )
    .expect("fixed group");
    let state = GroupState::genesis(&p.entry).expect("fixed genesis");
    let member = ids.pop().expect("two identities");
    let admin = ids.pop().expect("two identities");
    GroupFixture {
        admin,
        member,
        records,
        genesis: p.entry,
        state,
        key: p.new_epoch_key.expect("genesis starts epoch 1"),
    }
}
