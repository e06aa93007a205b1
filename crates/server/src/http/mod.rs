//! The HTTP face of the service: `app(state)` for the API listener and `admin_app(state)`
//! for health, readiness and metrics. Handlers are thin: authenticate, parse, check scope,
//! call the [`Service`], map the result. Their `#[utoipa::path]` annotations and the request
//! and answer types below make the OpenAPI document ([`openapi`]) that the API listener
//! serves at `GET /openapi.json`.

pub mod directory;
pub mod extract;
pub mod openapi;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use keystead_core::FieldPath;
use keystead_core::search::Purpose;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::auth::{Principal, authenticate};
use crate::error::{ApiError, retry_secs};
use crate::service::Service;
use extract::{B64, MAX_BATCH, Metadata, b64, check_id, parse_json};
use openapi::{
    BadRequest, EdekRejected, Forbidden, Internal, KmsFailed, KmsTimeout, RateLimited,
    TenantDisabled, TenantNotFound, Unauthenticated, Unavailable,
};

/// Shared state of both listeners.
#[derive(Clone)]
pub struct AppState {
    /// The Encryption Service.
    pub service: Arc<Service>,
    /// Rate limits.
    pub limiter: Arc<RateLimiter>,
    /// The E2E key directory; `None` answers its routes `404 not_found`.
    pub directory: Option<Arc<crate::directory::Directory>>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (
            status,
            Json(ErrorBody {
                code: self.code,
                message: self.message,
            }),
        )
            .into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert("retry-after", v);
        }
        resp
    }
}

/// Token-bucket rate limits per tenant and per service key.
pub struct RateLimiter {
    per_tenant: f64,
    per_key: f64,
    buckets: Mutex<Buckets>,
}

/// Token buckets by key, with the time of the last sweep.
struct Buckets {
    map: HashMap<String, Bucket>,
    swept: Instant,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    rate: f64,
}

impl Bucket {
    /// Full again: forgetting it changes nothing, since a new bucket starts full.
    fn refilled(&self, now: Instant) -> bool {
        self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate >= self.rate
    }
}

/// Buckets kept before refilled ones are swept (tenants and keys seen recently).
const MAX_BUCKETS: usize = 10_000;

impl RateLimiter {
    /// Limits in requests per second (burst = one second's worth); 0 disables a limit.
    pub fn new(per_tenant: f64, per_key: f64) -> Self {
        Self {
            per_tenant,
            per_key,
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }

    /// Number of buckets held (tests).
    pub fn buckets(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .len()
    }

    fn take(&self, key: String, rate: f64, cost: f64) -> Result<(), ApiError> {
        if rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let buckets = &mut *guard;
        // Bounded memory: an all-tenants key naming ever new tenants must not grow the map
        // without end. Full buckets are dropped (at most one sweep per second).
        if buckets.map.len() >= MAX_BUCKETS
            && now.duration_since(buckets.swept) >= Duration::from_secs(1)
        {
            buckets.map.retain(|_, b| !b.refilled(now));
            buckets.swept = now;
        }
        let Bucket { tokens, at, .. } = buckets.map.entry(key).or_insert(Bucket {
            tokens: rate,
            at: now,
            rate,
        });
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(rate);
        *at = now;
        // A request costing more than a full bucket (a large batch under a low limit) is let
        // through when the bucket is full and leaves a debt, so it is possible at all and
        // later requests pay for it.
        if *tokens >= cost || *tokens >= rate {
            *tokens -= cost;
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((cost - *tokens) / rate);
            Err(ApiError::rate_limited(retry_secs(wait)))
        }
    }

    /// Charges one device-signed request (key directory) to the device, under the per-key
    /// rate: a device is limited like a service key.
    pub fn check_device(&self, tenant: &str, device_id: &str) -> Result<(), ApiError> {
        self.take(format!("d\0{tenant}\0{device_id}"), self.per_key, 1.0)
    }

    /// Charges `cost` requests to the tenant and to the key.
    pub fn check(&self, p: &Principal, tenant: &str, cost: usize) -> Result<(), ApiError> {
        let cost = cost.max(1) as f64;
        self.take(format!("t\0{tenant}"), self.per_tenant, cost)?;
        self.take(format!("k\0{}", p.key_id), self.per_key, cost)
    }
}

/// Checks tenant and operation scope (before anything touches the tenant) and the rate
/// limits. Refusals are audit events too, with the principal and the request metadata.
async fn admit(
    s: &AppState,
    p: &Principal,
    tenant: &str,
    op: &str,
    action: &str,
    cost: usize,
    metadata: &Metadata,
) -> Result<(), ApiError> {
    check_id("tenant_id", tenant)?;
    let res = p
        .authorize(tenant, op)
        .and_then(|()| s.limiter.check(p, tenant, cost));
    if let Err(e) = &res {
        let md = serde_json::to_value(metadata).unwrap_or(Value::Null);
        s.service.audit_rejected(p, tenant, action, e, &md).await;
    }
    res
}

/// Reads the body up to the API's limit; anything larger is `400 bad_request`.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    read_body_max(body, extract::MAX_BODY).await
}

