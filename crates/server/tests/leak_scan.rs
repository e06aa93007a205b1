//! No DEK reaches disk or the logs: after a suite of operations with known DEKs (every DEK
//! the API returned), every file of the data dir (SQLite database and WAL, root key,
//! audit.jsonl), the captured `tracing` output and the metrics are scanned for each DEK as
//! raw bytes, hex and base64.
//!
//! Its own test binary: the `tracing` subscriber is installed for this thread only, and
//! `tracing` caches per-callsite interest process-wide, so tests running alongside in the
//! same process could leave the server's log callsites disabled for it.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Harness, Opts, b64, encodings, files_under, md, unb64};
use keystead_server::store::TenantMode;
use serde_json::json;

const BATCH_WRAP: &str = "/v1/keys/batch-wrap";
const BATCH_UNWRAP: &str = "/v1/keys/batch-unwrap";
const EVENTS: &str = "/v1/events";

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// A current-thread runtime, so that the thread-local subscriber sees the server's tasks.
#[tokio::test(flavor = "current_thread")]
async fn no_dek_reaches_the_data_dir_the_audit_log_or_the_logs() {
    let logs = LogBuf::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_span_list(true)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = Harness::start_with(Opts {
        jsonl_audit: true,
        ..Opts::default()
    })
    .await;
    h.tenant("lease-co", TenantMode::Leasing);
    h.tenant("remote-co", TenantMode::Remote);
    let (_, key) = h.key("svc", None);
    let mut edeks = Vec::new();
    for tenant in ["lease-co", "remote-co"] {
        for _ in 0..3 {
            let (dek, edek) = h.wrap(&key, tenant).await;
            assert_eq!(h.unwrap(&key, tenant, &edek).await, dek);
            edeks.push((tenant, edek));
        }
        let ids: Vec<String> = (0..20).map(|i| format!("doc-{i}")).collect();
        let r = h
            .post(
                BATCH_WRAP,
                Some(&key),
                &json!({ "tenant_id": tenant, "ids": ids, "metadata": md() }),
            )
            .await;
        assert_eq!(r.status, 200);
        let v = r.json();
        let mut map = serde_json::Map::new();
        for (id, k) in v["keys"].as_object().unwrap() {
            h.saw_dek(&unb64(k["dek"].as_str().unwrap()));
            map.insert(id.clone(), k["edek"].clone());
        }
        map.insert("bad".into(), json!("AAAA"));
        let r = h
            .post(
                BATCH_UNWRAP,
                Some(&key),
                &json!({ "tenant_id": tenant, "edeks": map, "metadata": md() }),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["keys"].as_object().unwrap().len(), 20);
        let r = h
            .post(EVENTS, Some(&key), &json!({ "tenant_id": tenant, "event": { "name": "DATA_EXPORT" }, "metadata": md() }))
            .await;
        assert_eq!(r.status, 204);
        h.builtin.create_version(tenant, "builtin-1").unwrap();
    }
    // Derived keys (deterministic, blind index) and the derivation secrets behind them are
    // key material too.
    let mut derived: Vec<Vec<u8>> = Vec::new();
    for tenant in ["lease-co", "remote-co"] {
        for purpose in ["deterministic", "blind_index"] {
            let r = h
                .post(
                    "/v1/keys/derive",
                    Some(&key),
                    &json!({ "tenant_id": tenant, "purpose": purpose, "paths": ["email", "ssn"], "metadata": md() }),
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text);
            for list in r.json()["keys"].as_object().unwrap().values() {
                for e in list.as_array().unwrap() {
                    derived.push(unb64(e["key"].as_str().unwrap()));
                }
            }
        }
        for rec in h.sqlite.derivation_secrets(tenant).unwrap() {
            let ctx = keystead_server::service::derivation_secret_context(
                tenant,
                &rec.config,
                &rec.id,
                &rec.cache_id,
            );
            let key_ref = keystead_server::kms::KeyRef {
                tenant: tenant.into(),
                config: rec.config.clone(),
                version: Some(rec.key_version),
            };
            use keystead_server::kms::Kms as _;
            let secret = h
                .builtin
                .unwrap(&key_ref, &rec.wrapped, &ctx)
                .await
                .unwrap();
            derived.push(secret.to_vec());
        }
    }
    assert_eq!(derived.len(), 2 * 2 * 2 + 2);
    h.service.forget_versions();
    h.clock.advance(Duration::from_secs(1200));
    h.service.renew_due_leases().await;
    for (tenant, edek) in &edeks {
        let new = h.rekey(&key, tenant, edek).await;
        h.unwrap(&key, tenant, &new).await;
        // Failures too: tampered, foreign tenant, denied.
        let mut t = unb64(&new);
        let last = t.len() - 1;
        t[last] ^= 1;
        let r = h.unwrap_req(&key, tenant, &b64(&t)).await;
        h.expect_error(&r, 422, "edek_invalid");
        let other = if *tenant == "lease-co" {
            "remote-co"
        } else {
            "lease-co"
        };
        let r = h.unwrap_req(&key, other, edek).await;
        h.expect_error(&r, 422, "edek_invalid");
    }
    h.builtin
        .set_enabled("remote-co", "builtin-1", None, false)
        .unwrap();
    let r = h.unwrap_req(&key, "remote-co", &edeks[3].1).await;
    h.expect_error(&r, 403, "kms_denied");
    let metrics = h.get(&format!("{}/metrics", h.admin)).await.text;

    let deks = h.deks.lock().unwrap().clone();
    assert!(
        deks.len() >= 6 * 3 + 2 * 20,
        "{} DEKs collected",
        deks.len()
    );
    let needles: Vec<Vec<u8>> = deks
        .iter()
        .chain(derived.iter())
        .flat_map(|d| encodings(d))
        .collect();
    let leaks = |what: &str, hay: &[u8]| {
        for n in &needles {
            assert!(
                !hay.windows(n.len()).any(|w| w == n.as_slice()),
                "{what} contains a DEK ({} bytes of needle)",
                n.len()
            );
        }
    };
    let files = files_under(&h.dir);
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["keystead.db", "root.key", "audit.jsonl"] {
        assert!(names.iter().any(|n| n == expected), "{names:?}");
    }
    let mut db_bytes = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        if f.to_string_lossy().contains("keystead.db") {
            db_bytes += bytes.len();
        }
        leaks(&f.display().to_string(), &bytes);
    }
    assert!(db_bytes > 0);
    // Positive control: the scan does read what the store wrote.
    let db: Vec<u8> = files
        .iter()
        .filter(|f| f.to_string_lossy().contains("keystead.db"))
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    assert!(db.windows(b"remote-co".len()).any(|w| w == b"remote-co"));
    let audit = std::fs::read_to_string(h.dir.join("audit.jsonl")).unwrap();
    assert!(audit.lines().count() >= 20, "{audit}");
    assert!(audit.contains("\"kms_denied\"") && audit.contains("\"edek_invalid\""));

    drop(_guard);
    let logs = logs.0.lock().unwrap().clone();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    // The server's per-request log line (route span, status) was captured.
    assert!(
        contains(&logs, br#""route":"/v1/keys/unwrap""#) && contains(&logs, br#""status":422"#),
        "the server's request log was not captured"
    );
    leaks("the logs", &logs);
    leaks("the metrics", metrics.as_bytes());

    let dir = h.dir.clone();
    drop(h);
    assert!(!dir.exists(), "the harness removes its data dir");
}
