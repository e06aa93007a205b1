//! Syslog: RFC 5424 messages in RFC 6587 octet-counted frames (`<len> <msg>`) over TCP, or
//! over TLS (RFC 5425, same framing).
//!
//! One message per event:
//!
//! ```text
//! <PRI>1 TIMESTAMP HOSTNAME APP-NAME - MSGID [keystead@32473 id="…" tenant="…" seq="…" action="…" outcome="…"] EVENT-JSON
//! ```
//!
//! PRI is facility × 8 + severity (5 notice for a success, 4 warning otherwise), TIMESTAMP
//! the event's `time`, HOSTNAME this ES instance, MSGID the action. The MSG is the event's
//! JSON exactly as spooled (no BOM: RFC 5424 allows MSG-ANY), so a receiver can verify the
//! hash chain over it.
//!
//! **Limit:** TCP syslog has no application-level acknowledgement. A batch counts as
//! accepted once it is written and flushed to the socket; a receiver that dies after that
//! but before processing loses what was in flight. Before each batch the connection is
//! checked for a close by the receiver (and reopened), which catches a receiver that went
//! away between batches. RELP would close the gap and is not implemented.

use std::fmt;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use super::{EventHead, Sink, SinkContext, SinkError};
use crate::kms::BoxFuture;

/// The private enterprise number in the SD-ID: 32473 is the number RFC 5612 reserves
/// for documentation and examples. It is a placeholder until Keystead has its own PEN;
/// receivers should match on the whole SD-ID.
pub const PEN: u32 = 32473;
/// The SD-ID of the structured-data element every message carries.
pub const SD_ID: &str = "keystead@32473";

/// The settings of a syslog sink, borrowed from [`super::SinkSettings::Syslog`].
pub(super) struct Options<'a> {
    pub(super) address: &'a str,
    pub(super) tls: bool,
    pub(super) server_name: Option<&'a str>,
    pub(super) app_name: Option<&'a str>,
    pub(super) facility: Option<u8>,
}

/// An open connection to the receiver.
struct Conn {
    /// A second handle on the socket, for a non-blocking `MSG_PEEK`.
    probe: socket2::Socket,
    /// Set by the reader task at end-of-stream or a read error.
    closed: Arc<AtomicBool>,
    /// Reads (and discards) what the receiver sends: TLS session tickets and
    /// `close_notify`, and the end of the stream, which marks the connection closed.
    reader: tokio::task::JoinHandle<()>,
    writer: Box<dyn AsyncWrite + Send + Sync + Unpin>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Conn {
    /// A connection over `tcp` (whose descriptor is duplicated for the probe), split into
    /// the reader task and the writer.
    fn new<S>(probe: socket2::Socket, stream: S) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + Sync + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        let closed = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(drain(read, closed.clone()));
        Self {
            probe,
            closed,
            reader,
            writer: Box::new(write),
        }
    }

