//! Where a tenant's audit events go: per-tenant sinks (HTTPS webhook, Splunk HEC, syslog
//! RFC 5424 over TCP or TLS, JSON-lines file, stdout in `--dev`).
//!
//! A sink receives events in spool order, each as the exact JSON bytes that were spooled
//! (the bytes the hash chain covers), and answers `Ok` only once the receiver has accepted
//! the whole batch. The delivery loop (`audit::deliver`) retries failed batches with
//! backoff, so a sink never drops events itself: at-least-once delivery, duplicates allowed
//! (events carry a unique `id`).

mod file;
mod http;
mod resolver;
mod syslog;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::kms::BoxFuture;
use crate::kms::net::OutboundPolicy;
use crate::kms::secret::Secret;

pub use resolver::{NamedSink, Resolver, sealing_label};
pub use syslog::{PEN, SD_ID};

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

    /// How many times the configured batch limits this sink takes at once. A remote
    /// receiver gets the configured size; a local file takes larger batches, since each
    /// one costs a write, an `fdatasync` and a cursor update whatever its size.
    fn batch_scale(&self) -> usize {
        1
    }
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
        token: Option<Secret>,
    },
    /// Splunk HTTP Event Collector (`/services/collector/event`).
    SplunkHec {
        /// `https://host:8088/services/collector/event`.
        url: String,
        /// HEC token, sent as `Authorization: Splunk <token>`.
        token: Secret,
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

impl SinkSettings {
    /// The kind, as spelled in the settings' `kind` field (and [`Sink::kind`]).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Webhook { .. } => "webhook",
            Self::SplunkHec { .. } => "splunk_hec",
            Self::Syslog { .. } => "syslog",
            Self::File { .. } => "file",
            Self::Stdout => "stdout",
        }
    }

    /// Parses settings JSON. The error names the problem (unknown or missing field, bad
    /// kind, syntax and position) but never quotes a value from the input, which may be a
    /// credential in the wrong place.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SinkError> {
        serde_json::from_slice(bytes).map_err(|e| SinkError::new(settings_error(&e)))
    }
}

/// A settings parse error without input values (serde's "invalid type: string \"…\""
/// would quote them).
fn settings_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let quotes_only_names = ["unknown field", "missing field", "unknown variant"]
        .iter()
        .any(|p| text.starts_with(p));
    match e.classify() {
        serde_json::error::Category::Data if quotes_only_names => {
            format!("bad sink settings: {text}")
        }
        serde_json::error::Category::Data => format!(
            "bad sink settings: a field has the wrong type or value (line {}, column {})",
            e.line(),
            e.column()
        ),
        _ => format!(
            "sink settings are not JSON (line {}, column {})",
            e.line(),
            e.column()
        ),
    }
}

/// Builds a sink. Refuses settings the context does not allow (a `stdout` sink outside
/// `--dev`, a file path escaping the file directory, a URL the outbound policy refuses,
/// plain-TCP syslog when the policy refuses plain transport). Opens no connection and
/// touches no file: those happen at the first delivery.
pub fn build(settings: &SinkSettings, ctx: &SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
    Ok(match settings {
        SinkSettings::Webhook { url, token } => Arc::new(http::Webhook::new(url, token, ctx)?),
        SinkSettings::SplunkHec {
            url,
            token,
            index,
            sourcetype,
        } => Arc::new(http::SplunkHec::new(
            url,
            token,
            index.as_deref(),
            sourcetype.as_deref(),
            ctx,
        )?),
        SinkSettings::Syslog {
            address,
            tls,
            server_name,
            app_name,
            facility,
        } => Arc::new(syslog::Syslog::new(
            &syslog::Options {
                address,
                tls: *tls,
                server_name: server_name.as_deref(),
                app_name: app_name.as_deref(),
                facility: *facility,
            },
            ctx,
        )?),
        SinkSettings::File { path } => Arc::new(file::FileSink::new(path, ctx)?),
        SinkSettings::Stdout => {
            if !ctx.dev {
                return Err(SinkError::new(
                    "the stdout audit sink is only allowed in --dev mode",
                ));
            }
            Arc::new(file::StdoutSink)
        }
    })
}

