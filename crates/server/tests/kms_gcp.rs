//! The GCP Cloud KMS adapter against an in-test HTTPS double of Cloud KMS REST v1 and
//! Google's OAuth2 token endpoint (no emulator exists).
//!
//! The double follows the published request, answer and error shapes and enforces what
//! matters here: the JWT bearer grant (RS256 signature checked with the service account's
//! public key, issuer, audience, scope, expiry), bearer tokens on every KMS call (expired
//! ones answer 401), real AES-256-GCM with the request's `additionalAuthenticatedData`, key
//! versions that can be disabled (400 `FAILED_PRECONDITION`), IAM permission removal (403
//! `PERMISSION_DENIED`), throttling (429 `RESOURCE_EXHAUSTED`) and a stop switch (listener
//! closed, same keys after restart).
//!
//! The service account key in `tests/data/gcp-test-service-account.pem` was made for these
//! tests only (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;
#[path = "common/https_double.rs"]
mod https_double;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use common::conformance::{self, assert_denied, tenants};
use https_double::{
    Expect, Refusal, Setup, Switches, Tokens, answer, check_error_mapping, check_throttling,
    check_token_flow, forced_token_failure, form, key_ref, open, seal, token_answer,
};
use keystead_server::kms::{KeyRef, KmsError};
use keystead_server::util::{random_bytes, unix_now};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaKeyPair, UnparsedPublicKey};
use rustls::pki_types::PrivatePkcs8KeyDer;
use rustls::pki_types::pem::PemObject;
use serde_json::{Value, json};

const KEY: &str = "projects/keystead-test/locations/global/keyRings/tenants/cryptoKeys/acme";
const CLIENT_EMAIL: &str = "keystead-es@keystead-test.iam.gserviceaccount.com";
const SA_KEY_PEM: &str = include_str!("data/gcp-test-service-account.pem");

// ---- the double -----------------------------------------------------------------------

struct KeyVersion {
    key: [u8; 32],
    enabled: bool,
}

/// Cloud KMS with one key, and Google's token endpoint at `/token`.
struct Gcp {
    tokens: Tokens,
    sa_public: Vec<u8>,
    versions: Mutex<Vec<KeyVersion>>,
    /// 1-based number of the primary version.
    primary: Mutex<usize>,
    /// deny = IAM: the service account lost `cloudkms.cryptoKeyVersions.useToEncrypt`.
    switches: Switches,
}

fn google_error(status: u16, code: &str, message: &str) -> Response {
    answer(
        status,
        json!({"error": {"code": status, "message": message, "status": code}}),
    )
}

/// What Cloud KMS answers for a disabled key version.
fn disabled(n: usize) -> Response {
    google_error(
        400,
        "FAILED_PRECONDITION",
        &format!(
            "{} is not enabled, current state is: DISABLED.",
            version_name(n)
        ),
    )
}

fn version_name(n: usize) -> String {
    format!("{KEY}/cryptoKeyVersions/{n}")
}

