//! Persistent state behind one trait: tenants, KMS configurations with their history,
//! service keys (hashed) and built-in KMS key material (sealed under the root key).
//!
//! SQLite ([`sqlite::SqliteStore`]) is the embedded default; PostgreSQL will implement the
//! same trait for scale-out deployments. Reads on the request path are served from an
//! in-memory snapshot that the store refreshes when another process (an admin command)
//! changes the database, so a request never waits on disk.

pub mod sqlite;

use serde::{Deserialize, Serialize};

/// A storage failure. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("storage error: {0}")]
    Db(String),
    /// A record to update does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A record to create exists already.
    #[error("already exists: {0}")]
    Conflict(String),
}

/// Result alias for storage calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// How a tenant's DEKs are wrapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantMode {
    /// A KMS call per wrap and per unwrap.
    Remote,
    /// A leased key per lease period, wrapped once by the KMS.
    Leasing,
    /// DEKs sealed (HPKE) to the tenant's X25519 public key: wraps need no KMS call,
    /// each unwrap is one (the private key stays in the KMS).
    Asymmetric,
}

impl TenantMode {
    /// The stored / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantMode::Remote => "remote",
            TenantMode::Leasing => "leasing",
            TenantMode::Asymmetric => "asymmetric",
        }
    }
    /// Parses the stored / CLI spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "remote" => Some(TenantMode::Remote),
            "leasing" => Some(TenantMode::Leasing),
            "asymmetric" => Some(TenantMode::Asymmetric),
            _ => None,
        }
    }
}

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    /// Tenant id.
    pub id: String,
    /// Wrapping mode.
    pub mode: TenantMode,
    /// The KMS configuration new wraps use.
    pub primary_config: String,
    /// Disabled by the vendor: every key operation answers `409 tenant_disabled`.
    pub disabled: bool,
    /// Lease length in seconds (leasing mode), capped at 24 h.
    pub lease_secs: u64,
    /// Renewal interval in seconds (leasing mode), capped at 1 h.
    pub renew_secs: u64,
}

/// Lifecycle of a KMS configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigState {
    /// Usable for unwrap (and for wrap when primary).
    Active,
    /// No longer usable: EDEKs under it answer `422 key_retired`.
    Retired,
}

/// One KMS configuration of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsConfig {
    /// Owning tenant.
    pub tenant: String,
    /// Config id (unique per tenant).
    pub id: String,
    /// Provider name (`builtin`, later `aws`, `vault`, ...).
    pub provider: String,
    /// Active or retired.
    pub state: ConfigState,
    /// Provider settings as JSON (no secrets in clear: adapters keep credentials sealed).
    pub settings: String,
}

/// A service key record. The secret itself is never stored: only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceKey {
    /// Public key id (embedded in the secret, used for lookup and in audit events).
    pub id: String,
    /// Human name (unique).
    pub name: String,
    /// SHA-256 of the whole secret.
    pub secret_hash: [u8; 32],
    /// Tenants in scope; `None` = all tenants.
    pub tenants: Option<Vec<String>>,
    /// Operations in scope.
    pub ops: Vec<String>,
    /// Expiry as Unix seconds, if any.
    pub expires_at: Option<i64>,
    /// Revoked keys stay listed but authenticate nothing.
    pub revoked: bool,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// A built-in KMS master key version (sealed under the root key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltinKey {
    /// Owning tenant.
    pub tenant: String,
    /// KMS config id.
    pub config: String,
    /// Key version (1, 2, ...; rotation adds one).
    pub version: u32,
    /// The master key sealed under the root key.
    pub sealed: Vec<u8>,
    /// Disabled keys refuse every operation (`kms_denied`).
    pub enabled: bool,
}

/// Where a derivation secret stands in its rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretState {
    /// Derives the keys new values are written under.
    Current,
    /// Replaced by a newer secret but still derived from, so queries find values written
    /// before the rotation until they are rewritten.
    Rotating,
    /// No longer derived from.
    Retired,
}

impl SecretState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SecretState::Current => "current",
            SecretState::Rotating => "rotating",
            SecretState::Retired => "retired",
        }
    }
    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "current" => Some(SecretState::Current),
            "rotating" => Some(SecretState::Rotating),
            "retired" => Some(SecretState::Retired),
            _ => None,
        }
    }
}

