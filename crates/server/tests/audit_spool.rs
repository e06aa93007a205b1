//! The audit spool and delivery without HTTP: durability across restarts, torn and corrupt
//! segments, the size bound (fail closed / drop oldest), retries while a sink is down, and
//! `chain::verify` over what a sink received.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use keystead_server::audit::chain::{self, Finding};
use keystead_server::audit::{
    AuditEvent, AuditSink, Auditor, DeliveryOptions, FullPolicy, SpoolConfig,
};
use serde_json::json;

#[path = "common/collector.rs"]
mod collector;
use collector::{Collector, One};

fn tmp() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "keystead-spool-{}-{}",
        std::process::id(),
        hex::encode(rand_bytes())
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn rand_bytes() -> [u8; 6] {
    let mut b = [0u8; 6];
    getrandom::fill(&mut b).unwrap();
    b
}

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn cfg(dir: &Path) -> SpoolConfig {
    let mut c = SpoolConfig::new(dir.join("spool"), "es-test".into());
    c.checkpoint_events = 10;
    c.segment_bytes = 4096;
    c
}

fn fast() -> DeliveryOptions {
    DeliveryOptions {
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        rescan: Duration::from_millis(50),
        ..DeliveryOptions::default()
    }
}

fn event(tenant: &str, n: usize) -> AuditEvent {
    AuditEvent {
        action: "wrap".into(),
        code: None,
        count: None,
        detail: None,
        es_instance: "es-test".into(),
        event: None,
        failures: None,
        id: format!("{tenant}-{n}-{}", hex::encode(rand_bytes())),
        kms: None,
        metadata: json!({"requesting_id": format!("user-{n}"), "custom": {"q": "\"]\\ é"}}),
        outcome: "success",
        prev_hash: String::new(),
        principal: "key-1".into(),
        seq: 0,
        tenant_id: tenant.into(),
        time: "2026-11-22T12:00:00Z".into(),
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..400 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn ids(lines: &[String], action: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["action"] == action).then(|| v["id"].as_str().unwrap().to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_restart_and_verify_with_checkpoints() {
    let dir = tmp();
    let sink = Arc::new(Collector::default());
    sink.down.store(true, Ordering::SeqCst);
    let mut sent = Vec::new();
    {
        let a = Auditor::open(cfg(&dir), key()).unwrap();
        a.start_delivery(Arc::new(One(sink.clone())), fast());
        for i in 0..60 {
            let ev = event("acme", i);
            sent.push(ev.id.clone());
            a.record(ev).await.unwrap();
        }
        // Sink down: nothing delivered; stop without delivering.
        a.shutdown(Duration::from_millis(100)).await;
    }
    assert!(sink.lines.lock().unwrap().is_empty());
    sink.down.store(false, Ordering::SeqCst);
    let a = Auditor::open(cfg(&dir), key()).unwrap();
    a.start_delivery(Arc::new(One(sink.clone())), fast());
    for i in 60..70 {
        let ev = event("acme", i);
        sent.push(ev.id.clone());
        a.record(ev).await.unwrap();
    }
    wait_for("all events", || {
        let got = ids(&sink.lines.lock().unwrap(), "wrap");
        sent.iter().all(|id| got.contains(id))
    })
    .await;
    a.shutdown(Duration::from_secs(2)).await;
    let lines = sink.lines.lock().unwrap().clone();
    let pk = chain::parse_public_key(&hex::encode(key().verifying_key().as_bytes())).unwrap();
    let report = chain::verify(lines.iter().map(String::as_str), &[pk]);
    assert!(report.ok(), "{}", report.render());
    assert!(report.checkpoints >= 7, "{}", report.render());
    let (last, covered) = report.chains[&("acme".to_owned(), "es-test".to_owned())];
    assert_eq!(
        last,
        covered,
        "the final checkpoint covers everything: {}",
        report.render()
    );
    // Several segments were written and the delivered ones deleted.
    let segs = std::fs::read_dir(dir.join("spool/acme"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "seg")
        })
        .count();
    assert_eq!(segs, 1, "delivered closed segments are deleted");
    // A key the tenant did not pin is refused.
    let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
    let r = chain::verify(lines.iter().map(String::as_str), &[other]);
    assert!(
        !r.ok()
            && r.findings
                .iter()
                .any(|f| matches!(f, Finding::BadCheckpoint { .. }))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

async fn fill(dir: &Path, n: usize) -> Vec<String> {
    let a = Auditor::open(cfg(dir), key()).unwrap();
    let mut sent = Vec::new();
    for i in 0..n {
        let ev = event("acme", i);
        sent.push(ev.id.clone());
        a.record(ev).await.unwrap();
    }
    a.shutdown(Duration::from_millis(10)).await;
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_set_aside_and_the_server_starts() {
    let dir = tmp();
    let sent = fill(&dir, 30).await;
    let segs = segments(&dir.join("spool/acme"));
    let last = segs.last().unwrap();
    // A crash in the middle of a write: half a record at the end.
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    std::io::Write::write_all(&mut f, &[0x50, 0, 0, 0, 9, 9, 9]).unwrap();
    drop(f);
    let sink = Arc::new(Collector::default());
    let a = Auditor::open(cfg(&dir), key()).unwrap();
    a.start_delivery(Arc::new(One(sink.clone())), fast());
    a.record(event("acme", 99)).await.unwrap();
    wait_for("intact events", || {
        let got = ids(&sink.lines.lock().unwrap(), "wrap");
        sent.iter().all(|id| got.contains(id)) && got.len() == 31
    })
    .await;
    a.shutdown(Duration::from_secs(2)).await;
    let lines = sink.lines.lock().unwrap().clone();
    assert_eq!(
        ids(&lines, "audit_spool_damaged").len(),
        1,
        "the damage is announced"
    );
    let report = chain::verify(lines.iter().map(String::as_str), &[]);
    assert!(
        report.ok(),
        "a torn, never-acknowledged tail leaves no gap: {}",
        report.render()
    );
    assert!(
        std::fs::read_dir(dir.join("spool/acme")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("damaged"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The active segment is zero-filled ahead of the write position; a crash leaves that
/// space behind. It is free space, not damage, unless a torn record sits in front of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_filled_space_after_a_crash_is_not_damage_but_a_torn_record_before_it_is() {
    for torn in [false, true] {
        let dir = tmp();
        let sent = fill(&dir, 30).await;
        let segs = segments(&dir.join("spool/acme"));
        let last = segs.last().unwrap().clone();
        let intact = std::fs::metadata(&last).unwrap().len();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap();
        if torn {
            std::io::Write::write_all(&mut f, &[0x50, 0, 0, 0, 9, 9, 9]).unwrap();
        }
        std::io::Write::write_all(&mut f, &[0u8; 5000]).unwrap();
        drop(f);
        let sink = Arc::new(Collector::default());
        let a = Auditor::open(cfg(&dir), key()).unwrap();
        a.start_delivery(Arc::new(One(sink.clone())), fast());
        a.record(event("acme", 99)).await.unwrap();
        wait_for("intact events", || {
            let got = ids(&sink.lines.lock().unwrap(), "wrap");
            sent.iter().all(|id| got.contains(id)) && got.len() == 31
        })
        .await;
        a.shutdown(Duration::from_secs(2)).await;
        let lines = sink.lines.lock().unwrap().clone();
        assert_eq!(
            ids(&lines, "audit_spool_damaged").len(),
            usize::from(torn),
            "torn = {torn}"
        );
        let report = chain::verify(lines.iter().map(String::as_str), &[]);
        assert!(report.ok(), "torn = {torn}: {}", report.render());
        let set_aside = std::fs::read_dir(dir.join("spool/acme"))
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains("damaged"));
        assert_eq!(set_aside, torn, "torn = {torn}");
        // Recovery trimmed the zeros (unless delivery already collected the segment).
        if let Ok(m) = std::fs::metadata(&last) {
            assert!(m.len() < intact + 5000, "torn = {torn}: {} bytes", m.len());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_segment_keeps_intact_events_and_announces_the_loss() {
    let dir = tmp();
    let sent = fill(&dir, 80).await;
    let segs = segments(&dir.join("spool/acme"));
    assert!(segs.len() >= 3, "several segments: {segs:?}");
    // Bit rot in the middle of the first segment.
    let mut data = std::fs::read(&segs[0]).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&segs[0], &data).unwrap();
    let sink = Arc::new(Collector::default());
    let a = Auditor::open(cfg(&dir), key()).unwrap();
    a.start_delivery(Arc::new(One(sink.clone())), fast());
    // The intact events before the damage and every later segment arrive.
    wait_for("later events", || {
        let got = ids(&sink.lines.lock().unwrap(), "wrap");
        got.contains(&sent[0]) && got.contains(sent.last().unwrap())
    })
    .await;
    a.shutdown(Duration::from_secs(2)).await;
    let lines = sink.lines.lock().unwrap().clone();
    let got = ids(&lines, "wrap");
    let lost = sent.iter().filter(|id| !got.contains(id)).count();
    assert!(lost > 0 && lost < sent.len() / 2, "lost {lost}");
    let report = chain::verify(lines.iter().map(String::as_str), &[]);
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Announced { .. })),
        "{}",
        report.render()
    );
    assert!(
        report.ok(),
        "the loss is announced, not hidden: {}",
        report.render()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_spool_fails_closed_by_default() {
    let dir = tmp();
    let mut c = cfg(&dir);
    c.max_bytes = 16 * 1024;
    let a = Auditor::open(c, key()).unwrap();
    let mut refused = 0;
    for i in 0..200 {
        if a.record(event("acme", i)).await.is_err() {
            refused += 1;
        }
    }
    assert!(refused > 100, "refused {refused}");
    // Other tenants are not affected.
    a.record(event("other", 0)).await.unwrap();
    // Delivery frees space: the tenant records again.
    let sink = Arc::new(Collector::default());
    a.start_delivery(Arc::new(One(sink.clone())), fast());
    let mut ok = false;
    for i in 0..100 {
        if a.record(event("acme", 1000 + i)).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "space is freed once the sink accepts the events");
    a.shutdown(Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_oldest_counts_and_announces_the_gap() {
    let dir = tmp();
    let mut c = cfg(&dir);
    c.max_bytes = 16 * 1024;
    c.policy = FullPolicy::DropOldest;
    let a = Auditor::open(c, key()).unwrap();
    let sink = Arc::new(Collector::default());
    sink.down.store(true, Ordering::SeqCst);
    a.start_delivery(Arc::new(One(sink.clone())), fast());
    for i in 0..200 {
        a.record(event("acme", i))
            .await
            .expect("drop_oldest never refuses");
    }
    assert!(
        a.metrics_text()
            .contains("keystead_audit_events_dropped_total{tenant=\"acme\"}")
    );
    assert!(
        !a.metrics_text()
            .contains("keystead_audit_events_dropped_total{tenant=\"acme\"} 0")
    );
    sink.down.store(false, Ordering::SeqCst);
    wait_for("delivery after the outage", || {
        let l = sink.lines.lock().unwrap();
        !ids(&l, "audit_events_dropped").is_empty() && ids(&l, "wrap").len() > 20
    })
    .await;
    a.shutdown(Duration::from_secs(2)).await;
    let lines = sink.lines.lock().unwrap().clone();
    let report = chain::verify(lines.iter().map(String::as_str), &[]);
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Announced { .. })),
        "{}",
        report.render()
    );
    assert!(report.ok(), "{}", report.render());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_per_spool() {
    let dir = tmp();
    let a = Auditor::open(cfg(&dir), key()).unwrap();
    let err = Auditor::open(cfg(&dir), key())
        .err()
        .expect("a second writer is refused");
    assert!(err.to_string().contains("in use"), "{err}");
    a.shutdown(Duration::from_millis(10)).await;
    drop(a);
    Auditor::open(cfg(&dir), key()).expect("free again after the first closed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_command_events_reach_the_tenant_chain() {
    use keystead_server::audit::outbox;
    let dir = tmp();
    let data = dir.join("data");
    let data2 = data.clone();
    let run = move |args: &[&str]| {
        let mut all = vec!["keystead", "--data-dir", data2.to_str().unwrap()];
        all.extend_from_slice(args);
        keystead_server::cli::main_with_args(all) == std::process::ExitCode::SUCCESS
    };
    // The CLI starts its own runtime: run it off this one.
    let ok = tokio::task::spawn_blocking(move || {
        run(&["tenant", "create", "acme"]) && run(&["tenant", "rotate-derivation-secret", "acme"])
    })
    .await
    .unwrap();
    assert!(ok);
    let a = Auditor::open(cfg(&dir), key()).unwrap();
    let sink = Arc::new(Collector::default());
    a.start_delivery(Arc::new(One(sink.clone())), fast());
    // A command still running holds its outbox: not imported yet.
    let held = outbox::create(&data).unwrap();
    held.record(event("acme", 7)).await.unwrap();
    assert_eq!(
        outbox::import(&data, "es-test", &*a).await,
        1,
        "only the finished command's event"
    );
    drop(held);
    assert_eq!(outbox::import(&data, "es-test", &*a).await, 1);
    assert_eq!(
        outbox::import(&data, "es-test", &*a).await,
        0,
        "imported files are deleted"
    );
    wait_for("imported events", || {
        let l = sink.lines.lock().unwrap();
        !ids(&l, "config_changed").is_empty() && !ids(&l, "wrap").is_empty()
    })
    .await;
    a.shutdown(Duration::from_secs(2)).await;
    let lines = sink.lines.lock().unwrap().clone();
    let changed: serde_json::Value = lines
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["action"] == "config_changed")
        .unwrap();
    assert_eq!(changed["tenant_id"], "acme");
    assert_eq!(changed["principal"], "operator");
    assert_eq!(changed["es_instance"], "es-test");
    assert!(changed["detail"]["outbox_id"].is_string());
    let report = chain::verify(lines.iter().map(String::as_str), &[]);
    assert!(report.ok(), "{}", report.render());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Delivery takes `batch_events × batch_scale` events at once: a local file sink (scale 8)
/// gets fewer, larger batches than a remote receiver (scale 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_limits_follow_the_sinks_scale() {
    for scale in [1usize, 8] {
        let dir = tmp();
        let sink = Arc::new(Collector::default());
        sink.down.store(true, Ordering::SeqCst);
        sink.scale.store(scale, Ordering::SeqCst);
        let mut c = cfg(&dir);
        c.segment_bytes = 1 << 20;
        c.checkpoint_events = 1000;
        let a = Auditor::open(c, key()).unwrap();
        let opts = DeliveryOptions {
            batch_events: 10,
            ..fast()
        };
        a.start_delivery(Arc::new(One(sink.clone())), opts);
        for i in 0..200 {
            a.record(event("acme", i)).await.unwrap();
        }
        // Everything is spooled before the sink comes back: batches are as large as allowed.
        sink.down.store(false, Ordering::SeqCst);
        wait_for("all events", || {
            ids(&sink.lines.lock().unwrap(), "wrap").len() == 200
        })
        .await;
        a.shutdown(Duration::from_secs(2)).await;
        let batches = sink.batches.lock().unwrap().clone();
        let largest = batches.iter().copied().max().unwrap();
        assert_eq!(largest, 10 * scale, "scale {scale}: batches {batches:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
