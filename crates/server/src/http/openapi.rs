//! The OpenAPI 3 document of the API, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and answer types, and served at `GET /openapi.json`.
//!
//! This module holds what the annotations share: the error codes, the reusable error
//! responses, the schemas serde attributes cannot express (id limits, batches, events) and
//! the bearer security scheme.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use super::ErrorBody;
use super::extract::{B64, MAX_BATCH, MAX_ID};

/// Name of the security scheme every `/v1` route requires.
pub const SECURITY_SCHEME: &str = "service_key";

/// No control characters (Unicode category Cc, as `char::is_control`), ECMA-262 syntax.
const NO_CONTROL: &str = r"^[^\u0000-\u001F\u007F-\u009F]+$";

/// Every error code the API answers with (API.md "Errors"; `not_found` and
/// `method_not_allowed` answer requests outside the routes of this document).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: malformed JSON, missing or unknown field, duplicate key, bad base64, over a limit.
    BadRequest,
    /// 401: missing, wrong, revoked or expired service key.
    Unauthenticated,
    /// 403: tenant outside the key's scope (existing or not).
    TenantForbidden,
    /// 403: operation outside the key's scope.
    OperationForbidden,
    /// 403: the tenant's KMS refused.
    KmsDenied,
    /// 404: no such tenant (all-tenants keys only).
    TenantNotFound,
    /// 404: no such route.
    NotFound,
    /// 405: the route does not take this method (`Allow` lists those it takes).
    MethodNotAllowed,
    /// 409: the vendor disabled the tenant.
    TenantDisabled,
    /// 422: EDEK unparseable, tampered, or not this tenant's.
    EdekInvalid,
    /// 422: the EDEK's key version was retired.
    KeyRetired,
    /// 429: a rate or concurrency limit was hit.
    RateLimited,
    /// 502: the KMS answered with an error that is not a denial.
    KmsError,
    /// 503: KMS down and no valid lease.
    KmsUnreachable,
    /// 503: leasing tenant whose lease ran out during a KMS outage.
    LeaseExpired,
    /// 503: the audit log cannot record events and the policy is fail-closed.
    AuditUnavailable,
    /// 504: the KMS did not answer in time.
    KmsTimeout,
    /// 401: a device-signed request whose nonce was seen already (a replay).
    ReplayedRequest,
    /// 409: a compare-and-swap lost (user record version, group log parent, access-block
    /// version) or the record exists already.
    Conflict,
    /// 413: a blob over the configured limit.
    PayloadTooLarge,
    /// 416: a `Range` outside the blob.
    RangeNotSatisfiable,
    /// 500: a bug; the message carries a correlation id only.
    Internal,
}

/// `conflict` (a compare-and-swap lost or the record exists already) or `tenant_disabled`
/// (the vendor disabled the tenant).
#[derive(ToResponse)]
pub struct Conflict(pub ErrorBody);

/// `not_found`: no such directory record (user, group, access block, blob).
#[derive(ToResponse)]
pub struct NotFound(pub ErrorBody);

/// The `kind` of a directory token.
pub fn token_kind_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["enrollment", "reauthentication"]))
        .description(Some(
            "`enrollment`: register the identity key and a device; `reauthentication`: release the escrow once.",
        ))
}

/// `bad_request`: malformed JSON, missing or unknown field, duplicate key, bad base64, or a
/// value over a limit.
#[derive(ToResponse)]
pub struct BadRequest(pub ErrorBody);

/// `unauthenticated`: missing, wrong, revoked or expired service key.
#[derive(ToResponse)]
pub struct Unauthenticated(pub ErrorBody);

/// `tenant_forbidden` (the tenant is outside the key's scope, whether or not it exists),
/// `operation_forbidden` (the operation is outside the key's scope) or `kms_denied` (the
/// tenant's KMS refused).
#[derive(ToResponse)]
pub struct Forbidden(pub ErrorBody);

/// `tenant_not_found`: no such tenant (only all-tenants keys learn this).
#[derive(ToResponse)]
pub struct TenantNotFound(pub ErrorBody);

