//! The KMS abstraction: one async trait that every provider implements, errors classified
//! the way the API reports them, and a wrapper that adds a timeout and bounded, jittered
//! retries for retryable errors only.

pub mod aws;
pub mod azure;
pub mod breaker;
pub mod builtin;
#[cfg(any(test, feature = "test-util"))]
pub mod fake;
pub mod gcp;
pub mod kmip;
pub mod net;
pub mod pkcs11;
pub mod registry;
pub(crate) mod rest;
pub mod secret;
pub mod vault;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use keystead_core::edek::Edek;
use keystead_core::{Dek, EncryptionPublicKey};
use zeroize::Zeroizing;

/// A boxed future, so providers can sit behind `dyn Kms`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which master key an operation uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyRef {
    /// Tenant id.
    pub tenant: String,
    /// KMS config id.
    pub config: String,
    /// Key version inside the config; `None` asks for the current version.
    pub version: Option<u32>,
}

/// What a KMS answered to `generate`: a fresh secret and its ciphertext.
pub struct Generated {
    /// The secret (32 bytes), in zeroizing memory.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The KMS ciphertext of the secret.
    pub ciphertext: Vec<u8>,
    /// The key version that encrypted it.
    pub version: u32,
}

/// A ciphertext made by `wrap`, with the key version that made it.
pub struct Wrapped {
    /// The KMS ciphertext.
    pub ciphertext: Vec<u8>,
    /// The key version used.
    pub version: u32,
}

/// How a provider serves asymmetric-mode tenants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsymmetricScheme {
    /// X25519 keys: [`Kms::public_key`] and [`Kms::unwrap_asymmetric`], asymmetric-mode
    /// EDEKs (HPKE, FORMAT.md §7.4). The default; providers without asymmetric keys refuse
    /// in those methods.
    X25519Hpke,
    /// A public key the ES encrypts to locally ([`Kms::local_wrapper`], e.g. RSA-OAEP to a
    /// Transit RSA key): the EDEK is a remote-mode EDEK made without a KMS call and opened by
    /// the ordinary [`Kms::unwrap`].
    LocalRemote,
}

/// Encrypts to a KMS key's public half without calling the KMS: the ciphertext is the one
/// the KMS itself would have made, so [`Kms::unwrap`] opens it. Pure CPU.
pub trait LocalWrap: Send + Sync {
    /// The key version whose public key this is.
    fn version(&self) -> u32;
    /// Encrypts `plaintext` (at most 32 bytes are ever passed) to the public key, framed as
    /// the provider frames its own ciphertexts.
    fn wrap(&self, plaintext: &[u8]) -> Result<Wrapped, KmsError>;
}

/// How a KMS call failed, as the API reports it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmsError {
    /// The KMS refused (revoked or disabled key, no permission): `403 kms_denied`.
    #[error("the KMS denied the request: {0}")]
    Denied(String),
    /// The KMS could not be reached: `503 kms_unreachable`.
    #[error("the KMS is unreachable: {0}")]
    Unreachable(String),
    /// The KMS did not answer in time: `504 kms_timeout`.
    #[error("the KMS did not answer in time")]
    Timeout,
    /// Any other KMS error: `502 kms_error`.
    #[error("KMS error: {0}")]
    Other(String),
    /// The ciphertext is not one this KMS key made (tampered, other key): `422 edek_invalid`.
    #[error("the KMS could not decrypt the ciphertext")]
    InvalidCiphertext,
    /// The per-config concurrency limit is reached: `429 rate_limited`.
    #[error("too many concurrent KMS calls for this configuration")]
    Busy,
    /// The config's circuit breaker is open after repeated unreachable/timeout failures:
    /// `503 kms_unreachable` with `Retry-After`, without calling the KMS.
    #[error("the KMS is failing; calls are suspended for {retry_after_secs} s")]
    CircuitOpen {
        /// Seconds until a probe call is let through (at least 1).
        retry_after_secs: u64,
    },
}

impl KmsError {
    /// Whether retrying the same call may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, KmsError::Unreachable(_) | KmsError::Timeout)
    }

    /// A short outcome label for metrics and audit events.
    pub fn outcome(&self) -> &'static str {
        match self {
            KmsError::Denied(_) => "denied",
            KmsError::Unreachable(_) => "unreachable",
            KmsError::Timeout => "timeout",
            KmsError::Other(_) => "error",
            KmsError::InvalidCiphertext => "invalid_ciphertext",
            KmsError::Busy => "busy",
            KmsError::CircuitOpen { .. } => "circuit_open",
        }
    }
}

