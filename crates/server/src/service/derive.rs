//! Keys for deterministic fields and blind indexes (`POST /v1/keys/derive`).
//!
//! Each tenant has *derivation secrets*: 32 random bytes made by the ES and kept only as
//! the tenant's KMS wrapped them (its primary config at the time), so the tenant's key
//! controls them like every DEK. At most two are live: the *current* one, under which new
//! values are written, and during a rotation the previous, *rotating* one, so queries can
//! search under both until every value is rewritten and the rotation is finished.
//!
//! A derive answers, per field path, one key per live secret:
//! `HKDF-SHA256(secret, info = "keystead/v1/derive" ‖ tenant ‖ secret id ‖ purpose ‖ path)`
//! (`keystead_core::search`). An unwrapped secret is cached like a leased key: in leasing
//! mode it serves for the tenant's lease and is dropped when the KMS denies; in remote mode
//! every derive unwraps it again. Derived keys and secrets never reach logs or the audit
//! event; the event names the purpose and the paths.

use std::sync::Arc;

use keystead_core::search::{DerivationSecret, DerivedKey, Purpose};
use keystead_core::{FieldPath, LeasedKey, LeasedKeyId, SecretId, TenantId};
use serde_json::{Value, json};

use super::{Service, Trace, internal};
use crate::audit::KmsInfo;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::kms::{KeyRef, Kms, Wrapped};
use crate::store::{ConfigState, DerivationSecretRecord, SecretState, StoreError, Tenant};
use crate::util::{os_rng, random_bytes, unix_now};

/// One derived key of a path, as a derive answers it.
pub struct DerivedEntry {
    /// The key (64 bytes for deterministic encryption, 32 for blind indexes).
    pub key: DerivedKey,
    /// The secret it was derived from; deterministic ciphertexts carry it.
    pub secret_id: String,
    /// Derived from the current secret (write under this one); `false` for the secret
    /// of a rotation in progress (search under it too).
    pub current: bool,
}

/// The KMS encryption context of a derivation secret: binds tenant, config, secret id and
/// cache id.
// Ids are at most 256 bytes (checked at the API edge and by the store's callers).
#[allow(clippy::cast_possible_truncation)]
pub fn derivation_secret_context(
    tenant: &str,
    config: &str,
    id: &str,
    cache: &[u8; 16],
) -> Vec<u8> {
    let mut c = b"keystead/v1/derivation-secret".to_vec();
    for part in [tenant.as_bytes(), config.as_bytes(), id.as_bytes()] {
        c.extend_from_slice(&(part.len() as u16).to_be_bytes());
        c.extend_from_slice(part);
    }
    c.extend_from_slice(cache);
    c
}

/// The principal of operator commands in audit events.
fn operator() -> Principal {
    Principal {
        key_id: "operator".into(),
        name: "operator".into(),
        tenants: None,
        ops: Default::default(),
    }
}

impl Service {
    /// Derives one key per live derivation secret for each of `paths`, recording an audit
    /// event. The tenant's first secret is made on first use.
    pub async fn derive(
        &self,
        p: &Principal,
        tenant: &str,
        purpose: Purpose,
        paths: &[FieldPath],
        metadata: &Value,
    ) -> Result<Vec<(FieldPath, Vec<DerivedEntry>)>, ApiError> {
        let mut trace = Trace::default();
        let res = async {
            let t = self.resolve_tenant(p, tenant)?;
            let tenant_id = TenantId::new(&t.id).map_err(|_| ApiError::internal("tenant-id"))?;
            let live = self.live_secrets(&t).await?;
            let mut secrets = Vec::with_capacity(live.len());
            for rec in &live {
                let secret = self.open_secret(&t, rec, &mut trace).await?;
                let id = SecretId::new(&rec.id).map_err(|_| ApiError::internal("secret-id"))?;
                secrets.push((id, rec.state == SecretState::Current, secret));
            }
            Ok(paths
                .iter()
                .map(|path| {
                    let keys = secrets
                        .iter()
                        .map(|(id, current, secret)| DerivedEntry {
                            key: DerivedKey::derive(secret, &tenant_id, id, purpose, path),
                            secret_id: id.as_str().to_owned(),
                            current: *current,
                        })
                        .collect();
                    (path.clone(), keys)
                })
                .collect())
        }
        .await;
        trace.detail = Some(json!({
            "purpose": purpose.as_str(),
            "paths": paths.iter().map(FieldPath::as_str).collect::<Vec<_>>(),
        }));
        self.audited(p, tenant, "derive", metadata, Some(paths.len()), trace, res)
            .await
    }

