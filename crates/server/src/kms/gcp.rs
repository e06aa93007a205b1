//! Google Cloud KMS adapter (REST v1), for a tenant's symmetric `ENCRYPT_DECRYPT` key.
//!
//! * `wrap`: `POST {endpoint}/v1/{cryptoKey}:encrypt` with `plaintext` and
//!   `additionalAuthenticatedData`; the answer's `name` (`…/cryptoKeyVersions/N`) gives the
//!   version. The ciphertext is Cloud KMS's own, unchanged (it names its key version, so
//!   `decrypt` needs no version hint).
//! * `unwrap`: `POST {endpoint}/v1/{cryptoKey}:decrypt` with the ciphertext and the AAD.
//! * `generate`: 32 bytes from the OS RNG, then `wrap`.
//! * `describe`: `GET {endpoint}/v1/{cryptoKey}`, the primary version's number; a key
//!   without an enabled primary version is refused.
//!
//! Binding: the AAD is [`binding_digest`] of tenant, config and context, so a ciphertext
//! opens only for the (tenant, config, context) it was made for.
//!
//! Authentication: a service account key. The adapter signs a JWT (RS256, `ring`) with the
//! key's `private_key` and trades it at `token_uri` for an access token
//! (`urn:ietf:params:oauth:grant-type:jwt-bearer`), cached until a minute before expiry
//! and refreshed once on a 401.
//!
//! Errors: 403 `PERMISSION_DENIED`, 404 `NOT_FOUND` and 400 `FAILED_PRECONDITION` (version
//! disabled or destroyed) → `Denied`; 400 `INVALID_ARGUMENT` on decrypt →
//! `InvalidCiphertext`; 429 → `Busy`; 502/503/504 → `Unreachable`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use reqwest::StatusCode;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::json;
use zeroize::Zeroizing;

use super::registry::BuildContext;
use super::rest::{
    self, Adapter, Op, Provider, TokenCache, binding_digest, common_status, sanitize,
};
use super::secret::Secret;
use super::{KeyRef, Kms, KmsError, Wrapped};
use crate::util::unix_now;

const PROVIDER: &str = "gcp";
const DEFAULT_ENDPOINT: &str = "https://cloudkms.googleapis.com";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The narrowest OAuth scope that covers Cloud KMS.
const SCOPE: &str = "https://www.googleapis.com/auth/cloudkms";
const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime of the signed assertion (Google accepts at most one hour).
const ASSERTION_LIFETIME_SECS: i64 = 3600;

/// The provider settings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    key: String,
    #[serde(default = "default_endpoint")]
    endpoint: String,
    service_account: ServiceAccount,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.into()
}

fn default_token_uri() -> String {
    DEFAULT_TOKEN_URI.into()
}

/// A service account key file as Google issues it. The fields the adapter does not use are
/// accepted (and ignored) so that the file can be pasted as it is.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceAccount {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    client_email: String,
    private_key: Secret,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default = "default_token_uri")]
    token_uri: String,
    #[serde(rename = "project_id", default)]
    _project_id: Option<IgnoredAny>,
    #[serde(rename = "client_id", default)]
    _client_id: Option<IgnoredAny>,
    #[serde(rename = "auth_uri", default)]
    _auth_uri: Option<IgnoredAny>,
    #[serde(rename = "auth_provider_x509_cert_url", default)]
    _auth_provider_cert_url: Option<IgnoredAny>,
    #[serde(rename = "client_x509_cert_url", default)]
    _client_cert_url: Option<IgnoredAny>,
    #[serde(rename = "universe_domain", default)]
    _universe_domain: Option<IgnoredAny>,
}

/// The Cloud KMS adapter of one (tenant, config).
pub struct GcpKms {
    http: reqwest::Client,
    /// `{endpoint}/v1/{key}`.
    key_url: String,
    token_uri: String,
    client_email: String,
    key_id: Option<String>,
    signer: RsaKeyPair,
    tokens: TokenCache,
}

