//! Attachments: the content header, grants, the access block, the ciphertext layout and both
//! decryptors. The first input byte picks the operation (see
//! `keystead_core_fuzz::attachment_op`); the rest is its input.
//!
//! The decryptors are fed against one valid reference header (made once, deterministically,
//! by `StreamEncryptor::new`; see `keystead_core_fuzz::fixtures`), so the fuzz input plays the
//! attachment body: segments and trailer.
#![no_main]

use keystead_core::attachment::{AttachmentHeader, AttachmentLayout, MIN_HEADER_LEN, TRAILER_LEN};
use keystead_core::grant::{AccessBlock, Grant};
use keystead_core::stream::{SEGMENT_CT_SIZE, SEGMENT_SIZE, SegmentDecryptor, StreamDecryptor};
use keystead_core::{Error, Result};
use keystead_core_fuzz::{
    Input, SegmentsInput, attachment_op as op, fixtures, reference_body, split_stream_input,
};
use libfuzzer_sys::fuzz_target;

/// Tag length of a segment (ChaCha20-Poly1305).
const TAG_LEN: u64 = 16;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % op::COUNT {
        op::ENCODED_LEN => encoded_len(rest),
        op::HEADER => header(rest),
        op::GRANT => grant(rest),
        op::ACCESS_BLOCK => access_block(rest),
        op::LAYOUT => layout(rest),
        op::STREAM => stream(rest),
        _ => segments(rest),
    }
});

fn encoded_len(prefix: &[u8]) {
    if let Ok(n) = AttachmentHeader::encoded_len(prefix) {
        assert!(n >= MIN_HEADER_LEN);
        assert_eq!(n, usize::from(u16::from_be_bytes([prefix[4], prefix[5]])));
    }
}

fn header(bytes: &[u8]) {
    let Ok(header) = AttachmentHeader::parse(bytes) else {
        return;
    };
    assert_eq!(header.to_bytes(), bytes, "attachment header round trip");
    assert_eq!(header.len(), bytes.len());
    assert_eq!(AttachmentHeader::encoded_len(bytes).ok(), Some(bytes.len()));

    let f = fixtures();
    let author = f.author.public();
    let verified = header.verify(&f.dek, &author).is_ok();
    let committed = header.check_commitment(&f.dek).is_ok();
    // `verify` checks the signature and then the commitment.
    assert!(!verified || committed);
}

fn grant(bytes: &[u8]) {
    let Ok(grant) = Grant::parse(bytes) else {
        return;
    };
    assert_eq!(grant.to_bytes(), bytes, "grant round trip");

    let f = fixtures();
    let _ = grant.verify(f.header.hash());
    if let Ok(dek) = grant.open(&f.header, &f.recipient_key) {
        assert!(dek.ct_eq(&f.dek), "a grant opened to a foreign DEK");
        assert!(grant.verify(f.header.hash()).is_ok());
    }
}

fn access_block(bytes: &[u8]) {
    let Ok(block) = AccessBlock::parse(bytes) else {
        return;
    };
    let encoded = block.to_bytes().expect("a parsed access block serializes");
    assert_eq!(encoded, bytes, "access block round trip");

    // Parsing verified every grant against the block's header hash.
    for g in block.grants() {
        assert!(g.verify(block.header_hash()).is_ok());
        assert!(block.find(g.recipient_fingerprint()).is_some());
    }
    if let Some(first) = block.grants().first() {
        let fp = *first.recipient_fingerprint();
        let mut revoked = block.clone();
        assert!(revoked.revoke(&fp) >= 1);
        assert!(revoked.find(&fp).is_none());
    }

    let f = fixtures();
    if block.header_hash() == f.header.hash()
        && let Some(g) = block.find(&f.recipient_key.public().fingerprint())
        && let Ok(dek) = g.open(&f.header, &f.recipient_key)
    {
        assert!(dek.ct_eq(&f.dek));
    }
}

fn layout(bytes: &[u8]) {
    let mut input = Input::new(bytes);
    let (Some(header_len), Some(total_len)) = (input.u64(), input.u64()) else {
        return;
    };
    let Ok(layout) = AttachmentLayout::new(header_len, total_len) else {
        return;
    };
    let segments = layout.segments();
    assert!(segments >= 1);

    // Everything adds up to the file length: header, segments with their tags, trailer.
    let accounted = u128::from(header_len)
        + u128::from(layout.plaintext_len())
        + u128::from(segments) * u128::from(TAG_LEN)
        + TRAILER_LEN as u128;
    assert_eq!(accounted, u128::from(total_len));
    let trailer = layout.trailer_range();
    assert_eq!(trailer.end, total_len);
    assert_eq!(trailer.end - trailer.start, TRAILER_LEN as u64);

    // The first and last segments are where the layout says, and nothing lies past them.
    let first = layout.segment_range(0).expect("segment 0 exists");
    assert_eq!(first.start, header_len);
    let last = layout
        .segment_range(segments - 1)
        .expect("the last segment exists");
    assert_eq!(last.end, trailer.start);
    assert!(last.end - last.start >= TAG_LEN && last.end - last.start <= SEGMENT_CT_SIZE as u64);
    assert!(layout.segment_range(segments).is_err());
    if let Some(i) = input.u64()
        && let Ok(r) = layout.segment_range(i)
    {
        assert!(i < segments);
        assert!(r.start >= header_len && r.end <= trailer.start && r.start < r.end);
    }

    // A plaintext range maps to segments inside the file.
    if let (Some(a), Some(b)) = (input.u64(), input.u64()) {
        let segs = layout.segments_for(a..b);
        assert!(segs.start <= segs.end && segs.end <= segments);
    }
}