impl Gcp {
    fn new() -> Arc<Self> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(SA_KEY_PEM.as_bytes()).unwrap();
        let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
        Arc::new(Self {
            tokens: Tokens::default(),
            sa_public: pair.public().as_ref().to_vec(),
            versions: Mutex::new(vec![KeyVersion {
                key: random_bytes(),
                enabled: true,
            }]),
            primary: Mutex::new(1),
            switches: Switches::default(),
        })
    }

    fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    fn rotate(&self) -> usize {
        let mut v = self.versions.lock().unwrap();
        v.push(KeyVersion {
            key: random_bytes(),
            enabled: true,
        });
        *self.primary.lock().unwrap() = v.len();
        v.len()
    }

    fn set_enabled(&self, version: usize, enabled: bool) {
        self.versions.lock().unwrap()[version - 1].enabled = enabled;
    }

    /// `POST /token`: the JWT bearer grant (RFC 7523) as Google checks it.
    fn token(&self, body: &[u8]) -> Response {
        if let Some(r) = forced_token_failure(&self.tokens, "invalid_grant") {
            return r;
        }
        let f = form(body);
        if f.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return answer(400, json!({"error": "unsupported_grant_type"}));
        }
        match self.check_assertion(f.get("assertion").map_or("", String::as_str)) {
            Ok(()) => token_answer(&self.tokens),
            Err(why) => answer(
                400,
                json!({"error": "invalid_grant", "error_description": why}),
            ),
        }
    }

    fn check_assertion(&self, jwt: &str) -> Result<(), &'static str> {
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header, claims, signature] = parts[..] else {
            return Err("not a JWT");
        };
        let signature = B64URL
            .decode(signature)
            .map_err(|_| "bad signature encoding")?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.sa_public)
            .verify(format!("{header}.{claims}").as_bytes(), &signature)
            .map_err(|_| "Invalid JWT Signature.")?;
        let header: Value =
            serde_json::from_slice(&B64URL.decode(header).map_err(|_| "bad header")?)
                .map_err(|_| "bad header")?;
        let claims: Value =
            serde_json::from_slice(&B64URL.decode(claims).map_err(|_| "bad claims")?)
                .map_err(|_| "bad claims")?;
        let now = unix_now();
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap_or(0),
            claims["exp"].as_i64().unwrap_or(0),
        );
        let ok = header["alg"] == "RS256"
            && claims["iss"] == CLIENT_EMAIL
            && claims["aud"]
                .as_str()
                .is_some_and(|a| a.ends_with("/token"))
            && claims["scope"]
                .as_str()
                .is_some_and(|s| s.split(' ').any(|s| s.ends_with("/auth/cloudkms")))
            && iat <= now + 60
            && exp > now
            && exp - iat <= 3600;
        if ok {
            Ok(())
        } else {
            Err("Invalid JWT: claims")
        }
    }

    fn encrypt(&self, body: &Value) -> Response {
        let (Some(pt), aad) = (
            body["plaintext"].as_str().and_then(|s| B64.decode(s).ok()),
            body["additionalAuthenticatedData"]
                .as_str()
                .and_then(|s| B64.decode(s).ok())
                .unwrap_or_default(),
        ) else {
            return google_error(400, "INVALID_ARGUMENT", "plaintext is required");
        };
        let primary = *self.primary.lock().unwrap();
        let versions = self.versions.lock().unwrap();
        let v = &versions[primary - 1];
        if !v.enabled {
            return disabled(primary);
        }
        // Like Cloud KMS's own ciphertexts, this one names its key version.
        let mut ct = u32::try_from(primary).unwrap().to_be_bytes().to_vec();
        ct.extend_from_slice(&seal(&v.key, &aad, &pt));
        answer(
            200,
            json!({
                "name": version_name(primary),
                "ciphertext": B64.encode(ct),
                "protectionLevel": "SOFTWARE",
            }),
        )
    }

    fn decrypt(&self, body: &Value) -> Response {
        let invalid = || {
            google_error(
                400,
                "INVALID_ARGUMENT",
                "Decryption failed: the ciphertext is invalid.",
            )
        };
        let Some(ct) = body["ciphertext"].as_str().and_then(|s| B64.decode(s).ok()) else {
            return invalid();
        };
        let aad = body["additionalAuthenticatedData"]
            .as_str()
            .and_then(|s| B64.decode(s).ok())
            .unwrap_or_default();
        let Some((n, sealed)) = ct.split_first_chunk::<4>() else {
            return invalid();
        };
        let n = u32::from_be_bytes(*n) as usize;
        let versions = self.versions.lock().unwrap();
        let Some(v) = n.checked_sub(1).and_then(|i| versions.get(i)) else {
            return invalid();
        };
        if !v.enabled {
            return disabled(n);
        }
        match open(&v.key, &aad, sealed) {
            Some(pt) => answer(
                200,
                json!({
                    "plaintext": B64.encode(pt),
                    "usedPrimary": n == *self.primary.lock().unwrap(),
                    "protectionLevel": "SOFTWARE",
                }),
            ),
            None => invalid(),
        }
    }

    fn get(&self) -> Response {
        let primary = *self.primary.lock().unwrap();
        let enabled = self.versions.lock().unwrap()[primary - 1].enabled;
        answer(
            200,
            json!({
                "name": KEY,
                "purpose": "ENCRYPT_DECRYPT",
                "primary": {
                    "name": version_name(primary),
                    "state": if enabled { "ENABLED" } else { "DISABLED" },
                    "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
                },
            }),
        )
    }
}

