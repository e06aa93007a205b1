//! Adversarial inputs to streamed and ranged decryption, through the engine the JS API drives:
//! swapped, duplicated, truncated and cross-file segments, a wrong key commitment, foreign
//! access blocks, untrusted granters and authors. Truncation is always an error, never a
//! clean (short) end.
//!
//! The same tests run natively (`cargo test`) and in wasm (`wasm-pack test --node` and
//! `--headless --chrome`), so the wasm build is held to the same checks as the native one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::rc::Rc;

use common::*;
use keystead_core::device::DeviceKeys;
use keystead_core::key_export::SealedKeys;
use keystead_core::stream::{SEGMENT_CT_SIZE, SEGMENT_SIZE};
use keystead_wasm::engine::{AccessPolicy, MAX_HEADER_LEN, RangeDecryptor};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// Four segments: three full, one of 100 bytes.
const LEN: usize = 3 * SEGMENT_SIZE + 100;
const CHUNKS: [usize; 4] = [1, 1000, SEGMENT_CT_SIZE, usize::MAX];

struct World {
    author: DeviceKeys,
    reader: Rc<DeviceKeys>,
    other: DeviceKeys,
    a: Made,
    b: Made,
    plain: Vec<u8>,
}

fn world() -> World {
    let author = device(1, "device/author");
    let reader = device(2, "device/reader");
    let other = device(3, "device/other");
    let plain = pattern(LEN);
    let a = encrypt(10, &author, &[&reader, &other], "doc/a", &plain);
    let b = encrypt(11, &author, &[&reader], "doc/b", &plain);
    World {
        author,
        reader: Rc::new(reader),
        other,
        a,
        b,
        plain,
    }
}

impl World {
    fn author_key(&self) -> Vec<u8> {
        self.author.signing().public().to_bytes().to_vec()
    }

    /// Streamed decryption of `file` with the access block of `a`, for every chunk size;
    /// all chunkings must agree.
    fn stream(&self, file: &[u8]) -> Result<Vec<u8>, &'static str> {
        self.stream_with(file, &self.a.access_block)
    }

    fn stream_with(&self, file: &[u8], block: &[u8]) -> Result<Vec<u8>, &'static str> {
        let results: Vec<_> = CHUNKS
            .iter()
            .map(|&c| decrypt(file, block, &self.author_key(), Rc::clone(&self.reader), c))
            .collect();
        for r in &results[1..] {
            assert_eq!(r, &results[0], "chunkings disagree");
        }
        results.into_iter().next().unwrap()
    }

    /// Ranged decryption of `start..end` of `file` (its length is the size the "server"
    /// reports), reading only the segments needed, in batches as the JS API does.
    fn range(&self, file: &[u8], start: u64, end: u64) -> Result<Vec<u8>, &'static str> {
        let code = |e: keystead_wasm::Error| e.code().as_str();
        let policy =
            AccessPolicy::new(&self.a.access_block, &self.author_key(), None).map_err(code)?;
        let prefix = &file[..file.len().min(MAX_HEADER_LEN)];
        let r =
            RangeDecryptor::new(prefix, file.len() as u64, &policy, &self.reader).map_err(code)?;
        let segs = r.segments_for(start, end).map_err(code)?;
        let mut out = Vec::new();
        let mut i = segs.start;
        while i < segs.end {
            let j = (i + 2).min(segs.end);
            let br = r.byte_range(i..j).map_err(code)?;
            let bytes = &file[usize::try_from(br.start).unwrap()..usize::try_from(br.end).unwrap()];
            r.decrypt(i..j, bytes, start, end, &mut out).map_err(code)?;
            i = j;
        }
        Ok(out)
    }
}

fn seg(m: &Made, i: usize) -> std::ops::Range<usize> {
    let start = m.header_len + i * SEGMENT_CT_SIZE;
    start..(start + SEGMENT_CT_SIZE).min(m.file.len() - 68)
}

#[test]
fn valid_file_decrypts_streamed_and_ranged() {
    let w = world();
    assert_eq!(w.stream(&w.a.file).unwrap(), w.plain);
    let len = LEN as u64;
    let seg = SEGMENT_SIZE as u64;
    for (s, e) in [
        (0, 0),
        (0, 1),
        (5, 70_000),
        (seg - 1, seg + 1),
        (seg, 2 * seg),
        (len / 2, len / 2 + 3),
        (len - 1, len),
        (0, len),
        (len - 10, len + 1000),
    ] {
        let want =
            &w.plain[usize::try_from(s.min(len)).unwrap()..usize::try_from(e.min(len)).unwrap()];
        assert_eq!(w.range(&w.a.file, s, e).unwrap(), want, "range {s}..{e}");
    }
    // Beyond the end: empty, after the final segment was checked.
    assert_eq!(
        w.range(&w.a.file, len + 5, len + 9).unwrap(),
        Vec::<u8>::new()
    );
}

