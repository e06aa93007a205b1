//! STREAM over ChaCha20-Poly1305: streamed, constant-memory, range-decryptable attachments.
//!
//! * payload key = `HKDF-SHA256(ikm = DEK, salt = header nonce, info = "keystead/v1/payload")`
//! * segment `i` nonce = `i` as an 11-byte big-endian counter ‖ last-segment flag (0 or 1)
//! * segment AAD = lp32(header body) (see [`crate::attachment`])
//! * non-final segments carry exactly [`SEGMENT_SIZE`] plaintext bytes; the final one
//!   0 to [`SEGMENT_SIZE`]; an empty file is one empty final segment.
//!
//! Truncation, reordering, duplicated or swapped segments, segments from another file and a
//! missing final segment all fail authentication: the counter and flag are in the nonce, the
//! header (with its random nonce) is in the AAD, and a stream that ends without a final
//! segment and trailer is [`Error::Truncated`], never a clean end.
//!
//! [`StreamDecryptor`] releases each segment's plaintext once that segment authenticates
//! (so memory stays constant); the author's trailer signature is checked by `finish`, so a
//! consumer must treat the output as final only after `finish` succeeds.

use alloc::vec::Vec;
use core::ops::Range;

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::attachment::{
    AttachmentHeader, AttachmentLayout, GroupBinding, PAYLOAD_LABEL, TRAILER_LEN,
};
pub use crate::attachment::{SEGMENT_CT_SIZE, SEGMENT_SIZE};
use crate::error::{Error, Result};
use crate::hazmat::{self, ChaChaKey, NONCE_LEN, TAG_LEN};
use crate::ids::DocumentId;
use crate::keys::{Dek, SigningKeyPair, SigningPublicKey};
use crate::wire;

