//! HTTP sinks: a generic webhook (a JSON array of events per batch) and the Splunk HTTP
//! Event Collector. Both go through the outbound policy's client: every resolved address
//! is checked, no redirects, no proxies from the environment, one timeout per request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::{EventHead, Sink, SinkContext, SinkError, check_object, endpoint};
use crate::kms::BoxFuture;
use crate::kms::secret::Secret;

/// The longest `Retry-After` honoured; a receiver asking for more is retried after this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Parses and checks an endpoint URL, and builds the policy's HTTP client.
fn client(
    url: &str,
    what: &str,
    ctx: &SinkContext,
) -> Result<(reqwest::Url, reqwest::Client), SinkError> {
    // The URL is not quoted back: it may carry a secret in its path or query.
    let url = reqwest::Url::parse(url)
        .map_err(|e| SinkError::new(format!("{what} url is not a URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(SinkError::new(format!(
            "{what} url must not hold credentials; use the token setting"
        )));
    }
    ctx.outbound
        .check_url(&url)
        .map_err(|e| SinkError::new(format!("{what} {}: {e}", endpoint(&url))))?;
    let client = ctx
        .outbound
        .http_client(ctx.timeout)
        .map_err(|e| SinkError::new(format!("{what}: {e}")))?;
    Ok((url, client))
}

/// An `Authorization` header value, marked sensitive (hyper then keeps it out of its
/// debug output and HPACK tables).
fn auth_header(scheme: &str, token: &Secret) -> Result<HeaderValue, SinkError> {
    let mut v = HeaderValue::try_from(format!("{scheme} {}", token.expose()))
        .map_err(|_| SinkError::new("the token holds characters not allowed in a header"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// POSTs `body` and maps the answer: 2xx is `Ok`; 429 and 503 carry `Retry-After`
/// (seconds); everything else is an error naming the status, never the body.
async fn post(
    what: &str,
    client: &reqwest::Client,
    url: &reqwest::Url,
    auth: Option<&HeaderValue>,
    body: Vec<u8>,
) -> Result<(), SinkError> {
    let mut req = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(a) = auth {
        req = req.header(AUTHORIZATION, a.clone());
    }
    let resp = req.send().await.map_err(|e| {
        // `without_url`: the URL may hold a secret in its path or query. The causes (DNS,
        // the outbound policy, TCP, TLS) name no URL.
        let e = e.without_url();
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        SinkError::new(format!("{what} {}: {text}", endpoint(url)))
    })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = match status.as_u16() {
        429 | 503 => resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER)),
        _ => None,
    };
    Err(SinkError {
        message: format!("{what} {} answered {status}", endpoint(url)),
        retry_after,
    })
}

/// POSTs each batch as one JSON array of the events, byte for byte as spooled.
pub(super) struct Webhook {
    url: reqwest::Url,
    client: reqwest::Client,
    auth: Option<HeaderValue>,
}

impl Webhook {
    pub(super) fn new(
        url: &str,
        token: &Option<Secret>,
        ctx: &SinkContext,
    ) -> Result<Self, SinkError> {
        let (url, client) = client(url, "webhook", ctx)?;
        let auth = token
            .as_ref()
            .map(|t| auth_header("Bearer", t))
            .transpose()?;
        Ok(Self { url, client, auth })
    }

    /// `[e1,e2,...]` with each event's bytes unchanged.
    fn body(events: &[Arc<[u8]>]) -> Result<Vec<u8>, SinkError> {
        let mut body = Vec::with_capacity(events.iter().map(|e| e.len() + 1).sum::<usize>() + 2);
        body.push(b'[');
        for (i, e) in events.iter().enumerate() {
            check_object(i, e)?;
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(e);
        }
        body.push(b']');
        Ok(body)
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("endpoint", &endpoint(&self.url))
            .field("token", &self.auth.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl Sink for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn deliver<'a>(&'a self, events: &'a [Arc<[u8]>]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let body = Self::body(events)?;
            post("webhook", &self.client, &self.url, self.auth.as_ref(), body).await
        })
    }
}

/// Splunk HTTP Event Collector (`/services/collector/event`): one HEC envelope per event,
/// concatenated, with the event's JSON unchanged as the `event` value.
///
/// Success is any 2xx (HEC answers `{"text":"Success","code":0}`). HEC indexer
/// acknowledgement (channels, `/services/collector/ack`) is not used: a 2xx means HEC
/// received the batch, not that it is indexed.
pub(super) struct SplunkHec {
    url: reqwest::Url,
    client: reqwest::Client,
    auth: HeaderValue,
    /// `"host":…,"source":"keystead","sourcetype":…[,"index":…]`, JSON-encoded once.
    fields: String,
}