/// Pushes `chunks` through a fresh stream decryptor for the reference header and finishes it.
/// Returns the released plaintext and whether the whole stream authenticated.
fn decrypt_stream(chunks: &[&[u8]]) -> (Vec<u8>, bool) {
    let f = fixtures();
    let mut dec = StreamDecryptor::new(&f.header, &f.dek, &f.author.public())
        .expect("the reference header verifies");
    let mut out = Vec::new();
    for chunk in chunks {
        if dec.push(chunk, &mut out).is_err() {
            // Only whole, authenticated non-final segments are ever released by `push`, and
            // after an error the decryptor refuses everything.
            assert_eq!(out.len() % SEGMENT_SIZE, 0);
            assert!(dec.push(b"more", &mut out).is_err());
            assert!(dec.finish(&mut out).is_err());
            return (out, false);
        }
    }
    assert_eq!(out.len() % SEGMENT_SIZE, 0);
    let released = out.len();
    match dec.finish(&mut out) {
        Ok(()) => (out, true),
        Err(_) => {
            // A final segment or trailer that fails releases nothing.
            assert_eq!(out.len(), released);
            (out, false)
        }
    }
}

fn stream(bytes: &[u8]) {
    let Some((chunks, body)) = split_stream_input(bytes) else {
        return;
    };
    let (plain, ok) = decrypt_stream(&chunks);
    if ok {
        // The length matches the layout of a file with this body, and re-encrypting the
        // plaintext (the reference encryptor is deterministic) gives the body back exactly.
        let layout =
            AttachmentLayout::new(0, body.len() as u64).expect("a valid body has a layout");
        assert_eq!(plain.len() as u64, layout.plaintext_len());
        assert_eq!(reference_body(&plain), body, "stream round trip");
    }
}

/// The body bytes at file offsets `range` (the header comes first in the file), clipped to
/// what the body holds: a short read, as a truncated download would give.
fn body_slice(body: &[u8], header_len: u64, range: core::ops::Range<u64>) -> &[u8] {
    let clip = |x: u64| (x.saturating_sub(header_len)).min(body.len() as u64) as usize;
    let (start, end) = (clip(range.start), clip(range.end));
    &body[start..end.max(start)]
}

fn segments(bytes: &[u8]) {
    let Some(input) = SegmentsInput::parse(bytes) else {
        return;
    };
    let f = fixtures();
    let header_len = f.header.len() as u64;
    let total = input
        .explicit_total
        .unwrap_or(header_len + input.body.len() as u64);
    let Ok(dec) = SegmentDecryptor::new(&f.header, &f.dek, &f.author.public(), total) else {
        return;
    };
    let layout = *dec.layout();
    assert_eq!(AttachmentLayout::new(header_len, total), Ok(layout));

    // One segment, asked for by index, with whatever bytes the body has at its range.
    let index = u64::from(input.index);
    let ct = match layout.segment_range(index) {
        Ok(r) => body_slice(input.body, header_len, r),
        Err(_) => input.body,
    };
    let mut out = Vec::new();
    if dec.decrypt_segment(index, ct, &mut out).is_ok() {
        assert_eq!(out.len() as u64 + TAG_LEN, ct.len() as u64);
    } else {
        assert!(out.is_empty(), "a failed segment released plaintext");
    }

    // A plaintext range, fetched segment by segment from the body.
    let start = u64::from(input.start);
    let end = start + u64::from(input.len);
    let fetch = |r: core::ops::Range<u64>| -> Result<Vec<u8>> {
        if r.start >= r.end {
            return Err(Error::Usage);
        }
        Ok(body_slice(input.body, header_len, r).to_vec())
    };
    if let Ok(read) = dec.read_range(start..end, fetch) {
        let clamped_end = end.min(layout.plaintext_len());
        let expected = clamped_end.saturating_sub(start);
        assert_eq!(
            read.len() as u64,
            expected,
            "read_range returned a wrong length"
        );

        // Where the whole file is the body and it authenticates as a stream, the range must
        // be the same bytes the stream decryptor released.
        if input.explicit_total.is_none() && expected > 0 {
            let (plain, ok) = decrypt_stream(&[input.body]);
            if ok {
                assert_eq!(&plain[start as usize..clamped_end as usize], &read[..]);
            }
        }
    }
}
