//! `encryptStream`, `decryptStream`, `encryptBlob` and `decryptBlob`.
//!
//! Each stream is a pull source over the input's reader: the consumer's `read()` pulls one
//! input chunk (or several, while they produce no output), which is copied into wasm memory
//! in slices of at most [`SLICE`] bytes, pushed through the session and enqueued. Memory is
//! therefore constant: a slice of input, the output of one slice, the session's one-segment
//! buffer, and the one chunk the output stream queues ahead. Nothing is ever gathered whole.
//!
//! Errors error the output stream with a `KeysteadError`: the session's own (`truncated`,
//! `decrypt_failed`, `bad_signature`, …) or `source_failed` when the input stream errors
//! (the original error is its `cause`). After an error the input is cancelled. Cancelling
//! the output cancels the input.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Promise};
use keystead_core::DocumentId;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};
use web_sys::{
    Blob, BlobPropertyBag, ReadableStream, ReadableStreamDefaultController,
    ReadableStreamDefaultReader, UnderlyingSource,
};
use zeroize::Zeroizing;

use crate::engine::{DecryptSession, EncryptSession};
use crate::error::{Error, ErrorCode, Result};
use crate::identity::Identity;
use crate::js;
use crate::rng::rng;

/// Input is copied into wasm memory and processed in slices of at most this many bytes
/// (16 segments), however large the chunks the input stream delivers.
pub const SLICE: usize = SLICE_U32 as usize;
const SLICE_U32: u32 = 1 << 20;

/// A session the pump drives: encryption or decryption.
trait Session: 'static {
    fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()>;
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()>;
}

/// [`EncryptSession::finish`] consumes the session.
struct Encrypting(Option<EncryptSession>);

impl Session for Encrypting {
    fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        self.0
            .as_mut()
            .ok_or(Error::new(
                ErrorCode::Usage,
                "the encryption already finished",
            ))?
            .push(data, out)
    }
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.0
            .take()
            .ok_or(Error::new(
                ErrorCode::Usage,
                "the encryption already finished",
            ))?
            .finish(out)
    }
}

impl Session for DecryptSession {
    fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
        DecryptSession::push(self, data, out)
    }
    fn finish(&mut self, out: &mut Vec<u8>) -> Result<()> {
        DecryptSession::finish(self, out)
    }
}

struct Pump<S> {
    reader: ReadableStreamDefaultReader,
    /// `None` once finished, failed or cancelled (dropping it zeroizes its buffers).
    session: Option<S>,
    /// Bytes to emit before anything else (the content header when encrypting).
    prelude: Option<Vec<u8>>,
    input: Zeroizing<Vec<u8>>,
    output: Zeroizing<Vec<u8>>,
}

/// The output stream of `session` applied to `input`.
fn pump<S: Session>(
    input: &ReadableStream,
    session: S,
    prelude: Option<Vec<u8>>,
) -> Result<ReadableStream> {
    let reader = ReadableStreamDefaultReader::new(input)
        .map_err(|_| Error::invalid_argument("the input stream is locked (already being read)"))?;
    let state = Rc::new(RefCell::new(Pump {
        reader,
        session: Some(session),
        prelude,
        input: Zeroizing::new(Vec::new()),
        output: Zeroizing::new(Vec::new()),
    }));
    let pull = {
        let state = Rc::clone(&state);
        Closure::<dyn FnMut(ReadableStreamDefaultController) -> Promise>::new(
            move |c: ReadableStreamDefaultController| future_to_promise(pull(Rc::clone(&state), c)),
        )
    };
    let cancel = Closure::<dyn FnMut(JsValue) -> Promise>::new(move |reason: JsValue| {
        let mut st = state.borrow_mut();
        st.session = None;
        st.reader.cancel_with_reason(&reason)
    });
    let source = UnderlyingSource::new();
    // The closures now belong to the JS functions; they are freed when the stream is
    // garbage-collected.
    source.set_pull(pull.into_js_value().unchecked_ref());
    source.set_cancel(cancel.into_js_value().unchecked_ref());
    ReadableStream::new_with_underlying_source(&source)
        .map_err(|_| Error::new(ErrorCode::Usage, "ReadableStream is not available"))
}

