//! The SDK's logic without JavaScript: what the JS functions drive, one chunk at a time.
//! Everything here is plain Rust over `keystead-core`, so it is tested natively as well as in
//! wasm.
//!
//! * [`EncryptSession`]: a new DEK, the content header, one grant per recipient (signed by
//!   the author), then STREAM segments and the signed trailer.
//! * [`DecryptSession`]: gathers the header from the front of the stream, opens this
//!   identity's grant from the access block, checks the header (author, key commitment),
//!   then decrypts segments as they arrive and the trailer at the end.
//! * [`RangeDecryptor`]: the same header checks, then single segments by index for byte-range
//!   reads. Proves possession of the DEK only (the trailer needs the whole file).

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use keystead_core::attachment::{AttachmentHeader, HEADER_PREFIX_LEN};
use keystead_core::grant::{AccessBlock, Grant};
use keystead_core::groups::{self, GroupState};
use keystead_core::stream::{
    AttachmentParams, SEGMENT_CT_SIZE, SEGMENT_SIZE, SegmentDecryptor, StreamDecryptor,
    StreamEncryptor,
};
use keystead_core::{Dek, DocumentId, EncryptionPublicKey, RecipientId, SigningPublicKey};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorCode, Result};
use crate::groups::GroupInner;
use keystead_core::device::DeviceKeys;

/// The longest valid attachment header (docs/FORMAT.md section 10.1): a ranged reader
/// fetches this many bytes (or the whole file, if shorter) to get the header in one request.
pub const MAX_HEADER_LEN: usize = 707;

/// Most recipients of one attachment (the access block's grant count is a `u16`).
pub const MAX_RECIPIENTS: usize = keystead_core::grant::MAX_GRANTS;

/// One recipient of a new attachment: a device id and its X25519 public key.
#[derive(Clone, Debug)]
pub struct Recipient {
    /// The device (or group) id the grant names.
    pub id: RecipientId,
    /// The key the DEK is sealed to.
    pub key: EncryptionPublicKey,
}

/// Encryption of one attachment.
pub struct EncryptSession {
    encryptor: StreamEncryptor,
    header: Vec<u8>,
    access_block: Vec<u8>,
    document: DocumentId,
}

impl EncryptSession {
    /// Draws a DEK, writes the content header signed by `author`, and grants the DEK to every
    /// recipient (grants signed by `author`). With a `group`, the header is bound to the
    /// group's current epoch and head, and the block also holds a grant to the epoch key.
    /// The DEK itself is dropped (zeroized) here: from now on only the segment cipher derived
    /// from it remains.
    pub fn new(
        rng: &mut impl CryptoRng,
        recipients: &[Recipient],
        author: &DeviceKeys,
        document: DocumentId,
        group: Option<&GroupState>,
    ) -> Result<Self> {
        if recipients.is_empty() && group.is_none() {
            return Err(Error::invalid_argument(
                "an attachment needs at least one recipient",
            ));
        }
        if recipients.len() + usize::from(group.is_some()) > MAX_RECIPIENTS {
            return Err(Error::new(ErrorCode::LimitExceeded, "too many recipients"));
        }
        let dek = Dek::generate(rng);
        let params = AttachmentParams {
            document: document.clone(),
            group: group.map(groups::binding),
        };
        let (encryptor, header) = StreamEncryptor::new(rng, &dek, author.signing(), params)?;
        let block = grant_all(rng, &header, &dek, recipients, author, group)?;
        Ok(Self {
            encryptor,
            header: header.to_bytes(),
            access_block: block.to_bytes()?,
            document,
        })
    }

    /// The content header: the first bytes of the file.
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// The access block (`KSB`), stored apart from the file.
    pub fn access_block(&self) -> &[u8] {
        &self.access_block
    }

    /// The document id bound into the header and grants.
    pub fn document(&self) -> &DocumentId {
        &self.document
    }

    /// Encrypts `data`, appending every completed segment to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        Ok(self.encryptor.push(data, out)?)
    }

    /// Appends the final segment and the signed trailer to `out`.
    pub fn finish(self, out: &mut Vec<u8>) -> Result<()> {
        Ok(self.encryptor.finish(out)?)
    }
}

/// A new access block for `header` whose DEK is `dek`: a grant to `group`'s epoch key (the
/// header must be bound to it) and one per recipient, all signed by `author`.
pub fn grant_all(
    rng: &mut impl CryptoRng,
    header: &AttachmentHeader,
    dek: &Dek,
    recipients: &[Recipient],
    author: &DeviceKeys,
    group: Option<&GroupState>,
) -> Result<AccessBlock> {
    let mut block = AccessBlock::new(header);
    if let Some(state) = group {
        block.add(groups::grant_to_group(
            rng,
            header,
            dek,
            state,
            author.signing(),
        )?)?;
    }
    for r in recipients {
        let grant = Grant::create(rng, header, dek, &r.id, &r.key, 0, author.signing())?;
        block.add(grant)?;
    }
    Ok(block)
}

