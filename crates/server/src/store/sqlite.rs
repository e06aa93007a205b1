//! The embedded SQLite store.
//!
//! Request-path reads are answered from an in-memory snapshot. The snapshot is reloaded
//! after every write made through this handle and, at most every [`RECHECK`], when
//! SQLite's `data_version` shows that another connection (an admin command run against
//! the same data dir) committed a change: admin changes reach a running server within a
//! second.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};

use super::{
    BuiltinKey, ConfigState, DerivationSecretRecord, KmsConfig, SecretState, ServiceKey,
    SinkRecord, Store, StoreError, StoreResult, Tenant, TenantMode,
};

mod directory;

/// How often readers look for changes made by other processes.
pub const RECHECK: Duration = Duration::from_millis(500);
/// How often a lookup miss may force that look ([`Store::recheck`]).
pub const MISS_RECHECK: Duration = Duration::from_millis(50);

/// Versioned schema migrations, applied in order, each once.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    "CREATE TABLE tenants (
        id TEXT PRIMARY KEY,
        mode TEXT NOT NULL,
        primary_config TEXT NOT NULL,
        disabled INTEGER NOT NULL DEFAULT 0,
        lease_secs INTEGER NOT NULL,
        renew_secs INTEGER NOT NULL
     );
     CREATE TABLE kms_configs (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        id TEXT NOT NULL,
        provider TEXT NOT NULL,
        state TEXT NOT NULL,
        settings TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
     );
     CREATE TABLE service_keys (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        secret_hash BLOB NOT NULL,
        tenants TEXT,
        ops TEXT NOT NULL,
        expires_at INTEGER,
        revoked INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE builtin_keys (
        tenant TEXT NOT NULL,
        config TEXT NOT NULL,
        version INTEGER NOT NULL,
        sealed BLOB NOT NULL,
        enabled INTEGER NOT NULL,
        PRIMARY KEY (tenant, config, version)
     );",
    // 2: derivation secrets (deterministic fields, blind indexes)
    "CREATE TABLE derivation_secrets (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        id TEXT NOT NULL,
        cache_id BLOB NOT NULL,
        config TEXT NOT NULL,
        key_version INTEGER NOT NULL,
        wrapped BLOB NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        PRIMARY KEY (tenant, id)
     );
     CREATE UNIQUE INDEX derivation_one_current ON derivation_secrets (tenant)
        WHERE state = 'current';
     CREATE UNIQUE INDEX derivation_one_rotating ON derivation_secrets (tenant)
        WHERE state = 'rotating';",
    // 3: per-tenant audit sinks (settings sealed under the root key)
    "CREATE TABLE audit_sinks (
        tenant TEXT NOT NULL REFERENCES tenants(id),
        id TEXT NOT NULL,
        kind TEXT NOT NULL,
        settings TEXT NOT NULL,
        PRIMARY KEY (tenant, id)
     );",
    // 4: the E2E key directory (see directory/store.rs): user slots and records, devices,
    // single-use tokens (hashes), escrow blobs and fetch attempts, group logs with their
    // heads and member index, access blocks, attachment blob metadata.
    "CREATE TABLE dir_users (
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        identity_key BLOB,
        record BLOB NOT NULL,
        version INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, user_id)
     );
     CREATE TABLE dir_devices (
        tenant TEXT NOT NULL,
        device_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        signing_key BLOB NOT NULL,
        certificate BLOB NOT NULL,
        removed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, device_id),
        FOREIGN KEY (tenant, user_id) REFERENCES dir_users (tenant, user_id)
     );
     CREATE INDEX dir_devices_by_user ON dir_devices (tenant, user_id);
     CREATE TABLE dir_tokens (
        hash BLOB PRIMARY KEY,
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        expires_at INTEGER NOT NULL
     );
     CREATE INDEX dir_tokens_by_expiry ON dir_tokens (expires_at);
     CREATE TABLE dir_escrow (
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        blob BLOB NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, user_id)
     );
     CREATE TABLE dir_escrow_attempts (
        tenant TEXT NOT NULL,
        user_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        ok INTEGER NOT NULL
     );
     CREATE INDEX dir_escrow_attempts_by_user ON dir_escrow_attempts (tenant, user_id, at);
     CREATE TABLE dir_groups (
        tenant TEXT NOT NULL,
        group_id TEXT NOT NULL,
        head_seq INTEGER NOT NULL,
        head_hash BLOB NOT NULL,
        PRIMARY KEY (tenant, group_id)
     );
     CREATE TABLE dir_group_entries (
        tenant TEXT NOT NULL,
        group_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hash BLOB NOT NULL,
        entry BLOB NOT NULL,
        UNIQUE (tenant, group_id, seq),
        FOREIGN KEY (tenant, group_id) REFERENCES dir_groups (tenant, group_id)
     );
     CREATE TABLE dir_group_members (
        tenant TEXT NOT NULL,
        group_id TEXT NOT NULL,
        user_id TEXT NOT NULL,
        PRIMARY KEY (tenant, group_id, user_id)
     );
     CREATE INDEX dir_group_members_by_user ON dir_group_members (tenant, user_id);
     CREATE TABLE dir_access_blocks (
        tenant TEXT NOT NULL,
        doc_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        block BLOB NOT NULL,
        PRIMARY KEY (tenant, doc_id)
     );
     CREATE TABLE dir_blobs (
        tenant TEXT NOT NULL,
        blob_id TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 BLOB NOT NULL,
        owner TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, blob_id)
     );",
];