    /// Whether the receiver closed the connection (or it broke). A syslog receiver sends
    /// nothing but TLS records, so the socket is judged by a `MSG_PEEK`: nothing pending
    /// means open, end-of-stream or an error means closed. Pending bytes (a TLS
    /// `close_notify` or session ticket) are left to the reader task, briefly awaited.
    async fn peer_closed(&self) -> bool {
        for _ in 0..PENDING_POLLS {
            if self.closed.load(Ordering::Acquire) {
                return true;
            }
            let mut buf = [MaybeUninit::<u8>::uninit(); 1];
            match self.probe.peek(&mut buf) {
                Ok(0) => return true,
                Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        self.closed.load(Ordering::Acquire)
    }
}

/// How many times [`Conn::peer_closed`] lets the reader task catch up with pending bytes.
const PENDING_POLLS: usize = 100;

async fn drain(mut read: impl AsyncRead + Unpin, closed: Arc<AtomicBool>) {
    let mut buf = [0u8; 1024];
    loop {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    closed.store(true, Ordering::Release);
}

/// A syslog receiver over TCP or TLS.
pub(super) struct Syslog {
    host: String,
    port: u16,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    facility: u8,
    app_name: String,
    hostname: String,
    ctx: SinkContext,
    conn: Mutex<Option<Conn>>,
}

impl fmt::Debug for Syslog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Syslog")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6 literals).
fn split_address(address: &str) -> Result<(String, u16), SinkError> {
    let bad = || SinkError::new("syslog address must be host:port");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Printable US-ASCII (33–126) only, at most `max` characters, `-` (NILVALUE) if empty:
/// the rule for HOSTNAME, APP-NAME and MSGID (RFC 5424 §6.2).
fn header_field(s: &str, max: usize) -> String {
    let out: String = s
        .chars()
        .filter(|c| matches!(c, '!'..='~'))
        .take(max)
        .collect();
    if out.is_empty() { "-".into() } else { out }
}

/// Escapes an SD-PARAM value (RFC 5424 §6.3.3): `"`, `\` and `]` get a backslash.
fn escape_param(out: &mut String, value: &str) {
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

impl Syslog {
    pub(super) fn new(o: &Options<'_>, ctx: &SinkContext) -> Result<Self, SinkError> {
        let (host, port) = split_address(o.address)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            ctx.outbound
                .check(ip)
                .map_err(|e| SinkError::new(format!("syslog {host}: {e}")))?;
        }
        let facility = o.facility.unwrap_or(13);
        if facility > 23 {
            return Err(SinkError::new("syslog facility must be 0 to 23"));
        }
        let tls = if o.tls {
            let name = o.server_name.unwrap_or(&host).to_owned();
            let name = rustls::pki_types::ServerName::try_from(name)
                .map_err(|_| SinkError::new("syslog server_name is not a DNS name or IP"))?;
            let config = ctx
                .outbound
                .tls_config()
                .map_err(|e| SinkError::new(format!("syslog TLS: {e}")))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else if !ctx.outbound.allow_plain_http {
            return Err(SinkError::new(
                "plain-TCP syslog is refused by the outbound policy; set \"tls\": true",
            ));
        } else {
            None
        };
        Ok(Self {
            host,
            port,
            tls,
            facility,
            app_name: header_field(o.app_name.unwrap_or("keystead"), 48),
            hostname: header_field(&ctx.instance, 255),
            ctx: ctx.clone(),
            conn: Mutex::new(None),
        })
    }

    /// One RFC 5424 message for event number `i`.
    fn message(&self, i: usize, event: &[u8]) -> Result<Vec<u8>, SinkError> {
        let head = EventHead::parse(i, event)?;
        let severity = if head.outcome.as_deref() == Some("success") {
            5
        } else {
            4
        };
        let pri = u16::from(self.facility) * 8 + severity;
        // The event's time is RFC 3339 UTC, a valid TIMESTAMP, when it parses as such.
        let timestamp = head
            .time
            .as_deref()
            .filter(|t| crate::util::parse_rfc3339_utc(t).is_some() && t.len() <= 32)
            .unwrap_or("-");
        let msgid = header_field(head.action.as_deref().unwrap_or(""), 32);
        let mut m = format!(
            "<{pri}>1 {timestamp} {} {} - {msgid} [{SD_ID}",
            self.hostname, self.app_name
        );
        let seq = head.seq.as_ref().map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        for (name, value) in [
            ("id", head.id.as_deref()),
            ("tenant", head.tenant_id.as_deref()),
            ("seq", seq.as_deref()),
            ("action", head.action.as_deref()),
            ("outcome", head.outcome.as_deref()),
        ] {
            if let Some(v) = value {
                m.push(' ');
                m.push_str(name);
                m.push_str("=\"");
                escape_param(&mut m, v);
                m.push('"');
            }
        }
        m.push_str("] ");
        let mut out = m.into_bytes();
        out.extend_from_slice(event);
        Ok(out)
    }

    /// The batch as octet-counted frames.
    fn frames(&self, events: &[Arc<[u8]>]) -> Result<Vec<u8>, SinkError> {
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let msg = self.message(i, e)?;
            out.extend_from_slice(format!("{} ", msg.len()).as_bytes());
            out.extend_from_slice(&msg);
        }
        Ok(out)
    }

    async fn connect(&self) -> Result<Conn, SinkError> {
        let fail = |e: &dyn fmt::Display| {
            SinkError::new(format!("syslog {}:{}: {e}", self.host, self.port))
        };
        let tcp = self
            .ctx
            .outbound
            .connect_tcp(&self.host, self.port, self.ctx.timeout)
            .await
            .map_err(|e| fail(&e))?;
        let probe = socket2::SockRef::from(&tcp)
            .try_clone()
            .map_err(|e| fail(&e))?;
        let Some((connector, name)) = &self.tls else {
            return Ok(Conn::new(probe, tcp));
        };
        let tls = tokio::time::timeout(self.ctx.timeout, connector.connect(name.clone(), tcp))
            .await
            .map_err(|_| fail(&"TLS handshake timed out"))?
            .map_err(|e| fail(&format!("TLS: {e}")))?;
        Ok(Conn::new(probe, tls))
    }

    async fn send(&self, frames: &[u8]) -> Result<(), SinkError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref()
            && c.peer_closed().await
        {
            *guard = None;
        }
        if guard.is_none() {
            *guard = Some(self.connect().await?);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(SinkError::new("syslog: no connection"));
        };
        let write = async {
            conn.writer.write_all(frames).await?;
            conn.writer.flush().await
        };
        match tokio::time::timeout(self.ctx.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                *guard = None;
                Err(SinkError::new(format!(
                    "syslog {}:{}: write failed: {e}",
                    self.host, self.port
                )))
            }
            Err(_) => {
                *guard = None;
                Err(SinkError::new(format!(
                    "syslog {}:{}: write timed out",
                    self.host, self.port
                )))
            }
        }
    }
}

impl Sink for Syslog {
    fn kind(&self) -> &'static str {
        "syslog"
    }

    fn deliver<'a>(&'a self, events: &'a [Arc<[u8]>]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let frames = self.frames(events)?;
            self.send(&frames).await
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;
    use crate::kms::net::OutboundPolicy;

    fn ctx(policy: OutboundPolicy) -> SinkContext {
        SinkContext {
            outbound: policy,
            file_dir: std::env::temp_dir(),
            dev: false,
            timeout: Duration::from_secs(5),
            instance: "es 1\u{e9}".into(),
        }
    }

    fn opts(address: &str, tls: bool) -> Options<'_> {
        Options {
            address,
            tls,
            server_name: None,
            app_name: None,
            facility: None,
        }
    }

