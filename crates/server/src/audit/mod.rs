//! Audit events (shared/API.md "Audit event") behind a small interface.
//! them as JSON lines to a file in the data dir; the durable, per-tenant SIEM pipeline
//! (spool, sinks, hash chain, checkpoints) replaces the sink without touching callers.

pub mod sink;

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

/// One audit event. Never holds a DEK, EDEK plaintext or credential.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEvent {
    /// Unique id, for de-duplication under at-least-once delivery.
    pub id: String,
    /// RFC 3339 UTC.
    pub time: String,
    /// Tenant.
    pub tenant_id: String,
    /// The ES instance that handled the request.
    pub es_instance: String,
    /// The authenticated service-key id (set by the ES, never by the caller).
    pub principal: String,
    /// `wrap`, `unwrap`, `batch_wrap`, `batch_unwrap`, `rekey`, `app_event`, `lease_renewed`, ...
    pub action: String,
    /// `success` or `failure`.
    pub outcome: &'static str,
    /// The API error code of a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// KMS provider, config and key version involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms: Option<KmsInfo>,
    /// Operation details: a derive's purpose and field paths, an operator change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
    /// Item count for batches (paths for a derive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// Failed items of a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failures: Option<usize>,
    /// The request metadata as the caller sent it.
    pub metadata: Value,
    /// The application event (for `app_event`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
}

/// The KMS part of an event.
#[derive(Clone, Debug, Serialize)]
pub struct KmsInfo {
    /// Provider name.
    pub provider: String,
    /// Config id.
    pub config_id: String,
    /// Key version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_version: Option<u32>,
}

/// Why an event could not be recorded.
#[derive(Debug, thiserror::Error)]
#[error("audit sink failed: {0}")]
pub struct AuditError(pub String);

/// Where events go. `record` returns only once the event is written: a key operation whose
/// event cannot be recorded fails closed (`503 audit_unavailable`).
pub trait AuditSink: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError>;
}

/// Appends events as JSON lines to a file.
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
        Ok(Self {
            file: Mutex::new(BufWriter::new(opts.open(path)?)),
        })
    }
}

impl AuditSink for JsonLinesSink {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let mut line = serde_json::to_vec(event).map_err(|e| AuditError(e.to_string()))?;
        line.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&line)
            .and_then(|()| f.flush())
            .map_err(|e| AuditError(e.to_string()))
    }
}

/// Keeps events in memory (tests).
#[derive(Default)]
pub struct MemorySink(pub Mutex<Vec<AuditEvent>>);

impl AuditSink for MemorySink {
    fn record(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(event.clone());
        Ok(())
    }
}