#[derive(Default)]
struct Snapshot {
    tenants: HashMap<String, Tenant>,
    configs: HashMap<(String, String), KmsConfig>,
    service_keys: HashMap<String, ServiceKey>,
    builtin: HashMap<(String, String), Vec<BuiltinKey>>,
    secrets: HashMap<String, Vec<DerivationSecretRecord>>,
    /// Per tenant, ordered by id.
    sinks: HashMap<String, Vec<SinkRecord>>,
}

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    conn: Mutex<Connection>,
    snapshot: RwLock<Snapshot>,
    seen: Mutex<(i64, Instant)>,
    /// When a lookup miss last forced a look ([`Store::recheck`]).
    forced: Mutex<Option<Instant>>,
}

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Db(e.to_string())
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        let conn = Connection::open(path).map_err(db)?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(mut conn: Connection) -> StoreResult<Self> {
        conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
        // WAL lets admin commands write while the server reads.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        migrate(&mut conn)?;
        let store = Self {
            conn: Mutex::new(conn),
            snapshot: RwLock::new(Snapshot::default()),
            seen: Mutex::new((-1, Instant::now())),
            forced: Mutex::new(None),
        };
        store.reload()?;
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A poisoned lock only means another thread panicked mid-call; the connection is
        // still consistent (every write is one transaction).
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reloads the snapshot from the database.
    fn reload(&self) -> StoreResult<()> {
        let conn = self.lock();
        let version: i64 = conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(db)?;
        let snap = load(&conn)?;
        drop(conn);
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = snap;
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = (version, Instant::now());
        Ok(())
    }

    /// Reloads if another connection changed the database since the last look (checked at
    /// most every [`RECHECK`]).
    fn refresh(&self) -> StoreResult<()> {
        self.refresh_after(RECHECK)
    }

    fn refresh_after(&self, interval: Duration) -> StoreResult<()> {
        {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.1.elapsed() < interval {
                return Ok(());
            }
        }
        let version: i64 = self
            .lock()
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(db)?;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if version == seen.0 {
            seen.1 = Instant::now();
            return Ok(());
        }
        drop(seen);
        self.reload()
    }

    fn read<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> StoreResult<T> {
        self.refresh()?;
        Ok(f(&self.snapshot.read().unwrap_or_else(|p| p.into_inner())))
    }

    fn write(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        {
            let mut conn = self.lock();
            let tx = conn.transaction().map_err(db)?;
            f(&tx)?;
            tx.commit().map_err(db)?;
        }
        self.reload()
    }
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)",
    )
    .map_err(db)?;
    let applied: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= applied {
            continue;
        }
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(sql).map_err(db)?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES (?1)",
            [version],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
    }
    Ok(())
}