/// One `pull`: enqueues at least one chunk, or closes, or errors the stream.
async fn pull<S: Session>(
    state: Rc<RefCell<Pump<S>>>,
    c: ReadableStreamDefaultController,
) -> std::result::Result<JsValue, JsValue> {
    if let Some(prelude) = state.borrow_mut().prelude.take() {
        c.enqueue_with_chunk(&js::to_js(&prelude))?;
        return Ok(JsValue::UNDEFINED);
    }
    loop {
        let read = state.borrow().reader.read();
        let result = match JsFuture::from(read).await {
            Ok(r) => r,
            Err(e) => {
                state.borrow_mut().session = None;
                return Err(js::source_failed(e, "reading the input stream"));
            }
        };
        let mut guard = state.borrow_mut();
        let st = &mut *guard;
        let Some(session) = st.session.as_mut() else {
            return Err(
                Error::new(ErrorCode::Usage, "the stream already failed or finished").into(),
            );
        };
        if js::get(&result, "done").is_truthy() {
            st.output.clear();
            let res = session.finish(&mut st.output);
            st.session = None;
            res?;
            if !st.output.is_empty() {
                c.enqueue_with_chunk(&js::to_js(&st.output))?;
            }
            c.close()?;
            return Ok(JsValue::UNDEFINED);
        }
        let step = (|| -> std::result::Result<bool, JsValue> {
            let chunk = js::bytes(&js::get(&result, "value"), "a chunk of the input stream")?;
            let len = chunk.length();
            let mut emitted = false;
            let mut at = 0u32;
            while at < len {
                let n = (len - at).min(SLICE_U32);
                st.input.resize(n as usize, 0);
                chunk.subarray(at, at + n).copy_to(&mut st.input[..]);
                st.output.clear();
                session.push(&st.input, &mut st.output)?;
                if !st.output.is_empty() {
                    c.enqueue_with_chunk(&js::to_js(&st.output))?;
                    emitted = true;
                }
                at += n;
            }
            Ok(emitted)
        })();
        match step {
            Ok(true) => return Ok(JsValue::UNDEFINED),
            Ok(false) => continue,
            Err(e) => {
                st.session = None;
                let _ = st.reader.cancel_with_reason(&e);
                return Err(e);
            }
        }
    }
}

/// The input as a stream: a `ReadableStream`, or a `Blob` (`File`) read through `stream()`.
fn input_stream(input: &JsValue) -> Result<ReadableStream> {
    if let Some(blob) = input.dyn_ref::<Blob>() {
        return Ok(blob.stream());
    }
    if js::get(input, "getReader").is_function() {
        return Ok(input.clone().unchecked_into());
    }
    Err(Error::invalid_argument(
        "input must be a ReadableStream of Uint8Array or a Blob",
    ))
}

/// `options.documentId`, or a fresh random one.
fn document_id(options: &JsValue) -> Result<DocumentId> {
    let given = js::get(options, "documentId");
    if given.is_undefined() || given.is_null() {
        let mut b = [0u8; 16];
        rand_core::Rng::fill_bytes(&mut rng(), &mut b);
        let mut s = String::from("attachment/");
        for x in b {
            s.push_str(&format!("{x:02x}"));
        }
        return Ok(DocumentId::new(s)?);
    }
    Ok(DocumentId::new(js::string(&given, "options.documentId")?)?)
}

fn encrypt_stream_inner(
    input: &JsValue,
    recipients: &JsValue,
    signer: &Identity,
    options: &JsValue,
) -> Result<JsValue> {
    let input = input_stream(input)?;
    let recipients = js::recipients(recipients)?;
    let document = document_id(options)?;
    let group = crate::groups::group_option(options)?;
    let group = group.as_ref().map(|g| g.borrow());
    let session = EncryptSession::new(
        &mut rng(),
        &recipients,
        &signer.keys(),
        document,
        group.as_ref().map(|g| g.state()),
    )?;
    drop(group);
    let access_block = js::to_js(session.access_block());
    let document = JsValue::from_str(session.document().as_str());
    let header = session.header().to_vec();
    let stream = pump(&input, Encrypting(Some(session)), Some(header))?;
    Ok(js::object(&[
        ("stream", &stream.into()),
        ("accessBlock", &access_block.into()),
        ("documentId", &document),
    ]))
}

/// Encrypts a stream for `recipients`, signed by `signer` (the author). Returns
/// `{ stream, accessBlock, documentId }` at once: the header and the grants are made before
/// any data flows, so the access block can be stored while the ciphertext uploads.
#[wasm_bindgen(js_name = encryptStream, unchecked_return_type = "EncryptedStream")]
pub fn encrypt_stream(
    #[wasm_bindgen(unchecked_param_type = "ReadableStream<Uint8Array> | Blob")] input: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Recipient[]")] recipients: JsValue,
    signer: &Identity,
    #[wasm_bindgen(unchecked_param_type = "EncryptOptions | undefined")] options: JsValue,
) -> std::result::Result<JsValue, JsValue> {
    Ok(encrypt_stream_inner(&input, &recipients, signer, &options)?)
}

