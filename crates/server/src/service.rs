//! The Encryption Service: wrap, unwrap, batches, rekey and application events, with the
//! tenant's mode, KMS and lease, and an audit event for every attempt. Plain async
//! functions: the HTTP layer only parses, authenticates and maps errors.

mod derive;

pub use derive::{DerivedEntry, derivation_secret_context};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use keystead_core::edek::{Edek, EdekHeader, Mode};
use keystead_core::{ConfigId, Dek, EncryptionPublicKey, KeyVersion, LeasedKey, TenantId};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::audit::{AuditEvent, AuditSink, KmsInfo};
use crate::auth::Principal;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::kms::breaker::{Breaker, BreakerPolicy};
use crate::kms::builtin::BuiltinKms;
use crate::kms::net::OutboundPolicy;
use crate::kms::registry::{BuildContext, Registry};
use crate::kms::{
    AsymmetricScheme, Generated, KeyRef, Kms, KmsError, LocalWrap, RetryPolicy, Wrapped,
    with_retries,
};
use crate::lease::{LeaseManager, LeasePolicy, leased_key_context};
use crate::metrics::Metrics;
use crate::store::{ConfigState, KmsConfig, Store, Tenant, TenantMode};
use crate::util::{os_rng, random_bytes, rfc3339_now};

/// Tunables of the service.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// This instance's name in audit events.
    pub instance: String,
    /// KMS timeout and retries.
    pub retry: RetryPolicy,
    /// Concurrent KMS calls per KMS config.
    pub kms_concurrency: usize,
    /// How long a call waits for a KMS slot before answering `429`.
    pub kms_queue_wait: Duration,
    /// Concurrent KMS calls of one batch (remote mode).
    pub batch_fanout: usize,
    /// Auto-create unknown tenants (built-in KMS, leasing mode): `--dev` only.
    pub dev_autocreate: bool,
    /// Circuit breaker per KMS config.
    pub breaker: BreakerPolicy,
    /// What outbound KMS connections may reach.
    pub outbound: OutboundPolicy,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            instance: format!("es-{}", hex::encode(random_bytes::<4>())),
            retry: RetryPolicy::default(),
            kms_concurrency: 64,
            kms_queue_wait: Duration::from_millis(200),
            batch_fanout: 16,
            dev_autocreate: false,
            breaker: BreakerPolicy::default(),
            outbound: OutboundPolicy::default(),
        }
    }
}

/// An asymmetric config's current public key.
#[derive(Clone)]
enum AsymKey {
    /// X25519 (built-in KMS): asymmetric-mode EDEKs (HPKE).
    X25519(u32, EncryptionPublicKey),
    /// A provider key the ES encrypts to locally (Transit RSA): remote-mode EDEKs.
    Local(Arc<dyn LocalWrap>),
}

/// (tenant, config) → (public key, when fetched), for asymmetric mode.
type PublicKeyCache = HashMap<(String, String), (AsymKey, Duration)>;

/// Per (tenant, KMS config): the concurrency limit and the circuit breaker.
struct KmsGate {
    slots: Arc<Semaphore>,
    breaker: Breaker,
}

/// A DEK and its EDEK, as a wrap returns them.
pub struct WrappedDek {
    /// The plaintext DEK (for the caller only).
    pub dek: Dek,
    /// The serialized EDEK.
    pub edek: Vec<u8>,
}

/// The Encryption Service.
pub struct Service {
    store: Arc<dyn Store>,
    builtin: Arc<BuiltinKms>,
    overrides: RwLock<HashMap<(String, String), Arc<dyn Kms>>>,
    leases: LeaseManager,
    audit: Arc<dyn AuditSink>,
    metrics: Arc<Metrics>,
    opts: ServiceOptions,
    kms_gates: Mutex<HashMap<(String, String), Arc<KmsGate>>>,
    adapters: Registry,
    versions: Mutex<HashMap<(String, String), (u32, Duration)>>,
    public_keys: Mutex<PublicKeyCache>,
    clock: Arc<dyn Clock>,
}

/// Configs (and their KMS) resolved during one batch, by config id.
type ConfigCache = Mutex<HashMap<String, (Arc<KmsConfig>, Arc<dyn Kms>)>>;

/// What a key operation touched, for its audit event.
#[derive(Default)]
struct Trace {
    kms: Option<KmsInfo>,
    /// Operation-specific details (a derive's purpose and paths; an operator change).
    detail: Option<Value>,
    /// Failed items of a batch.
    failures: Option<usize>,
    /// Refused before the service looked the tenant up (scope, rate limit, bad input).
    before_lookup: bool,
}