/// Builds the adapter from its JSON settings.
pub fn build(settings: serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Kms>, KmsError> {
    let s: Settings = serde_json::from_value(settings)
        .map_err(|e| KmsError::Other(format!("gcp settings: {e}")))?;
    check_key_name(&s.key)?;
    let sa = s.service_account;
    if sa.kind.as_deref().is_some_and(|k| k != "service_account") {
        return Err(KmsError::Other(
            "gcp settings: service_account.type must be \"service_account\"".into(),
        ));
    }
    if sa.client_email.is_empty() {
        return Err(KmsError::Other(
            "gcp settings: service_account.client_email is required".into(),
        ));
    }
    let endpoint = rest::endpoint(PROVIDER, "endpoint", &s.endpoint, &ctx.outbound)?;
    let token_uri = rest::endpoint(
        PROVIDER,
        "service_account.token_uri",
        &sa.token_uri,
        &ctx.outbound,
    )?;
    Ok(Arc::new(Adapter(GcpKms {
        http: ctx.outbound.http_client(ctx.timeout)?,
        key_url: format!("{endpoint}/v1/{}", s.key),
        token_uri,
        client_email: sa.client_email,
        key_id: sa.private_key_id,
        signer: signer(&sa.private_key)?,
        tokens: TokenCache::default(),
    })))
}

/// Checks `projects/P/locations/L/keyRings/R/cryptoKeys/K`, with ids that cannot change
/// the request path.
fn check_key_name(key: &str) -> Result<(), KmsError> {
    let parts: Vec<&str> = key.split('/').collect();
    let labels_ok = parts.len() == 8
        && parts[0] == "projects"
        && parts[2] == "locations"
        && parts[4] == "keyRings"
        && parts[6] == "cryptoKeys";
    let ids_ok = parts.iter().skip(1).step_by(2).all(|id| {
        // "." and ".." would be path segments that URL parsing resolves.
        !id.is_empty()
            && !id.chars().all(|c| c == '.')
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    });
    if labels_ok && ids_ok {
        Ok(())
    } else {
        Err(KmsError::Other(
            "gcp settings: key must be projects/P/locations/L/keyRings/R/cryptoKeys/K".into(),
        ))
    }
}

/// The RS256 signer from the key's PKCS#8 PEM. Errors never quote the key.
fn signer(pem: &Secret) -> Result<RsaKeyPair, KmsError> {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.expose().as_bytes()).map_err(|_| {
        KmsError::Other(
            "gcp settings: service_account.private_key is not a PKCS#8 PEM private key".into(),
        )
    })?;
    RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|_| {
        KmsError::Other("gcp settings: service_account.private_key is not a usable RSA key".into())
    })
}

/// Google's error answer: `{"error": {"code": 403, "status": "PERMISSION_DENIED", …}}`.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct EncryptAnswer {
    name: String,
    ciphertext: String,
}

#[derive(Deserialize)]
struct DecryptAnswer {
    plaintext: Secret,
}

#[derive(Deserialize)]
struct CryptoKeyAnswer {
    primary: Option<VersionAnswer>,
}

#[derive(Deserialize)]
struct VersionAnswer {
    name: String,
    #[serde(default)]
    state: String,
}

/// Maps a Cloud KMS error answer to the service's error classes.
fn classify(op: Op, status: StatusCode, body: &[u8]) -> KmsError {
    let code = serde_json::from_slice::<ErrorAnswer>(body)
        .map(|e| sanitize(&e.error.status))
        .unwrap_or_default();
    if let Some(e) = common_status(PROVIDER, status, &code) {
        return e;
    }
    let n = status.as_u16();
    let msg = format!("gcp Cloud KMS answered {n} {code}");
    match n {
        403 | 404 => KmsError::Denied(msg),
        400 if code == "FAILED_PRECONDITION" => KmsError::Denied(msg),
        400 if code == "INVALID_ARGUMENT" && op == Op::Unwrap => KmsError::InvalidCiphertext,
        _ => KmsError::Other(msg),
    }
}