/// The nonce of segment `counter`: 11-byte big-endian counter ‖ last flag.
fn segment_nonce(counter: u64, last: bool) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    n[3..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// The per-attachment symmetric state shared by the encryptor and decryptors.
struct SegmentCipher {
    key: ChaChaKey,
    aad: Vec<u8>,
}

impl SegmentCipher {
    fn new(dek: &Dek, header: &AttachmentHeader) -> Result<Self> {
        let mut k = [0u8; 32];
        hazmat::hkdf_sha256(
            Some(header.nonce()),
            dek.expose_secret(),
            &[PAYLOAD_LABEL],
            &mut k,
        )?;
        let key = ChaChaKey::new(&k);
        k.zeroize();
        Ok(Self {
            key,
            aad: wire::length_prefixed_aad(header.body())?,
        })
    }

    /// Appends the encryption of `pt` (as segment `counter`) and its tag to `out`.
    fn seal(
        &self,
        counter: u64,
        last: bool,
        pt: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<[u8; TAG_LEN]> {
        let start = out.len();
        out.resize(start + pt.len(), 0);
        let tag = self.key.seal_into(
            &segment_nonce(counter, last),
            &self.aad,
            pt,
            &mut out[start..],
        )?;
        out.extend_from_slice(&tag);
        Ok(tag)
    }

    /// Appends the decryption of segment `ct` (ciphertext ‖ tag) to `out`. On failure `out`
    /// is left as it was.
    fn open(
        &self,
        counter: u64,
        last: bool,
        ct: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<[u8; TAG_LEN]> {
        if ct.len() < TAG_LEN || ct.len() > SEGMENT_CT_SIZE {
            return Err(Error::Decrypt);
        }
        let (body, tag) = ct.split_at(ct.len() - TAG_LEN);
        let mut tag_arr = [0u8; TAG_LEN];
        tag_arr.copy_from_slice(tag);
        let start = out.len();
        out.resize(start + body.len(), 0);
        let res = self.key.open_into(
            &segment_nonce(counter, last),
            &self.aad,
            body,
            &mut out[start..],
            &tag_arr,
        );
        if res.is_err() {
            out.truncate(start);
        }
        res.map(|()| tag_arr)
    }
}

/// What goes into a new attachment's header besides the key and author.
#[derive(Clone, Debug)]
pub struct AttachmentParams {
    /// The attachment's document id (bound into the header, grants and sealed keys).
    pub document: DocumentId,
    /// The group it is shared through, if any.
    pub group: Option<GroupBinding>,
}

/// Incremental encryption of one attachment, in constant memory (one segment of buffer).
pub struct StreamEncryptor {
    cipher: SegmentCipher,
    header: AttachmentHeader,
    author: SigningKeyPair,
    counter: u64,
    tags: Sha256,
    buf: Vec<u8>,
}

impl StreamEncryptor {
    /// Starts an attachment under `dek`, signed by `author`. Returns the encryptor and the
    /// content header, whose bytes ([`AttachmentHeader::to_bytes`]) start the file.
    pub fn new(
        rng: &mut impl CryptoRng,
        dek: &Dek,
        author: &SigningKeyPair,
        params: AttachmentParams,
    ) -> Result<(Self, AttachmentHeader)> {
        let header = AttachmentHeader::create(rng, dek, author, params.document, params.group)?;
        let cipher = SegmentCipher::new(dek, &header)?;
        let enc = Self {
            cipher,
            header: header.clone(),
            author: author.duplicate(),
            counter: 0,
            tags: Sha256::new(),
            buf: Vec::with_capacity(SEGMENT_SIZE),
        };
        Ok((enc, header))
    }

    /// Records a sealed segment's tag and moves to the next counter.
    fn advance(&mut self, tag: [u8; TAG_LEN]) -> Result<()> {
        self.tags.update(tag);
        self.counter = self.counter.checked_add(1).ok_or(Error::Limit)?;
        Ok(())
    }

    /// Encrypts `data`, appending every segment that is complete to `out`. A segment is
    /// emitted only once the next byte is known, because the final segment is flagged.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        while !data.is_empty() {
            if self.buf.len() == SEGMENT_SIZE {
                // More data follows, so the buffered full segment is not the final one.
                let tag = self.cipher.seal(self.counter, false, &self.buf, out)?;
                self.advance(tag)?;
                self.buf.clear();
            }
            if self.buf.is_empty() && data.len() > SEGMENT_SIZE {
                // Whole segments straight from the input, without staging them in `buf`.
                let (seg, rest) = data.split_at(SEGMENT_SIZE);
                let tag = self.cipher.seal(self.counter, false, seg, out)?;
                self.advance(tag)?;
                data = rest;
                continue;
            }
            let take = (SEGMENT_SIZE - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }

    /// Encrypts what is buffered as the final segment and appends it and the signed trailer
    /// to `out`.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        let tag = self.cipher.seal(self.counter, true, &self.buf, out)?;
        self.advance(tag)?;
        let tags_hash: [u8; 32] = core::mem::take(&mut self.tags).finalize().into();
        out.extend_from_slice(
            &self
                .header
                .sign_trailer(&self.author, &tags_hash, self.counter),
        );
        Ok(())
    }

    /// The content header of this attachment.
    pub fn header(&self) -> &AttachmentHeader {
        &self.header
    }
}

impl Drop for StreamEncryptor {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

/// Incremental decryption of one attachment's body (everything after the header).
pub struct StreamDecryptor {
    cipher: SegmentCipher,
    header: AttachmentHeader,
    counter: u64,
    tags: Sha256,
    buf: Vec<u8>,
    failed: bool,
}

/// Input that holds a full segment and is known not to end with it.
const LOOKAHEAD: usize = SEGMENT_CT_SIZE + TRAILER_LEN + 1;

impl StreamDecryptor {
    /// Starts decrypting an attachment whose header is `header`. Verifies the author's
    /// header signature against `expected_author` and the key commitment against `dek`
    /// (constant time) before anything is decrypted.
    pub fn new(
        header: &AttachmentHeader,
        dek: &Dek,
        expected_author: &SigningPublicKey,
    ) -> Result<Self> {
        header.verify(dek, expected_author)?;
        Ok(Self {
            cipher: SegmentCipher::new(dek, header)?,
            header: header.clone(),
            counter: 0,
            tags: Sha256::new(),
            buf: Vec::with_capacity(SEGMENT_CT_SIZE + TRAILER_LEN),
            failed: false,
        })
    }

    /// Decrypts one segment and records its tag; any failure poisons the decryptor.
    fn open_segment(&mut self, last: bool, ct: &[u8], out: &mut Vec<u8>) -> Result<()> {
        match self.cipher.open(self.counter, last, ct, out) {
            Ok(tag) => {
                self.tags.update(tag);
                self.counter = self.counter.checked_add(1).ok_or(Error::Limit)?;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Decrypts the full segment at the front of `buf`.
    fn open_buffered(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let buf = core::mem::take(&mut self.buf);
        let res = self.open_segment(false, &buf[..SEGMENT_CT_SIZE], out);
        self.buf = buf;
        res
    }

    /// Decrypts `data`, appending the plaintext of every segment that authenticates to `out`.
    /// A full segment is decrypted once more than a trailer's worth of bytes follows it (only
    /// then is it known not to be the final one). After an error the decryptor refuses
    /// further input.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        if self.failed {
            return Err(Error::Usage);
        }
        while !data.is_empty() {
            let have = self.buf.len();
            if have == 0 && data.len() >= LOOKAHEAD {
                // Whole segments straight from the input, without staging them in `buf`.
                let (seg, rest) = data.split_at(SEGMENT_CT_SIZE);
                self.open_segment(false, seg, out)?;
                data = rest;
            } else if have < SEGMENT_CT_SIZE {
                let take = (SEGMENT_CT_SIZE - have).min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                data = &data[take..];
            } else if have - SEGMENT_CT_SIZE + data.len() > TRAILER_LEN {
                // `buf` holds a full segment (and perhaps a few bytes after it) and more
                // than a trailer follows: it is not the final segment.
                self.open_buffered(out)?;
                self.buf.drain(..SEGMENT_CT_SIZE);
            } else {
                self.buf.extend_from_slice(data);
                data = &[];
            }
        }
        Ok(())
    }

    /// Ends the stream: decrypts the final segment and verifies the author's trailer
    /// signature over every segment tag. A stream that stops early is [`Error::Truncated`].
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.failed {
            return Err(Error::Usage);
        }
        if self.buf.len() < TAG_LEN + TRAILER_LEN {
            return Err(Error::Truncated);
        }
        let ct_len = self.buf.len() - TRAILER_LEN;
        let start = out.len();
        let buf = core::mem::take(&mut self.buf);
        let res = self.open_segment(true, &buf[..ct_len], out);
        self.buf = buf;
        if let Err(e) = res {
            // If the bytes authenticate as a *non-final* segment, the stream was cut at a
            // segment boundary: say so. Otherwise they were tampered with.
            let mut probe = Vec::new();
            let cut = self
                .cipher
                .open(self.counter, false, &self.buf[..ct_len], &mut probe)
                .is_ok();
            probe.zeroize();
            return Err(if cut { Error::Truncated } else { e });
        }
        let tags_hash: [u8; 32] = core::mem::take(&mut self.tags).finalize().into();
        let res = self
            .header
            .verify_trailer(&self.buf[ct_len..], &tags_hash, self.counter);
        if res.is_err() {
            out[start..].zeroize();
            out.truncate(start);
        }
        res
    }
}

impl Drop for StreamDecryptor {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

/// Random-access decryption of single segments, for byte-range reads. Proves possession of
/// the DEK only: the author's trailer signature needs the whole file.
pub struct SegmentDecryptor {
    cipher: SegmentCipher,
    layout: AttachmentLayout,
}

impl SegmentDecryptor {
    /// Verifies the header (author signature, key commitment) and prepares to decrypt
    /// segments of a file that is `total_len` bytes long.
    pub fn new(
        header: &AttachmentHeader,
        dek: &Dek,
        expected_author: &SigningPublicKey,
        total_len: u64,
    ) -> Result<Self> {
        header.verify(dek, expected_author)?;
        let layout = AttachmentLayout::new(header.len() as u64, total_len)?;
        Ok(Self {
            cipher: SegmentCipher::new(dek, header)?,
            layout,
        })
    }

    /// The file's layout (segment ranges, plaintext length).
    pub fn layout(&self) -> &AttachmentLayout {
        &self.layout
    }

    /// Decrypts segment `index` (its exact ciphertext bytes), appending to `out`.
    pub fn decrypt_segment(&self, index: u64, ct: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let range = self.layout.segment_range(index)?;
        if ct.len() as u64 != range.end - range.start {
            return Err(Error::Decrypt);
        }
        let last = index + 1 == self.layout.segments();
        self.cipher.open(index, last, ct, out).map(|_| ())
    }

    /// Reads plaintext bytes `range` (clamped to the plaintext length), fetching each needed
    /// segment's file bytes through `fetch` (e.g. an HTTP Range request).
    pub fn read_range(
        &self,
        range: Range<u64>,
        mut fetch: impl FnMut(Range<u64>) -> Result<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let segs = self.layout.segments_for(range.clone());
        let mut out = Vec::new();
        let mut seg_plain = Vec::with_capacity(SEGMENT_SIZE);
        for i in segs {
            seg_plain.clear();
            let ct = fetch(self.layout.segment_range(i)?)?;
            self.decrypt_segment(i, &ct, &mut seg_plain)?;
            let seg_start = i * SEGMENT_SIZE as u64;
            // Both offsets lie inside one segment (≤ SEGMENT_SIZE), so they fit a usize.
            let from =
                usize::try_from(range.start.saturating_sub(seg_start)).map_err(|_| Error::Limit)?;
            let to = usize::try_from((range.end - seg_start).min(seg_plain.len() as u64))
                .map_err(|_| Error::Limit)?;
            out.extend_from_slice(&seg_plain[from..to]);
        }
        seg_plain.zeroize();
        Ok(out)
    }
}
