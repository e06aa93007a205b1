//! The E2E key directory over HTTP: device-signed requests, single-use tokens, escrow
//! limits, group-log compare-and-swap, access-block versions and attachment blobs on the
//! file backend and on S3 (moto's S3, from the project venv: `bash scripts/setup-venv.sh`
//! or `KEYSTEAD_VENV`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    missing_docs
)]

mod aws_moto;
mod common;

use std::sync::Arc;
use std::time::Duration;

use keystead_core::device::DeviceKeys;
use keystead_core::groups::{
    EpochKey, GroupState, History, Op, Proposal, UserIdentity, UserRecord,
};
use keystead_core::request_auth::{self, SignedRequest};
use keystead_core::{GroupId, RecipientId, SigningKeyPair, UserId};
use keystead_server::audit::{AuditSink, MemorySink};
use keystead_server::auth::{OPS, new_key};
use keystead_server::clock::{Clock, ManualClock};
use keystead_server::directory::blob::{BlobStore, FileBlobStore, S3BlobStore, S3Settings};
use keystead_server::directory::device_auth::format_header;
use keystead_server::directory::log_prefix::entry_hash;
use keystead_server::directory::{Directory, DirectoryOptions};
use keystead_server::http::{AppState, RateLimiter, app};
use keystead_server::kms::builtin::{BuiltinKms, RootKey};
use keystead_server::metrics::Metrics;
use keystead_server::service::{Service, ServiceOptions, create_builtin_tenant};
use keystead_server::store::sqlite::SqliteStore;
use keystead_server::store::{Store, TenantMode};
use keystead_server::util::{os_rng, random_bytes};
use reqwest::Method;
use serde_json::{Value, json};

use common::{b64, unb64};

const T: &str = "acme";

