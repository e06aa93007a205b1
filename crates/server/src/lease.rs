//! Key leasing (DESIGN.md "Key hierarchy" and "Revocation").
//!
//! Per tenant: a *current* leased key for new wraps (a new key and id every renewal), and
//! every leased key unwrapped so far, by id, for unwraps of EDEKs from earlier periods or
//! other ES instances. All are valid until `last successful KMS call + lease length`,
//! measured on a monotonic [`Clock`]:
//!
//! * the KMS **denies** → every leased key of the tenant is dropped at once, and requests
//!   answer `403 kms_denied` (revocation within one renewal interval);
//! * the KMS is **unreachable** → keys keep serving until the lease runs out, then requests
//!   answer `503 lease_expired`;
//! * a cold lease is obtained by exactly one KMS call however many requests wait for it
//!   (single flight), and so is each unknown leased key id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use keystead_core::{LeasedKey, LeasedKeyId};
use tokio::sync::Mutex as AsyncMutex;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::error::ApiError;
use crate::kms::KmsError;
use crate::util::os_rng;

/// Longest lease a tenant may configure (DESIGN.md).
pub const MAX_LEASE: Duration = Duration::from_secs(24 * 3600);
/// Longest renewal interval a tenant may configure.
pub const MAX_RENEW: Duration = Duration::from_secs(3600);
/// Default lease length.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3600);
/// Default renewal interval.
pub const DEFAULT_RENEW: Duration = Duration::from_secs(20 * 60);

/// A tenant's lease policy, capped.
#[derive(Clone, Copy, Debug)]
pub struct LeasePolicy {
    /// How long keys stay usable after the last successful KMS call.
    pub lease: Duration,
    /// How often a new leased key is made.
    pub renew: Duration,
}

impl LeasePolicy {
    /// A policy from configured seconds, capped at [`MAX_LEASE`] / [`MAX_RENEW`], with the
    /// renewal interval never longer than the lease.
    pub fn from_secs(lease: u64, renew: u64) -> Self {
        let lease = Duration::from_secs(lease.max(1)).min(MAX_LEASE);
        let renew = Duration::from_secs(renew.max(1)).min(MAX_RENEW).min(lease);
        Self { lease, renew }
    }
}

/// The leased key new wraps use, with what goes into each EDEK.
pub struct CurrentLease {
    /// The key.
    pub key: Arc<LeasedKey>,
    /// Its KMS ciphertext (carried in every EDEK).
    pub wrapped: Vec<u8>,
    /// KMS config that wrapped it.
    pub config: String,
    /// Key version that wrapped it.
    pub version: u32,
    created: Duration,
}

#[derive(Default)]
struct Leases {
    current: Option<Arc<CurrentLease>>,
    keys: HashMap<LeasedKeyId, Arc<LeasedKey>>,
    last_success: Option<Duration>,
    denied_at: Option<Duration>,
}

#[derive(Default)]
struct TenantLeases {
    state: RwLock<Leases>,
    obtain: AsyncMutex<()>,
    flights: Mutex<HashMap<LeasedKeyId, Arc<AsyncMutex<()>>>>,
}

/// The KMS encryption context of a leased key: binds tenant, config and key id.
// Ids are at most 256 bytes (checked at the API edge), so lengths fit a u16.
#[allow(clippy::cast_possible_truncation)]
pub fn leased_key_context(tenant: &str, config: &str, id: &LeasedKeyId) -> Vec<u8> {
    let mut c = b"keystead/v1/leased-key".to_vec();
    for part in [tenant.as_bytes(), config.as_bytes()] {
        c.extend_from_slice(&(part.len() as u16).to_be_bytes());
        c.extend_from_slice(part);
    }
    c.extend_from_slice(&id.0);
    c
}

/// All tenants' leases.
pub struct LeaseManager {
    clock: Arc<dyn Clock>,
    tenants: RwLock<HashMap<String, Arc<TenantLeases>>>,
}

