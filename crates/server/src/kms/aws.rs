//! AWS KMS adapter: a tenant's symmetric KMS key (`key_id`) wraps and unwraps through the
//! official `aws-sdk-kms` client.
//!
//! * `generate` is `GenerateDataKey` (`AES_256`), `wrap` is `Encrypt`, `unwrap` is `Decrypt`
//!   with the configured `KeyId` pinned (a ciphertext of another key is refused by KMS
//!   instead of being decrypted with whatever key it names), `describe` is `DescribeKey`.
//! * Binding: every call carries an `EncryptionContext` of three entries — the tenant id,
//!   the config id and the hex SHA-256 of the caller's context bytes. KMS authenticates it
//!   as AAD, so an unwrap under another tenant, config or context fails with
//!   `InvalidCiphertextException`. The ciphertext is KMS's `CiphertextBlob` as it is (no
//!   framing of ours: the blob already names the key and its backing key version).
//! * Versions: AWS rotates key material behind the same key id and the blob identifies the
//!   material, so the key has no version visible to us: `describe`, `Wrapped.version` and
//!   `Generated.version` answer 1 and `KeyRef.version` is ignored on unwrap.
//! * HTTP: the SDK is built without its own HTTPS stack; [`ReqwestHttpClient`] sends its
//!   signed requests through [`OutboundPolicy::http_client`] (rustls with ring, the
//!   resolver that refuses non-public addresses after DNS resolution, no redirects, no
//!   proxy, `ctx.timeout`). The SDK's own retries are off: the service retries.
//!
//! Error mapping (see [`classify_service_error`]): refusals → `Denied`, a ciphertext that does
//! not decrypt → `InvalidCiphertext`, throttling → `Busy`, KMS-side failures (HTTP 5xx,
//! `KMSInternalException`, `DependencyTimeoutException`) → `Unreachable` (retryable, and
//! counted by the circuit breaker: a KMS answering 5xx is as unusable as one that does
//! not answer), no answer in time → `Timeout`, the rest → `Other`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use aws_sdk_kms::config::{
    BehaviorVersion, Credentials, Region, SharedHttpClient, StalledStreamProtectionConfig,
};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeySpec, KeyState};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::registry::BuildContext;
use super::secret::Secret;
use super::{BoxFuture, Generated, KeyRef, Kms, KmsError, Wrapped};

/// The provider name in a config's `provider`.
pub const PROVIDER: &str = "aws";

/// Encryption-context entries (AWS logs them in CloudTrail, so they hold ids and a digest,
/// never the caller's context bytes themselves).
const CTX_TENANT: &str = "keystead:tenant";
const CTX_CONFIG: &str = "keystead:config";
const CTX_DIGEST: &str = "keystead:context-sha256";

/// The adapter's settings, as stored (sealed) in the tenant's KMS config.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// AWS region of the key, e.g. `eu-west-1`.
    region: Option<String>,
    /// Key id, key ARN, alias name or alias ARN of a symmetric encryption key.
    key_id: Option<String>,
    /// Another endpoint than `https://kms.<region>.amazonaws.com` (VPC endpoint, FIPS
    /// endpoint, a test peer).
    endpoint_url: Option<String>,
    /// Static credentials, or `"environment"`.
    credentials: Option<CredentialSettings>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CredentialSettings {
    Source(CredentialSource),
    Static(StaticCredentials),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum CredentialSource {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optional `AWS_SESSION_TOKEN`, read
    /// when the adapter is built.
    Environment,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaticCredentials {
    access_key_id: String,
    secret_access_key: Secret,
    session_token: Option<Secret>,
}

/// Validated settings: everything `build` needs, credentials still redacted.
struct Parsed {
    region: String,
    key_id: String,
    endpoint: String,
    custom_endpoint: bool,
    access_key_id: String,
    secret_access_key: Secret,
    session_token: Option<Secret>,
}

fn settings_error(msg: impl fmt::Display) -> KmsError {
    KmsError::Other(format!("aws settings: {msg}"))
}

/// Parses and checks the settings. serde's messages can quote a rejected value, which could
/// be a credential in the wrong place: only the field-name messages are passed on.
fn parse(settings: serde_json::Value) -> Result<Parsed, KmsError> {
    let s: Settings = serde_json::from_value(settings).map_err(|e| {
        let msg = e.to_string();
        if msg.starts_with("unknown field") || msg.starts_with("missing field") {
            settings_error(msg)
        } else {
            settings_error(
                "malformed (expected region, key_id, optional endpoint_url, and credentials \
                 as {access_key_id, secret_access_key, session_token?} or \"environment\")",
            )
        }
    })?;
    let region = s
        .region
        .filter(|r| !r.is_empty())
        .ok_or_else(|| settings_error("region is required"))?;
    if !region
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(settings_error(format!(
            "region '{region}' is not a region name"
        )));
    }
    let key_id = s
        .key_id
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| settings_error("key_id is required"))?;
    let (access_key_id, secret_access_key, session_token) = match s.credentials {
        None => return Err(settings_error("credentials are required")),
        Some(CredentialSettings::Static(c)) => {
            if c.access_key_id.is_empty() {
                return Err(settings_error("credentials.access_key_id is empty"));
            }
            (c.access_key_id, c.secret_access_key, c.session_token)
        }
        Some(CredentialSettings::Source(CredentialSource::Environment)) => from_environment()?,
    };
    let custom_endpoint = s.endpoint_url.is_some();
    let endpoint = s
        .endpoint_url
        .unwrap_or_else(|| format!("https://kms.{region}.amazonaws.com"));
    Ok(Parsed {
        region,
        key_id,
        endpoint,
        custom_endpoint,
        access_key_id,
        secret_access_key,
        session_token,
    })
}

