//! The Azure Key Vault adapter against an in-test HTTPS double of Key Vault REST
//! (api-version 7.4) and the Microsoft identity platform's token endpoint (no emulator
//! exists).
//!
//! The double follows the published request, answer and error shapes and enforces what
//! matters here: the client credentials grant (client id, secret and scope checked), bearer
//! tokens on every vault call (expired ones answer 401), `RSA-OAEP-256` as the only
//! algorithm, key versions (wrap uses the current one unless the URL names one; unknown
//! versions answer 404 `KeyNotFound`), disabled keys (403 "Operation wrapKey is not allowed
//! on a disabled key."), removed access (403 `Forbidden`/`ForbiddenByPolicy`), throttling
//! (429) and a stop switch (listener closed, same keys after restart). wrapKey itself is
//! simulated with AES-256-GCM under a key the double holds: the adapter only moves opaque
//! bytes, so it cannot tell, and no RSA dependency is needed.

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
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use common::conformance::{self, assert_denied, tenants};
use https_double::{
    Expect, Refusal, Setup, Switches, Tokens, answer, check_error_mapping, check_throttling,
    check_token_flow, forced_token_failure, form, key_ref, open, seal, token_answer,
};
use keystead_server::kms::KmsError;
use keystead_server::util::random_bytes;
use serde_json::{Value, json};

const TENANT_ID: &str = "00000000-0000-4000-8000-00000000000a";
const CLIENT_ID: &str = "00000000-0000-4000-8000-00000000000b";
const CLIENT_SECRET: &str = "test~client~secret~value";
const KEY_NAME: &str = "acme-kek";
/// The most RSA-OAEP-256 with a 2048-bit key can wrap.
const MAX_WRAP: usize = 190;

// ---- the double -----------------------------------------------------------------------

struct KeyVersion {
    id: String,
    key: [u8; 32],
    enabled: bool,
}

/// Key Vault with one RSA key, and the identity platform's token endpoint.
struct Azure {
    tokens: Tokens,
    /// `https://127.0.0.1:<port>`, for `kid`s.
    vault: Mutex<String>,
    /// Oldest first; the last one is current.
    versions: Mutex<Vec<KeyVersion>>,
    /// deny = the application lost its wrapKey/unwrapKey permission (RBAC or access
    /// policy).
    switches: Switches,
}

fn vault_error(status: u16, code: &str, message: &str) -> Response {
    answer(status, json!({"error": {"code": code, "message": message}}))
}

fn new_version() -> KeyVersion {
    KeyVersion {
        id: hex::encode(random_bytes::<16>()),
        key: random_bytes(),
        enabled: true,
    }
}

/// What a vault request names: a version (or the current one) and an operation.
enum Target<'a> {
    Key(Option<&'a str>),
    Op(Option<&'a str>, &'a str),
}

