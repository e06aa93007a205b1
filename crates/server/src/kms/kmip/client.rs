//! KMIP requests over mutual TLS: one request message with one batch item per connection,
//! KMIP protocol version 1.4 (the first with authenticated-encryption fields), and the
//! server's result reasons classified as [`KmsError`]s.
//!
//! A connection goes through the outbound policy ([`OutboundPolicy::connect_tcp`]: the name
//! is resolved and every address checked), then a rustls (ring) handshake presenting the
//! tenant's client certificate. Every step has the adapter's timeout. No call is retried
//! here: the service retries retryable errors itself.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use super::ttlv::{self, Item};
use crate::kms::KmsError;
use crate::kms::net::OutboundPolicy;

/// KMIP tags used by the adapter (KMIP 1.4 §9.1.3.1).
pub mod tag {
    #![allow(missing_docs)]
    pub const ATTRIBUTE: u32 = 0x42_0008;
    pub const ATTRIBUTE_NAME: u32 = 0x42_000A;
    pub const ATTRIBUTE_VALUE: u32 = 0x42_000B;
    pub const BATCH_COUNT: u32 = 0x42_000D;
    pub const BATCH_ITEM: u32 = 0x42_000F;
    pub const BLOCK_CIPHER_MODE: u32 = 0x42_0011;
    pub const CRYPTOGRAPHIC_ALGORITHM: u32 = 0x42_0028;
    pub const CRYPTOGRAPHIC_LENGTH: u32 = 0x42_002A;
    pub const CRYPTOGRAPHIC_PARAMETERS: u32 = 0x42_002B;
    pub const CRYPTOGRAPHIC_USAGE_MASK: u32 = 0x42_002C;
    pub const IV_COUNTER_NONCE: u32 = 0x42_003D;
    pub const NAME: u32 = 0x42_0053;
    pub const NAME_TYPE: u32 = 0x42_0054;
    pub const NAME_VALUE: u32 = 0x42_0055;
    pub const OBJECT_TYPE: u32 = 0x42_0057;
    pub const OPERATION: u32 = 0x42_005C;
    pub const PROTOCOL_VERSION: u32 = 0x42_0069;
    pub const PROTOCOL_VERSION_MAJOR: u32 = 0x42_006A;
    pub const PROTOCOL_VERSION_MINOR: u32 = 0x42_006B;
    pub const REQUEST_HEADER: u32 = 0x42_0077;
    pub const REQUEST_MESSAGE: u32 = 0x42_0078;
    pub const REQUEST_PAYLOAD: u32 = 0x42_0079;
    pub const RESPONSE_MESSAGE: u32 = 0x42_007B;
    pub const RESPONSE_PAYLOAD: u32 = 0x42_007C;
    pub const RESULT_MESSAGE: u32 = 0x42_007D;
    pub const RESULT_REASON: u32 = 0x42_007E;
    pub const RESULT_STATUS: u32 = 0x42_007F;
    pub const REVOCATION_REASON: u32 = 0x42_0081;
    pub const REVOCATION_REASON_CODE: u32 = 0x42_0082;
    pub const STATE: u32 = 0x42_008D;
    pub const TAG_LENGTH: u32 = 0x42_00CE;
    pub const TEMPLATE_ATTRIBUTE: u32 = 0x42_0091;
    pub const UNIQUE_IDENTIFIER: u32 = 0x42_0094;
    pub const DATA: u32 = 0x42_00C2;
    pub const AE_ADDITIONAL_DATA: u32 = 0x42_00FE;
    pub const AE_TAG: u32 = 0x42_00FF;
}

/// The KMIP operations the adapter (and its tests) send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Create (tests: a fresh AES key).
    Create = 0x01,
    /// Locate (a key by name).
    Locate = 0x08,
    /// Get Attributes (describe: the key's State).
    GetAttributes = 0x0B,
    /// Activate (tests).
    Activate = 0x12,
    /// Revoke (tests: denial).
    Revoke = 0x13,
    /// Encrypt (wrap, generate).
    Encrypt = 0x1F,
    /// Decrypt (unwrap).
    Decrypt = 0x20,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Create => "Create",
            Operation::Locate => "Locate",
            Operation::GetAttributes => "Get Attributes",
            Operation::Activate => "Activate",
            Operation::Revoke => "Revoke",
            Operation::Encrypt => "Encrypt",
            Operation::Decrypt => "Decrypt",
        }
    }
}