#[test]
fn swapped_segments_rejected() {
    let w = world();
    let mut f = w.a.file.clone();
    let (s0, s1) = (seg(&w.a, 0), seg(&w.a, 1));
    let first = f[s0.clone()].to_vec();
    let second = f[s1.clone()].to_vec();
    f[s0].copy_from_slice(&second);
    f[s1].copy_from_slice(&first);
    assert_eq!(w.stream(&f), Err("decrypt_failed"));
    assert_eq!(w.range(&f, 10, 20), Err("decrypt_failed"));
    assert_eq!(
        w.range(&f, SEGMENT_SIZE as u64 + 10, SEGMENT_SIZE as u64 + 20),
        Err("decrypt_failed")
    );
    // Segment 2 is untouched: a ranged read of it alone still works (DEK possession only).
    let at = 2 * SEGMENT_SIZE as u64;
    assert_eq!(
        w.range(&f, at, at + 5).unwrap(),
        &w.plain[2 * SEGMENT_SIZE..2 * SEGMENT_SIZE + 5]
    );
}

#[test]
fn duplicated_segment_rejected() {
    let w = world();
    let s0 = seg(&w.a, 0);
    let mut f = w.a.file[..s0.end].to_vec();
    f.extend_from_slice(&w.a.file[s0.clone()]);
    f.extend_from_slice(&w.a.file[s0.end..]);
    assert_eq!(w.stream(&f), Err("decrypt_failed"));
    let seg = SEGMENT_SIZE as u64;
    assert_eq!(w.range(&f, seg, seg + 1), Err("decrypt_failed"));
    // The final segment is now one position later: a read of the end fails too.
    let len = LEN as u64 + seg;
    assert!(w.range(&f, len - 5, len).is_err());
    // Duplicating the final segment (and the trailer) is no better.
    let last = seg_of_last(&w.a);
    let mut g = w.a.file[..last.end].to_vec();
    g.extend_from_slice(&w.a.file[last.clone()]);
    g.extend_from_slice(&w.a.file[last.end..]);
    assert!(w.stream(&g).is_err());
}

fn seg_of_last(m: &Made) -> std::ops::Range<usize> {
    let n = (m.file.len() - m.header_len - 68).div_ceil(SEGMENT_CT_SIZE);
    seg(m, n - 1)
}

#[test]
fn truncation_is_an_error_never_a_clean_end() {
    let w = world();
    let f = &w.a.file;
    let h = w.a.header_len;
    let mut cuts = vec![
        0,
        1,
        5,
        6,
        h - 1,
        h,
        h + 1,
        h + 16,
        h + 84,
        f.len() - 68,
        f.len() - 1,
    ];
    for i in 1..=3 {
        let b = h + i * SEGMENT_CT_SIZE;
        cuts.extend([b - 1, b, b + 1, b + 68, b + 69, b + 84, b + 85]);
    }
    for cut in cuts {
        let res = w.stream(&f[..cut]);
        assert!(
            matches!(
                res,
                Err("truncated" | "decrypt_failed" | "malformed" | "bad_signature")
            ),
            "cut at {cut}: {res:?}"
        );
        if cut <= h {
            assert_eq!(res, Err("truncated"), "cut at {cut} (inside the header)");
        }
    }
    // A stream that stops inside the header or before the first segment ends is `truncated`.
    assert_eq!(w.stream(&f[..h + 10]), Err("truncated"));
    // Ranged reads of a truncated file: every read that reaches the (now earlier) end fails,
    // including reads entirely past it, instead of answering with a short or empty result.
    for cut in [
        h + 3 * SEGMENT_CT_SIZE,      // the final segment and the trailer are gone
        h + 2 * SEGMENT_CT_SIZE + 68, // cut right after segment 1 plus a trailer's length
        f.len() - 68,                 // only the trailer is gone
        f.len() - 1,                  // one byte is gone
    ] {
        let g = &f[..cut];
        let claimed = LEN as u64; // what the reader asks for: the whole original length
        assert!(
            w.range(g, claimed - 50, claimed).is_err(),
            "cut {cut}: tail read"
        );
        assert!(
            w.range(g, claimed + 1, claimed + 2).is_err(),
            "cut {cut}: read past the end"
        );
        assert!(w.range(g, 0, claimed).is_err(), "cut {cut}: whole read");
    }
}