fn load(conn: &Connection) -> StoreResult<Snapshot> {
    let mut snap = Snapshot::default();
    let mut st = conn
        .prepare("SELECT id, mode, primary_config, disabled, lease_secs, renew_secs FROM tenants")
        .map_err(db)?;
    let rows = st
        .query_map([], |r| {
            Ok(Tenant {
                id: r.get(0)?,
                mode: TenantMode::parse(&r.get::<_, String>(1)?).unwrap_or(TenantMode::Leasing),
                primary_config: r.get(2)?,
                disabled: r.get(3)?,
                lease_secs: r.get::<_, i64>(4)? as u64,
                renew_secs: r.get::<_, i64>(5)? as u64,
            })
        })
        .map_err(db)?;
    for t in rows {
        let t = t.map_err(db)?;
        snap.tenants.insert(t.id.clone(), t);
    }
    let mut st = conn
        .prepare("SELECT tenant, id, provider, state, settings FROM kms_configs")
        .map_err(db)?;
    let rows = st
        .query_map([], |r| {
            Ok(KmsConfig {
                tenant: r.get(0)?,
                id: r.get(1)?,
                provider: r.get(2)?,
                state: if r.get::<_, String>(3)? == "retired" {
                    ConfigState::Retired
                } else {
                    ConfigState::Active
                },
                settings: r.get(4)?,
            })
        })
        .map_err(db)?;
    for c in rows {
        let c = c.map_err(db)?;
        snap.configs.insert((c.tenant.clone(), c.id.clone()), c);
    }
    let mut st = conn
        .prepare(
            "SELECT id, name, secret_hash, tenants, ops, expires_at, revoked, created_at
             FROM service_keys",
        )
        .map_err(db)?;
    let rows = st
        .query_map([], |r| {
            let hash: Vec<u8> = r.get(2)?;
            let tenants: Option<String> = r.get(3)?;
            let ops: String = r.get(4)?;
            Ok(ServiceKey {
                id: r.get(0)?,
                name: r.get(1)?,
                secret_hash: hash.try_into().unwrap_or([0; 32]),
                tenants: tenants.map(|t| serde_json::from_str(&t).unwrap_or_default()),
                ops: serde_json::from_str(&ops).unwrap_or_default(),
                expires_at: r.get(5)?,
                revoked: r.get(6)?,
                created_at: r.get(7)?,
            })
        })
        .map_err(db)?;
    for k in rows {
        let k = k.map_err(db)?;
        snap.service_keys.insert(k.id.clone(), k);
    }
    let mut st = conn
        .prepare(
            "SELECT tenant, config, version, sealed, enabled FROM builtin_keys ORDER BY version",
        )
        .map_err(db)?;
    let rows = st
        .query_map([], |r| {
            Ok(BuiltinKey {
                tenant: r.get(0)?,
                config: r.get(1)?,
                version: r.get(2)?,
                sealed: r.get(3)?,
                enabled: r.get(4)?,
            })
        })
        .map_err(db)?;
    for k in rows {
        let k = k.map_err(db)?;
        snap.builtin
            .entry((k.tenant.clone(), k.config.clone()))
            .or_default()
            .push(k);
    }
    let mut st = conn
        .prepare(
            "SELECT tenant, id, cache_id, config, key_version, wrapped, state, created_at
             FROM derivation_secrets ORDER BY seq",
        )
        .map_err(db)?;
    let rows = st
        .query_map([], |r| {
            let cache_id: Vec<u8> = r.get(2)?;
            Ok(DerivationSecretRecord {
                tenant: r.get(0)?,
                id: r.get(1)?,
                cache_id: cache_id.try_into().unwrap_or([0; 16]),
                config: r.get(3)?,
                key_version: r.get(4)?,
                wrapped: r.get(5)?,
                // An unknown state is never derived from.
                state: SecretState::parse(&r.get::<_, String>(6)?).unwrap_or(SecretState::Retired),
                created_at: r.get(7)?,
            })
        })
        .map_err(db)?;
    for k in rows {
        let k = k.map_err(db)?;
        snap.secrets.entry(k.tenant.clone()).or_default().push(k);
    }
    let mut st = conn
        .prepare("SELECT tenant, id, kind, settings FROM audit_sinks ORDER BY tenant, id")
        .map_err(db)?;
    let rows = st
        .query_map([], |r| {
            Ok(SinkRecord {
                tenant: r.get(0)?,
                id: r.get(1)?,
                kind: r.get(2)?,
                settings: r.get(3)?,
            })
        })
        .map_err(db)?;
    for k in rows {
        let k = k.map_err(db)?;
        snap.sinks.entry(k.tenant.clone()).or_default().push(k);
    }
    Ok(snap)
}

fn put_config_tx(tx: &rusqlite::Transaction<'_>, c: &KmsConfig) -> StoreResult<()> {
    let state = match c.state {
        ConfigState::Active => "active",
        ConfigState::Retired => "retired",
    };
    tx.execute(
        "INSERT INTO kms_configs (tenant, id, provider, state, settings) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, id) DO UPDATE SET provider = ?3, state = ?4, settings = ?5",
        params![c.tenant, c.id, c.provider, state, c.settings],
    )
    .map_err(db)?;
    Ok(())
}

