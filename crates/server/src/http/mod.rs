//! The HTTP face of the service: `app(state)` for the API listener and `admin_app(state)`
//! for health, readiness and metrics. Handlers are thin: authenticate, parse, check scope,
//! call the [`Service`], map the result.

pub mod extract;

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
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Principal, authenticate};
use crate::error::{ApiError, retry_secs};
use crate::service::Service;
use extract::{B64, MAX_BATCH, Metadata, b64, check_id, parse_json};

/// Shared state of both listeners.
#[derive(Clone)]
pub struct AppState {
    /// The Encryption Service.
    pub service: Arc<Service>,
    /// Rate limits.
    pub limiter: Arc<RateLimiter>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (
            status,
            Json(json!({ "code": self.code, "message": self.message })),
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
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Limits in requests per second (burst = one second's worth); 0 disables a limit.
    pub fn new(per_tenant: f64, per_key: f64) -> Self {
        Self {
            per_tenant,
            per_key,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, key: String, rate: f64, cost: f64) -> Result<(), ApiError> {
        if rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = b.entry(key).or_insert((rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(rate);
        *at = now;
        if *tokens >= cost {
            *tokens -= cost;
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((cost - *tokens) / rate);
            Err(ApiError::rate_limited(retry_secs(wait)))
        }
    }

    /// Charges `cost` requests to the tenant and to the key.
    pub fn check(&self, p: &Principal, tenant: &str, cost: usize) -> Result<(), ApiError> {
        let cost = cost.max(1) as f64;
        self.take(format!("t\0{tenant}"), self.per_tenant, cost)?;
        self.take(format!("k\0{}", p.key_id), self.per_key, cost)
    }
}

/// Authenticates, then checks tenant and operation scope before anything touches the tenant.
fn admit(
    s: &AppState,
    headers: &HeaderMap,
    tenant: &str,
    op: &str,
    cost: usize,
) -> Result<Principal, ApiError> {
    let p = authenticate(
        s.service.store().as_ref(),
        headers.get("authorization").and_then(|v| v.to_str().ok()),
    )?;
    check_id("tenant_id", tenant)?;
    p.authorize(tenant, op)?;
    s.limiter.check(&p, tenant, cost)?;
    Ok(p)
}

/// Reads the body up to the API's limit; anything larger is `400 bad_request`.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, extract::MAX_BODY)
        .await
        .map_err(|_| ApiError::bad_request("request body exceeds 1 MiB or could not be read"))
}

fn auth_first(s: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    authenticate(
        s.service.store().as_ref(),
        headers.get("authorization").and_then(|v| v.to_str().ok()),
    )
    .map(|_| ())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WrapReq {
    tenant_id: String,
    metadata: Metadata,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EdekReq {
    tenant_id: String,
    edek: B64,
    metadata: Metadata,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchWrapReq {
    tenant_id: String,
    ids: Vec<String>,
    metadata: Metadata,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchUnwrapReq {
    tenant_id: String,
    edeks: BTreeMap<String, B64>,
    metadata: Metadata,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventReq {
    tenant_id: String,
    event: Value,
    metadata: Metadata,
}

fn failures_json(failures: Vec<(String, ApiError)>) -> Value {
    Value::Object(
        failures
            .into_iter()
            .map(|(id, e)| (id, json!({ "code": e.code, "message": e.message })))
            .collect(),
    )
}

async fn wrap(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    auth_first(&s, &headers)?;
    let body = read_body(body).await?;
    let req: WrapReq = parse_json(&body)?;
    let p = admit(&s, &headers, &req.tenant_id, "wrap", 1)?;
    let md = req.metadata.validate()?;
    let w = s.service.wrap(&p, &req.tenant_id, &md).await?;
    Ok(Json(json!({ "dek": b64(w.dek.expose_secret()), "edek": b64(&w.edek) })).into_response())
}

async fn unwrap(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    auth_first(&s, &headers)?;
    let body = read_body(body).await?;
    let req: EdekReq = parse_json(&body)?;
    let p = admit(&s, &headers, &req.tenant_id, "unwrap", 1)?;
    let md = req.metadata.validate()?;
    let dek = s
        .service
        .unwrap(&p, &req.tenant_id, &req.edek.0, &md)
        .await?;
    Ok(Json(json!({ "dek": b64(dek.expose_secret()) })).into_response())
}

async fn batch_wrap(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    auth_first(&s, &headers)?;
    let body = read_body(body).await?;
    let req: BatchWrapReq = parse_json(&body)?;
    if req.ids.is_empty() || req.ids.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "ids must hold 1 to {MAX_BATCH} items"
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for id in &req.ids {
        check_id("id", id)?;
        if !seen.insert(id) {
            return Err(ApiError::bad_request(format!("duplicate id `{id}`")));
        }
    }
    let p = admit(&s, &headers, &req.tenant_id, "batch", req.ids.len())?;
    let md = req.metadata.validate()?;
    let (ok, failed) = s
        .service
        .batch_wrap(&p, &req.tenant_id, &req.ids, &md)
        .await?;
    let keys: serde_json::Map<String, Value> = ok
        .into_iter()
        .map(|(id, w)| {
            (
                id,
                json!({ "dek": b64(w.dek.expose_secret()), "edek": b64(&w.edek) }),
            )
        })
        .collect();
    Ok(Json(json!({ "keys": keys, "failures": failures_json(failed) })).into_response())
}

async fn batch_unwrap(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    auth_first(&s, &headers)?;
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
    let p = admit(&s, &headers, &req.tenant_id, "batch", req.edeks.len())?;
    let md = req.metadata.validate()?;
    let edeks = req.edeks.into_iter().map(|(k, v)| (k, v.0)).collect();
    let (ok, failed) = s
        .service
        .batch_unwrap(&p, &req.tenant_id, edeks, &md)
        .await?;
    let keys: serde_json::Map<String, Value> = ok
        .into_iter()
        .map(|(id, d)| (id, Value::String(b64(d.expose_secret()))))
        .collect();
    Ok(Json(json!({ "keys": keys, "failures": failures_json(failed) })).into_response())
}

async fn rekey(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    auth_first(&s, &headers)?;
    let body = read_body(body).await?;
    let req: EdekReq = parse_json(&body)?;
    let p = admit(&s, &headers, &req.tenant_id, "rekey", 1)?;
    let md = req.metadata.validate()?;
    let edek = s
        .service
        .rekey(&p, &req.tenant_id, &req.edek.0, &md)
        .await?;
    Ok(Json(json!({ "edek": b64(&edek) })).into_response())
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

async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    auth_first(&s, &headers)?;
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
    let p = admit(&s, &headers, &req.tenant_id, "events", 1)?;
    let md = req.metadata.validate()?;
    s.service.app_event(&p, &req.tenant_id, &req.event, &md)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
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
    let text = s.service.metrics().render(&[
        (
            "keystead_lease_cache_keys",
            "Leased keys held in memory.",
            s.service.leases().cached_keys() as f64,
        ),
        (
            "keystead_audit_spool_depth",
            "Audit events waiting for delivery.",
            0.0,
        ),
    ]);
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
        tracing::info!(
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
        .route("/v1/events", post(events))
        .route("/health", get(health))
        .fallback(|| async {
            ApiError {
                status: 404,
                code: "not_found",
                message: "no such route".into(),
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