/// Who a decryptor trusts, and the access block to open: the expected author of the content
/// and the keys whose grants it accepts.
pub struct AccessPolicy {
    block: AccessBlock,
    author: SigningPublicKey,
    granters: Vec<SigningPublicKey>,
    group: Option<Rc<RefCell<GroupInner>>>,
}

impl AccessPolicy {
    /// Parses the access block (verifying every grant's signature) and the keys. With no
    /// explicit `granters`, only grants signed by the author are accepted.
    pub fn new(access_block: &[u8], author: &[u8], granters: Option<Vec<Vec<u8>>>) -> Result<Self> {
        let block = AccessBlock::parse(access_block)?;
        let author = signing_key(author)?;
        let granters = match granters {
            None => vec![author],
            Some(list) => list
                .iter()
                .map(|k| signing_key(k))
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(Self {
            block,
            author,
            granters,
            group: None,
        })
    }

    /// Also opens grants to `group` (with the epoch keys it caches or this device opens).
    pub fn with_group(mut self, group: Option<Rc<RefCell<GroupInner>>>) -> Self {
        self.group = group;
        self
    }

    /// The access block.
    pub fn block(&self) -> &AccessBlock {
        &self.block
    }

    /// The expected author.
    pub fn author(&self) -> &SigningPublicKey {
        &self.author
    }

    /// Opens the DEK of the attachment with `header` from this identity's grant: the block
    /// must belong to that header, the grant must name this identity's key and come from a
    /// trusted granter, and the DEK must match the header's key commitment. With a group,
    /// a trusted grant to the group (for the header's bound epoch) is opened through it
    /// when this device has no grant of its own.
    pub fn open_dek(&self, header: &AttachmentHeader, device: &DeviceKeys) -> Result<Dek> {
        if self.block.header_hash() != header.hash() {
            // The access block of another file: as opaque as any other mismatch.
            return Err(keystead_core::Error::Decrypt.into());
        }
        let keys = device.encryption();
        let fp = keys.public().fingerprint();
        let mut last = None;
        for g in self
            .block
            .grants()
            .iter()
            .filter(|g| g.recipient_fingerprint() == &fp)
            .filter(|g| self.granters.contains(g.granter()))
        {
            match g.open(header, keys) {
                Ok(dek) => return Ok(dek),
                Err(e) => last = Some(e),
            }
        }
        if let Some(group) = &self.group {
            let mut group = group.borrow_mut();
            let gid = group.state().group_id().as_str().to_owned();
            for g in self
                .block
                .grants()
                .iter()
                .filter(|g| g.recipient_id().as_str() == gid)
                .filter(|g| self.granters.contains(g.granter()))
            {
                match group.open_grant(g, header, device) {
                    Ok(dek) => return Ok(dek),
                    Err(e) => last = Some(e),
                }
            }
        }
        Err(last.map_or_else(Error::no_grant, Error::from))
    }
}

/// An Ed25519 public key from JS bytes (`invalid_key` unless 32 bytes of a valid point).
pub(crate) fn signing_key(bytes: &[u8]) -> Result<SigningPublicKey> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| {
        Error::new(
            ErrorCode::InvalidKey,
            "an Ed25519 public key is 32 bytes long",
        )
    })?;
    Ok(SigningPublicKey::from_bytes(&arr)?)
}

enum DecryptState {
    /// Gathering the content header.
    Header(Vec<u8>),
    /// Decrypting segments.
    Body(Box<StreamDecryptor>),
    /// Failed or finished: no more input is accepted.
    Done,
}

/// Full-file decryption of one attachment, fed in chunks of any size.
pub struct DecryptSession {
    policy: AccessPolicy,
    keys: Rc<DeviceKeys>,
    state: DecryptState,
}

impl DecryptSession {
    /// A decryptor that opens the DEK with `keys` under `policy` once the header is in.
    pub fn new(policy: AccessPolicy, keys: Rc<DeviceKeys>) -> Self {
        Self {
            policy,
            keys,
            state: DecryptState::Header(Vec::with_capacity(MAX_HEADER_LEN)),
        }
    }

    /// Decrypts `data`, appending the plaintext of every segment that authenticated to
    /// `out`. After an error every further call fails with `usage`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let res = self.push_inner(data, out);
        if res.is_err() {
            self.state = DecryptState::Done;
        }
        res
    }

    fn push_inner(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if let DecryptState::Header(buf) = &mut self.state {
            if buf.len() < HEADER_PREFIX_LEN {
                let take = (HEADER_PREFIX_LEN - buf.len()).min(data.len());
                buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                if buf.len() < HEADER_PREFIX_LEN {
                    return Ok(());
                }
            }
            let total = AttachmentHeader::encoded_len(&buf[..HEADER_PREFIX_LEN])?;
            let take = (total - buf.len()).min(data.len());
            buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if buf.len() < total {
                return Ok(());
            }
            let header = AttachmentHeader::parse(buf)?;
            let dek = self.policy.open_dek(&header, &self.keys)?;
            let dec = StreamDecryptor::new(&header, &dek, self.policy.author())?;
            self.state = DecryptState::Body(Box::new(dec));
        }
        match &mut self.state {
            DecryptState::Body(dec) => Ok(dec.push(data, out)?),
            DecryptState::Header(_) => Ok(()),
            DecryptState::Done => Err(Error::new(
                ErrorCode::Usage,
                "the decryption already failed or finished",
            )),
        }
    }

    /// Ends the input: decrypts the final segment and verifies the author's trailer
    /// signature. Input that stops early is `truncated`, never a clean end.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        match core::mem::replace(&mut self.state, DecryptState::Done) {
            DecryptState::Header(_) => Err(keystead_core::Error::Truncated.into()),
            DecryptState::Body(dec) => Ok(dec.finish(out)?),
            DecryptState::Done => Err(Error::new(
                ErrorCode::Usage,
                "the decryption already failed or finished",
            )),
        }
    }
}

