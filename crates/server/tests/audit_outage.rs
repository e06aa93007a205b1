//! The audit pipeline's promise, end to end with the real binary: 100k key operations
//! (successful wraps, failed unwraps of a tampered EDEK, unwraps denied by the key's
//! operation scope) while the tenant's webhook SIEM is down for part of the run, the
//! server killed with SIGKILL mid-run and restarted, then the SIEM back. Every operation
//! that got an answer has its event delivered at least once (lost must be 0); duplicates
//! are counted; `keystead audit verify` over the delivered stream finds no gap.
//!
//! `OUTAGE_OPS` changes the number of operations (default 100000).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_keystead");

#[derive(Default)]
struct Siem {
    down: AtomicBool,
    lines: Mutex<Vec<String>>,
    by_request: Mutex<HashMap<String, usize>>,
}

async fn receive(State(siem): State<Arc<Siem>>, body: axum::body::Bytes) -> StatusCode {
    if siem.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let Ok(Value::Array(events)) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut lines = siem.lines.lock().unwrap();
    let mut by = siem.by_request.lock().unwrap();
    for e in events {
        if let Some(r) = e["metadata"]["request_id"].as_str() {
            *by.entry(r.to_owned()).or_default() += 1;
        }
        lines.push(e.to_string());
    }
    StatusCode::OK
}