async fn handle(
    State(d): State<Arc<Gcp>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if method == Method::POST && path == "/token" {
        return d.token(&body);
    }
    match d.switches.gate(&d.tokens, &headers) {
        None => {}
        Some(Refusal::Unauthorized) => {
            return google_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            );
        }
        Some(Refusal::Forced(status, code)) => {
            return google_error(status, code, "forced by the test");
        }
        Some(Refusal::Throttled) => {
            return google_error(429, "RESOURCE_EXHAUSTED", "Quota exceeded.");
        }
        Some(Refusal::Denied) => {
            return google_error(
                403,
                "PERMISSION_DENIED",
                "Permission 'cloudkms.cryptoKeyVersions.useToEncrypt' denied on resource.",
            );
        }
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let rest = path.strip_prefix("/v1/").unwrap_or("");
    match (method, rest.strip_prefix(KEY)) {
        (Method::POST, Some(":encrypt")) => d.encrypt(&body),
        (Method::POST, Some(":decrypt")) => d.decrypt(&body),
        (Method::GET, Some("")) => d.get(),
        _ => google_error(404, "NOT_FOUND", "Not found."),
    }
}

// ---- fixtures -------------------------------------------------------------------------

async fn setup() -> Setup<Gcp> {
    let gcp = Gcp::new();
    let router = gcp.router();
    Setup::start("gcp", gcp, router, |url| {
        json!({
            "key": KEY,
            "endpoint": url,
            "service_account": {
                "type": "service_account",
                "project_id": "keystead-test",
                "private_key_id": "0123456789abcdef",
                "private_key": SA_KEY_PEM,
                "client_email": CLIENT_EMAIL,
                "client_id": "100000000000000000001",
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": format!("{url}/token"),
                "universe_domain": "googleapis.com",
            },
        })
    })
    .await
}

// ---- tests ----------------------------------------------------------------------------

#[tokio::test]
async fn gcp_passes_the_conformance_suite() {
    let mut s = setup().await;
    conformance::run(&s.h, "gcp", &s.settings, &mut s.peer).await;
}

#[tokio::test]
async fn removed_permission_and_disabled_version_are_denied() {
    let s = setup().await;
    let t = tenants(&s.h, "gcp", &s.settings);
    let (dek, edek) = s.h.wrap(&t.key, &t.remote).await;

    s.double.switches.deny.store(true, Ordering::SeqCst);
    assert_denied(&s.h, &t.key, &t.remote, &edek).await;
    s.double.switches.deny.store(false, Ordering::SeqCst);
    assert_eq!(s.h.unwrap(&t.key, &t.remote, &edek).await, dek);

    s.double.set_enabled(1, false);
    assert_denied(&s.h, &t.key, &t.remote, &edek).await;
    let e = s.adapter().describe(&key_ref()).await.unwrap_err();
    assert!(
        matches!(&e, KmsError::Denied(m) if m.contains("DISABLED")),
        "{e}"
    );
    s.double.set_enabled(1, true);
    assert_eq!(s.h.unwrap(&t.key, &t.remote, &edek).await, dek);
}

#[tokio::test]
async fn a_token_serves_many_calls_and_a_401_refreshes_it_once() {
    let s = setup().await;
    check_token_flow(&*s.adapter(), &s.double.tokens, "invalid_grant").await;
}

