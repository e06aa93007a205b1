//! Conversions between JavaScript values and the engine's types: argument checking with
//! `invalid_argument` errors instead of wasm-bindgen's generic ones.

use js_sys::{Array, ArrayBuffer, Promise, Reflect, Uint8Array};
use keystead_core::{EncryptionPublicKey, RecipientId};
use wasm_bindgen::{JsCast, JsValue};

use crate::engine::{AccessPolicy, Recipient};
use crate::error::{Error, ErrorCode, Result};

/// The largest integer a JS number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// `obj[key]`, or `undefined` when `obj` is not an object.
pub(crate) fn get(obj: &JsValue, key: &str) -> JsValue {
    if !obj.is_object() {
        return JsValue::UNDEFINED;
    }
    Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// A `Uint8Array` view of bytes given as a `Uint8Array` (or `Buffer`), an `ArrayBuffer` or
/// any other `ArrayBufferView`. No copy is made.
pub(crate) fn bytes(v: &JsValue, what: &'static str) -> Result<Uint8Array> {
    if let Some(a) = v.dyn_ref::<Uint8Array>() {
        return Ok(a.clone());
    }
    if let Some(b) = v.dyn_ref::<ArrayBuffer>() {
        return Ok(Uint8Array::new(b));
    }
    if ArrayBuffer::is_view(v) {
        let buffer = get(v, "buffer");
        let offset = get(v, "byteOffset").as_f64().unwrap_or(0.0);
        let len = get(v, "byteLength").as_f64().unwrap_or(0.0);
        // Offsets of a live view are integers within its buffer, far below 2^32.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        return Ok(Uint8Array::new_with_byte_offset_and_length(
            &buffer,
            offset as u32,
            len as u32,
        ));
    }
    Err(Error::with_message(
        ErrorCode::InvalidArgument,
        format!("{what} must be a Uint8Array, an ArrayBuffer or an ArrayBufferView"),
    ))
}

/// The bytes of `v` copied into wasm memory.
pub(crate) fn byte_vec(v: &JsValue, what: &'static str) -> Result<Vec<u8>> {
    Ok(bytes(v, what)?.to_vec())
}

/// A non-negative integer given as a JS number.
pub(crate) fn offset(v: &JsValue, what: &'static str) -> Result<u64> {
    let n = v.as_f64().ok_or_else(|| {
        Error::with_message(
            ErrorCode::InvalidArgument,
            format!("{what} must be a number"),
        )
    })?;
    if !(n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= MAX_SAFE_INTEGER) {
        return Err(Error::with_message(
            ErrorCode::InvalidArgument,
            format!("{what} must be a non-negative safe integer"),
        ));
    }
    // Checked above: an integer in 0..=2^53-1.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(n as u64)
}

/// A string argument.
pub(crate) fn string(v: &JsValue, what: &'static str) -> Result<String> {
    v.as_string().ok_or_else(|| {
        Error::with_message(
            ErrorCode::InvalidArgument,
            format!("{what} must be a string"),
        )
    })
}

/// `[{ id, publicKey }, …]`: an array of recipients (an `Identity` qualifies, it has both).
pub(crate) fn recipients(v: &JsValue) -> Result<Vec<Recipient>> {
    if !Array::is_array(v) {
        return Err(Error::invalid_argument(
            "recipients must be an array of { id, publicKey }",
        ));
    }
    let arr: &Array = v.unchecked_ref();
    let mut out = Vec::with_capacity(arr.length() as usize);
    for item in arr.iter() {
        let id = RecipientId::new(string(&get(&item, "id"), "recipient.id")?)?;
        let key = byte_vec(&get(&item, "publicKey"), "recipient.publicKey")?;
        let key: [u8; 32] = key.as_slice().try_into().map_err(|_| {
            Error::new(
                ErrorCode::InvalidKey,
                "a recipient's X25519 public key is 32 bytes long",
            )
        })?;
        out.push(Recipient {
            id,
            key: EncryptionPublicKey::from_bytes(&key)?,
        });
    }
    Ok(out)
}

/// `{ accessBlock, author, trustedGranters?, group? }`.
pub(crate) fn access_policy(v: &JsValue) -> Result<AccessPolicy> {
    if !v.is_object() {
        return Err(Error::invalid_argument(
            "options must be an object { accessBlock, author }",
        ));
    }
    let block = byte_vec(&get(v, "accessBlock"), "options.accessBlock")?;
    let author = byte_vec(&get(v, "author"), "options.author")?;
    let granters = get(v, "trustedGranters");
    let granters = if granters.is_undefined() || granters.is_null() {
        None
    } else if Array::is_array(&granters) {
        let arr: &Array = granters.unchecked_ref();
        Some(
            arr.iter()
                .map(|g| byte_vec(&g, "options.trustedGranters[]"))
                .collect::<Result<Vec<_>>>()?,
        )
    } else {
        return Err(Error::invalid_argument(
            "options.trustedGranters must be an array of Uint8Array",
        ));
    };
    Ok(AccessPolicy::new(&block, &author, granters)?.with_group(crate::groups::group_option(v)?))
}

/// A plain object from key–value pairs.
pub(crate) fn object(pairs: &[(&str, &JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in pairs {
        // Defining a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// A promise that settles with `res`.
pub(crate) fn settle(res: Result<JsValue>) -> Promise {
    match res {
        Ok(v) => Promise::resolve(&v),
        Err(e) => Promise::reject(&e.into()),
    }
}

/// A `KeysteadError` with code `source_failed`, keeping the original error as `cause`.
pub(crate) fn source_failed(cause: JsValue, what: &str) -> JsValue {
    let err: JsValue =
        Error::with_message(ErrorCode::SourceFailed, format!("{what} failed")).into();
    let _ = Reflect::set(&err, &JsValue::from_str("cause"), &cause);
    err
}

/// Uint8Array copy of wasm bytes.
pub(crate) fn to_js(bytes: &[u8]) -> Uint8Array {
    Uint8Array::from(bytes)
}
