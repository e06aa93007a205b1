//! Plumbing shared by the REST adapters that authenticate with OAuth2 bearer tokens (GCP
//! Cloud KMS, Azure Key Vault).
//!
//! * [`TokenCache`]: one access token per adapter, fetched once for any number of calls
//!   (concurrent callers wait for the one fetch), refreshed shortly before it expires, and
//!   dropped when the provider answers 401 so that [`TokenCache::send`] retries that call
//!   exactly once with a fresh token. A second 401 is a refused credential (`Denied`).
//! * [`fetch_token`]: the OAuth2 token request (form POST) and its error classes.
//! * [`transport`] and [`common_status`]: the error classes every provider shares
//!   (unreachable, timeout, throttled, refused credential).
//! * [`Provider`] and [`Adapter`]: a provider implements wrap, unwrap and describe; the
//!   adapter adds `generate` (32 bytes from the OS RNG, then wrap) and the `Kms` plumbing.
//! * [`binding_digest`]: the digest that binds tenant, config and context to a ciphertext,
//!   as AAD (GCP) or as a checked suffix of the wrapped plaintext (Azure).
//!
//! No retry loops live here: the service applies timeouts, retries with jitter, the
//! concurrency limit and the circuit breaker around every adapter call.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Deserialize;

use zeroize::Zeroizing;

pub(crate) use super::binding_digest;
use super::secret::Secret;
use super::{BoxFuture, KeyRef, Kms, KmsError, Wrapped};

/// A token is refreshed this long before the provider says it expires.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// The largest response body an adapter reads (KMS answers are a few hundred bytes).
const MAX_BODY: usize = 256 * 1024;

/// An access token as the token endpoint issued it.
pub(crate) struct Token {
    /// The bearer token.
    pub(crate) value: Secret,
    /// Its lifetime as announced (`expires_in`).
    pub(crate) lifetime: Duration,
}

struct Cached {
    value: Secret,
    refresh_at: Instant,
    generation: u64,
}

#[derive(Default)]
struct CacheState {
    current: Option<Cached>,
    generation: u64,
}

/// The adapter's access token, fetched lazily and shared by all its calls.
#[derive(Default)]
pub(crate) struct TokenCache {
    state: tokio::sync::Mutex<CacheState>,
}

impl TokenCache {
    /// The cached token if still fresh, else a new one from `fetch`. The lock is held while
    /// fetching so that concurrent calls share one token request.
    async fn get<F, Fut>(&self, fetch: &F) -> Result<(Secret, u64), KmsError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Token, KmsError>>,
    {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.current
            && Instant::now() < c.refresh_at
        {
            return Ok((c.value.clone(), c.generation));
        }
        let token = fetch().await?;
        let margin = REFRESH_MARGIN.min(token.lifetime / 2);
        state.generation += 1;
        let generation = state.generation;
        state.current = Some(Cached {
            value: token.value.clone(),
            refresh_at: Instant::now() + token.lifetime.saturating_sub(margin),
            generation,
        });
        Ok((token.value, generation))
    }

    /// Drops the token of `generation` (the one a 401 refused); a newer token fetched by a
    /// concurrent call in the meantime is kept.
    async fn invalidate(&self, generation: u64) {
        let mut state = self.state.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|c| c.generation == generation)
        {
            state.current = None;
        }
    }

    /// Sends a JSON POST (`body`) or a GET to `url` with the bearer token; on 401 drops
    /// the token, fetches a new one and sends once more. Returns the final status and body
    /// (a second 401 is returned as it is, for [`common_status`] to classify).
    pub(crate) async fn send<F, Fut>(
        &self,
        provider: &str,
        fetch: F,
        http: &reqwest::Client,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Vec<u8>), KmsError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Token, KmsError>>,
    {
        let (token, generation) = self.get(&fetch).await?;
        let answer = read(provider, request(http, url, body, token.expose())).await?;
        if answer.0 != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        self.invalidate(generation).await;
        let (token, _) = self.get(&fetch).await?;
        read(provider, request(http, url, body, token.expose())).await
    }
}

/// What a provider call does, for its URL and its error classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Encrypt / wrapKey.
    Wrap,
    /// Decrypt / unwrapKey.
    Unwrap,
    /// Read the key.
    Get,
}

/// The body of a successful answer, or the error `classify` makes of a failed one.
pub(crate) fn success(
    (status, body): (StatusCode, Vec<u8>),
    classify: impl FnOnce(StatusCode, &[u8]) -> KmsError,
) -> Result<Vec<u8>, KmsError> {
    if status.is_success() {
        Ok(body)
    } else {
        Err(classify(status, &body))
    }
}

/// Parses a provider's JSON answer; `what` names it in the error.
pub(crate) fn parse<'a, T: Deserialize<'a>>(
    provider: &str,
    body: &'a [u8],
    what: &str,
) -> Result<T, KmsError> {
    serde_json::from_slice(body)
        .map_err(|_| KmsError::Other(format!("{provider}: unexpected {what} answer")))
}