/// Where and how to connect.
pub struct Endpoint {
    /// Host name or IP literal.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The name the server certificate is verified against (and sent as SNI).
    pub server_name: ServerName<'static>,
    /// rustls config with the client certificate.
    pub tls: Arc<rustls::ClientConfig>,
    /// Outbound policy (address checks).
    pub outbound: OutboundPolicy,
    /// Timeout of each step (connect, handshake, request, answer).
    pub timeout: Duration,
}

impl Endpoint {
    /// Sends one operation and returns the response payload (an empty structure when the
    /// server sent none).
    pub async fn call(&self, op: Operation, payload: Vec<Item>) -> Result<Item, KmsError> {
        let request = request_message(op, payload)
            .to_bytes()
            .map_err(|e| KmsError::Other(format!("kmip: cannot encode the request: {e}")))?;
        let response = self.exchange(&request).await?;
        let message = ttlv::decode(&response)
            .map_err(|e| KmsError::Other(format!("kmip: malformed response: {e}")))?;
        response_payload(op, &message)
    }

    /// Connects, sends `request`, reads one response message.
    async fn exchange(&self, request: &[u8]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let tcp = self
            .outbound
            .connect_tcp(&self.host, self.port, self.timeout)
            .await?;
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let mut tls = self
            .step(connector.connect(self.server_name.clone(), tcp))
            .await
            .map_err(|e| io_error("TLS handshake", &e))??;
        self.step(tls.write_all(request))
            .await
            .map_err(|e| io_error("sending the request", &e))??;
        let mut header = [0u8; 8];
        self.step(tls.read_exact(&mut header))
            .await
            .map_err(|e| io_error("reading the response", &e))??;
        let len = ttlv::announced_len(&header);
        if header[..4] != [0x42, 0x00, 0x7B, 0x01] || len > ttlv::MAX_MESSAGE {
            return Err(KmsError::Other(
                "kmip: the server did not answer with a KMIP response message".into(),
            ));
        }
        // Zeroized on drop: a Decrypt answer holds the plaintext key.
        let mut message = Zeroizing::new(vec![0u8; 8 + len]);
        message[..8].copy_from_slice(&header);
        self.step(tls.read_exact(&mut message[8..]))
            .await
            .map_err(|e| io_error("reading the response", &e))??;
        // Best effort: the server closes too; an error here changes nothing.
        let _ = tls.shutdown().await;
        Ok(message)
    }

    /// Runs one I/O step under the timeout; the outer error is the timeout.
    async fn step<T>(
        &self,
        fut: impl Future<Output = std::io::Result<T>>,
    ) -> Result<Result<T, KmsError>, std::io::Error> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map(Ok),
            Err(_) => Ok(Err(KmsError::Timeout)),
        }
    }
}

/// Classifies an I/O or TLS error. A TLS alert that refuses our certificate means the
/// server does not accept this client's credential: a refusal (`Denied`), not an outage;
/// every other failure to connect or talk is `Unreachable`.
pub fn io_error(what: &str, e: &std::io::Error) -> KmsError {
    use rustls::AlertDescription as A;
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::AlertReceived(
            alert @ (A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::UnsupportedCertificate
            | A::AccessDenied
            | A::CertificateRequired),
        )) => KmsError::Denied(format!(
            "kmip: the server refused the client certificate during {what} (TLS alert {alert:?})"
        )),
        Some(t) => KmsError::Unreachable(format!("kmip: {what}: TLS error: {t}")),
        None => KmsError::Unreachable(format!("kmip: {what}: {e}")),
    }
}

