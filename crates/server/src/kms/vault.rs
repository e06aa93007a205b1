//! HashiCorp Vault / OpenBao Transit over its HTTP API.
//!
//! The tenant runs Vault or OpenBao with a Transit mount and a key created with
//! `derived=true`, and hands the ES a token whose policy may only use that key (see
//! docs/kms/vault.md). The adapter calls:
//!
//! * `POST /v1/{mount}/datakey/plaintext/{key}` for `generate`,
//! * `POST /v1/{mount}/encrypt/{key}` for `wrap`,
//! * `POST /v1/{mount}/decrypt/{key}` for `unwrap`,
//! * `GET /v1/{mount}/keys/{key}` for `describe` (`latest_version`).
//!
//! **Binding.** Transit derives a per-context key from a derived key, so every call passes
//! `context` = base64(SHA-256(`"keystead/v1/kms-binding"` ‖ lp16(tenant) ‖ lp16(config) ‖
//! context bytes)). An unwrap under another tenant, config or context derives another key
//! and fails authentication: [`KmsError::InvalidCiphertext`]. A key that is not derived
//! would ignore the context, so the adapter reads the key once (the first call of an
//! adapter) and refuses to use a key without `derived=true`.
//!
//! **Asymmetric mode (RSA keys).** A key of type `rsa-2048`, `rsa-3072` or `rsa-4096`
//! serves asymmetric-mode tenants ([`AsymmetricScheme::LocalRemote`]): the adapter reads
//! the public key of the latest version (`GET /v1/{mount}/keys/{key}`,
//! `keys.{N}.public_key`, PEM SPKI) and the service encrypts fresh 32-byte secrets to it
//! locally with RSA-OAEP (SHA-256 for the hash and MGF1, empty label: exactly what Transit's
//! own RSA encrypt does and its decrypt expects), framed like a Transit ciphertext. Wraps
//! make no KMS call; unwraps are the ordinary `decrypt`. RSA keys cannot be derived, so no
//! `context` is sent for them: the EDEK's binding to tenant, config and version comes from
//! the HKDF over its header (the DEK is derived from the secret and the header). Only
//! public-key operations happen in the ES (the Marvin timing attack on RSA decryption
//! concerns private-key operations, which stay in the KMS). `generate` and `wrap` on an RSA
//! key, and `local_wrapper` on a symmetric key, fail with a clear [`KmsError::Other`].
//!
//! **Ciphertext framing.** Transit answers `vault:v{N}:{base64}`; the adapter stores it
//! compactly as `0x01 ‖ N (u32, big endian) ‖ raw bytes` and rebuilds the text to decrypt.
//! The key version therefore travels with every ciphertext.
//!
//! **Errors.** 403 (and 401) → `Denied`; a missing or deleted key → `Denied`; a ciphertext
//! that does not authenticate or parse → `InvalidCiphertext`; 429 → `Busy`; 5xx (503 while
//! sealed), connect and DNS failures → `Unreachable`; no answer in time → `Timeout`. Token
//! auth has no refresh, so there is no retry on 401. The adapter never retries: the service
//! wraps every call in its timeout, retries and circuit breaker.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode, Url};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use rsa::{Oaep, RsaPublicKey};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::registry::BuildContext;
use super::secret::Secret;
use super::{AsymmetricScheme, BoxFuture, Generated, KeyRef, Kms, KmsError, LocalWrap, Wrapped};

/// Provider name, as in a config's `provider`.
pub const PROVIDER: &str = "vault";

/// First byte of the stored ciphertext framing.
const FRAME_V1: u8 = 0x01;
/// Domain separation of the binding that becomes Transit's derivation context.
/// The prefix Transit (Vault and OpenBao alike) puts on its ciphertexts.
const TEXT_PREFIX: &str = "vault:v";
/// Largest answer read from the server (Transit answers are a few hundred bytes).
const MAX_ANSWER: usize = 64 * 1024;
/// Smallest RSA modulus accepted for asymmetric mode, in bytes (2048 bits; Transit's
/// smallest RSA key type).
const MIN_RSA_BYTES: usize = 256;
/// Key kinds, once read ([`VaultKms::kind`]).
const KIND_UNKNOWN: u8 = 0;
const KIND_DERIVED: u8 = 1;
const KIND_RSA: u8 = 2;
/// Longest provider error text kept in a `KmsError` message.
const MAX_ERROR_TEXT: usize = 200;

