//! Request authentication by device signatures: a browser (or any client holding a
//! registered device's Ed25519 key) signs each HTTP request to the key directory instead of
//! presenting a bearer secret.
//!
//! The signed input (docs/FORMAT.md, "Signed requests") is
//!
//! ```text
//! "keystead/v1/request" ‖ lp16(method) ‖ lp16(host) ‖ lp16(path with query)
//!   ‖ SHA-256(body) [32] ‖ timestamp u64 BE (Unix seconds) ‖ nonce [16] ‖ lp16(device id)
//! ```
//!
//! The core reads no clock: freshness of the timestamp and uniqueness of the nonce are the
//! verifier's checks (the server keeps a window of ±5 minutes and remembers nonces for it).

use alloc::vec::Vec;

use crate::error::{Error, Result};
use crate::hazmat;
use crate::keys::{SigningKeyPair, SigningPublicKey};
use crate::wire::put_lp16;

/// Domain-separation label, the first bytes of every signed request input.
pub const LABEL: &[u8] = b"keystead/v1/request";

/// Length of a request nonce.
pub const NONCE_LEN: usize = 16;

/// Longest device id a signed request may name, in bytes.
pub const MAX_DEVICE_ID: usize = 256;

/// The parts of an HTTP request that a device signature covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedRequest<'a> {
    /// HTTP method in upper case (`GET`, `PUT`, ...).
    pub method: &'a str,
    /// The `Host` the client sent (authority, with the port when not the default).
    pub host: &'a str,
    /// The request target: path and, if any, `?` and the query, exactly as sent.
    pub path_and_query: &'a str,
    /// SHA-256 of the request body (of zero bytes for a request without one).
    pub body_sha256: [u8; 32],
    /// Unix seconds at signing.
    pub timestamp: u64,
    /// Fresh random bytes per request.
    pub nonce: [u8; NONCE_LEN],
    /// The registered device id whose key signs.
    pub device_id: &'a str,
}

impl SignedRequest<'_> {
    /// The bytes after [`LABEL`] that the signature covers. `Limit` when a string is longer
    /// than a 2-byte length can carry; `InvalidId` for an empty or over-long device id or
    /// an empty method.
    pub fn signed_parts(&self) -> Result<Vec<u8>> {
        if self.device_id.is_empty() || self.device_id.len() > MAX_DEVICE_ID {
            return Err(Error::InvalidId);
        }
        if self.method.is_empty() {
            return Err(Error::InvalidId);
        }
        let mut out = Vec::with_capacity(
            2 * 4
                + self.method.len()
                + self.host.len()
                + self.path_and_query.len()
                + 32
                + 8
                + NONCE_LEN
                + self.device_id.len(),
        );
        put_lp16(&mut out, self.method.as_bytes())?;
        put_lp16(&mut out, self.host.as_bytes())?;
        put_lp16(&mut out, self.path_and_query.as_bytes())?;
        out.extend_from_slice(&self.body_sha256);
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        put_lp16(&mut out, self.device_id.as_bytes())?;
        Ok(out)
    }

    /// The whole signed input: [`LABEL`] followed by [`Self::signed_parts`].
    pub fn signed_input(&self) -> Result<Vec<u8>> {
        let parts = self.signed_parts()?;
        let mut out = Vec::with_capacity(LABEL.len() + parts.len());
        out.extend_from_slice(LABEL);
        out.extend_from_slice(&parts);
        Ok(out)
    }
}

/// SHA-256 of a request body, for [`SignedRequest::body_sha256`].
pub fn body_hash(body: &[u8]) -> [u8; 32] {
    hazmat::sha256(&[body])
}

/// Signs a request with a device's Ed25519 key.
pub fn sign(key: &SigningKeyPair, req: &SignedRequest<'_>) -> Result<[u8; 64]> {
    let parts = req.signed_parts()?;
    Ok(key.sign(LABEL, &[&parts]))
}

/// Verifies a request signature strictly (`verify_strict`). Every failure is
/// [`Error::Signature`] except malformed inputs ([`Error::InvalidId`], [`Error::Limit`]).
pub fn verify(key: &SigningPublicKey, req: &SignedRequest<'_>, sig: &[u8; 64]) -> Result<()> {
    let parts = req.signed_parts()?;
    key.verify(LABEL, &[&parts], sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>() -> SignedRequest<'a> {
        SignedRequest {
            method: "PUT",
            host: "keys.example.com",
            path_and_query: "/v1/e2e/tenants/acme/users/ada/escrow?x=1",
            body_sha256: body_hash(b"{}"),
            timestamp: 1_700_000_000,
            nonce: [7; NONCE_LEN],
            device_id: "ada-laptop",
        }
    }

    #[test]
    fn sign_then_verify_and_every_field_is_bound() {
        let key = SigningKeyPair::from_secret_bytes(&[1; 32]);
        let sig = sign(&key, &req()).unwrap();
        verify(&key.public(), &req(), &sig).unwrap();
        let variants = [
            SignedRequest {
                method: "GET",
                ..req()
            },
            SignedRequest {
                host: "evil.example.com",
                ..req()
            },
            SignedRequest {
                path_and_query: "/v1/e2e/tenants/acme/users/ada/escrow",
                ..req()
            },
            SignedRequest {
                body_sha256: body_hash(b""),
                ..req()
            },
            SignedRequest {
                timestamp: 1_700_000_001,
                ..req()
            },
            SignedRequest {
                nonce: [8; NONCE_LEN],
                ..req()
            },
            SignedRequest {
                device_id: "ada-phone",
                ..req()
            },
        ];
        for v in variants {
            assert_eq!(verify(&key.public(), &v, &sig), Err(Error::Signature));
        }
        let other = SigningKeyPair::from_secret_bytes(&[2; 32]);
        assert_eq!(verify(&other.public(), &req(), &sig), Err(Error::Signature));
    }

    #[test]
    fn length_prefixes_separate_fields() {
        // Moving a byte from the host into the path must change the signed input.
        let a = SignedRequest {
            host: "ab",
            path_and_query: "/c",
            ..req()
        };
        let b = SignedRequest {
            host: "a",
            path_and_query: "b/c",
            ..req()
        };
        assert_ne!(a.signed_input().unwrap(), b.signed_input().unwrap());
        assert!(a.signed_input().unwrap().starts_with(LABEL));
    }

    #[test]
    fn bad_ids_are_refused() {
        let key = SigningKeyPair::from_secret_bytes(&[1; 32]);
        let long = "d".repeat(MAX_DEVICE_ID + 1);
        for device_id in ["", long.as_str()] {
            let r = SignedRequest { device_id, ..req() };
            assert_eq!(sign(&key, &r), Err(Error::InvalidId));
        }
        let huge = "p".repeat(70_000);
        let r = SignedRequest {
            path_and_query: &huge,
            ..req()
        };
        assert_eq!(sign(&key, &r), Err(Error::Limit));
    }
}