impl Store for SqliteStore {
    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        self.read(|s| s.tenants.get(id).cloned())
    }

    fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.read(|s| {
            let mut v: Vec<_> = s.tenants.values().cloned().collect();
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v
        })
    }

    fn create_tenant(&self, t: &Tenant, config: &KmsConfig) -> StoreResult<()> {
        self.write(|tx| {
            let exists: Option<String> = tx
                .query_row("SELECT id FROM tenants WHERE id = ?1", [&t.id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db)?;
            if exists.is_some() {
                return Err(StoreError::Conflict(format!("tenant {}", t.id)));
            }
            tx.execute(
                "INSERT INTO tenants (id, mode, primary_config, disabled, lease_secs, renew_secs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    t.id,
                    t.mode.as_str(),
                    t.primary_config,
                    t.disabled,
                    t.lease_secs as i64,
                    t.renew_secs as i64
                ],
            )
            .map_err(db)?;
            put_config_tx(tx, config)
        })
    }

    fn update_tenant(&self, t: &Tenant) -> StoreResult<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE tenants SET mode = ?2, primary_config = ?3, disabled = ?4,
                     lease_secs = ?5, renew_secs = ?6 WHERE id = ?1",
                    params![
                        t.id,
                        t.mode.as_str(),
                        t.primary_config,
                        t.disabled,
                        t.lease_secs as i64,
                        t.renew_secs as i64
                    ],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("tenant {}", t.id)));
            }
            Ok(())
        })
    }

    fn config(&self, tenant: &str, id: &str) -> StoreResult<Option<KmsConfig>> {
        self.read(|s| s.configs.get(&(tenant.to_owned(), id.to_owned())).cloned())
    }

    fn configs(&self, tenant: &str) -> StoreResult<Vec<KmsConfig>> {
        self.read(|s| {
            let mut v: Vec<_> = s
                .configs
                .values()
                .filter(|c| c.tenant == tenant)
                .cloned()
                .collect();
            v.sort_by(|a, b| a.id.cmp(&b.id));
            v
        })
    }

    fn put_config(&self, config: &KmsConfig) -> StoreResult<()> {
        self.write(|tx| put_config_tx(tx, config))
    }

    fn service_key(&self, id: &str) -> StoreResult<Option<ServiceKey>> {
        self.read(|s| s.service_keys.get(id).cloned())
    }

    fn service_keys(&self) -> StoreResult<Vec<ServiceKey>> {
        self.read(|s| {
            let mut v: Vec<_> = s.service_keys.values().cloned().collect();
            v.sort_by(|a, b| a.name.cmp(&b.name));
            v
        })
    }

    fn create_service_key(&self, k: &ServiceKey) -> StoreResult<()> {
        self.write(|tx| {
            let exists: Option<String> = tx
                .query_row("SELECT id FROM service_keys WHERE name = ?1", [&k.name], |r| r.get(0))
                .optional()
                .map_err(db)?;
            if exists.is_some() {
                return Err(StoreError::Conflict(format!("service key {}", k.name)));
            }
            let tenants = k.tenants.as_ref().map(|t| serde_json::to_string(t).unwrap_or_default());
            let ops = serde_json::to_string(&k.ops).unwrap_or_default();
            tx.execute(
                "INSERT INTO service_keys (id, name, secret_hash, tenants, ops, expires_at, revoked, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![k.id, k.name, &k.secret_hash[..], tenants, ops, k.expires_at, k.revoked, k.created_at],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn revoke_service_key(&self, name: &str) -> StoreResult<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE service_keys SET revoked = 1 WHERE name = ?1",
                    [name],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("service key {name}")));
            }
            Ok(())
        })
    }

    fn builtin_keys(&self, tenant: &str, config: &str) -> StoreResult<Vec<BuiltinKey>> {
        self.read(|s| {
            s.builtin
                .get(&(tenant.to_owned(), config.to_owned()))
                .cloned()
                .unwrap_or_default()
        })
    }

    fn put_builtin_key(&self, k: &BuiltinKey) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO builtin_keys (tenant, config, version, sealed, enabled) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant, config, version) DO UPDATE SET sealed = ?4, enabled = ?5",
                params![k.tenant, k.config, k.version, k.sealed, k.enabled],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn derivation_secrets(&self, tenant: &str) -> StoreResult<Vec<DerivationSecretRecord>> {
        self.read(|s| s.secrets.get(tenant).cloned().unwrap_or_default())
    }

    fn recheck(&self) -> StoreResult<()> {
        {
            // Rate-limited on its own clock: a burst of unknown keys costs at most one
            // look per MISS_RECHECK, however recent the last periodic look was.
            let mut forced = self.forced.lock().unwrap_or_else(|p| p.into_inner());
            if forced.is_some_and(|t| t.elapsed() < MISS_RECHECK) {
                return Ok(());
            }
            *forced = Some(Instant::now());
        }
        self.refresh_after(Duration::ZERO)
    }

    fn add_derivation_secret(&self, k: &DerivationSecretRecord, rotate: bool) -> StoreResult<()> {
        self.write(|tx| {
            let state = |s: &str| -> StoreResult<i64> {
                tx.query_row(
                    "SELECT COUNT(*) FROM derivation_secrets WHERE tenant = ?1 AND state = ?2",
                    params![k.tenant, s],
                    |r| r.get(0),
                )
                .map_err(db)
            };
            let current = state("current")?;
            if rotate {
                if state("rotating")? > 0 {
                    return Err(StoreError::Conflict(format!(
                        "a derivation-secret rotation of tenant {} is in progress",
                        k.tenant
                    )));
                }
                if current == 0 {
                    return Err(StoreError::NotFound(format!(
                        "derivation secret of tenant {}",
                        k.tenant
                    )));
                }
                tx.execute(
                    "UPDATE derivation_secrets SET state = 'rotating'
                     WHERE tenant = ?1 AND state = 'current'",
                    [&k.tenant],
                )
                .map_err(db)?;
            } else if current > 0 {
                return Err(StoreError::Conflict(format!(
                    "derivation secret of tenant {}",
                    k.tenant
                )));
            }
            let seq: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM derivation_secrets WHERE tenant = ?1",
                    [&k.tenant],
                    |r| r.get(0),
                )
                .map_err(db)?;
            tx.execute(
                "INSERT INTO derivation_secrets
                 (tenant, id, cache_id, config, key_version, wrapped, state, created_at, seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'current', ?7, ?8)",
                params![
                    k.tenant,
                    k.id,
                    &k.cache_id[..],
                    k.config,
                    k.key_version,
                    k.wrapped,
                    k.created_at,
                    seq
                ],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Conflict(format!("derivation secret {} of {}", k.id, k.tenant))
                }
                e => db(e),
            })?;
            Ok(())
        })
    }

    fn rewrap_derivation_secret(
        &self,
        tenant: &str,
        id: &str,
        config: &str,
        key_version: u32,
        wrapped: &[u8],
    ) -> StoreResult<()> {
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE derivation_secrets SET config = ?3, key_version = ?4, wrapped = ?5
                     WHERE tenant = ?1 AND id = ?2 AND state != 'retired'",
                    params![tenant, id, config, key_version, wrapped],
                )
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "live derivation secret {id} of tenant {tenant}"
                )));
            }
            Ok(())
        })
    }

    fn finish_derivation_rotation(&self, tenant: &str) -> StoreResult<String> {
        let mut id = String::new();
        self.write(|tx| {
            id = tx
                .query_row(
                    "SELECT id FROM derivation_secrets WHERE tenant = ?1 AND state = 'rotating'",
                    [tenant],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?
                .ok_or_else(|| {
                    StoreError::NotFound(format!(
                        "no derivation-secret rotation of tenant {tenant} is in progress"
                    ))
                })?;
            tx.execute(
                "UPDATE derivation_secrets SET state = 'retired'
                 WHERE tenant = ?1 AND state = 'rotating'",
                [tenant],
            )
            .map_err(db)?;
            Ok(())
        })?;
        Ok(id)
    }

    fn sinks(&self, tenant: &str) -> StoreResult<Vec<SinkRecord>> {
        self.read(|s| s.sinks.get(tenant).cloned().unwrap_or_default())
    }

    fn put_sink(&self, k: &SinkRecord) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO audit_sinks (tenant, id, kind, settings) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (tenant, id) DO UPDATE SET kind = ?3, settings = ?4",
                params![k.tenant, k.id, k.kind, k.settings],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::NotFound(format!("tenant {}", k.tenant))
                }
                e => db(e),
            })?;
            Ok(())
        })
    }

    fn remove_sink(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        let mut removed = false;
        self.write(|tx| {
            removed = tx
                .execute(
                    "DELETE FROM audit_sinks WHERE tenant = ?1 AND id = ?2",
                    params![tenant, id],
                )
                .map_err(db)?
                > 0;
            Ok(())
        })?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_sinks_are_put_replaced_listed_and_removed() {
        let s = SqliteStore::in_memory().unwrap();
        let sink = |tenant: &str, id: &str, settings: &str| SinkRecord {
            tenant: tenant.into(),
            id: id.into(),
            kind: "webhook".into(),
            settings: settings.into(),
        };
        // The tenant must exist.
        assert!(matches!(
            s.put_sink(&sink("acme", "a", "x")),
            Err(StoreError::NotFound(_))
        ));
        s.create_tenant(
            &Tenant {
                id: "acme".into(),
                mode: TenantMode::Remote,
                primary_config: "c".into(),
                disabled: false,
                lease_secs: 3600,
                renew_secs: 1200,
            },
            &KmsConfig {
                tenant: "acme".into(),
                id: "c".into(),
                provider: "builtin".into(),
                state: ConfigState::Active,
                settings: "{}".into(),
            },
        )
        .unwrap();
        s.put_sink(&sink("acme", "b", "1")).unwrap();
        s.put_sink(&sink("acme", "a", "2")).unwrap();
        s.put_sink(&sink("acme", "b", "3")).unwrap();
        let ids: Vec<_> = s
            .sinks("acme")
            .unwrap()
            .into_iter()
            .map(|k| (k.id, k.settings))
            .collect();
        assert_eq!(ids, [("a".into(), "2".into()), ("b".into(), "3".into())]);
        assert!(s.sinks("globex").unwrap().is_empty());
        assert!(s.remove_sink("acme", "a").unwrap());
        assert!(!s.remove_sink("acme", "a").unwrap());
        assert_eq!(s.sinks("acme").unwrap().len(), 1);
        assert!(!format!("{:?}", sink("acme", "a", "SEALED")).contains("SEALED"));
    }

    /// An admin command writes through its own connection; a running server's store sees
    /// the change within [`RECHECK`] (API.md: "the server sees the change within a few
    /// seconds").
    #[test]
    fn changes_from_another_connection_become_visible() {
        let dir = std::env::temp_dir().join(format!(
            "keystead-sqlite-{}",
            hex::encode(crate::util::random_bytes::<6>())
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keystead.db");
        let server = SqliteStore::open(&path).unwrap();
        let admin = SqliteStore::open(&path).unwrap();
        let t = Tenant {
            id: "acme".into(),
            mode: TenantMode::Leasing,
            primary_config: "builtin-1".into(),
            disabled: false,
            lease_secs: 3600,
            renew_secs: 1200,
        };
        let c = KmsConfig {
            tenant: "acme".into(),
            id: "builtin-1".into(),
            provider: "builtin".into(),
            state: ConfigState::Active,
            settings: "{}".into(),
        };
        assert!(server.tenant("acme").unwrap().is_none());
        admin.create_tenant(&t, &c).unwrap();
        let deadline = Instant::now() + RECHECK * 4;
        while server.tenant("acme").unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "change not seen within {:?}",
                RECHECK * 4
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // And a disable made later is seen too.
        admin
            .update_tenant(&Tenant {
                disabled: true,
                ..t.clone()
            })
            .unwrap();
        let deadline = Instant::now() + RECHECK * 4;
        while !server.tenant("acme").unwrap().unwrap().disabled {
            assert!(Instant::now() < deadline, "disable not seen");
            std::thread::sleep(Duration::from_millis(50));
        }
        // A lookup miss may force the look well before RECHECK.
        admin
            .create_tenant(
                &Tenant {
                    id: "globex".into(),
                    ..t.clone()
                },
                &KmsConfig {
                    tenant: "globex".into(),
                    ..c.clone()
                },
            )
            .unwrap();
        server.recheck().unwrap();
        assert!(server.tenant("globex").unwrap().is_some());
        // Migrations are recorded once; reopening does not re-run them.
        drop(server);
        drop(admin);
        let again = SqliteStore::open(&path).unwrap();
        let n: i64 = again
            .lock()
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(usize::try_from(n).unwrap(), MIGRATIONS.len());
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
