//! `Identity.signRequest`: the `Authorization: Keystead-Device ...` value of a request to the
//! key directory (docs/DIRECTORY.md, "Device signatures"), signed with the device's Ed25519
//! key over keystead-core's request input (docs/FORMAT.md section 30). The key stays in wasm
//! memory; JavaScript gets the header value only.

use keystead_core::request_auth::{self, NONCE_LEN, SignedRequest};
use wasm_bindgen::prelude::*;

use crate::error::{Error, ErrorCode, Result};
use crate::identity::{Identity, hex};
use crate::js;
use crate::rng::rng;

/// Longest device id the directory registers (its `device_auth::MAX_DEVICE_ID`).
const MAX_DIRECTORY_DEVICE_ID: usize = 128;

/// Largest integer a JS number holds exactly (2^53 - 1).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Whether `id` can name a device in a `Keystead-Device` header: the directory's device id
/// alphabet `[A-Za-z0-9._~-]{1,128}`, which needs no quoting.
fn directory_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DIRECTORY_DEVICE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// An HTTP method token in upper case (`GET`, `PUT`, ...), as the server compares it.
fn method_token(m: &str) -> bool {
    !m.is_empty() && m.len() <= 16 && m.bytes().all(|b| b.is_ascii_uppercase())
}

/// Standard padded base64 (RFC 4648 section 4), for the signature parameter.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |n: u32, shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sextet(n, 18));
        out.push(sextet(n, 12));
        out.push(if chunk.len() > 1 { sextet(n, 6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(n, 0) } else { '=' });
    }
    out
}

/// The body's SHA-256: from `body` (bytes, or `undefined`/`null` for none) or, when the
/// caller hashed it already, from `options.bodySha256` (then `body` must be absent).
fn body_sha256(body: &JsValue, options: &JsValue) -> Result<[u8; 32]> {
    let given = js::get(options, "bodySha256");
    let has_body = !(body.is_undefined() || body.is_null());
    if given.is_undefined() || given.is_null() {
        return Ok(if has_body {
            request_auth::body_hash(&js::byte_vec(body, "body")?)
        } else {
            request_auth::body_hash(&[])
        });
    }
    if has_body {
        return Err(Error::invalid_argument(
            "pass either body or options.bodySha256, not both",
        ));
    }
    js::byte_vec(&given, "options.bodySha256")?
        .try_into()
        .map_err(|_| Error::invalid_argument("options.bodySha256 must be 32 bytes"))
}

/// `options.timestamp` (Unix seconds, an integer) or the current time from `Date.now()`.
fn timestamp(options: &JsValue) -> Result<u64> {
    let t = js::get(options, "timestamp");
    let secs = if t.is_undefined() || t.is_null() {
        (js_sys::Date::now() / 1000.0).floor()
    } else {
        t.as_f64()
            .filter(|s| s.fract() == 0.0 && (0.0..=MAX_SAFE_INTEGER).contains(s))
            .ok_or(Error::invalid_argument(
                "options.timestamp must be a non-negative integer (Unix seconds)",
            ))?
    };
    // A non-negative integer below 2^53 (Date.now() / 1000 is far below it).
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(secs as u64)
}

/// The header value for a signed request (the nonce and time are in `req`).
pub fn authorization(
    keys: &keystead_core::device::DeviceKeys,
    req: &SignedRequest<'_>,
) -> Result<String> {
    let sig = request_auth::sign(keys.signing(), req)?;
    Ok(format!(
        "Keystead-Device device=\"{}\", ts={}, nonce=\"{}\", sig=\"{}\"",
        req.device_id,
        req.timestamp,
        hex(&req.nonce),
        base64(&sig)
    ))
}