/// The JSON settings of a `vault` config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Base URL of the Vault/OpenBao server, e.g. `https://vault.example:8200`.
    address: String,
    /// The Transit mount path (default `transit`; nested mounts like `kms/transit` work).
    #[serde(default = "default_mount")]
    mount: String,
    /// The Transit key name.
    key: String,
    /// A Vault token (`X-Vault-Token`).
    token: Secret,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    #[serde(default)]
    namespace: Option<String>,
}

fn default_mount() -> String {
    "transit".to_owned()
}

/// Builds a Transit adapter from its settings (validated here, so a bad config fails when
/// it is added rather than on the first request).
pub fn build(settings: serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Kms>, KmsError> {
    let s: Settings = serde_json::from_value(settings)
        .map_err(|e| KmsError::Other(format!("vault settings: {e}")))?;
    let base = parse_address(&s.address)?;
    ctx.outbound.check_url(&base)?;
    let mount = path_segments("mount", &s.mount, true)?;
    let key = path_segments("key", &s.key, false)?;
    let namespace = match s.namespace {
        Some(ns) => Some(header_value("namespace", &ns)?),
        None => None,
    };
    // Checked once here so a request can never fail on it (and never print it).
    if HeaderValue::from_str(s.token.expose()).is_err() {
        return Err(KmsError::Other(
            "vault settings: token contains characters not allowed in an HTTP header".into(),
        ));
    }
    let url = |op: &[&str]| endpoint(&base, &mount, op, &key);
    Ok(Arc::new(VaultKms {
        client: ctx.outbound.http_client(ctx.timeout)?,
        encrypt: url(&["encrypt"])?,
        decrypt: url(&["decrypt"])?,
        datakey: url(&["datakey", "plaintext"])?,
        keys: url(&["keys"])?,
        key_name: s.key,
        token: s.token,
        namespace,
        kind: AtomicU8::new(KIND_UNKNOWN),
    }))
}

fn parse_address(address: &str) -> Result<Url, KmsError> {
    if address.is_empty() {
        return Err(KmsError::Other(
            "vault settings: address is required".into(),
        ));
    }
    let url = Url::parse(address)
        .map_err(|e| KmsError::Other(format!("vault settings: address is not a URL: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL would end up in error messages; the token has its field.
        return Err(KmsError::Other(
            "vault settings: address must not contain user info".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(KmsError::Other(
            "vault settings: address must not have a query or fragment".into(),
        ));
    }
    Ok(url)
}

/// Splits and checks a mount path (`nested` allows `/`) or key name: ASCII letters, digits,
/// `-`, `_` and `.`, no empty, `.` or `..` segment (no path games through a config).
fn path_segments(what: &str, value: &str, nested: bool) -> Result<Vec<String>, KmsError> {
    let value = if nested {
        value.trim_matches('/')
    } else {
        value
    };
    if value.is_empty() {
        return Err(KmsError::Other(format!(
            "vault settings: {what} is required"
        )));
    }
    let parts: Vec<&str> = if nested {
        value.split('/').collect()
    } else {
        vec![value]
    };
    for p in &parts {
        let ok = !p.is_empty()
            && *p != "."
            && *p != ".."
            && p.len() <= 128
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(KmsError::Other(format!(
                "vault settings: {what} '{value}' must be made of letters, digits, '-', '_' \
                 and '.'{}",
                if nested {
                    " (segments separated by '/')"
                } else {
                    ""
                }
            )));
        }
    }
    Ok(parts.into_iter().map(str::to_owned).collect())
}

fn header_value(what: &str, value: &str) -> Result<HeaderValue, KmsError> {
    if value.is_empty() {
        return Err(KmsError::Other(format!(
            "vault settings: {what} must not be empty (leave it out instead)"
        )));
    }
    HeaderValue::from_str(value).map_err(|_| {
        KmsError::Other(format!(
            "vault settings: {what} contains characters not allowed in an HTTP header"
        ))
    })
}

/// `{base}/v1/{mount…}/{op…}/{key}`.
fn endpoint(base: &Url, mount: &[String], op: &[&str], key: &[String]) -> Result<Url, KmsError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| KmsError::Other("vault settings: address cannot be a base URL".into()))?
        .pop_if_empty()
        .push("v1")
        .extend(mount)
        .extend(op)
        .extend(key);
    Ok(url)
}

/// A Transit key used by one (tenant, config).
struct VaultKms {
    client: reqwest::Client,
    encrypt: Url,
    decrypt: Url,
    datakey: Url,
    keys: Url,
    key_name: String,
    token: Secret,
    namespace: Option<HeaderValue>,
    /// What the key was seen to be: derived symmetric or RSA (a key's type and derivation
    /// never change), or not read yet.
    kind: AtomicU8,
}

/// Vault's answer envelope: `{"data": …}`.
#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

#[derive(Deserialize)]
struct CiphertextOut {
    ciphertext: String,
}

#[derive(Deserialize)]
struct PlaintextOut {
    plaintext: Secret,
}

#[derive(Deserialize)]
struct DataKeyOut {
    plaintext: Secret,
    ciphertext: String,
}

#[derive(Deserialize)]
struct KeyInfo {
    latest_version: u32,
    #[serde(default)]
    derived: bool,
    /// `aes256-gcm96`, `rsa-2048`, …
    #[serde(rename = "type", default)]
    key_type: String,
    /// Per version: a creation time (symmetric keys) or an object with `public_key`.
    #[serde(default)]
    keys: HashMap<String, serde_json::Value>,
}

impl KeyInfo {
    fn is_rsa(&self) -> bool {
        matches!(self.key_type.as_str(), "rsa-2048" | "rsa-3072" | "rsa-4096")
    }
}

/// RSA-OAEP-SHA256 to one Transit RSA key version's public key.
struct RsaWrapper {
    version: u32,
    public: RsaPublicKey,
}

impl LocalWrap for RsaWrapper {
    fn version(&self) -> u32 {
        self.version
    }

    fn wrap(&self, plaintext: &[u8]) -> Result<Wrapped, KmsError> {
        let raw = self
            .public
            .encrypt(&mut crate::util::os_rng(), Oaep::<Sha256>::new(), plaintext)
            .map_err(|e| KmsError::Other(format!("vault: RSA-OAEP encryption failed: {e}")))?;
        Ok(Wrapped {
            ciphertext: frame(self.version, &raw),
            version: self.version,
        })
    }
}

/// Vault's error body: `{"errors": ["…"]}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

impl VaultKms {
    /// One HTTP call; a non-2xx answer becomes a classified [`KmsError`].
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &Url,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<T, KmsError> {
        let mut token = HeaderValue::from_str(self.token.expose())
            .map_err(|_| KmsError::Other("vault token is not a valid header value".into()))?;
        token.set_sensitive(true);
        let mut req = self
            .client
            .request(method, url.clone())
            .header("X-Vault-Token", token);
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns.clone());
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_vec());
        }
        let resp = req.send().await.map_err(transport_error)?;
        let status = resp.status();
        let bytes = read_body(resp).await?;
        if !status.is_success() {
            let errors = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|b| b.errors)
                .unwrap_or_default();
            return Err(classify(status, &errors));
        }
        serde_json::from_slice::<Data<T>>(&bytes)
            .map(|d| d.data)
            .map_err(|e| KmsError::Other(format!("vault: unexpected answer ({status}): {e}")))
    }

    /// Reads the key, checking that it is derived (else the binding would be ignored) or an
    /// RSA key (asymmetric mode, bound by the EDEK header instead).
    async fn key_info(&self) -> Result<KeyInfo, KmsError> {
        let info: KeyInfo = self.call(Method::GET, &self.keys, None).await?;
        if info.is_rsa() {
            if info.latest_version == 0 {
                return Err(KmsError::Other(format!(
                    "vault key '{}' reports latest_version 0",
                    self.key_name
                )));
            }
            self.kind.store(KIND_RSA, Ordering::Relaxed);
            return Ok(info);
        }
        if !info.derived {
            return Err(KmsError::Other(format!(
                "vault key '{}' is not derived: create it with derived=true so the \
                 tenant, config and context are bound to every ciphertext",
                self.key_name
            )));
        }
        if info.latest_version == 0 {
            return Err(KmsError::Other(format!(
                "vault key '{}' reports latest_version 0",
                self.key_name
            )));
        }
        self.kind.store(KIND_DERIVED, Ordering::Relaxed);
        Ok(info)
    }

    /// The first use of an adapter checks the key; later calls skip the extra round trip.
    /// Returns the key's kind.
    async fn ensure_kind(&self) -> Result<u8, KmsError> {
        match self.kind.load(Ordering::Relaxed) {
            KIND_UNKNOWN => {
                self.key_info().await?;
                Ok(self.kind.load(Ordering::Relaxed))
            }
            k => Ok(k),
        }
    }

    /// Symmetric operations (`generate`, `wrap`) need a derived symmetric key.
    async fn ensure_derived(&self, op: &str) -> Result<(), KmsError> {
        if self.ensure_kind().await? == KIND_RSA {
            return Err(KmsError::Other(format!(
                "vault key '{}' is an RSA key: it serves asymmetric-mode tenants only \
                 (no {op}); remote and leasing modes need a symmetric key created with \
                 derived=true",
                self.key_name
            )));
        }
        Ok(())
    }

    async fn local_wrapper_inner(&self) -> Result<Arc<dyn LocalWrap>, KmsError> {
        let info = self.key_info().await?;
        if !info.is_rsa() {
            return Err(KmsError::Other(format!(
                "vault key '{}' is of type '{}': asymmetric mode needs a Transit key of type \
                 rsa-2048, rsa-3072 or rsa-4096",
                self.key_name, info.key_type
            )));
        }
        let version = info.latest_version;
        let pem = info
            .keys
            .get(&version.to_string())
            .and_then(|v| v.get("public_key"))
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| {
                KmsError::Other(format!(
                    "vault key '{}' shows no public key for version {version}",
                    self.key_name
                ))
            })?;
        let public = RsaPublicKey::from_public_key_pem(pem.trim()).map_err(|e| {
            KmsError::Other(format!(
                "vault key '{}': the public key of version {version} is not an RSA SPKI PEM: {e}",
                self.key_name
            ))
        })?;
        if public.size() < MIN_RSA_BYTES {
            return Err(KmsError::Other(format!(
                "vault key '{}': the RSA key has fewer than 2048 bits",
                self.key_name
            )));
        }
        Ok(Arc::new(RsaWrapper { version, public }))
    }

    async fn generate_inner(&self, key: &KeyRef, context: &[u8]) -> Result<Generated, KmsError> {
        self.ensure_derived("generate").await?;
        let body = json_body(&[("context", &binding(key, context)), ("bits", "256")])?;
        let out: DataKeyOut = self.call(Method::POST, &self.datakey, Some(body)).await?;
        let plaintext = decode_plaintext(&out.plaintext)?;
        if plaintext.len() != 32 {
            return Err(KmsError::Other(format!(
                "vault: datakey answered {} bytes instead of 32",
                plaintext.len()
            )));
        }
        let (version, ciphertext) = frame_from_text(&out.ciphertext)?;
        Ok(Generated {
            plaintext,
            ciphertext,
            version,
        })
    }

    async fn wrap_inner(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Wrapped, KmsError> {
        self.ensure_derived("wrap").await?;
        let encoded = Zeroizing::new(B64.encode(plaintext));
        let body = json_body(&[("plaintext", &encoded), ("context", &binding(key, context))])?;
        let out: CiphertextOut = self.call(Method::POST, &self.encrypt, Some(body)).await?;
        let (version, ciphertext) = frame_from_text(&out.ciphertext)?;
        Ok(Wrapped {
            ciphertext,
            version,
        })
    }

    async fn unwrap_inner(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        // The frame names its key version; `key.version` is only a hint and not needed.
        let text = text_from_frame(ciphertext)?;
        let body = if self.ensure_kind().await? == KIND_RSA {
            // RSA keys cannot be derived: no context (the EDEK header binds instead).
            json_body(&[("ciphertext", &text)])?
        } else {
            json_body(&[("ciphertext", &text), ("context", &binding(key, context))])?
        };
        let out: PlaintextOut = self.call(Method::POST, &self.decrypt, Some(body)).await?;
        decode_plaintext(&out.plaintext)
    }
}