/// [`read_body`] with another limit (the group log routes).
async fn read_body_max(body: Body, max: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, max).await.map_err(|_| {
        ApiError::bad_request(format!(
            "request body exceeds {} MiB or could not be read",
            max >> 20
        ))
    })
}

/// Checks a list of ids (batch ids, field paths): 1 to [`MAX_BATCH`] items, each a valid
/// id, no duplicates.
fn distinct_ids(list: &str, item: &str, ids: &[String]) -> Result<(), ApiError> {
    if ids.is_empty() || ids.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "{list} must hold 1 to {MAX_BATCH} items"
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    for id in ids {
        check_id(item, id)?;
        if !seen.insert(id) {
            return Err(ApiError::bad_request(format!("duplicate {item} `{id}`")));
        }
    }
    Ok(())
}

fn auth_first(s: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    authenticate(
        s.service.store().as_ref(),
        headers.get("authorization").and_then(|v| v.to_str().ok()),
    )
}

// ---- request bodies (their schemas are the OpenAPI request bodies) ----------------------

/// Body of `POST /v1/keys/wrap`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct WrapReq {
    /// The tenant whose key wraps the DEK: 1 to 256 bytes, no control characters.
    #[schema(schema_with = openapi::id_schema)]
    tenant_id: String,
    metadata: Metadata,
}

/// Body of `POST /v1/keys/unwrap` and `POST /v1/keys/rekey`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EdekReq {
    /// The tenant the EDEK belongs to: 1 to 256 bytes, no control characters.
    #[schema(schema_with = openapi::id_schema)]
    tenant_id: String,
    /// The EDEK, as a wrap answered it.
    edek: B64,
    metadata: Metadata,
}

/// Body of `POST /v1/keys/batch-wrap`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchWrapReq {
    /// The tenant whose key wraps the DEKs: 1 to 256 bytes, no control characters.
    #[schema(schema_with = openapi::id_schema)]
    tenant_id: String,
    /// 1 to 1000 distinct ids (1 to 256 bytes each, no control characters); the answer is
    /// keyed by them.
    #[schema(schema_with = openapi::ids_schema)]
    ids: Vec<String>,
    metadata: Metadata,
}

/// Body of `POST /v1/keys/batch-unwrap`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchUnwrapReq {
    /// The tenant the EDEKs belong to: 1 to 256 bytes, no control characters.
    #[schema(schema_with = openapi::id_schema)]
    tenant_id: String,
    /// 1 to 1000 EDEKs by id (1 to 256 bytes each, no control characters); the answer is
    /// keyed by the same ids.
    #[schema(schema_with = openapi::edeks_schema)]
    #[serde(deserialize_with = "extract::unique_map")]
    edeks: BTreeMap<String, B64>,
    metadata: Metadata,
}