/// The standard AWS environment variables.
fn from_environment() -> Result<(String, Secret, Option<Secret>), KmsError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let id = var("AWS_ACCESS_KEY_ID").ok_or_else(|| {
        settings_error("credentials are \"environment\" but AWS_ACCESS_KEY_ID is not set")
    })?;
    let secret = var("AWS_SECRET_ACCESS_KEY")
        .map(Secret::new)
        .ok_or_else(|| {
            settings_error("credentials are \"environment\" but AWS_SECRET_ACCESS_KEY is not set")
        })?;
    Ok((id, secret, var("AWS_SESSION_TOKEN").map(Secret::new)))
}

/// Builds the AWS KMS adapter from its settings.
pub fn build(settings: serde_json::Value, ctx: &BuildContext) -> Result<Arc<dyn Kms>, KmsError> {
    let (client, key_id) = sdk_client(settings, ctx)?;
    Ok(Arc::new(AwsKms { client, key_id }))
}

/// The SDK client the adapter uses, and the configured key id: the same HTTP stack and
/// settings checks as [`build`]. Public for tests and benchmarks that talk to the KMS
/// directly (creating keys in a test peer, measuring a bare SDK call).
pub fn sdk_client(
    settings: serde_json::Value,
    ctx: &BuildContext,
) -> Result<(aws_sdk_kms::Client, String), KmsError> {
    let p = parse(settings)?;
    let url = reqwest::Url::parse(&p.endpoint)
        .map_err(|e| settings_error(format!("endpoint_url is not a URL: {e}")))?;
    ctx.outbound
        .check_url(&url)
        .map_err(|e| settings_error(e.to_string()))?;
    let http = SharedHttpClient::new(ReqwestHttpClient::new(
        ctx.outbound.http_client(ctx.timeout)?,
    ));
    let credentials = Credentials::new(
        p.access_key_id,
        p.secret_access_key.expose(),
        p.session_token.as_ref().map(|t| t.expose().to_owned()),
        None,
        "keystead-settings",
    );
    let mut config = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(p.region))
        .credentials_provider(credentials)
        .http_client(http)
        // The service retries (with jitter, a breaker and a concurrency limit around it).
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(ctx.timeout)
                .build(),
        )
        // Bodies are small JSON documents; the stall detector only adds timers per call.
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled());
    if p.custom_endpoint {
        config = config.endpoint_url(p.endpoint);
    }
    Ok((aws_sdk_kms::Client::from_conf(config.build()), p.key_id))
}

/// The adapter: one SDK client (connection pool inside) per (tenant, config).
struct AwsKms {
    client: aws_sdk_kms::Client,
    key_id: String,
}

/// The encryption context bound to every ciphertext.
fn encryption_context(key: &KeyRef, context: &[u8]) -> HashMap<String, String> {
    HashMap::from([
        (CTX_TENANT.to_owned(), key.tenant.clone()),
        (CTX_CONFIG.to_owned(), key.config.clone()),
        (CTX_DIGEST.to_owned(), hex::encode(Sha256::digest(context))),
    ])
}