/// `tenant_disabled`: the vendor disabled the tenant.
#[derive(ToResponse)]
pub struct TenantDisabled(pub ErrorBody);

/// `edek_invalid` (the EDEK is unparseable, tampered, or not this tenant's) or
/// `key_retired` (its key version was retired).
#[derive(ToResponse)]
pub struct EdekRejected(pub ErrorBody);

/// `rate_limited`: a per-tenant or per-key rate limit or a KMS concurrency limit was hit.
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")))]
pub struct RateLimited(pub ErrorBody);

/// `internal`: a bug; the message carries a correlation id only.
#[derive(ToResponse)]
pub struct Internal(pub ErrorBody);

/// `kms_error`: the tenant's KMS answered with an error that is not a denial.
#[derive(ToResponse)]
pub struct KmsFailed(pub ErrorBody);

/// `kms_unreachable` (KMS down and no valid lease), `lease_expired` (the lease ran out during
/// a KMS outage) or `audit_unavailable` (the audit log is full and the policy is fail-closed).
#[derive(ToResponse)]
#[response(headers(("Retry-After" = u64, description = "Seconds to wait before retrying.")))]
pub struct Unavailable(pub ErrorBody);

/// `kms_timeout`: the tenant's KMS did not answer in time.
#[derive(ToResponse)]
pub struct KmsTimeout(pub ErrorBody);

/// A tenant id or batch id: 1 to 256 bytes (JSON Schema counts characters, so the byte limit
/// is only in the description), no control characters.
pub fn id_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_ID))
        .pattern(Some(NO_CONTROL))
        .description(Some("1 to 256 bytes of UTF-8 without control characters."))
}

/// The `purpose` of a derive.
pub fn purpose_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["deterministic", "blind_index"]))
        .description(Some(
            "`deterministic`: 64-byte AES-256-SIV keys; `blind_index`: 32-byte HMAC-SHA256 keys.",
        ))
}

/// The `ids` of a batch wrap.
pub fn ids_schema() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(id_schema())
        .min_items(Some(1))
        .max_items(Some(MAX_BATCH))
        .unique_items(true)
        .description(Some(
            "1 to 1000 distinct ids, each 1 to 256 bytes without control characters.",
        ))
}

/// The `edeks` of a batch unwrap: EDEKs by id.
pub fn edeks_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(id_schema()))
        .additional_properties(Some(utoipa::openapi::RefOr::Ref(
            utoipa::openapi::Ref::from_schema_name(<B64 as ToSchema>::name()),
        )))
        .min_properties(Some(1))
        .max_properties(Some(MAX_BATCH))
        .description(Some(
            "1 to 1000 EDEKs by id; each id 1 to 256 bytes without control characters.",
        ))
}

/// An application event: an object of at most 4 KiB whose `name` follows the SIEM taxonomy.
pub fn event_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "name",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^(ADMIN|USER|DATA|PERIODIC|CUSTOM)_[A-Z0-9_]+$"))
                .max_length(Some(128))
                .description(Some(
                    "ADMIN_*, USER_*, DATA_*, PERIODIC_* or CUSTOM_* (A-Z, 0-9, _), at most 128 characters.",
                )),
        )
        .required("name")
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(
            true,
        )))
        .description(Some(
            "The event, at most 4 KiB serialized; every field is forwarded to the tenant's SIEM.",
        ))
}