    /// The tenant's live secrets, current first; makes the first one when there is none.
    async fn live_secrets(&self, t: &Tenant) -> Result<Vec<DerivationSecretRecord>, ApiError> {
        for _ in 0..3 {
            let mut live: Vec<_> = self
                .store
                .derivation_secrets(&t.id)
                .map_err(|e| internal(&e))?
                .into_iter()
                .filter(|s| s.state != SecretState::Retired)
                .collect();
            if live.iter().any(|s| s.state == SecretState::Current) {
                live.sort_by_key(|s| s.state != SecretState::Current);
                return Ok(live);
            }
            match self.add_secret(t, false).await {
                // Another instance made it first: read theirs.
                Ok(_) | Err(AddError::Store(StoreError::Conflict(_))) => continue,
                Err(AddError::Api(e)) => return Err(e),
                Err(AddError::Store(e)) => return Err(internal(&e)),
            }
        }
        Err(ApiError::internal("derivation-secret-race"))
    }

    /// Makes a secret, has the tenant's primary KMS config wrap it and stores it as current
    /// (with `rotate`, the current one becomes rotating).
    async fn add_secret(&self, t: &Tenant, rotate: bool) -> Result<String, AddError> {
        let config = self.primary(t)?;
        let kms = self.kms_for(&config)?;
        let existing = self
            .store
            .derivation_secrets(&t.id)
            .map_err(AddError::Store)?;
        let id = format!("ds-{}", existing.len() + 1);
        let cache_id: [u8; 16] = random_bytes();
        let secret = DerivationSecret::generate(&mut os_rng());
        let w = self
            .wrap_secret(t, &config.id, &*kms, &id, &cache_id, &secret)
            .await?;
        let rec = DerivationSecretRecord {
            tenant: t.id.clone(),
            id: id.clone(),
            cache_id,
            config: config.id.clone(),
            key_version: w.version,
            wrapped: w.ciphertext,
            state: SecretState::Current,
            created_at: unix_now(),
        };
        self.store
            .add_derivation_secret(&rec, rotate)
            .map_err(AddError::Store)?;
        Ok(id)
    }

    /// Has the KMS of `config` wrap a derivation secret, bound to (tenant, config, secret
    /// id, cache id).
    async fn wrap_secret(
        &self,
        t: &Tenant,
        config: &str,
        kms: &dyn Kms,
        id: &str,
        cache_id: &[u8; 16],
        secret: &DerivationSecret,
    ) -> Result<Wrapped, ApiError> {
        let ctx = derivation_secret_context(&t.id, config, id, cache_id);
        let key_ref = KeyRef {
            tenant: t.id.clone(),
            config: config.to_owned(),
            version: None,
        };
        Ok(self
            .kms_call(kms, &t.id, config, || {
                kms.wrap(&key_ref, secret.expose_secret(), &ctx)
            })
            .await?)
    }

    /// Moves the tenant's live derivation secrets that another config wrapped (e.g. the
    /// vendor-provided key before the tenant took over with its own KMS) to the primary
    /// config: unwrap under the old config, wrap under the primary. The secrets, their ids
    /// and cache ids stay the same, so every value written before stays searchable; after
    /// this the old config can be retired. Operator command; one audit event.
    pub async fn rewrap_derivation_secrets(&self, tenant: &str) -> Result<Vec<String>, ApiError> {
        let p = operator();
        let mut trace = Trace::default();
        let res = async {
            let t = self.resolve_tenant(&p, tenant)?;
            let primary = self.primary(&t)?;
            let kms = self.kms_for(&primary)?;
            let mut moved = Vec::new();
            for rec in self
                .store
                .derivation_secrets(&t.id)
                .map_err(|e| internal(&e))?
            {
                if rec.state == SecretState::Retired || rec.config == primary.id {
                    continue;
                }
                let secret = self.open_secret(&t, &rec, &mut trace).await?;
                let w = self
                    .wrap_secret(&t, &primary.id, &*kms, &rec.id, &rec.cache_id, &secret)
                    .await?;
                self.store
                    .rewrap_derivation_secret(&t.id, &rec.id, &primary.id, w.version, &w.ciphertext)
                    .map_err(|e| internal(&e))?;
                moved.push(rec.id);
            }
            trace.detail = Some(json!({
                "change": "derivation_secrets_rewrapped",
                "to_config": primary.id,
                "secrets": moved,
            }));
            Ok(moved)
        }
        .await;
        self.audited(&p, tenant, "config_changed", &Value::Null, None, trace, res)
            .await
    }

