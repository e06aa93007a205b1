//! TLS and mTLS on the listeners (shared/API.md "Running and bootstrapping"): certificates
//! are made at test time with rcgen, the server runs in-process on 127.0.0.1:0 through
//! `tls::serve_tls`, and a rustls client speaks raw HTTP/1.1 to it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::pki::{Ca, Leaf};
use keystead_server::tls::{TlsError, TlsFiles, load_server_config, serve_tls};
use rcgen::KeyPair;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

// ---- certificates ---------------------------------------------------------------------

/// A fresh directory under the target dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server CA, a server certificate written to disk, and the TLS files naming them.
struct Pki {
    dir: TempDir,
    server_ca: Ca,
    files: TlsFiles,
}

fn pki(client_ca: Option<&Ca>) -> Pki {
    let dir = TempDir::new();
    let server_ca = Ca::new("keystead test server CA");
    let server = server_ca.server();
    let files = TlsFiles {
        cert: dir.write("server.pem", &server.cert),
        key: dir.write("server.key", &server.key),
        client_ca: client_ca.map(|ca| dir.write("client-ca.pem", ca.pem())),
    };
    Pki {
        dir,
        server_ca,
        files,
    }
}

// ---- server and client ----------------------------------------------------------------

fn router() -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "slow ok"
            }),
        )
}

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(files: &TlsFiles) -> Self {
        let config = load_server_config(files).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_tls(listener, router(), config, async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            stop: Some(tx),
            task,
        }
    }
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops")
            .unwrap()
            .unwrap();
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting `ca`, presenting `identity` if given.
fn client(ca: &Ca, identity: Option<&Leaf>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// GET `path` over HTTPS with `Connection: close`; the whole response as text.
async fn https_get(
    connector: &TlsConnector,
    addr: SocketAddr,
    path: &str,
) -> std::io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    let mut tls = connector.connect(name, tcp).await?;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn assert_ok(resp: &std::io::Result<String>, body: &str) {
    match resp {
        Ok(text) => {
            assert!(
                text.starts_with("HTTP/1.1 200"),
                "unexpected response: {text}"
            );
            assert!(text.ends_with(body), "unexpected body: {text}");
        }
        Err(e) => panic!("request failed: {e}"),
    }
}

/// The handshake is refused: the client sees the server's fatal alert, never an answer.
fn assert_refused(resp: &std::io::Result<String>) {
    match resp {
        Err(e) => assert!(e.to_string().contains("alert"), "unexpected error: {e}"),
        Ok(text) => panic!("the server answered a refused client: {text}"),
    }
}

// ---- tests ----------------------------------------------------------------------------

#[tokio::test]
async fn https_health_works_and_plain_http_does_not() {
    let pki = pki(None);
    let server = Server::start(&pki.files).await;

    let resp = https_get(&client(&pki.server_ca, None), server.addr, "/health").await;
    assert_ok(&resp, "ok");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out))
        .await
        .expect("the server closes a plain-HTTP connection");
    assert!(
        !String::from_utf8_lossy(&out).contains("HTTP/1.1"),
        "plain HTTP was answered: {out:?}"
    );

    // A client that does not trust the server's CA refuses it.
    let other = Ca::new("unrelated CA");
    assert!(
        https_get(&client(&other, None), server.addr, "/health")
            .await
            .is_err()
    );

    // The server still serves after the failed handshakes.
    let resp = https_get(&client(&pki.server_ca, None), server.addr, "/health").await;
    assert_ok(&resp, "ok");
    server.stop().await;
}

