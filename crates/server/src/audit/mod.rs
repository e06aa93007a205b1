//! The audit pipeline (issue 6; shared/API.md "Audit event"): every key operation, refused
//! request and application event becomes an [`AuditEvent`], chained per (tenant, ES
//! instance) and written to a durable spool before the operation answers
//! ([`spool`], [`chain`]), then delivered at least once to the tenant's sinks
//! ([`deliver`], [`sink`]). See docs/AUDIT.md.

pub mod chain;
pub mod deliver;
pub mod outbox;
pub mod sink;
pub mod spool;
pub mod tenant_sinks;

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;

pub use deliver::{Delivery, DeliveryOptions, SinkSource};
pub use spool::{FullPolicy, Spool, SpoolConfig};

use crate::kms::BoxFuture;
use crate::kms::builtin::BuiltinKms;

use serde::Serialize;
use serde_json::Value;

/// One audit event. Never holds a DEK, EDEK plaintext or credential.
///
/// Fields are declared in alphabetical order and every JSON map inside is sorted, so the
/// serialized form is the canonical JSON the hash chain covers (`chain::canonical`).
#[derive(Clone, Debug, Serialize)]
pub struct AuditEvent {
    /// `wrap`, `unwrap`, `batch_wrap`, `batch_unwrap`, `rekey`, `app_event`, `lease_renewed`, ...
    pub action: String,
    /// The API error code of a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Item count for batches (paths for a derive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// Operation details: a derive's purpose and field paths, an operator change, a
    /// checkpoint's signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    /// The ES instance that handled the request.
    pub es_instance: String,
    /// The application event (for `app_event`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
    /// Failed items of a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<usize>,
    /// Unique id, for de-duplication under at-least-once delivery.
    pub id: String,
    /// KMS provider, config and key version involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms: Option<KmsInfo>,
    /// The request metadata as the caller sent it.
    pub metadata: Value,
    /// `success` or `failure`.
    pub outcome: &'static str,
    /// Hex hash of the previous event of this (tenant, instance) chain; set by the spool.
    pub prev_hash: String,
    /// The authenticated service-key id (set by the ES, never by the caller).
    pub principal: String,
    /// Position in the (tenant, instance) chain, from 1; set by the spool.
    pub seq: u64,
    /// Tenant (empty: the ES operator's own chain, for requests naming no known tenant).
    pub tenant_id: String,
    /// RFC 3339 UTC.
    pub time: String,
}

/// A new event id: 64 random bits fixed per process and a 64-bit counter, hex (unique
/// across instances and restarts without an RNG call per event).
pub fn new_event_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<[u8; 8]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(crate::util::random_bytes::<8>);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(prefix);
    id[8..].copy_from_slice(&n.to_be_bytes());
    hex::encode(id)
}

/// The KMS part of an event (fields in alphabetical order: canonical JSON).
#[derive(Clone, Debug, Serialize)]
pub struct KmsInfo {
    /// Config id.
    pub config_id: String,
    /// Key version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
    /// Provider name.
    pub provider: String,
}

/// Why an event could not be recorded.
#[derive(Clone, Debug, thiserror::Error)]
#[error("audit sink failed: {0}")]
pub struct AuditError(pub String);

/// Where events go. `record` resolves only once the event is durable: a key operation
/// whose event cannot be recorded fails closed (`503 audit_unavailable`).
pub trait AuditSink: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: AuditEvent) -> BoxFuture<'_, Result<(), AuditError>>;

    /// Prometheus text of the pipeline (spool depth, deliveries), if any.
    fn metrics_text(&self) -> String {
        String::new()
    }
}

/// Records nothing: `keystead serve --unsafe-no-audit` (benchmarks of the audit cost).
pub struct NullSink;

impl AuditSink for NullSink {
    fn record(&self, _event: AuditEvent) -> BoxFuture<'_, Result<(), AuditError>> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The audit pipeline: the durable spool (hash chain, checkpoints) and the delivery to
/// each tenant's sinks.
pub struct Auditor {
    spool: Arc<Spool>,
    delivery: Mutex<Option<Arc<Delivery>>>,
    public_key: String,
}

impl Auditor {
    /// Opens the spool (recovering what a crash left) and starts its writer. Delivery
    /// starts with [`Self::start_delivery`].
    pub fn open(cfg: SpoolConfig, key: SigningKey) -> std::io::Result<Arc<Self>> {
        let public_key = hex::encode(key.verifying_key().as_bytes());
        Ok(Arc::new(Self {
            spool: Spool::open(cfg, key)?,
            delivery: Mutex::new(None),
            public_key,
        }))
    }