/// Body of `POST /v1/keys/derive`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct DeriveReq {
    /// The tenant whose derivation secrets the keys come from: 1 to 256 bytes, no control
    /// characters.
    #[schema(schema_with = openapi::id_schema)]
    tenant_id: String,
    /// `deterministic` (64-byte AES-256-SIV keys) or `blind_index` (32-byte HMAC-SHA256
    /// keys).
    #[schema(schema_with = openapi::purpose_schema)]
    purpose: String,
    /// 1 to 1000 distinct field paths (1 to 256 bytes each, no control characters).
    #[schema(schema_with = openapi::ids_schema)]
    paths: Vec<String>,
    metadata: Metadata,
}

/// Body of `POST /v1/events`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct EventReq {
    /// The tenant whose SIEM receives the event: 1 to 256 bytes, no control characters.
    #[schema(schema_with = openapi::id_schema)]
    tenant_id: String,
    /// The application event: an object of at most 4 KiB with a `name`.
    #[schema(schema_with = openapi::event_schema)]
    #[serde(deserialize_with = "extract::strict_value")]
    event: Value,
    metadata: Metadata,
}

// ---- answers ---------------------------------------------------------------------------

/// Every non-2xx answer, and each per-item failure of a batch. Never carries key material.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code (API.md "Errors").
    #[schema(value_type = openapi::ErrorCode)]
    pub code: &'static str,
    /// Human text; for `internal`, a correlation id only.
    pub message: String,
}

impl From<ApiError> for ErrorBody {
    fn from(e: ApiError) -> Self {
        Self {
            code: e.code,
            message: e.message,
        }
    }
}

/// A fresh DEK and its EDEK.
#[derive(Serialize, ToSchema)]
struct WrapResp {
    /// The plaintext DEK.
    #[schema(value_type = B64)]
    dek: String,
    /// The DEK wrapped with the tenant's key; store it beside the data.
    #[schema(value_type = B64)]
    edek: String,
}

impl WrapResp {
    fn new(w: &crate::service::WrappedDek) -> Self {
        Self {
            dek: b64(w.dek.expose_secret()),
            edek: b64(&w.edek),
        }
    }
}

/// The unwrapped DEK.
#[derive(Serialize, ToSchema)]
struct UnwrapResp {
    /// The plaintext DEK.
    #[schema(value_type = B64)]
    dek: String,
}

/// The EDEK re-wrapped under the tenant's current primary key; the DEK is unchanged.
#[derive(Serialize, ToSchema)]
struct RekeyResp {
    /// The new EDEK.
    #[schema(value_type = B64)]
    edek: String,
}

/// A batch wrap: one DEK per id, or that id's failure.
#[derive(Serialize, ToSchema)]
struct BatchWrapResp {
    /// Wrapped DEKs by id.
    keys: BTreeMap<String, WrapResp>,
    /// Failed ids and why.
    failures: BTreeMap<String, ErrorBody>,
}

/// A batch unwrap: each DEK by id, or that id's failure.
#[derive(Serialize, ToSchema)]
struct BatchUnwrapResp {
    /// Plaintext DEKs by id.
    #[schema(value_type = BTreeMap<String, B64>)]
    keys: BTreeMap<String, String>,
    /// Failed ids and why.
    failures: BTreeMap<String, ErrorBody>,
}

/// One derived key of a field path.
#[derive(Serialize, ToSchema)]
struct DerivedKeyResp {
    /// The key: 64 bytes for `deterministic`, 32 for `blind_index`.
    #[schema(value_type = B64)]
    key: String,
    /// The derivation secret it comes from (deterministic ciphertexts carry it).
    secret_id: String,
    /// `true` for the current secret (write under it); `false` for the secret of a rotation
    /// in progress (search and decrypt under it too).
    current: bool,
}

/// Derived keys by field path: the current secret's key first, then, during a rotation,
/// the previous secret's.
#[derive(Serialize, ToSchema)]
struct DeriveResp {
    /// Keys by field path.
    keys: BTreeMap<String, Vec<DerivedKeyResp>>,
}