fn cli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(dir.join("keystead.toml"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "keystead {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server process, killed when dropped (also when an assertion fails).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, port: u16) -> Server {
    let child = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .arg("--config")
        .arg(dir.join("keystead.toml"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--rate-limit-tenant", "0", "--rate-limit-key", "0"])
        .env("KEYSTEAD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("server.log"))
                .unwrap(),
        ))
        .spawn()
        .unwrap();
    Server(child)
}

async fn wait_up(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Ops {
    url: String,
    key: String,
    no_unwrap_key: String,
    bad_edek: String,
}

/// Runs operation `i`; true when the server answered (any status).
async fn op(client: &reqwest::Client, ops: &Ops, i: usize) -> bool {
    let rid = format!("op-{i}");
    let md = json!({ "requesting_id": "outage-test", "request_id": rid });
    let (path, key, body) = match i % 10 {
        0 => (
            "unwrap",
            &ops.no_unwrap_key,
            json!({ "tenant_id": "acme", "edek": ops.bad_edek, "metadata": md }),
        ),
        1 => (
            "unwrap",
            &ops.key,
            json!({ "tenant_id": "acme", "edek": ops.bad_edek, "metadata": md }),
        ),
        _ => (
            "wrap",
            &ops.key,
            json!({ "tenant_id": "acme", "metadata": md }),
        ),
    };
    let r = client
        .post(format!("{}/v1/keys/{path}", ops.url))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await;
    let Ok(r) = r else { return false };
    let status = r.status().as_u16();
    let expected = match i % 10 {
        0 => 403,
        1 => 422,
        _ => 200,
    };
    assert_eq!(status, expected, "op {i}: {:?}", r.text().await);
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_through_siem_outage_and_sigkill() {
    let total: usize = std::env::var("OUTAGE_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "keystead-outage-{}-{}",
        std::process::id(),
        hex::encode(keystead_server::util::random_bytes::<4>())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("keystead.toml"),
        "[outbound]\nallow = [\"127.0.0.1/32\"]\nallow_plain_http = true\n",
    )
    .unwrap();

    // The tenant's SIEM: an HTTP receiver that can be taken down.
    let siem = Arc::new(Siem::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let siem_port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(siem.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    cli(&dir, &["tenant", "create", "acme", "--mode", "leasing"]);
    let key = cli(&dir, &["service-key", "create", "app", "--tenant", "acme"]);
    let no_unwrap_key = cli(
        &dir,
        &[
            "service-key",
            "create",
            "wrap-only",
            "--tenant",
            "acme",
            "--ops",
            "wrap",
        ],
    );
    let hook = dir.join("hook.json");
    std::fs::write(
        &hook,
        json!({ "kind": "webhook", "url": format!("http://127.0.0.1:{siem_port}/hook"), "token": "siem-token" })
            .to_string(),
    )
    .unwrap();
    cli(
        &dir,
        &[
            "tenant",
            "add-sink",
            "acme",
            "siem",
            "--settings",
            hook.to_str().unwrap(),
        ],
    );
    let pinned = cli(&dir, &["audit", "public-key"]);
    let pinned = pinned.split_whitespace().nth(1).unwrap().to_owned();

    let port = free_port();
    let mut server = start(&dir, port);
    wait_up(port).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let edek = {
        let r: Value = client
            .post(format!("{url}/v1/keys/wrap"))
            .bearer_auth(&key)
            .json(&json!({ "tenant_id": "acme", "metadata": { "requesting_id": "setup" } }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut raw = b64.decode(r["edek"].as_str().unwrap()).unwrap();
        let n = raw.len();
        raw[n - 5] ^= 1; // tampered ciphertext: a failed unwrap, audited
        b64.encode(raw)
    };
    let ops = Arc::new(Ops {
        url,
        key,
        no_unwrap_key,
        bad_edek: edek,
    });

    let next = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(Mutex::new(HashSet::<usize>::new()));
    let unanswered = Arc::new(AtomicUsize::new(0));
    let (down_at, up_at, kill_at) = (total / 5, total * 7 / 10, total * 3 / 5);
    let killed = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (client, ops, next, answered, unanswered, siem, killed) = (
            client.clone(),
            ops.clone(),
            next.clone(),
            answered.clone(),
            unanswered.clone(),
            siem.clone(),
            killed.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= total {
                    return;
                }
                if i == down_at {
                    siem.down.store(true, Ordering::SeqCst);
                }
                if i == up_at {
                    siem.down.store(false, Ordering::SeqCst);
                }
                // After the kill, wait for the restarted server rather than burn ops.
                while killed.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if op(&client, &ops, i).await {
                    answered.lock().unwrap().insert(i);
                } else {
                    unanswered.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    // SIGKILL mid-run, with requests in flight.
    while next.load(Ordering::SeqCst) < kill_at {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    killed.store(true, Ordering::SeqCst);
    eprintln!(
        "killed the server after ~{kill_at} operations ({:?})",
        started.elapsed()
    );
    server = start(&dir, port);
    wait_up(port).await;
    killed.store(false, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let ran = started.elapsed();

    // Wait for delivery to catch up.
    let answered = answered.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let missing = {
            let by = siem.by_request.lock().unwrap();
            answered
                .iter()
                .filter(|i| !by.contains_key(&format!("op-{i}")))
                .count()
        };
        if missing == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A graceful stop signs a final checkpoint and flushes it.
    sigterm(&server.0);
    let _ = server.0.wait();

    let by = siem.by_request.lock().unwrap().clone();
    let lines = siem.lines.lock().unwrap().clone();
    let lost: Vec<usize> = answered
        .iter()
        .copied()
        .filter(|i| !by.contains_key(&format!("op-{i}")))
        .collect();
    let unique_ids: HashSet<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let duplicates = lines.len() - unique_ids.len();
    let stream = dir.join("delivered.jsonl");
    std::fs::write(&stream, lines.join("\n")).unwrap();
    let verify = Command::new(BIN)
        .args(["audit", "verify"])
        .arg(&stream)
        .args(["--trusted-key", &pinned])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stdout);
    println!(
        "operations {total} in {ran:?}: answered {}, unanswered (in flight at the kill) {}; events delivered {} ({} unique), lost {}, duplicates {duplicates}",
        answered.len(),
        unanswered.load(Ordering::SeqCst),
        lines.len(),
        unique_ids.len(),
        lost.len()
    );
    println!("keystead audit verify:\n{report}");
    assert!(
        lost.is_empty(),
        "lost events for operations {:?}",
        &lost[..lost.len().min(20)]
    );
    assert!(verify.status.success(), "verify failed:\n{report}");
    assert!(!report.contains("GAP"), "{report}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Graceful stop (SIGTERM) through the `kill` command: no libc dependency in tests.
fn sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}