    /// Starts delivering to the sinks `source` names (needs a Tokio runtime).
    pub fn start_delivery(&self, source: Arc<dyn SinkSource>, opts: DeliveryOptions) {
        let d = Delivery::start(self.spool.clone(), source, opts);
        *self.delivery.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
    }

    /// The checkpoint public key (hex) tenants pin for `keystead audit verify`.
    pub fn public_key_hex(&self) -> &str {
        &self.public_key
    }

    /// Graceful stop: signs a final checkpoint per tenant, then lets delivery run until
    /// every sink caught up or `grace` passed. What is left is delivered after a restart.
    pub async fn shutdown(&self, grace: Duration) {
        self.spool.shutdown().await;
        let d = self
            .delivery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(d) = d {
            d.shutdown(grace).await;
        }
    }
}

impl AuditSink for Auditor {
    fn record(&self, event: AuditEvent) -> BoxFuture<'_, Result<(), AuditError>> {
        Box::pin(self.spool.append(event))
    }

    /// Spool depth, bytes, oldest undelivered age, deliveries and failures.
    fn metrics_text(&self) -> String {
        let d = self
            .delivery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        deliver::render_metrics(
            &self.spool,
            d.as_deref(),
            crate::util::unix_now().max(0) as u64,
        )
    }
}

/// The instance's checkpoint signing key: `<data dir>/audit/signing.key`, sealed under the
/// root key; created on first use.
pub fn load_signing_key(data_dir: &Path, builtin: &BuiltinKms) -> Result<SigningKey, AuditError> {
    let dir = data_dir.join("audit");
    std::fs::create_dir_all(&dir).map_err(|e| AuditError(e.to_string()))?;
    let path = dir.join("signing.key");
    const CFG: &str = "audit-signing-key";
    if let Ok(stored) = std::fs::read_to_string(&path) {
        let seed = builtin
            .open_settings("", CFG, stored.trim())
            .map_err(|e| AuditError(e.to_string()))?;
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| AuditError("audit signing key has a wrong length".into()))?;
        return Ok(SigningKey::from_bytes(&seed));
    }
    let seed = zeroize::Zeroizing::new(crate::util::random_bytes::<32>());
    let sealed = builtin
        .seal_settings("", CFG, seed.as_slice())
        .map_err(|e| AuditError(e.to_string()))?;
    let mut opts = OpenOptions::new();
    opts.create_new(true).write(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).map_err(|e| AuditError(e.to_string()))?;
    f.write_all(sealed.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| AuditError(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Appends events as JSON lines to a file (operator commands run outside the server).
pub struct JsonLinesSink {
    file: Mutex<BufWriter<File>>,
}

impl JsonLinesSink {
    /// Opens (creating, mode 0600) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut opts = OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        Ok(Self::from_file(opts.open(path)?))
    }

    /// Appends to an open file.
    pub fn from_file(file: File) -> Self {
        Self {
            file: Mutex::new(BufWriter::new(file)),
        }
    }

    fn write(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(event).map_err(|e| AuditError(e.to_string()))?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line)
            .and_then(|()| f.flush())
            .and_then(|()| f.get_ref().sync_data())
            .map_err(|e| AuditError(e.to_string()))
    }
}

impl AuditSink for JsonLinesSink {
    fn record(&self, event: AuditEvent) -> BoxFuture<'_, Result<(), AuditError>> {
        let r = self.write(&event);
        Box::pin(std::future::ready(r))
    }
}

/// Keeps events in memory (tests).
#[derive(Default)]
pub struct MemorySink(pub Mutex<Vec<AuditEvent>>);

impl AuditSink for MemorySink {
    fn record(&self, event: AuditEvent) -> BoxFuture<'_, Result<(), AuditError>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(event);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_event_is_canonical() {
        let ev = AuditEvent {
            action: "wrap".into(),
            code: Some("kms_denied".into()),
            count: Some(3),
            detail: Some(serde_json::json!({"z": 1, "a": [{"y": 1, "b": 2}]})),
            es_instance: "es-1".into(),
            event: None,
            failures: Some(1),
            id: "id".into(),
            kms: Some(KmsInfo {
                provider: "aws".into(),
                config_id: "c".into(),
                key_version: Some(2),
            }),
            metadata: serde_json::json!({"requesting_id": "u", "custom": {"k": "v", "a": "\"]\\"}}),
            outcome: "failure",
            prev_hash: "00".into(),
            principal: "p".into(),
            seq: 9,
            tenant_id: "t".into(),
            time: "2026-11-22T00:00:00Z".into(),
        };
        let bytes = serde_json::to_vec(&ev).unwrap();
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(chain::canonical(&parsed), bytes);
    }
}
