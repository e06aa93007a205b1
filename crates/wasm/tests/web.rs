//! In a JS engine (`wasm-pack test --node`, `wasm-pack test --headless --chrome`): the shared
//! vectors decrypt in wasm, and the JS API itself (Blobs, streams, ranges, key export, error
//! objects) behaves, including on adversarial input.
#![cfg(target_arch = "wasm32")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use js_sys::{Array, Promise, Reflect, Uint8Array};
use keystead_core::attachment::AttachmentHeader;
use keystead_core::stream::{SEGMENT_CT_SIZE, SEGMENT_SIZE, StreamDecryptor};
use keystead_core::{Dek, SigningPublicKey};
use keystead_wasm::Identity;
use keystead_wasm::identity::{export_keys, import_keys};
use keystead_wasm::range::decrypt_range;
use keystead_wasm::streams::{decrypt_blob, decrypt_stream, encrypt_blob, encrypt_stream};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;
use web_sys::{Blob, ReadableStream, ReadableStreamDefaultReader};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap()
}

#[wasm_bindgen_test]
fn frozen_attachment_vectors_decrypt_in_wasm() {
    for (name, text) in ATTACHMENT_VECTORS {
        let v = json(text);
        let (i, o) = (&v["input"], &v["output"]);
        let file = h(o, "file");
        let hlen = usize::try_from(n(o, "header_len")).unwrap();
        let header = AttachmentHeader::parse(&file[..hlen]).unwrap();
        let author = SigningPublicKey::from_bytes(&arr32(h(o, "author_public_key"))).unwrap();
        let dek = Dek::from_bytes(arr32(h(i, "dek")));
        let mut dec = StreamDecryptor::new(&header, &dek, &author).unwrap();
        let mut out = Vec::new();
        dec.push(&file[hlen..], &mut out).unwrap();
        dec.finish(&mut out).unwrap();
        assert_eq!(
            out,
            pattern(usize::try_from(n(i, "plaintext_len")).unwrap()),
            "{name}"
        );
    }
}

#[wasm_bindgen_test]
fn interop_vectors_decrypt_in_wasm() {
    for (_, text) in INTEROP_VECTORS {
        check_interop(&json(text));
    }
}

#[wasm_bindgen_test]
fn key_export_vectors_open_in_wasm() {
    for (_, text) in KEY_EXPORT_VECTORS {
        check_key_export(&json(text));
    }
}

// ---- the JS API ------------------------------------------------------------------------------

fn blob(bytes: &[u8]) -> Blob {
    let parts = Array::of1(&Uint8Array::from(bytes));
    Blob::new_with_u8_array_sequence(&parts).unwrap()
}

async fn blob_bytes(b: &JsValue) -> Vec<u8> {
    let b: &Blob = b.unchecked_ref();
    Uint8Array::new(&JsFuture::from(b.array_buffer()).await.unwrap()).to_vec()
}

fn get(v: &JsValue, k: &str) -> JsValue {
    Reflect::get(v, &k.into()).unwrap()
}

/// The `code` of a rejected promise's KeysteadError.
async fn rejection_code(p: Promise) -> String {
    let err = JsFuture::from(p).await.expect_err("expected a rejection");
    assert_eq!(get(&err, "name").as_string().unwrap(), "KeysteadError");
    get(&err, "code").as_string().unwrap()
}

fn recipients(ids: &[&Identity]) -> JsValue {
    ids.iter().map(|i| i.recipient()).collect::<Array>().into()
}

fn options(access_block: &JsValue, author: &Identity) -> JsValue {
    let o = js_sys::Object::new();
    Reflect::set(&o, &"accessBlock".into(), access_block).unwrap();
    Reflect::set(
        &o,
        &"author".into(),
        &Uint8Array::from(&author.signing_public_key()[..]),
    )
    .unwrap();
    o.into()
}

/// Reads a stream to its end: the bytes, or the code of the error it ended with.
async fn drain(stream: &JsValue) -> Result<Vec<u8>, String> {
    let reader =
        ReadableStreamDefaultReader::new(stream.unchecked_ref::<ReadableStream>()).unwrap();
    let mut out = Vec::new();
    loop {
        match JsFuture::from(reader.read()).await {
            Err(e) => return Err(get(&e, "code").as_string().unwrap_or_default()),
            Ok(r) => {
                if get(&r, "done").is_truthy() {
                    return Ok(out);
                }
                out.extend(Uint8Array::new(&get(&r, "value")).to_vec());
            }
        }
    }
}