/// A REST provider's three operations; [`Adapter`] makes it a [`Kms`].
pub(crate) trait Provider: Send + Sync + 'static {
    /// The provider name (config `provider`, metrics, audit events).
    const NAME: &'static str;
    /// Encrypts `plaintext` under the key, bound to `key` and `context`.
    fn wrap_key(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &[u8],
    ) -> impl Future<Output = Result<Wrapped, KmsError>> + Send;
    /// Decrypts what [`Self::wrap_key`] made for the same `key` and `context`.
    fn unwrap_key(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &[u8],
    ) -> impl Future<Output = Result<Zeroizing<Vec<u8>>, KmsError>> + Send;
    /// The key's current version, or why it is unusable.
    fn current_version(&self) -> impl Future<Output = Result<u32, KmsError>> + Send;
}

/// A [`Provider`] as a [`Kms`].
pub(crate) struct Adapter<P>(pub(crate) P);

impl<P: Provider> Kms for Adapter<P> {
    fn provider(&self) -> &'static str {
        P::NAME
    }

    fn wrap<'a>(
        &'a self,
        key: &'a KeyRef,
        plaintext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        Box::pin(self.0.wrap_key(key, plaintext, context))
    }

    fn unwrap<'a>(
        &'a self,
        key: &'a KeyRef,
        ciphertext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, KmsError>> {
        Box::pin(self.0.unwrap_key(key, ciphertext, context))
    }

    fn describe<'a>(&'a self, _key: &'a KeyRef) -> BoxFuture<'a, Result<u32, KmsError>> {
        // One config names one provider key: the KeyRef adds nothing to look up.
        Box::pin(self.0.current_version())
    }
}

/// A JSON POST (`body`) or a GET, with a bearer token.
fn request(
    http: &reqwest::Client,
    url: &str,
    body: Option<&serde_json::Value>,
    token: &str,
) -> reqwest::RequestBuilder {
    match body {
        Some(b) => http.post(url).json(b),
        None => http.get(url),
    }
    .bearer_auth(token)
}

/// Sends a request and reads its status and body (bounded).
pub(crate) async fn read(
    provider: &str,
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, Vec<u8>), KmsError> {
    let mut response = request.send().await.map_err(|e| transport(provider, &e))?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport(provider, &e))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(KmsError::Other(format!(
                "{provider}: the answer is larger than {MAX_BODY} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((status, body))
}

/// Classifies a transport failure: no answer in time → `Timeout`; anything that kept the
/// request from being answered (DNS, refused or reset connection, TLS) → `Unreachable`.
pub(crate) fn transport(provider: &str, e: &reqwest::Error) -> KmsError {
    if e.is_timeout() {
        return KmsError::Timeout;
    }
    // reqwest's own message is generic ("error sending request"); the cause is in the chain.
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_decode() || e.is_builder() {
        KmsError::Other(format!("{provider}: {msg}"))
    } else {
        KmsError::Unreachable(format!("{provider}: {msg}"))
    }
}

/// The classes every provider shares: a token refused after one refresh, throttling, a
/// gateway or availability failure. `None` leaves the status to the provider's own mapping.
pub(crate) fn common_status(provider: &str, status: StatusCode, code: &str) -> Option<KmsError> {
    match status.as_u16() {
        401 => Some(KmsError::Denied(format!(
            "{provider} refused the access token after a refresh (401 {code})"
        ))),
        429 => Some(KmsError::Busy),
        502..=504 => Some(KmsError::Unreachable(format!(
            "{provider} answered {} {code}",
            status.as_u16()
        ))),
        _ => None,
    }
}

/// OAuth2 token endpoint answers (RFC 6749 §5.1 and §5.2).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Secret,
    /// Seconds; some endpoints send it as a string.
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct TokenErrorAnswer {
    error: String,
}

/// Lifetime assumed when the token endpoint announces none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);

/// Requests an access token: a form POST to `url`. A refused grant or client (400, 401,
/// 403) is `Denied`, naming the OAuth2 error code (never the credential); throttling is
/// `Busy`; 5xx and transport failures are `Unreachable`.
pub(crate) async fn fetch_token(
    provider: &str,
    http: &reqwest::Client,
    url: &str,
    form: String,
) -> Result<Token, KmsError> {
    let request = http
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(form);
    let (status, body) = read(provider, request).await?;
    if status.is_success() {
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            KmsError::Other(format!(
                "{provider}: the token endpoint's answer is not a token"
            ))
        })?;
        let seconds = match answer.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        return Ok(Token {
            value: answer.access_token,
            lifetime: seconds.map_or(DEFAULT_LIFETIME, Duration::from_secs),
        });
    }
    let code = serde_json::from_slice::<TokenErrorAnswer>(&body)
        .map(|e| sanitize(&e.error))
        .unwrap_or_default();
    Err(match status.as_u16() {
        400 | 401 | 403 => KmsError::Denied(format!(
            "{provider}: the token endpoint refused the credential ({} {code})",
            status.as_u16()
        )),
        429 => KmsError::Busy,
        500..=599 => KmsError::Unreachable(format!(
            "{provider}: the token endpoint answered {} {code}",
            status.as_u16()
        )),
        other => KmsError::Other(format!(
            "{provider}: the token endpoint answered {other} {code}"
        )),
    })
}