    #[test]
    fn addresses_and_policy() {
        assert_eq!(split_address("a.b:514").unwrap(), ("a.b".into(), 514));
        assert_eq!(split_address("[::1]:6514").unwrap(), ("::1".into(), 6514));
        for bad in ["a.b", "a.b:0", ":514", "::1:514", "a:b", "[::1:514"] {
            assert!(split_address(bad).is_err(), "{bad}");
        }
        let strict = ctx(OutboundPolicy::default());
        // Plain TCP needs the policy's consent; private literals need the allow-list.
        assert!(Syslog::new(&opts("siem.example.com:514", false), &strict).is_err());
        assert!(Syslog::new(&opts("10.0.0.1:6514", true), &strict).is_err());
        assert!(Syslog::new(&opts("siem.example.com:6514", true), &strict).is_ok());
        let loose = ctx(OutboundPolicy::allow_loopback_for_tests());
        assert!(Syslog::new(&opts("127.0.0.1:514", false), &loose).is_ok());
        let mut o = opts("127.0.0.1:514", false);
        o.facility = Some(24);
        assert!(Syslog::new(&o, &loose).is_err());
    }

    #[test]
    fn message_shape_and_escaping() {
        let s = Syslog::new(
            &Options {
                facility: Some(10),
                app_name: Some("key stead"),
                ..opts("127.0.0.1:514", false)
            },
            &ctx(OutboundPolicy::allow_loopback_for_tests()),
        )
        .unwrap();
        let ev = br#"{"id":"e-1","time":"2024-01-01T00:00:01.500Z","tenant_id":"a\"c]m\\e","seq":7,"action":"batch unwrap","outcome":"failure"}"#;
        let m = String::from_utf8(s.message(0, ev).unwrap()).unwrap();
        assert_eq!(
            m,
            format!(
                "<84>1 2024-01-01T00:00:01.500Z es1 keystead - batchunwrap \
                 [keystead@32473 id=\"e-1\" tenant=\"a\\\"c\\]m\\\\e\" seq=\"7\" \
                 action=\"batch unwrap\" outcome=\"failure\"] {}",
                std::str::from_utf8(ev).unwrap()
            )
        );
        let ok = br#"{"outcome":"success","time":"yesterday"}"#;
        let m = String::from_utf8(s.message(0, ok).unwrap()).unwrap();
        assert!(
            m.starts_with("<85>1 - es1 keystead - - [keystead@32473 outcome=\"success\"] {"),
            "{m}"
        );
        assert_eq!(header_field("", 5), "-");
        assert_eq!(header_field("abcdefg", 5), "abcde");
        // Frames are octet counted.
        let e: Arc<[u8]> = Arc::from(&ok[..]);
        let f = s.frames(&[e.clone(), e]).unwrap();
        let (len, rest) = std::str::from_utf8(&f).unwrap().split_once(' ').unwrap();
        assert_eq!(&rest[..len.parse::<usize>().unwrap()], m);
    }
}