impl AwsKms {
    async fn generate_key(&self, key: &KeyRef, context: &[u8]) -> Result<Generated, KmsError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(encryption_context(key, context)))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let plaintext = Zeroizing::new(field(out.plaintext, "GenerateDataKey", "Plaintext")?);
        if plaintext.len() != 32 {
            return Err(KmsError::Other(format!(
                "aws: GenerateDataKey returned {} bytes, not 32",
                plaintext.len()
            )));
        }
        let ciphertext = field(out.ciphertext_blob, "GenerateDataKey", "CiphertextBlob")?;
        Ok(Generated {
            plaintext,
            ciphertext,
            version: 1,
        })
    }

    async fn encrypt(
        &self,
        key: &KeyRef,
        plaintext: &[u8],
        context: &[u8],
    ) -> Result<Wrapped, KmsError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(plaintext))
            .set_encryption_context(Some(encryption_context(key, context)))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(Wrapped {
            ciphertext: field(out.ciphertext_blob, "Encrypt", "CiphertextBlob")?,
            version: 1,
        })
    }

    async fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        if ciphertext.is_empty() {
            // KMS would answer a validation error (→ `Other`); an empty EDEK is simply bad.
            return Err(KmsError::InvalidCiphertext);
        }
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(ciphertext))
            .set_encryption_context(Some(encryption_context(key, context)))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(Zeroizing::new(field(
            out.plaintext,
            "Decrypt",
            "Plaintext",
        )?))
    }

    async fn describe_key(&self) -> Result<u32, KmsError> {
        let out = self
            .client
            .describe_key()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let meta = out
            .key_metadata
            .ok_or_else(|| missing("DescribeKey", "KeyMetadata"))?;
        // Only a symmetric encryption key serves GenerateDataKey/Encrypt/Decrypt as used
        // here: say so at config time instead of failing every call later.
        if let Some(spec) = meta
            .key_spec
            .as_ref()
            .filter(|s| **s != KeySpec::SymmetricDefault)
        {
            return Err(KmsError::Other(format!(
                "aws: key {} is a {} key; a SYMMETRIC_DEFAULT encryption key is needed",
                meta.key_id,
                spec.as_str()
            )));
        }
        match meta.key_state {
            Some(KeyState::Enabled) | None if meta.enabled => Ok(1),
            state => Err(KmsError::Denied(format!(
                "aws: key {} is not enabled (state {})",
                meta.key_id,
                state.as_ref().map_or("unknown", |s| s.as_str())
            ))),
        }
    }
}

fn missing(operation: &str, field: &str) -> KmsError {
    KmsError::Other(format!("aws: {operation} answered without {field}"))
}

/// A blob member of an answer, which KMS always sends on success.
fn field(blob: Option<Blob>, operation: &str, name: &str) -> Result<Vec<u8>, KmsError> {
    blob.map(Blob::into_inner)
        .ok_or_else(|| missing(operation, name))
}

impl Kms for AwsKms {
    fn provider(&self) -> &'static str {
        PROVIDER
    }

    fn generate<'a>(
        &'a self,
        key: &'a KeyRef,
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Generated, KmsError>> {
        Box::pin(self.generate_key(key, context))
    }

    fn wrap<'a>(
        &'a self,
        key: &'a KeyRef,
        plaintext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        Box::pin(self.encrypt(key, plaintext, context))
    }

    fn unwrap<'a>(
        &'a self,
        key: &'a KeyRef,
        ciphertext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, KmsError>> {
        Box::pin(self.decrypt(key, ciphertext, context))
    }

    fn describe<'a>(&'a self, _key: &'a KeyRef) -> BoxFuture<'a, Result<u32, KmsError>> {
        Box::pin(self.describe_key())
    }
}

/// Maps an SDK error to the API's classification.
fn classify<E>(err: &SdkError<E, HttpResponse>) -> KmsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::TimeoutError(_) => KmsError::Timeout,
        SdkError::DispatchFailure(f) if f.is_timeout() => KmsError::Timeout,
        SdkError::DispatchFailure(f) => KmsError::Unreachable(match f.as_connector_error() {
            Some(c) => format!("aws: {}", DisplayErrorContext(c)),
            None => format!("aws: {}", DisplayErrorContext(err)),
        }),
        SdkError::ServiceError(s) => {
            let e = s.err();
            classify_service_error(e.code(), e.message(), s.raw().status().as_u16())
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            if matches!(status, 502..=504) {
                KmsError::Unreachable(format!("aws: HTTP {status}"))
            } else {
                KmsError::Other(format!(
                    "aws: unreadable answer (HTTP {status}): {}",
                    DisplayErrorContext(err)
                ))
            }
        }
        // Construction failures never reached the network (bad input, signing failure).
        _ => KmsError::Other(format!("aws: {}", DisplayErrorContext(err))),
    }
}