/// Liveness.
#[derive(Serialize, ToSchema)]
struct HealthResp {
    /// Always `ok`.
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
}

fn failures_map(failures: Vec<(String, ApiError)>) -> BTreeMap<String, ErrorBody> {
    failures
        .into_iter()
        .map(|(id, e)| (id, ErrorBody::from(e)))
        .collect()
}

/// Wrap a fresh DEK.
///
/// Generates a DEK and wraps it with the tenant's current key. Keep the EDEK beside the
/// data; unwrap it to get the DEK back.
#[utoipa::path(
    post,
    path = "/v1/keys/wrap",
    tag = "keys",
    operation_id = "wrap",
    security(("service_key" = [])),
    request_body(content = WrapReq, content_type = "application/json"),
    responses(
        (status = 200, description = "A fresh DEK and its EDEK.", body = WrapResp,
            links(
                ("unwrap" = (
                    operation_id = "unwrap",
                    description = "Unwrap the EDEK just made.",
                    request_body = json!({
                        "tenant_id": "$request.body#/tenant_id",
                        "edek": "$response.body#/edek",
                        "metadata": "$request.body#/metadata"
                    })
                )),
                ("rekey" = (
                    operation_id = "rekey",
                    description = "Re-wrap the EDEK just made under the tenant's current key.",
                    request_body = json!({
                        "tenant_id": "$request.body#/tenant_id",
                        "edek": "$response.body#/edek",
                        "metadata": "$request.body#/metadata"
                    })
                )),
                ("batch_unwrap" = (
                    operation_id = "batch_unwrap",
                    description = "Unwrap the EDEK just made in a batch of one.",
                    request_body = json!({
                        "tenant_id": "$request.body#/tenant_id",
                        "edeks": { "wrapped": "$response.body#/edek" },
                        "metadata": "$request.body#/metadata"
                    })
                ))
            )
        ),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = TenantNotFound),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 502, response = KmsFailed),
        (status = 503, response = Unavailable),
        (status = 504, response = KmsTimeout),
    )
)]
async fn wrap(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = auth_first(&s, &headers)?;
    let body = read_body(body).await?;
    let req: WrapReq = parse_json(&body)?;
    admit(&s, &p, &req.tenant_id, "wrap", "wrap", 1, &req.metadata).await?;
    let md = req.metadata.validate()?;
    let w = s.service.wrap(&p, &req.tenant_id, &md).await?;
    Ok(Json(WrapResp::new(&w)).into_response())
}

/// Unwrap an EDEK.
///
/// Returns the DEK inside an EDEK that a wrap (or rekey) of the same tenant made.
#[utoipa::path(
    post,
    path = "/v1/keys/unwrap",
    tag = "keys",
    operation_id = "unwrap",
    security(("service_key" = [])),
    request_body(content = EdekReq, content_type = "application/json"),
    responses(
        (status = 200, description = "The DEK.", body = UnwrapResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = TenantNotFound),
        (status = 409, response = TenantDisabled),
        (status = 422, response = EdekRejected),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 502, response = KmsFailed),
        (status = 503, response = Unavailable),
        (status = 504, response = KmsTimeout),
    )
)]
async fn unwrap(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = auth_first(&s, &headers)?;
    let body = read_body(body).await?;
    let req: EdekReq = parse_json(&body)?;
    admit(&s, &p, &req.tenant_id, "unwrap", "unwrap", 1, &req.metadata).await?;
    let md = req.metadata.validate()?;
    let dek = s
        .service
        .unwrap(&p, &req.tenant_id, &req.edek.0, &md)
        .await?;
    Ok(Json(UnwrapResp {
        dek: b64(dek.expose_secret()),
    })
    .into_response())
}

