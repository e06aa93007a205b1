//! The E2E key directory (docs/DIRECTORY.md): users' identity keys and signed user records,
//! device certificates, escrowed identity keys, group logs, document access blocks and
//! attachment blobs.
//!
//! The server stores and serves these; it can read none of the secrets inside them (sealed
//! keys, escrow blobs, ciphertext). What it enforces: who may write what (vendor service
//! keys create user slots and mint single-use tokens; devices sign their requests), the
//! compare-and-swap rules (user record versions, one child per group-log parent,
//! access-block versions), single use and expiry of tokens, and the escrow release limits.
//! Every security-relevant operation and refusal is an audit event.
//!
//! Handlers in `http::directory` only parse and answer; the logic is here.

pub mod blob;
pub mod device_auth;
pub mod group_check;
pub mod log_prefix;
pub mod store;

use std::collections::HashSet;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::auth::Principal;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::service::Service;
use crate::store::StoreError;
use blob::{BlobError, BlobStore};
use device_auth::{DeviceAuth, NonceCache};
use store::{
    AccessBlock, BlobMeta, DeviceRecord, DirectoryStore, GroupHead, LogEntryRecord, TokenKind,
    TokenRecord, UserRecord, UserUpdate,
};

/// Why a directory operation failed. Carries ids and reasons, never secrets.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A group log entry is malformed or out of sequence (400).
    #[error("bad log entry: {0}")]
    BadEntry(String),
    /// A compare-and-swap lost or the record exists (409).
    #[error("conflict: {0}")]
    Conflict(String),
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::BadEntry(m) => ApiError::bad_request(m),
            DirectoryError::Conflict(m) => ApiError::conflict(m),
        }
    }
}

fn store_err(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(m) => ApiError::conflict(m),
        StoreError::NotFound(m) => ApiError::not_found(format!("not found: {m}")),
        StoreError::Db(m) => internal(&m),
    }
}

fn blob_err(e: BlobError) -> ApiError {
    match e {
        BlobError::NotFound => ApiError::not_found("no such blob"),
        BlobError::Backend(m) => internal(&m),
    }
}

fn internal(m: &str) -> ApiError {
    let id = hex::encode(crate::util::random_bytes::<6>());
    tracing::error!(correlation = %id, error = %m, "directory internal error");
    ApiError::internal(&id)
}

/// Limits and lifetimes of the directory.
#[derive(Clone, Debug)]
pub struct DirectoryOptions {
    /// Lifetime of enrollment and re-authentication tokens, seconds (at most 600).
    pub token_ttl_secs: i64,
    /// Escrow releases per user per rolling hour.
    pub escrow_per_hour: usize,
    /// Backoff between escrow releases: after n releases in the hour the next waits
    /// `escrow_backoff_secs * 2^(n-1)` after the previous one (0 disables).
    pub escrow_backoff_secs: i64,
    /// Largest attachment blob, bytes.
    pub max_blob_bytes: u64,
    /// Largest signed record, certificate, escrow blob or access block, bytes.
    pub max_record_bytes: usize,
    /// Device-signed requests per second per device (burst: one second's worth); 0 turns
    /// the limit off. Counted per instance, like the nonces.
    pub device_requests_per_sec: f64,
}

impl Default for DirectoryOptions {
    fn default() -> Self {
        Self {
            token_ttl_secs: 600,
            escrow_per_hour: 5,
            escrow_backoff_secs: 30,
            max_blob_bytes: 1 << 30,
            max_record_bytes: 256 * 1024,
            device_requests_per_sec: 50.0,
        }
    }
}

/// The request facts a device signature covers (besides the body hash).
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// HTTP method.
    pub method: String,
    /// The `Host` header.
    pub host: Option<String>,
    /// Path and query as sent.
    pub path_and_query: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
}

/// A new device to register.
#[derive(Clone, Debug)]
pub struct NewDevice {
    /// Device id (`[A-Za-z0-9._~-]`, at most 128 bytes; never reused in a tenant).
    pub device_id: String,
    /// Ed25519 public key.
    pub signing_key: [u8; 32],
    /// Certificate signed by the identity key (opaque).
    pub certificate: Vec<u8>,
}