/// A key management service holding tenants' master keys.
///
/// `context` is bound to every ciphertext (encryption context / AAD where the provider
/// offers it); the same bytes must be presented to unwrap.
pub trait Kms: Send + Sync + 'static {
    /// Provider name for metrics and audit events.
    fn provider(&self) -> &'static str;
    /// Generates a 32-byte secret and returns it with its ciphertext. The default draws
    /// the secret from the OS and has [`Kms::wrap`] encrypt it; providers with a native
    /// data-key operation (AWS GenerateDataKey, Transit datakey) override it.
    fn generate<'a>(
        &'a self,
        key: &'a KeyRef,
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Generated, KmsError>> {
        Box::pin(async move {
            let secret = Zeroizing::new(crate::util::random_bytes::<32>().to_vec());
            let w = self.wrap(key, &secret, context).await?;
            Ok(Generated {
                plaintext: secret,
                ciphertext: w.ciphertext,
                version: w.version,
            })
        })
    }
    /// Encrypts `plaintext` under the key.
    fn wrap<'a>(
        &'a self,
        key: &'a KeyRef,
        plaintext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, KmsError>>;
    /// Decrypts a ciphertext made by `generate` or `wrap` with the same `context`.
    fn unwrap<'a>(
        &'a self,
        key: &'a KeyRef,
        ciphertext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, KmsError>>;
    /// The current key version, or an error if the key is unusable.
    fn describe<'a>(&'a self, key: &'a KeyRef) -> BoxFuture<'a, Result<u32, KmsError>>;

    /// Asymmetric master keys: the X25519 public key of the key version (the current one
    /// when `key.version` is `None`) and its version number. Wraps to it need no KMS call
    /// (asymmetric-mode EDEKs, HPKE); the service caches it briefly. Providers without
    /// asymmetric X25519 keys keep the default, which refuses.
    fn public_key<'a>(
        &'a self,
        key: &'a KeyRef,
    ) -> BoxFuture<'a, Result<(u32, EncryptionPublicKey), KmsError>> {
        let _ = key;
        Box::pin(async move { Err(no_asymmetric(self.provider())) })
    }

    /// Opens an asymmetric-mode EDEK with the private key, which stays in the KMS.
    fn unwrap_asymmetric<'a>(
        &'a self,
        key: &'a KeyRef,
        edek: &'a Edek,
    ) -> BoxFuture<'a, Result<Dek, KmsError>> {
        let _ = (key, edek);
        Box::pin(async move { Err(no_asymmetric(self.provider())) })
    }

    /// Which asymmetric scheme the provider offers (a property of the provider, known
    /// without a call).
    fn asymmetric_scheme(&self) -> AsymmetricScheme {
        AsymmetricScheme::X25519Hpke
    }

    /// For [`AsymmetricScheme::LocalRemote`] providers: reads the current public key (one
    /// KMS call) and returns a wrapper that encrypts to it locally; the service caches it
    /// briefly.
    fn local_wrapper<'a>(
        &'a self,
        key: &'a KeyRef,
    ) -> BoxFuture<'a, Result<Arc<dyn LocalWrap>, KmsError>> {
        let _ = key;
        Box::pin(async move {
            Err(KmsError::Other(format!(
                "the {} provider has no public keys to wrap to locally",
                self.provider()
            )))
        })
    }
}

/// `SHA-256("keystead/v1/kms-binding" ‖ lp16(tenant) ‖ lp16(config) ‖ context)`: what an
/// adapter binds a ciphertext to, as the provider's AAD or context where it has one, or as
/// a tag inside the wrapped plaintext where it has none.
pub(crate) fn binding_digest(key: &KeyRef, context: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"keystead/v1/kms-binding");
    for id in [&key.tenant, &key.config] {
        // Ids are at most 256 bytes (checked at the API edge and by the store's callers).
        #[allow(clippy::cast_possible_truncation)]
        h.update((id.len() as u16).to_be_bytes());
        h.update(id.as_bytes());
    }
    h.update(context);
    h.finalize().into()
}

fn no_asymmetric(provider: &str) -> KmsError {
    KmsError::Other(format!(
        "the {provider} provider has no asymmetric (X25519) master keys"
    ))
}

/// Timeout and retry policy for KMS calls.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Attempts in total (1 = no retry).
    pub attempts: u32,
    /// Base backoff; attempt n waits base × 2^(n-1) plus up to 100% random jitter.
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(50),
        }
    }
}

/// Runs `call` under `policy`: each attempt has a timeout; only retryable errors are
/// retried, with exponential backoff and full jitter.
pub async fn with_retries<T, F, Fut>(policy: RetryPolicy, mut call: F) -> Result<T, KmsError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, KmsError>>,
{
    let mut attempt = 1;
    loop {
        let res = match tokio::time::timeout(policy.timeout, call()).await {
            Ok(r) => r,
            Err(_) => Err(KmsError::Timeout),
        };
        match res {
            Err(e) if e.retryable() && attempt < policy.attempts => {
                let base = policy.backoff.saturating_mul(1 << (attempt - 1).min(16));
                let jitter = base.mul_f64(crate::util::random_unit());
                tokio::time::sleep(base + jitter).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}