#[wasm_bindgen_test]
async fn blob_round_trip_for_two_recipients() {
    let alice = Identity::generate("device/alice").unwrap();
    let bob = Identity::generate("device/bob").unwrap();
    let plain = pattern(2 * SEGMENT_SIZE + 333);
    let enc = JsFuture::from(encrypt_blob(
        blob(&plain).into(),
        recipients(&[&alice, &bob]),
        &alice,
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap();
    let block = get(&enc, "accessBlock");
    assert!(
        get(&enc, "documentId")
            .as_string()
            .unwrap()
            .starts_with("attachment/")
    );
    for reader in [&alice, &bob] {
        let out = JsFuture::from(decrypt_blob(
            get(&enc, "blob"),
            reader,
            options(&block, &alice),
        ))
        .await
        .unwrap();
        assert_eq!(blob_bytes(&out).await, plain);
    }
    // Ranged, from the Blob.
    let r = JsFuture::from(decrypt_range(
        get(&enc, "blob"),
        70_000.into(),
        130_000.into(),
        &bob,
        options(&block, &alice),
    ))
    .await
    .unwrap();
    assert_eq!(Uint8Array::new(&r).to_vec(), &plain[70_000..130_000]);
    // A third device has no grant; a wrong author is refused.
    let carol = Identity::generate("device/carol").unwrap();
    let p = decrypt_blob(get(&enc, "blob"), &carol, options(&block, &alice));
    assert_eq!(rejection_code(p).await, "no_grant");
    let p = decrypt_blob(get(&enc, "blob"), &bob, options(&block, &carol));
    assert_eq!(rejection_code(p).await, "no_grant");
}

#[wasm_bindgen_test]
async fn streams_reject_tampering_and_truncation() {
    let me = Identity::generate("device/me").unwrap();
    let plain = pattern(3 * SEGMENT_SIZE + 10);
    let enc = encrypt_stream(
        blob(&plain).into(),
        recipients(&[&me]),
        &me,
        JsValue::UNDEFINED,
    )
    .unwrap();
    let block = get(&enc, "accessBlock");
    let file = drain(&get(&enc, "stream")).await.unwrap();
    let hlen = AttachmentHeader::encoded_len(&file[..6]).unwrap();
    let open = |bytes: Vec<u8>| {
        let out = decrypt_stream(blob(&bytes).into(), &me, options(&block, &me)).unwrap();
        async move { drain(&out).await }
    };
    assert_eq!(open(file.clone()).await.unwrap(), plain);
    // Truncated at the start of segment 2 and in the middle of it: an error, never a clean end.
    for cut in [
        hlen + 2 * SEGMENT_CT_SIZE,
        hlen + 2 * SEGMENT_CT_SIZE + 100,
        file.len() - 1,
        100,
    ] {
        let res = open(file[..cut].to_vec()).await;
        assert!(
            matches!(
                res.as_ref().map_err(String::as_str),
                Err("truncated" | "decrypt_failed")
            ),
            "cut {cut}: {res:?}"
        );
    }
    // Segments 0 and 1 swapped.
    let mut swapped = file.clone();
    let (a, b) = (
        hlen..hlen + SEGMENT_CT_SIZE,
        hlen + SEGMENT_CT_SIZE..hlen + 2 * SEGMENT_CT_SIZE,
    );
    let s0 = file[a.clone()].to_vec();
    swapped[a].copy_from_slice(&file[b.clone()]);
    swapped[b].copy_from_slice(&s0);
    assert_eq!(open(swapped.clone()).await, Err("decrypt_failed".into()));
    let p = decrypt_range(
        blob(&swapped).into(),
        10.into(),
        20.into(),
        &me,
        options(&block, &me),
    );
    assert_eq!(rejection_code(p).await, "decrypt_failed");
    // Segment 0 duplicated.
    let mut dup = file[..hlen + SEGMENT_CT_SIZE].to_vec();
    dup.extend_from_slice(&file[hlen..]);
    assert_eq!(open(dup).await, Err("decrypt_failed".into()));
    // Ranged read of a truncated file that reaches the end.
    let cut = &file[..file.len() - 68];
    let len = plain.len() as f64;
    let p = decrypt_range(
        blob(cut).into(),
        (len - 5.0).into(),
        len.into(),
        &me,
        options(&block, &me),
    );
    assert!(
        ["decrypt_failed", "truncated", "malformed"].contains(&rejection_code(p).await.as_str())
    );
}

#[wasm_bindgen_test]
async fn range_source_errors_are_source_failed() {
    let me = Identity::generate("device/me").unwrap();
    let failing = Closure::<dyn FnMut(f64, f64) -> Promise>::new(|_: f64, _: f64| {
        Promise::reject(&JsValue::from_str("network down"))
    });
    let source = js_sys::Object::new();
    Reflect::set(&source, &"size".into(), &1000.into()).unwrap();
    Reflect::set(&source, &"read".into(), failing.as_ref()).unwrap();
    let enc = JsFuture::from(encrypt_blob(
        blob(b"x").into(),
        recipients(&[&me]),
        &me,
        JsValue::UNDEFINED,
    ))
    .await
    .unwrap();
    let p = decrypt_range(
        source.into(),
        0.into(),
        1.into(),
        &me,
        options(&get(&enc, "accessBlock"), &me),
    );
    let err = JsFuture::from(p).await.unwrap_err();
    assert_eq!(get(&err, "code").as_string().unwrap(), "source_failed");
    assert_eq!(get(&err, "cause").as_string().unwrap(), "network down");
    // Bad arguments are invalid_argument.
    let p = decrypt_range(
        JsValue::from(5),
        0.into(),
        1.into(),
        &me,
        options(&get(&enc, "accessBlock"), &me),
    );
    assert_eq!(rejection_code(p).await, "invalid_argument");
    let p = decrypt_range(
        blob(b"").into(),
        9.into(),
        1.into(),
        &me,
        options(&get(&enc, "accessBlock"), &me),
    );
    assert_eq!(rejection_code(p).await, "invalid_argument");
}

#[wasm_bindgen_test]
async fn keys_export_and_import() {
    let me = Identity::generate("device/me").unwrap();
    let sealed = JsFuture::from(export_keys(&me, "pass phrase"))
        .await
        .unwrap();
    let back = JsFuture::from(import_keys(sealed.clone(), "pass phrase"))
        .await
        .unwrap();
    assert_eq!(
        get(&back, "fingerprint").as_string().unwrap(),
        me.fingerprint()
    );
    assert_eq!(
        rejection_code(import_keys(sealed.clone(), "wrong")).await,
        "decrypt_failed"
    );
    let bytes = Uint8Array::new(&sealed).to_vec();
    assert_eq!(
        rejection_code(import_keys(
            Uint8Array::from(&bytes[..10]).into(),
            "pass phrase"
        ))
        .await,
        "malformed"
    );
}
