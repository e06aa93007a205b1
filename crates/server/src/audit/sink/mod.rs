//! Where a tenant's audit events go: per-tenant sinks (HTTPS webhook, Splunk HEC, syslog
//! RFC 5424 over TCP or TLS, JSON-lines file, stdout in `--dev`).
//!
//! A sink receives events in spool order, each as the exact JSON bytes that were spooled
//! (the bytes the hash chain covers), and answers `Ok` only once the receiver has accepted
//! the whole batch. The delivery loop (`audit::deliver`) retries failed batches with
//! backoff, so a sink never drops events itself: at-least-once delivery, duplicates allowed
//! (events carry a unique `id`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::kms::BoxFuture;
use crate::kms::net::OutboundPolicy;

/// A delivery attempt that did not succeed. Never contains event contents or credentials.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    /// Human text for logs (no event contents, no credentials).
    pub message: String,
    /// The receiver asked to wait this long (HTTP `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl SinkError {
    /// A failure with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// One configured destination of a tenant's events.
pub trait Sink: Send + Sync + 'static {
    /// `webhook`, `splunk_hec`, `syslog`, `file` or `stdout` (metrics label).
    fn kind(&self) -> &'static str;

    /// Delivers `events` (each one event's JSON, as spooled) in order. `Ok` only when the
    /// receiver accepted all of them; on `Err` the whole batch is retried later.
    fn deliver<'a>(&'a self, events: &'a [Arc<[u8]>]) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// What a sink is built from (operator defaults, dev mode, and the outbound policy that
/// also guards KMS connections: no SSRF through a tenant's SIEM settings).
#[derive(Clone, Debug)]
pub struct SinkContext {
    /// Outbound connection policy (checked after DNS resolution).
    pub outbound: OutboundPolicy,
    /// Directory under which `file` sinks write (relative paths only, no `..`).
    pub file_dir: PathBuf,
    /// `--dev`: the `stdout` sink is allowed.
    pub dev: bool,
    /// Timeout of one delivery attempt.
    pub timeout: Duration,
    /// This ES instance's name (syslog HOSTNAME, HEC host).
    pub instance: String,
}

/// A sink's settings (JSON, `kind` tagged). Credentials in them are stored sealed.
#[derive(Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkSettings {
    /// HTTPS POST of JSON arrays of events.
    Webhook {
        /// `https://` URL.
        url: String,
        /// Sent as `Authorization: Bearer <token>`.
        #[serde(default)]
        token: Option<String>,
    },
    /// Splunk HTTP Event Collector (`/services/collector/event`).
    SplunkHec {
        /// `https://host:8088/services/collector/event`.
        url: String,
        /// HEC token, sent as `Authorization: Splunk <token>`.
        token: String,
        /// Splunk index.
        #[serde(default)]
        index: Option<String>,
        /// Sourcetype (default `keystead:audit`).
        #[serde(default)]
        sourcetype: Option<String>,
    },
    /// Syslog RFC 5424 over TCP (RFC 6587 octet counting) or TLS (RFC 5425).
    Syslog {
        /// `host:port`.
        address: String,
        /// TLS (RFC 5425); plain TCP only when the outbound policy allows plain transport.
        #[serde(default)]
        tls: bool,
        /// TLS server name, if not the host of `address`.
        #[serde(default)]
        server_name: Option<String>,
        /// APP-NAME (default `keystead`).
        #[serde(default)]
        app_name: Option<String>,
        /// Facility number 0–23 (default 13, log audit).
        #[serde(default)]
        facility: Option<u8>,
    },
    /// JSON lines appended to a file under the operator's audit file directory.
    File {
        /// Relative path under the file directory.
        path: String,
    },
    /// JSON lines on standard output (`--dev` only).
    Stdout,
}

impl std::fmt::Debug for SinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print tokens.
        f.write_str(match self {
            Self::Webhook { .. } => "SinkSettings::Webhook",
            Self::SplunkHec { .. } => "SinkSettings::SplunkHec",
            Self::Syslog { .. } => "SinkSettings::Syslog",
            Self::File { .. } => "SinkSettings::File",
            Self::Stdout => "SinkSettings::Stdout",
        })
    }
}

/// Builds a sink. Refuses settings the context does not allow (a `stdout` sink outside
/// `--dev`, a file path escaping the file directory, a URL the outbound policy refuses).
pub fn build(_settings: &SinkSettings, _ctx: &SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
    Err(SinkError::new("audit sinks are not built yet"))
}