struct Env {
    url: String,
    host: String,
    http: reqwest::Client,
    clock: Arc<ManualClock>,
    audit: Arc<MemorySink>,
    key: String,
    store: Arc<dyn Store>,
    directory: Arc<Directory>,
    dir: std::path::PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Dev {
    id: String,
    key: SigningKeyPair,
}

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "keystead-dir-test-{}-{}",
        std::process::id(),
        hex::encode(random_bytes::<6>())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

enum Blobs {
    File,
    S3(String),
}

async fn start(blobs: Blobs) -> Env {
    start_with(blobs, 0.0).await
}

/// [`start`] with a per-device request limit (requests per second; 0 turns it off).
async fn start_with(blobs: Blobs, device_requests_per_sec: f64) -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir();
    let sqlite = Arc::new(SqliteStore::open(&dir.join("keystead.db")).unwrap());
    let store: Arc<dyn Store> = sqlite.clone();
    let builtin = Arc::new(BuiltinKms::new(
        RootKey::load_or_create(&dir.join("root.key")).unwrap(),
        store.clone(),
    ));
    let audit = Arc::new(MemorySink::default());
    let sink: Arc<dyn AuditSink> = audit.clone();
    let clock = Arc::new(ManualClock::default());
    let service = Arc::new(Service::new(
        store.clone(),
        builtin.clone(),
        sink,
        Arc::new(Metrics::default()),
        clock.clone(),
        ServiceOptions {
            instance: "es-test".into(),
            ..Default::default()
        },
    ));
    create_builtin_tenant(&store, &builtin, T, TenantMode::Leasing, 3600, 600).unwrap();
    let k = new_key(
        "vendor",
        Some(vec![T.into()]),
        OPS.iter().map(|s| (*s).to_owned()).collect(),
        None,
    );
    store.create_service_key(&k.record).unwrap();
    let blob_store: Arc<dyn BlobStore> = match blobs {
        Blobs::File => Arc::new(FileBlobStore::new(&dir.join("blobs")).unwrap()),
        Blobs::S3(endpoint) => Arc::new(
            S3BlobStore::new(
                &S3Settings {
                    bucket: "keystead-blobs".into(),
                    endpoint: Some(endpoint),
                    region: Some("us-east-1".into()),
                    allow_http: true,
                    prefix: "attachments".into(),
                    credentials: Some((
                        aws_moto::ACCESS_KEY_ID.into(),
                        zeroize::Zeroizing::new(aws_moto::SECRET_ACCESS_KEY.into()),
                    )),
                },
                &dir.join("blobs-tmp"),
            )
            .unwrap(),
        ),
    };
    let directory = Arc::new(Directory::new(
        sqlite,
        blob_store,
        clock.clone(),
        service.clone(),
        DirectoryOptions {
            escrow_backoff_secs: 1,
            device_requests_per_sec,
            ..DirectoryOptions::default()
        },
    ));
    let state = AppState {
        service,
        limiter: Arc::new(RateLimiter::new(0.0, 0.0)),
        directory: Some(directory.clone()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    Env {
        url: format!("http://{addr}"),
        host: addr.to_string(),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        clock,
        audit,
        key: k.secret.to_string(),
        store,
        directory,
        dir,
    }
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
    fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

/// How to spoil a signed request.
#[derive(Clone, Copy, PartialEq)]
enum Spoil {
    None,
    /// Signed for another path.
    Path,
    /// Signed for another host.
    Host,
    /// Signed over another body.
    Body,
    /// Signed with another key.
    Key,
    /// Timestamp 301 s in the past.
    Stale,
}

impl Env {
    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Vec<u8>>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut r = self.http.request(method, format!("{}{path}", self.url));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        if let Some(b) = body {
            r = r.body(b);
        }
        let resp = r.send().await.unwrap();
        Resp {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    fn sign(&self, dev: &Dev, method: &Method, path: &str, body: &[u8], spoil: Spoil) -> String {
        let now = u64::try_from(self.clock.unix_now()).unwrap();
        let other_path = format!("{path}x");
        let other = SigningKeyPair::from_secret_bytes(&[9; 32]);
        let req = SignedRequest {
            method: method.as_str(),
            host: if spoil == Spoil::Host {
                "evil.example:443"
            } else {
                &self.host
            },
            path_and_query: if spoil == Spoil::Path {
                &other_path
            } else {
                path
            },
            body_sha256: request_auth::body_hash(if spoil == Spoil::Body {
                b"something else"
            } else {
                body
            }),
            timestamp: if spoil == Spoil::Stale {
                now - 301
            } else {
                now
            },
            nonce: random_bytes::<16>(),
            device_id: &dev.id,
        };
        let key = if spoil == Spoil::Key {
            &other
        } else {
            &dev.key
        };
        let sig = request_auth::sign(key, &req).unwrap();
        format_header(&dev.id, req.timestamp, &req.nonce, &sig)
    }

    async fn signed(&self, dev: &Dev, method: Method, path: &str, body: Option<Value>) -> Resp {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let auth = self.sign(
            dev,
            &method,
            path,
            bytes.as_deref().unwrap_or(b""),
            Spoil::None,
        );
        self.send(
            method,
            path,
            Some(&auth),
            bytes,
            &[("content-type", "application/json")],
        )
        .await
    }

    async fn vendor(&self, path: &str, body: Value) -> Resp {
        self.send(
            Method::POST,
            path,
            Some(&format!("Bearer {}", self.key)),
            Some(serde_json::to_vec(&body).unwrap()),
            &[("content-type", "application/json")],
        )
        .await
    }

    async fn token(&self, user: &str, kind: &str) -> String {
        let r = self
            .vendor(
                &format!("/v1/e2e/tenants/{T}/users/{user}/tokens"),
                json!({"kind": kind}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()["token"].as_str().unwrap().to_owned()
    }

    async fn enroll_with(&self, user: &str, token: &str, device: &str) -> (Resp, Dev) {
        let identity = SigningKeyPair::from_secret_bytes(&random_bytes::<32>());
        let dev = Dev {
            id: device.into(),
            key: SigningKeyPair::from_secret_bytes(&random_bytes::<32>()),
        };
        let r = self
            .send(
                Method::POST,
                &format!("/v1/e2e/tenants/{T}/users/{user}/enroll"),
                Some(&format!("Keystead-Token {token}")),
                Some(
                    serde_json::to_vec(&json!({
                        "identity_key": b64(&identity.public().to_bytes()),
                        "user_record": b64(b"signed user record v1"),
                        "device": {
                            "device_id": device,
                            "signing_key": b64(&dev.key.public().to_bytes()),
                            "certificate": b64(b"device certificate"),
                        }
                    }))
                    .unwrap(),
                ),
                &[("content-type", "application/json")],
            )
            .await;
        (r, dev)
    }

    /// Creates and enrolls `user` with one device.
    async fn user(&self, user: &str, device: &str) -> Dev {
        let r = self
            .vendor(
                &format!("/v1/e2e/tenants/{T}/users"),
                json!({"user_id": user}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let token = self.token(user, "enrollment").await;
        let (r, dev) = self.enroll_with(user, &token, device).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        dev
    }

    fn actions(&self) -> Vec<(String, String)> {
        self.audit
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|e| (e.action.clone(), e.outcome.to_owned()))
            .collect()
    }
}

#[tokio::test]
async fn device_signed_requests_and_their_failures() {
    let env = start(Blobs::File).await;
    let ada = env.user("ada", "ada-laptop").await;
    let path = format!("/v1/e2e/tenants/{T}/users/ada");

    let ok = env.signed(&ada, Method::GET, &path, None).await;
    assert_eq!(ok.status, 200);
    let u = ok.json();
    assert_eq!(u["version"], 1);
    assert_eq!(u["devices"][0]["device_id"], "ada-laptop");
    assert_eq!(
        unb64(u["user_record"].as_str().unwrap()),
        b"signed user record v1"
    );

    // Each spoiled signature: 401 unauthenticated.
    for spoil in [Spoil::Path, Spoil::Host, Spoil::Key, Spoil::Stale] {
        let auth = env.sign(&ada, &Method::GET, &path, b"", spoil);
        let r = env.send(Method::GET, &path, Some(&auth), None, &[]).await;
        assert_eq!((r.status, r.code().as_str()), (401, "unauthenticated"));
    }
    // Another body than the signed one.
    let escrow_path = format!("/v1/e2e/tenants/{T}/users/ada/escrow");
    let body = serde_json::to_vec(&json!({"escrow": b64(b"sealed")})).unwrap();
    let auth = env.sign(&ada, &Method::PUT, &escrow_path, &body, Spoil::Body);
    let r = env
        .send(
            Method::PUT,
            &escrow_path,
            Some(&auth),
            Some(body.clone()),
            &[],
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (401, "unauthenticated"));
    // A method other than the signed one.
    let auth = env.sign(&ada, &Method::GET, &escrow_path, &body, Spoil::None);
    let r = env
        .send(Method::PUT, &escrow_path, Some(&auth), Some(body), &[])
        .await;
    assert_eq!(r.status, 401);

    // A replay: accepted once, then 401 replayed_request.
    let auth = env.sign(&ada, &Method::GET, &path, b"", Spoil::None);
    assert_eq!(
        env.send(Method::GET, &path, Some(&auth), None, &[])
            .await
            .status,
        200
    );
    let r = env.send(Method::GET, &path, Some(&auth), None, &[]).await;
    assert_eq!((r.status, r.code().as_str()), (401, "replayed_request"));

    // Unknown device; no header; the vendor's service key is not a device.
    let ghost = Dev {
        id: "ghost".into(),
        key: SigningKeyPair::from_secret_bytes(&[3; 32]),
    };
    assert_eq!(
        env.signed(&ghost, Method::GET, &path, None).await.status,
        401
    );
    assert_eq!(
        env.send(Method::GET, &path, None, None, &[]).await.status,
        401
    );
    let bearer = format!("Bearer {}", env.key);
    assert_eq!(
        env.send(Method::GET, &path, Some(&bearer), None, &[])
            .await
            .status,
        401
    );

    // A signature from 4 minutes ago is still fresh; the clock then moves past the window.
    let auth = env.sign(&ada, &Method::GET, &path, b"", Spoil::None);
    env.clock.advance(Duration::from_secs(240));
    assert_eq!(
        env.send(Method::GET, &path, Some(&auth), None, &[])
            .await
            .status,
        200
    );
    let auth = env.sign(&ada, &Method::GET, &path, b"", Spoil::None);
    env.clock.advance(Duration::from_secs(301));
    assert_eq!(
        env.send(Method::GET, &path, Some(&auth), None, &[])
            .await
            .status,
        401
    );

    // Adding a device (CAS on the version) and removing the first: it stops at once.
    let phone = Dev {
        id: "ada-phone".into(),
        key: SigningKeyPair::from_secret_bytes(&random_bytes::<32>()),
    };
    let add = json!({
        "expected_version": 1,
        "user_record": b64(b"record v2"),
        "add_devices": [{
            "device_id": "ada-phone",
            "signing_key": b64(&phone.key.public().to_bytes()),
            "certificate": b64(b"phone cert"),
        }],
    });
    let r = env
        .signed(&ada, Method::PUT, &path, Some(add.clone()))
        .await;
    assert_eq!((r.status, r.json()["version"].clone()), (200, json!(2)));
    let r = env.signed(&ada, Method::PUT, &path, Some(add)).await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"));
    let rm = json!({"expected_version": 2, "user_record": b64(b"record v3"), "remove_devices": ["ada-laptop"]});
    assert_eq!(
        env.signed(&phone, Method::PUT, &path, Some(rm))
            .await
            .status,
        200
    );
    assert_eq!(env.signed(&ada, Method::GET, &path, None).await.status, 401);
    // Another user's device cannot update ada.
    let bob = env.user("bob", "bob-laptop").await;
    let r = env
        .signed(
            &bob,
            Method::PUT,
            &path,
            Some(json!({"expected_version": 3, "user_record": b64(b"x")})),
        )
        .await;
    assert_eq!(r.status, 403);

    let actions = env.actions();
    for a in [
        "directory_user_created",
        "directory_token_issued",
        "directory_user_enrolled",
        "directory_device_added",
        "directory_device_removed",
        "directory_user_updated",
    ] {
        assert!(
            actions.iter().any(|(x, o)| x == a && o == "success"),
            "{a} missing"
        );
    }
    // No token or signature in any event.
    let text = format!("{:?}", env.audit.0.lock().unwrap());
    assert!(!text.contains("kst_") && !text.contains(&env.key));
}

#[tokio::test]
async fn enrollment_tokens_are_single_use_and_expire() {
    let env = start(Blobs::File).await;
    let r = env
        .vendor(
            &format!("/v1/e2e/tenants/{T}/users"),
            json!({"user_id": "cy"}),
        )
        .await;
    assert_eq!(r.status, 201);
    // The same slot twice: conflict.
    let r = env
        .vendor(
            &format!("/v1/e2e/tenants/{T}/users"),
            json!({"user_id": "cy"}),
        )
        .await;
    assert_eq!(r.status, 409);
    // No token, a made-up token.
    let (r, _) = env.enroll_with("cy", "", "cy-1").await;
    assert_eq!(r.status, 401);
    let (r, _) = env.enroll_with("cy", "kst_madeup", "cy-1").await;
    assert_eq!(r.status, 401);
    // Expired: minted, then the clock moves 10 minutes.
    let t = env.token("cy", "enrollment").await;
    env.clock.advance(Duration::from_secs(600));
    let (r, _) = env.enroll_with("cy", &t, "cy-1").await;
    assert_eq!(r.status, 401);
    // No re-authentication token before enrollment (there is nothing to release).
    let r = env
        .vendor(
            &format!("/v1/e2e/tenants/{T}/users/cy/tokens"),
            json!({"kind": "reauthentication"}),
        )
        .await;
    assert_eq!(r.status, 409);
    // Valid once.
    let t = env.token("cy", "enrollment").await;
    let (r, _) = env.enroll_with("cy", &t, "cy-1").await;
    assert_eq!(r.status, 201);
    let (r, _) = env.enroll_with("cy", &t, "cy-2").await;
    assert_eq!(r.status, 401);
    // A re-authentication token does not enroll.
    let (r, _) = env
        .enroll_with("cy", &env.token("cy", "reauthentication").await, "cy-2")
        .await;
    assert_eq!(r.status, 401);
    // A token for another user is refused (and not spent).
    let r = env
        .vendor(
            &format!("/v1/e2e/tenants/{T}/users"),
            json!({"user_id": "dee"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let t = env.token("dee", "enrollment").await;
    let (r, _) = env.enroll_with("cy", &t, "cy-3").await;
    assert_eq!(r.status, 401);
    let (r, _) = env.enroll_with("dee", &t, "dee-1").await;
    assert_eq!(r.status, 201);
    // The vendor's key must carry the `directory` operation and the tenant.
    let other = new_key(
        "narrow",
        Some(vec!["other".into()]),
        vec!["directory".into()],
        None,
    );
    let r = env
        .send(
            Method::POST,
            &format!("/v1/e2e/tenants/{T}/users"),
            Some(&format!("Bearer {}", &*other.secret)),
            Some(br#"{"user_id":"x"}"#.to_vec()),
            &[],
        )
        .await;
    assert_eq!(r.status, 401, "unknown key");
}

#[tokio::test]
async fn escrow_needs_a_fresh_reauthentication_token_and_is_rate_limited() {
    let env = start(Blobs::File).await;
    let ada = env.user("ada", "ada-laptop").await;
    let bob = env.user("bob", "bob-laptop").await;
    let path = format!("/v1/e2e/tenants/{T}/users/ada/escrow");
    let put = json!({"escrow": b64(b"identity key sealed under the recovery code")});
    assert_eq!(
        env.signed(&ada, Method::PUT, &path, Some(put.clone()))
            .await
            .status,
        204
    );
    assert_eq!(
        env.signed(&bob, Method::PUT, &path, Some(put)).await.status,
        403
    );

    let get = |token: Option<String>| {
        let env = &env;
        let path = path.clone();
        async move {
            let auth = token.map(|t| format!("Keystead-Token {t}"));
            env.send(Method::GET, &path, auth.as_deref(), None, &[])
                .await
        }
    };
    let step = Duration::from_secs(20);
    // No token; a made-up token; an expired token.
    assert_eq!(get(None).await.status, 401);
    assert_eq!(get(Some("kst_madeup".into())).await.status, 401);
    let t = env.token("ada", "reauthentication").await;
    env.clock.advance(Duration::from_secs(601));
    assert_eq!(get(Some(t)).await.status, 401);
    // Released.
    let t = env.token("ada", "reauthentication").await;
    let r = get(Some(t.clone())).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        unb64(r.json()["escrow"].as_str().unwrap()),
        b"identity key sealed under the recovery code"
    );
    // With the current record and its version: the recovering browser has no device yet
    // to read the user with, and enrolls its new device against that version.
    assert_eq!(
        unb64(r.json()["user_record"].as_str().unwrap()),
        b"signed user record v1"
    );
    assert_eq!(r.json()["version"], 1);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    // Backoff: straight away again is 429 (and does not spend the token).
    let t2 = env.token("ada", "reauthentication").await;
    let r = get(Some(t2.clone())).await;
    assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"));
    assert!(r.header("retry-after").is_some());
    env.clock.advance(step);
    // The used token.
    assert_eq!(get(Some(t)).await.status, 401);
    env.clock.advance(step);
    // The token held back by the backoff still works: the second release.
    assert_eq!(get(Some(t2)).await.status, 200);
    // Releases 3 to 5, each after the backoff.
    for _ in 0..3 {
        env.clock.advance(step);
        let t = env.token("ada", "reauthentication").await;
        assert_eq!(get(Some(t)).await.status, 200);
    }
    env.clock.advance(step);
    // A 6th release within the hour: 429, whatever the token (which stays unspent).
    let t3 = env.token("ada", "reauthentication").await;
    let r = get(Some(t3.clone())).await;
    assert_eq!(r.status, 429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(wait > 3400 && wait <= 3600, "{wait}");
    // An hour later the window has room again (the held-back token has expired by then).
    env.clock.advance(Duration::from_secs(3600));
    assert_eq!(get(Some(t3)).await.status, 401);
    env.clock.advance(step);
    let t4 = env.token("ada", "reauthentication").await;
    assert_eq!(get(Some(t4)).await.status, 200);

    let actions = env.actions();
    let released = actions
        .iter()
        .filter(|(a, _)| a == "directory_escrow_released")
        .count();
    let refused = actions
        .iter()
        .filter(|(a, o)| a == "directory_escrow_refused" && o == "failure")
        .count();
    assert_eq!(released, 6);
    assert_eq!(refused, 7, "{actions:?}");
}

/// A user's identity and signed record with one device, for real group log entries
/// (keystead-core). Independent of the keys enrolled in the directory: the server does not
/// tie group log signers to directory users.
struct Member {
    identity: UserIdentity,
    record: UserRecord,
}

fn member(name: &str) -> Member {
    let mut rng = os_rng();
    let identity = UserIdentity::generate(&mut rng, UserId::new(name).unwrap());
    let device = DeviceKeys::generate(&mut rng, RecipientId::new(format!("{name}/d0")).unwrap());
    let record = identity
        .sign_record(1, vec![identity.certify(&device).unwrap()])
        .unwrap();
    Member { identity, record }
}

fn uid(m: &Member) -> UserId {
    m.record.user_id().clone()
}

/// A client's view of a group: its verified state and current epoch key.
struct Log {
    state: GroupState,
    key: Option<EpochKey>,
}

impl Log {
    /// A group created by `creator` with `others` (history: all), and its genesis entry.
    fn create(group: &str, creator: &Member, others: &[&Member]) -> (Self, Vec<u8>) {
        let mut records = vec![creator.record.clone()];
        records.extend(others.iter().map(|m| m.record.clone()));
        let p = GroupState::create(
            &mut os_rng(),
            GroupId::new(group).unwrap(),
            History::All,
            &creator.identity,
            records,
        )
        .unwrap();
        let state = GroupState::genesis(&p.entry).unwrap();
        let bytes = p.entry.to_bytes().to_vec();
        (
            Self {
                state,
                key: p.new_epoch_key,
            },
            bytes,
        )
    }

    /// A copy of the state without the epoch key (for branches whose entries need none).
    fn branch(&self) -> Self {
        Self {
            state: self.state.clone(),
            key: None,
        }
    }

    /// Signs the next entry as `signer` without applying it.
    fn propose(&self, signer: &Member, ops: Vec<Op>) -> Proposal {
        self.state
            .propose(&mut os_rng(), &signer.identity, ops, self.key.as_ref())
            .unwrap()
    }

    /// Applies an entry the server accepted; returns its bytes.
    fn apply(&mut self, p: Proposal) -> Vec<u8> {
        self.state.apply(&p.entry).unwrap();
        if let Some(k) = p.new_epoch_key {
            self.key = Some(k);
        }
        p.entry.to_bytes().to_vec()
    }

    /// Signs and applies the next entry; returns its bytes.
    fn next(&mut self, signer: &Member, ops: Vec<Op>) -> Vec<u8> {
        let p = self.propose(signer, ops);
        self.apply(p)
    }
}

/// Bytes of a proposal that is not applied.
fn bytes(p: &Proposal) -> Vec<u8> {
    p.entry.to_bytes().to_vec()
}

/// `entry` (which must carry no key section: the sealed keys name the group) moved to
/// another group id of the same length, and signed again by `signer`: a valid entry of
/// another group with the same seq and parent.
fn regroup(entry: &[u8], group: &str, signer: &Member) -> Vec<u8> {
    use ed25519_dalek::Signer as _;
    let len = usize::from(u16::from_be_bytes([entry[4], entry[5]]));
    assert_eq!(len, group.len());
    let mut unsigned = entry[..entry.len() - 64].to_vec();
    unsigned[6..6 + len].copy_from_slice(group.as_bytes());
    let key = ed25519_dalek::SigningKey::from_bytes(&signer.identity.expose_seed());
    let mut msg = b"keystead/v1/group-log".to_vec();
    msg.extend_from_slice(&unsigned);
    let sig = key.sign(&msg).to_bytes();
    unsigned.extend_from_slice(&sig);
    unsigned
}

#[tokio::test]
async fn group_log_is_compare_and_swap() {
    let env = start(Blobs::File).await;
    let ada = env.user("ada", "ada-laptop").await;
    let bob = env.user("bob", "bob-laptop").await;
    let eve = env.user("eve", "eve-laptop").await;
    let (m_ada, m_bob, m_carol, m_dave) = (
        member("ada"),
        member("bob"),
        member("carol"),
        member("dave"),
    );
    let groups = format!("/v1/e2e/tenants/{T}/groups");
    let (mut log, genesis) = Log::create("g1", &m_ada, &[&m_bob]);
    let h0 = entry_hash(&genesis);
    // Two children of the genesis: adding carol, adding dave.
    let p1 = log.propose(&m_ada, vec![Op::AddMember(m_carol.record.clone())]);
    let p_sibling = log.propose(&m_ada, vec![Op::AddMember(m_dave.record.clone())]);
    let (c1, sibling) = (bytes(&p1), bytes(&p_sibling));
    // A genesis must have seq 0 and a zero parent, and name the group.
    let r = env
        .signed(
            &ada,
            Method::POST,
            &groups,
            Some(json!({"group_id": "g1", "entry": b64(&c1)})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = env
        .signed(
            &ada,
            Method::POST,
            &groups,
            Some(json!({"group_id": "g2", "entry": b64(&genesis)})),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = env
        .signed(
            &ada,
            Method::POST,
            &groups,
            Some(json!({"group_id": "g1", "entry": b64(&genesis), "members": ["bob"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["seq"], 0);
    assert_eq!(unb64(r.json()["head"].as_str().unwrap()), h0);
    let r = env
        .signed(
            &ada,
            Method::POST,
            &groups,
            Some(json!({"group_id": "g1", "entry": b64(&genesis)})),
        )
        .await;
    assert_eq!(r.status, 409);

    let entries = format!("{groups}/g1/entries");
    let r = env
        .signed(
            &bob,
            Method::POST,
            &entries,
            Some(json!({"entry": b64(&c1)})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // The second child of the same parent loses.
    let r = env
        .signed(
            &ada,
            Method::POST,
            &entries,
            Some(json!({"entry": b64(&sibling)})),
        )
        .await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"));
    let mut on_sibling = log.branch();
    on_sibling.apply(p_sibling);
    log.apply(p1);
    // A skipped sequence number (entry 3 of a log whose head is 1); a wrong parent at the
    // right number (entry 2 on top of the losing sibling).
    let h1 = entry_hash(&c1);
    assert_eq!(log.state.head(), &h1);
    let mut ahead = log.branch();
    ahead.next(&m_ada, vec![Op::AddAdmin(uid(&m_bob))]);
    let skipped = ahead.next(&m_ada, vec![Op::AddAdmin(uid(&m_carol))]);
    let r = env
        .signed(
            &ada,
            Method::POST,
            &entries,
            Some(json!({"entry": b64(&skipped)})),
        )
        .await;
    assert_eq!(r.status, 400);
    let wrong_parent = on_sibling.next(&m_ada, vec![Op::AddAdmin(uid(&m_bob))]);
    let r = env
        .signed(
            &ada,
            Method::POST,
            &entries,
            Some(json!({"entry": b64(&wrong_parent)})),
        )
        .await;
    assert_eq!(r.status, 409);
    // An entry of another group, validly signed, with the right seq and parent.
    let admin_bob = bytes(&log.propose(&m_ada, vec![Op::AddAdmin(uid(&m_bob))]));
    let other = regroup(&admin_bob, "g9", &m_ada);
    assert_eq!(&other[..4], b"KSL\x01");
    let r = env
        .signed(
            &ada,
            Method::POST,
            &entries,
            Some(json!({"entry": b64(&other)})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("another group"),
        "{}",
        r.json()
    );
    // Non-members neither append nor read.
    let p2 = log.propose(&m_ada, vec![Op::Rotate]);
    let c2 = bytes(&p2);
    let r = env
        .signed(
            &eve,
            Method::POST,
            &entries,
            Some(json!({"entry": b64(&c2)})),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(
        env.signed(&eve, Method::GET, &entries, None).await.status,
        404
    );
    let r = env
        .signed(
            &ada,
            Method::POST,
            &entries,
            Some(json!({"entry": b64(&c2), "members": ["ada"]})),
        )
        .await;
    assert_eq!(r.status, 201);

    // The log from a sequence number on.
    let r = env
        .signed(&ada, Method::GET, &format!("{entries}?from=1"), None)
        .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    let got: Vec<Vec<u8>> = j["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| unb64(e["entry"].as_str().unwrap()))
        .collect();
    assert_eq!(got, vec![c1.clone(), c2.clone()]);
    assert_eq!(j["head"]["seq"], 2);
    let r = env
        .signed(
            &ada,
            Method::GET,
            &format!("{entries}?from=0&limit=1"),
            None,
        )
        .await;
    assert_eq!(r.json()["entries"].as_array().unwrap().len(), 1);
    let r = env
        .signed(&ada, Method::GET, &format!("{entries}?from=x"), None)
        .await;
    assert_eq!(r.status, 400);
    // The last append replaced the member index with ["ada"]: bob is out.
    assert_eq!(
        env.signed(&bob, Method::GET, &entries, None).await.status,
        404
    );
    let mine = env
        .signed(
            &ada,
            Method::GET,
            &format!("/v1/e2e/tenants/{T}/users/ada/groups"),
            None,
        )
        .await;
    assert_eq!(mine.json()["groups"][0]["group_id"], "g1");
    let r = env
        .signed(
            &bob,
            Method::GET,
            &format!("/v1/e2e/tenants/{T}/users/ada/groups"),
            None,
        )
        .await;
    assert_eq!(r.status, 403);

    let actions = env.actions();
    assert!(actions.iter().any(|(a, _)| a == "directory_group_created"));
    assert!(
        actions
            .iter()
            .any(|(a, _)| a == "directory_group_entry_appended")
    );
    assert!(
        actions
            .iter()
            .any(|(a, o)| a == "directory_group_entry_refused" && o == "failure")
    );
}

impl Env {
    /// Appends `entry` to group `g` as device `dev`.
    async fn append(&self, dev: &Dev, g: &str, entry: &[u8]) -> Resp {
        self.signed(
            dev,
            Method::POST,
            &format!("/v1/e2e/tenants/{T}/groups/{g}/entries"),
            Some(json!({"entry": b64(entry)})),
        )
        .await
    }
}

/// `400 bad_request` whose message names `code` (the keystead-core error code).
fn assert_refused(r: &Resp, code: &str) {
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "bad_request"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.message().contains(code), "{code} not in {}", r.message());
}

#[tokio::test]
async fn group_entries_are_verified_with_keystead_core() {
    let env = start(Blobs::File).await;
    let ada = env.user("ada", "ada-laptop").await;
    let bob = env.user("bob", "bob-laptop").await;
    let (m_ada, m_bob, m_carol) = (member("ada"), member("bob"), member("carol"));
    let groups = format!("/v1/e2e/tenants/{T}/groups");
    let (mut log, genesis) = Log::create("team", &m_ada, &[&m_bob, &m_carol]);

    // A genesis with a broken signature.
    let mut broken = genesis.clone();
    *broken.last_mut().unwrap() ^= 1;
    let r = env
        .signed(
            &ada,
            Method::POST,
            &groups,
            Some(json!({"group_id": "team", "entry": b64(&broken)})),
        )
        .await;
    assert_refused(&r, "bad_signature");
    let r = env
        .signed(
            &ada,
            Method::POST,
            &groups,
            Some(json!({"group_id": "team", "entry": b64(&genesis), "members": ["bob"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));

    // A broken signature on an append: refused, and the bytes are not echoed.
    let mut broken = bytes(&log.propose(&m_ada, vec![Op::Rotate]));
    let n = broken.len();
    broken[n - 10] ^= 0x40;
    let r = env.append(&ada, "team", &broken).await;
    assert_refused(&r, "bad_signature");
    assert!(r.body.len() < 200, "{}", String::from_utf8_lossy(&r.body));
    // A tampered operation under a valid framing: the signature no longer matches.
    let mut tampered = bytes(&log.propose(&m_ada, vec![Op::AddAdmin(uid(&m_bob))]));
    let at = tampered.len() - 64 - 1 - 3;
    tampered[at] ^= 1; // inside bob's user id
    let r = env.append(&ada, "team", &tampered).await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    // Signed by a member who is not an admin (sent by an admin's device: the signer is
    // what counts).
    let by_bob = bytes(&log.propose(&m_bob, vec![Op::RemoveMember(uid(&m_carol))]));
    let r = env.append(&ada, "team", &by_bob).await;
    assert_refused(&r, "not_admin");
    // An outsider neither.
    let m_eve = member("eve");
    let by_eve = bytes(&log.propose(&m_eve, vec![Op::Rotate]));
    assert_refused(&env.append(&bob, "team", &by_eve).await, "not_admin");
    // None of them moved the head.
    let head = |r: &Resp| r.json()["head"]["seq"].as_u64().unwrap();
    let path = format!("{groups}/team/entries");
    assert_eq!(head(&env.signed(&ada, Method::GET, &path, None).await), 0);

    // Bob made an admin, then removed from the group: a valid removal is accepted.
    let e1 = log.next(&m_ada, vec![Op::AddAdmin(uid(&m_bob))]);
    let r = env.append(&ada, "team", &e1).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Bob, an admin now, signs an entry that the server accepts from the cached state.
    let e2 = log.next(&m_bob, vec![Op::Rotate]);
    assert_eq!(env.append(&bob, "team", &e2).await.status, 201);
    let p_late = log.propose(&m_bob, vec![Op::Rotate]);
    let removal = log.next(&m_ada, vec![Op::RemoveMember(uid(&m_bob))]);
    assert!(log.state.epoch() >= 3);
    let r = env.append(&ada, "team", &removal).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(env.directory.group_states().len(), 1);
    // The cached state after the removal accepts the next entry...
    let e4 = log.next(&m_ada, vec![Op::AddAdmin(uid(&m_carol))]);
    assert_eq!(env.append(&ada, "team", &e4).await.status, 201);
    // ...and refuses one by bob, who is no longer a member (built on the right parent).
    let by_removed = bytes(&log.propose(&m_bob, vec![Op::Rotate]));
    assert_refused(&env.append(&ada, "team", &by_removed).await, "not_admin");
    // Bob's entry on an older parent is a conflict, whatever its signature.
    assert_eq!(env.append(&ada, "team", &bytes(&p_late)).await.status, 409);

    // A restart (empty cache): the state is rebuilt from the store, with the removal.
    env.directory.group_states().clear();
    assert!(env.directory.group_states().is_empty());
    assert_refused(&env.append(&ada, "team", &by_removed).await, "not_admin");
    env.directory.group_states().clear();
    let e5 = log.next(&m_carol, vec![Op::Rotate]);
    let r = env.append(&ada, "team", &e5).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(env.directory.group_states().len(), 1);
    let e6 = log.next(&m_ada, vec![Op::RemoveAdmin(uid(&m_carol))]);
    assert_eq!(env.append(&ada, "team", &e6).await.status, 201);
    // The stored log is the one the client verified.
    let r = env.signed(&ada, Method::GET, &path, None).await;
    assert_eq!(head(&r), log.state.seq());
    assert_eq!(
        unb64(r.json()["head"]["head"].as_str().unwrap()),
        log.state.head().to_vec()
    );
    let actions = env.actions();
    assert!(
        actions
            .iter()
            .filter(|(a, o)| a == "directory_group_entry_refused" && o == "failure")
            .count()
            >= 6
    );
}

#[tokio::test]
async fn group_routes_take_entries_over_one_mebibyte() {
    let env = start(Blobs::File).await;
    let ada = env.user("ada", "ada-laptop").await;
    let m_ada = member("ada");
    // About 2 000 members with one device each: an entry of over 1 MiB.
    let others: Vec<Member> = (0..2000).map(|i| member(&format!("u{i}"))).collect();
    let refs: Vec<&Member> = others.iter().collect();
    let (mut log, genesis) = Log::create("big", &m_ada, &refs);
    let body = serde_json::to_vec(&json!({"group_id": "big", "entry": b64(&genesis)})).unwrap();
    assert!(body.len() > 1 << 20, "{}", body.len());
    let r = env
        .signed(
            &ada,
            Method::POST,
            &format!("/v1/e2e/tenants/{T}/groups"),
            Some(json!({"group_id": "big", "entry": b64(&genesis)})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // A removal re-seals the epoch key to every remaining device (about 150 bytes each).
    let removal = log.next(&m_ada, vec![Op::RemoveMember(uid(&others[0]))]);
    let r = env.append(&ada, "big", &removal).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Other JSON routes keep the 1 MiB limit.
    let r = env
        .signed(
            &ada,
            Method::PUT,
            &format!("/v1/e2e/tenants/{T}/access-blocks/doc-big"),
            Some(json!({"expected_version": 0, "block": b64(&vec![0u8; 900_000])})),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.message().contains("1 MiB"), "{}", r.message());
}

#[tokio::test]
async fn access_blocks_are_compare_and_swap() {
    let env = start(Blobs::File).await;
    let ada = env.user("ada", "ada-laptop").await;
    let path = format!("/v1/e2e/tenants/{T}/access-blocks/doc-1");
    assert_eq!(env.signed(&ada, Method::GET, &path, None).await.status, 404);
    let put = |v: u64, b: &[u8]| json!({"expected_version": v, "block": b64(b)});
    let r = env
        .signed(&ada, Method::PUT, &path, Some(put(0, b"block 1")))
        .await;
    assert_eq!((r.status, r.json()["version"].clone()), (200, json!(1)));
    assert_eq!(r.header("etag").as_deref(), Some("\"1\""));
    let r = env
        .signed(&ada, Method::PUT, &path, Some(put(0, b"lost")))
        .await;
    assert_eq!((r.status, r.code().as_str()), (409, "conflict"));
    let r = env
        .signed(&ada, Method::PUT, &path, Some(put(1, b"block 2")))
        .await;
    assert_eq!(r.json()["version"], 2);
    let r = env
        .signed(&ada, Method::PUT, &path, Some(put(1, b"lost")))
        .await;
    assert_eq!(r.status, 409);
    let r = env.signed(&ada, Method::GET, &path, None).await;
    assert_eq!(r.json()["version"], 2);
    assert_eq!(unb64(r.json()["block"].as_str().unwrap()), b"block 2");
}

async fn put_blob(env: &Env, path: &str, dev: &Dev, body: Vec<u8>, spoil: Spoil) -> Resp {
    let auth = env.sign(dev, &Method::PUT, path, &body, spoil);
    env.send(
        Method::PUT,
        path,
        Some(&auth),
        Some(body),
        &[("content-type", "application/octet-stream")],
    )
    .await
}

async fn get_blob(env: &Env, path: &str, dev: &Dev, range: Option<&str>) -> Resp {
    let auth = env.sign(dev, &Method::GET, path, b"", Spoil::None);
    let extra: Vec<(&str, &str)> = range.map(|r| ("range", r)).into_iter().collect();
    env.send(Method::GET, path, Some(&auth), None, &extra).await
}

async fn blobs_roundtrip(env: &Env, big: usize) {
    let ada = env.user("ada", "ada-laptop").await;
    let bob = env.user("bob", "bob-laptop").await;
    let path = format!("/v1/e2e/tenants/{T}/blobs/att-1");
    let data: Vec<u8> = (0..big).map(|i| (i * 7 % 251) as u8).collect();
    assert_eq!(get_blob(env, &path, &ada, None).await.status, 404);
    let r = put_blob(env, &path, &ada, data.clone(), Spoil::None).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["size"], big);
    let r = get_blob(env, &path, &bob, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));
    let r = get_blob(env, &path, &ada, Some("bytes=1000-69999")).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.body, data[1000..70000]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 1000-69999/{big}"))
    );
    let r = get_blob(env, &path, &ada, Some("bytes=-10")).await;
    assert_eq!(r.body, data[big - 10..]);
    let r = get_blob(env, &path, &ada, Some(&format!("bytes={big}-"))).await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (416, "range_not_satisfiable")
    );
    // A body other than the signed one is refused and the blob is unchanged.
    let r = put_blob(env, &path, &ada, b"tampered".to_vec(), Spoil::Body).await;
    assert_eq!(r.status, 401);
    assert_eq!(get_blob(env, &path, &ada, None).await.body, data);
    // Another user may not replace it; the owner may.
    let r = put_blob(env, &path, &bob, b"mine now".to_vec(), Spoil::None).await;
    assert_eq!(r.status, 403);
    let r = put_blob(env, &path, &ada, b"v2".to_vec(), Spoil::None).await;
    assert_eq!(r.status, 201);
    assert_eq!(get_blob(env, &path, &ada, None).await.body, b"v2");
    let missing = format!("/v1/e2e/tenants/{T}/blobs/nope");
    assert_eq!(get_blob(env, &missing, &ada, None).await.status, 404);
}

#[tokio::test]
async fn blobs_on_the_file_backend() {
    let env = start(Blobs::File).await;
    blobs_roundtrip(&env, 300_000).await;
    // No upload leftovers.
    let tmp: Vec<_> = std::fs::read_dir(env.dir.join("blobs/tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty());
}

#[tokio::test]
async fn blobs_on_s3_moto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let moto = aws_moto::Moto::start().await;
    // Create the bucket (moto checks no signature).
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = http
        .put(format!("{}/keystead-blobs", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create bucket: {}", r.status());
    let env = start(Blobs::S3(moto.endpoint.clone())).await;
    // Over 8 MiB: a multipart upload.
    blobs_roundtrip(&env, 9 * 1024 * 1024 + 17).await;
    // The blob is in the bucket, under the prefix and a hashed name, and nothing else is.
    let list = http
        .get(format!("{}/keystead-blobs?list-type=2", moto.endpoint))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(list.matches("<Key>").count(), 1, "{list}");
    assert!(list.contains("<Key>attachments/"), "{list}");
    assert!(
        list.contains("<Size>2</Size>"),
        "the owner's second upload: {list}"
    );
}

#[tokio::test]
async fn a_disabled_tenant_refuses_directory_requests() {
    let env = start(Blobs::File).await;
    let ada = env.user("ada", "ada-laptop").await;
    let path = format!("/v1/e2e/tenants/{T}/users/ada");
    assert_eq!(env.signed(&ada, Method::GET, &path, None).await.status, 200);
    let token = env.token("ada", "reauthentication").await;
    let mut t = env.store.tenant(T).unwrap().unwrap();
    t.disabled = true;
    env.store.update_tenant(&t).unwrap();
    let r = env.signed(&ada, Method::GET, &path, None).await;
    assert_eq!((r.status, r.code().as_str()), (409, "tenant_disabled"));
    let escrow = format!("/v1/e2e/tenants/{T}/users/ada/escrow");
    let auth = format!("Keystead-Token {token}");
    let r = env.send(Method::GET, &escrow, Some(&auth), None, &[]).await;
    assert_eq!(r.status, 409);
    let r = env
        .vendor(
            &format!("/v1/e2e/tenants/{T}/users"),
            json!({"user_id": "zed"}),
        )
        .await;
    assert_eq!(r.status, 409);
}

#[tokio::test]
async fn each_device_is_rate_limited_and_only_genuine_requests_count() {
    let env = start_with(Blobs::File, 3.0).await;
    // Enrollment is token-authenticated: it does not count towards the device's limit.
    let ada = env.user("ada", "ada-laptop").await;
    let bob = env.user("bob", "bob-laptop").await;
    let path = format!("/v1/e2e/tenants/{T}/users/ada");
    // Forged requests naming ada's device (bad signature) are refused before they are
    // counted: they cannot use up her allowance.
    for _ in 0..5 {
        let auth = env.sign(&ada, &Method::GET, &path, b"", Spoil::Key);
        let r = env.send(Method::GET, &path, Some(&auth), None, &[]).await;
        assert_eq!(r.status, 401);
    }
    // A burst of one second's worth, then 429 with a Retry-After.
    for i in 0..3 {
        let r = env.signed(&ada, Method::GET, &path, None).await;
        assert_eq!(r.status, 200, "request {i}");
    }
    let r = env.signed(&ada, Method::GET, &path, None).await;
    assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"));
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "retry-after {wait}");
    // Another device has its own allowance.
    let bobs = format!("/v1/e2e/tenants/{T}/users/bob");
    let r = env.signed(&bob, Method::GET, &bobs, None).await;
    assert_eq!(r.status, 200);
    // The bucket refills.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let r = env.signed(&ada, Method::GET, &path, None).await;
    assert_eq!(r.status, 200);
}