impl Azure {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            tokens: Tokens::default(),
            vault: Mutex::new(String::new()),
            versions: Mutex::new(vec![new_version()]),
            switches: Switches::default(),
        })
    }

    fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    fn rotate(&self) -> String {
        let v = new_version();
        let id = v.id.clone();
        self.versions.lock().unwrap().push(v);
        id
    }

    fn current(&self) -> String {
        self.versions.lock().unwrap().last().unwrap().id.clone()
    }

    fn set_enabled(&self, enabled: bool) {
        for v in self.versions.lock().unwrap().iter_mut() {
            v.enabled = enabled;
        }
    }

    /// `POST /{tenant}/oauth2/v2.0/token`: the client credentials grant.
    fn token(&self, body: &[u8]) -> Response {
        if let Some(r) = forced_token_failure(&self.tokens, "invalid_client") {
            return r;
        }
        let f = form(body);
        let get = |k: &str| f.get(k).map_or("", String::as_str);
        if get("grant_type") != "client_credentials" {
            return answer(400, json!({"error": "unsupported_grant_type"}));
        }
        if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
            return answer(
                401,
                json!({"error": "invalid_client",
                       "error_description": "AADSTS7000215: Invalid client secret provided."}),
            );
        }
        if get("scope") != "https://vault.azure.net/.default" {
            return answer(400, json!({"error": "invalid_scope"}));
        }
        token_answer(&self.tokens)
    }

    fn kid(&self, version: &str) -> String {
        format!("{}/keys/{KEY_NAME}/{version}", self.vault.lock().unwrap())
    }

    /// The version a request names (the current one if none), or the 404 Key Vault sends.
    fn find<T>(
        &self,
        version: Option<&str>,
        f: impl FnOnce(&KeyVersion) -> T,
    ) -> Result<T, Box<Response>> {
        let versions = self.versions.lock().unwrap();
        let found = match version {
            Some(id) => versions.iter().find(|v| v.id == id),
            None => versions.last(),
        };
        found.map(f).ok_or_else(|| {
            Box::new(vault_error(
                404,
                "KeyNotFound",
                &format!(
                    "A key with (name/id) {KEY_NAME}/{} was not found in this key vault.",
                    version.unwrap_or("")
                ),
            ))
        })
    }

    fn operation(&self, version: Option<&str>, op: &str, body: &Value) -> Response {
        let found = self.find(version, |v| (v.id.clone(), v.key, v.enabled));
        let (id, key, enabled) = match found {
            Ok(v) => v,
            Err(r) => return *r,
        };
        let op_name = if op == "wrapkey" {
            "wrapKey"
        } else {
            "unwrapKey"
        };
        if !enabled {
            return vault_error(
                403,
                "Forbidden",
                &format!("Operation {op_name} is not allowed on a disabled key."),
            );
        }
        if body["alg"] != "RSA-OAEP-256" {
            return vault_error(400, "BadParameter", "Invalid algorithm.");
        }
        let Some(value) = body["value"].as_str().and_then(|v| B64URL.decode(v).ok()) else {
            return vault_error(400, "BadParameter", "Property value is required.");
        };
        let out = if op == "wrapkey" {
            if value.len() > MAX_WRAP {
                return vault_error(400, "BadParameter", "Plaintext is too long.");
            }
            seal(&key, b"", &value)
        } else {
            match open(&key, b"", &value) {
                Some(pt) => pt,
                None => {
                    return vault_error(400, "BadParameter", "Error decrypting the ciphertext.");
                }
            }
        };
        answer(
            200,
            json!({"kid": self.kid(&id), "value": B64URL.encode(out)}),
        )
    }

    fn get(&self, version: Option<&str>) -> Response {
        match self.find(version, |v| (v.id.clone(), v.enabled)) {
            Ok((id, enabled)) => answer(
                200,
                json!({
                    "key": {
                        "kid": self.kid(&id),
                        "kty": "RSA",
                        "key_ops": ["encrypt", "decrypt", "wrapKey", "unwrapKey"],
                        "n": B64URL.encode([0xc5u8; 256]),
                        "e": "AQAB",
                    },
                    "attributes": {"enabled": enabled, "recoveryLevel": "Recoverable"},
                }),
            ),
            Err(r) => *r,
        }
    }
}

/// `/keys/{name}[/{version}][/{op}]`.
fn target(path: &str) -> Option<Target<'_>> {
    let rest = path.strip_prefix("/keys/")?.strip_prefix(KEY_NAME)?;
    let parts: Vec<&str> = rest.split('/').skip(1).collect();
    let is_op = |s: &str| s == "wrapkey" || s == "unwrapkey";
    match parts[..] {
        [] => Some(Target::Key(None)),
        [op] if is_op(op) => Some(Target::Op(None, op)),
        [v] => Some(Target::Key(Some(v))),
        [v, op] if is_op(op) => Some(Target::Op(Some(v), op)),
        _ => None,
    }
}