/// Adds the bearer security scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.components.get_or_insert_with(Default::default).add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("Keystead service key")
                    .description(Some(
                        "`Authorization: Bearer <service key>`, as `keystead service-key create` printed it. A key is limited to its tenants and operations.",
                    ))
                    .build(),
            ),
        );
        let comps = doc.components.get_or_insert_with(Default::default);
        comps.add_security_scheme(
            DEVICE_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Authorization: Keystead-Device device=\"<id>\", ts=<unix secs>, nonce=\"<32 hex>\", sig=\"<base64>\"`: an Ed25519 signature by a registered device over the method, host, path and query, body hash, timestamp, nonce and device id (docs/DIRECTORY.md).",
            ))),
        );
        comps.add_security_scheme(
            TOKEN_SCHEME,
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Authorization: Keystead-Token <token>`: a single-use enrollment or re-authentication token minted by the vendor.",
            ))),
        );
    }
}

/// Security scheme of device-signed directory routes.
pub const DEVICE_SCHEME: &str = "device_signature";
/// Security scheme of token-authenticated directory routes.
pub const TOKEN_SCHEME: &str = "directory_token";

/// The OpenAPI document of the API listener.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Keystead Encryption Service",
        description = "Wraps and unwraps data encryption keys (DEKs) with each tenant's own key. JSON bodies, UTF-8, byte strings base64 (standard alphabet, padded). Every non-2xx answer is `{code, message}`.",
    ),
    paths(
        super::wrap,
        super::unwrap,
        super::batch_wrap,
        super::batch_unwrap,
        super::rekey,
        super::derive,
        super::events,
        super::health,
        super::openapi_json,
        super::directory::create_user,
        super::directory::issue_token,
        super::directory::enroll,
        super::directory::get_user,
        super::directory::update_user,
        super::directory::put_escrow,
        super::directory::get_escrow,
        super::directory::user_groups,
        super::directory::create_group,
        super::directory::append_entry,
        super::directory::get_entries,
        super::directory::put_access_block,
        super::directory::get_access_block,
        super::directory::put_blob,
        super::directory::get_blob,
    ),
    components(
        schemas(ErrorCode),
        responses(
            Conflict,
            NotFound,
            BadRequest,
            Unauthenticated,
            Forbidden,
            TenantNotFound,
            TenantDisabled,
            EdekRejected,
            RateLimited,
            Internal,
            KmsFailed,
            Unavailable,
            KmsTimeout,
        )
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "keys", description = "Wrap, unwrap and rekey DEKs; derive keys for searchable fields."),
        (name = "events", description = "Application security events for the tenant's SIEM."),
        (name = "service", description = "Liveness and this document."),
        (name = "directory", description = "The E2E key directory: users, devices, escrow, group logs, access blocks, attachment blobs (docs/DIRECTORY.md)."),
    )
)]
pub struct ApiDoc;

/// The document, serialized once.
pub fn json() -> &'static str {
    static DOC: LazyLock<String> = LazyLock::new(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!(r#"{{"error":"openapi document: {e}"}}"#))
    });
    &DOC
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::error::ApiError;
    use crate::kms::KmsError;

    fn doc() -> Value {
        serde_json::from_str(json()).expect("the document is JSON")
    }

    #[test]
    fn document_parses_and_lists_every_route() {
        let d = doc();
        assert!(
            d["openapi"].as_str().unwrap().starts_with("3."),
            "{}",
            d["openapi"]
        );
        let paths = d["paths"].as_object().unwrap();
        let mut routes: Vec<(&str, &str)> = paths
            .iter()
            .flat_map(|(p, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (p.as_str(), m.as_str()))
            })
            .collect();
        routes.sort_unstable();
        let directory: Vec<(&str, &str)> = routes
            .iter()
            .copied()
            .filter(|(p, _)| p.starts_with("/v1/e2e/"))
            .collect();
        assert_eq!(directory.len(), 15, "{directory:?}");
        routes.retain(|(p, _)| !p.starts_with("/v1/e2e/"));
        assert_eq!(
            routes,
            [
                ("/health", "get"),
                ("/openapi.json", "get"),
                ("/v1/events", "post"),
                ("/v1/keys/batch-unwrap", "post"),
                ("/v1/keys/batch-wrap", "post"),
                ("/v1/keys/derive", "post"),
                ("/v1/keys/rekey", "post"),
                ("/v1/keys/unwrap", "post"),
                ("/v1/keys/wrap", "post"),
            ]
        );
        // Every /v1 route: bearer auth, a JSON body, and the error answers.
        for (path, item) in paths
            .iter()
            .filter(|(p, _)| p.starts_with("/v1/") && !p.starts_with("/v1/e2e/"))
        {
            let op = &item["post"];
            assert_eq!(op["security"], serde_json::json!([{ SECURITY_SCHEME: [] }]));
            let body = &op["requestBody"];
            assert_eq!(body["required"], true, "{path}");
            assert!(
                body["content"]["application/json"]["schema"]["$ref"].is_string(),
                "{path}"
            );
            let statuses: Vec<&str> = op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            for s in ["400", "401", "403", "404", "409", "429", "500", "503"] {
                assert!(statuses.contains(&s), "{path} lacks {s}");
            }
            let ok = if *path == "/v1/events" { "204" } else { "200" };
            assert!(statuses.contains(&ok), "{path} lacks {ok}");
        }
        for p in ["/v1/keys/unwrap", "/v1/keys/rekey"] {
            assert!(paths[p]["post"]["responses"]["422"].is_object(), "{p}");
        }
        for p in ["/health", "/openapi.json"] {
            assert!(paths[p]["get"].get("security").is_none(), "{p}");
        }
    }

    #[test]
    fn schemas_match_the_contract() {
        let d = doc();
        let schemas = &d["components"]["schemas"];
        let scheme = &d["components"]["securitySchemes"][SECURITY_SCHEME];
        assert_eq!(scheme["type"], "http");
        assert_eq!(scheme["scheme"], "bearer");
        // Request envelopes and metadata reject unknown fields.
        for name in [
            "WrapReq",
            "EdekReq",
            "BatchWrapReq",
            "BatchUnwrapReq",
            "EventReq",
            "Metadata",
        ] {
            assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
        }
        assert_eq!(
            schemas["Metadata"]["required"],
            serde_json::json!(["requesting_id"])
        );
        assert_eq!(schemas["Base64"]["format"], "byte");
        assert_eq!(
            schemas["EdekReq"]["properties"]["edek"]["$ref"],
            "#/components/schemas/Base64"
        );
        assert_eq!(
            schemas["WrapResp"]["properties"]["dek"]["$ref"],
            "#/components/schemas/Base64"
        );
        // 429 and 503 announce Retry-After.
        let responses = &d["components"]["responses"];
        for name in ["RateLimited", "Unavailable"] {
            assert!(
                responses[name]["headers"]["Retry-After"].is_object(),
                "{name}"
            );
        }
        assert_eq!(
            responses["BadRequest"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert_eq!(
            schemas["ErrorBody"]["properties"]["code"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
    }

    /// The `ErrorCode` enum of the document covers every code the server can answer with.
    #[test]
    fn error_code_enum_covers_every_error() {
        let errors = [
            ApiError::bad_request("x"),
            ApiError::unauthenticated(),
            ApiError::tenant_forbidden(),
            ApiError::operation_forbidden("wrap"),
            ApiError::tenant_not_found(),
            ApiError::tenant_disabled(),
            ApiError::edek_invalid("x"),
            ApiError::key_retired(),
            ApiError::rate_limited(1),
            ApiError::lease_expired(),
            ApiError::audit_unavailable(),
            ApiError::internal("x"),
            ApiError::replayed_request(),
            ApiError::not_found("x"),
            ApiError::conflict("x"),
            ApiError::payload_too_large("x"),
            ApiError::range_not_satisfiable(),
            KmsError::Denied("x".into()).into(),
            KmsError::Unreachable("x".into()).into(),
            KmsError::Timeout.into(),
            KmsError::Other("x".into()).into(),
            KmsError::InvalidCiphertext.into(),
            KmsError::Busy.into(),
        ];
        let listed = doc()["components"]["schemas"]["ErrorCode"]["enum"].clone();
        let listed: Vec<String> = serde_json::from_value(listed).unwrap();
        for e in errors {
            assert!(listed.iter().any(|c| c == e.code), "{} not listed", e.code);
            // Statuses with Retry-After are exactly those whose response declares it.
            assert_eq!(
                e.retry_after.is_some(),
                e.status == 429 || e.status == 503,
                "{}",
                e.code
            );
        }
        assert_eq!(listed.len(), 22);
    }
}