impl Kms for VaultKms {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn generate<'a>(
        &'a self,
        key: &'a KeyRef,
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Generated, KmsError>> {
        Box::pin(self.generate_inner(key, context))
    }

    fn wrap<'a>(
        &'a self,
        key: &'a KeyRef,
        plaintext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        Box::pin(self.wrap_inner(key, plaintext, context))
    }

    fn unwrap<'a>(
        &'a self,
        key: &'a KeyRef,
        ciphertext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, KmsError>> {
        Box::pin(self.unwrap_inner(key, ciphertext, context))
    }

    fn describe<'a>(&'a self, _key: &'a KeyRef) -> BoxFuture<'a, Result<u32, KmsError>> {
        Box::pin(async move { self.key_info().await.map(|i| i.latest_version) })
    }

    fn asymmetric_scheme(&self) -> AsymmetricScheme {
        AsymmetricScheme::LocalRemote
    }

    fn local_wrapper<'a>(
        &'a self,
        _key: &'a KeyRef,
    ) -> BoxFuture<'a, Result<Arc<dyn LocalWrap>, KmsError>> {
        Box::pin(self.local_wrapper_inner())
    }
}

/// Reads an answer of at most [`MAX_ANSWER`] bytes (the endpoint is the tenant's choice, so
/// it must not be able to make the ES buffer without bound), into zeroizing memory: it may
/// hold a plaintext.
async fn read_body(mut resp: reqwest::Response) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    // Reserve up front so the buffer rarely moves (a moved-from buffer is not zeroized).
    let hint = resp
        .content_length()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(4096)
        .min(MAX_ANSWER);
    let mut out = Zeroizing::new(Vec::with_capacity(hint));
    while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
        if out.len() + chunk.len() > MAX_ANSWER {
            return Err(KmsError::Other(format!(
                "vault: the answer is larger than {MAX_ANSWER} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A JSON object of string fields, in zeroizing memory (it may carry a plaintext).
fn json_body(fields: &[(&str, &str)]) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let map: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect();
    serde_json::to_vec(&map)
        .map(Zeroizing::new)
        .map_err(|e| KmsError::Other(format!("vault: encoding a request: {e}")))
}

fn decode_plaintext(b64: &Secret) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    B64.decode(b64.expose())
        .map(Zeroizing::new)
        .map_err(|_| KmsError::Other("vault: the plaintext in the answer is not base64".into()))
}

/// Transit's derivation context for (tenant, config, context), base64 as the API wants it.
fn binding(key: &KeyRef, context: &[u8]) -> String {
    B64.encode(super::binding_digest(key, context))
}

/// `vault:v{N}:{base64}` → `0x01 ‖ N ‖ raw`. A malformed answer is the server's fault.
fn frame_from_text(text: &str) -> Result<(u32, Vec<u8>), KmsError> {
    let bad = || KmsError::Other("vault: the ciphertext in the answer is malformed".into());
    let rest = text.strip_prefix(TEXT_PREFIX).ok_or_else(bad)?;
    let (version, b64) = rest.split_once(':').ok_or_else(bad)?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let version: u32 = version.parse().map_err(|_| bad())?;
    let raw = B64.decode(b64).map_err(|_| bad())?;
    if version == 0 || raw.is_empty() {
        return Err(bad());
    }
    Ok((version, frame(version, &raw)))
}

/// `0x01 ‖ version ‖ raw`.
fn frame(version: u32, raw: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(5 + raw.len());
    frame.push(FRAME_V1);
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(raw);
    frame
}

/// `0x01 ‖ N ‖ raw` → `vault:v{N}:{base64}`. Anything else is not a ciphertext of ours.
fn text_from_frame(frame: &[u8]) -> Result<String, KmsError> {
    let (&tag, rest) = frame.split_first().ok_or(KmsError::InvalidCiphertext)?;
    if tag != FRAME_V1 || rest.len() < 5 {
        return Err(KmsError::InvalidCiphertext);
    }
    let (version, raw) = rest.split_at(4);
    let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
    if version == 0 {
        return Err(KmsError::InvalidCiphertext);
    }
    Ok(format!("{TEXT_PREFIX}{version}:{}", B64.encode(raw)))
}

/// Maps reqwest's failures: no answer in time, cannot connect (DNS, refused address, TLS),
/// or a broken exchange.
fn transport_error(e: reqwest::Error) -> KmsError {
    if e.is_timeout() {
        KmsError::Timeout
    } else if e.is_connect() || e.is_request() || e.is_body() {
        // The chain names the cause (refused address, TLS, connection refused); the URL
        // in it holds no credential (user info is refused in `build`).
        KmsError::Unreachable(format!("vault: {}", error_chain(&e)))
    } else {
        KmsError::Other(format!("vault: {}", error_chain(&e)))
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// Classifies a Vault error answer by its status and error texts. Texts are checked first
/// where they are more precise than the status (a failed decryption is a 400, like a bad
/// request; a missing key is a 400 or a 404).
fn classify(status: StatusCode, errors: &[String]) -> KmsError {
    let text = summary(errors);
    let lower = text.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    let label = format!("vault {}: {text}", status.as_u16());
    if has(&[
        "encryption key not found",
        "no existing key",
        "key not found",
        "too old",
        "disallowed by policy",
    ]) {
        // A deleted key, or a version the tenant retired (min_decryption_version).
        return KmsError::Denied(label);
    }
    if status.is_client_error()
        && has(&[
            "message authentication failed",
            "invalid ciphertext",
            "could not decode",
            "unable to decrypt",
            "invalid key version",
        ])
    {
        return KmsError::InvalidCiphertext;
    }
    match status.as_u16() {
        401 | 403 => KmsError::Denied(label),
        404 => KmsError::Denied(label),
        429 => KmsError::Busy,
        500..=599 => KmsError::Unreachable(label),
        _ => KmsError::Other(label),
    }
}

/// The provider's error texts, joined and cut to [`MAX_ERROR_TEXT`] characters.
fn summary(errors: &[String]) -> String {
    let joined = if errors.is_empty() {
        "no error text".to_owned()
    } else {
        errors.join("; ")
    };
    let mut out: String = joined.chars().take(MAX_ERROR_TEXT).collect();
    if out.len() < joined.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::kms::net::OutboundPolicy;
    use std::time::Duration;

    fn ctx() -> BuildContext {
        BuildContext {
            outbound: OutboundPolicy::default(),
            timeout: Duration::from_secs(1),
        }
    }

    fn errs(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn errors_map_to_the_api_codes() {
        let c = |code: u16, e: &[&str]| classify(StatusCode::from_u16(code).unwrap(), &errs(e));
        assert!(matches!(
            c(403, &["permission denied"]),
            KmsError::Denied(_)
        ));
        assert!(matches!(c(401, &[]), KmsError::Denied(_)));
        assert!(matches!(
            c(400, &["encryption key not found"]),
            KmsError::Denied(_)
        ));
        assert!(matches!(
            c(404, &["no existing key named tenant-acme could be found"]),
            KmsError::Denied(_)
        ));
        assert!(matches!(c(404, &[]), KmsError::Denied(_)));
        assert!(matches!(
            c(
                400,
                &["ciphertext or hmac version is disallowed by policy (too old)"]
            ),
            KmsError::Denied(_)
        ));
        for e in [
            "cipher: message authentication failed",
            "invalid ciphertext: no prefix",
            "invalid ciphertext: could not decode",
            "invalid key version",
        ] {
            assert_eq!(c(400, &[e]), KmsError::InvalidCiphertext, "{e}");
        }
        assert_eq!(
            c(
                429,
                &["request path transit/encrypt: rate limit quota exceeded"]
            ),
            KmsError::Busy
        );
        assert!(matches!(
            c(503, &["Vault is sealed"]),
            KmsError::Unreachable(_)
        ));
        assert!(matches!(c(502, &[]), KmsError::Unreachable(_)));
        assert!(matches!(
            c(500, &["internal error"]),
            KmsError::Unreachable(_)
        ));
        assert!(matches!(c(400, &["missing plaintext"]), KmsError::Other(_)));
    }

    #[test]
    fn messages_name_the_status_and_stay_short() {
        let long = "x".repeat(5000);
        let e = classify(StatusCode::FORBIDDEN, &errs(&["permission denied", &long]));
        let m = e.to_string();
        assert!(m.contains("vault 403: permission denied"), "{m}");
        assert!(m.len() < 400, "{}", m.len());
    }

    #[test]
    fn frames_round_trip_and_carry_the_version() {
        let raw = [7u8; 40];
        let text = format!("vault:v12:{}", B64.encode(raw));
        let (v, frame) = frame_from_text(&text).unwrap();
        assert_eq!(v, 12);
        assert_eq!(frame[0], FRAME_V1);
        assert_eq!(text_from_frame(&frame).unwrap(), text);
        for bad in [
            "",
            "vault:",
            "vault:v",
            "vault:v1",
            "vault:v1:",
            "vault:v0:AAAA",
            "vault:vx:AAAA",
            "vault:v-1:AAAA",
            "vault:v1:***",
            "vault:v99999999999:AAAA",
            "other:v1:AAAA",
        ] {
            assert!(frame_from_text(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_truncation_and_random_bytes_are_refused_without_panic() {
        let (_, frame) = frame_from_text(&format!("vault:v3:{}", B64.encode([1u8; 44]))).unwrap();
        for n in 0..frame.len() {
            let r = text_from_frame(&frame[..n]);
            if n < 6 {
                assert_eq!(r, Err(KmsError::InvalidCiphertext), "{n}");
            }
        }
        let mut other = frame.clone();
        other[0] = 2;
        assert_eq!(text_from_frame(&other), Err(KmsError::InvalidCiphertext));
        let zero = [FRAME_V1, 0, 0, 0, 0, 9];
        assert_eq!(text_from_frame(&zero), Err(KmsError::InvalidCiphertext));
        for _ in 0..2000 {
            let len = usize::from(crate::util::random_bytes::<1>()[0] % 64);
            let bytes: Vec<u8> = crate::util::random_bytes::<64>()[..len].to_vec();
            let _ = text_from_frame(&bytes);
            let _ = frame_from_text(&String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn binding_separates_tenant_config_and_context() {
        let k = |t: &str, c: &str| KeyRef {
            tenant: t.into(),
            config: c.into(),
            version: None,
        };
        let a = binding(&k("acme", "vault-1"), b"ctx");
        assert_eq!(a, binding(&k("acme", "vault-1"), b"ctx"));
        assert_ne!(a, binding(&k("acme2", "vault-1"), b"ctx"));
        assert_ne!(a, binding(&k("acme", "vault-2"), b"ctx"));
        assert_ne!(a, binding(&k("acme", "vault-1"), b"ctx2"));
        // Length prefixes: moving a byte between fields changes the binding.
        assert_ne!(binding(&k("ab", "c"), b""), binding(&k("a", "bc"), b""));
    }

    #[test]
    fn settings_are_validated_without_echoing_the_token() {
        let ok = serde_json::json!({
            "address": "https://vault.example:8200", "mount": "kms/transit",
            "key": "tenant-acme", "token": "hvs.TOPSECRET", "namespace": "acme"
        });
        assert!(build(ok.clone(), &ctx()).is_ok());
        let cases = [
            (
                serde_json::json!({"mount": "transit", "key": "k", "token": "hvs.TOPSECRET"}),
                "address",
            ),
            (
                serde_json::json!({"address": "", "key": "k", "token": "hvs.TOPSECRET"}),
                "address is required",
            ),
            (
                serde_json::json!({"address": "https://v.example", "token": "hvs.TOPSECRET"}),
                "key",
            ),
            (
                serde_json::json!({"address": "https://v.example", "key": "k"}),
                "token",
            ),
            (
                serde_json::json!({"address": "https://v.example", "key": "", "token": "hvs.TOPSECRET"}),
                "key is required",
            ),
            (
                serde_json::json!({"address": "https://v.example", "key": "a/b", "token": "hvs.TOPSECRET"}),
                "key",
            ),
            (
                serde_json::json!({"address": "https://v.example", "mount": "a/../b", "key": "k", "token": "hvs.TOPSECRET"}),
                "mount",
            ),
            (
                serde_json::json!({"address": "http://v.example", "key": "k", "token": "hvs.TOPSECRET"}),
                "https",
            ),
            (
                serde_json::json!({"address": "https://10.0.0.1:8200", "key": "k", "token": "hvs.TOPSECRET"}),
                "not allowed",
            ),
            (
                serde_json::json!({"address": "https://u:p@v.example", "key": "k", "token": "hvs.TOPSECRET"}),
                "user info",
            ),
            (
                serde_json::json!({"address": "https://v.example", "key": "k", "token": "hvs.TOP\nSECRET"}),
                "token",
            ),
            (
                serde_json::json!({"address": "https://v.example", "key": "k", "token": "hvs.TOPSECRET", "extra": 1}),
                "unknown field",
            ),
        ];
        for (settings, want) in cases {
            let e = build(settings.clone(), &ctx()).err().expect("refused");
            let m = e.to_string();
            assert!(m.contains(want), "{settings}: {m}");
            assert!(!m.contains("TOPSECRET"), "{m}");
        }
    }

    #[test]
    fn endpoints_are_built_from_the_segments() {
        let base = Url::parse("https://vault.example:8200/").unwrap();
        let m = path_segments("mount", "/kms/transit/", true).unwrap();
        let k = path_segments("key", "tenant-acme", false).unwrap();
        let u = endpoint(&base, &m, &["datakey", "plaintext"], &k).unwrap();
        assert_eq!(
            u.as_str(),
            "https://vault.example:8200/v1/kms/transit/datakey/plaintext/tenant-acme"
        );
    }
}
