//! The behaviour every KMS adapter must share at the API ("integrate once, many KMS"):
//! one suite, run by each provider's test file against that provider's real peer (or
//! protocol double) on 127.0.0.1.
//!
//! A provider test starts its peer, implements [`Peer`] for it and calls [`run`]. The
//! suite checks, through the ES's HTTP API and at the adapter level:
//! 1. wrap → unwrap round trips in remote-key and key-leasing mode, with audit events that
//!    name the provider and config;
//! 2. `generate`, `wrap` and `unwrap` at the adapter; the context and the tenant are bound
//!    (another context, another tenant or a changed ciphertext does not unwrap, and is not
//!    reported as an outage);
//! 3. remote mode with the peer stopped: `503 kms_unreachable` quickly (never a hung
//!    request), then the circuit breaker answers at once with `Retry-After`;
//! 4. leasing mode with the peer stopped: requests keep being served from the lease until
//!    it expires, then `503 lease_expired`;
//! 5. the peer back: both modes serve again.
//!
//! Denial (a revoked, disabled or deleted key, a credential without permission) differs per
//! provider in how it is arranged; provider tests arrange it and assert with
//! [`assert_denied`].

use std::time::{Duration, Instant};

use keystead_server::kms::registry;
use keystead_server::kms::{KeyRef, KmsError};
use keystead_server::store::TenantMode;
use serde_json::{Value, json};

use super::{Harness, md};

/// An upper bound for "answers quickly, not a hung request" (the harness's KMS timeout is
/// 200 ms with 2 attempts; this only catches hangs).
pub const QUICK: Duration = Duration::from_secs(10);

/// A KMS peer the suite can stop and start again.
#[allow(async_fn_in_trait)]
pub trait Peer {
    /// Makes the peer unavailable (process stopped, port closed, token removed).
    async fn stop(&mut self);
    /// Makes it available again, with the same keys.
    async fn start(&mut self);
}

/// The tenants a run creates: `<provider>-remote` and `<provider>-lease`, each with the
/// config `<provider>-1` as primary.
pub struct Tenants {
    /// Remote-key mode tenant.
    pub remote: String,
    /// Key-leasing mode tenant.
    pub lease: String,
    /// The config id.
    pub config: String,
    /// An all-tenants service key.
    pub key: String,
}

/// Creates the two tenants on `provider` with `settings`.
pub fn tenants(h: &Harness, provider: &str, settings: &Value) -> Tenants {
    let config = format!("{provider}-1");
    let remote = format!("{provider}-remote");
    let lease = format!("{provider}-lease");
    h.kms_tenant(&remote, TenantMode::Remote, &config, provider, settings);
    h.kms_tenant(&lease, TenantMode::Leasing, &config, provider, settings);
    let (_, key) = h.key(&format!("conformance-{provider}"), None);
    Tenants {
        remote,
        lease,
        config,
        key,
    }
}