#[wasm_bindgen]
impl Identity {
    /// The `Authorization` header value (`Keystead-Device device="…", ts=…, nonce="…",
    /// sig="…"`) for one request to the key directory, signed by this device: `method` in
    /// upper case, `host` as the server receives it in `Host` (with the port unless it is
    /// the scheme's default), `pathAndQuery` exactly as sent, and the body's bytes
    /// (`undefined` for none). Each call draws a fresh 16-byte nonce, so sign every request
    /// (and every retry) anew. `options.timestamp` overrides the time (Unix seconds;
    /// default `Date.now()`), `options.bodySha256` passes the body's SHA-256 instead of the
    /// body. The device id must be a directory device id (`[A-Za-z0-9._~-]{1,128}`).
    #[wasm_bindgen(js_name = signRequest)]
    pub fn sign_request(
        &self,
        method: &str,
        host: &str,
        path_and_query: &str,
        #[wasm_bindgen(unchecked_param_type = "Uint8Array | undefined")] body: JsValue,
        #[wasm_bindgen(unchecked_param_type = "SignRequestOptions | undefined")] options: JsValue,
    ) -> std::result::Result<String, JsValue> {
        let keys = self.keys();
        let device_id = keys.id().as_str();
        if !directory_device_id(device_id) {
            return Err(Error::new(
                ErrorCode::InvalidId,
                "a directory device id is 1 to 128 characters of A-Z a-z 0-9 . _ ~ -",
            )
            .into());
        }
        if !method_token(method) {
            return Err(Error::invalid_argument("method must be an upper-case HTTP method").into());
        }
        if host.is_empty() || !path_and_query.starts_with('/') {
            return Err(Error::invalid_argument(
                "host must not be empty and pathAndQuery must start with /",
            )
            .into());
        }
        let mut nonce = [0u8; NONCE_LEN];
        rand_core::Rng::fill_bytes(&mut rng(), &mut nonce);
        let req = SignedRequest {
            method,
            host,
            path_and_query,
            body_sha256: body_sha256(&body, &options)?,
            timestamp: timestamp(&options)?,
            nonce,
            device_id,
        };
        Ok(authorization(&keys, &req)?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn device_ids_and_methods() {
        assert!(directory_device_id("ada-laptop.1_~"));
        assert!(!directory_device_id("device/ada"));
        assert!(!directory_device_id(""));
        assert!(!directory_device_id(&"d".repeat(129)));
        assert!(method_token("PUT"));
        assert!(!method_token("put"));
        assert!(!method_token(""));
    }

    /// The header of the frozen vector `basic`, rebuilt through [`authorization`].
    #[test]
    fn vector_header() {
        let v: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/vectors/request_auth/basic.json"
        ))
        .unwrap();
        let i = &v["input"];
        let seed: [u8; 32] = hex::decode(i["signing_seed"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let id = keystead_core::RecipientId::new(i["device_id"].as_str().unwrap()).unwrap();
        let keys = keystead_core::device::DeviceKeys::from_parts(
            id,
            keystead_core::EncryptionKeyPair::from_secret_bytes(&[9; 32]),
            keystead_core::SigningKeyPair::from_secret_bytes(&seed),
        );
        let req = SignedRequest {
            method: i["method"].as_str().unwrap(),
            host: i["host"].as_str().unwrap(),
            path_and_query: i["path_and_query"].as_str().unwrap(),
            body_sha256: request_auth::body_hash(
                &hex::decode(i["body"].as_str().unwrap()).unwrap(),
            ),
            timestamp: i["timestamp"].as_u64().unwrap(),
            nonce: hex::decode(i["nonce"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap(),
            device_id: i["device_id"].as_str().unwrap(),
        };
        let sig = hex::decode(v["output"]["signature"].as_str().unwrap()).unwrap();
        let want = format!(
            "Keystead-Device device=\"ada-laptop\", ts=1767225600, \
             nonce=\"11111111111111111111111111111111\", sig=\"{}\"",
            base64(&sig)
        );
        assert_eq!(authorization(&keys, &req).unwrap(), want);
    }
}