#[tokio::test]
async fn mtls_requires_a_client_certificate_from_the_ca() {
    let client_ca = Ca::new("keystead test client CA");
    let pki = pki(Some(&client_ca));
    let server = Server::start(&pki.files).await;
    let trusted = client_ca.client("app-1");

    let resp = https_get(&client(&pki.server_ca, None), server.addr, "/health").await;
    assert_refused(&resp);

    let resp = https_get(
        &client(&pki.server_ca, Some(&trusted)),
        server.addr,
        "/health",
    )
    .await;
    assert_ok(&resp, "ok");

    // A certificate from another CA (even with the same subject) is refused.
    let rogue = Ca::new("keystead test client CA").client("app-1");
    let resp = https_get(
        &client(&pki.server_ca, Some(&rogue)),
        server.addr,
        "/health",
    )
    .await;
    assert_refused(&resp);

    // So is a client certificate from the server's CA: the server trusts it for nothing.
    let wrong_ca = pki.server_ca.client("app-1");
    let resp = https_get(
        &client(&pki.server_ca, Some(&wrong_ca)),
        server.addr,
        "/health",
    )
    .await;
    assert_refused(&resp);

    let resp = https_get(
        &client(&pki.server_ca, Some(&trusted)),
        server.addr,
        "/health",
    )
    .await;
    assert_ok(&resp, "ok");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let pki = pki(None);
    let server = Server::start(&pki.files).await;
    let addr = server.addr;
    let connector = client(&pki.server_ca, None);

    let in_flight = tokio::spawn({
        let connector = connector.clone();
        async move { https_get(&connector, addr, "/slow").await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.stop().await;
    assert_ok(&in_flight.await.unwrap(), "slow ok");

    // The listener is closed.
    assert!(https_get(&connector, addr, "/health").await.is_err());
}

fn load_err(files: &TlsFiles) -> String {
    match load_server_config(files) {
        Ok(_) => panic!("loaded a bad TLS configuration: {files:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_tls_files_give_clear_errors() {
    let pki = pki(None);
    let dir = &pki.dir;
    let with = |f: &dyn Fn(&mut TlsFiles)| {
        let mut files = pki.files.clone();
        f(&mut files);
        files
    };

    // The good files load.
    load_server_config(&pki.files).unwrap();

    // Missing key file.
    let missing = dir.0.join("missing.key");
    let files = with(&|f| f.key = missing.clone());
    let msg = load_err(&files);
    assert!(matches!(
        load_server_config(&files),
        Err(TlsError::Read { role: "key", .. })
    ));
    assert!(
        msg.contains("TLS key file") && msg.contains("missing.key"),
        "{msg}"
    );
    assert!(msg.contains("cannot read"), "{msg}");

    // Garbage key file.
    let garbage = dir.write("garbage.key", "this is not a key\n");
    let msg = load_err(&with(&|f| f.key = garbage.clone()));
    assert!(msg.contains(&*garbage.display().to_string()), "{msg}");
    assert!(msg.contains("no private key found"), "{msg}");

    // A certificate where the key should be.
    let msg = load_err(&with(&|f| f.key = pki.files.cert.clone()));
    assert!(
        msg.contains("TLS key file") && msg.contains("no private key found"),
        "{msg}"
    );

    // A PEM key block with broken base64, and one with valid base64 that is no key.
    let broken = dir.write(
        "broken.key",
        "-----BEGIN PRIVATE KEY-----\n!!!not base64!!!\n-----END PRIVATE KEY-----\n",
    );
    let msg = load_err(&with(&|f| f.key = broken.clone()));
    assert!(
        msg.contains("broken.key") && msg.contains("malformed PEM"),
        "{msg}"
    );
    let junk = dir.write(
        "junk.key",
        "-----BEGIN PRIVATE KEY-----\nAAECAwQFBgcICQ==\n-----END PRIVATE KEY-----\n",
    );
    let msg = load_err(&with(&|f| f.key = junk.clone()));
    assert!(
        msg.contains("junk.key") && msg.contains("unusable private key"),
        "{msg}"
    );

    // A truncated key file.
    let key = std::fs::read_to_string(&pki.files.key).unwrap();
    let truncated = dir.write("truncated.key", &key[..key.len() / 2]);
    let msg = load_err(&with(&|f| f.key = truncated.clone()));
    assert!(
        msg.contains("truncated.key") && msg.contains("malformed PEM"),
        "{msg}"
    );

    // A key that is not the certificate's.
    let other = dir.write("other.key", KeyPair::generate().unwrap().serialize_pem());
    let msg = load_err(&with(&|f| f.key = other.clone()));
    assert!(
        msg.contains("other.key") && msg.contains("does not match"),
        "{msg}"
    );

    // Certificate file problems.
    let msg = load_err(&with(&|f| f.cert = dir.0.join("missing.pem")));
    assert!(
        msg.contains("TLS certificate file") && msg.contains("missing.pem"),
        "{msg}"
    );
    let msg = load_err(&with(&|f| f.cert = garbage.clone()));
    assert!(
        msg.contains("TLS certificate file") && msg.contains("no certificate found"),
        "{msg}"
    );
    let bad_der = dir.write(
        "bad-der.pem",
        "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
    );
    let msg = load_err(&with(&|f| f.cert = bad_der.clone()));
    assert!(
        msg.contains("bad-der.pem") && msg.contains("not a valid X.509"),
        "{msg}"
    );

    // Client CA file problems.
    let msg = load_err(&with(&|f| f.client_ca = Some(garbage.clone())));
    assert!(
        msg.contains("TLS client CA file") && msg.contains("no certificate found"),
        "{msg}"
    );
    let msg = load_err(&with(&|f| f.client_ca = Some(bad_der.clone())));
    assert!(
        msg.contains("TLS client CA file") && msg.contains("bad-der.pem"),
        "{msg}"
    );
}

// ---- the binary -----------------------------------------------------------------------

/// Two currently free loopback ports (both held while picking, so they differ).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

fn keystead(dir: &TempDir) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keystead"));
    cmd.env_clear()
        .env("KEYSTEAD_LOG", "warn")
        .arg("--data-dir")
        .arg(dir.0.join("data"))
        .stdin(std::process::Stdio::null());
    cmd
}

#[test]
fn serve_refuses_bad_tls_settings() {
    let pki = pki(None);
    let garbage = pki.dir.write("garbage.key", "garbage");
    let out = keystead(&pki.dir)
        .arg("serve")
        .arg("--tls-cert")
        .arg(&pki.files.cert)
        .arg("--tls-key")
        .arg(&garbage)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("TLS key file") && err.contains("garbage.key"),
        "{err}"
    );

    let out = keystead(&pki.dir)
        .arg("serve")
        .arg("--tls-cert")
        .arg(&pki.files.cert)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert and --tls-key"), "{err}");

    // --dev stays loopback-only even with TLS (refused before anything is bound).
    let out = keystead(&pki.dir)
        .args(["serve", "--dev", "--listen", "0.0.0.0:0"])
        .arg("--tls-cert")
        .arg(&pki.files.cert)
        .arg("--tls-key")
        .arg(&pki.files.key)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dev refuses"), "{err}");
}

/// Kills the child on drop so a failing test leaves no server behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binary serves both listeners over TLS with the cert from the config file, the key
/// from the environment and the client CA from a flag.
#[tokio::test]
async fn binary_serves_both_listeners_over_mtls() {
    let client_ca = Ca::new("keystead test client CA");
    let pki = pki(Some(&client_ca));
    let (api, admin) = free_ports();
    let config = pki.dir.write(
        "keystead.toml",
        format!("tls_cert = {:?}\n", pki.files.cert.display().to_string()),
    );
    let _child = Child(
        keystead(&pki.dir)
            .arg("--config")
            .arg(&config)
            .args(["serve", "--listen", &format!("127.0.0.1:{api}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .arg("--tls-client-ca")
            .arg(pki.files.client_ca.as_ref().unwrap())
            .env("KEYSTEAD_TLS_KEY", &pki.files.key)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let trusted = client(&pki.server_ca, Some(&client_ca.client("ops")));
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], admin));
    let api_addr = SocketAddr::from(([127, 0, 0, 1], api));

    let mut resp = https_get(&trusted, admin_addr, "/health").await;
    for _ in 0..100 {
        if resp.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        resp = https_get(&trusted, admin_addr, "/health").await;
    }
    let text = resp.unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    // The API listener is TLS too and answers over it.
    let text = https_get(&trusted, api_addr, "/v1/keys/wrap")
        .await
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 "), "{text}");

    // Without a client certificate both are refused.
    let anonymous = client(&pki.server_ca, None);
    assert_refused(&https_get(&anonymous, admin_addr, "/health").await);
    assert_refused(&https_get(&anonymous, api_addr, "/v1/keys/wrap").await);
}