impl LeaseManager {
    /// A manager measuring time on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            tenants: RwLock::new(HashMap::new()),
        }
    }

    fn tenant(&self, id: &str) -> Arc<TenantLeases> {
        if let Some(t) = self
            .tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            return t.clone();
        }
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_owned())
            .or_default()
            .clone()
    }

    fn valid(&self, l: &Leases, policy: &LeasePolicy) -> bool {
        l.last_success
            .is_some_and(|t| self.clock.now() < t + policy.lease)
    }

    /// Fails fast while a recent denial stands (one renewal interval), so a revoked tenant
    /// does not hammer its KMS.
    fn check_denied(&self, l: &Leases, policy: &LeasePolicy) -> Result<(), ApiError> {
        match l.denied_at {
            Some(t) if self.clock.now() < t + policy.renew => {
                Err(KmsError::Denied("lease revoked".into()).into())
            }
            _ => Ok(()),
        }
    }

    fn on_error(&self, t: &TenantLeases, e: &KmsError) {
        if matches!(e, KmsError::Denied(_)) {
            let mut l = t.state.write().unwrap_or_else(|p| p.into_inner());
            l.current = None;
            l.keys.clear();
            l.last_success = None;
            l.denied_at = Some(self.clock.now());
        }
    }

    /// Maps a KMS failure while leasing. Unreachable or timed out: `lease_expired` if the
    /// tenant had a lease that ran out during the outage, otherwise (never leased since
    /// this instance started) the KMS error itself (`kms_unreachable` / `kms_timeout`).
    fn lease_error(&self, t: &TenantLeases, e: KmsError) -> ApiError {
        let had_lease = t
            .state
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last_success
            .is_some();
        match e {
            KmsError::Unreachable(_) | KmsError::Timeout if had_lease => ApiError::lease_expired(),
            other => other.into(),
        }
    }

    /// The current leased key of `tenant`, obtaining one (one KMS call, single flight) when
    /// there is none or the lease ran out. `wrap` wraps a new leased key with the KMS.
    pub async fn current<F, Fut>(
        &self,
        tenant: &str,
        config: &str,
        policy: &LeasePolicy,
        wrap: F,
    ) -> Result<Arc<CurrentLease>, ApiError>
    where
        F: FnOnce(Arc<LeasedKey>, Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Result<crate::kms::Wrapped, KmsError>>,
    {
        let t = self.tenant(tenant);
        {
            let l = t.state.read().unwrap_or_else(|p| p.into_inner());
            self.check_denied(&l, policy)?;
            if let Some(c) = &l.current
                && c.config == config
                && self.valid(&l, policy)
            {
                return Ok(c.clone());
            }
        }
        let _flight = t.obtain.lock().await;
        {
            let l = t.state.read().unwrap_or_else(|p| p.into_inner());
            self.check_denied(&l, policy)?;
            if let Some(c) = &l.current
                && c.config == config
                && self.valid(&l, policy)
            {
                return Ok(c.clone());
            }
        }
        let lease = self.new_lease(&t, tenant, config, wrap).await;
        lease.map_err(|e| self.lease_error(&t, e))
    }

    async fn new_lease<F, Fut>(
        &self,
        t: &TenantLeases,
        tenant: &str,
        config: &str,
        wrap: F,
    ) -> Result<Arc<CurrentLease>, KmsError>
    where
        F: FnOnce(Arc<LeasedKey>, Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Result<crate::kms::Wrapped, KmsError>>,
    {
        let key = Arc::new(LeasedKey::generate(&mut os_rng()));
        let context = leased_key_context(tenant, config, &key.id());
        match wrap(key.clone(), context).await {
            Ok(w) => {
                let now = self.clock.now();
                let current = Arc::new(CurrentLease {
                    key: key.clone(),
                    wrapped: w.ciphertext,
                    config: config.to_owned(),
                    version: w.version,
                    created: now,
                });
                let mut l = t.state.write().unwrap_or_else(|p| p.into_inner());
                l.keys.insert(key.id(), key);
                l.current = Some(current.clone());
                l.last_success = Some(now);
                l.denied_at = None;
                Ok(current)
            }
            Err(e) => {
                self.on_error(t, &e);
                Err(e)
            }
        }
    }

    /// The leased key with `id` for an unwrap: from the cache while the lease is valid,
    /// otherwise through one KMS call (single flight per id). `unwrap` asks the KMS for the
    /// key bytes; `cache` says whether to keep them (not for remote-mode tenants).
    pub async fn key<F, Fut>(
        &self,
        tenant: &str,
        id: LeasedKeyId,
        policy: &LeasePolicy,
        cache: bool,
        unwrap: F,
    ) -> Result<Arc<LeasedKey>, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Zeroizing<Vec<u8>>, KmsError>>,
    {
        let t = self.tenant(tenant);
        let lookup = |t: &TenantLeases| -> Result<Option<Arc<LeasedKey>>, ApiError> {
            let l = t.state.read().unwrap_or_else(|p| p.into_inner());
            self.check_denied(&l, policy)?;
            Ok(if self.valid(&l, policy) {
                l.keys.get(&id).cloned()
            } else {
                None
            })
        };
        if let Some(k) = lookup(&t)? {
            return Ok(k);
        }
        let flight = t
            .flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_insert_with(|| Arc::new(AsyncMutex::new(())))
            .clone();
        let guard = flight.lock().await;
        if let Some(k) = lookup(&t)? {
            return Ok(k);
        }
        let res = unwrap().await;
        let out = match res {
            Ok(bytes) => {
                let key: [u8; 32] = bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| ApiError::edek_invalid("the leased key has the wrong length"))?;
                let key = Arc::new(LeasedKey::from_bytes(id, key));
                let mut l = t.state.write().unwrap_or_else(|p| p.into_inner());
                l.last_success = Some(self.clock.now());
                l.denied_at = None;
                if cache {
                    l.keys.insert(id, key.clone());
                }
                Ok(key)
            }
            // A refusal here concerns this one leased key (e.g. an EDEK naming a key
            // version the ES may not use): it fails this unwrap only. Dropping the
            // tenant's lease is for renewals, which ask about the tenant's current key.
            Err(e) => Err(self.lease_error(&t, e)),
        };
        drop(guard);
        t.flights
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        out
    }

    /// Whether `tenant`'s current lease is due for renewal.
    pub fn renewal_due(&self, tenant: &str, policy: &LeasePolicy) -> bool {
        let t = self.tenant(tenant);
        let l = t.state.read().unwrap_or_else(|p| p.into_inner());
        l.current
            .as_ref()
            .is_some_and(|c| self.clock.now() >= c.created + policy.renew)
    }

    /// Renews `tenant`'s lease: a new leased key wrapped by the KMS. A denial drops every
    /// leased key of the tenant; an unreachable KMS leaves the lease running out.
    pub async fn renew<F, Fut>(&self, tenant: &str, config: &str, wrap: F) -> Result<(), KmsError>
    where
        F: FnOnce(Arc<LeasedKey>, Vec<u8>) -> Fut,
        Fut: std::future::Future<Output = Result<crate::kms::Wrapped, KmsError>>,
    {
        let t = self.tenant(tenant);
        let _flight = t.obtain.lock().await;
        self.new_lease(&t, tenant, config, wrap).await.map(|_| ())
    }

    /// Tenants that hold a current lease (for the renewal task).
    pub fn leased_tenants(&self) -> Vec<String> {
        self.tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, t)| {
                t.state
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .current
                    .is_some()
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Number of leased keys held in memory (metrics).
    pub fn cached_keys(&self) -> usize {
        self.tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|t| t.state.read().unwrap_or_else(|p| p.into_inner()).keys.len())
            .sum()
    }

    /// Drops every leased key of `tenant` (tenant disabled or offboarded).
    pub fn drop_tenant(&self, tenant: &str) {
        self.tenants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tenant);
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<LeaseManager>();
}