/// Wrap one fresh DEK per id.
///
/// Succeeds per item: an id that fails is listed under `failures`, the others under
/// `keys`. Counts as one request per id for rate limits.
#[utoipa::path(
    post,
    path = "/v1/keys/batch-wrap",
    tag = "keys",
    operation_id = "batch_wrap",
    security(("service_key" = [])),
    request_body(content = BatchWrapReq, content_type = "application/json"),
    responses(
        (status = 200, description = "DEKs and EDEKs by id, and per-id failures.", body = BatchWrapResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = TenantNotFound),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn batch_wrap(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = auth_first(&s, &headers)?;
    let body = read_body(body).await?;
    let req: BatchWrapReq = parse_json(&body)?;
    distinct_ids("ids", "id", &req.ids)?;
    admit(
        &s,
        &p,
        &req.tenant_id,
        "batch",
        "batch_wrap",
        req.ids.len(),
        &req.metadata,
    )
    .await?;
    let md = req.metadata.validate()?;
    let (ok, failed) = s
        .service
        .batch_wrap(&p, &req.tenant_id, &req.ids, &md)
        .await?;
    Ok(Json(BatchWrapResp {
        keys: ok
            .into_iter()
            .map(|(id, w)| (id, WrapResp::new(&w)))
            .collect(),
        failures: failures_map(failed),
    })
    .into_response())
}

/// Unwrap EDEKs by id.
///
/// Succeeds per item: an EDEK that fails (e.g. `edek_invalid`) is listed under `failures`,
/// the others under `keys`. Counts as one request per EDEK for rate limits.
#[utoipa::path(
    post,
    path = "/v1/keys/batch-unwrap",
    tag = "keys",
    operation_id = "batch_unwrap",
    security(("service_key" = [])),
    request_body(content = BatchUnwrapReq, content_type = "application/json"),
    responses(
        (status = 200, description = "DEKs by id, and per-id failures.", body = BatchUnwrapResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = TenantNotFound),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn batch_unwrap(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = auth_first(&s, &headers)?;
    let body = read_body(body).await?;
    let req: BatchUnwrapReq = parse_json(&body)?;
    if req.edeks.is_empty() || req.edeks.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "edeks must hold 1 to {MAX_BATCH} items"
        )));
    }
    for id in req.edeks.keys() {
        check_id("id", id)?;
    }
    admit(
        &s,
        &p,
        &req.tenant_id,
        "batch",
        "batch_unwrap",
        req.edeks.len(),
        &req.metadata,
    )
    .await?;
    let md = req.metadata.validate()?;
    let edeks = req.edeks.into_iter().map(|(k, v)| (k, v.0)).collect();
    let (ok, failed) = s
        .service
        .batch_unwrap(&p, &req.tenant_id, edeks, &md)
        .await?;
    Ok(Json(BatchUnwrapResp {
        keys: ok
            .into_iter()
            .map(|(id, d)| (id, b64(d.expose_secret())))
            .collect(),
        failures: failures_map(failed),
    })
    .into_response())
}

/// Re-wrap an EDEK under the tenant's current key.
///
/// The DEK is unchanged, so data encrypted under it needs no re-encryption.
#[utoipa::path(
    post,
    path = "/v1/keys/rekey",
    tag = "keys",
    operation_id = "rekey",
    security(("service_key" = [])),
    request_body(content = EdekReq, content_type = "application/json"),
    responses(
        (status = 200, description = "The new EDEK.", body = RekeyResp,
            links(
                ("unwrap" = (
                    operation_id = "unwrap",
                    description = "Unwrap the new EDEK.",
                    request_body = json!({
                        "tenant_id": "$request.body#/tenant_id",
                        "edek": "$response.body#/edek",
                        "metadata": "$request.body#/metadata"
                    })
                ))
            )
        ),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = TenantNotFound),
        (status = 409, response = TenantDisabled),
        (status = 422, response = EdekRejected),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 502, response = KmsFailed),
        (status = 503, response = Unavailable),
        (status = 504, response = KmsTimeout),
    )
)]
async fn rekey(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = auth_first(&s, &headers)?;
    let body = read_body(body).await?;
    let req: EdekReq = parse_json(&body)?;
    admit(&s, &p, &req.tenant_id, "rekey", "rekey", 1, &req.metadata).await?;
    let md = req.metadata.validate()?;
    let edek = s
        .service
        .rekey(&p, &req.tenant_id, &req.edek.0, &md)
        .await?;
    Ok(Json(RekeyResp { edek: b64(&edek) }).into_response())
}