/// Maps an AWS KMS error code (and the HTTP status, for codes the SDK does not know) to
/// the API's classification. The message names the code and AWS's message, cut short.
pub fn classify_service_error(code: Option<&str>, message: Option<&str>, status: u16) -> KmsError {
    let code_s = code.unwrap_or("(no error code)");
    let detail = || {
        let msg: String = message.unwrap_or("").chars().take(200).collect();
        if msg.is_empty() {
            format!("aws: {code_s} (HTTP {status})")
        } else {
            format!("aws: {code_s}: {msg}")
        }
    };
    match code {
        // The key or the credential refuses: revoked access, disabled or deleted key.
        Some(
            "AccessDeniedException"
            | "DisabledException"
            | "KMSInvalidStateException"
            | "NotFoundException"
            | "KeyUnavailableException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "ExpiredTokenException"
            | "IncompleteSignature"
            | "InvalidClientTokenId"
            | "AccessDenied",
        ) => KmsError::Denied(detail()),
        // The blob is not one this key made under this encryption context.
        Some("InvalidCiphertextException" | "IncorrectKeyException") => KmsError::InvalidCiphertext,
        Some(
            "ThrottlingException"
            | "LimitExceededException"
            | "Throttling"
            | "TooManyRequestsException"
            | "RequestLimitExceeded",
        ) => KmsError::Busy,
        Some("KMSInternalException" | "DependencyTimeoutException" | "ServiceUnavailable") => {
            KmsError::Unreachable(detail())
        }
        _ => match status {
            429 => KmsError::Busy,
            403 => KmsError::Denied(detail()),
            500..=599 => KmsError::Unreachable(detail()),
            _ => KmsError::Other(detail()),
        },
    }
}

/// The SDK's HTTP client, over the policy-checked reqwest client.
#[derive(Clone)]
struct ReqwestHttpClient {
    connector: SharedHttpConnector,
}

impl ReqwestHttpClient {
    fn new(client: reqwest::Client) -> Self {
        Self {
            connector: SharedHttpConnector::new(ReqwestConnector { client }),
        }
    }
}

impl fmt::Debug for ReqwestHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReqwestHttpClient")
    }
}

impl HttpClient for ReqwestHttpClient {
    // Timeouts are the reqwest client's (`ctx.timeout`, set when it was built).
    fn http_connector(
        &self,
        _settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.connector.clone()
    }
}

struct ReqwestConnector {
    client: reqwest::Client,
}

impl fmt::Debug for ReqwestConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReqwestConnector")
    }
}

impl HttpConnector for ReqwestConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = self.client.clone();
        HttpConnectorFuture::new(async move { send(&client, request).await })
    }
}

fn user_error(msg: impl Into<String>) -> ConnectorError {
    ConnectorError::user(msg.into().into())
}