/// A tenant's derivation secret (deterministic-encryption and blind-index keys are derived
/// from it), stored only as the tenant's KMS wrapped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivationSecretRecord {
    /// Owning tenant.
    pub tenant: String,
    /// Secret id (`ds-1`, `ds-2`, ...), carried in every deterministic ciphertext.
    pub id: String,
    /// Random id under which the unwrapped secret is cached, like a leased key.
    pub cache_id: [u8; 16],
    /// KMS config that wrapped it.
    pub config: String,
    /// Key version that wrapped it.
    pub key_version: u32,
    /// The KMS ciphertext of the secret.
    pub wrapped: Vec<u8>,
    /// Rotation state.
    pub state: SecretState,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// An audit sink of a tenant (`tenant add-sink`).
#[derive(Clone, PartialEq, Eq)]
pub struct SinkRecord {
    /// Owning tenant.
    pub tenant: String,
    /// Sink id (unique per tenant).
    pub id: String,
    /// The settings' kind (`webhook`, `splunk_hec`, `syslog`, `file`, `stdout`).
    pub kind: String,
    /// The settings JSON sealed under the root key for (tenant, `sink:<id>`): they may hold
    /// a token.
    pub settings: String,
}

impl std::fmt::Debug for SinkRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Sealed, but there is no reason to print it either.
        f.debug_struct("SinkRecord")
            .field("tenant", &self.tenant)
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The storage interface of the Encryption Service.
pub trait Store: Send + Sync + 'static {
    /// A tenant by id.
    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>>;
    /// All tenants.
    fn tenants(&self) -> StoreResult<Vec<Tenant>>;
    /// Creates a tenant together with its first KMS configuration.
    fn create_tenant(&self, tenant: &Tenant, config: &KmsConfig) -> StoreResult<()>;
    /// Updates a tenant (mode, primary, disabled, lease policy).
    fn update_tenant(&self, tenant: &Tenant) -> StoreResult<()>;

    /// A KMS configuration.
    fn config(&self, tenant: &str, id: &str) -> StoreResult<Option<KmsConfig>>;
    /// All configurations of a tenant (history included).
    fn configs(&self, tenant: &str) -> StoreResult<Vec<KmsConfig>>;
    /// Adds or replaces a configuration.
    fn put_config(&self, config: &KmsConfig) -> StoreResult<()>;

    /// A service key by its public id.
    fn service_key(&self, id: &str) -> StoreResult<Option<ServiceKey>>;
    /// All service keys.
    fn service_keys(&self) -> StoreResult<Vec<ServiceKey>>;
    /// Adds a service key (name and id must be new).
    fn create_service_key(&self, key: &ServiceKey) -> StoreResult<()>;
    /// Marks the key with `name` revoked.
    fn revoke_service_key(&self, name: &str) -> StoreResult<()>;

    /// Every version of a built-in key.
    fn builtin_keys(&self, tenant: &str, config: &str) -> StoreResult<Vec<BuiltinKey>>;
    /// Adds or replaces a built-in key version.
    fn put_builtin_key(&self, key: &BuiltinKey) -> StoreResult<()>;

    /// Every derivation secret of a tenant, oldest first (retired ones included).
    fn derivation_secrets(&self, tenant: &str) -> StoreResult<Vec<DerivationSecretRecord>>;
    /// Adds `secret` as the tenant's current derivation secret. With `rotate`, the current
    /// secret becomes `rotating` in the same transaction (`Conflict` while another rotation
    /// is in progress); without it, the tenant must have no current secret (`Conflict`
    /// otherwise, e.g. when two instances race to create the first).
    fn add_derivation_secret(
        &self,
        secret: &DerivationSecretRecord,
        rotate: bool,
    ) -> StoreResult<()>;
    /// Looks for changes made by other processes now rather than at the next periodic
    /// check (at most every few tens of milliseconds), e.g. after a lookup missed.
    fn recheck(&self) -> StoreResult<()> {
        Ok(())
    }

    /// Replaces how a live derivation secret is wrapped (moved to another KMS config; the
    /// secret itself is unchanged). `NotFound` if the secret is unknown or retired.
    fn rewrap_derivation_secret(
        &self,
        tenant: &str,
        id: &str,
        config: &str,
        key_version: u32,
        wrapped: &[u8],
    ) -> StoreResult<()>;

    /// Ends a rotation: the `rotating` secret becomes `retired` (`NotFound` when there is
    /// none). Returns its id.
    fn finish_derivation_rotation(&self, tenant: &str) -> StoreResult<String>;

    /// The audit sinks of a tenant, by id.
    fn sinks(&self, tenant: &str) -> StoreResult<Vec<SinkRecord>>;
    /// Adds or replaces an audit sink.
    fn put_sink(&self, sink: &SinkRecord) -> StoreResult<()>;
    /// Removes an audit sink; `false` if the tenant had no sink `id`.
    fn remove_sink(&self, tenant: &str, id: &str) -> StoreResult<bool>;
}
