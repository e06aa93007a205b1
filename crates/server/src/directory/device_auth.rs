//! The `Keystead-Device` authorization scheme (docs/DIRECTORY.md): requests signed by a
//! registered device's Ed25519 key over keystead-core's `request_auth` input.
//!
//! ```text
//! Authorization: Keystead-Device device="<device id>", ts=<unix seconds>,
//!                nonce="<32 hex digits>", sig="<base64 of 64 bytes>"
//! ```
//!
//! Parameters are comma-separated `name=value` pairs in this order, each exactly once;
//! device ids are restricted to `[A-Za-z0-9._~-]`, so no quoting rules are needed.
//! A request is fresh within ±[`WINDOW_SECS`] of the server's clock, and a nonce is
//! remembered (per device) until its request could no longer be fresh, so each signed
//! request is accepted once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Mutex;

use base64::Engine as _;

use crate::error::ApiError;

/// Accepted clock skew either way, seconds.
pub const WINDOW_SECS: i64 = 300;
/// Nonces remembered at most (about 64 bytes each plus the device id).
pub const MAX_NONCES: usize = 1_000_000;
/// Longest device id, bytes.
pub const MAX_DEVICE_ID: usize = 128;

/// The parsed header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAuth {
    /// The signing device.
    pub device_id: String,
    /// Unix seconds at signing.
    pub timestamp: u64,
    /// Per-request nonce.
    pub nonce: [u8; 16],
    /// Ed25519 signature.
    pub sig: [u8; 64],
}

/// Whether `id` is a valid device id (also enforced at registration).
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DEVICE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
}

/// Whether an `Authorization` value uses this scheme.
pub fn is_device_auth(header: &str) -> bool {
    header.starts_with("Keystead-Device ")
}

/// Parses the header value. Every malformation is the same `401 unauthenticated`.
pub fn parse_header(h: &str) -> Result<DeviceAuth, ApiError> {
    let fail = ApiError::unauthenticated;
    let rest = h.strip_prefix("Keystead-Device ").ok_or_else(fail)?;
    let mut parts = rest.split(',').map(str::trim);
    let quoted = |v: &str| -> Result<String, ApiError> {
        v.strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map(str::to_owned)
            .ok_or_else(fail)
    };
    let device_id = quoted(field(&mut parts, "device")?)?;
    let ts = field(&mut parts, "ts")?;
    if ts.is_empty() || ts.len() > 19 || !ts.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail());
    }
    let timestamp: u64 = ts.parse().map_err(|_| fail())?;
    let nonce_hex = quoted(field(&mut parts, "nonce")?)?;
    let sig_b64 = quoted(field(&mut parts, "sig")?)?;
    if parts.next().is_some() || !valid_device_id(&device_id) {
        return Err(fail());
    }
    let mut nonce = [0u8; 16];
    hex::decode_to_slice(&nonce_hex, &mut nonce).map_err(|_| fail())?;
    let sig: [u8; 64] = base64::engine::general_purpose::STANDARD
        .decode(sig_b64)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(fail)?;
    Ok(DeviceAuth {
        device_id,
        timestamp,
        nonce,
        sig,
    })
}

/// The next `name=value` parameter, which must be `name`.
fn field<'a>(parts: &mut impl Iterator<Item = &'a str>, name: &str) -> Result<&'a str, ApiError> {
    let p = parts.next().ok_or_else(ApiError::unauthenticated)?;
    let (k, v) = p.split_once('=').ok_or_else(ApiError::unauthenticated)?;
    if k != name {
        return Err(ApiError::unauthenticated());
    }
    Ok(v)
}

/// Formats a header value (clients in Rust, tests).
pub fn format_header(device_id: &str, timestamp: u64, nonce: &[u8; 16], sig: &[u8; 64]) -> String {
    format!(
        "Keystead-Device device=\"{device_id}\", ts={timestamp}, nonce=\"{}\", sig=\"{}\"",
        hex::encode(nonce),
        base64::engine::general_purpose::STANDARD.encode(sig)
    )
}

