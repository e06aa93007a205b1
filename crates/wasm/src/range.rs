//! `decryptRange`: plaintext bytes `start..end` of an attachment, read from a `Blob` or
//! through an async range fetcher (HTTP Range requests), one contiguous request per batch of
//! up to [`BATCH`] segments.
//!
//! A ranged read checks the header (expected author, key commitment) and the segments it
//! reads, so it proves that the bytes come from someone holding the DEK under an
//! author-signed header; only a full `decryptStream` also verifies the trailer signature
//! (docs/FORMAT.md section 13.3). A request that reaches the end of the plaintext also reads
//! the final segment, so a file cut short is an error, never a short answer.

use std::ops::Range;

use js_sys::{Function, Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};
use web_sys::Blob;
use zeroize::Zeroizing;

use crate::engine::{MAX_HEADER_LEN, RangeDecryptor};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::Identity;
use crate::js;

/// Segments fetched per request (1 MiB of plaintext).
pub const BATCH: u64 = 16;

/// The most plaintext one call returns (wasm32 memory is at most 4 GiB).
pub const MAX_RANGE: u64 = 1 << 30;

enum Source {
    Blob(Blob),
    Fetcher {
        size: u64,
        this: JsValue,
        read: Function,
    },
}

impl Source {
    fn new(v: &JsValue) -> Result<Self> {
        if let Some(b) = v.dyn_ref::<Blob>() {
            return Ok(Source::Blob(b.clone()));
        }
        let read = js::get(v, "read");
        if !read.is_function() {
            return Err(Error::invalid_argument(
                "source must be a Blob or { size, read(start, end) }",
            ));
        }
        Ok(Source::Fetcher {
            size: js::offset(&js::get(v, "size"), "source.size")?,
            this: v.clone(),
            read: read.unchecked_into(),
        })
    }

    fn size(&self) -> Result<u64> {
        match self {
            Source::Blob(b) => js::offset(&JsValue::from_f64(b.size()), "blob.size"),
            Source::Fetcher { size, .. } => Ok(*size),
        }
    }

    /// Exactly the bytes `range` of the file.
    async fn read(&self, range: Range<u64>) -> std::result::Result<Vec<u8>, JsValue> {
        // Offsets are at most 2^53 - 1 (checked when the size was read), exact as f64.
        #[allow(clippy::cast_precision_loss)]
        let (start, end) = (range.start as f64, range.end as f64);
        let promise = match self {
            Source::Blob(b) => b
                .slice_with_f64_and_f64(start, end)
                .map(|s| s.array_buffer())
                .map_err(|e| js::source_failed(e, "Blob.slice"))?,
            Source::Fetcher { this, read, .. } => {
                let ret = read
                    .call2(this, &JsValue::from_f64(start), &JsValue::from_f64(end))
                    .map_err(|e| js::source_failed(e, "source.read"))?;
                Promise::resolve(&ret)
            }
        };
        let value = JsFuture::from(promise)
            .await
            .map_err(|e| js::source_failed(e, "reading a byte range"))?;
        let bytes = js::bytes(&value, "the bytes source.read resolved to")?;
        if u64::from(bytes.length()) != range.end - range.start {
            return Err(Error::new(
                ErrorCode::SourceFailed,
                "the source returned a different number of bytes than requested",
            )
            .into());
        }
        Ok(bytes.to_vec())
    }
}

/// Decrypts plaintext bytes `start..end` (end exclusive, clamped to the plaintext length)
/// of an attachment held in `source`: a `Blob`, or `{ size, read(start, end) }` where
/// `read` resolves to exactly the file bytes `start..end` (e.g. through an HTTP Range
/// request, whose header is inclusive: `bytes=${start}-${end - 1}`).
#[wasm_bindgen(js_name = decryptRange, unchecked_return_type = "Promise<Uint8Array>")]
pub fn decrypt_range(
    #[wasm_bindgen(unchecked_param_type = "Blob | RangeSource")] source: JsValue,
    #[wasm_bindgen(unchecked_param_type = "number")] start: JsValue,
    #[wasm_bindgen(unchecked_param_type = "number")] end: JsValue,
    identity: &Identity,
    #[wasm_bindgen(unchecked_param_type = "DecryptOptions")] options: JsValue,
) -> Promise {
    let setup = (|| -> Result<_> {
        Ok((
            Source::new(&source)?,
            js::offset(&start, "start")?,
            js::offset(&end, "end")?,
            js::access_policy(&options)?,
        ))
    })();
    let (source, start, end, policy) = match setup {
        Ok(v) => v,
        Err(e) => return Promise::reject(&e.into()),
    };
    if start > end {
        return Promise::reject(&Error::invalid_argument("range start is after its end").into());
    }
    let keys = identity.keys();
    future_to_promise(async move {
        let size = source.size()?;
        let prefix = source.read(0..size.min(MAX_HEADER_LEN as u64)).await?;
        let reader = RangeDecryptor::new(&prefix, size, &policy, &keys)?;
        drop(keys);
        let segs = reader.segments_for(start, end)?;
        let want = end.min(reader.plaintext_len()).saturating_sub(start);
        if want > MAX_RANGE {
            return Err(Error::new(
                ErrorCode::LimitExceeded,
                "a ranged read returns at most 1 GiB: use decryptStream for more",
            )
            .into());
        }
        // Checked above: at most 1 GiB, which fits a usize on every target.
        let mut out = Zeroizing::new(Vec::with_capacity(usize::try_from(want).unwrap_or(0)));
        let mut i = segs.start;
        while i < segs.end {
            let j = (i + BATCH).min(segs.end);
            let bytes = source.read(reader.byte_range(i..j)?).await?;
            reader.decrypt(i..j, &bytes, start, end, &mut out)?;
            i = j;
        }
        Ok(Uint8Array::from(&out[..]).into())
    })
}