#[tokio::test]
async fn throttling_answers_rate_limited() {
    let s = setup().await;
    check_throttling(&s.h, "gcp", &s.settings, &s.double.switches.throttle).await;
}

#[tokio::test]
async fn provider_errors_map_to_the_service_classes() {
    let s = setup().await;
    let kms = s.adapter();
    let k = key_ref();
    let w = kms.wrap(&k, &[1u8; 32], b"ctx").await.unwrap();
    let cases: [(u16, &str, Expect); 8] = [
        (403, "PERMISSION_DENIED", |e| {
            matches!(e, KmsError::Denied(_))
        }),
        (404, "NOT_FOUND", |e| matches!(e, KmsError::Denied(_))),
        (400, "FAILED_PRECONDITION", |e| {
            matches!(e, KmsError::Denied(_))
        }),
        (400, "INVALID_ARGUMENT", |e| {
            *e == KmsError::InvalidCiphertext
        }),
        (429, "RESOURCE_EXHAUSTED", |e| *e == KmsError::Busy),
        (503, "UNAVAILABLE", |e| {
            matches!(e, KmsError::Unreachable(_))
        }),
        (504, "DEADLINE_EXCEEDED", |e| {
            matches!(e, KmsError::Unreachable(_))
        }),
        (500, "INTERNAL", |e| matches!(e, KmsError::Other(_))),
    ];
    check_error_mapping(&*kms, &w.ciphertext, &s.double.switches.force, &cases).await;
    // Garbage is a bad ciphertext, never a refusal or an outage.
    let e = kms
        .unwrap(&k, b"\x00\x00\x00\x09junk", b"ctx")
        .await
        .unwrap_err();
    assert_eq!(e, KmsError::InvalidCiphertext);
    assert_eq!(
        kms.unwrap(&k, b"", b"ctx").await.unwrap_err(),
        KmsError::InvalidCiphertext
    );
}

#[tokio::test]
async fn versions_follow_the_primary_and_old_ciphertexts_still_open() {
    let s = setup().await;
    let kms = s.adapter();
    let k = key_ref();
    assert_eq!(kms.describe(&k).await.unwrap(), 1);
    let old = kms.generate(&k, b"ctx").await.unwrap();
    assert_eq!(old.version, 1);
    assert_eq!(s.double.rotate(), 2);
    assert_eq!(kms.describe(&k).await.unwrap(), 2);
    assert_eq!(kms.wrap(&k, &[3u8; 32], b"ctx").await.unwrap().version, 2);
    let hinted = KeyRef {
        version: Some(1),
        ..k.clone()
    };
    assert_eq!(
        *kms.unwrap(&hinted, &old.ciphertext, b"ctx").await.unwrap(),
        *old.plaintext
    );
}

#[tokio::test]
async fn settings_are_validated_without_quoting_the_key() {
    let s = setup().await;
    let build = |v: Value| s.build_error(v);
    let mut bad_key = s.settings.clone();
    bad_key["key"] = json!("projects/p/keyRings/r");
    assert!(build(bad_key).contains("key must be"));
    let mut extra = s.settings.clone();
    extra["region"] = json!("x");
    assert!(build(extra).contains("unknown field"));
    let mut no_email = s.settings.clone();
    no_email["service_account"]
        .as_object_mut()
        .unwrap()
        .remove("client_email");
    assert!(build(no_email).contains("client_email"));
    let mut bad_pem = s.settings.clone();
    bad_pem["service_account"]["private_key"] =
        json!("-----BEGIN PRIVATE KEY-----\nTUlJQ3NlY3JldA==\n-----END PRIVATE KEY-----\n");
    let e = build(bad_pem);
    assert!(
        e.contains("private_key") && !e.contains("TUlJQ3NlY3JldA"),
        "{e}"
    );
    s.check_production_policy("endpoint", "http://cloudkms.googleapis.com");
    // A credential never reaches an error message.
    let mut wrong = s.settings.clone();
    wrong["service_account"]["private_key"] = json!(42);
    assert!(!build(wrong).contains("PRIVATE KEY"));
}
