//! The KMIP adapter against a real KMIP server: PyKMIP's `pykmip-server` (from the project
//! venv, `bash scripts/setup-venv.sh`) on 127.0.0.1, over mutual TLS with certificates made
//! here with rcgen, keys in a SQLite database so they survive a restart.
//!
//! * the shared KMS conformance suite (round trips in both modes, binding, outage, lease,
//!   recovery), with the AES key created through the adapter's own KMIP client;
//! * denial: a revoked key, a key that does not exist, a client certificate from another CA;
//! * a key located by name;
//! * error mapping without a KMIP server: nothing listening, a server that never answers, a
//!   server that does not speak TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::conformance::{self, Peer, assert_denied, free_port, venv_bin, wait_for_port};
use common::pki::{Ca, Leaf};
use common::{Harness, Opts};
use keystead_server::kms::kmip::KmipKms;
use keystead_server::kms::{KeyRef, Kms, KmsError, RetryPolicy};
use keystead_server::store::TenantMode;
use serde_json::{Value, json};

// ---- the PyKMIP peer --------------------------------------------------------------------

/// `pykmip-server` on a free loopback port, in its own temp dir and process group; killed
/// (the whole group: it forks a policy monitor) on stop and on drop, also when a test
/// panics.
struct PyKmip {
    dir: PathBuf,
    port: u16,
    ca: Ca,
    client: Leaf,
    child: Option<Child>,
}

impl PyKmip {
    async fn start() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        // Fails at once, saying how to install it, when the venv lacks the server.
        venv_bin("pykmip-server");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "pykmip-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("policies")).unwrap();
        let ca = Ca::new("keystead kmip test CA");
        let server = ca.server();
        let client = ca.client("keystead-es");
        std::fs::write(dir.join("server.pem"), &server.cert).unwrap();
        std::fs::write(dir.join("server.key"), &server.key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let port = free_port();
        let conf = format!(
            "[server]\nhostname=127.0.0.1\nport={port}\ncertificate_path={d}/server.pem\n\
             key_path={d}/server.key\nca_path={d}/ca.pem\nauth_suite=TLS1.2\n\
             policy_path={d}/policies\nenable_tls_client_auth=True\n\
             database_path={d}/pykmip.db\nlogging_level=INFO\n",
            d = dir.display()
        );
        std::fs::write(dir.join("server.conf"), conf).unwrap();
        let mut peer = Self {
            dir,
            port,
            ca,
            client,
            child: None,
        };
        peer.spawn().await;
        peer
    }

    async fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.join("stdout.log")).unwrap();
        let child = Command::new(venv_bin("pykmip-server"))
            .arg("-f")
            .arg(self.dir.join("server.conf"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start pykmip-server");
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(60)).await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The process group we created: the server and its policy monitor.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Settings for `key` (`{"key_id": …}` or `{"key_name": …}`) with this peer's client
    /// certificate.
    fn settings(&self, key: Value) -> Value {
        let mut s = json!({
            "host": "127.0.0.1",
            "port": self.port,
            "client_cert_pem": self.client.cert,
            "client_key_pem": self.client.key,
            "ca_pem": self.ca.pem(),
        });
        for (k, v) in key.as_object().unwrap() {
            s[k] = v.clone();
        }
        s
    }

    /// Creates an active AES-256 key through the adapter's KMIP client; returns its UID.
    async fn create_key(&self, h: &Harness, name: Option<&str>) -> String {
        let admin = adapter(h, &self.settings(json!({"key_id": "unused"})));
        admin.create_key(name).await.expect("create an AES key")
    }
}

