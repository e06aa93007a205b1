//! Azure Key Vault adapter (REST, api-version 7.4), for a tenant's RSA key (software or
//! HSM-backed, including Managed HSM).
//!
//! * `wrap`: `POST {vault}/keys/{name}[/{version}]/wrapkey` with `alg` `RSA-OAEP-256`. The
//!   answer's `kid` names the key version that wrapped; it goes into the ciphertext framing
//!   below so that `unwrap` asks that version, even after the key is rotated.
//! * `unwrap`: `POST {vault}/keys/{name}/{version}/unwrapkey`.
//! * `generate`: 32 bytes from the OS RNG, then `wrap`.
//! * `describe`: `GET {vault}/keys/{name}[/{version}]`; a disabled key, or one whose
//!   `key_ops` exclude wrapping, is refused.
//!
//! Versions: Key Vault versions are opaque strings, so the adapter reports version 1
//! everywhere and keeps the real version inside its own ciphertext framing (the service's
//! version numbers are then meaningless for this provider; rotation happens in the vault).
//!
//! Ciphertext framing (version 1):
//!
//! ```text
//! 0x01 ‖ len u8 ‖ key version (len bytes, ASCII [0-9A-Za-z], 1..=64) ‖ wrapKey result (≥ 1 byte)
//! ```
//!
//! Binding: wrapKey takes no AAD, so the adapter wraps
//! `plaintext ‖ binding_digest(tenant, config, context)` and on unwrap compares the last 32
//! bytes in constant time; a mismatch is `InvalidCiphertext`.
//!
//! Authentication: OAuth2 client credentials (`tenant_id`, `client_id`, `client_secret`)
//! at `{authority}/{tenant_id}/oauth2/v2.0/token` with scope
//! `https://vault.azure.net/.default`; the token is cached until a minute before expiry and
//! refreshed once on a 401.
//!
//! Errors: 403 (no permission, disabled key) and 404 (`KeyNotFound`) → `Denied`; 400
//! `BadParameter` on unwrap → `InvalidCiphertext`; 429 → `Busy`; 5xx → `Unreachable`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::registry::BuildContext;
use super::rest::{
    self, Adapter, Op, Provider, TokenCache, binding_digest, common_status, sanitize,
};
use super::secret::Secret;
use super::{KeyRef, Kms, KmsError, Wrapped};

const PROVIDER: &str = "azure";
const API_VERSION: &str = "7.4";
const ALG: &str = "RSA-OAEP-256";
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
const DEFAULT_SCOPE: &str = "https://vault.azure.net/.default";
/// First byte of the ciphertext framing.
const FRAME_V1: u8 = 1;
/// Longest key version accepted in settings and framing (Key Vault uses 32 hex digits).
const MAX_VERSION_LEN: usize = 64;
/// Length of the binding suffix.
const DIGEST_LEN: usize = 32;

/// The provider settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `https://NAME.vault.azure.net` (or a Managed HSM / sovereign cloud URL).
    vault: String,
    /// The key's name.
    key: String,
    /// Pins wrapping to one key version; by default the key's current version wraps.
    #[serde(default)]
    key_version: Option<String>,
    /// Directory (tenant) id of the application.
    tenant_id: String,
    /// Application (client) id.
    client_id: String,
    client_secret: Secret,
    #[serde(default = "default_authority")]
    authority: String,
    /// Token scope (other clouds: e.g. `https://vault.azure.cn/.default`, Managed HSM:
    /// `https://managedhsm.azure.net/.default`).
    #[serde(default = "default_scope")]
    scope: String,
}

fn default_authority() -> String {
    DEFAULT_AUTHORITY.into()
}

fn default_scope() -> String {
    DEFAULT_SCOPE.into()
}

/// The Key Vault adapter of one (tenant, config).
pub struct AzureKms {
    http: reqwest::Client,
    /// `{vault}/keys/{name}`.
    key_url: String,
    key_version: Option<String>,
    token_url: String,
    client_id: String,
    client_secret: Secret,
    scope: String,
    tokens: TokenCache,
}

