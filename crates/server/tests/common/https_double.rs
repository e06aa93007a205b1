//! Building blocks of in-test HTTPS doubles of cloud KMS REST APIs (GCP Cloud KMS, Azure
//! Key Vault), for which no emulator exists.
//!
//! A double is an axum router served over real TLS (`keystead_server::tls::serve_tls`) on
//! 127.0.0.1, with a server certificate from a CA made at test time with rcgen; the
//! harness trusts that CA through `OutboundPolicy::extra_roots_pem`, so the adapters'
//! certificate checks really run. [`HttpsPeer`] stops (listener closed, connections
//! refused) and starts again on the same port with the same state, for
//! `conformance::Peer`. [`Tokens`] is the bearer-token side of an OAuth2 resource server
//! and token endpoint; [`seal`] / [`open`] are the doubles' AES-256-GCM.
//!
//! Included by the provider test files with `#[path]` (it is not part of `common`, which
//! every test binary compiles).

#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::time::Duration;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use keystead_server::kms::RetryPolicy;
use keystead_server::kms::net::OutboundPolicy;
use keystead_server::util::random_bytes;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use keystead_server::kms::registry;
use keystead_server::kms::{KeyRef, Kms, KmsError};
use serde_json::Value;

use crate::common::conformance::{Peer, free_port, tenants, wait_for_port};
use crate::common::{Harness, Opts, md};

/// A test CA and a server certificate for 127.0.0.1 / localhost signed by it.
pub struct TestPki {
    /// The CA certificate, PEM: what the harness trusts.
    pub ca_pem: String,
    server: Arc<rustls::ServerConfig>,
}

impl TestPki {
    /// Makes the CA and the server certificate.
    pub fn new() -> Self {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(DnType::CommonName, "keystead KMS double CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let chain = vec![CertificateDer::from(leaf.der().to_vec())];
        let key = PrivateKeyDer::from_pem_slice(leaf_key.serialize_pem().as_bytes()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Self {
            ca_pem: issuer.pem(),
            server: Arc::new(server),
        }
    }

    /// Harness options that trust this CA (and loopback), with a KMS timeout generous enough
    /// for a TLS handshake plus a token request on a loaded machine (a hang detector, not a
    /// timing assertion).
    pub fn harness_opts(&self) -> Opts {
        let mut outbound = OutboundPolicy::allow_loopback_for_tests();
        outbound.extra_roots_pem = vec![self.ca_pem.clone().into_bytes()];
        Opts {
            outbound,
            retry: RetryPolicy {
                timeout: Duration::from_secs(3),
                attempts: 2,
                backoff: Duration::from_millis(5),
            },
            ..Opts::default()
        }
    }
}

/// A router served over TLS on a fixed 127.0.0.1 port, stoppable and restartable.
pub struct HttpsPeer {
    port: u16,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl HttpsPeer {
    /// Serves `router` with `pki`'s certificate on a free port.
    pub async fn start(router: Router, pki: &TestPki) -> Self {
        let mut peer = Self {
            port: free_port(),
            router,
            tls: pki.server.clone(),
            running: None,
        };
        peer.listen().await;
        peer
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    async fn listen(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the double's port");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(keystead_server::tls::serve_tls(
            listener,
            self.router.clone(),
            self.tls.clone(),
            async move {
                let _ = rx.await;
            },
        ));
        let task = tokio::spawn(async move {
            let _ = task.await;
        });
        self.running = Some((tx, task));
        wait_for_port(self.port, Duration::from_secs(10)).await;
    }
}

impl Peer for HttpsPeer {
    async fn stop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(());
            let _ = task.await;
        }
    }

    async fn start(&mut self) {
        if self.running.is_none() {
            self.listen().await;
        }
    }
}

impl Drop for HttpsPeer {
    fn drop(&mut self) {
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(());
            task.abort();
        }
    }
}

/// The bearer tokens a double issued, and what it counts about them.
#[derive(Default)]
pub struct Tokens {
    valid: Mutex<HashSet<String>>,
    /// Token requests answered with a token.
    pub issued: AtomicU32,
    /// API requests refused with 401.
    pub refused: AtomicU32,
    /// When set, even fresh tokens are refused (a credential whose access is revoked).
    pub refuse_all: AtomicBool,
    /// When non-zero, the token endpoint answers this status with an OAuth2 error.
    pub endpoint_status: AtomicU16,
}

impl Tokens {
    /// Issues a new token.
    pub fn issue(&self) -> String {
        let token = format!("tok-{}", hex::encode(random_bytes::<16>()));
        self.valid.lock().unwrap().insert(token.clone());
        self.issued.fetch_add(1, Ordering::SeqCst);
        token
    }

