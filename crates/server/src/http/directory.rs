//! Routes of the E2E key directory, `/v1/e2e/tenants/{tenant_id}/...` (docs/DIRECTORY.md).
//! Each handler authenticates (service key, single-use token or device signature), parses
//! and calls [`crate::directory::Directory`]; the logic lives there.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::ToSchema;

use super::extract::{B64, b64, check_id, parse_json, parse_json_max};
use super::openapi::{
    BadRequest, Conflict, Forbidden, Internal, NotFound, RateLimited, TenantDisabled,
    TenantNotFound, Unauthenticated, Unavailable,
};
use super::{AppState, auth_first, read_body, read_body_max};
use crate::directory::store::{DeviceRecord, GroupHead, TokenKind};
use crate::directory::{Directory, NewDevice, RequestInfo};
use crate::error::ApiError;

/// Most entries one log fetch returns.
const MAX_ENTRIES: usize = 1000;

/// Body limit of the group create and append routes: a log entry of up to
/// [`crate::directory::log_prefix::MAX_ENTRY`] (8 MiB) in base64 plus a member index of
/// 10 000 ids. Every other JSON route keeps [`super::extract::MAX_BODY`] (1 MiB).
pub const MAX_GROUP_BODY: usize = 16 << 20;

fn dir(s: &AppState) -> Result<Arc<Directory>, ApiError> {
    s.directory
        .clone()
        .ok_or_else(|| ApiError::not_found("the key directory is not enabled"))
}

fn info(method: &Method, uri: &Uri, headers: &HeaderMap) -> RequestInfo {
    let text = |h: header::HeaderName| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    RequestInfo {
        method: method.as_str().to_owned(),
        host: text(header::HOST),
        path_and_query: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned()),
        authorization: text(header::AUTHORIZATION),
    }
}

fn ids<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|_| ApiError::bad_request("invalid path parameter"))
}

fn key32(what: &str, b: &B64) -> Result<[u8; 32], ApiError> {
    b.0.as_slice()
        .try_into()
        .map_err(|_| ApiError::bad_request(format!("{what} must be 32 bytes")))
}

/// Service-key routes: the key's tenant scope, then its `directory` operation, then rate
/// limits; refusals are audited like the key routes'.
async fn admit_service(
    s: &AppState,
    headers: &HeaderMap,
    tenant: &str,
    action: &str,
) -> Result<crate::auth::Principal, ApiError> {
    let p = auth_first(s, headers)?;
    check_id("tenant_id", tenant)?;
    let res = p
        .authorize(tenant, "directory")
        .and_then(|()| s.limiter.check(&p, tenant, 1));
    if let Err(e) = &res {
        s.service
            .audit_rejected(&p, tenant, action, e, &Value::Null)
            .await;
    }
    res.map(|()| p)
}

/// Reads a JSON body (≤ 1 MiB) and authenticates its device signature.
async fn signed_json<T: serde::de::DeserializeOwned>(
    d: &Directory,
    tenant: &str,
    info: &RequestInfo,
    body: Body,
) -> Result<(DeviceRecord, T), ApiError> {
    check_id("tenant_id", tenant)?;
    let body = read_body(body).await?;
    let dev = d.authenticate(tenant, info, &body)?;
    Ok((dev, parse_json(&body)?))
}

/// [`signed_json`] for the group log routes: the body may be up to [`MAX_GROUP_BODY`].
/// The device and timestamp are checked before the body is read.
async fn signed_group_json<T: serde::de::DeserializeOwned>(
    d: &Directory,
    tenant: &str,
    info: &RequestInfo,
    body: Body,
) -> Result<(DeviceRecord, T), ApiError> {
    check_id("tenant_id", tenant)?;
    let (auth, dev) = d.pre_authenticate(tenant, info)?;
    let body = read_body_max(body, MAX_GROUP_BODY).await?;
    d.finish_authenticate(tenant, info, &auth, &dev, Sha256::digest(&body).into())?;
    Ok((dev, parse_json_max(&body, MAX_GROUP_BODY)?))
}

/// Authenticates a device-signed request without a body.
async fn signed_empty(
    d: &Directory,
    tenant: &str,
    info: &RequestInfo,
    body: Body,
) -> Result<DeviceRecord, ApiError> {
    check_id("tenant_id", tenant)?;
    let body = read_body(body).await?;
    d.authenticate(tenant, info, &body)
}