async fn handle(
    State(d): State<Arc<Azure>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    if method == Method::POST && path == format!("/{TENANT_ID}/oauth2/v2.0/token") {
        return d.token(&body);
    }
    match d.switches.gate(&d.tokens, &headers) {
        None => {}
        Some(Refusal::Unauthorized) => {
            return vault_error(401, "Unauthorized", "AKV10013: Invalid token.");
        }
        Some(Refusal::Forced(status, code)) => {
            return vault_error(status, code, "forced by the test");
        }
        Some(Refusal::Throttled) => {
            return vault_error(
                429,
                "Throttled",
                "Request was not processed because too many requests were received.",
            );
        }
        Some(Refusal::Denied) => {
            return answer(
                403,
                json!({"error": {"code": "Forbidden",
                                 "message": "The user, group or application does not have keys wrapKey permission.",
                                 "innererror": {"code": "ForbiddenByPolicy"}}}),
            );
        }
    }
    if uri.query() != Some("api-version=7.4") {
        return vault_error(400, "BadParameter", "api-version 7.4 expected.");
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (method, target(path)) {
        (Method::GET, Some(Target::Key(v))) => d.get(v),
        (Method::POST, Some(Target::Op(v, op))) => d.operation(v, op, &body),
        _ => vault_error(404, "KeyNotFound", "Not found."),
    }
}

// ---- fixtures -------------------------------------------------------------------------

async fn setup() -> Setup<Azure> {
    let azure = Azure::new();
    let router = azure.router();
    let double = azure.clone();
    Setup::start("azure", azure, router, |url| {
        *double.vault.lock().unwrap() = url.to_owned();
        json!({
            "vault": url,
            "key": KEY_NAME,
            "tenant_id": TENANT_ID,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "authority": url,
        })
    })
    .await
}

/// The framing of the adapter's ciphertexts (docs/kms/azure.md).
fn frame(version: &str, wrapped: &[u8]) -> Vec<u8> {
    let mut out = vec![1, u8::try_from(version.len()).unwrap()];
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(wrapped);
    out
}

// ---- tests ----------------------------------------------------------------------------

#[tokio::test]
async fn azure_passes_the_conformance_suite() {
    let mut s = setup().await;
    conformance::run(&s.h, "azure", &s.settings, &mut s.peer).await;
}

#[tokio::test]
async fn removed_access_and_disabled_key_are_denied() {
    let s = setup().await;
    let t = tenants(&s.h, "azure", &s.settings);
    let (dek, edek) = s.h.wrap(&t.key, &t.remote).await;

    s.double.switches.deny.store(true, Ordering::SeqCst);
    assert_denied(&s.h, &t.key, &t.remote, &edek).await;
    s.double.switches.deny.store(false, Ordering::SeqCst);
    assert_eq!(s.h.unwrap(&t.key, &t.remote, &edek).await, dek);

    s.double.set_enabled(false);
    assert_denied(&s.h, &t.key, &t.remote, &edek).await;
    let e = s.adapter().describe(&key_ref()).await.unwrap_err();
    assert!(
        matches!(&e, KmsError::Denied(m) if m.contains("disabled")),
        "{e}"
    );
    s.double.set_enabled(true);
    assert_eq!(s.h.unwrap(&t.key, &t.remote, &edek).await, dek);
}

#[tokio::test]
async fn a_token_serves_many_calls_and_a_401_refreshes_it_once() {
    let s = setup().await;
    check_token_flow(&*s.adapter(), &s.double.tokens, "invalid_client").await;
}

#[tokio::test]
async fn a_wrong_client_secret_is_denied_without_being_quoted() {
    let s = setup().await;
    let mut wrong = s.settings.clone();
    wrong["client_secret"] = json!("not-the-secret-xyz");
    let e = s
        .build(wrong)
        .unwrap()
        .describe(&key_ref())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, KmsError::Denied(m) if m.contains("invalid_client")),
        "{e}"
    );
    assert!(!format!("{e} {e:?}").contains("not-the-secret-xyz"));
}

#[tokio::test]
async fn throttling_answers_rate_limited() {
    let s = setup().await;
    check_throttling(&s.h, "azure", &s.settings, &s.double.switches.throttle).await;
}

#[tokio::test]
async fn provider_errors_map_to_the_service_classes() {
    let s = setup().await;
    let kms = s.adapter();
    let k = key_ref();
    let w = kms.wrap(&k, &[1u8; 32], b"ctx").await.unwrap();
    let cases: [(u16, &str, Expect); 8] = [
        (403, "Forbidden", |e| matches!(e, KmsError::Denied(_))),
        (404, "KeyNotFound", |e| matches!(e, KmsError::Denied(_))),
        (400, "BadParameter", |e| *e == KmsError::InvalidCiphertext),
        (429, "Throttled", |e| *e == KmsError::Busy),
        (500, "InternalServerError", |e| {
            matches!(e, KmsError::Unreachable(_))
        }),
        (503, "ServiceUnavailable", |e| {
            matches!(e, KmsError::Unreachable(_))
        }),
        (504, "GatewayTimeout", |e| {
            matches!(e, KmsError::Unreachable(_))
        }),
        (409, "Conflict", |e| matches!(e, KmsError::Other(_))),
    ];
    check_error_mapping(&*kms, &w.ciphertext, &s.double.switches.force, &cases).await;
}