/// Builds the adapter from its JSON settings.
pub fn build(settings: serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Kms>, KmsError> {
    let s: Settings = serde_json::from_value(settings)
        .map_err(|e| KmsError::Other(format!("azure settings: {e}")))?;
    let name_ok = |v: &str, max: usize, extra: &[char]| {
        // "." and ".." would be path segments that URL parsing resolves.
        !v.is_empty()
            && !v.chars().all(|c| c == '.')
            && v.len() <= max
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    };
    if !name_ok(&s.key, 127, &['-']) {
        return Err(KmsError::Other(
            "azure settings: key must be a Key Vault key name (1-127 of [0-9A-Za-z-])".into(),
        ));
    }
    if let Some(v) = &s.key_version
        && !name_ok(v, MAX_VERSION_LEN, &[])
    {
        return Err(KmsError::Other(
            "azure settings: key_version must be a Key Vault key version ([0-9A-Za-z])".into(),
        ));
    }
    if !name_ok(&s.tenant_id, 128, &['-', '.']) {
        return Err(KmsError::Other(
            "azure settings: tenant_id must be a directory id or domain".into(),
        ));
    }
    if s.client_id.is_empty() {
        return Err(KmsError::Other(
            "azure settings: client_id is required".into(),
        ));
    }
    let vault = rest::endpoint(PROVIDER, "vault", &s.vault, &ctx.outbound)?;
    let authority = rest::endpoint(PROVIDER, "authority", &s.authority, &ctx.outbound)?;
    Ok(Arc::new(Adapter(AzureKms {
        http: ctx.outbound.http_client(ctx.timeout)?,
        key_url: format!("{vault}/keys/{}", s.key),
        key_version: s.key_version,
        token_url: format!("{authority}/{}/oauth2/v2.0/token", s.tenant_id),
        client_id: s.client_id,
        client_secret: s.client_secret,
        scope: s.scope,
        tokens: TokenCache::default(),
    })))
}

/// A parsed ciphertext: the key version that wrapped, and Key Vault's wrapKey result.
#[derive(Debug, PartialEq, Eq)]
struct Frame<'a> {
    version: &'a str,
    wrapped: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Reads the framing; anything malformed is `InvalidCiphertext`.
    fn parse(bytes: &'a [u8]) -> Result<Self, KmsError> {
        let bad = || KmsError::InvalidCiphertext;
        let (&tag, rest) = bytes.split_first().ok_or_else(bad)?;
        if tag != FRAME_V1 {
            return Err(bad());
        }
        let (&len, rest) = rest.split_first().ok_or_else(bad)?;
        let len = usize::from(len);
        if len == 0 || len > MAX_VERSION_LEN || rest.len() <= len {
            return Err(bad());
        }
        let (version, wrapped) = rest.split_at(len);
        if !version.iter().all(u8::is_ascii_alphanumeric) {
            return Err(bad());
        }
        let version = std::str::from_utf8(version).map_err(|_| bad())?;
        Ok(Self { version, wrapped })
    }

    /// Writes the framing.
    fn write(&self) -> Result<Vec<u8>, KmsError> {
        let len = u8::try_from(self.version.len())
            .ok()
            .filter(|n| (1..=MAX_VERSION_LEN).contains(&usize::from(*n)))
            .filter(|_| self.version.bytes().all(|b| b.is_ascii_alphanumeric()))
            .ok_or_else(|| {
                KmsError::Other("azure: the answer names no usable key version".into())
            })?;
        if self.wrapped.is_empty() {
            return Err(KmsError::Other("azure: empty wrapKey answer".into()));
        }
        let mut out = Vec::with_capacity(2 + self.version.len() + self.wrapped.len());
        out.push(FRAME_V1);
        out.push(len);
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(self.wrapped);
        Ok(out)
    }
}

/// Key Vault's error answer: `{"error": {"code": "Forbidden", "message": …,
/// "innererror": {"code": …}}}`.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    innererror: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    #[serde(default)]
    code: String,
}

/// `KeyOperationResult`.
#[derive(Deserialize)]
struct OperationAnswer {
    kid: String,
    value: Secret,
}

/// `KeyBundle` (the fields used).
#[derive(Deserialize)]
struct KeyBundle {
    key: JsonWebKey,
    #[serde(default)]
    attributes: Option<KeyAttributes>,
}