// ---- bodies and answers --------------------------------------------------------------------

/// Body of `POST /v1/e2e/tenants/{tenant_id}/users`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateUserReq {
    /// The vendor's id of the user: 1 to 256 bytes, no control characters.
    #[schema(schema_with = super::openapi::id_schema)]
    user_id: String,
}

/// Body of `POST /v1/e2e/tenants/{tenant_id}/users/{user_id}/tokens`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenReq {
    /// `enrollment` (register the identity key and a device) or `reauthentication`
    /// (release the escrow once).
    #[schema(schema_with = super::openapi::token_kind_schema)]
    kind: String,
}

/// A minted token, shown once.
#[derive(Serialize, ToSchema)]
pub(super) struct TokenResp {
    /// The token: hand it to the user's browser; it goes in
    /// `Authorization: Keystead-Token <token>`.
    token: String,
    /// Expiry, Unix seconds (at most 10 minutes ahead).
    expires_at: i64,
}

/// A device to register.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DeviceReq {
    /// 1 to 128 characters of `A-Z a-z 0-9 . _ ~ -`, unique in the tenant and never reused.
    #[schema(pattern = "^[A-Za-z0-9._~-]{1,128}$")]
    device_id: String,
    /// The device's Ed25519 public key (32 bytes); it verifies the device's requests.
    signing_key: B64,
    /// The device certificate signed by the user's identity key.
    certificate: B64,
}

impl DeviceReq {
    fn into_new(self) -> Result<NewDevice, ApiError> {
        Ok(NewDevice {
            signing_key: key32("signing_key", &self.signing_key)?,
            device_id: self.device_id,
            certificate: self.certificate.0,
        })
    }
}

/// Body of `POST /v1/e2e/tenants/{tenant_id}/users/{user_id}/enroll`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EnrollReq {
    /// The user's Ed25519 identity public key (32 bytes); fixed once set.
    identity_key: B64,
    /// The signed user record.
    user_record: B64,
    /// The user record version this replaces: 0 on first enrollment.
    #[serde(default)]
    expected_version: u64,
    device: DeviceReq,
}

/// Body of `PUT /v1/e2e/tenants/{tenant_id}/users/{user_id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateUserReq {
    /// The version this record replaces (compare-and-swap).
    expected_version: u64,
    /// The new signed user record.
    user_record: B64,
    /// Devices to add.
    #[serde(default)]
    add_devices: Vec<DeviceReq>,
    /// Device ids to remove.
    #[serde(default)]
    remove_devices: Vec<String>,
}

/// A user record version.
#[derive(Serialize, ToSchema)]
pub(super) struct VersionResp {
    /// The version now stored.
    version: u64,
}

/// A registered device.
#[derive(Serialize, ToSchema)]
pub(super) struct DeviceResp {
    /// Device id.
    device_id: String,
    /// Ed25519 public key.
    #[schema(value_type = B64)]
    signing_key: String,
    /// Certificate signed by the identity key.
    #[schema(value_type = B64)]
    certificate: String,
}

/// A user's identity, record and devices.
#[derive(Serialize, ToSchema)]
pub(super) struct UserResp {
    /// User id.
    user_id: String,
    /// Ed25519 identity public key; absent before enrollment.
    #[schema(value_type = Option<B64>)]
    identity_key: Option<String>,
    /// The signed user record (empty before enrollment).
    #[schema(value_type = B64)]
    user_record: String,
    /// Record version (0 before enrollment).
    version: u64,
    /// Live devices.
    devices: Vec<DeviceResp>,
}

/// Body of `PUT .../escrow`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EscrowBody {
    /// The escrowed identity key (sealed under the recovery secret on the device).
    #[schema(value_type = B64)]
    escrow: String,
}

/// Answer of `GET .../escrow`: the escrow and the user's current record. A browser that
/// recovers has no registered device yet to read the user with, and needs the record (to
/// sign its successor) and its version (to enroll a new device with `expected_version`).
#[derive(Serialize, ToSchema)]
pub(super) struct EscrowReleaseResp {
    /// The escrowed identity key.
    #[schema(value_type = B64)]
    escrow: String,
    /// The user's current signed record (as `GET .../users/{user_id}` serves it).
    #[schema(value_type = B64)]
    user_record: String,
    /// The record's version.
    version: u64,
}