/// A provider's error code, made safe for a message: at most 64 characters of
/// `[A-Za-z0-9_.-]` (codes are identifiers; anything else is dropped).
pub(crate) fn sanitize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(64)
        .collect()
}

/// Parses an endpoint URL and applies the outbound policy to it; `what` names the setting.
pub(crate) fn endpoint(
    provider: &str,
    what: &str,
    raw: &str,
    policy: &super::net::OutboundPolicy,
) -> Result<String, KmsError> {
    let trimmed = raw.trim_end_matches('/');
    let url = reqwest::Url::parse(trimmed)
        .map_err(|e| KmsError::Other(format!("{provider} settings: {what} is not a URL: {e}")))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(KmsError::Other(format!(
            "{provider} settings: {what} must not have a query or fragment"
        )));
    }
    policy
        .check_url(&url)
        .map_err(|e| KmsError::Other(format!("{provider} settings: {what}: {e}")))?;
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(tenant: &str, config: &str) -> KeyRef {
        KeyRef {
            tenant: tenant.into(),
            config: config.into(),
            version: None,
        }
    }

    #[test]
    fn the_binding_digest_separates_tenant_config_and_context() {
        let d = binding_digest(&key("t", "c"), b"ctx");
        assert_eq!(d, binding_digest(&key("t", "c"), b"ctx"));
        assert_ne!(d, binding_digest(&key("t2", "c"), b"ctx"));
        assert_ne!(d, binding_digest(&key("t", "c2"), b"ctx"));
        assert_ne!(d, binding_digest(&key("t", "c"), b"ctx2"));
        // Length prefixes: moving a byte between tenant and config changes the digest.
        assert_ne!(
            binding_digest(&key("ab", "c"), b""),
            binding_digest(&key("a", "bc"), b"")
        );
    }

    #[test]
    fn shared_statuses_are_classified() {
        let s = |n| StatusCode::from_u16(n).unwrap();
        assert!(matches!(
            common_status("p", s(401), "x"),
            Some(KmsError::Denied(_))
        ));
        assert_eq!(common_status("p", s(429), "x"), Some(KmsError::Busy));
        for n in [502, 503, 504] {
            assert!(matches!(
                common_status("p", s(n), "x"),
                Some(KmsError::Unreachable(_))
            ));
        }
        for n in [400, 403, 404, 500] {
            assert!(common_status("p", s(n), "x").is_none());
        }
    }

    #[test]
    fn codes_are_sanitized() {
        assert_eq!(sanitize("PERMISSION_DENIED"), "PERMISSION_DENIED");
        assert_eq!(sanitize("a b\"<script>"), "abscript");
        assert_eq!(sanitize(&"x".repeat(100)).len(), 64);
    }

    #[tokio::test]
    async fn concurrent_calls_share_one_token_and_a_refused_one_is_dropped_once() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let cache = TokenCache::default();
        let fetched = AtomicU32::new(0);
        let fetch = || async {
            let n = fetched.fetch_add(1, Ordering::SeqCst);
            Ok(Token {
                value: Secret::new(format!("t{n}")),
                lifetime: Duration::from_secs(3600),
            })
        };
        let (a, b) = tokio::join!(cache.get(&fetch), cache.get(&fetch));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(fetched.load(Ordering::SeqCst), 1);
        assert_eq!(a.0.expose(), b.0.expose());
        // Two calls saw the same 401: only the first invalidation drops a token.
        cache.invalidate(a.1).await;
        let c = cache.get(&fetch).await.unwrap();
        cache.invalidate(a.1).await;
        let d = cache.get(&fetch).await.unwrap();
        assert_eq!(fetched.load(Ordering::SeqCst), 2);
        assert_eq!(c.0.expose(), d.0.expose());
    }

    #[tokio::test]
    async fn a_short_lived_token_is_refreshed() {
        let cache = TokenCache::default();
        let fetch = || async {
            Ok(Token {
                value: Secret::new("t"),
                lifetime: Duration::ZERO,
            })
        };
        let a = cache.get(&fetch).await.unwrap();
        let b = cache.get(&fetch).await.unwrap();
        assert_ne!(a.1, b.1, "an expired token must not be reused");
    }
}