#[derive(Deserialize)]
struct JsonWebKey {
    #[serde(default)]
    key_ops: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct KeyAttributes {
    #[serde(default)]
    enabled: Option<bool>,
}

/// Maps a Key Vault error answer to the service's error classes.
fn classify(op: Op, status: StatusCode, body: &[u8]) -> KmsError {
    let (code, inner) = serde_json::from_slice::<ErrorAnswer>(body)
        .map(|e| {
            let inner = e.error.innererror.map(|i| sanitize(&i.code));
            (sanitize(&e.error.code), inner.unwrap_or_default())
        })
        .unwrap_or_default();
    let code_text = if inner.is_empty() {
        code.clone()
    } else {
        format!("{code}/{inner}")
    };
    if let Some(e) = common_status(PROVIDER, status, &code_text) {
        return e;
    }
    let n = status.as_u16();
    let msg = format!("azure Key Vault answered {n} {code_text}");
    match n {
        403 | 404 => KmsError::Denied(msg),
        400 if code == "BadParameter" && op == Op::Unwrap => KmsError::InvalidCiphertext,
        500..=599 => KmsError::Unreachable(msg),
        _ => KmsError::Other(msg),
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, KmsError> {
    rest::parse(PROVIDER, body, what)
}

fn decode(value: &Secret) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    B64URL
        .decode(value.expose().trim_end_matches('='))
        .map(Zeroizing::new)
        .map_err(|_| KmsError::Other("azure: the answer's value is not base64url".into()))
}

impl AzureKms {
    async fn fetch_token(&self) -> Result<rest::Token, KmsError> {
        let form = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &self.client_id)
                .append_pair("client_secret", self.client_secret.expose())
                .append_pair("scope", &self.scope)
                .finish(),
        );
        rest::fetch_token(PROVIDER, &self.http, &self.token_url, form.to_string()).await
    }

