//! TLS for both listeners (shared/API.md "Running and bootstrapping"): rustls with the
//! `ring` provider, a PEM certificate chain and key, and an optional client-certificate CA
//! for mTLS.
//!
//! [`load_server_config`] turns the files into a [`ServerConfig`] (every failure names the
//! file and what is wrong with it); [`serve_tls`] is the accept loop: each TCP connection
//! gets its own task that does the handshake under [`HANDSHAKE_TIMEOUT`] and then serves
//! HTTP/1.1 with hyper. On shutdown the loop stops accepting, open connections finish their
//! in-flight request and close, and whatever is still open after [`DRAIN_TIMEOUT`] is cut.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

/// How long a client has to complete the TLS handshake after connecting.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections may take to finish after shutdown begins.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS files named by `--tls-cert`, `--tls-key` and `--tls-client-ca`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, end-entity certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1), unencrypted.
    pub key: PathBuf,
    /// PEM CA certificate(s): when set, clients must present a certificate chaining to one.
    pub client_ca: Option<PathBuf>,
}

/// Why the TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("TLS {role} file {}: cannot read: {source}", path.display())]
    Read {
        /// Which file: "certificate", "key" or "client CA".
        role: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file was read but its contents are unusable.
    #[error("TLS {role} file {}: {reason}", path.display())]
    Invalid {
        /// Which file: "certificate", "key" or "client CA".
        role: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The key is not the private key of the certificate.
    #[error(
        "TLS key file {} does not match the certificate in {}: the key is not the certificate's private key",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// rustls refused the configuration for another reason.
    #[error("TLS configuration: {0}")]
    Config(String),
}

const CERT: &str = "certificate";
const KEY: &str = "key";
const CLIENT_CA: &str = "client CA";

fn invalid(role: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        role,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(role: &'static str, path: &Path) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|source| TlsError::Read {
            role,
            path: path.to_path_buf(),
            source,
        })
}

/// A PEM syntax error in words (the library's own text prints raw bytes).
fn pem_reason(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "malformed PEM: a BEGIN line has no matching END line (truncated file?)".to_owned()
        }
        pem::Error::IllegalSectionStart { .. } => "malformed PEM: invalid BEGIN line".to_owned(),
        pem::Error::Base64Decode(_) => {
            "malformed PEM: invalid base64 between BEGIN and END".to_owned()
        }
        other => format!("malformed PEM: {other}"),
    }
}

/// Reads every `CERTIFICATE` block of a PEM file; at least one is required.
fn read_certs(role: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(role, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(role, path, pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(invalid(
            role,
            path,
            "no certificate found (expected PEM '-----BEGIN CERTIFICATE-----' blocks)",
        ));
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(KEY, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => invalid(
            KEY,
            path,
            "no private key found (expected an unencrypted PEM 'PRIVATE KEY', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY' block)",
        ),
        e => invalid(KEY, path, pem_reason(&e)),
    })
}

/// Loads the certificate chain, key and optional client CA into a server configuration:
/// TLS 1.2 and 1.3 with the `ring` provider's safe defaults, ALPN `http/1.1`, and client
/// certificates required (and verified against the CA) when `client_ca` is set.
pub fn load_server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(CERT, &files.cert)?;
    let key = signing_key(&provider, &files.key)?;
    let certified = CertifiedKey::new(certs, key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                cert: files.cert.clone(),
                key: files.key.clone(),
            });
        }
        Err(e) => {
            return Err(invalid(
                CERT,
                &files.cert,
                format!("the first certificate is not a valid X.509 certificate: {e}"),
            ));
        }
    }

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = client_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| invalid(CLIENT_CA, ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn signing_key(
    provider: &CryptoProvider,
    path: &Path,
) -> Result<Arc<dyn rustls::sign::SigningKey>, TlsError> {
    let der = read_key(path)?;
    provider.key_provider.load_private_key(der).map_err(|e| {
        invalid(
            KEY,
            path,
            format!("unusable private key (RSA, ECDSA P-256/P-384 or Ed25519 expected): {e}"),
        )
    })
}

fn client_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in read_certs(CLIENT_CA, path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            invalid(
                CLIENT_CA,
                path,
                format!("certificate #{} is not a usable CA certificate: {e}", i + 1),
            )
        })?;
    }
    Ok(roots)
}

/// Serves `router` on `listener`: over TLS when `tls` is set, plain HTTP otherwise. Both
/// stop accepting when `shutdown` completes and let open requests finish.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<ServerConfig>>,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    match tls {
        Some(config) => serve_tls(listener, router, config, shutdown).await,
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// Serves `router` over TLS on `listener` until `shutdown` completes, then stops accepting,
/// lets open connections finish (a connection idle between requests closes at once) and
/// returns once they have, or after [`DRAIN_TIMEOUT`] with the rest cut off.
///
/// A failed or slow handshake (plain HTTP, a missing or untrusted client certificate, more
/// than [`HANDSHAKE_TIMEOUT`]) closes only that connection.
pub async fn serve_tls<F>(
    listener: TcpListener,
    router: Router,
    config: Arc<ServerConfig>,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    connections.spawn(connection(
                        tcp,
                        peer,
                        acceptor.clone(),
                        router.clone(),
                        stop_rx.clone(),
                    ));
                }
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    // e.g. out of file descriptors: back off instead of spinning.
                    tracing::error!(error = %e, "accept failed; retrying in 1 s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = &mut shutdown => break,
                    }
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "connection task failed");
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "drain timeout: closing the remaining connections"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Completes once shutdown has begun (or the server is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => match r {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = stopped(&mut stop) => return,
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(router));
    let mut conn = pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection error");
    }
}
