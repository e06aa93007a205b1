//! The API's error codes (shared/API.md "Errors"), in one type that every layer returns
//! and the HTTP layer turns into a response.

use std::time::Duration;

use crate::kms::KmsError;

/// An error as the API reports it: status, stable code, human message (never key
/// material), and `Retry-After` where the API sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable snake_case code.
    pub code: &'static str,
    /// Human text.
    pub message: String,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 400 bad_request
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(400, "bad_request", m)
    }
    /// 401 unauthenticated
    pub fn unauthenticated() -> Self {
        Self::new(
            401,
            "unauthenticated",
            "missing, wrong, revoked or expired service key",
        )
    }
    /// 403 tenant_forbidden
    pub fn tenant_forbidden() -> Self {
        Self::new(
            403,
            "tenant_forbidden",
            "the tenant is outside this service key's scope",
        )
    }
    /// 403 operation_forbidden
    pub fn operation_forbidden(op: &str) -> Self {
        Self::new(
            403,
            "operation_forbidden",
            format!("operation '{op}' is outside this service key's scope"),
        )
    }
    /// 404 tenant_not_found
    pub fn tenant_not_found() -> Self {
        Self::new(404, "tenant_not_found", "no such tenant")
    }
    /// 409 tenant_disabled
    pub fn tenant_disabled() -> Self {
        Self::new(409, "tenant_disabled", "the tenant is disabled")
    }
    /// 422 edek_invalid
    pub fn edek_invalid(m: impl Into<String>) -> Self {
        Self::new(422, "edek_invalid", m)
    }
    /// 422 key_retired
    pub fn key_retired() -> Self {
        Self::new(
            422,
            "key_retired",
            "the EDEK's key configuration was retired",
        )
    }
    /// 429 rate_limited
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(429, "rate_limited", "rate or concurrency limit reached")
        }
    }
    /// 503 lease_expired
    pub fn lease_expired() -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                503,
                "lease_expired",
                "the tenant's key lease expired while its KMS is unreachable",
            )
        }
    }
    /// 503 audit_unavailable
    pub fn audit_unavailable() -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                503,
                "audit_unavailable",
                "the audit log cannot record events",
            )
        }
    }
    /// 401 replayed_request: a device-signed request whose nonce was seen already.
    pub fn replayed_request() -> Self {
        Self::new(
            401,
            "replayed_request",
            "this signed request was seen already",
        )
    }
    /// 404 not_found: no such route or directory record.
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(404, "not_found", m)
    }
    /// 409 conflict: a compare-and-swap lost (version, parent hash) or the record exists.
    pub fn conflict(m: impl Into<String>) -> Self {
        Self::new(409, "conflict", m)
    }
    /// 413 payload_too_large: a blob over the configured limit.
    pub fn payload_too_large(m: impl Into<String>) -> Self {
        Self::new(413, "payload_too_large", m)
    }
    /// 416 range_not_satisfiable: a `Range` outside the blob.
    pub fn range_not_satisfiable() -> Self {
        Self::new(
            416,
            "range_not_satisfiable",
            "the requested range is outside the blob",
        )
    }
    /// 500 internal, with a correlation id only.
    pub fn internal(correlation: &str) -> Self {
        Self::new(
            500,
            "internal",
            format!("internal error (correlation id {correlation})"),
        )
    }
}

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> Self {
        match e {
            KmsError::Denied(_) => {
                ApiError::new(403, "kms_denied", "the tenant's KMS refused the request")
            }
            KmsError::Unreachable(_) => ApiError {
                retry_after: Some(5),
                ..ApiError::new(503, "kms_unreachable", "the tenant's KMS is unreachable")
            },
            KmsError::Timeout => ApiError::new(
                504,
                "kms_timeout",
                "the tenant's KMS did not answer in time",
            ),
            KmsError::Other(_) => {
                ApiError::new(502, "kms_error", "the tenant's KMS answered with an error")
            }
            KmsError::InvalidCiphertext => {
                ApiError::edek_invalid("the EDEK is not valid for this tenant")
            }
            KmsError::Busy => ApiError::rate_limited(1),
            KmsError::CircuitOpen { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs.max(1)),
                ..ApiError::new(503, "kms_unreachable", "the tenant's KMS is unreachable")
            },
        }
    }
}

impl From<keystead_core::Error> for ApiError {
    fn from(e: keystead_core::Error) -> Self {
        ApiError::edek_invalid(match e {
            keystead_core::Error::Format(f) => format!("the EDEK is malformed: {f}"),
            _ => "the EDEK is not valid for this tenant".to_owned(),
        })
    }
}

/// Rounds a wait up to whole seconds for `Retry-After`.
pub fn retry_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