    /// One authenticated Key Vault request on `version` (or the key itself): the final
    /// status and body.
    async fn send(
        &self,
        op: Op,
        version: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<(StatusCode, Vec<u8>), KmsError> {
        let mut url = self.key_url.clone();
        if let Some(v) = version {
            url.push('/');
            url.push_str(v);
        }
        url.push_str(match op {
            Op::Wrap => "/wrapkey",
            Op::Unwrap => "/unwrapkey",
            Op::Get => "",
        });
        url.push_str("?api-version=");
        url.push_str(API_VERSION);
        self.tokens
            .send(
                PROVIDER,
                || self.fetch_token(),
                &self.http,
                &url,
                body.as_ref(),
            )
            .await
    }

    /// [`Self::send`], with an error answer classified for `op`.
    async fn call(
        &self,
        op: Op,
        version: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<Vec<u8>, KmsError> {
        let answer = self.send(op, version, body).await?;
        rest::success(answer, |status, body| classify(op, status, body))
    }

    /// After a 404 on the version a ciphertext names: if the key itself is there and usable,
    /// the version was never this key's (a forged or foreign ciphertext, not a revocation);
    /// otherwise the key is gone or refused, and that error is the answer.
    async fn missing_version(&self) -> KmsError {
        match self.check_key().await {
            Ok(()) => KmsError::InvalidCiphertext,
            Err(e) => e,
        }
    }

    /// The key (or the pinned version) exists, is enabled and allows wrapping.
    async fn check_key(&self) -> Result<(), KmsError> {
        let answer = self
            .call(Op::Get, self.key_version.as_deref(), None)
            .await?;
        let bundle: KeyBundle = parse(&answer, "key")?;
        if bundle
            .attributes
            .and_then(|a| a.enabled)
            .is_some_and(|enabled| !enabled)
        {
            return Err(KmsError::Denied("azure: the key is disabled".into()));
        }
        if let Some(ops) = bundle.key.key_ops
            && !(ops.iter().any(|o| o == "wrapKey") && ops.iter().any(|o| o == "unwrapKey"))
        {
            return Err(KmsError::Denied(
                "azure: the key's key_ops do not include wrapKey and unwrapKey".into(),
            ));
        }
        Ok(())
    }
}

impl Provider for AzureKms {
    const NAME: &'static str = PROVIDER;

    async fn wrap_key(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Wrapped, KmsError> {
        let mut bound = Zeroizing::new(Vec::with_capacity(plaintext.len() + DIGEST_LEN));
        bound.extend_from_slice(plaintext);
        bound.extend_from_slice(&binding_digest(key, context));
        let body = json!({ "alg": ALG, "value": B64URL.encode(&*bound) });
        let answer = self
            .call(Op::Wrap, self.key_version.as_deref(), Some(body))
            .await?;
        let a: OperationAnswer = parse(&answer, "wrapKey")?;
        let wrapped = decode(&a.value)?;
        let version = a.kid.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        let ciphertext = Frame {
            version,
            wrapped: &wrapped,
        }
        .write()?;
        Ok(Wrapped {
            ciphertext,
            version: 1,
        })
    }

    async fn unwrap_key(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let frame = Frame::parse(ciphertext)?;
        let body = json!({ "alg": ALG, "value": B64URL.encode(frame.wrapped) });
        let (status, answer) = self
            .send(Op::Unwrap, Some(frame.version), Some(body))
            .await?;
        let answer = Zeroizing::new(answer);
        if status == StatusCode::NOT_FOUND {
            return Err(self.missing_version().await);
        }
        if !status.is_success() {
            return Err(classify(Op::Unwrap, status, &answer));
        }
        let a: OperationAnswer = parse(&answer, "unwrapKey")?;
        let bound = decode(&a.value)?;
        let split = bound
            .len()
            .checked_sub(DIGEST_LEN)
            .ok_or(KmsError::InvalidCiphertext)?;
        let (plaintext, suffix) = bound.split_at(split);
        if bool::from(suffix.ct_eq(&binding_digest(key, context))) {
            Ok(Zeroizing::new(plaintext.to_vec()))
        } else {
            Err(KmsError::InvalidCiphertext)
        }
    }

    async fn current_version(&self) -> Result<u32, KmsError> {
        self.check_key().await.map(|()| 1)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use rand_core::Rng;

    use super::*;

    fn status(n: u16) -> StatusCode {
        StatusCode::from_u16(n).unwrap()
    }

    fn err(code: &str) -> Vec<u8> {
        json!({"error": {"code": code, "message": "m"}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn errors_are_classified() {
        let c = |op, n, code: &str| classify(op, status(n), &err(code));
        assert!(
            matches!(c(Op::Wrap, 403, "Forbidden"), KmsError::Denied(m) if m.contains("Forbidden"))
        );
        assert!(matches!(
            c(Op::Unwrap, 404, "KeyNotFound"),
            KmsError::Denied(_)
        ));
        assert_eq!(
            c(Op::Unwrap, 400, "BadParameter"),
            KmsError::InvalidCiphertext
        );
        assert!(matches!(
            c(Op::Wrap, 400, "BadParameter"),
            KmsError::Other(_)
        ));
        assert_eq!(c(Op::Wrap, 429, "Throttled"), KmsError::Busy);
        for n in [500, 502, 503, 504] {
            assert!(matches!(c(Op::Unwrap, n, "x"), KmsError::Unreachable(_)));
        }
        assert!(matches!(
            c(Op::Get, 401, "Unauthorized"),
            KmsError::Denied(_)
        ));
        let inner =
            json!({"error": {"code": "Forbidden", "innererror": {"code": "ForbiddenByPolicy"}}});
        assert!(matches!(
            classify(Op::Wrap, status(403), inner.to_string().as_bytes()),
            KmsError::Denied(m) if m.contains("Forbidden/ForbiddenByPolicy")
        ));
        assert!(matches!(
            classify(Op::Wrap, status(403), b"not json"),
            KmsError::Denied(_)
        ));
    }

    #[test]
    fn frames_round_trip() {
        let f = Frame {
            version: "0123abcdef",
            wrapped: &[9u8; 256],
        };
        let bytes = f.write().unwrap();
        assert_eq!(bytes[0], FRAME_V1);
        assert_eq!(Frame::parse(&bytes).unwrap(), f);
        for bad in ["", "a/b", &"a".repeat(65)] {
            assert!(
                Frame {
                    version: bad,
                    wrapped: &[1]
                }
                .write()
                .is_err(),
                "{bad}"
            );
        }
        assert!(
            Frame {
                version: "v",
                wrapped: &[]
            }
            .write()
            .is_err()
        );
    }

    #[test]
    fn every_truncation_and_random_bytes_fail_without_panicking() {
        let bytes = Frame {
            version: "5f1d2c",
            wrapped: &[7u8; 64],
        }
        .write()
        .unwrap();
        // Cutting into the version or dropping all of the wrapped part is refused; a shorter
        // wrapped part still parses (Key Vault then refuses it).
        for n in 0..=8 {
            assert_eq!(
                Frame::parse(&bytes[..n]),
                Err(KmsError::InvalidCiphertext),
                "{n}"
            );
        }
        for n in 9..bytes.len() {
            assert_eq!(Frame::parse(&bytes[..n]).unwrap().version, "5f1d2c");
        }
        let mut wrong_tag = bytes.clone();
        wrong_tag[0] = 2;
        assert!(Frame::parse(&wrong_tag).is_err());
        let mut slash = bytes.clone();
        slash[3] = b'/';
        assert!(Frame::parse(&slash).is_err());
        for i in 0..2000u32 {
            let len = (i % 97) as usize;
            let mut junk = vec![0u8; len];
            crate::util::os_rng().fill_bytes(&mut junk);
            if let Ok(f) = Frame::parse(&junk) {
                assert!(f.version.bytes().all(|b| b.is_ascii_alphanumeric()));
                assert!(!f.wrapped.is_empty());
            }
        }
    }
}