/// Body of `POST /v1/e2e/tenants/{tenant_id}/groups`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateGroupReq {
    /// Group id: 1 to 256 bytes, no control characters; the entry must name it.
    #[schema(schema_with = super::openapi::id_schema)]
    group_id: String,
    /// The signed genesis entry (seq 0, all-zero parent).
    entry: B64,
    /// User ids of the members (an index for listing; the log is authoritative).
    #[serde(default)]
    members: Vec<String>,
}

/// Body of `POST .../groups/{group_id}/entries`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AppendReq {
    /// The signed entry; its parent must be the current head.
    entry: B64,
    /// When given, replaces the member index.
    #[serde(default)]
    members: Option<Vec<String>>,
}

/// A group's head.
#[derive(Serialize, ToSchema)]
pub(super) struct HeadResp {
    /// Group id.
    group_id: String,
    /// Sequence number of the newest entry.
    seq: u64,
    /// SHA-256 of the newest entry.
    #[schema(value_type = B64)]
    head: String,
}

impl From<GroupHead> for HeadResp {
    fn from(h: GroupHead) -> Self {
        Self {
            group_id: h.group_id,
            seq: h.seq,
            head: b64(&h.hash),
        }
    }
}

/// One log entry.
#[derive(Serialize, ToSchema)]
pub(super) struct EntryResp {
    /// Sequence number.
    seq: u64,
    /// SHA-256 of the entry.
    #[schema(value_type = B64)]
    hash: String,
    /// The signed entry.
    #[schema(value_type = B64)]
    entry: String,
}

/// A slice of a group log.
#[derive(Serialize, ToSchema)]
pub(super) struct EntriesResp {
    /// Entries from `from` on, in order (at most 1000).
    entries: Vec<EntryResp>,
    /// The head at the time of the read.
    head: HeadResp,
}

/// A user's groups.
#[derive(Serialize, ToSchema)]
pub(super) struct GroupsResp {
    /// Heads of the groups whose member index holds the user.
    groups: Vec<HeadResp>,
}

/// Body of `PUT .../access-blocks/{doc_id}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AccessBlockReq {
    /// The version this block replaces: 0 for a document without one.
    expected_version: u64,
    /// The access block.
    block: B64,
}

/// A stored access block.
#[derive(Serialize, ToSchema)]
pub(super) struct AccessBlockResp {
    /// Its version.
    version: u64,
    /// The access block.
    #[schema(value_type = B64)]
    block: String,
}

/// A stored blob.
#[derive(Serialize, ToSchema)]
pub(super) struct BlobResp {
    /// Size in bytes.
    size: u64,
    /// SHA-256 of the content, hex.
    sha256: String,
}

/// Raw blob bytes (`type: string, format: binary`).
pub(super) struct BlobBytes;

impl utoipa::PartialSchema for BlobBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some("Raw bytes (an encrypted attachment)."))
            .into()
    }
}

impl ToSchema for BlobBytes {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("BlobBytes")
    }
}

// ---- vendor (service key) ------------------------------------------------------------------