    /// Whether the request carries a valid bearer token (counts refusals).
    pub fn check(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = !self.refuse_all.load(Ordering::SeqCst)
            && presented.is_some_and(|t| self.valid.lock().unwrap().contains(t));
        if !ok {
            self.refused.fetch_add(1, Ordering::SeqCst);
        }
        ok
    }

    /// Every issued token expires (the next API call gets a 401).
    pub fn expire_all(&self) {
        self.valid.lock().unwrap().clear();
    }

    /// (tokens issued, 401s answered).
    pub fn counts(&self) -> (u32, u32) {
        (
            self.issued.load(Ordering::SeqCst),
            self.refused.load(Ordering::SeqCst),
        )
    }
}

/// A JSON answer.
pub fn answer(status: u16, body: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The token endpoint's answer when the test forces a failure (`error` is the OAuth2
/// error code), else `None`.
pub fn forced_token_failure(tokens: &Tokens, error: &str) -> Option<Response> {
    let status = tokens.endpoint_status.load(Ordering::SeqCst);
    (status != 0).then(|| {
        answer(
            status,
            serde_json::json!({"error": error, "error_description": "forced by the test"}),
        )
    })
}

/// The standard OAuth2 token answer for a new token.
pub fn token_answer(tokens: &Tokens) -> Response {
    answer(
        200,
        serde_json::json!({
            "access_token": tokens.issue(),
            "token_type": "Bearer",
            "expires_in": 3599,
        }),
    )
}

/// Parses an `application/x-www-form-urlencoded` body.
pub fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// AES-256-GCM: `nonce ‖ ciphertext ‖ tag`.
pub fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce = random_bytes::<12>();
    let ct = Aes256Gcm::new(key.into())
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

/// Opens [`seal`]'s output; `None` if it does not authenticate.
pub fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 + 16 {
        return None;
    }
    let (nonce, ct) = sealed.split_at(12);
    let nonce: [u8; 12] = nonce.try_into().ok()?;
    Aes256Gcm::new(key.into())
        .decrypt((&nonce).into(), Payload { msg: ct, aad })
        .ok()
}

/// The KeyRef of adapter-level tests.
pub fn key_ref() -> KeyRef {
    KeyRef {
        tenant: "acme".into(),
        config: "cloud-1".into(),
        version: None,
    }
}

/// The token flow of an OAuth2-authenticated adapter over `tokens`' double: one token for
/// many calls; an expired token answers 401 once and is refreshed once; a credential whose
/// fresh tokens are refused too is `Denied` after exactly one refresh; a token endpoint
/// that refuses the grant (`refused` is its OAuth2 error code) is `Denied`, one that is
/// down is `Unreachable`.
pub async fn check_token_flow(kms: &dyn Kms, tokens: &Tokens, refused: &str) {
    let k = key_ref();
    for _ in 0..10 {
        let w = kms.wrap(&k, &[7u8; 32], b"ctx").await.unwrap();
        assert_eq!(
            *kms.unwrap(&k, &w.ciphertext, b"ctx").await.unwrap(),
            [7u8; 32]
        );
    }
    assert_eq!(tokens.counts(), (1, 0), "(tokens issued, 401s)");

    tokens.expire_all();
    kms.describe(&k).await.unwrap();
    assert_eq!(tokens.counts(), (2, 1));

    tokens.refuse_all.store(true, Ordering::SeqCst);
    let e = kms.wrap(&k, &[7u8; 32], b"ctx").await.err().unwrap();
    assert!(matches!(e, KmsError::Denied(_)), "{e}");
    assert_eq!(tokens.counts(), (3, 3));
    tokens.refuse_all.store(false, Ordering::SeqCst);

    tokens.expire_all();
    for status in [400, 401] {
        tokens.endpoint_status.store(status, Ordering::SeqCst);
        let e = kms.describe(&k).await.unwrap_err();
        assert!(
            matches!(&e, KmsError::Denied(m) if m.contains(refused)),
            "{e}"
        );
    }
    tokens.endpoint_status.store(503, Ordering::SeqCst);
    let e = kms.describe(&k).await.unwrap_err();
    assert!(matches!(e, KmsError::Unreachable(_)), "{e}");
    tokens.endpoint_status.store(0, Ordering::SeqCst);
    assert!(kms.describe(&k).await.unwrap() >= 1);
}