/// The number at the end of `…/cryptoKeyVersions/N`.
fn version_of(name: &str) -> Result<u32, KmsError> {
    name.rsplit_once("/cryptoKeyVersions/")
        .and_then(|(_, n)| n.parse::<u32>().ok())
        .filter(|n| *n >= 1)
        .ok_or_else(|| KmsError::Other("gcp: the answer names no key version".into()))
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, KmsError> {
    rest::parse(PROVIDER, body, what)
}

fn decode(b64: &str, what: &str) -> Result<Vec<u8>, KmsError> {
    B64.decode(b64)
        .map_err(|_| KmsError::Other(format!("gcp: the {what} in the answer is not base64")))
}

impl GcpKms {
    /// A signed JWT asking for a Cloud KMS token (RFC 7523).
    fn assertion(&self) -> Result<String, KmsError> {
        let now = unix_now();
        let header = match &self.key_id {
            Some(kid) => json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
            None => json!({"alg": "RS256", "typ": "JWT"}),
        };
        let claims = json!({
            "iss": self.client_email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.signer.public().modulus_len()];
        self.signer
            .sign(
                &RSA_PKCS1_SHA256,
                &ring::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| KmsError::Other("gcp: signing the token request failed".into()))?;
        Ok(format!("{signing_input}.{}", B64URL.encode(signature)))
    }

    async fn fetch_token(&self) -> Result<rest::Token, KmsError> {
        let assertion = self.assertion()?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", JWT_GRANT)
            .append_pair("assertion", &assertion)
            .finish();
        rest::fetch_token(PROVIDER, &self.http, &self.token_uri, form).await
    }

    /// One authenticated Cloud KMS call; the error answer is classified for `op`.
    async fn call(&self, op: Op, body: Option<serde_json::Value>) -> Result<Vec<u8>, KmsError> {
        let url = match op {
            Op::Wrap => format!("{}:encrypt", self.key_url),
            Op::Unwrap => format!("{}:decrypt", self.key_url),
            Op::Get => self.key_url.clone(),
        };
        let answer = self
            .tokens
            .send(
                PROVIDER,
                || self.fetch_token(),
                &self.http,
                &url,
                body.as_ref(),
            )
            .await?;
        rest::success(answer, |status, body| classify(op, status, body))
    }
}

impl Provider for GcpKms {
    const NAME: &'static str = PROVIDER;

    async fn wrap_key(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Wrapped, KmsError> {
        let body = json!({
            "plaintext": B64.encode(plaintext),
            "additionalAuthenticatedData": B64.encode(binding_digest(key, context)),
        });
        let answer = self.call(Op::Wrap, Some(body)).await?;
        let a: EncryptAnswer = parse(&answer, "encrypt")?;
        Ok(Wrapped {
            ciphertext: decode(&a.ciphertext, "ciphertext")?,
            version: version_of(&a.name)?,
        })
    }

    async fn unwrap_key(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        if ciphertext.is_empty() {
            return Err(KmsError::InvalidCiphertext);
        }
        let body = json!({
            "ciphertext": B64.encode(ciphertext),
            "additionalAuthenticatedData": B64.encode(binding_digest(key, context)),
        });
        let answer = Zeroizing::new(self.call(Op::Unwrap, Some(body)).await?);
        let a: DecryptAnswer = parse(&answer, "decrypt")?;
        decode(a.plaintext.expose(), "plaintext").map(Zeroizing::new)
    }

    async fn current_version(&self) -> Result<u32, KmsError> {
        let answer = self.call(Op::Get, None).await?;
        let key: CryptoKeyAnswer = parse(&answer, "cryptoKey")?;
        let primary = key.primary.ok_or_else(|| {
            KmsError::Denied("gcp: the key has no primary version (not ENCRYPT_DECRYPT?)".into())
        })?;
        if !primary.state.is_empty() && primary.state != "ENABLED" {
            return Err(KmsError::Denied(format!(
                "gcp: the primary key version is {}",
                sanitize(&primary.state)
            )));
        }
        version_of(&primary.name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn status(n: u16) -> StatusCode {
        StatusCode::from_u16(n).unwrap()
    }

    fn err(code: u16, s: &str) -> Vec<u8> {
        json!({"error": {"code": code, "message": "m", "status": s}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn errors_are_classified() {
        let c = |op, n, s: &str| classify(op, status(n), &err(n, s));
        assert!(matches!(
            c(Op::Wrap, 403, "PERMISSION_DENIED"),
            KmsError::Denied(m) if m.contains("PERMISSION_DENIED")
        ));
        assert!(matches!(c(Op::Get, 404, "NOT_FOUND"), KmsError::Denied(_)));
        assert!(matches!(
            c(Op::Unwrap, 400, "FAILED_PRECONDITION"),
            KmsError::Denied(_)
        ));
        assert_eq!(
            c(Op::Unwrap, 400, "INVALID_ARGUMENT"),
            KmsError::InvalidCiphertext
        );
        assert!(matches!(
            c(Op::Wrap, 400, "INVALID_ARGUMENT"),
            KmsError::Other(_)
        ));
        assert_eq!(c(Op::Wrap, 429, "RESOURCE_EXHAUSTED"), KmsError::Busy);
        for n in [502, 503, 504] {
            assert!(matches!(
                c(Op::Unwrap, n, "UNAVAILABLE"),
                KmsError::Unreachable(_)
            ));
        }
        assert!(matches!(c(Op::Unwrap, 500, "INTERNAL"), KmsError::Other(_)));
        assert!(matches!(
            c(Op::Unwrap, 401, "UNAUTHENTICATED"),
            KmsError::Denied(_)
        ));
        // A body that is not Google's error shape still classifies by status.
        assert!(matches!(
            classify(Op::Unwrap, status(403), b"<html>"),
            KmsError::Denied(_)
        ));
    }

    #[test]
    fn key_names_are_checked() {
        assert!(check_key_name("projects/p/locations/global/keyRings/r/cryptoKeys/k").is_ok());
        assert!(
            check_key_name("projects/example.com:p/locations/l/keyRings/r-1/cryptoKeys/k_2")
                .is_ok()
        );
        for bad in [
            "",
            "projects/p/locations/l/keyRings/r",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k?x=1",
            "projects/p/locations/l/keyRings/r/cryptoKeys/..%2f",
            "projects//locations/l/keyRings/r/cryptoKeys/k",
            "projects/../locations/l/keyRings/r/cryptoKeys/k",
            "projects/p/locations/l/keyRings/./cryptoKeys/k",
            "project/p/locations/l/keyRings/r/cryptoKeys/k",
        ] {
            assert!(check_key_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_are_read_from_names() {
        assert_eq!(
            version_of("projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/7")
                .unwrap(),
            7
        );
        for bad in ["", "x/cryptoKeyVersions/0", "x/cryptoKeyVersions/a", "k"] {
            assert!(version_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_private_key_is_refused_without_quoting_it() {
        let e = signer(&Secret::new(
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        ))
        .err()
        .unwrap();
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        assert!(signer(&Secret::new("not a pem")).is_err());
    }
}