#[test]
fn cross_file_segments_rejected() {
    let w = world();
    // Same author, same reader, same plaintext, another file (another DEK and header nonce).
    let mut f = w.a.file.clone();
    let s1 = seg(&w.a, 1);
    f[s1.clone()].copy_from_slice(&w.b.file[seg(&w.b, 1)]);
    assert_eq!(w.stream(&f), Err("decrypt_failed"));
    let at = SEGMENT_SIZE as u64 + 7;
    assert_eq!(w.range(&f, at, at + 1), Err("decrypt_failed"));
    // a's header with b's body: b's segments are under b's key.
    let mut g = w.a.file[..w.a.header_len].to_vec();
    g.extend_from_slice(&w.b.file[w.b.header_len..]);
    assert_eq!(w.stream(&g), Err("decrypt_failed"));
    // b's trailer on a's body: a's tags, b's signature over b's header hash.
    let mut t = w.a.file[..w.a.file.len() - 68].to_vec();
    t.extend_from_slice(&w.b.file[w.b.file.len() - 68..]);
    assert_eq!(w.stream(&t), Err("bad_signature"));
}

#[test]
fn foreign_access_block_and_wrong_parties_rejected() {
    let w = world();
    // b's access block (it holds a grant for the reader, of b's DEK) with a's file.
    assert_eq!(
        w.stream_with(&w.a.file, &w.b.access_block),
        Err("decrypt_failed")
    );
    // Expecting another author.
    let res = decrypt(
        &w.a.file,
        &w.a.access_block,
        &w.other.signing().public().to_bytes(),
        Rc::clone(&w.reader),
        4096,
    );
    assert_eq!(res, Err("no_grant")); // the grants are signed by the real author, not `other`
    let policy = AccessPolicy::new(
        &w.a.access_block,
        &w.other.signing().public().to_bytes(),
        Some(vec![w.author.signing().public().to_bytes().to_vec()]),
    )
    .unwrap();
    let mut s = keystead_wasm::engine::DecryptSession::new(policy, Rc::clone(&w.reader));
    let mut out = Vec::new();
    let err = s.push(&w.a.file, &mut out).unwrap_err();
    assert_eq!(err.code().as_str(), "bad_signature"); // header signed by someone else
    assert!(out.is_empty());
    // A device without a grant.
    let stranger = Rc::new(device(4, "device/stranger"));
    let res = decrypt(
        &w.a.file,
        &w.a.access_block,
        &w.author_key(),
        stranger,
        4096,
    );
    assert_eq!(res, Err("no_grant"));
    // Grants accepted only from trusted granters.
    let policy = AccessPolicy::new(
        &w.a.access_block,
        &w.author_key(),
        Some(vec![w.other.signing().public().to_bytes().to_vec()]),
    )
    .unwrap();
    let mut s = keystead_wasm::engine::DecryptSession::new(policy, Rc::clone(&w.reader));
    assert_eq!(
        s.push(&w.a.file, &mut out).unwrap_err().code().as_str(),
        "no_grant"
    );
    // After an error, the session refuses more input.
    assert_eq!(s.push(b"x", &mut out).unwrap_err().code().as_str(), "usage");
}

#[test]
fn tampered_trailer_and_header_rejected() {
    let w = world();
    let f = &w.a.file;
    for pos in [
        0,
        4,
        5,
        10,
        w.a.header_len - 1,
        f.len() - 68,
        f.len() - 65,
        f.len() - 1,
    ] {
        let mut g = f.clone();
        g[pos] ^= 0x20;
        assert!(w.stream(&g).is_err(), "byte {pos}");
    }
    // Trailing garbage after the trailer.
    let mut g = f.clone();
    g.push(0);
    assert!(w.stream(&g).is_err());
}

#[test]
fn wrong_key_commitment_rejected_before_plaintext() {
    let (_, text) = INTEROP_VECTORS
        .iter()
        .find(|(n, _)| *n == "native-wrong-commitment")
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    let (i, o) = (&v["input"], &v["output"]);
    let keys = SealedKeys::parse(&h(i, "reader_keys"))
        .unwrap()
        .open(s(i, "passphrase"))
        .unwrap();
    let keys = Rc::new(keys);
    let file = h(o, "file");
    let block = h(o, "access_block");
    let author = h(i, "author_public_key");
    // Streamed: nothing is released, whatever the chunking.
    for chunk in [1, 100, 4096, file.len()] {
        let policy = AccessPolicy::new(&block, &author, None).unwrap();
        let mut s = keystead_wasm::engine::DecryptSession::new(policy, Rc::clone(&keys));
        let mut out = Vec::new();
        let mut err = None;
        for c in file.chunks(chunk) {
            if let Err(e) = s.push(c, &mut out) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err.unwrap().code().as_str(), "decrypt_failed");
        assert!(out.is_empty());
    }
    // Ranged.
    let policy = AccessPolicy::new(&block, &author, None).unwrap();
    let prefix = &file[..MAX_HEADER_LEN.min(file.len())];
    let err = RangeDecryptor::new(prefix, file.len() as u64, &policy, &keys)
        .err()
        .unwrap();
    assert_eq!(err.code().as_str(), "decrypt_failed");
}