/// The answer a double forces on every KMS call: (HTTP status, provider error code).
pub type Forced = Mutex<Option<(u16, &'static str)>>;

/// What an adapter error must be for a forced answer.
pub type Expect = fn(&KmsError) -> bool;

/// Forces each (status, code) on the double and checks the class the adapter's unwrap of
/// `ciphertext` reports.
pub async fn check_error_mapping(
    kms: &dyn Kms,
    ciphertext: &[u8],
    force: &Forced,
    cases: &[(u16, &'static str, Expect)],
) {
    let k = key_ref();
    for (status, code, expected) in cases {
        *force.lock().unwrap() = Some((*status, code));
        let e = kms.unwrap(&k, ciphertext, b"ctx").await.unwrap_err();
        assert!(expected(&e), "{status} {code} → {e:?}");
    }
    *force.lock().unwrap() = None;
    assert!(kms.unwrap(&k, ciphertext, b"ctx").await.is_ok());
}

/// With the double throttling, a wrap through the API answers `429 rate_limited`.
pub async fn check_throttling(
    h: &Harness,
    provider: &str,
    settings: &Value,
    throttle: &AtomicBool,
) {
    let t = tenants(h, provider, settings);
    throttle.store(true, Ordering::SeqCst);
    let r = h
        .post(
            "/v1/keys/wrap",
            Some(&t.key),
            &serde_json::json!({ "tenant_id": t.remote, "metadata": md() }),
        )
        .await;
    h.expect_error(&r, 429, "rate_limited");
    throttle.store(false, Ordering::SeqCst);
    h.wrap(&t.key, &t.remote).await;
}

/// The switches every double has besides its tokens.
#[derive(Default)]
pub struct Switches {
    /// The credential lost its permission on the key.
    pub deny: AtomicBool,
    /// The provider throttles.
    pub throttle: AtomicBool,
    /// Every KMS call answers this (status, provider error code).
    pub force: Forced,
}

/// Why a double refuses a KMS call before looking at it; each double answers it in its
/// provider's error shape.
pub enum Refusal {
    /// No valid bearer token: 401.
    Unauthorized,
    /// The test forces (status, code).
    Forced(u16, &'static str),
    /// 429.
    Throttled,
    /// 403.
    Denied,
}

impl Switches {
    /// The refusal a call gets, in the order the real services check: authentication, then
    /// quota, then authorization.
    pub fn gate(&self, tokens: &Tokens, headers: &HeaderMap) -> Option<Refusal> {
        if !tokens.check(headers) {
            return Some(Refusal::Unauthorized);
        }
        if let Some((status, code)) = *self.force.lock().unwrap() {
            return Some(Refusal::Forced(status, code));
        }
        if self.throttle.load(Ordering::SeqCst) {
            return Some(Refusal::Throttled);
        }
        self.deny.load(Ordering::SeqCst).then_some(Refusal::Denied)
    }
}

/// A harness, a double served over TLS, and the adapter settings that point at it.
pub struct Setup<D> {
    pub h: Harness,
    pub double: Arc<D>,
    pub peer: HttpsPeer,
    pub settings: Value,
    provider: &'static str,
}

impl<D> Setup<D> {
    /// Serves `router` (the double's) and starts a harness that trusts it; `settings` gets
    /// the double's base URL.
    pub async fn start(
        provider: &'static str,
        double: Arc<D>,
        router: Router,
        settings: impl FnOnce(&str) -> Value,
    ) -> Self {
        let pki = TestPki::new();
        let peer = HttpsPeer::start(router, &pki).await;
        let h = Harness::start_with(pki.harness_opts()).await;
        let settings = settings(&peer.url());
        Self {
            h,
            double,
            peer,
            settings,
            provider,
        }
    }

    /// Builds the adapter from `settings` in the harness's context.
    pub fn build(&self, settings: Value) -> Result<Arc<dyn Kms>, KmsError> {
        registry::build(
            self.provider,
            settings,
            &self.h.build_context(),
            &self.h.builtin,
        )
    }

    /// The adapter of [`Self::settings`].
    pub fn adapter(&self) -> Arc<dyn Kms> {
        self.build(self.settings.clone())
            .expect("build the adapter")
    }

    /// The message of the error `settings` fail to build with ("" if they build).
    pub fn build_error(&self, settings: Value) -> String {
        self.build(settings)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    /// Under the production outbound policy, the double's loopback endpoint is refused, and
    /// so is a plain-HTTP one (`field` set to `plain_url`).
    pub fn check_production_policy(&self, field: &str, plain_url: &str) {
        let strict = registry::BuildContext {
            outbound: OutboundPolicy::default(),
            timeout: self.h.build_context().timeout,
        };
        let build = |v: Value| {
            registry::build(self.provider, v, &strict, &self.h.builtin)
                .err()
                .expect("refused")
                .to_string()
        };
        let e = build(self.settings.clone());
        assert!(e.contains("not allowed"), "{e}");
        let mut plain = self.settings.clone();
        plain[field] = Value::from(plain_url);
        let e = build(plain);
        assert!(e.contains("https"), "{e}");
    }
}