/// Request Message with one batch item.
fn request_message(op: Operation, payload: Vec<Item>) -> Item {
    Item::structure(
        tag::REQUEST_MESSAGE,
        vec![
            Item::structure(
                tag::REQUEST_HEADER,
                vec![
                    Item::structure(
                        tag::PROTOCOL_VERSION,
                        vec![
                            Item::integer(tag::PROTOCOL_VERSION_MAJOR, 1),
                            Item::integer(tag::PROTOCOL_VERSION_MINOR, 4),
                        ],
                    ),
                    Item::integer(tag::BATCH_COUNT, 1),
                ],
            ),
            Item::structure(
                tag::BATCH_ITEM,
                vec![
                    Item::enumeration(tag::OPERATION, op as u32),
                    Item::structure(tag::REQUEST_PAYLOAD, payload),
                ],
            ),
        ],
    )
}

/// The response payload of the (single) batch item, or the failure it reports.
pub fn response_payload(op: Operation, message: &Item) -> Result<Item, KmsError> {
    let malformed = |what: &str| KmsError::Other(format!("kmip: malformed response: {what}"));
    if message.tag != tag::RESPONSE_MESSAGE {
        return Err(malformed("not a Response Message"));
    }
    let batch = message
        .child(tag::BATCH_ITEM)
        .ok_or_else(|| malformed("no Batch Item"))?;
    let status = batch
        .child(tag::RESULT_STATUS)
        .and_then(Item::as_enum)
        .ok_or_else(|| malformed("no Result Status"))?;
    if status != 0 {
        let reason = batch.child(tag::RESULT_REASON).and_then(Item::as_enum);
        let text = batch.child(tag::RESULT_MESSAGE).and_then(Item::as_text);
        return Err(classify(op, status, reason, text));
    }
    Ok(batch
        .child(tag::RESPONSE_PAYLOAD)
        .cloned()
        .unwrap_or_else(|| Item::structure(tag::RESPONSE_PAYLOAD, Vec::new())))
}

/// KMIP result reasons (KMIP 1.4 §9.1.3.2.29, 2.0 §11.29), by code.
fn reason_name(code: u32) -> Option<&'static str> {
    Some(match code {
        0x01 => "Item Not Found",
        0x02 => "Response Too Large",
        0x03 => "Authentication Not Successful",
        0x04 => "Invalid Message",
        0x05 => "Operation Not Supported",
        0x06 => "Missing Data",
        0x07 => "Invalid Field",
        0x08 => "Feature Not Supported",
        0x0A => "Cryptographic Failure",
        0x0B => "Illegal Operation",
        0x0C => "Permission Denied",
        0x0D => "Object Archived",
        0x24 => "Bad Cryptographic Parameters",
        0x2A => "Internal Server Error",
        0x34 => "Missing Initialization Vector",
        0x36 => "Object Destroyed",
        0x37 => "Object Not Found",
        0x39 => "Not Authorised",
        0x3A => "Server Limit Exceeded",
        0x3E => "Unsupported Cryptographic Parameters",
        0x3F => "Unsupported Protocol Version",
        0x43 => "Wrong Key Lifecycle State",
        0x44 => "Protection Storage Unavailable",
        0x100 => "General Failure",
        _ => return None,
    })
}