impl Drop for PyKmip {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "pykmip-server log (last lines, newest first):\n{}",
                tail.join("\n")
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Peer for PyKmip {
    async fn stop(&mut self) {
        self.kill();
    }
    async fn start(&mut self) {
        self.spawn().await;
    }
}

// ---- helpers ------------------------------------------------------------------------------

/// A harness whose KMS timeout suits a Python server on a busy machine (the default 200 ms
/// is for in-process peers); the conformance suite's hang detector stays 10 s.
async fn harness() -> Harness {
    Harness::start_with(Opts {
        retry: RetryPolicy {
            timeout: Duration::from_secs(3),
            attempts: 2,
            backoff: Duration::from_millis(5),
        },
        ..Opts::default()
    })
    .await
}

fn adapter(h: &Harness, settings: &Value) -> KmipKms {
    KmipKms::from_settings(settings.clone(), &h.build_context()).expect("kmip settings")
}

fn key_ref(tenant: &str) -> KeyRef {
    KeyRef {
        tenant: tenant.into(),
        config: "kmip-1".into(),
        version: None,
    }
}

// ---- tests ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kmip_passes_the_conformance_suite() {
    let h = harness().await;
    let mut peer = PyKmip::start().await;
    let uid = peer.create_key(&h, None).await;
    let settings = peer.settings(json!({ "key_id": uid }));
    conformance::run(&h, "kmip", &settings, &mut peer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_missing_keys_are_denied_and_names_are_located() {
    let h = harness().await;
    let peer = PyKmip::start().await;

    // A key located by name works like one given by UID; an unknown name is a refusal.
    let named = peer.create_key(&h, Some("tenant-a-master")).await;
    let by_name = adapter(&h, &peer.settings(json!({"key_name": "tenant-a-master"})));
    let by_id = adapter(&h, &peer.settings(json!({ "key_id": named })));
    let k = key_ref("t1");
    assert_eq!(by_name.describe(&k).await.unwrap(), 1);
    let w = by_name.wrap(&k, &[3; 32], b"ctx").await.unwrap();
    assert_eq!(
        **by_id.unwrap(&k, &w.ciphertext, b"ctx").await.unwrap(),
        [3; 32]
    );
    let nobody = adapter(&h, &peer.settings(json!({"key_name": "no-such-key"})));
    let e = nobody.describe(&k).await.unwrap_err();
    assert!(matches!(e, KmsError::Denied(_)), "{e}");

    // A UID the server does not know (a deleted key): Item Not Found → Denied.
    let gone = adapter(&h, &peer.settings(json!({"key_id": "999999"})));
    for e in [
        gone.describe(&k).await.unwrap_err(),
        gone.wrap(&k, &[1; 32], b"ctx").await.err().unwrap(),
        gone.unwrap(&k, &w.ciphertext, b"ctx").await.unwrap_err(),
    ] {
        assert!(
            matches!(&e, KmsError::Denied(m) if m.contains("Item Not Found")),
            "{e}"
        );
    }

    // Revoke the tenant's key: the API answers 403 kms_denied, describe says why.
    let uid = peer.create_key(&h, None).await;
    let settings = peer.settings(json!({ "key_id": uid }));
    h.kms_tenant("kmip-t", TenantMode::Remote, "kmip-1", "kmip", &settings);
    let (_, api_key) = h.key("kmip-denial", None);
    let (dek, edek) = h.wrap(&api_key, "kmip-t").await;
    assert_eq!(h.unwrap(&api_key, "kmip-t", &edek).await, dek);
    let kms = adapter(&h, &settings);
    kms.revoke_key().await.expect("revoke");
    assert_denied(&h, &api_key, "kmip-t", &edek).await;
    let e = kms.describe(&key_ref("kmip-t")).await.unwrap_err();
    assert!(
        matches!(&e, KmsError::Denied(m) if m.contains("Deactivated")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_another_ca_is_denied() {
    let h = harness().await;
    let peer = PyKmip::start().await;
    let uid = peer.create_key(&h, None).await;
    let stranger = Ca::new("some other CA").client("keystead-es");
    let mut settings = peer.settings(json!({ "key_id": uid }));
    settings["client_cert_pem"] = stranger.cert.into();
    settings["client_key_pem"] = stranger.key.clone().into();
    // The server refuses the certificate with a TLS alert during the handshake: a refusal
    // of our credential (Denied), not an outage, so the circuit breaker stays closed.
    let e = adapter(&h, &settings)
        .describe(&key_ref("t"))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, KmsError::Denied(m) if m.contains("client certificate")),
        "{e}"
    );
    assert!(!e.to_string().contains(&stranger.key[30..60]));
    h.kms_tenant("kmip-x", TenantMode::Remote, "kmip-1", "kmip", &settings);
    let (_, api_key) = h.key("kmip-x", None);
    let r = h
        .post(
            "/v1/keys/wrap",
            Some(&api_key),
            &json!({ "tenant_id": "kmip-x", "metadata": common::md() }),
        )
        .await;
    h.expect_error(&r, 403, "kms_denied");
}

/// Error mapping without a KMIP server: refused connection, silence, not TLS.
#[tokio::test]
async fn transport_failures_map_to_unreachable_and_timeout() {
    let h = Harness::start().await; // 200 ms KMS timeout
    let ca = Ca::new("unused CA");
    let client = ca.client("c");
    let settings = |port: u16| {
        json!({
            "host": "127.0.0.1", "port": port, "key_id": "1",
            "client_cert_pem": client.cert, "client_key_pem": client.key,
        })
    };
    let k = key_ref("t");

    // Nothing listens.
    let e = adapter(&h, &settings(free_port()))
        .describe(&k)
        .await
        .unwrap_err();
    assert!(matches!(e, KmsError::Unreachable(_)), "{e}");

    // A listener that accepts and never answers: the handshake times out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let e = tokio::time::timeout(
        conformance::QUICK,
        adapter(&h, &settings(port)).describe(&k),
    )
    .await
    .expect("a silent server must not hang the adapter")
    .unwrap_err();
    assert_eq!(e, KmsError::Timeout);
    hold.abort();

    // A listener that answers with something that is not TLS.
    let junk = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = junk.local_addr().unwrap().port();
    let answer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut s, _)) = junk.accept().await {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let e = adapter(&h, &settings(port)).describe(&k).await.unwrap_err();
    assert!(matches!(e, KmsError::Unreachable(_)), "{e}");
    answer.abort();

    // A non-public address is refused before any connection (outbound policy).
    let strict = keystead_server::kms::registry::BuildContext {
        outbound: keystead_server::kms::net::OutboundPolicy::default(),
        timeout: Duration::from_secs(1),
    };
    let e = KmipKms::from_settings(settings(5696), &strict)
        .err()
        .unwrap();
    assert!(matches!(e, KmsError::Unreachable(m) if m.contains("non-public")));
}