#[tokio::test]
async fn ciphertexts_name_their_key_version_and_survive_rotation() {
    let s = setup().await;
    let kms = s.adapter();
    let k = key_ref();
    let v1 = s.double.current();
    let old = kms.generate(&k, b"ctx").await.unwrap();
    assert_eq!(old.version, 1, "Key Vault versions are reported as 1");
    assert_eq!(&old.ciphertext[2..2 + v1.len()], v1.as_bytes());

    let v2 = s.double.rotate();
    let new = kms.wrap(&k, &[4u8; 32], b"ctx").await.unwrap();
    assert_eq!(new.version, 1);
    assert_eq!(&new.ciphertext[2..2 + v2.len()], v2.as_bytes());
    assert_eq!(kms.describe(&k).await.unwrap(), 1);
    assert_eq!(
        *kms.unwrap(&k, &old.ciphertext, b"ctx").await.unwrap(),
        *old.plaintext
    );

    // Another real version's name on this wrapped value: Key Vault cannot decrypt it.
    let wrapped_v1 = &old.ciphertext[2 + v1.len()..];
    let swapped = frame(&v2, wrapped_v1);
    assert_eq!(
        kms.unwrap(&k, &swapped, b"ctx").await.unwrap_err(),
        KmsError::InvalidCiphertext
    );
    // A version the key never had: a forged ciphertext, not a revoked key.
    let forged = frame("ffffffffffffffffffffffffffffffff", wrapped_v1);
    assert_eq!(
        kms.unwrap(&k, &forged, b"ctx").await.unwrap_err(),
        KmsError::InvalidCiphertext
    );
    // Bad framing never reaches the vault.
    for junk in [&b""[..], b"\x02\x01a\x00", b"\x01\x05ab", b"\x01\x01/x"] {
        assert_eq!(
            kms.unwrap(&k, junk, b"ctx").await.unwrap_err(),
            KmsError::InvalidCiphertext
        );
    }

    // Pinned to the old version: wraps use it.
    let mut pinned = s.settings.clone();
    pinned["key_version"] = json!(v1);
    let pinned = s.build(pinned).unwrap();
    let w = pinned.wrap(&k, &[5u8; 32], b"ctx").await.unwrap();
    assert_eq!(&w.ciphertext[2..2 + v1.len()], v1.as_bytes());
    assert_eq!(
        *kms.unwrap(&k, &w.ciphertext, b"ctx").await.unwrap(),
        [5u8; 32]
    );
}

#[tokio::test]
async fn settings_are_validated_without_quoting_the_secret() {
    let s = setup().await;
    let build = |v: Value| s.build_error(v);
    let with = |field: &str, value: Value| {
        let mut v = s.settings.clone();
        v[field] = value;
        v
    };
    assert!(build(with("key", json!("a/../b"))).contains("key must be"));
    assert!(build(with("key_version", json!("v1/unwrapkey"))).contains("key_version"));
    assert!(build(with("tenant_id", json!("a/b"))).contains("tenant_id"));
    assert!(build(with("tenant_id", json!(".."))).contains("tenant_id"));
    assert!(build(with("client_secret", json!(""))).contains("must not be empty"));
    assert!(build(with("region", json!("x"))).contains("unknown field"));
    assert!(build(with("vault", json!("not a url"))).contains("vault"));
    let mut missing = s.settings.clone();
    missing.as_object_mut().unwrap().remove("client_secret");
    let e = build(missing);
    assert!(e.contains("client_secret"), "{e}");
    s.check_production_policy("vault", "http://acme.vault.azure.net");
    // A credential of the wrong type is refused without being echoed.
    let e = build(with("client_secret", json!(["s3cr3t-in-array"])));
    assert!(!e.contains("s3cr3t-in-array"), "{e}");
}