/// Create a user slot.
///
/// The vendor's backend creates the slot a user later enrolls into.
#[utoipa::path(
    post,
    path = "/v1/e2e/tenants/{tenant_id}/users",
    tag = "directory",
    operation_id = "directory_create_user",
    security(("service_key" = [])),
    params(("tenant_id" = String, Path, description = "Tenant id.")),
    request_body(content = CreateUserReq, content_type = "application/json"),
    responses(
        (status = 201, description = "The slot exists.",
            links(
                ("issue_token" = (
                    operation_id = "directory_issue_token",
                    description = "Mint a token for the user just created.",
                    parameters(
                        ("tenant_id" = "$request.path.tenant_id"),
                        ("user_id" = "$request.body#/user_id")
                    ),
                    request_body = json!({ "kind": "enrollment" })
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
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn create_user(
    State(s): State<AppState>,
    tenant: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let tenant = ids(tenant)?;
    let p = admit_service(&s, &headers, &tenant, "directory_user_created").await?;
    let d = dir(&s)?;
    let req: CreateUserReq = parse_json(&read_body(body).await?)?;
    check_id("user_id", &req.user_id)?;
    d.create_user(&p, &tenant, &req.user_id).await?;
    Ok(StatusCode::CREATED.into_response())
}

/// Mint a single-use token for a user.
///
/// An enrollment token lets the user's browser register its identity key and a device; a
/// re-authentication token (minted after the user re-authenticated to the vendor's app)
/// releases the escrow once. Valid 10 minutes, single use, stored hashed.
#[utoipa::path(
    post,
    path = "/v1/e2e/tenants/{tenant_id}/users/{user_id}/tokens",
    tag = "directory",
    operation_id = "directory_issue_token",
    security(("service_key" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("user_id" = String, Path, description = "User id."),
    ),
    request_body(content = TokenReq, content_type = "application/json"),
    responses(
        (status = 201, description = "The token, shown once.", body = TokenResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn issue_token(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, user) = ids(path)?;
    let p = admit_service(&s, &headers, &tenant, "directory_token_issued").await?;
    let d = dir(&s)?;
    check_id("user_id", &user)?;
    let req: TokenReq = parse_json(&read_body(body).await?)?;
    let kind = TokenKind::parse(&req.kind)
        .ok_or_else(|| ApiError::bad_request("kind must be enrollment or reauthentication"))?;
    let (token, expires_at) = d.issue_token(&p, &tenant, &user, kind).await?;
    let mut resp = (
        StatusCode::CREATED,
        Json(TokenResp {
            token: token.to_string(),
            expires_at,
        }),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

// ---- users (token and device) ----------------------------------------------------------------

/// Enroll: register the identity key, user record and a device.
///
/// Authenticated by an enrollment token (`Authorization: Keystead-Token <token>`), which
/// this spends. Again after recovery: the identity key must be the registered one and
/// `expected_version` the current version.
#[utoipa::path(
    post,
    path = "/v1/e2e/tenants/{tenant_id}/users/{user_id}/enroll",
    tag = "directory",
    operation_id = "directory_enroll",
    security(("directory_token" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("user_id" = String, Path, description = "User id."),
    ),
    request_body(content = EnrollReq, content_type = "application/json"),
    responses(
        (status = 201, description = "Enrolled; the new record version.", body = VersionResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn enroll(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, user) = ids(path)?;
    let d = dir(&s)?;
    check_id("tenant_id", &tenant)?;
    check_id("user_id", &user)?;
    let req: EnrollReq = parse_json(&read_body(body).await?)?;
    let identity = key32("identity_key", &req.identity_key)?;
    let device = req.device.into_new()?;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let version = d
        .enroll(
            &tenant,
            &user,
            auth,
            identity,
            req.user_record.0,
            req.expected_version,
            device,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(VersionResp { version })).into_response())
}

/// Get a user's identity key, record and devices.
///
/// Device-signed; any registered device of the tenant may read any user.
#[utoipa::path(
    get,
    path = "/v1/e2e/tenants/{tenant_id}/users/{user_id}",
    tag = "directory",
    operation_id = "directory_get_user",
    security(("device_signature" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("user_id" = String, Path, description = "User id."),
    ),
    responses(
        (status = 200, description = "The user.", body = UserResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_user(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, user) = ids(path)?;
    let d = dir(&s)?;
    signed_empty(&d, &tenant, &info(&method, &uri, &headers), body).await?;
    let (u, devices) = d.user(&tenant, &user)?;
    Ok(Json(UserResp {
        user_id: u.user_id,
        identity_key: u.identity_key.map(|k| b64(&k)),
        user_record: b64(&u.record),
        version: u.version,
        devices: devices
            .into_iter()
            .map(|d| DeviceResp {
                device_id: d.device_id,
                signing_key: b64(&d.signing_key),
                certificate: b64(&d.certificate),
            })
            .collect(),
    })
    .into_response())
}

/// Replace a user's record; add or remove devices.
///
/// Device-signed by a device of that user; `expected_version` must be the current version
/// (otherwise `409 conflict`). Removed devices stop authenticating at once.
#[utoipa::path(
    put,
    path = "/v1/e2e/tenants/{tenant_id}/users/{user_id}",
    tag = "directory",
    operation_id = "directory_update_user",
    security(("device_signature" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("user_id" = String, Path, description = "User id."),
    ),
    request_body(content = UpdateUserReq, content_type = "application/json"),
    responses(
        (status = 200, description = "The new version.", body = VersionResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn update_user(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, user) = ids(path)?;
    let d = dir(&s)?;
    let (dev, req): (_, UpdateUserReq) =
        signed_json(&d, &tenant, &info(&method, &uri, &headers), body).await?;
    let add = req
        .add_devices
        .into_iter()
        .map(DeviceReq::into_new)
        .collect::<Result<Vec<_>, _>>()?;
    let version = d
        .update_user(
            &dev,
            &tenant,
            &user,
            req.expected_version,
            req.user_record.0,
            add,
            req.remove_devices,
        )
        .await?;
    Ok(Json(VersionResp { version }).into_response())
}

/// Store the user's escrowed identity key.
///
/// Device-signed by a device of that user.
#[utoipa::path(
    put,
    path = "/v1/e2e/tenants/{tenant_id}/users/{user_id}/escrow",
    tag = "directory",
    operation_id = "directory_put_escrow",
    security(("device_signature" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("user_id" = String, Path, description = "User id."),
    ),
    request_body(content = EscrowBody, content_type = "application/json"),
    responses(
        (status = 204, description = "Stored."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 403, response = Forbidden),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn put_escrow(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, user) = ids(path)?;
    let d = dir(&s)?;
    let (dev, req): (_, EscrowBody) =
        signed_json(&d, &tenant, &info(&method, &uri, &headers), body).await?;
    let blob = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &req.escrow)
        .map_err(|_| ApiError::bad_request("escrow: invalid base64"))?;
    d.put_escrow(&dev, &tenant, &user, &blob).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Release the escrowed identity key.
///
/// Needs a re-authentication token (`Authorization: Keystead-Token <token>`), which this
/// spends. At most 5 attempts per user per hour, with a growing wait between attempts
/// (`429 rate_limited` with `Retry-After`). Releases and refusals are audited. The answer
/// carries the user's current record and version: the recovering browser has no
/// registered device to read them with, and needs both to enroll a new device.
#[utoipa::path(
    get,
    path = "/v1/e2e/tenants/{tenant_id}/users/{user_id}/escrow",
    tag = "directory",
    operation_id = "directory_get_escrow",
    security(("directory_token" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("user_id" = String, Path, description = "User id."),
    ),
    responses(
        (status = 200, description = "The escrow blob and the user's current record.", body = EscrowReleaseResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn get_escrow(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (tenant, user) = ids(path)?;
    let d = dir(&s)?;
    check_id("tenant_id", &tenant)?;
    check_id("user_id", &user)?;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let blob = d.get_escrow(&tenant, &user, auth).await?;
    // A released escrow implies an enrolled user: the record exists.
    let (u, _) = d.user(&tenant, &user)?;
    let mut resp = Json(EscrowReleaseResp {
        escrow: b64(&blob),
        user_record: b64(&u.record),
        version: u.version,
    })
    .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// List the groups of a user.
///
/// Device-signed by a device of that user.
#[utoipa::path(
    get,
    path = "/v1/e2e/tenants/{tenant_id}/users/{user_id}/groups",
    tag = "directory",
    operation_id = "directory_user_groups",
    security(("device_signature" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("user_id" = String, Path, description = "User id."),
    ),
    responses(
        (status = 200, description = "Group heads.", body = GroupsResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 403, response = Forbidden),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn user_groups(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, user) = ids(path)?;
    let d = dir(&s)?;
    let dev = signed_empty(&d, &tenant, &info(&method, &uri, &headers), body).await?;
    let groups = d.groups_of(&dev, &tenant, &user)?;
    Ok(Json(GroupsResp {
        groups: groups.into_iter().map(HeadResp::from).collect(),
    })
    .into_response())
}

// ---- groups ---------------------------------------------------------------------------------

/// Create a group with its genesis entry.
///
/// Device-signed. The signing device's user joins the member index. The server verifies
/// the entry with keystead-core (signature, genesis rules, sealed keys); a refusal is
/// `400 bad_request` naming the core error code. The body may be up to 16 MiB (entries up
/// to 8 MiB); other JSON routes take at most 1 MiB.
#[utoipa::path(
    post,
    path = "/v1/e2e/tenants/{tenant_id}/groups",
    tag = "directory",
    operation_id = "directory_create_group",
    security(("device_signature" = [])),
    params(("tenant_id" = String, Path, description = "Tenant id.")),
    request_body(content = CreateGroupReq, content_type = "application/json"),
    responses(
        (status = 201, description = "The group's head.", body = HeadResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn create_group(
    State(s): State<AppState>,
    tenant: Result<Path<String>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let tenant = ids(tenant)?;
    let d = dir(&s)?;
    let (dev, req): (_, CreateGroupReq) =
        signed_group_json(&d, &tenant, &info(&method, &uri, &headers), body).await?;
    check_id("group_id", &req.group_id)?;
    let head = d
        .create_group(&dev, &tenant, &req.group_id, req.entry.0, req.members)
        .await?;
    Ok((StatusCode::CREATED, Json(HeadResp::from(head))).into_response())
}

/// Append an entry to a group log.
///
/// Device-signed by a device of a member. The entry's parent must be the current head:
/// each parent gets exactly one child; a second is `409 conflict` (fetch the log and
/// rebase). A sequence number other than head + 1 is `400 bad_request`, and so is an entry
/// that keystead-core refuses against the group's verified state (bad signature, signer
/// not an admin, invalid operation or keys). The body may be up to 16 MiB (entries up to
/// 8 MiB).
#[utoipa::path(
    post,
    path = "/v1/e2e/tenants/{tenant_id}/groups/{group_id}/entries",
    tag = "directory",
    operation_id = "directory_append_entry",
    security(("device_signature" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("group_id" = String, Path, description = "Group id."),
    ),
    request_body(content = AppendReq, content_type = "application/json"),
    responses(
        (status = 201, description = "The new head.", body = HeadResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn append_entry(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, group) = ids(path)?;
    let d = dir(&s)?;
    let (dev, req): (_, AppendReq) =
        signed_group_json(&d, &tenant, &info(&method, &uri, &headers), body).await?;
    check_id("group_id", &group)?;
    let head = d
        .append_entry(&dev, &tenant, &group, req.entry.0, req.members)
        .await?;
    Ok((StatusCode::CREATED, Json(HeadResp::from(head))).into_response())
}

/// Query of `GET .../entries`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    #[serde(default)]
    from: u64,
    #[serde(default)]
    limit: Option<usize>,
}

/// Read a group log from a sequence number on.
///
/// Device-signed by a device of a member. At most `limit` (≤ 1000) entries; page with
/// `from` = last seq + 1.
#[utoipa::path(
    get,
    path = "/v1/e2e/tenants/{tenant_id}/groups/{group_id}/entries",
    tag = "directory",
    operation_id = "directory_get_entries",
    security(("device_signature" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("group_id" = String, Path, description = "Group id."),
        ("from" = Option<u64>, Query, description = "First sequence number (default 0)."),
        ("limit" = Option<u64>, Query, description = "Most entries (1 to 1000, default 1000)."),
    ),
    responses(
        (status = 200, description = "Entries and the head.", body = EntriesResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_entries(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, group) = ids(path)?;
    let d = dir(&s)?;
    let q: EntriesQuery = serde_urlencoded_query(uri.query())?;
    let dev = signed_empty(&d, &tenant, &info(&method, &uri, &headers), body).await?;
    let limit = q.limit.unwrap_or(MAX_ENTRIES).clamp(1, MAX_ENTRIES);
    let (entries, head) = d.entries(&dev, &tenant, &group, q.from, limit)?;
    Ok(Json(EntriesResp {
        entries: entries
            .into_iter()
            .map(|e| EntryResp {
                seq: e.seq,
                hash: b64(&e.hash),
                entry: b64(&e.entry),
            })
            .collect(),
        head: head.into(),
    })
    .into_response())
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(q: Option<&str>) -> Result<T, ApiError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{}", q.unwrap_or_default())
            .parse()
            .map_err(|_| ApiError::bad_request("invalid query"))?,
    )
    .map(|axum::extract::Query(t)| t)
    .map_err(|_| ApiError::bad_request("invalid query: from and limit are integers"))
}

// ---- access blocks ---------------------------------------------------------------------------

/// Store a document's access block (compare-and-swap on its version).
///
/// Device-signed. `expected_version` 0 creates; otherwise it must be the current version
/// (`409 conflict`). The answer's `ETag` is the new version.
#[utoipa::path(
    put,
    path = "/v1/e2e/tenants/{tenant_id}/access-blocks/{doc_id}",
    tag = "directory",
    operation_id = "directory_put_access_block",
    security(("device_signature" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("doc_id" = String, Path, description = "Document id."),
    ),
    request_body(content = AccessBlockReq, content_type = "application/json"),
    responses(
        (status = 200, description = "The new version.", body = VersionResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn put_access_block(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, doc) = ids(path)?;
    let d = dir(&s)?;
    let (dev, req): (_, AccessBlockReq) =
        signed_json(&d, &tenant, &info(&method, &uri, &headers), body).await?;
    check_id("doc_id", &doc)?;
    let version = d
        .put_access_block(&dev, &tenant, &doc, req.expected_version, &req.block.0)
        .await?;
    let mut resp = Json(VersionResp { version }).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// Get a document's access block.
///
/// Device-signed.
#[utoipa::path(
    get,
    path = "/v1/e2e/tenants/{tenant_id}/access-blocks/{doc_id}",
    tag = "directory",
    operation_id = "directory_get_access_block",
    security(("device_signature" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("doc_id" = String, Path, description = "Document id."),
    ),
    responses(
        (status = 200, description = "The block.", body = AccessBlockResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_access_block(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, doc) = ids(path)?;
    let d = dir(&s)?;
    signed_empty(&d, &tenant, &info(&method, &uri, &headers), body).await?;
    check_id("doc_id", &doc)?;
    let b = d.access_block(&tenant, &doc)?;
    let mut resp = Json(AccessBlockResp {
        version: b.version,
        block: b64(&b.block),
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", b.version)) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

// ---- blobs -----------------------------------------------------------------------------------

/// Upload an attachment blob (streamed).
///
/// Device-signed; the signature covers the SHA-256 of the whole body, so it is checked
/// once the body has been received (into a temporary file: a refused upload never replaces
/// a blob). The body is not limited to 1 MiB (the configured blob limit applies, default
/// 1 GiB). Only a device of the user who uploaded a blob may replace it.
#[utoipa::path(
    put,
    path = "/v1/e2e/tenants/{tenant_id}/blobs/{blob_id}",
    tag = "directory",
    operation_id = "directory_put_blob",
    security(("device_signature" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("blob_id" = String, Path, description = "Blob id."),
    ),
    request_body(content = BlobBytes, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored.", body = BlobResp),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 403, response = Forbidden),
        (status = 413, response = BadRequest),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
        (status = 503, response = Unavailable),
    )
)]
pub(super) async fn put_blob(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, blob_id) = ids(path)?;
    let d = dir(&s)?;
    check_id("tenant_id", &tenant)?;
    let info = info(&method, &uri, &headers);
    // Header, freshness and device are checked before a byte is stored.
    let (auth, dev) = d.pre_authenticate(&tenant, &info)?;
    check_id("blob_id", &blob_id)?;
    d.may_write_blob(&dev, &tenant, &blob_id)?;
    let tmp = d.blobs().temp_dir().join(format!(
        "up-{}",
        hex::encode(crate::util::random_bytes::<12>())
    ));
    let res = async {
        let (size, sha256) = receive(body, &tmp, d.options().max_blob_bytes).await?;
        d.finish_authenticate(&tenant, &info, &auth, &dev, sha256)?;
        d.commit_blob(&dev, &tenant, &blob_id, &tmp, size, sha256)
            .await?;
        Ok::<_, ApiError>((size, sha256))
    }
    .await;
    // Gone already after a commit; removed here after any failure.
    let _ = tokio::fs::remove_file(&tmp).await;
    let (size, sha256) = res?;
    Ok((
        StatusCode::CREATED,
        Json(BlobResp {
            size,
            sha256: hex::encode(sha256),
        }),
    )
        .into_response())
}

/// Streams `body` into a new file at `tmp`, hashing it; over `max` bytes is `413`.
async fn receive(body: Body, tmp: &std::path::Path, max: u64) -> Result<(u64, [u8; 32]), ApiError> {
    let io = |e: std::io::Error| {
        let id = hex::encode(crate::util::random_bytes::<6>());
        tracing::error!(correlation = %id, error = %e, "blob upload: temporary file");
        ApiError::internal(&id)
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .await
        .map_err(io)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        size += chunk.len() as u64;
        if size > max {
            return Err(ApiError::payload_too_large(format!(
                "blobs are at most {max} bytes"
            )));
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    Ok((size, hasher.finalize().into()))
}

/// A parsed `Range` header, against a blob of `size` bytes: `None` = the whole blob.
pub fn parse_range(h: Option<&str>, size: u64) -> Result<Option<std::ops::Range<u64>>, ApiError> {
    let Some(h) = h else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        // Another unit: ignored, as RFC 9110 allows.
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges: answered with the whole blob (allowed; simpler for clients).
        return Ok(None);
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(ApiError::range_not_satisfiable)?;
    let num = |s: &str| -> Result<u64, ApiError> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(ApiError::range_not_satisfiable());
        }
        s.parse().map_err(|_| ApiError::range_not_satisfiable())
    };
    let range = if a.is_empty() {
        // Suffix: the last n bytes.
        let n = num(b)?;
        if n == 0 || size == 0 {
            return Err(ApiError::range_not_satisfiable());
        }
        size.saturating_sub(n)..size
    } else {
        let start = num(a)?;
        let end = if b.is_empty() {
            size
        } else {
            num(b)?.saturating_add(1).min(size)
        };
        if start >= size || start >= end {
            return Err(ApiError::range_not_satisfiable());
        }
        start..end
    };
    Ok(Some(range))
}

/// Download an attachment blob, whole or by byte range.
///
/// Device-signed. Supports one `Range: bytes=…` (206 with `Content-Range`); an
/// unsatisfiable range is `416`. Streamed from storage.
#[utoipa::path(
    get,
    path = "/v1/e2e/tenants/{tenant_id}/blobs/{blob_id}",
    tag = "directory",
    operation_id = "directory_get_blob",
    security(("device_signature" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id."),
        ("blob_id" = String, Path, description = "Blob id."),
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=first-last`, `bytes=first-` or `bytes=-suffix`."),
    ),
    responses(
        (status = 200, description = "The blob.", content_type = "application/octet-stream", body = BlobBytes),
        (status = 206, description = "The requested range.", content_type = "application/octet-stream", body = BlobBytes),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthenticated),
        (status = 404, response = NotFound),
        (status = 416, response = BadRequest),
        (status = 409, response = TenantDisabled),
        (status = 429, response = RateLimited),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_blob(
    State(s): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (tenant, blob_id) = ids(path)?;
    let d = dir(&s)?;
    signed_empty(&d, &tenant, &info(&method, &uri, &headers), body).await?;
    check_id("blob_id", &blob_id)?;
    let meta = d.blob_meta(&tenant, &blob_id)?;
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        meta.size,
    )?;
    let stream = d.blob_stream(&tenant, &blob_id, range.clone()).await?;
    let (status, len) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, meta.size),
    };
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", hex::encode(meta.sha256))) {
        h.insert(header::ETAG, v);
    }
    if let Some(r) = range
        && let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{}", r.start, r.end - 1, meta.size))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-3"), 10).unwrap(), Some(0..4));
        assert_eq!(parse_range(Some("bytes=5-"), 10).unwrap(), Some(5..10));
        assert_eq!(parse_range(Some("bytes=-3"), 10).unwrap(), Some(7..10));
        assert_eq!(parse_range(Some("bytes=8-100"), 10).unwrap(), Some(8..10));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10).unwrap(), None);
        for bad in ["bytes=10-", "bytes=5-2", "bytes=x-1", "bytes=-0", "bytes=3"] {
            assert_eq!(parse_range(Some(bad), 10).unwrap_err().status, 416, "{bad}");
        }
    }
}