/// Sends one signed SDK request through reqwest and hands back the answer as the SDK's.
async fn send(
    client: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, ConnectorError> {
    let method = reqwest::Method::from_bytes(request.method().as_bytes())
        .map_err(|e| user_error(format!("HTTP method: {e}")))?;
    // KMS request bodies are small in-memory JSON documents, never streams.
    let body = request
        .body()
        .bytes()
        .ok_or_else(|| user_error("streaming request bodies are not supported"))?
        .to_vec();
    let mut builder = client.request(method, request.uri()).body(body);
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    let response = builder.send().await.map_err(|e| {
        if e.is_timeout() {
            ConnectorError::timeout(e.into())
        } else if e.is_connect() {
            ConnectorError::io(e.into())
        } else {
            ConnectorError::other(e.into(), None)
        }
    })?;
    let status = StatusCode::try_from(response.status().as_u16())
        .map_err(|e| ConnectorError::other(e.into(), None))?;
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let bytes = response.bytes().await.map_err(|e| {
        if e.is_timeout() {
            ConnectorError::timeout(e.into())
        } else {
            ConnectorError::io(e.into())
        }
    })?;
    let mut out = HttpResponse::new(status, SdkBody::from(bytes));
    for (name, value) in headers {
        out.headers_mut().append(name, value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::kms::net::OutboundPolicy;
    use serde_json::json;
    use std::time::Duration;

    fn ctx(outbound: OutboundPolicy) -> BuildContext {
        BuildContext {
            outbound,
            timeout: Duration::from_secs(1),
        }
    }

    fn good() -> serde_json::Value {
        json!({
            "region": "eu-west-1",
            "key_id": "arn:aws:kms:eu-west-1:111122223333:key/abc",
            "credentials": {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "very-secret-value"}
        })
    }

    fn build_err(v: serde_json::Value, c: &BuildContext) -> String {
        build(v, c).err().expect("build must fail").to_string()
    }

    #[test]
    fn settings_are_validated_with_clear_messages() {
        let c = ctx(OutboundPolicy::default());
        assert!(build(good(), &c).is_ok());
        let mut v = good();
        v.as_object_mut().unwrap().remove("region");
        assert!(build_err(v, &c).contains("aws settings: region is required"));
        let mut v = good();
        v.as_object_mut().unwrap().remove("key_id");
        assert!(build_err(v, &c).contains("key_id is required"));
        let mut v = good();
        v.as_object_mut().unwrap().remove("credentials");
        assert!(build_err(v, &c).contains("credentials are required"));
        let mut v = good();
        v["extra"] = json!(1);
        assert!(build_err(v, &c).contains("unknown field"));
        let mut v = good();
        v["region"] = json!("eu west 1");
        assert!(build_err(v, &c).contains("not a region name"));
        let mut v = good();
        v["credentials"]["oops"] = json!("x");
        assert!(build_err(v, &c).contains("malformed"));
        // Plain HTTP and non-public endpoints are refused by the default policy.
        let mut v = good();
        v["endpoint_url"] = json!("http://kms.example.com");
        assert!(build_err(v, &c).contains("plain http"));
        let mut v = good();
        v["endpoint_url"] = json!("https://169.254.169.254/");
        assert!(build_err(v, &c).contains("not allowed"));
        let mut v = good();
        v["endpoint_url"] = json!("http://127.0.0.1:1/");
        assert!(build(v, &ctx(OutboundPolicy::allow_loopback_for_tests())).is_ok());
    }

    #[test]
    fn a_credential_never_reaches_an_error_message() {
        let c = ctx(OutboundPolicy::default());
        let secret = "very-secret-value";
        // A secret in the wrong place, of the wrong type, next to an unknown field.
        let cases = [
            json!({"region": "eu-west-1", "key_id": "k", "credentials": secret}),
            json!({"region": "eu-west-1", "key_id": "k", "credentials": {"access_key_id": 1, "secret_access_key": secret}}),
            json!({"region": secret, "key_id": "k", "credentials": "environment"}),
            json!({"region": "eu-west-1", "key_id": ["k", secret]}),
        ];
        for v in cases {
            let e = build_err(v, &c);
            assert!(!e.contains(secret), "{e}");
        }
    }

    #[test]
    fn the_encryption_context_binds_tenant_config_and_context() {
        let k = KeyRef {
            tenant: "t1".into(),
            config: "c1".into(),
            version: None,
        };
        let a = encryption_context(&k, b"ctx");
        assert_eq!(a[CTX_TENANT], "t1");
        assert_eq!(a[CTX_CONFIG], "c1");
        assert_eq!(a[CTX_DIGEST], hex::encode(Sha256::digest(b"ctx")));
        assert_ne!(a, encryption_context(&k, b"ctx2"));
    }

    #[test]
    fn service_errors_map_to_api_classes() {
        let c = |code: &str, status| classify_service_error(Some(code), Some("m"), status);
        for code in [
            "AccessDeniedException",
            "DisabledException",
            "KMSInvalidStateException",
            "NotFoundException",
            "KeyUnavailableException",
            "UnrecognizedClientException",
        ] {
            assert!(matches!(c(code, 400), KmsError::Denied(m) if m.contains(code)));
        }
        for code in ["InvalidCiphertextException", "IncorrectKeyException"] {
            assert_eq!(c(code, 400), KmsError::InvalidCiphertext);
        }
        for code in ["ThrottlingException", "LimitExceededException"] {
            assert_eq!(c(code, 400), KmsError::Busy);
        }
        for code in ["KMSInternalException", "DependencyTimeoutException"] {
            assert!(matches!(c(code, 500), KmsError::Unreachable(_)));
        }
        assert!(matches!(c("Whatever", 503), KmsError::Unreachable(_)));
        assert_eq!(c("Whatever", 429), KmsError::Busy);
        assert!(
            matches!(c("ValidationException", 400), KmsError::Other(m) if m.contains("ValidationException"))
        );
        assert!(matches!(
            classify_service_error(None, None, 400),
            KmsError::Other(m) if m.contains("no error code")
        ));
    }
}