/// The fields of an event a sink needs besides its bytes (syslog structured data, the
/// HEC time). Parsing also checks that the bytes are exactly one JSON object, so that
/// framing them into an array, a HEC envelope or a line cannot change their meaning.
#[derive(Deserialize)]
struct EventHead {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    tenant_id: Option<String>,
    #[serde(default)]
    seq: Option<serde_json::Value>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
}

impl EventHead {
    /// Parses event number `i` of a batch.
    fn parse(i: usize, event: &[u8]) -> Result<Self, SinkError> {
        // `serde_json::from_slice` refuses trailing data after the object.
        serde_json::from_slice(event)
            .map_err(|_| SinkError::new(format!("event {i} of the batch is not a JSON object")))
    }
}

/// Checks that event number `i` of a batch is exactly one JSON object, like
/// [`EventHead::parse`] but without building anything (the sinks that frame events without
/// reading their fields: JSON lines and webhook arrays).
fn check_object(i: usize, event: &[u8]) -> Result<(), SinkError> {
    let object = event.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(event).is_ok();
    if object {
        Ok(())
    } else {
        Err(SinkError::new(format!(
            "event {i} of the batch is not a JSON object"
        )))
    }
}

/// Checks that every event of a batch is one JSON object on one line (spooled events
/// are compact JSON; a line break would split a JSON-lines record).
fn check_lines(events: &[Arc<[u8]>]) -> Result<(), SinkError> {
    for (i, e) in events.iter().enumerate() {
        check_object(i, e)?;
        if e.iter().any(|b| matches!(b, b'\n' | b'\r')) {
            return Err(SinkError::new(format!(
                "event {i} of the batch is not a single line"
            )));
        }
    }
    Ok(())
}

/// The URL without path, query or credentials, for messages (a webhook URL may carry a
/// secret in its path or query).
fn endpoint(url: &reqwest::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => url.scheme().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn settings_errors_never_quote_values() {
        // A token pasted into a numeric field: the message must not echo it.
        let e = SinkSettings::from_json(
            br#"{"kind":"syslog","address":"h:514","facility":"tok-SECRET-123"}"#,
        )
        .err()
        .unwrap();
        assert!(!e.message.contains("SECRET"), "{}", e.message);
        assert!(e.message.contains("wrong type"), "{}", e.message);
        let e = SinkSettings::from_json(br#"{"kind":"webhook","url":"https://x","tokn":"a"}"#)
            .err()
            .unwrap();
        assert!(e.message.contains("unknown field `tokn`"), "{}", e.message);
        let e = SinkSettings::from_json(br#"{"kind":"carrier_pigeon"}"#)
            .err()
            .unwrap();
        assert!(e.message.contains("unknown variant"), "{}", e.message);
        let e = SinkSettings::from_json(b"{").err().unwrap();
        assert!(e.message.contains("not JSON"), "{}", e.message);
        // An empty credential is refused (Secret).
        assert!(
            SinkSettings::from_json(br#"{"kind":"splunk_hec","url":"https://x","token":""}"#)
                .is_err()
        );
    }

    #[test]
    fn settings_debug_hides_tokens() {
        let s = SinkSettings::from_json(
            br#"{"kind":"webhook","url":"https://x/hook","token":"tok-SECRET-123"}"#,
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("SECRET"));
        assert_eq!(s.kind(), "webhook");
    }

    #[test]
    fn events_must_be_one_json_object() {
        assert!(EventHead::parse(0, br#"{"id":"a"}"#).is_ok());
        assert!(check_object(0, br#" {"id":"a","n":[1,{"x":null}]}"#).is_ok());
        for bad in [&b"[1]"[..], b"{} {}", b"{\"id\":1", b"", b"\"x\""] {
            assert!(EventHead::parse(0, bad).is_err(), "{bad:?}");
            assert!(check_object(0, bad).is_err(), "{bad:?}");
        }
        let ok: Arc<[u8]> = Arc::from(&br#"{"a":"x\ny"}"#[..]);
        assert!(check_lines(&[ok]).is_ok());
        let two_lines: Arc<[u8]> = Arc::from(&b"{\"a\":\n1}"[..]);
        assert!(check_lines(&[two_lines]).is_err());
    }
}