impl Service {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn Store>,
        builtin: Arc<BuiltinKms>,
        audit: Arc<dyn AuditSink>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        opts: ServiceOptions,
    ) -> Self {
        Self {
            store,
            builtin,
            overrides: RwLock::new(HashMap::new()),
            leases: LeaseManager::new(clock.clone()),
            audit,
            metrics,
            opts,
            kms_gates: Mutex::new(HashMap::new()),
            adapters: Registry::default(),
            versions: Mutex::new(HashMap::new()),
            public_keys: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    /// The built-in KMS.
    pub fn builtin(&self) -> &Arc<BuiltinKms> {
        &self.builtin
    }

    /// Prometheus text of the audit pipeline.
    pub fn audit_metrics(&self) -> String {
        self.audit.metrics_text()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
    /// The lease manager.
    pub fn leases(&self) -> &LeaseManager {
        &self.leases
    }
    /// The options.
    pub fn options(&self) -> &ServiceOptions {
        &self.opts
    }

    /// Routes a (tenant, config) to another KMS (tests: the fake KMS; configs whose provider
    /// is `external`).
    pub fn set_kms_override(&self, tenant: &str, config: &str, kms: Arc<dyn Kms>) {
        self.overrides
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((tenant.to_owned(), config.to_owned()), kms);
    }

    fn kms_for(&self, config: &KmsConfig) -> Result<Arc<dyn Kms>, ApiError> {
        {
            let overrides = self.overrides.read().unwrap_or_else(|p| p.into_inner());
            // The map is empty outside tests: skip building a lookup key on the hot path.
            if !overrides.is_empty()
                && let Some(k) = overrides.get(&(config.tenant.clone(), config.id.clone()))
            {
                return Ok(k.clone());
            }
        }
        let ctx = BuildContext {
            outbound: self.opts.outbound.clone(),
            timeout: self.opts.retry.timeout,
        };
        self.adapters.get(config, &ctx, &self.builtin).map_err(|e| {
            // The reason (a settings or provider problem) is for the operator's log;
            // the API answers with the stable code only.
            tracing::warn!(tenant = %config.tenant, config = %config.id,
                    provider = %config.provider, error = %e, "KMS adapter unavailable");
            ApiError::from(e)
        })
    }

    /// One KMS call with the per-config concurrency limit, timeout, retries and metrics.
    async fn kms_call<T, F, Fut>(
        &self,
        kms: &dyn Kms,
        tenant: &str,
        config: &str,
        mut call: F,
    ) -> Result<T, KmsError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, KmsError>>,
    {
        let gate = self
            .kms_gates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((tenant.to_owned(), config.to_owned()))
            .or_insert_with(|| {
                Arc::new(KmsGate {
                    slots: Arc::new(Semaphore::new(self.opts.kms_concurrency)),
                    breaker: Breaker::new(self.opts.breaker),
                })
            })
            .clone();
        // A dead KMS fails fast instead of holding a slot for a whole timeout per call.
        if let Err(open) = gate.breaker.admit(std::time::Instant::now()) {
            self.metrics.kms_call(kms.provider(), "circuit_open");
            return Err(KmsError::CircuitOpen {
                retry_after_secs: open.retry_after.as_secs().max(1),
            });
        }
        let _permit = match tokio::time::timeout(
            self.opts.kms_queue_wait,
            gate.slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(p)) => p,
            _ => {
                // Not an answer about the KMS: let the breaker's probe slot go.
                gate.breaker.record(std::time::Instant::now(), false);
                self.metrics.kms_call(kms.provider(), "busy");
                return Err(KmsError::Busy);
            }
        };
        let res = with_retries(self.opts.retry, &mut call).await;
        gate.breaker.record(
            std::time::Instant::now(),
            matches!(res, Err(KmsError::Unreachable(_) | KmsError::Timeout)),
        );
        self.metrics.kms_call(
            kms.provider(),
            res.as_ref().map_or_else(|e| e.outcome(), |_| "success"),
        );
        res
    }

    /// Finds the tenant after the scope check. Unknown tenants: `404` for all-tenants keys,
    /// `403 tenant_forbidden` for scoped ones; auto-created in `--dev`.
    pub fn resolve_tenant(&self, principal: &Principal, tenant: &str) -> Result<Tenant, ApiError> {
        let mut found = self.store.tenant(tenant).map_err(|e| internal(&e))?;
        if found.is_none() && self.store.recheck().is_ok() {
            // Created a moment ago by another process (`keystead tenant create`)?
            found = self.store.tenant(tenant).map_err(|e| internal(&e))?;
        }
        let t = match found {
            Some(t) => t,
            None if self.opts.dev_autocreate => {
                TenantId::new(tenant).map_err(|_| ApiError::bad_request("invalid tenant id"))?;
                match create_builtin_tenant(
                    &self.store,
                    &self.builtin,
                    tenant,
                    TenantMode::Leasing,
                    crate::lease::DEFAULT_LEASE.as_secs(),
                    crate::lease::DEFAULT_RENEW.as_secs(),
                ) {
                    Ok(t) => t,
                    // Two first requests raced to create it: use the winner's tenant.
                    Err(_) => self
                        .store
                        .tenant(tenant)
                        .map_err(|e| internal(&e))?
                        .ok_or_else(|| ApiError::internal("dev-autocreate"))?,
                }
            }
            None if principal.all_tenants() => return Err(ApiError::tenant_not_found()),
            None => return Err(ApiError::tenant_forbidden()),
        };
        if t.disabled {
            return Err(ApiError::tenant_disabled());
        }
        Ok(t)
    }

    fn config(&self, tenant: &str, id: &str) -> Result<Option<KmsConfig>, ApiError> {
        self.store.config(tenant, id).map_err(|e| internal(&e))
    }

    fn primary(&self, t: &Tenant) -> Result<KmsConfig, ApiError> {
        match self.config(&t.id, &t.primary_config)? {
            Some(c) if c.state == ConfigState::Active => Ok(c),
            _ => Err(ApiError::internal("primary-config")),
        }
    }

    fn policy(t: &Tenant) -> LeasePolicy {
        LeasePolicy::from_secs(t.lease_secs, t.renew_secs)
    }

    // ---- wrap --------------------------------------------------------------------------

    /// Wraps a fresh DEK for `tenant`, recording an audit event.
    pub async fn wrap(
        &self,
        p: &Principal,
        tenant: &str,
        metadata: &Value,
    ) -> Result<WrappedDek, ApiError> {
        let mut trace = Trace::default();
        let res = self.wrap_inner(p, tenant, None, &mut trace).await;
        self.audited(p, tenant, "wrap", metadata, None, trace, res)
            .await
    }

    async fn wrap_inner(
        &self,
        p: &Principal,
        tenant: &str,
        dek: Option<Dek>,
        trace: &mut Trace,
    ) -> Result<WrappedDek, ApiError> {
        let t = self.resolve_tenant(p, tenant)?;
        self.wrap_for(&t, dek, trace).await
    }

    /// Wraps `dek` (or a fresh one) under the tenant's primary config and mode.
    async fn wrap_for(
        &self,
        t: &Tenant,
        dek: Option<Dek>,
        trace: &mut Trace,
    ) -> Result<WrappedDek, ApiError> {
        let config = self.primary(t)?;
        let kms = self.kms_for(&config)?;
        let tenant_id = TenantId::new(&t.id).map_err(|_| ApiError::internal("tenant-id"))?;
        let config_id = ConfigId::new(&config.id).map_err(|_| ApiError::internal("config-id"))?;
        trace.kms = Some(KmsInfo {
            provider: kms.provider().into(),
            config_id: config.id.clone(),
            key_version: None,
        });
        match (t.mode, dek) {
            (TenantMode::Leasing, dek) => {
                let policy = Self::policy(t);
                let lease = self
                    .leases
                    .current(&t.id, &config.id, &policy, |key, ctx| {
                        let kms = kms.clone();
                        let key_ref = KeyRef {
                            tenant: t.id.clone(),
                            config: config.id.clone(),
                            version: None,
                        };
                        async move {
                            self.kms_call(&*kms, &key_ref.tenant, &key_ref.config, || {
                                kms.wrap(&key_ref, key.expose_secret(), &ctx)
                            })
                            .await
                        }
                    })
                    .await?;
                let dek = dek.unwrap_or_else(|| Dek::generate(&mut os_rng()));
                let edek = Edek::wrap_leased(
                    &mut os_rng(),
                    tenant_id,
                    config_id,
                    KeyVersion(lease.version),
                    &lease.key,
                    &lease.wrapped,
                    &dek,
                )
                .map_err(|_| ApiError::internal("wrap-leased"))?;
                if let Some(k) = trace.kms.as_mut() {
                    k.key_version = Some(lease.version);
                }
                Ok(WrappedDek {
                    dek,
                    edek: edek.to_bytes(),
                })
            }
            (TenantMode::Remote, None) => {
                let version = self.current_version(&*kms, t, &config).await?;
                if let Some(k) = trace.kms.as_mut() {
                    k.key_version = Some(version);
                }
                let header = EdekHeader::remote(tenant_id, config_id, KeyVersion(version));
                let key_ref = KeyRef {
                    tenant: t.id.clone(),
                    config: config.id.clone(),
                    version: Some(version),
                };
                let g: Generated = self
                    .kms_call(&*kms, &t.id, &config.id, || {
                        kms.generate(&key_ref, header.as_bytes())
                    })
                    .await?;
                let (dek, edek) = Edek::seal_remote(header, &g.plaintext, &g.ciphertext)
                    .map_err(|_| ApiError::internal("seal-remote"))?;
                Ok(WrappedDek {
                    dek,
                    edek: edek.to_bytes(),
                })
            }
            (TenantMode::Asymmetric, dek) => {
                // No KMS call: the public key is cached; the wrap is still audited.
                let (version, public) = match self.public_key(&*kms, t, &config).await? {
                    AsymKey::X25519(version, public) => (version, public),
                    AsymKey::Local(wrapper) => {
                        return Self::wrap_local(&*wrapper, tenant_id, config_id, dek, trace);
                    }
                };
                if let Some(k) = trace.kms.as_mut() {
                    k.key_version = Some(version);
                }
                let dek = dek.unwrap_or_else(|| Dek::generate(&mut os_rng()));
                let edek = Edek::wrap_asymmetric(
                    &mut os_rng(),
                    tenant_id,
                    config_id,
                    KeyVersion(version),
                    &public,
                    &dek,
                )
                .map_err(|_| ApiError::internal("wrap-asymmetric"))?;
                Ok(WrappedDek {
                    dek,
                    edek: edek.to_bytes(),
                })
            }
            (TenantMode::Remote, Some(dek)) => {
                // Rekey into remote mode: EDEK v1's remote form derives the DEK from the KMS
                // secret and the header, so an existing DEK cannot be carried in it. Carry it
                // under a one-use leased key instead: one KMS call to wrap, one per unwrap
                // (remote-mode tenants never cache leased keys), same bindings.
                let key = LeasedKey::generate(&mut os_rng());
                let ctx = leased_key_context(&t.id, &config.id, &key.id());
                let key_ref = KeyRef {
                    tenant: t.id.clone(),
                    config: config.id.clone(),
                    version: None,
                };
                let w: Wrapped = self
                    .kms_call(&*kms, &t.id, &config.id, || {
                        kms.wrap(&key_ref, key.expose_secret(), &ctx)
                    })
                    .await?;
                if let Some(k) = trace.kms.as_mut() {
                    k.key_version = Some(w.version);
                }
                let edek = Edek::wrap_leased(
                    &mut os_rng(),
                    tenant_id,
                    config_id,
                    KeyVersion(w.version),
                    &key,
                    &w.ciphertext,
                    &dek,
                )
                .map_err(|_| ApiError::internal("wrap-one-use"))?;
                Ok(WrappedDek {
                    dek,
                    edek: edek.to_bytes(),
                })
            }
        }
    }

    /// Asymmetric mode with a provider whose public key the ES encrypts to locally (Transit
    /// RSA): no KMS call. A fresh DEK gets a remote-mode EDEK made locally: 32 random bytes
    /// encrypted to the public key are the KMS ciphertext, and the DEK is derived from them
    /// and the header as in remote mode, so the ordinary remote unwrap (one KMS decrypt)
    /// opens it. An existing DEK (rekey into asymmetric mode) cannot be carried in a
    /// remote-mode EDEK; it goes under a one-use leased key encrypted to the public key,
    /// as remote mode does with a KMS wrap: still no KMS call, one per unwrap.
    fn wrap_local(
        wrapper: &dyn LocalWrap,
        tenant_id: TenantId,
        config_id: ConfigId,
        dek: Option<Dek>,
        trace: &mut Trace,
    ) -> Result<WrappedDek, ApiError> {
        let version = wrapper.version();
        if let Some(k) = trace.kms.as_mut() {
            k.key_version = Some(version);
        }
        match dek {
            None => {
                let header = EdekHeader::remote(tenant_id, config_id, KeyVersion(version));
                let secret = zeroize::Zeroizing::new(random_bytes::<32>());
                let w = wrapper.wrap(&secret[..])?;
                let (dek, edek) = Edek::seal_remote(header, &secret[..], &w.ciphertext)
                    .map_err(|_| ApiError::internal("seal-remote-local"))?;
                Ok(WrappedDek {
                    dek,
                    edek: edek.to_bytes(),
                })
            }
            Some(dek) => {
                let key = LeasedKey::generate(&mut os_rng());
                let w = wrapper.wrap(key.expose_secret())?;
                let edek = Edek::wrap_leased(
                    &mut os_rng(),
                    tenant_id,
                    config_id,
                    KeyVersion(w.version),
                    &key,
                    &w.ciphertext,
                    &dek,
                )
                .map_err(|_| ApiError::internal("wrap-one-use-local"))?;
                Ok(WrappedDek {
                    dek,
                    edek: edek.to_bytes(),
                })
            }
        }
    }

    /// The current key version of a remote-mode config (cached for 30 s).
    async fn current_version(
        &self,
        kms: &dyn Kms,
        t: &Tenant,
        config: &KmsConfig,
    ) -> Result<u32, ApiError> {
        let key = (t.id.clone(), config.id.clone());
        let now = self.clock.now();
        if let Some((v, at)) = self
            .versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && now < *at + Duration::from_secs(30)
        {
            return Ok(*v);
        }
        let key_ref = KeyRef {
            tenant: t.id.clone(),
            config: config.id.clone(),
            version: None,
        };
        let v = self
            .kms_call(kms, &t.id, &config.id, || kms.describe(&key_ref))
            .await?;
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (v, now));
        Ok(v)
    }

    /// The current public key of an asymmetric config (cached for 30 s, like versions: a
    /// rotation is picked up within that time, and a revoked key stops wraps within it).
    async fn public_key(
        &self,
        kms: &dyn Kms,
        t: &Tenant,
        config: &KmsConfig,
    ) -> Result<AsymKey, ApiError> {
        let key = (t.id.clone(), config.id.clone());
        let now = self.clock.now();
        if let Some((public, at)) = self
            .public_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && now < *at + Duration::from_secs(30)
        {
            return Ok(public.clone());
        }
        let key_ref = KeyRef {
            tenant: t.id.clone(),
            config: config.id.clone(),
            version: None,
        };
        let public = match kms.asymmetric_scheme() {
            AsymmetricScheme::X25519Hpke => {
                let (v, public) = self
                    .kms_call(kms, &t.id, &config.id, || kms.public_key(&key_ref))
                    .await?;
                AsymKey::X25519(v, public)
            }
            AsymmetricScheme::LocalRemote => AsymKey::Local(
                self.kms_call(kms, &t.id, &config.id, || kms.local_wrapper(&key_ref))
                    .await?,
            ),
        };
        self.public_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, (public.clone(), now));
        Ok(public)
    }

    /// Forgets cached key versions and public keys (after a rotation made in this process).
    pub fn forget_versions(&self) {
        self.versions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.public_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    // ---- unwrap ------------------------------------------------------------------------

    /// Unwraps an EDEK of `tenant`, recording an audit event.
    pub async fn unwrap(
        &self,
        p: &Principal,
        tenant: &str,
        edek: &[u8],
        metadata: &Value,
    ) -> Result<Dek, ApiError> {
        let mut trace = Trace::default();
        let res = async {
            let t = self.resolve_tenant(p, tenant)?;
            self.unwrap_for(&t, edek, &mut trace).await
        }
        .await;
        self.audited(p, tenant, "unwrap", metadata, None, trace, res)
            .await
    }

    async fn unwrap_for(
        &self,
        t: &Tenant,
        edek: &[u8],
        trace: &mut Trace,
    ) -> Result<Dek, ApiError> {
        self.unwrap_with(t, edek, trace, None).await
    }

    /// [`Self::unwrap_for`] with an optional per-batch cache of configs and their KMS, so a
    /// batch resolves each config once instead of once per EDEK.
    async fn unwrap_with(
        &self,
        t: &Tenant,
        edek: &[u8],
        trace: &mut Trace,
        configs: Option<&ConfigCache>,
    ) -> Result<Dek, ApiError> {
        let edek = Edek::parse(edek)?;
        if edek.tenant().as_str() != t.id {
            return Err(ApiError::edek_invalid(
                "the EDEK is not valid for this tenant",
            ));
        }
        let cached = configs.and_then(|c| {
            c.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(edek.config_id().as_str())
                .cloned()
        });
        let (config, kms) = match cached {
            Some(hit) => hit,
            None => {
                let config = Arc::new(self.config(&t.id, edek.config_id().as_str())?.ok_or_else(
                    || ApiError::edek_invalid("the EDEK is not valid for this tenant"),
                )?);
                let kms = self.kms_for(&config)?;
                if let Some(c) = configs {
                    c.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(config.id.clone(), (config.clone(), kms.clone()));
                }
                (config, kms)
            }
        };
        if trace.kms.is_none() {
            trace.kms = Some(KmsInfo {
                provider: kms.provider().into(),
                config_id: config.id.clone(),
                key_version: Some(edek.key_version().0),
            });
        }
        if config.state == ConfigState::Retired {
            return Err(ApiError::key_retired());
        }
        let key_ref = || KeyRef {
            tenant: t.id.clone(),
            config: config.id.clone(),
            version: Some(edek.key_version().0),
        };
        match edek.mode() {
            Mode::Leased => {
                let (Some(id), Some(wrapped)) = (edek.leased_key_id(), edek.wrapped_leased_key())
                else {
                    return Err(ApiError::edek_invalid("malformed leased EDEK"));
                };
                // Built only on a cache miss: the hit path allocates nothing here.
                let unwrap_key = || async {
                    let key_ref = key_ref();
                    let ctx = leased_key_context(&t.id, &config.id, &id);
                    self.kms_call(&*kms, &t.id, &config.id, || {
                        kms.unwrap(&key_ref, wrapped, &ctx)
                    })
                    .await
                };
                let key = if t.mode == TenantMode::Leasing {
                    self.leases
                        .key(&t.id, id, &Self::policy(t), true, unwrap_key)
                        .await?
                } else {
                    let bytes = unwrap_key().await?;
                    let key: [u8; 32] = bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| ApiError::edek_invalid("bad leased key"))?;
                    Arc::new(LeasedKey::from_bytes(id, key))
                };
                Ok(edek.unwrap_leased(&key)?)
            }
            Mode::Remote => {
                let ct = edek
                    .kms_ciphertext()
                    .ok_or_else(|| ApiError::edek_invalid("malformed remote EDEK"))?;
                let header = edek.header().as_bytes();
                let key_ref = key_ref();
                let secret = self
                    .kms_call(&*kms, &t.id, &config.id, || {
                        kms.unwrap(&key_ref, ct, header)
                    })
                    .await?;
                Ok(edek.open_remote(&secret)?)
            }
            Mode::Asymmetric => {
                let key_ref = key_ref();
                let edek = &edek;
                Ok(self
                    .kms_call(&*kms, &t.id, &config.id, || {
                        kms.unwrap_asymmetric(&key_ref, edek)
                    })
                    .await?)
            }
            // A mode a newer core may add: this build cannot open it.
            _ => Err(ApiError::edek_invalid("unsupported EDEK mode")),
        }
    }

    // ---- batches -----------------------------------------------------------------------

    /// Wraps one DEK per id. Per-item failures do not fail the batch.
    pub async fn batch_wrap(
        &self,
        p: &Principal,
        tenant: &str,
        ids: &[String],
        metadata: &Value,
    ) -> Result<BatchResults<WrappedDek>, ApiError> {
        let mut trace = Trace::default();
        let res = async {
            let t = self.resolve_tenant(p, tenant)?;
            let results = self
                .fan_out(ids.iter().cloned(), |id| {
                    let t = &t;
                    async move {
                        let mut tr = Trace::default();
                        (id, self.wrap_for(t, None, &mut tr).await, tr)
                    }
                })
                .await;
            Ok(split_results(results, &mut trace))
        }
        .await;
        self.audited(
            p,
            tenant,
            "batch_wrap",
            metadata,
            Some(ids.len()),
            trace,
            res,
        )
        .await
    }

    /// Unwraps each EDEK. Per-item failures do not fail the batch.
    pub async fn batch_unwrap(
        &self,
        p: &Principal,
        tenant: &str,
        edeks: Vec<(String, Vec<u8>)>,
        metadata: &Value,
    ) -> Result<BatchResults<Dek>, ApiError> {
        let mut trace = Trace::default();
        let count = edeks.len();
        let res = async {
            let t = self.resolve_tenant(p, tenant)?;
            let configs = ConfigCache::default();
            let results = self
                .fan_out(edeks.into_iter(), |(id, bytes)| {
                    let t = &t;
                    let configs = &configs;
                    async move {
                        let mut tr = Trace::default();
                        let r = self.unwrap_with(t, &bytes, &mut tr, Some(configs)).await;
                        (id, r, tr)
                    }
                })
                .await;
            Ok(split_results(results, &mut trace))
        }
        .await;
        self.audited(p, tenant, "batch_unwrap", metadata, Some(count), trace, res)
            .await
    }

    /// Runs `f` over `items` with at most `batch_fanout` in flight, keeping input order.
    async fn fan_out<I, T, F, Fut>(&self, items: I, f: F) -> Vec<T>
    where
        I: Iterator,
        F: Fn(I::Item) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        use futures_util::stream::{self, StreamExt};
        stream::iter(items.map(f))
            .buffered(self.opts.batch_fanout.max(1))
            .collect()
            .await
    }

    // ---- rekey -------------------------------------------------------------------------

    /// Re-wraps an EDEK's DEK under the tenant's current primary key; the DEK is unchanged.
    pub async fn rekey(
        &self,
        p: &Principal,
        tenant: &str,
        edek: &[u8],
        metadata: &Value,
    ) -> Result<Vec<u8>, ApiError> {
        let mut trace = Trace::default();
        let res = async {
            let t = self.resolve_tenant(p, tenant)?;
            // A failed unwrap is audited with the KMS it used; a wrap replaces it.
            let dek = self.unwrap_for(&t, edek, &mut trace).await?;
            self.wrap_for(&t, Some(dek), &mut trace)
                .await
                .map(|w| w.edek)
        }
        .await;
        self.audited(p, tenant, "rekey", metadata, None, trace, res)
            .await
    }

    // ---- application events ------------------------------------------------------------

    /// Records an application security event for the tenant's SIEM.
    pub async fn app_event(
        &self,
        p: &Principal,
        tenant: &str,
        event: &Value,
        metadata: &Value,
    ) -> Result<(), ApiError> {
        let res = self.resolve_tenant(p, tenant).map(|_| ());
        self.audit(
            p,
            tenant,
            "app_event",
            res.as_ref().map(|_| ()),
            Trace::default(),
            None,
            metadata,
            Some(event.clone()),
        )
        .await?;
        res
    }

    // ---- background renewal ------------------------------------------------------------

    /// Renews every lease that is due; the renewal task calls this periodically.
    pub async fn renew_due_leases(&self) {
        for tenant_id in self.leases.leased_tenants() {
            let Ok(Some(t)) = self.store.tenant(&tenant_id) else {
                continue;
            };
            if t.disabled || t.mode != TenantMode::Leasing {
                self.leases.drop_tenant(&tenant_id);
                continue;
            }
            if !self.leases.renewal_due(&t.id, &Self::policy(&t)) {
                continue;
            }
            let Ok(config) = self.primary(&t) else {
                continue;
            };
            let Ok(kms) = self.kms_for(&config) else {
                continue;
            };
            let key_ref = KeyRef {
                tenant: t.id.clone(),
                config: config.id.clone(),
                version: None,
            };
            let res = self
                .leases
                .renew(&t.id, &config.id, |key, ctx| {
                    let kms = kms.clone();
                    let key_ref = key_ref.clone();
                    async move {
                        self.kms_call(&*kms, &key_ref.tenant, &key_ref.config, || {
                            kms.wrap(&key_ref, key.expose_secret(), &ctx)
                        })
                        .await
                    }
                })
                .await;
            let (action, outcome) = match &res {
                Ok(()) => ("lease_renewed", Ok(())),
                Err(e) => ("lease_failed", Err(ApiError::from(e.clone()))),
            };
            let trace = Trace {
                kms: Some(KmsInfo {
                    provider: kms.provider().into(),
                    config_id: config.id.clone(),
                    key_version: None,
                }),
                ..Trace::default()
            };
            let system = Principal {
                key_id: "system".into(),
                name: "system".into(),
                tenants: None,
                ops: Default::default(),
            };
            if let Err(e) = self
                .audit(
                    &system,
                    &t.id,
                    action,
                    outcome.as_ref().map(|_| ()),
                    trace,
                    None,
                    &Value::Null,
                    None,
                )
                .await
            {
                tracing::error!(tenant = %t.id, error = %e.message, "could not record a lease event");
            }
            if let Err(e) = res {
                tracing::warn!(tenant = %t.id, outcome = e.outcome(), "lease renewal failed");
            }
        }
    }

    /// Records a request refused before it reached the service (scope, rate limit): denied
    /// attempts are audit events too. A sink failure here is logged; the request is refused
    /// anyway.
    pub async fn audit_rejected(
        &self,
        p: &Principal,
        tenant: &str,
        action: &str,
        err: &ApiError,
        metadata: &Value,
    ) {
        if let Err(e) = self
            .audit(
                p,
                tenant,
                action,
                Err(err),
                Trace {
                    before_lookup: true,
                    ..Trace::default()
                },
                None,
                metadata,
                None,
            )
            .await
        {
            tracing::error!(error = %e.message, "could not record a refused request");
        }
    }

    /// Records an event of the E2E key directory (user created, device added or removed,
    /// escrow released or refused, group entry appended or refused, ...). `detail` holds ids
    /// only, never tokens or key material. With `tenant_known` false (a refusal naming a
    /// tenant that may not exist) the event goes to the operator's chain with the requested
    /// tenant in its detail. An event that cannot be recorded fails the operation closed.
    pub async fn audit_directory(
        &self,
        p: &Principal,
        tenant: &str,
        action: &str,
        outcome: Result<(), &ApiError>,
        detail: Value,
        tenant_known: bool,
    ) -> Result<(), ApiError> {
        let unscoped;
        let p = if tenant_known {
            p
        } else {
            unscoped = Principal {
                tenants: None,
                ..p.clone()
            };
            &unscoped
        };
        let trace = Trace {
            detail: Some(detail),
            before_lookup: !tenant_known,
            ..Trace::default()
        };
        self.audit(p, tenant, action, outcome, trace, None, &Value::Null, None)
            .await
    }

    /// Records the audit event of a finished key operation and passes its result on; if
    /// the event cannot be recorded the operation fails closed instead.
    #[allow(clippy::too_many_arguments)]
    async fn audited<T>(
        &self,
        p: &Principal,
        tenant: &str,
        action: &str,
        metadata: &Value,
        count: Option<usize>,
        trace: Trace,
        res: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.audit(
            p,
            tenant,
            action,
            res.as_ref().map(|_| ()),
            trace,
            count,
            metadata,
            None,
        )
        .await?;
        res
    }

    // ---- audit -------------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    async fn audit(
        &self,
        p: &Principal,
        tenant: &str,
        action: &str,
        outcome: Result<(), &ApiError>,
        trace: Trace,
        count: Option<usize>,
        metadata: &Value,
        event: Option<Value>,
    ) -> Result<(), ApiError> {
        // A request naming no known tenant is recorded in the ES operator's chain (tenant
        // ""), so callers cannot create spools for arbitrary names. Decided without a
        // tenant lookup (which would time tenant existence).
        let mut detail = trace.detail;
        let known = match outcome {
            Ok(()) => true,
            Err(e) if matches!(e.code, "tenant_forbidden" | "tenant_not_found") => false,
            // Refused before any lookup: the name is known only if it is in a scoped key's
            // scope (an all-tenants key's refusals go to the operator's chain).
            Err(e) if trace.before_lookup => p.tenants.is_some() && e.code != "bad_request",
            Err(_) => true,
        };
        if !known {
            let mut d = match detail.take() {
                Some(Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            d.insert("requested_tenant".into(), Value::String(tenant.to_owned()));
            detail = Some(Value::Object(d));
        }
        let ev = AuditEvent {
            id: crate::audit::new_event_id(),
            time: rfc3339_now(),
            tenant_id: if known {
                tenant.to_owned()
            } else {
                String::new()
            },
            seq: 0,
            prev_hash: String::new(),
            es_instance: self.opts.instance.clone(),
            principal: p.key_id.clone(),
            action: action.to_owned(),
            outcome: if outcome.is_ok() {
                "success"
            } else {
                "failure"
            },
            code: outcome.as_ref().err().map(|e| e.code.to_owned()),
            kms: trace.kms,
            detail,
            count,
            failures: trace.failures,
            metadata: metadata.clone(),
            event,
        };
        self.audit.record(ev).await.map_err(|e| {
            tracing::error!(error = %e, "audit sink failed; failing closed");
            ApiError::audit_unavailable()
        })
    }
}

/// A batch's successes and failures, by item id.
pub type BatchResults<T> = (Vec<(String, T)>, Vec<(String, ApiError)>);

/// Splits per-item batch results into successes and failures, keeping the first item's KMS
/// details for the batch's audit event.
fn split_results<T>(
    results: Vec<(String, Result<T, ApiError>, Trace)>,
    trace: &mut Trace,
) -> BatchResults<T> {
    let mut ok = Vec::with_capacity(results.len());
    let mut failed = Vec::new();
    for (id, r, tr) in results {
        if trace.kms.is_none() {
            trace.kms = tr.kms;
        }
        match r {
            Ok(v) => ok.push((id, v)),
            Err(e) => failed.push((id, e)),
        }
    }
    trace.failures = Some(failed.len());
    (ok, failed)
}

fn internal(e: &dyn std::fmt::Display) -> ApiError {
    let id = hex::encode(random_bytes::<6>());
    tracing::error!(correlation = %id, error = %e, "internal error");
    ApiError::internal(&id)
}

/// Creates a tenant with a built-in KMS config `builtin-1` and its first key version.
pub fn create_builtin_tenant(
    store: &Arc<dyn Store>,
    builtin: &BuiltinKms,
    id: &str,
    mode: TenantMode,
    lease_secs: u64,
    renew_secs: u64,
) -> Result<Tenant, Box<dyn std::error::Error + Send + Sync>> {
    let config = KmsConfig {
        tenant: id.to_owned(),
        id: "builtin-1".to_owned(),
        provider: "builtin".to_owned(),
        state: ConfigState::Active,
        settings: "{}".to_owned(),
    };
    let t = Tenant {
        id: id.to_owned(),
        mode,
        primary_config: config.id.clone(),
        disabled: false,
        lease_secs,
        renew_secs,
    };
    store.create_tenant(&t, &config)?;
    builtin.create_version(id, &config.id)?;
    Ok(t)
}