fn decrypt_stream_inner(
    input: &JsValue,
    identity: &Identity,
    options: &JsValue,
) -> Result<ReadableStream> {
    let input = input_stream(input)?;
    let policy = js::access_policy(options)?;
    pump(&input, DecryptSession::new(policy, identity.keys()), None)
}

/// Decrypts a stream with `identity`'s grant from `options.accessBlock`, checking that
/// `options.author` wrote it. The stream closes only after the author's trailer signature
/// verified; a stream that ends early errors with `truncated`. Treat what was read as
/// authentic only once the stream has closed without error.
#[wasm_bindgen(js_name = decryptStream, unchecked_return_type = "ReadableStream<Uint8Array>")]
pub fn decrypt_stream(
    #[wasm_bindgen(unchecked_param_type = "ReadableStream<Uint8Array> | Blob")] input: JsValue,
    identity: &Identity,
    #[wasm_bindgen(unchecked_param_type = "DecryptOptions")] options: JsValue,
) -> std::result::Result<JsValue, JsValue> {
    Ok(decrypt_stream_inner(&input, identity, &options)?.into())
}

/// Reads a stream to its end into a `Blob`.
async fn collect(
    stream: ReadableStream,
    content_type: Option<String>,
) -> std::result::Result<Blob, JsValue> {
    let reader = ReadableStreamDefaultReader::new(&stream)?;
    let parts = Array::new();
    loop {
        let r = JsFuture::from(reader.read()).await?;
        if js::get(&r, "done").is_truthy() {
            break;
        }
        parts.push(&js::get(&r, "value"));
    }
    let bag = BlobPropertyBag::new();
    if let Some(t) = content_type {
        bag.set_type(&t);
    }
    Blob::new_with_u8_array_sequence_and_options(&parts, &bag)
}

fn blob_arg(v: &JsValue) -> Result<Blob> {
    v.dyn_ref::<Blob>()
        .cloned()
        .ok_or(Error::invalid_argument("blob must be a Blob or a File"))
}

/// Encrypts a `Blob` (or `File`); resolves to `{ blob, accessBlock, documentId }`.
#[wasm_bindgen(js_name = encryptBlob, unchecked_return_type = "Promise<EncryptedBlob>")]
pub fn encrypt_blob(
    #[wasm_bindgen(unchecked_param_type = "Blob")] blob: JsValue,
    #[wasm_bindgen(unchecked_param_type = "Recipient[]")] recipients: JsValue,
    signer: &Identity,
    #[wasm_bindgen(unchecked_param_type = "EncryptOptions | undefined")] options: JsValue,
) -> Promise {
    let started =
        blob_arg(&blob).and_then(|b| encrypt_stream_inner(&b, &recipients, signer, &options));
    let encrypted = match started {
        Ok(v) => v,
        Err(e) => return Promise::reject(&e.into()),
    };
    future_to_promise(async move {
        let stream: ReadableStream = js::get(&encrypted, "stream").unchecked_into();
        let out = collect(stream, Some("application/octet-stream".into())).await?;
        Ok(js::object(&[
            ("blob", &out.into()),
            ("accessBlock", &js::get(&encrypted, "accessBlock")),
            ("documentId", &js::get(&encrypted, "documentId")),
        ]))
    })
}

/// Decrypts a `Blob` written by `encryptBlob` or `encryptStream`; resolves to the plaintext
/// `Blob` (of `options.type`, if given) only after the whole file, trailer included,
/// verified.
#[wasm_bindgen(js_name = decryptBlob, unchecked_return_type = "Promise<Blob>")]
pub fn decrypt_blob(
    #[wasm_bindgen(unchecked_param_type = "Blob")] blob: JsValue,
    identity: &Identity,
    #[wasm_bindgen(unchecked_param_type = "DecryptBlobOptions")] options: JsValue,
) -> Promise {
    let started = blob_arg(&blob).and_then(|b| {
        let content_type = js::get(&options, "type");
        let content_type = if content_type.is_undefined() {
            None
        } else {
            Some(js::string(&content_type, "options.type")?)
        };
        Ok((decrypt_stream_inner(&b, identity, &options)?, content_type))
    });
    let (stream, content_type) = match started {
        Ok(v) => v,
        Err(e) => return Promise::reject(&e.into()),
    };
    future_to_promise(async move { Ok(collect(stream, content_type).await?.into()) })
}
