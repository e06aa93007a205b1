//! `keystead audit verify` over a captured stream: an intact stream (with re-deliveries)
//! passes; a deleted, an edited and a reordered event, and a checkpoint by an untrusted key,
//! are each reported with exit status 1.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use keystead_server::audit::{AuditEvent, AuditSink, Auditor, DeliveryOptions, SpoolConfig};
use serde_json::{Value, json};

#[path = "common/collector.rs"]
mod collector;
use collector::{Collector, One};

fn tmp() -> PathBuf {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    let d = std::env::temp_dir().join(format!("keystead-verify-{}", hex::encode(b)));
    std::fs::create_dir_all(&d).unwrap();
    d
}

const KEY: [u8; 32] = [5; 32];

/// 40 events of two tenants through the real spool, as a SIEM received them.
async fn captured(dir: &std::path::Path) -> Vec<String> {
    let mut cfg = SpoolConfig::new(dir.join("spool"), "es-v".into());
    cfg.checkpoint_events = 8;
    let a = Auditor::open(cfg, SigningKey::from_bytes(&KEY)).unwrap();
    let sink = Arc::new(Collector::default());
    a.start_delivery(
        Arc::new(One(sink.clone())),
        DeliveryOptions {
            rescan: Duration::from_millis(20),
            ..DeliveryOptions::default()
        },
    );
    for i in 0..40 {
        let tenant = if i % 3 == 0 { "beta" } else { "acme" };
        a.record(AuditEvent {
            action: "unwrap".into(),
            code: None,
            count: None,
            detail: None,
            es_instance: "es-v".into(),
            event: None,
            failures: None,
            id: format!("ev-{i}"),
            kms: None,
            metadata: json!({ "requesting_id": format!("user-{i}") }),
            outcome: "success",
            prev_hash: String::new(),
            principal: "svc".into(),
            seq: 0,
            tenant_id: tenant.into(),
            time: "2026-11-22T12:00:00Z".into(),
        })
        .await
        .unwrap();
    }
    a.shutdown(Duration::from_secs(5)).await;
    let lines = sink.lines.lock().unwrap().clone();
    assert!(lines.len() > 40, "events and checkpoints: {}", lines.len());
    lines
}

fn verify(dir: &std::path::Path, lines: &[String], extra: &[&str]) -> (bool, String) {
    let path = dir.join(format!("stream-{}.jsonl", rand()));
    std::fs::write(&path, lines.join("\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keystead"))
        .arg("audit")
        .arg("verify")
        .arg(&path)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn rand() -> String {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

fn pinned() -> String {
    hex::encode(SigningKey::from_bytes(&KEY).verifying_key().as_bytes())
}

fn index_of(lines: &[String], id: &str) -> usize {
    lines
        .iter()
        .position(|l| serde_json::from_str::<Value>(l).unwrap()["id"] == id)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intact_stream_with_redeliveries_verifies() {
    let dir = tmp();
    let mut lines = captured(&dir).await;
    // At-least-once: a batch delivered twice, and a SIEM that re-serialized one event
    // with its keys in another order and spaces.
    let again: Vec<String> = lines[5..9].to_vec();
    lines.splice(12..12, again);
    let v: Value = serde_json::from_str(&lines[3]).unwrap();
    let mut keys: Vec<(String, Value)> = v.as_object().unwrap().clone().into_iter().collect();
    keys.reverse();
    let pretty = format!(
        "{{ {} }}",
        keys.iter()
            .map(|(k, v)| format!("{}: {}", json!(k), v))
            .collect::<Vec<_>>()
            .join(", ")
    );
    lines[3] = pretty;
    let (ok, out) = verify(&dir, &lines, &["--trusted-key", &pinned()]);
    assert!(ok, "{out}");
    assert!(
        out.contains("4 duplicate deliveries") && out.ends_with("OK\n"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_event_is_a_gap() {
    let dir = tmp();
    let mut lines = captured(&dir).await;
    let i = index_of(&lines, "ev-10");
    lines.remove(i);
    let (ok, out) = verify(&dir, &lines, &["--trusted-key", &pinned()]);
    assert!(!ok, "{out}");
    assert!(out.contains("GAP (\"acme\", \"es-v\")"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_event_is_reported() {
    let dir = tmp();
    let mut lines = captured(&dir).await;
    let i = index_of(&lines, "ev-11");
    lines[i] = lines[i].replace("user-11", "user-99");
    let (ok, out) = verify(&dir, &lines, &["--trusted-key", &pinned()]);
    assert!(!ok, "{out}");
    assert!(out.contains("EDITED (\"acme\", \"es-v\")"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_events_are_reported() {
    let dir = tmp();
    let mut lines = captured(&dir).await;
    let (a, b) = (index_of(&lines, "ev-13"), index_of(&lines, "ev-14"));
    lines.swap(a, b);
    let (ok, out) = verify(&dir, &lines, &["--trusted-key", &pinned()]);
    assert!(!ok, "{out}");
    assert!(out.contains("REORDERED (\"acme\", \"es-v\")"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_by_another_key_are_refused() {
    let dir = tmp();
    let lines = captured(&dir).await;
    let other = hex::encode(SigningKey::from_bytes(&[6; 32]).verifying_key().as_bytes());
    let (ok, out) = verify(&dir, &lines, &["--trusted-key", &other]);
    assert!(!ok, "{out}");
    assert!(out.contains("not a trusted key"), "{out}");
    // A forged checkpoint signature is caught even without a pinned key.
    let mut forged = lines.clone();
    let i = forged
        .iter()
        .position(|l| l.contains("\"action\":\"checkpoint\""))
        .unwrap();
    let mut v: Value = serde_json::from_str(&forged[i]).unwrap();
    let sig = v["detail"]["signature"].as_str().unwrap().to_owned();
    let flipped = format!(
        "{}{}",
        if sig.starts_with('0') { "1" } else { "0" },
        &sig[1..]
    );
    v["detail"]["signature"] = json!(flipped);
    forged[i] = v.to_string();
    let (ok, out) = verify(&dir, &forged, &[]);
    assert!(!ok && out.contains("signature does not verify"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