/// Random-access decryption of an attachment of known total length.
pub struct RangeDecryptor {
    inner: SegmentDecryptor,
}

impl RangeDecryptor {
    /// Parses the header from `prefix` (the file's first `min(MAX_HEADER_LEN, total_len)`
    /// bytes, or more), opens the DEK and verifies the header.
    pub fn new(
        prefix: &[u8],
        total_len: u64,
        policy: &AccessPolicy,
        keys: &DeviceKeys,
    ) -> Result<Self> {
        if prefix.len() < HEADER_PREFIX_LEN {
            return Err(keystead_core::Error::Truncated.into());
        }
        let hlen = AttachmentHeader::encoded_len(&prefix[..HEADER_PREFIX_LEN])?;
        if prefix.len() < hlen {
            return Err(keystead_core::Error::Truncated.into());
        }
        let header = AttachmentHeader::parse(&prefix[..hlen])?;
        let dek = policy.open_dek(&header, keys)?;
        let inner = SegmentDecryptor::new(&header, &dek, policy.author(), total_len)?;
        Ok(Self { inner })
    }

    /// The plaintext length the file's size implies.
    pub fn plaintext_len(&self) -> u64 {
        self.inner.layout().plaintext_len()
    }

    /// The segments to read for plaintext bytes `start..end`. A request that reaches the end
    /// of the plaintext (or beyond) always includes the final segment, so a file cut short
    /// fails instead of answering with a clean, short end.
    pub fn segments_for(&self, start: u64, end: u64) -> Result<Range<u64>> {
        if start > end {
            return Err(Error::invalid_argument("range start is after its end"));
        }
        let layout = self.inner.layout();
        let len = layout.plaintext_len();
        let last = layout.segments() - 1;
        let segs = layout.segments_for(start..end);
        if end < len {
            return Ok(segs);
        }
        Ok(if segs.is_empty() {
            last..last + 1
        } else {
            segs.start..last + 1
        })
    }

    /// The file bytes that hold segments `segs` (contiguous).
    pub fn byte_range(&self, segs: Range<u64>) -> Result<Range<u64>> {
        if segs.is_empty() {
            return Ok(0..0);
        }
        let first = self.inner.layout().segment_range(segs.start)?;
        let last = self.inner.layout().segment_range(segs.end - 1)?;
        Ok(first.start..last.end)
    }

    /// Decrypts segments `segs` from `bytes` (exactly [`RangeDecryptor::byte_range`] of
    /// them) and appends the part of their plaintext inside `start..end` to `out`.
    pub fn decrypt(
        &self,
        segs: Range<u64>,
        bytes: &[u8],
        start: u64,
        end: u64,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let want = self.byte_range(segs.clone())?;
        if bytes.len() as u64 != want.end - want.start {
            return Err(Error::new(
                ErrorCode::SourceFailed,
                "the source returned a different number of bytes than requested",
            ));
        }
        let mut plain = Zeroizing::new(Vec::with_capacity(SEGMENT_SIZE));
        let mut rest = bytes;
        for i in segs {
            let r = self.inner.layout().segment_range(i)?;
            // A segment is at most SEGMENT_CT_SIZE bytes, so its length fits a usize.
            let n = usize::try_from(r.end - r.start).map_err(|_| keystead_core::Error::Limit)?;
            debug_assert!(n <= SEGMENT_CT_SIZE);
            let (ct, tail) = rest.split_at(n);
            rest = tail;
            plain.clear();
            self.inner.decrypt_segment(i, ct, &mut plain)?;
            let seg_start = i * SEGMENT_SIZE as u64;
            let seg_end = seg_start + plain.len() as u64;
            let from = start.clamp(seg_start, seg_end) - seg_start;
            let to = end.clamp(seg_start, seg_end) - seg_start;
            // Both offsets lie within this segment's plaintext (≤ SEGMENT_SIZE).
            let from = usize::try_from(from).map_err(|_| keystead_core::Error::Limit)?;
            let to = usize::try_from(to).map_err(|_| keystead_core::Error::Limit)?;
            out.extend_from_slice(&plain[from..to]);
        }
        Ok(())
    }
}