/// Maps a failed batch item to a [`KmsError`].
///
/// * The key is unusable or we may not use it (revoked/deactivated/compromised/destroyed,
///   not found, no permission, bad credential): `Denied`.
/// * Decrypt failing its cryptography (the tag does not verify: another context, tenant or
///   config, or a changed ciphertext): `InvalidCiphertext`. PyKMIP reports a failed GCM tag
///   check as General Failure rather than Cryptographic Failure, so on Decrypt both count.
/// * Server Limit Exceeded: `Busy`. Anything else: `Other`.
///
/// The message names the operation, the reason and the server's (shortened) text, which
/// holds no secret of ours.
pub fn classify(op: Operation, status: u32, reason: Option<u32>, text: Option<&str>) -> KmsError {
    let name = match reason {
        Some(r) => reason_name(r).map_or_else(|| format!("reason {r:#x}"), str::to_owned),
        None => format!("status {status}"),
    };
    let mut detail = text
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(160)
        .collect::<String>();
    if !detail.is_empty() {
        detail = format!(": {detail}");
    }
    let msg = format!("kmip {} failed: {name}{detail}", op.name());
    match reason {
        Some(0x01 | 0x03 | 0x0C | 0x0D | 0x36 | 0x37 | 0x39 | 0x43) => KmsError::Denied(msg),
        // Illegal Operation: "not allowed in the current state" (e.g. a revoked key at some
        // servers).
        Some(0x0B) => KmsError::Denied(msg),
        Some(0x0A | 0x100) if op == Operation::Decrypt => KmsError::InvalidCiphertext,
        Some(0x3A) => KmsError::Busy,
        _ => KmsError::Other(msg),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn failed(reason: u32, text: &str) -> Item {
        Item::structure(
            tag::RESPONSE_MESSAGE,
            vec![Item::structure(
                tag::BATCH_ITEM,
                vec![
                    Item::enumeration(tag::OPERATION, Operation::Decrypt as u32),
                    Item::enumeration(tag::RESULT_STATUS, 1),
                    Item::enumeration(tag::RESULT_REASON, reason),
                    Item::text(tag::RESULT_MESSAGE, text),
                ],
            )],
        )
    }

    #[test]
    fn result_reasons_map_to_kms_errors() {
        let c = |op, r| classify(op, 1, Some(r), Some("x"));
        for r in [0x01, 0x03, 0x0B, 0x0C, 0x0D, 0x36, 0x37, 0x39, 0x43] {
            assert!(
                matches!(c(Operation::Encrypt, r), KmsError::Denied(_)),
                "{r:#x}"
            );
        }
        assert_eq!(c(Operation::Decrypt, 0x0A), KmsError::InvalidCiphertext);
        assert_eq!(c(Operation::Decrypt, 0x100), KmsError::InvalidCiphertext);
        assert!(matches!(c(Operation::Encrypt, 0x0A), KmsError::Other(_)));
        assert!(matches!(c(Operation::Encrypt, 0x100), KmsError::Other(_)));
        assert_eq!(c(Operation::Encrypt, 0x3A), KmsError::Busy);
        let e = c(Operation::Encrypt, 0x07);
        assert!(
            matches!(&e, KmsError::Other(m) if m.contains("Invalid Field")),
            "{e}"
        );
        let e = classify(Operation::Encrypt, 1, Some(0x77), None);
        assert!(
            matches!(&e, KmsError::Other(m) if m.contains("0x77")),
            "{e}"
        );
    }

    #[test]
    fn failed_batch_items_are_errors_with_the_reason() {
        let e = response_payload(Operation::Decrypt, &failed(0x0C, "no\nway")).unwrap_err();
        assert_eq!(
            e,
            KmsError::Denied("kmip Decrypt failed: Permission Denied: noway".into())
        );
        let ok = Item::structure(
            tag::RESPONSE_MESSAGE,
            vec![Item::structure(
                tag::BATCH_ITEM,
                vec![Item::enumeration(tag::RESULT_STATUS, 0)],
            )],
        );
        assert!(response_payload(Operation::Encrypt, &ok).is_ok());
        let not_a_response = Item::structure(tag::REQUEST_MESSAGE, vec![]);
        assert!(matches!(
            response_payload(Operation::Encrypt, &not_a_response),
            Err(KmsError::Other(_))
        ));
    }

    #[test]
    fn tls_alerts_refusing_the_certificate_are_denials() {
        let alert = |a| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::AlertReceived(a),
            )
        };
        assert!(matches!(
            io_error("TLS handshake", &alert(rustls::AlertDescription::UnknownCA)),
            KmsError::Denied(_)
        ));
        assert!(matches!(
            io_error(
                "TLS handshake",
                &alert(rustls::AlertDescription::HandshakeFailure)
            ),
            KmsError::Unreachable(_)
        ));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            io_error("connect", &refused),
            KmsError::Unreachable(_)
        ));
    }
}