/// Checks a timestamp against the server's clock.
pub fn fresh(timestamp: u64, now: i64) -> bool {
    i64::try_from(timestamp).is_ok_and(|t| (t - now).abs() <= WINDOW_SECS)
}

/// Nonces seen within the replay window, bounded.
pub struct NonceCache {
    inner: Mutex<Nonces>,
    capacity: usize,
}

#[derive(Default)]
struct Nonces {
    seen: HashSet<(String, [u8; 16])>,
    /// (forget-after time, key), earliest first.
    expiry: BinaryHeap<Reverse<(i64, String, [u8; 16])>>,
}

impl Default for NonceCache {
    fn default() -> Self {
        Self::with_capacity(MAX_NONCES)
    }
}

impl NonceCache {
    /// A cache holding at most `capacity` nonces.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Nonces::default()),
            capacity,
        }
    }

    /// Nonces held (tests, metrics).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen
            .len()
    }

    /// Whether no nonce is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records (device, nonce) of a request signed at `timestamp` (checked fresh). A nonce
    /// seen before is `401 replayed_request`. When full of unexpired nonces the cache
    /// refuses (`429`) rather than forget one, which would allow a replay.
    pub fn check_and_insert(
        &self,
        device_id: &str,
        nonce: [u8; 16],
        timestamp: u64,
        now: i64,
    ) -> Result<(), ApiError> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(Reverse((t, _, _))) = g.expiry.peek() {
            if *t >= now {
                break;
            }
            if let Some(Reverse((_, d, n))) = g.expiry.pop() {
                g.seen.remove(&(d, n));
            }
        }
        let key = (device_id.to_owned(), nonce);
        if g.seen.contains(&key) {
            return Err(ApiError::replayed_request());
        }
        if g.seen.len() >= self.capacity {
            return Err(ApiError::rate_limited(1));
        }
        // Fresh means |ts - now| ≤ WINDOW: the request stays fresh until ts + WINDOW.
        let forget = i64::try_from(timestamp)
            .unwrap_or(i64::MAX)
            .saturating_add(WINDOW_SECS);
        g.seen.insert(key.clone());
        g.expiry.push(Reverse((forget, key.0, key.1)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_malformations() {
        let h = format_header("ada-laptop", 1_700_000_000, &[0xab; 16], &[7; 64]);
        let a = parse_header(&h).unwrap();
        assert_eq!(a.device_id, "ada-laptop");
        assert_eq!(a.timestamp, 1_700_000_000);
        assert_eq!(a.nonce, [0xab; 16]);
        assert_eq!(a.sig, [7; 64]);
        let bad = [
            h.replace("Keystead-Device", "Bearer"),
            h.replace("device=", "dev="),
            h.replace("ts=1700000000", "ts=-1"),
            h.replace("ada-laptop", "ada laptop"),
            h.replace(&hex::encode([0xab; 16]), "abab"),
            format!("{h}, extra=\"1\""),
            h.replace(", sig=", ", sag="),
        ];
        for b in bad {
            assert_eq!(parse_header(&b).unwrap_err().status, 401, "{b}");
        }
    }

    #[test]
    fn nonces_replay_expire_and_bound() {
        let c = NonceCache::with_capacity(2);
        let now = 1_000_000;
        c.check_and_insert("d", [1; 16], 1_000_000, now).unwrap();
        assert_eq!(
            c.check_and_insert("d", [1; 16], 1_000_000, now)
                .unwrap_err()
                .code,
            "replayed_request"
        );
        // Another device may use the same nonce.
        c.check_and_insert("e", [1; 16], 1_000_000, now).unwrap();
        // Full: refuse rather than forget.
        assert_eq!(
            c.check_and_insert("f", [1; 16], 1_000_000, now)
                .unwrap_err()
                .status,
            429
        );
        // After the window the nonces are forgotten (the timestamp is stale by then).
        let later = now + WINDOW_SECS + 1;
        c.check_and_insert("f", [1; 16], later as u64, later)
            .unwrap();
        assert_eq!(c.len(), 1);
        assert!(fresh(1_000_000, now + WINDOW_SECS));
        assert!(!fresh(1_000_000, now + WINDOW_SECS + 1));
        assert!(!fresh(u64::MAX, now));
    }
}