    /// The plaintext of a stored secret: from the lease cache, or one KMS unwrap.
    async fn open_secret(
        &self,
        t: &Tenant,
        rec: &DerivationSecretRecord,
        trace: &mut Trace,
    ) -> Result<DerivationSecret, ApiError> {
        let config = self
            .config(&t.id, &rec.config)?
            .ok_or_else(|| ApiError::internal("derivation-secret-config"))?;
        let kms = self.kms_for(&config)?;
        if trace.kms.is_none() {
            trace.kms = Some(KmsInfo {
                provider: kms.provider().into(),
                config_id: config.id.clone(),
                key_version: Some(rec.key_version),
            });
        }
        if config.state == ConfigState::Retired {
            return Err(ApiError::key_retired());
        }
        let unwrap = || async {
            let key_ref = KeyRef {
                tenant: t.id.clone(),
                config: config.id.clone(),
                version: Some(rec.key_version),
            };
            let ctx = derivation_secret_context(&t.id, &config.id, &rec.id, &rec.cache_id);
            self.kms_call(&*kms, &t.id, &config.id, || {
                kms.unwrap(&key_ref, &rec.wrapped, &ctx)
            })
            .await
        };
        let key: Arc<LeasedKey> = self
            .leases
            .key(
                &t.id,
                LeasedKeyId(rec.cache_id),
                &Self::policy(t),
                t.mode == crate::store::TenantMode::Leasing,
                unwrap,
            )
            .await?;
        Ok(DerivationSecret::from_bytes(*key.expose_secret()))
    }

    /// Starts a rotation of the tenant's derivation secret: a new current secret; the old
    /// one stays searchable as `rotating` until [`Self::finish_derivation_rotation`].
    /// Operator command; recorded as an audit event.
    pub async fn rotate_derivation_secret(&self, tenant: &str) -> Result<String, ApiError> {
        let p = operator();
        let mut trace = Trace::default();
        let res = async {
            let t = self.resolve_tenant(&p, tenant)?;
            let config = self.primary(&t)?;
            trace.kms = Some(KmsInfo {
                provider: self.kms_for(&config)?.provider().into(),
                config_id: config.id,
                key_version: None,
            });
            // A tenant without a secret gets its first one; rotating it is pointless.
            self.live_secrets(&t).await?;
            match self.add_secret(&t, true).await {
                Ok(id) => Ok(id),
                Err(AddError::Api(e)) => Err(e),
                Err(AddError::Store(StoreError::Conflict(_))) => Err(ApiError {
                    status: 409,
                    code: "rotation_in_progress",
                    message: "a derivation-secret rotation is in progress: finish it first".into(),
                    retry_after: None,
                }),
                Err(AddError::Store(e)) => Err(internal(&e)),
            }
        }
        .await;
        trace.detail = Some(json!({ "change": "derivation_secret_rotated" }));
        self.audited(&p, tenant, "config_changed", &Value::Null, None, trace, res)
            .await
    }

    /// Finishes a rotation: the previous secret is retired and no longer derived from.
    /// Values still written under it stop being searchable or decryptable, so run this
    /// after rewriting them. Operator command; recorded as an audit event.
    pub async fn finish_derivation_rotation(&self, tenant: &str) -> Result<String, ApiError> {
        let p = operator();
        let res = self.resolve_tenant(&p, tenant).and_then(|t| {
            self.store
                .finish_derivation_rotation(&t.id)
                .map_err(|e| match e {
                    StoreError::NotFound(m) => ApiError {
                        status: 409,
                        code: "no_rotation",
                        message: m,
                        retry_after: None,
                    },
                    e => internal(&e),
                })
        });
        let trace = Trace {
            detail: Some(json!({ "change": "derivation_rotation_finished" })),
            ..Trace::default()
        };
        self.audited(&p, tenant, "config_changed", &Value::Null, None, trace, res)
            .await
    }
}

/// Why adding a secret failed: the store's own error matters to the caller (a conflict
/// means another instance won a race, or a rotation is in progress).
enum AddError {
    Api(ApiError),
    Store(StoreError),
}

impl From<ApiError> for AddError {
    fn from(e: ApiError) -> Self {
        AddError::Api(e)
    }
}