impl SplunkHec {
    pub(super) fn new(
        url: &str,
        token: &Secret,
        index: Option<&str>,
        sourcetype: Option<&str>,
        ctx: &SinkContext,
    ) -> Result<Self, SinkError> {
        let (url, client) = client(url, "splunk_hec", ctx)?;
        let auth = auth_header("Splunk", token)?;
        let js = |s: &str| serde_json::Value::from(s).to_string();
        let mut fields = format!(
            "\"host\":{},\"source\":\"keystead\",\"sourcetype\":{}",
            js(&ctx.instance),
            js(sourcetype.unwrap_or("keystead:audit"))
        );
        if let Some(index) = index {
            fields.push_str(&format!(",\"index\":{}", js(index)));
        }
        Ok(Self {
            url,
            client,
            auth,
            fields,
        })
    }

    fn body(&self, events: &[Arc<[u8]>]) -> Result<Vec<u8>, SinkError> {
        let mut body = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let head = EventHead::parse(i, e)?;
            // HEC `time`: epoch seconds with milliseconds. An event without a parsable
            // time is stamped by HEC on receipt (the field is left out).
            let time = head
                .time
                .as_deref()
                .and_then(crate::util::parse_rfc3339_utc)
                .map(|(s, ms)| format!("\"time\":{s}.{ms:03},"))
                .unwrap_or_default();
            body.extend_from_slice(format!("{{{time}{},\"event\":", self.fields).as_bytes());
            body.extend_from_slice(e);
            body.push(b'}');
        }
        Ok(body)
    }
}

impl fmt::Debug for SplunkHec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SplunkHec")
            .field("endpoint", &endpoint(&self.url))
            .field("token", &"[redacted]")
            .finish()
    }
}

impl Sink for SplunkHec {
    fn kind(&self) -> &'static str {
        "splunk_hec"
    }

    fn deliver<'a>(&'a self, events: &'a [Arc<[u8]>]) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let body = self.body(events)?;
            post(
                "splunk_hec",
                &self.client,
                &self.url,
                Some(&self.auth),
                body,
            )
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::kms::net::OutboundPolicy;

    fn ctx() -> SinkContext {
        SinkContext {
            outbound: OutboundPolicy::allow_loopback_for_tests(),
            file_dir: std::env::temp_dir(),
            dev: false,
            timeout: Duration::from_secs(5),
            instance: "es-\"1\"".into(),
        }
    }

    #[test]
    fn hec_envelopes_carry_the_event_unchanged() {
        let hec = SplunkHec::new(
            "http://127.0.0.1:1/services/collector/event",
            &Secret::new("tok-SECRET"),
            Some("audit"),
            None,
            &ctx(),
        )
        .unwrap();
        let e1: Arc<[u8]> =
            Arc::from(&br#"{"id":"a","time":"2024-01-01T00:00:01.5Z","x":"\u00e9"}"#[..]);
        let e2: Arc<[u8]> = Arc::from(&br#"{"id":"b","time":"bogus"}"#[..]);
        let body = hec.body(&[e1.clone(), e2.clone()]).unwrap();
        let objs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&body)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0]["time"].as_f64(), Some(1_704_067_201.5));
        assert_eq!(objs[0]["host"], "es-\"1\"");
        assert_eq!(objs[0]["sourcetype"], "keystead:audit");
        assert_eq!(objs[0]["index"], "audit");
        assert!(objs[1].get("time").is_none());
        // The raw bytes appear unchanged.
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains(std::str::from_utf8(&e1).unwrap()));
        assert!(!format!("{hec:?}").contains("SECRET"));
    }

    #[test]
    fn webhook_urls_are_checked() {
        let c = ctx();
        for bad in [
            "not a url",
            "ftp://127.0.0.1/",
            "http://user:pw@127.0.0.1/",
            "https://10.0.0.1/hook",
        ] {
            let e = Webhook::new(bad, &None, &c).err().unwrap();
            assert!(!e.message.contains("pw"), "{}", e.message);
        }
        let strict = SinkContext {
            outbound: OutboundPolicy::default(),
            ..c
        };
        assert!(Webhook::new("http://127.0.0.1:1/", &None, &strict).is_err());
        assert!(Webhook::new("https://127.0.0.1:1/", &None, &strict).is_err());
        // A public name is fine at build time (its addresses are checked on connect).
        assert!(Webhook::new("https://siem.example.com/hook", &None, &strict).is_ok());
    }
}