/// Derive deterministic-encryption or blind-index keys.
///
/// For each field path, one key per live derivation secret of the tenant: the current one
/// and, while a rotation is in progress, the previous one, so queries can match values
/// written under either. Keys are derived with HKDF-SHA256 from secrets that only the
/// tenant's KMS can unwrap; cache them for minutes, not longer.
#[utoipa::path(
    post,
    path = "/v1/keys/derive",
    tag = "keys",
    operation_id = "derive",
    security(("service_key" = [])),
    request_body(content = DeriveReq, content_type = "application/json"),
    responses(
        (status = 200, description = "Derived keys by field path.", body = DeriveResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = TenantNotFound),
        (status = 409, response = TenantDisabled),
        (status = 422, response = EdekRejected),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 502, response = KmsFailed),
        (status = 503, response = Unavailable),
        (status = 504, response = KmsTimeout),
    )
)]
async fn derive(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = auth_first(&s, &headers)?;
    let body = read_body(body).await?;
    let req: DeriveReq = parse_json(&body)?;
    let purpose = Purpose::parse(&req.purpose)
        .ok_or_else(|| ApiError::bad_request("purpose must be `deterministic` or `blind_index`"))?;
    distinct_ids("paths", "path", &req.paths)?;
    let paths = req
        .paths
        .iter()
        .map(|path| {
            FieldPath::new(path.as_str())
                .map_err(|_| ApiError::bad_request(format!("invalid field path `{path}`")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    admit(&s, &p, &req.tenant_id, "derive", "derive", 1, &req.metadata).await?;
    let md = req.metadata.validate()?;
    let derived = s
        .service
        .derive(&p, &req.tenant_id, purpose, &paths, &md)
        .await?;
    Ok(Json(DeriveResp {
        keys: derived
            .into_iter()
            .map(|(path, entries)| {
                let keys = entries
                    .into_iter()
                    .map(|e| DerivedKeyResp {
                        key: b64(e.key.expose_secret()),
                        secret_id: e.secret_id,
                        current: e.current,
                    })
                    .collect();
                (path.as_str().to_owned(), keys)
            })
            .collect(),
    })
    .into_response())
}

/// Application event names users know from SIEM taxonomies.
fn valid_event_name(name: &str) -> bool {
    const PREFIXES: &[&str] = &["ADMIN_", "USER_", "DATA_", "PERIODIC_", "CUSTOM_"];
    PREFIXES
        .iter()
        .any(|p| name.len() > p.len() && name.starts_with(p))
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

/// Record an application security event.
///
/// The event reaches the tenant's SIEM through the audit log, with the request metadata.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    operation_id = "events",
    security(("service_key" = [])),
    request_body(content = EventReq, content_type = "application/json"),
    responses(
        (status = 204, description = "The event was recorded."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = TenantNotFound),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let p = auth_first(&s, &headers)?;
    let body = read_body(body).await?;
    let req: EventReq = parse_json(&body)?;
    let name = req
        .event
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !req.event.is_object() || !valid_event_name(name) {
        return Err(ApiError::bad_request(
            "event.name must be ADMIN_*, USER_*, DATA_*, PERIODIC_* or CUSTOM_<NAME> (A-Z, 0-9, _)",
        ));
    }
    if serde_json::to_vec(&req.event)
        .map(|b| b.len())
        .unwrap_or(usize::MAX)
        > extract::MAX_METADATA
    {
        return Err(ApiError::bad_request("event exceeds 4 KiB"));
    }
    admit(
        &s,
        &p,
        &req.tenant_id,
        "events",
        "app_event",
        1,
        &req.metadata,
    )
    .await?;
    let md = req.metadata.validate()?;
    s.service
        .app_event(&p, &req.tenant_id, &req.event, &md)
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Liveness.
///
/// 200 whenever the process is up; the same answer on the admin listener.
#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    operation_id = "health",
    responses((status = 200, description = "The process is up.", body = HealthResp))
)]
async fn health() -> Json<HealthResp> {
    Json(HealthResp { status: "ok" })
}

/// This document.
///
/// The OpenAPI 3 document of the API, generated from the code.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document.", content_type = "application/json", body = Object))
)]
async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        openapi::json(),
    )
        .into_response()
}