/// Runs the whole suite. `settings` are the provider's settings for a usable key.
pub async fn run(h: &Harness, provider: &str, settings: &Value, peer: &mut impl Peer) {
    let t = tenants(h, provider, settings);

    // 1. Round trips through the API, both modes; audit events name provider and config.
    let (dek_r, edek_r) = h.wrap(&t.key, &t.remote).await;
    assert_eq!(h.unwrap(&t.key, &t.remote, &edek_r).await, dek_r);
    let (dek_l, edek_l) = h.wrap(&t.key, &t.lease).await;
    assert_eq!(h.unwrap(&t.key, &t.lease, &edek_l).await, dek_l);
    let events = h.events();
    for tenant in [&t.remote, &t.lease] {
        let ev = events
            .iter()
            .rev()
            .find(|e| &e.tenant_id == tenant && e.action == "wrap")
            .expect("a wrap event");
        let kms = ev.kms.as_ref().expect("the event names the KMS");
        assert_eq!(
            (kms.provider.as_str(), kms.config_id.as_str()),
            (provider, t.config.as_str())
        );
    }
    // Rekey under the same config works too (unwrap + wrap through the provider).
    let rekeyed = h.rekey(&t.key, &t.remote, &edek_r).await;
    assert_eq!(h.unwrap(&t.key, &t.remote, &rekeyed).await, dek_r);

    // 2. The adapter itself: generate, wrap, unwrap, binding.
    adapter_checks(h, provider, settings, &t).await;

    // 3. Remote mode, peer stopped: kms_unreachable quickly, then the breaker.
    peer.stop().await;
    for i in 0..6 {
        let start = Instant::now();
        let r = tokio::time::timeout(QUICK, h.unwrap_req(&t.key, &t.remote, &edek_r))
            .await
            .expect("a remote unwrap hung while the KMS was down");
        assert!(
            matches!(
                (r.status, r.json()["code"].as_str()),
                (503, Some("kms_unreachable")) | (504, Some("kms_timeout"))
            ),
            "call {i} with the KMS down: {} {}",
            r.status,
            r.text
        );
        if r.status == 503 {
            assert!(r.header("retry-after").is_some(), "503 without Retry-After");
        }
        eprintln!(
            "{provider}: remote unwrap with the KMS down answered {} in {:?}",
            r.status,
            start.elapsed()
        );
    }

    // 4. Leasing mode, peer stopped: served from the lease until it expires.
    assert_eq!(h.unwrap(&t.key, &t.lease, &edek_l).await, dek_l);
    let (dek_l2, edek_l2) = h.wrap(&t.key, &t.lease).await;
    assert_eq!(h.unwrap(&t.key, &t.lease, &edek_l2).await, dek_l2);
    h.clock.advance(Duration::from_secs(3601));
    let r = tokio::time::timeout(QUICK, h.unwrap_req(&t.key, &t.lease, &edek_l))
        .await
        .expect("a leasing unwrap hung after the lease expired");
    h.expect_error(&r, 503, "lease_expired");

    // 5. The peer is back: both modes serve again (after the breaker's cool-down).
    peer.start().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = h.unwrap_req(&t.key, &t.remote, &edek_r).await;
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the KMS came back but remote unwraps still fail: {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(h.unwrap(&t.key, &t.lease, &edek_l2).await, dek_l2);
    let (dek, edek) = h.wrap(&t.key, &t.lease).await;
    assert_eq!(h.unwrap(&t.key, &t.lease, &edek).await, dek);
}

/// Generate / wrap / unwrap at the adapter, and what must not unwrap.
pub async fn adapter_checks(h: &Harness, provider: &str, settings: &Value, t: &Tenants) {
    let kms = registry::build(provider, settings.clone(), &h.build_context(), &h.builtin)
        .expect("build the adapter");
    assert_eq!(kms.provider(), provider);
    let key = KeyRef {
        tenant: t.remote.clone(),
        config: t.config.clone(),
        version: None,
    };
    let version = kms.describe(&key).await.expect("describe");
    assert!(version >= 1);

    let g = kms.generate(&key, b"context-a").await.expect("generate");
    assert_eq!(g.plaintext.len(), 32);
    let back = kms
        .unwrap(&key, &g.ciphertext, b"context-a")
        .await
        .expect("unwrap generated");
    assert_eq!(*back, *g.plaintext);

    let secret = [0x5au8; 32];
    let w = kms.wrap(&key, &secret, b"context-a").await.expect("wrap");
    assert!(
        !w.ciphertext.windows(32).any(|x| x == secret),
        "the ciphertext contains the plaintext"
    );
    let back = kms
        .unwrap(&key, &w.ciphertext, b"context-a")
        .await
        .expect("unwrap");
    assert_eq!(&back[..], &secret[..]);
    let versioned = KeyRef {
        version: Some(w.version),
        ..key.clone()
    };
    let back = kms
        .unwrap(&versioned, &w.ciphertext, b"context-a")
        .await
        .expect("unwrap with the version wrap reported");
    assert_eq!(&back[..], &secret[..]);

    // Bound: another context, another tenant, another config, a changed ciphertext.
    let other_tenant = KeyRef {
        tenant: t.lease.clone(),
        ..key.clone()
    };
    let other_config = KeyRef {
        config: format!("{}-other", t.config),
        ..key.clone()
    };
    let mut flipped = w.ciphertext.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let cases: [(&str, &KeyRef, &[u8], &[u8]); 4] = [
        ("another context", &key, &w.ciphertext, b"context-b"),
        ("another tenant", &other_tenant, &w.ciphertext, b"context-a"),
        ("another config", &other_config, &w.ciphertext, b"context-a"),
        ("a changed ciphertext", &key, &flipped, b"context-a"),
    ];
    for (what, k, ct, ctx) in cases {
        match kms.unwrap(k, ct, ctx).await {
            Ok(_) => panic!("{provider}: unwrap with {what} succeeded"),
            Err(
                e @ (KmsError::Unreachable(_) | KmsError::Timeout | KmsError::CircuitOpen { .. }),
            ) => {
                panic!("{provider}: unwrap with {what} reported an outage: {e}")
            }
            Err(e) => eprintln!("{provider}: unwrap with {what}: {e}"),
        }
    }
}

/// Asserts that the tenant's KMS now refuses: remote unwrap and wrap answer
/// `403 kms_denied`, and the failure is an audit event.
pub async fn assert_denied(h: &Harness, key: &str, tenant: &str, edek: &str) {
    let r = h.unwrap_req(key, tenant, edek).await;
    h.expect_error(&r, 403, "kms_denied");
    let r = h
        .post(
            "/v1/keys/wrap",
            Some(key),
            &json!({ "tenant_id": tenant, "metadata": md() }),
        )
        .await;
    h.expect_error(&r, 403, "kms_denied");
    let ev = h
        .events()
        .into_iter()
        .rev()
        .find(|e| e.tenant_id == tenant && e.action == "unwrap")
        .expect("an unwrap event");
    assert_eq!(
        (ev.outcome, ev.code.as_deref()),
        ("failure", Some("kms_denied"))
    );
}

/// Lets a test wait for a TCP port to accept connections (a peer starting up).
pub async fn wait_for_port(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "nothing listens on 127.0.0.1:{port} after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; a peer binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The project's Python venv (created by scripts/setup-venv.sh, which `.ci/run` runs):
/// the path of one of its executables. Panics with the command to run if it is missing,
/// so a machine without the peers fails loudly instead of skipping.
pub fn venv_bin(name: &str) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = std::env::var_os("KEYSTEAD_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join(".venv"));
    let bin = venv.join("bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `bash scripts/setup-venv.sh` (or set KEYSTEAD_VENV)",
        bin.display()
    );
    bin
}