/// Token prefix, so leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "kst_";

/// The E2E key directory.
pub struct Directory {
    store: Arc<dyn DirectoryStore>,
    blobs: Arc<dyn BlobStore>,
    clock: Arc<dyn Clock>,
    service: Arc<Service>,
    nonces: NonceCache,
    /// Per-device request limit (device-signed routes).
    device_limit: crate::http::RateLimiter,
    opts: DirectoryOptions,
    /// Verified group states at their heads (the start of the next append's check).
    states: Arc<group_check::StateCache>,
}

fn device_principal(tenant: &str, d: &DeviceRecord) -> Principal {
    Principal {
        key_id: format!("device:{}", d.device_id),
        name: d.user_id.clone(),
        tenants: Some(std::iter::once(tenant.to_owned()).collect()),
        ops: HashSet::new(),
    }
}

fn token_principal(tenant: &str, kind: TokenKind, user_id: &str) -> Principal {
    Principal {
        key_id: format!("token:{}", kind.as_str()),
        name: user_id.to_owned(),
        tenants: Some(std::iter::once(tenant.to_owned()).collect()),
        ops: HashSet::new(),
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Directory {
    /// Builds the directory.
    pub fn new(
        store: Arc<dyn DirectoryStore>,
        blobs: Arc<dyn BlobStore>,
        clock: Arc<dyn Clock>,
        service: Arc<Service>,
        opts: DirectoryOptions,
    ) -> Self {
        Self {
            store,
            blobs,
            clock,
            service,
            nonces: NonceCache::default(),
            device_limit: crate::http::RateLimiter::new(0.0, opts.device_requests_per_sec),
            opts,
            states: Arc::default(),
        }
    }

    /// The blob store.
    pub fn blobs(&self) -> &Arc<dyn BlobStore> {
        &self.blobs
    }

    /// The limits.
    pub fn options(&self) -> &DirectoryOptions {
        &self.opts
    }

    /// The cache of verified group states (tests: clear it to force a rebuild from the
    /// store, or look at its size).
    pub fn group_states(&self) -> &group_check::StateCache {
        &self.states
    }

    fn now(&self) -> i64 {
        self.clock.unix_now()
    }

    async fn audit(
        &self,
        p: &Principal,
        tenant: &str,
        action: &str,
        outcome: Result<(), &ApiError>,
        detail: Value,
    ) -> Result<(), ApiError> {
        self.service
            .audit_directory(p, tenant, action, outcome, detail, true)
            .await
    }

    /// Records a group-log write (`accepted` on success, `directory_group_entry_refused`
    /// otherwise) and passes its result on.
    async fn audit_group_entry(
        &self,
        dev: &DeviceRecord,
        tenant: &str,
        group_id: &str,
        seq: Option<u64>,
        accepted: &str,
        res: Result<GroupHead, ApiError>,
    ) -> Result<GroupHead, ApiError> {
        let action = if res.is_ok() {
            accepted
        } else {
            "directory_group_entry_refused"
        };
        self.audit(
            &device_principal(tenant, dev),
            tenant,
            action,
            res.as_ref().map(|_| ()),
            json!({ "group_id": group_id, "seq": seq }),
        )
        .await?;
        res
    }

    // ---- device-signed requests ---------------------------------------------------------

    /// First half of device authentication, before the body is read: parses the header,
    /// checks freshness and finds the device. Every failure is `401 unauthenticated`.
    pub fn pre_authenticate(
        &self,
        tenant: &str,
        info: &RequestInfo,
    ) -> Result<(DeviceAuth, DeviceRecord), ApiError> {
        let h = info
            .authorization
            .as_deref()
            .ok_or_else(ApiError::unauthenticated)?;
        let auth = device_auth::parse_header(h)?;
        if !device_auth::fresh(auth.timestamp, self.now()) {
            return Err(ApiError::unauthenticated());
        }
        let device = self
            .store
            .device(tenant, &auth.device_id)
            .map_err(store_err)?
            .ok_or_else(ApiError::unauthenticated)?;
        self.refuse_disabled(tenant)?;
        Ok((auth, device))
    }

    /// Second half: verifies the signature over the request and the body's hash, spends the
    /// nonce (a replay is `401 replayed_request`), then charges the device's rate limit
    /// (`429 rate_limited`; counted only for genuine requests, so nobody can use up another
    /// device's allowance).
    pub fn finish_authenticate(
        &self,
        tenant: &str,
        info: &RequestInfo,
        auth: &DeviceAuth,
        device: &DeviceRecord,
        body_sha256: [u8; 32],
    ) -> Result<(), ApiError> {
        let host = info.host.as_deref().ok_or_else(ApiError::unauthenticated)?;
        let req = keystead_core::request_auth::SignedRequest {
            method: &info.method,
            host,
            path_and_query: &info.path_and_query,
            body_sha256,
            timestamp: auth.timestamp,
            nonce: auth.nonce,
            device_id: &auth.device_id,
        };
        let key = keystead_core::SigningPublicKey::from_bytes(&device.signing_key)
            .map_err(|_| ApiError::unauthenticated())?;
        keystead_core::request_auth::verify(&key, &req, &auth.sig)
            .map_err(|_| ApiError::unauthenticated())?;
        self.nonces
            .check_and_insert(&auth.device_id, auth.nonce, auth.timestamp, self.now())?;
        self.device_limit.check_device(tenant, &device.device_id)
    }

    /// Authenticates a device-signed request whose body is in memory.
    pub fn authenticate(
        &self,
        tenant: &str,
        info: &RequestInfo,
        body: &[u8],
    ) -> Result<DeviceRecord, ApiError> {
        let (auth, device) = self.pre_authenticate(tenant, info)?;
        self.finish_authenticate(tenant, info, &auth, &device, Sha256::digest(body).into())?;
        Ok(device)
    }

    // ---- users and tokens (vendor) --------------------------------------------------------

    fn check_tenant(&self, tenant: &str) -> Result<(), ApiError> {
        match self.service.store().tenant(tenant) {
            Ok(Some(t)) if t.disabled => Err(ApiError::tenant_disabled()),
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(ApiError::tenant_not_found()),
            Err(e) => Err(internal(&e.to_string())),
        }
    }

    /// `409 tenant_disabled` when the tenant exists and the vendor disabled it; says nothing
    /// about tenants that do not exist (callers of token routes are not authenticated yet).
    fn refuse_disabled(&self, tenant: &str) -> Result<(), ApiError> {
        match self.service.store().tenant(tenant) {
            Ok(Some(t)) if t.disabled => Err(ApiError::tenant_disabled()),
            Ok(_) => Ok(()),
            Err(e) => Err(internal(&e.to_string())),
        }
    }

    /// Creates an empty user slot (service key with the `directory` operation).
    pub async fn create_user(
        &self,
        p: &Principal,
        tenant: &str,
        user_id: &str,
    ) -> Result<(), ApiError> {
        self.check_tenant(tenant)?;
        let res = self
            .store
            .create_user(tenant, user_id, self.now())
            .map_err(store_err);
        self.audit(
            p,
            tenant,
            "directory_user_created",
            res.as_ref().map(|_| ()),
            json!({ "user_id": user_id }),
        )
        .await?;
        res
    }

    /// Mints a single-use token for a user; the secret is returned once and only its hash
    /// is stored.
    pub async fn issue_token(
        &self,
        p: &Principal,
        tenant: &str,
        user_id: &str,
        kind: TokenKind,
    ) -> Result<(Zeroizing<String>, i64), ApiError> {
        self.check_tenant(tenant)?;
        let user = self.store.user(tenant, user_id).map_err(store_err)?;
        let res = match user {
            None => Err(ApiError::not_found("no such user")),
            Some(u) if kind == TokenKind::Reauthentication && u.identity_key.is_none() => Err(
                ApiError::conflict("the user has not enrolled: there is no escrow to release"),
            ),
            Some(_) => {
                let secret = Zeroizing::new(crate::util::random_bytes::<32>());
                let token = Zeroizing::new(format!(
                    "{TOKEN_PREFIX}{}",
                    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&secret[..])
                ));
                let expires_at = self.now() + self.opts.token_ttl_secs.clamp(1, 600);
                self.store
                    .put_token(&TokenRecord {
                        hash: token_hash(&token),
                        tenant: tenant.to_owned(),
                        user_id: user_id.to_owned(),
                        kind,
                        expires_at,
                    })
                    .map_err(store_err)
                    .map(|()| (token, expires_at))
            }
        };
        self.audit(
            p,
            tenant,
            "directory_token_issued",
            res.as_ref().map(|_| ()),
            json!({ "user_id": user_id, "kind": kind.as_str() }),
        )
        .await?;
        res
    }

    /// Spends a token presented as `Authorization: Keystead-Token <token>`.
    fn take_token(
        &self,
        authorization: Option<&str>,
        tenant: &str,
        user_id: &str,
        kind: TokenKind,
    ) -> Result<(), ApiError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Keystead-Token "))
            .map(str::trim)
            .filter(|t| t.starts_with(TOKEN_PREFIX) && t.len() <= 128)
            .ok_or_else(ApiError::unauthenticated)?;
        self.refuse_disabled(tenant)?;
        self.store
            .take_token(&token_hash(token), tenant, user_id, kind, self.now())
            .map_err(store_err)?
            .map(|_| ())
            .ok_or_else(ApiError::unauthenticated)
    }

    // ---- enrollment and user records -------------------------------------------------------

    /// Registers the user's identity key, signed user record and a device, with an
    /// enrollment token. On a user that enrolled before (a new browser after recovery) the
    /// identity key must be the registered one, and `expected_version` must match.
    #[allow(clippy::too_many_arguments)]
    pub async fn enroll(
        &self,
        tenant: &str,
        user_id: &str,
        authorization: Option<&str>,
        identity_key: [u8; 32],
        user_record: Vec<u8>,
        expected_version: u64,
        device: NewDevice,
    ) -> Result<u64, ApiError> {
        let p = token_principal(tenant, TokenKind::Enrollment, user_id);
        // Refusals of an unknown token are not audited in the tenant's chain: the tenant
        // named by an unauthenticated caller may not exist.
        self.take_token(authorization, tenant, user_id, TokenKind::Enrollment)?;
        let device_id = device.device_id.clone();
        let res = self.check_record(&user_record).and_then(|()| {
            check_key(&identity_key)?;
            self.check_device(&device)?;
            self.store
                .update_user(
                    tenant,
                    user_id,
                    expected_version,
                    &UserUpdate {
                        record: user_record,
                        identity_key: Some(identity_key),
                        add_devices: vec![DeviceRecord {
                            user_id: user_id.to_owned(),
                            device_id: device_id.clone(),
                            signing_key: device.signing_key,
                            certificate: device.certificate,
                        }],
                        remove_devices: vec![],
                    },
                )
                .map_err(store_err)
        });
        self.audit(
            &p,
            tenant,
            "directory_user_enrolled",
            res.as_ref().map(|_| ()),
            json!({ "user_id": user_id, "device_id": device_id }),
        )
        .await?;
        if res.is_ok() {
            self.audit(
                &p,
                tenant,
                "directory_device_added",
                Ok(()),
                json!({ "user_id": user_id, "device_id": device_id }),
            )
            .await?;
        }
        res
    }

    fn check_record(&self, bytes: &[u8]) -> Result<(), ApiError> {
        if bytes.is_empty() || bytes.len() > self.opts.max_record_bytes {
            return Err(ApiError::bad_request(format!(
                "records are 1 to {} bytes",
                self.opts.max_record_bytes
            )));
        }
        Ok(())
    }

    fn check_device(&self, d: &NewDevice) -> Result<(), ApiError> {
        if !device_auth::valid_device_id(&d.device_id) {
            return Err(ApiError::bad_request(
                "device_id must be 1 to 128 characters of A-Z a-z 0-9 . _ ~ -",
            ));
        }
        check_key(&d.signing_key)?;
        self.check_record(&d.certificate)
    }

    /// A user's record and live devices (any device of the tenant may read them).
    pub fn user(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<(UserRecord, Vec<DeviceRecord>), ApiError> {
        let u = self
            .store
            .user(tenant, user_id)
            .map_err(store_err)?
            .ok_or_else(|| ApiError::not_found("no such user"))?;
        let d = self.store.devices(tenant, user_id).map_err(store_err)?;
        Ok((u, d))
    }

    /// Replaces a user's record (version compare-and-swap), adding and removing devices;
    /// only a device of that user may.
    #[allow(clippy::too_many_arguments)]
    pub async fn update_user(
        &self,
        dev: &DeviceRecord,
        tenant: &str,
        user_id: &str,
        expected_version: u64,
        record: Vec<u8>,
        add: Vec<NewDevice>,
        remove: Vec<String>,
    ) -> Result<u64, ApiError> {
        let p = device_principal(tenant, dev);
        let detail = json!({
            "user_id": user_id,
            "added": add.iter().map(|d| d.device_id.as_str()).collect::<Vec<_>>(),
            "removed": remove,
        });
        let res = (|| {
            if dev.user_id != user_id {
                return Err(ApiError::operation_forbidden(
                    "update another user's record",
                ));
            }
            self.check_record(&record)?;
            for d in &add {
                self.check_device(d)?;
            }
            self.store
                .update_user(
                    tenant,
                    user_id,
                    expected_version,
                    &UserUpdate {
                        record,
                        identity_key: None,
                        add_devices: add
                            .iter()
                            .map(|d| DeviceRecord {
                                user_id: user_id.to_owned(),
                                device_id: d.device_id.clone(),
                                signing_key: d.signing_key,
                                certificate: d.certificate.clone(),
                            })
                            .collect(),
                        remove_devices: remove.clone(),
                    },
                )
                .map_err(store_err)
        })();
        self.audit(
            &p,
            tenant,
            "directory_user_updated",
            res.as_ref().map(|_| ()),
            detail,
        )
        .await?;
        if res.is_ok() {
            for d in &add {
                self.audit(
                    &p,
                    tenant,
                    "directory_device_added",
                    Ok(()),
                    json!({ "user_id": user_id, "device_id": d.device_id }),
                )
                .await?;
            }
            for d in &remove {
                self.audit(
                    &p,
                    tenant,
                    "directory_device_removed",
                    Ok(()),
                    json!({ "user_id": user_id, "device_id": d }),
                )
                .await?;
            }
        }
        res
    }

    // ---- escrow ---------------------------------------------------------------------------

    /// Stores the user's escrowed identity key (a device of that user).
    pub async fn put_escrow(
        &self,
        dev: &DeviceRecord,
        tenant: &str,
        user_id: &str,
        blob: &[u8],
    ) -> Result<(), ApiError> {
        let res = if dev.user_id != user_id {
            Err(ApiError::operation_forbidden("store another user's escrow"))
        } else {
            self.check_record(blob).and_then(|()| {
                self.store
                    .put_escrow(tenant, user_id, blob, self.now())
                    .map_err(store_err)
            })
        };
        self.audit(
            &device_principal(tenant, dev),
            tenant,
            "directory_escrow_stored",
            res.as_ref().map(|_| ()),
            json!({ "user_id": user_id }),
        )
        .await?;
        res
    }

    /// Releases the escrow blob against a re-authentication token, within the per-user
    /// limits. Releases and refusals are audited.
    pub async fn get_escrow(
        &self,
        tenant: &str,
        user_id: &str,
        authorization: Option<&str>,
    ) -> Result<Vec<u8>, ApiError> {
        let p = token_principal(tenant, TokenKind::Reauthentication, user_id);
        // Only a user that exists makes the tenant known; otherwise the refusal goes to the
        // operator's chain (the caller is not authenticated yet).
        let known = self
            .store
            .user(tenant, user_id)
            .map_err(store_err)?
            .is_some();
        let now = self.now();
        let since = now - 3600;
        let limit = if known {
            self.escrow_limit(tenant, user_id, now, since)
        } else {
            Ok(())
        };
        let res = limit
            .and_then(|()| {
                self.take_token(authorization, tenant, user_id, TokenKind::Reauthentication)
            })
            .and_then(|()| {
                self.store
                    .escrow(tenant, user_id)
                    .map_err(store_err)?
                    .ok_or_else(|| ApiError::not_found("the user has no escrow"))
            });
        // Only releases count against the limits: a refusal needs no valid token, so
        // counting refusals would let anyone lock a user out of recovery. Refusals are
        // audited all the same.
        if known && res.is_ok() {
            self.store
                .escrow_attempt(tenant, user_id, now, true, since)
                .map_err(store_err)?;
        }
        let action = if res.is_ok() {
            "directory_escrow_released"
        } else {
            "directory_escrow_refused"
        };
        self.service
            .audit_directory(
                &p,
                tenant,
                action,
                res.as_ref().map(|_| ()),
                json!({ "user_id": user_id }),
                known,
            )
            .await?;
        res
    }

    fn escrow_limit(
        &self,
        tenant: &str,
        user_id: &str,
        now: i64,
        since: i64,
    ) -> Result<(), ApiError> {
        let attempts = self
            .store
            .escrow_attempts(tenant, user_id, since)
            .map_err(store_err)?;
        if attempts.len() >= self.opts.escrow_per_hour {
            let oldest = attempts.first().map_or(now, |a| a.0);
            return Err(ApiError::rate_limited(
                u64::try_from(oldest + 3600 - now).unwrap_or(1),
            ));
        }
        if let Some((last, _)) = attempts.last()
            && self.opts.escrow_backoff_secs > 0
        {
            let n = u32::try_from(attempts.len()).unwrap_or(u32::MAX).min(16);
            let wait = self.opts.escrow_backoff_secs.saturating_mul(1 << (n - 1));
            if now < last + wait {
                return Err(ApiError::rate_limited(
                    u64::try_from(last + wait - now).unwrap_or(1),
                ));
            }
        }
        Ok(())
    }

    // ---- groups ---------------------------------------------------------------------------

    fn check_members(&self, tenant: &str, members: &[String]) -> Result<(), ApiError> {
        if members.len() > 10_000 {
            return Err(ApiError::bad_request("at most 10000 members"));
        }
        for m in members {
            crate::http::extract::check_id("member", m)?;
            if self.store.user(tenant, m).map_err(store_err)?.is_none() {
                return Err(ApiError::bad_request(format!("member `{m}` is not a user")));
            }
        }
        Ok(())
    }

    /// Creates a group with its genesis entry. The creating device's user is always in the
    /// member index.
    pub async fn create_group(
        &self,
        dev: &DeviceRecord,
        tenant: &str,
        group_id: &str,
        entry: Vec<u8>,
        mut members: Vec<String>,
    ) -> Result<GroupHead, ApiError> {
        if !members.contains(&dev.user_id) {
            members.push(dev.user_id.clone());
        }
        let res: Result<GroupHead, ApiError> = async {
            let (seq, hash) = log_prefix::check_append(None, &entry)?;
            let gid = group_id.to_owned();
            let (entry, state) = blocking(move || {
                let parsed = group_check::parse(&entry)?;
                check_group_id(&entry, &gid)?;
                let state = group_check::genesis(&parsed)?;
                Ok((entry, state))
            })
            .await?;
            self.check_members(tenant, &members)?;
            self.store
                .create_group(
                    tenant,
                    group_id,
                    &LogEntryRecord { seq, hash, entry },
                    &members,
                )
                .map_err(store_err)?;
            self.states.put(tenant, Arc::new(state));
            Ok(GroupHead {
                group_id: group_id.to_owned(),
                seq,
                hash,
            })
        }
        .await;
        self.audit_group_entry(
            dev,
            tenant,
            group_id,
            Some(0),
            "directory_group_created",
            res,
        )
        .await
    }

    fn require_member(
        &self,
        dev: &DeviceRecord,
        tenant: &str,
        group_id: &str,
    ) -> Result<GroupHead, ApiError> {
        let head = self
            .store
            .group_head(tenant, group_id)
            .map_err(store_err)?
            .ok_or_else(|| ApiError::not_found("no such group"))?;
        if !self
            .store
            .is_member(tenant, group_id, &dev.user_id)
            .map_err(store_err)?
        {
            // Same answer as a missing group: non-members do not learn group ids.
            return Err(ApiError::not_found("no such group"));
        }
        Ok(head)
    }

    /// Appends an entry: exactly one child per parent (a second is `409 conflict`).
    pub async fn append_entry(
        &self,
        dev: &DeviceRecord,
        tenant: &str,
        group_id: &str,
        entry: Vec<u8>,
        members: Option<Vec<String>>,
    ) -> Result<GroupHead, ApiError> {
        let mut seq_seen = None;
        let res: Result<GroupHead, ApiError> = async {
            let head = self.require_member(dev, tenant, group_id)?;
            let (seq, hash) = log_prefix::check_append(Some((head.seq, head.hash)), &entry)?;
            seq_seen = Some(seq);
            let cached = self.states.get(tenant, &head);
            let (store, states) = (self.store.clone(), self.states.clone());
            let (t, gid, at) = (tenant.to_owned(), group_id.to_owned(), head.clone());
            let (entry, state) = blocking(move || {
                let parsed = group_check::parse(&entry)?;
                check_group_id(&entry, &gid)?;
                let base = match cached {
                    Some(s) => s,
                    None => {
                        let s = group_check::rebuild(&*store, &t, &at).map_err(|e| {
                            internal(&format!("group `{gid}`: cannot rebuild its state: {}", e.0))
                        })?;
                        // The stored log up to the head verified: worth keeping even if this
                        // entry is refused.
                        let s = Arc::new(s);
                        states.put(&t, s.clone());
                        s
                    }
                };
                let state = group_check::apply(&base, &parsed)?;
                Ok((entry, state))
            })
            .await?;
            if let Some(m) = &members {
                self.check_members(tenant, m)?;
            }
            self.store
                .append_entry(
                    tenant,
                    group_id,
                    (head.seq, head.hash),
                    &LogEntryRecord { seq, hash, entry },
                    members.as_deref(),
                )
                .map_err(store_err)?;
            self.states.put(tenant, Arc::new(state));
            Ok(GroupHead {
                group_id: group_id.to_owned(),
                seq,
                hash,
            })
        }
        .await;
        self.audit_group_entry(
            dev,
            tenant,
            group_id,
            seq_seen,
            "directory_group_entry_appended",
            res,
        )
        .await
    }

    /// Entries from `from` on (at most `limit`), and the head.
    pub fn entries(
        &self,
        dev: &DeviceRecord,
        tenant: &str,
        group_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<LogEntryRecord>, GroupHead), ApiError> {
        let head = self.require_member(dev, tenant, group_id)?;
        let e = self
            .store
            .entries(tenant, group_id, from, limit)
            .map_err(store_err)?;
        Ok((e, head))
    }

    /// The groups in whose member index `user_id` is (only that user's devices may ask).
    pub fn groups_of(
        &self,
        dev: &DeviceRecord,
        tenant: &str,
        user_id: &str,
    ) -> Result<Vec<GroupHead>, ApiError> {
        if dev.user_id != user_id {
            return Err(ApiError::operation_forbidden("list another user's groups"));
        }
        self.store.groups_of(tenant, user_id).map_err(store_err)
    }

    // ---- access blocks and blobs ----------------------------------------------------------

    /// A document's access block.
    pub fn access_block(&self, tenant: &str, doc_id: &str) -> Result<AccessBlock, ApiError> {
        self.store
            .access_block(tenant, doc_id)
            .map_err(store_err)?
            .ok_or_else(|| ApiError::not_found("no access block for this document"))
    }

    /// Stores an access block if its version is still `expected_version` (0: new).
    pub async fn put_access_block(
        &self,
        dev: &DeviceRecord,
        tenant: &str,
        doc_id: &str,
        expected_version: u64,
        block: &[u8],
    ) -> Result<u64, ApiError> {
        let res = self.check_record(block).and_then(|()| {
            self.store
                .put_access_block(tenant, doc_id, expected_version, block)
                .map_err(store_err)
        });
        self.audit(
            &device_principal(tenant, dev),
            tenant,
            "directory_access_block_stored",
            res.as_ref().map(|_| ()),
            json!({ "doc_id": doc_id, "expected_version": expected_version }),
        )
        .await?;
        res
    }

    /// Metadata of a blob.
    pub fn blob_meta(&self, tenant: &str, blob_id: &str) -> Result<BlobMeta, ApiError> {
        self.store
            .blob(tenant, blob_id)
            .map_err(store_err)?
            .ok_or_else(|| ApiError::not_found("no such blob"))
    }

    /// Whether `dev` may write blob `blob_id` (new, or uploaded by the same user).
    pub fn may_write_blob(
        &self,
        dev: &DeviceRecord,
        tenant: &str,
        blob_id: &str,
    ) -> Result<(), ApiError> {
        match self.store.blob(tenant, blob_id).map_err(store_err)? {
            Some(m) if m.owner != dev.user_id => {
                Err(ApiError::operation_forbidden("replace another user's blob"))
            }
            _ => Ok(()),
        }
    }

    /// Commits an uploaded temporary file as blob `blob_id`.
    pub async fn commit_blob(
        &self,
        dev: &DeviceRecord,
        tenant: &str,
        blob_id: &str,
        tmp: &std::path::Path,
        size: u64,
        sha256: [u8; 32],
    ) -> Result<(), ApiError> {
        let key = blob::blob_key(tenant, blob_id);
        let res = async {
            self.blobs.put_file(&key, tmp).await.map_err(blob_err)?;
            self.store
                .put_blob(
                    tenant,
                    blob_id,
                    &BlobMeta {
                        size,
                        sha256,
                        owner: dev.user_id.clone(),
                    },
                    self.now(),
                )
                .map_err(store_err)
        }
        .await;
        self.audit(
            &device_principal(tenant, dev),
            tenant,
            "directory_blob_stored",
            res.as_ref().map(|_| ()),
            json!({ "blob_id": blob_id, "size": size }),
        )
        .await?;
        res
    }

    /// Streams a blob or a byte range of it.
    pub async fn blob_stream(
        &self,
        tenant: &str,
        blob_id: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<blob::BlobStream, ApiError> {
        self.blobs
            .get(&blob::blob_key(tenant, blob_id), range)
            .await
            .map_err(blob_err)
    }
}

fn check_key(k: &[u8; 32]) -> Result<(), ApiError> {
    keystead_core::SigningPublicKey::from_bytes(k)
        .map(|_| ())
        .map_err(|_| ApiError::bad_request("not an Ed25519 public key"))
}

/// Runs CPU-heavy work (parsing and verifying group entries: seconds for a 10 000-member
/// group) on the blocking pool, so it does not hold up an async worker.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal(&format!("verification task failed: {e}")))?
}

fn check_group_id(entry: &[u8], group_id: &str) -> Result<(), ApiError> {
    let p = log_prefix::parse(entry)?;
    if p.group_id != group_id {
        return Err(ApiError::bad_request(
            "the entry names another group than the request",
        ));
    }
    Ok(())
}