async fn ready(State(s): State<AppState>) -> Response {
    match s.service.store().tenants() {
        Ok(_) => Json(json!({ "status": "ready" })).into_response(),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "storage unavailable" })),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let mut text = s.service.metrics().render(&[(
        "keystead_lease_cache_keys",
        "Leased keys held in memory.",
        s.service.leases().cached_keys() as f64,
    )]);
    text.push_str(&s.service.audit_metrics());
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

/// Records latency and status per route; adds an `x-request-id`.
async fn observe(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "other".into());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| hex::encode(crate::util::random_bytes::<8>()));
    let start = Instant::now();
    let span = tracing::info_span!("request", route = %route, request_id = %request_id);
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let elapsed = start.elapsed();
    s.service
        .metrics()
        .request(&route, resp.status().as_u16(), elapsed);
    span.in_scope(|| {
        tracing::debug!(
            status = resp.status().as_u16(),
            micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            "request"
        )
    });
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The API router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/keys/wrap", post(wrap))
        .route("/v1/keys/unwrap", post(unwrap))
        .route("/v1/keys/batch-wrap", post(batch_wrap))
        .route("/v1/keys/batch-unwrap", post(batch_unwrap))
        .route("/v1/keys/rekey", post(rekey))
        .route("/v1/keys/derive", post(derive))
        .route("/v1/events", post(events))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi_json))
        .route(
            "/v1/e2e/tenants/{tenant_id}/users",
            post(directory::create_user),
        )
        .route(
            "/v1/e2e/tenants/{tenant_id}/users/{user_id}",
            get(directory::get_user).put(directory::update_user),
        )
        .route(
            "/v1/e2e/tenants/{tenant_id}/users/{user_id}/tokens",
            post(directory::issue_token),
        )
        .route(
            "/v1/e2e/tenants/{tenant_id}/users/{user_id}/enroll",
            post(directory::enroll),
        )
        .route(
            "/v1/e2e/tenants/{tenant_id}/users/{user_id}/escrow",
            get(directory::get_escrow).put(directory::put_escrow),
        )
        .route(
            "/v1/e2e/tenants/{tenant_id}/users/{user_id}/groups",
            get(directory::user_groups),
        )
        .route(
            "/v1/e2e/tenants/{tenant_id}/groups",
            post(directory::create_group),
        )
        .route(
            "/v1/e2e/tenants/{tenant_id}/groups/{group_id}/entries",
            get(directory::get_entries).post(directory::append_entry),
        )
        .route(
            "/v1/e2e/tenants/{tenant_id}/access-blocks/{doc_id}",
            get(directory::get_access_block).put(directory::put_access_block),
        )
        .route(
            "/v1/e2e/tenants/{tenant_id}/blobs/{blob_id}",
            get(directory::get_blob).put(directory::put_blob),
        )
        .fallback(|| async {
            ApiError {
                status: 404,
                code: "not_found",
                message: "no such route".into(),
                retry_after: None,
            }
        })
        // Keeps the error shape on a known route with another method; axum adds `Allow`.
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: 405,
                code: "method_not_allowed",
                message: "method not allowed on this route".into(),
                retry_after: None,
            }
        })
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The admin router (health, readiness, metrics).
pub fn admin_app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}
