//! The REST contract (shared/API.md) over real sockets: every route, every error code the
//! server can produce, rotation and rekey, audit events, and zero tenant lookups for
//! requests outside a key's scope. (The scan for leaked DEKs is tests/leak_scan.rs.)
//!
//! Each test starts its own in-process service (tests/common) on 127.0.0.1 with a temporary
//! data dir, so tests run in parallel and leave nothing behind.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, Opts, b64, encodings, md, unb64};
use keystead_core::edek::{Edek, Mode};
use keystead_server::kms::Kms;
use keystead_server::kms::RetryPolicy;
use keystead_server::kms::fake::{Behavior, FakeKms};
use keystead_server::store::{ConfigState, TenantMode};
use keystead_server::util::unix_now;
use serde_json::{Value, json};

const WRAP: &str = "/v1/keys/wrap";
const UNWRAP: &str = "/v1/keys/unwrap";
const BATCH_WRAP: &str = "/v1/keys/batch-wrap";
const BATCH_UNWRAP: &str = "/v1/keys/batch-unwrap";
const REKEY: &str = "/v1/keys/rekey";
const EVENTS: &str = "/v1/events";

fn parse(edek_b64: &str) -> Edek {
    Edek::parse(&unb64(edek_b64)).expect("the server returns a parseable EDEK")
}

/// A valid body for `route` and `tenant` (`edek` for the routes that take one).
fn body_for(route: &str, tenant: &str, edek: &str) -> Value {
    match route {
        WRAP => json!({ "tenant_id": tenant, "metadata": md() }),
        UNWRAP | REKEY => json!({ "tenant_id": tenant, "edek": edek, "metadata": md() }),
        BATCH_WRAP => json!({ "tenant_id": tenant, "ids": ["a", "b"], "metadata": md() }),
        BATCH_UNWRAP => json!({ "tenant_id": tenant, "edeks": { "a": edek }, "metadata": md() }),
        EVENTS => {
            json!({ "tenant_id": tenant, "event": { "name": "USER_LOGIN" }, "metadata": md() })
        }
        other => panic!("no body for {other}"),
    }
}

const ROUTES: &[&str] = &[WRAP, UNWRAP, BATCH_WRAP, BATCH_UNWRAP, REKEY, EVENTS];

// ---- liveness, readiness, metrics ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_metrics_and_unknown_route() {
    let h = Harness::start().await;
    for base in [&h.api, &h.admin] {
        let r = h.get(&format!("{base}/health")).await;
        assert_eq!(r.status, 200, "{base}/health: {}", r.text);
        assert_eq!(r.json()["status"], "ok");
    }
    let r = h.get(&format!("{}/ready", h.admin)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "ready");

    // A few requests so that metrics have something to count.
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("svc", None);
    let (dek, edek) = h.wrap(&key, "acme").await;
    assert_eq!(h.unwrap(&key, "acme", &edek).await, dek);
    let r = h.unwrap_req(&key, "acme", "AAAA").await;
    h.expect_error(&r, 422, "edek_invalid");

    let r = h.get(&format!("{}/metrics", h.admin)).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{:?}",
        r.headers
    );
    for needle in [
        r#"keystead_requests_total{route="/v1/keys/wrap",status="200"} 1"#,
        r#"keystead_requests_total{route="/v1/keys/unwrap",status="200"} 1"#,
        r#"keystead_requests_total{route="/v1/keys/unwrap",status="422"} 1"#,
        r#"keystead_request_duration_seconds_count{route="/v1/keys/wrap"} 1"#,
        r#"keystead_kms_calls_total{provider="builtin",outcome="success"}"#,
        "keystead_lease_cache_keys 1",
    ] {
        assert!(
            r.text.contains(needle),
            "metrics lack {needle}:\n{}",
            r.text
        );
    }
    for dek in h.deks.lock().unwrap().iter() {
        for enc in encodings(dek) {
            assert!(!r.text.as_bytes().windows(enc.len()).any(|w| w == enc));
        }
    }

    // The admin routes are not on the API listener, and unknown routes keep the error shape.
    let r = h.get(&format!("{}/metrics", h.api)).await;
    h.expect_error(&r, 404, "not_found");
    let r = h
        .post(WRAP.replace("wrap", "nope").as_str(), Some(&key), &md())
        .await;
    h.expect_error(&r, 404, "not_found");
    // /health needs no key; every answer carries a request id.
    let r = h.get(&format!("{}/health", h.api)).await;
    assert!(r.header("x-request-id").is_some());
}

// ---- the key routes ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrap_unwrap_roundtrip_both_modes() {
    let h = Harness::start().await;
    h.tenant("lease-co", TenantMode::Leasing);
    h.tenant("remote-co", TenantMode::Remote);
    let (key_id, key) = h.key("svc", None);
    for (tenant, mode) in [("lease-co", Mode::Leased), ("remote-co", Mode::Remote)] {
        let (dek, edek) = h.wrap(&key, tenant).await;
        let e = parse(&edek);
        assert_eq!(e.tenant().as_str(), tenant);
        assert_eq!(e.config_id().as_str(), "builtin-1");
        assert_eq!(e.key_version().0, 1);
        assert_eq!(e.mode(), mode);
        assert_eq!(h.unwrap(&key, tenant, &edek).await, dek);
        // Two wraps give different DEKs and EDEKs.
        let (dek2, edek2) = h.wrap(&key, tenant).await;
        assert_ne!(dek, dek2);
        assert_ne!(edek, edek2);
        assert_eq!(h.unwrap(&key, tenant, &edek2).await, dek2);
        assert_eq!(h.unwrap(&key, tenant, &edek).await, dek);
    }
    // Audit: one success event per operation, by this key, with the metadata and KMS info.
    let ev = h.events();
    assert_eq!(ev.len(), 10, "{ev:#?}");
    for e in &ev {
        assert_eq!(e.principal, key_id);
        assert_eq!(e.outcome, "success");
        assert!(e.code.is_none());
        assert_eq!(e.metadata, md());
        assert_eq!(e.es_instance, "es-test");
        let k = e.kms.as_ref().expect("kms info");
        assert_eq!(
            (k.provider.as_str(), k.config_id.as_str()),
            ("builtin", "builtin-1")
        );
        assert_eq!(k.key_version, Some(1));
    }
    assert_eq!(ev.iter().filter(|e| e.action == "wrap").count(), 4);
    assert_eq!(ev.iter().filter(|e| e.action == "unwrap").count(), 6);
    let ids: std::collections::HashSet<_> = ev.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), ev.len(), "event ids are unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_echoed_into_the_audit_event() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("svc", None);
    let full = json!({
        "requesting_id": "user-17",
        "data_label": "PII",
        "object_id": "invoice/991",
        "source_ip": "203.0.113.9",
        "request_id": "9f1c",
        "custom": { "k": "v" }
    });
    let r = h
        .post(
            WRAP,
            Some(&key),
            &json!({ "tenant_id": "acme", "metadata": full }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    h.saw_dek(&unb64(r.json()["dek"].as_str().unwrap()));
    let ev = h.events();
    assert_eq!(ev.last().unwrap().metadata, full);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_succeed_per_item() {
    let h = Harness::start().await;
    h.tenant("lease-co", TenantMode::Leasing);
    h.tenant("remote-co", TenantMode::Remote);
    h.tenant("other", TenantMode::Leasing);
    let (key_id, key) = h.key("svc", None);
    let (_, foreign) = h.wrap(&key, "other").await;
    for tenant in ["lease-co", "remote-co"] {
        let r = h
            .post(
                BATCH_WRAP,
                Some(&key),
                &json!({ "tenant_id": tenant, "ids": ["a", "b", "c"], "metadata": md() }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        assert_eq!(v["failures"], json!({}));
        let keys = v["keys"].as_object().unwrap();
        assert_eq!(keys.len(), 3);
        let mut edeks = serde_json::Map::new();
        let mut deks = std::collections::BTreeMap::new();
        for (id, k) in keys {
            let dek = unb64(k["dek"].as_str().unwrap());
            h.saw_dek(&dek);
            let e = parse(k["edek"].as_str().unwrap());
            assert_eq!(e.tenant().as_str(), tenant);
            edeks.insert(id.clone(), k["edek"].clone());
            deks.insert(id.clone(), dek);
        }
        let distinct: std::collections::HashSet<_> = deks.values().collect();
        assert_eq!(distinct.len(), 3, "each id has its own DEK");

        // One bad EDEK of each kind fails only its id.
        let good = edeks["b"].as_str().unwrap().to_owned();
        let truncated = b64(&unb64(&good)[..20]);
        edeks.insert("foreign".into(), json!(foreign));
        edeks.insert("garbage".into(), json!(b64(b"definitely not an EDEK")));
        edeks.insert("truncated".into(), json!(truncated));
        let r = h
            .post(
                BATCH_UNWRAP,
                Some(&key),
                &json!({ "tenant_id": tenant, "edeks": edeks, "metadata": md() }),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        let got = v["keys"].as_object().unwrap();
        assert_eq!(got.len(), 3, "{v}");
        for (id, dek) in &deks {
            assert_eq!(&unb64(got[id].as_str().unwrap()), dek, "id {id}");
        }
        let failures = v["failures"].as_object().unwrap();
        assert_eq!(failures.len(), 3, "{v}");
        for id in ["foreign", "garbage", "truncated"] {
            let f = failures[id].as_object().unwrap();
            assert_eq!(f.len(), 2, "{f:?}");
            assert_eq!(f["code"], "edek_invalid");
            assert!(f["message"].is_string());
        }
        for dek in deks.values() {
            for enc in encodings(dek) {
                let text = serde_json::to_vec(&v["failures"]).unwrap();
                assert!(!text.windows(enc.len()).any(|w| w == enc));
            }
        }
    }
    let ev = h.events();
    let batch: Vec<_> = ev
        .iter()
        .filter(|e| e.action.starts_with("batch_"))
        .collect();
    assert_eq!(batch.len(), 4);
    for e in batch {
        assert_eq!(e.principal, key_id);
        assert_eq!(e.outcome, "success");
        assert_eq!(e.count, Some(if e.action == "batch_wrap" { 3 } else { 6 }));
        assert_eq!(
            e.failures,
            Some(if e.action == "batch_wrap" { 0 } else { 3 })
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_of_1000_is_accepted_and_1001_is_not() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("svc", None);
    let ids: Vec<String> = (0..1000).map(|i| format!("id-{i}")).collect();
    let r = h
        .post(
            BATCH_WRAP,
            Some(&key),
            &json!({ "tenant_id": "acme", "ids": ids, "metadata": md() }),
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    let keys = v["keys"].as_object().unwrap();
    assert_eq!(keys.len(), 1000);
    let mut edeks: serde_json::Map<String, Value> = keys
        .iter()
        .map(|(id, k)| {
            h.saw_dek(&unb64(k["dek"].as_str().unwrap()));
            (id.clone(), k["edek"].clone())
        })
        .collect();
    let r = h
        .post(
            BATCH_UNWRAP,
            Some(&key),
            &json!({ "tenant_id": "acme", "edeks": edeks, "metadata": md() }),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["keys"].as_object().unwrap().len(), 1000);

    let mut ids: Vec<String> = (0..1001).map(|i| format!("id-{i}")).collect();
    let r = h
        .post(
            BATCH_WRAP,
            Some(&key),
            &json!({ "tenant_id": "acme", "ids": ids, "metadata": md() }),
        )
        .await;
    h.expect_error(&r, 400, "bad_request");
    edeks.insert("one-more".into(), edeks["id-0"].clone());
    let r = h
        .post(
            BATCH_UNWRAP,
            Some(&key),
            &json!({ "tenant_id": "acme", "edeks": edeks, "metadata": md() }),
        )
        .await;
    h.expect_error(&r, 400, "bad_request");
    ids.clear();
    let r = h
        .post(
            BATCH_WRAP,
            Some(&key),
            &json!({ "tenant_id": "acme", "ids": ids, "metadata": md() }),
        )
        .await;
    h.expect_error(&r, 400, "bad_request");
    let r = h
        .post(
            BATCH_UNWRAP,
            Some(&key),
            &json!({ "tenant_id": "acme", "edeks": {}, "metadata": md() }),
        )
        .await;
    h.expect_error(&r, 400, "bad_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_events() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (key_id, key) = h.key("svc", None);
    let event = json!({ "name": "USER_LOGIN", "user": "u1", "ok": true });
    let r = h
        .post(
            EVENTS,
            Some(&key),
            &json!({ "tenant_id": "acme", "event": event, "metadata": md() }),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(r.text.is_empty());
    let ev = h.events();
    let e = ev.last().unwrap();
    assert_eq!(
        (
            e.action.as_str(),
            e.outcome,
            e.principal.as_str(),
            e.tenant_id.as_str()
        ),
        ("app_event", "success", key_id.as_str(), "acme")
    );
    assert_eq!(e.event.as_ref(), Some(&event));

    for bad in [
        json!({ "name": "LOGIN" }),
        json!({ "name": "user_login" }),
        json!({ "name": "USER_" }),
        json!({ "nome": "USER_LOGIN" }),
        json!("USER_LOGIN"),
        json!({ "name": "CUSTOM_X", "blob": "x".repeat(5000) }),
    ] {
        let r = h
            .post(
                EVENTS,
                Some(&key),
                &json!({ "tenant_id": "acme", "event": bad, "metadata": md() }),
            )
            .await;
        h.expect_error(&r, 400, "bad_request");
    }
}

// ---- rotation and rekey ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_rekey_remote_tenant() {
    let h = Harness::start().await;
    h.tenant("remote-co", TenantMode::Remote);
    let (_, key) = h.key("svc", None);
    let (dek, old) = h.wrap(&key, "remote-co").await;
    assert_eq!(parse(&old).key_version().0, 1);

    assert_eq!(
        h.builtin.create_version("remote-co", "builtin-1").unwrap(),
        2
    );
    h.service.forget_versions();

    let new = h.rekey(&key, "remote-co", &old).await;
    let e = parse(&new);
    assert_eq!(e.key_version().0, 2, "rekey uses the new key version");
    assert_eq!(e.tenant().as_str(), "remote-co");
    assert_eq!(e.config_id().as_str(), "builtin-1");
    assert_ne!(new, old);
    assert_eq!(h.unwrap(&key, "remote-co", &new).await, dek, "same DEK");
    assert_eq!(
        h.unwrap(&key, "remote-co", &old).await,
        dek,
        "old EDEK still works"
    );
    // Rekeying the new EDEK again keeps the DEK.
    let again = h.rekey(&key, "remote-co", &new).await;
    assert_eq!(h.unwrap(&key, "remote-co", &again).await, dek);
    // New wraps use the new version.
    let (dek2, edek2) = h.wrap(&key, "remote-co").await;
    assert_eq!(parse(&edek2).key_version().0, 2);
    assert_eq!(parse(&edek2).mode(), Mode::Remote);
    assert_eq!(h.unwrap(&key, "remote-co", &edek2).await, dek2);

    let ev = h.events();
    let rk = ev
        .iter()
        .filter(|e| e.action == "rekey")
        .collect::<Vec<_>>();
    assert_eq!(rk.len(), 2);
    assert!(
        rk.iter().all(
            |e| e.outcome == "success" && e.kms.as_ref().and_then(|k| k.key_version) == Some(2)
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_and_rekey_leasing_tenant() {
    let h = Harness::start().await;
    h.tenant("lease-co", TenantMode::Leasing);
    let (_, key) = h.key("svc", None);
    let (dek, old) = h.wrap(&key, "lease-co").await;
    assert_eq!(parse(&old).key_version().0, 1);
    assert_eq!(parse(&old).mode(), Mode::Leased);

    assert_eq!(
        h.builtin.create_version("lease-co", "builtin-1").unwrap(),
        2
    );
    h.service.forget_versions();
    // A leasing tenant picks the new version up with its next leased key: let the
    // renewal interval (20 min) pass and run the renewal, as the server's renewal task does.
    h.clock.advance(Duration::from_secs(1200));
    h.service.renew_due_leases().await;

    let new = h.rekey(&key, "lease-co", &old).await;
    let e = parse(&new);
    assert_eq!(e.key_version().0, 2, "rekey uses the new key version");
    assert_eq!(e.mode(), Mode::Leased);
    assert_ne!(
        e.leased_key_id(),
        parse(&old).leased_key_id(),
        "a new leased key after renewal"
    );
    assert_eq!(h.unwrap(&key, "lease-co", &new).await, dek, "same DEK");
    assert_eq!(
        h.unwrap(&key, "lease-co", &old).await,
        dek,
        "old EDEK still works"
    );
    let (_, edek2) = h.wrap(&key, "lease-co").await;
    assert_eq!(parse(&edek2).key_version().0, 2);

    // Another ES instance, with a cold lease cache, unwraps both through the KMS.
    let other = h.second_instance().await;
    for edek in [&old, &new] {
        let r = h.unwrap_at(&other, &key, "lease-co", edek).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(unb64(r.json()["dek"].as_str().unwrap()), dek);
    }

    let ev = h.events();
    assert!(
        ev.iter()
            .any(|e| e.action == "lease_renewed" && e.principal == "system"),
        "{ev:#?}"
    );
}

// ---- bad_request -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("svc", None);
    let (_, edek) = h.wrap(&key, "acme").await;
    let k = Some(key.as_str());

    // Malformed JSON, empty body, not an object, on every route.
    for route in ROUTES {
        for raw in [
            &b"{"[..],
            b"",
            b"[]",
            b"null",
            b"{\"tenant_id\":\"acme\",}",
            b"\xff\xfe",
        ] {
            let r = h.post_raw(route, k, raw.to_vec()).await;
            h.expect_error(&r, 400, "bad_request");
        }
    }

    let cases: Vec<(&str, Value)> = vec![
        // missing fields
        (WRAP, json!({ "tenant_id": "acme" })),
        (WRAP, json!({ "metadata": md() })),
        (WRAP, json!({ "tenant_id": "acme", "metadata": {} })),
        (
            WRAP,
            json!({ "tenant_id": "acme", "metadata": { "requesting_id": "" } }),
        ),
        (UNWRAP, json!({ "tenant_id": "acme", "metadata": md() })),
        (REKEY, json!({ "tenant_id": "acme", "metadata": md() })),
        (BATCH_WRAP, json!({ "tenant_id": "acme", "metadata": md() })),
        (
            BATCH_UNWRAP,
            json!({ "tenant_id": "acme", "metadata": md() }),
        ),
        (EVENTS, json!({ "tenant_id": "acme", "metadata": md() })),
        // unknown fields, in the envelope and in the metadata
        (
            WRAP,
            json!({ "tenant_id": "acme", "metadata": md(), "extra": 1 }),
        ),
        (
            UNWRAP,
            json!({ "tenant_id": "acme", "edek": edek, "metadata": md(), "dek": "x" }),
        ),
        (
            WRAP,
            json!({ "tenant_id": "acme", "metadata": { "requesting_id": "u", "who": "x" } }),
        ),
        // wrong types, values out of range
        (WRAP, json!({ "tenant_id": 5, "metadata": md() })),
        (WRAP, json!({ "tenant_id": null, "metadata": md() })),
        (
            UNWRAP,
            json!({ "tenant_id": "acme", "edek": 5, "metadata": md() }),
        ),
        (
            BATCH_WRAP,
            json!({ "tenant_id": "acme", "ids": "a", "metadata": md() }),
        ),
        (
            BATCH_WRAP,
            json!({ "tenant_id": "acme", "ids": [1], "metadata": md() }),
        ),
        (
            WRAP,
            json!({ "tenant_id": "acme", "metadata": { "requesting_id": "u", "custom": { "k": 1 } } }),
        ),
        // bad base64: other alphabet, no padding, junk
        (
            UNWRAP,
            json!({ "tenant_id": "acme", "edek": "@@@@", "metadata": md() }),
        ),
        (
            UNWRAP,
            json!({ "tenant_id": "acme", "edek": "AAE", "metadata": md() }),
        ),
        (
            UNWRAP,
            json!({ "tenant_id": "acme", "edek": "AA-_", "metadata": md() }),
        ),
        (
            REKEY,
            json!({ "tenant_id": "acme", "edek": "not base64!", "metadata": md() }),
        ),
        (
            BATCH_UNWRAP,
            json!({ "tenant_id": "acme", "edeks": { "a": edek, "b": "AA==x" }, "metadata": md() }),
        ),
        // tenant ids and ids: empty, > 256 bytes, control characters
        (WRAP, json!({ "tenant_id": "", "metadata": md() })),
        (
            WRAP,
            json!({ "tenant_id": "a".repeat(257), "metadata": md() }),
        ),
        (
            WRAP,
            json!({ "tenant_id": "é".repeat(129), "metadata": md() }),
        ),
        (WRAP, json!({ "tenant_id": "ac\nme", "metadata": md() })),
        (
            UNWRAP,
            json!({ "tenant_id": "a".repeat(257), "edek": edek, "metadata": md() }),
        ),
        (
            EVENTS,
            json!({ "tenant_id": "a".repeat(257), "event": { "name": "USER_X" }, "metadata": md() }),
        ),
        (
            BATCH_WRAP,
            json!({ "tenant_id": "acme", "ids": ["ok", "i".repeat(257)], "metadata": md() }),
        ),
        (
            BATCH_WRAP,
            json!({ "tenant_id": "acme", "ids": [""], "metadata": md() }),
        ),
        (
            BATCH_UNWRAP,
            json!({ "tenant_id": "acme", "edeks": { "i".repeat(257): edek }, "metadata": md() }),
        ),
        // duplicate ids in a batch
        (
            BATCH_WRAP,
            json!({ "tenant_id": "acme", "ids": ["a", "b", "a"], "metadata": md() }),
        ),
        // metadata over 4 KiB
        (
            WRAP,
            json!({ "tenant_id": "acme", "metadata": { "requesting_id": "u", "custom": { "k": "x".repeat(4100) } } }),
        ),
        (
            UNWRAP,
            json!({ "tenant_id": "acme", "edek": edek, "metadata": { "requesting_id": "x".repeat(5000) } }),
        ),
    ];
    for (route, body) in cases {
        let r = h.post(route, k, &body).await;
        assert_eq!(r.status, 400, "{route} {body}: {}", r.text);
        h.expect_error(&r, 400, "bad_request");
    }

    // Duplicate JSON keys: in the envelope, in the metadata, in a batch's EDEK map (which
    // would otherwise be silently merged).
    let dup_bodies = [
        (WRAP, r#"{"tenant_id":"acme","tenant_id":"other","metadata":{"requesting_id":"u"}}"#.to_owned()),
        (WRAP, r#"{"tenant_id":"acme","metadata":{"requesting_id":"u","requesting_id":"v"}}"#.to_owned()),
        (WRAP, r#"{"tenant_id":"acme","metadata":{"requesting_id":"u","custom":{"k":"1","k":"2"}}}"#.to_owned()),
        (BATCH_UNWRAP, format!(r#"{{"tenant_id":"acme","edeks":{{"a":"{edek}","a":"{edek}"}},"metadata":{{"requesting_id":"u"}}}}"#)),
        (EVENTS, r#"{"tenant_id":"acme","event":{"name":"USER_X","name":"USER_Y"},"metadata":{"requesting_id":"u"}}"#.to_owned()),
    ];
    for (route, body) in dup_bodies {
        let r = h.post_raw(route, k, body.clone().into_bytes()).await;
        assert_eq!(r.status, 400, "{route} {body}: {}", r.text);
        h.expect_error(&r, 400, "bad_request");
    }

    // Limits are inclusive: 256-byte tenant ids and ~3 KiB metadata pass the edge checks.
    let r = h
        .post(
            WRAP,
            k,
            &json!({ "tenant_id": "a".repeat(256), "metadata": md() }),
        )
        .await;
    h.expect_error(&r, 404, "tenant_not_found");
    let r = h
        .post(
            WRAP,
            k,
            &json!({ "tenant_id": "acme", "metadata": { "requesting_id": "u", "custom": { "k": "x".repeat(3000) } } }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    h.saw_dek(&unb64(r.json()["dek"].as_str().unwrap()));

    // Body over 1 MiB (valid JSON otherwise), on every route.
    let huge = format!(
        r#"{{"tenant_id":"acme","metadata":{{"requesting_id":"{}"}}}}"#,
        "x".repeat(1 << 20)
    );
    for route in ROUTES {
        let r = h.post_raw(route, k, huge.clone().into_bytes()).await;
        h.expect_error(&r, 400, "bad_request");
    }
}

// ---- unauthenticated -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("svc", None);
    let (_, edek) = h.wrap(&key, "acme").await;
    let (_, revoked) = h.key("revoked", None);
    let (_, expired) = h.key_full(
        "expired",
        None,
        keystead_server::auth::OPS,
        Some(unix_now() - 1),
    );
    let (_, later) = h.key_full(
        "later",
        None,
        keystead_server::auth::OPS,
        Some(unix_now() + 3600),
    );
    // A key works until it is revoked; a key with an expiry works until then.
    h.wrap(&revoked, "acme").await;
    h.sqlite.revoke_service_key("revoked").unwrap();
    h.wrap(&later, "acme").await;

    let mut wrong = key.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let other_id = format!("ks_000000000000_{}", &key[16..]);
    let headers: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some(format!("Basic {key}")),
        Some(key.clone()),
        Some(format!("Bearer {wrong}")),
        Some(format!("Bearer {other_id}")),
        Some("Bearer ks_x_y".into()),
        Some(format!("Bearer {revoked}")),
        Some(format!("Bearer {expired}")),
    ];
    let before = h.store.tenant_calls();
    for route in ROUTES {
        for hv in &headers {
            let mut req = h
                .http
                .post(format!("{}{route}", h.api))
                .json(&body_for(route, "acme", &edek));
            if let Some(v) = hv {
                req = req.header("authorization", v);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            let resp = common::Resp {
                status,
                headers: Default::default(),
                text,
            };
            assert_eq!(status, 401, "{route} with {hv:?}: {}", resp.text);
            h.expect_error(&resp, 401, "unauthenticated");
        }
        // Authentication comes first: a malformed body without a key is still 401.
        let r = h.post_raw(route, None, b"{".to_vec()).await;
        h.expect_error(&r, 401, "unauthenticated");
        let r = h.post_raw(route, Some(&expired), b"{".to_vec()).await;
        h.expect_error(&r, 401, "unauthenticated");
    }
    assert_eq!(
        h.store.tenant_calls(),
        before,
        "no tenant lookup without a valid key"
    );
    // The same message whatever the reason: nothing to tell keys apart.
    let mut seen = std::collections::HashSet::new();
    for k in [
        None,
        Some(wrong.as_str()),
        Some(revoked.as_str()),
        Some(expired.as_str()),
    ] {
        let r = h.post(WRAP, k, &body_for(WRAP, "acme", "")).await;
        seen.insert(h.expect_error(&r, 401, "unauthenticated"));
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
}

// ---- scope: tenant_forbidden, operation_forbidden, tenant_not_found -------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_scope_tenants_are_forbidden_without_any_tenant_lookup() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    h.tenant("globex", TenantMode::Remote);
    let (_, all) = h.key("all", None);
    let (_, acme_edek) = h.wrap(&all, "acme").await;
    let (_, globex_edek) = h.wrap(&all, "globex").await;
    let (_, scoped) = h.key("acme-only", Some(&["acme"]));

    let before = h.store.tenant_calls();
    let mut messages = std::collections::HashSet::new();
    for route in ROUTES {
        // An existing tenant and a tenant that does not exist answer alike.
        for (tenant, edek) in [("globex", &globex_edek), ("ghost", &acme_edek)] {
            let r = h
                .post(route, Some(&scoped), &body_for(route, tenant, edek))
                .await;
            messages.insert(h.expect_error(&r, 403, "tenant_forbidden"));
        }
    }
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(
        h.store.tenant_calls(),
        before,
        "a request outside the key's scope must not look the tenant up"
    );

    // Control: an in-scope request does look the tenant up (the counter works).
    h.wrap(&scoped, "acme").await;
    assert!(h.store.tenant_calls() > before);

    // A tenant in the key's scope that does not exist: still 403 for a scoped key ...
    let (_, scoped_ghost) = h.key("acme-and-ghost", Some(&["acme", "ghost"]));
    for route in ROUTES {
        let r = h
            .post(
                route,
                Some(&scoped_ghost),
                &body_for(route, "ghost", &acme_edek),
            )
            .await;
        h.expect_error(&r, 403, "tenant_forbidden");
    }
    // ... and only an all-tenants key learns 404.
    for route in ROUTES {
        let r = h
            .post(route, Some(&all), &body_for(route, "ghost", &acme_edek))
            .await;
        h.expect_error(&r, 404, "tenant_not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_outside_the_key_scope_are_forbidden() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (_, all) = h.key("all", None);
    let (_, edek) = h.wrap(&all, "acme").await;
    let ops_of = |route: &str| match route {
        WRAP => "wrap",
        UNWRAP => "unwrap",
        BATCH_WRAP | BATCH_UNWRAP => "batch",
        REKEY => "rekey",
        EVENTS => "events",
        _ => unreachable!(),
    };
    let before = h.store.tenant_calls();
    for route in ROUTES {
        // A key with every operation but this route's, once scoped and once all-tenants.
        let ops: Vec<&str> = keystead_server::auth::OPS
            .iter()
            .copied()
            .filter(|o| *o != ops_of(route))
            .collect();
        for tenants in [Some(&["acme"][..]), None] {
            let (_, k) = h.key_full(
                &format!("no-{route}-{}", tenants.is_some()),
                tenants,
                &ops,
                None,
            );
            let r = h
                .post(route, Some(&k), &body_for(route, "acme", &edek))
                .await;
            let msg = h.expect_error(&r, 403, "operation_forbidden");
            assert!(msg.contains(ops_of(route)), "{msg}");
        }
    }
    assert_eq!(h.store.tenant_calls(), before);
    // Out of tenant scope and of operation scope: the tenant check comes first.
    let (_, wrap_only) = h.key_full("wrap-only", Some(&["acme"]), &["wrap"], None);
    let r = h
        .post(UNWRAP, Some(&wrap_only), &body_for(UNWRAP, "ghost", &edek))
        .await;
    h.expect_error(&r, 403, "tenant_forbidden");
    let r = h
        .post(UNWRAP, Some(&wrap_only), &body_for(UNWRAP, "acme", &edek))
        .await;
    h.expect_error(&r, 403, "operation_forbidden");
    h.wrap(&wrap_only, "acme").await;
}

// ---- tenant_disabled ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_tenant_answers_409() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    h.tenant("remote-co", TenantMode::Remote);
    let (key_id, key) = h.key("svc", Some(&["acme", "remote-co"]));
    for tenant in ["acme", "remote-co"] {
        let (dek, edek) = h.wrap(&key, tenant).await;
        h.set_disabled(tenant, true);
        for route in ROUTES {
            let r = h
                .post(route, Some(&key), &body_for(route, tenant, &edek))
                .await;
            h.expect_error(&r, 409, "tenant_disabled");
        }
        h.set_disabled(tenant, false);
        assert_eq!(h.unwrap(&key, tenant, &edek).await, dek);
    }
    let ev = h.events();
    let disabled: Vec<_> = ev
        .iter()
        .filter(|e| e.code.as_deref() == Some("tenant_disabled"))
        .collect();
    assert_eq!(disabled.len(), 2 * ROUTES.len(), "{ev:#?}");
    for e in disabled {
        assert_eq!(
            (e.outcome, e.principal.as_str()),
            ("failure", key_id.as_str())
        );
    }
}

// ---- edek_invalid ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edeks_of_other_tenants_truncated_or_garbage_are_invalid() {
    let h = Harness::start().await;
    h.tenant("tenant-a", TenantMode::Leasing);
    h.tenant("tenant-b", TenantMode::Leasing);
    h.tenant("remote-a", TenantMode::Remote);
    h.tenant("remote-b", TenantMode::Remote);
    let (key_id, key) = h.key("svc", None);
    for (a, b) in [
        ("tenant-a", "tenant-b"),
        ("remote-a", "remote-b"),
        ("tenant-a", "remote-b"),
        ("remote-a", "tenant-b"),
    ] {
        let (_, edek) = h.wrap(&key, a).await;
        let r = h.unwrap_req(&key, b, &edek).await;
        h.expect_error(&r, 422, "edek_invalid");
        let r = h.post(REKEY, Some(&key), &body_for(REKEY, b, &edek)).await;
        h.expect_error(&r, 422, "edek_invalid");
    }
    let (_, edek) = h.wrap(&key, "tenant-a").await;
    let bytes = unb64(&edek);
    let mut with_trailer = bytes.clone();
    with_trailer.push(0);
    for bad in [
        String::new(),
        b64(&bytes[..bytes.len() - 1]),
        b64(&bytes[..bytes.len() / 2]),
        b64(&bytes[..4]),
        b64(&with_trailer),
        b64(b"garbage garbage garbage garbage garbage"),
        b64(&[0u8; 200]),
        b64(&[0xffu8; 200]),
    ] {
        let r = h.unwrap_req(&key, "tenant-a", &bad).await;
        h.expect_error(&r, 422, "edek_invalid");
    }
    // Every truncation, through one batch: each id fails alone.
    let edeks: serde_json::Map<String, Value> = (0..bytes.len())
        .map(|n| (format!("t{n:03}"), json!(b64(&bytes[..n]))))
        .chain([("whole".to_owned(), json!(edek))])
        .collect();
    let r = h
        .post(
            BATCH_UNWRAP,
            Some(&key),
            &json!({ "tenant_id": "tenant-a", "edeks": edeks, "metadata": md() }),
        )
        .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["keys"].as_object().unwrap().len(), 1);
    assert!(v["keys"]["whole"].is_string());
    h.saw_dek(&unb64(v["keys"]["whole"].as_str().unwrap()));
    let failures = v["failures"].as_object().unwrap();
    assert_eq!(failures.len(), bytes.len());
    assert!(
        failures.values().all(|f| f["code"] == "edek_invalid"),
        "{v}"
    );

    let ev = h.events();
    let invalid: Vec<_> = ev
        .iter()
        .filter(|e| e.code.as_deref() == Some("edek_invalid"))
        .collect();
    assert!(invalid.len() >= 16, "{ev:#?}");
    assert!(
        invalid
            .iter()
            .all(|e| e.principal == key_id && e.outcome == "failure")
    );
}

/// Flips every byte of `edek` (XOR `mask`) and unwraps each variant at `base`: all 422.
async fn all_flips_invalid(
    h: &Harness,
    base: &str,
    key: &str,
    tenant: &str,
    edek: &str,
    masks: &[u8],
) {
    let bytes = unb64(edek);
    for &mask in masks {
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= mask;
            let r = h.unwrap_at(base, key, tenant, &b64(&t)).await;
            assert_eq!(
                (r.status, r.json()["code"].as_str()),
                (422, Some("edek_invalid")),
                "byte {i} of {} ^ {mask:#04x} ({:?} EDEK of {tenant}): {}",
                bytes.len(),
                parse(edek).mode(),
                r.text
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_single_byte_change_of_an_edek_is_invalid() {
    let h = Harness::start().await;
    h.tenant("lease-co", TenantMode::Leasing);
    h.tenant("remote-co", TenantMode::Remote);
    let (_, key) = h.key("svc", None);
    let (ldek, leased) = h.wrap(&key, "lease-co").await;
    let (rdek, remote) = h.wrap(&key, "remote-co").await;
    // The leased form a remote-mode tenant gets from rekey (its leased key goes through
    // the KMS on every unwrap, never cached).
    let one_use = h.rekey(&key, "remote-co", &remote).await;
    assert_eq!(parse(&one_use).mode(), Mode::Leased);

    let masks = [0x01, 0x80];
    all_flips_invalid(&h, &h.api, &key, "lease-co", &leased, &masks).await;
    all_flips_invalid(&h, &h.api, &key, "remote-co", &remote, &masks).await;
    all_flips_invalid(&h, &h.api, &key, "remote-co", &one_use, &masks).await;

    // Tampering never locks the tenant out: the genuine EDEKs still unwrap.
    assert_eq!(h.unwrap(&key, "lease-co", &leased).await, ldek);
    assert_eq!(h.unwrap(&key, "remote-co", &remote).await, rdek);
    assert_eq!(h.unwrap(&key, "remote-co", &one_use).await, rdek);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_key_version_at_a_cold_instance_is_invalid_and_harmless() {
    let h = Harness::start().await;
    h.tenant("lease-co", TenantMode::Leasing);
    let (_, key) = h.key("svc", None);
    let (dek, edek) = h.wrap(&key, "lease-co").await;
    let bytes = unb64(&edek);
    // Offset of the KMS-wrapped leased key: magic+version 4, mode 1, lp16 tenant,
    // lp16 config, key version 4, leased key id 16, then its lp16 length. The built-in
    // KMS ciphertext starts with the master key version (u32, big endian).
    let wrapped_at = 4 + 1 + 2 + "lease-co".len() + 2 + "builtin-1".len() + 4 + 16 + 2;
    assert_eq!(
        &bytes[wrapped_at..wrapped_at + 4],
        &1u32.to_be_bytes(),
        "layout as expected"
    );
    // A second ES instance has not seen this leased key: its unwrap goes to the KMS.
    let other = h.second_instance().await;
    for v in [0u32, 7, u32::MAX] {
        let mut t = bytes.clone();
        t[wrapped_at..wrapped_at + 4].copy_from_slice(&v.to_be_bytes());
        let r = h.unwrap_at(&other, &key, "lease-co", &b64(&t)).await;
        h.expect_error(&r, 422, "edek_invalid");
    }
    // The genuine EDEK still unwraps there: a forged EDEK must not revoke the lease.
    let r = h.unwrap_at(&other, &key, "lease-co", &edek).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(unb64(r.json()["dek"].as_str().unwrap()), dek);
}

// ---- key_retired -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edeks_under_a_retired_config_answer_key_retired() {
    let h = Harness::start().await;
    h.tenant("lease-co", TenantMode::Leasing);
    h.tenant("remote-co", TenantMode::Remote);
    let (key_id, key) = h.key("svc", None);
    for tenant in ["lease-co", "remote-co"] {
        let (_, edek) = h.wrap(&key, tenant).await;
        let mut config = h.sqlite.config(tenant, "builtin-1").unwrap().unwrap();
        config.state = ConfigState::Retired;
        h.sqlite.put_config(&config).unwrap();
        let r = h.unwrap_req(&key, tenant, &edek).await;
        h.expect_error(&r, 422, "key_retired");
        let r = h
            .post(REKEY, Some(&key), &body_for(REKEY, tenant, &edek))
            .await;
        h.expect_error(&r, 422, "key_retired");
        let r = h
            .post(
                BATCH_UNWRAP,
                Some(&key),
                &body_for(BATCH_UNWRAP, tenant, &edek),
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["failures"]["a"]["code"], "key_retired");
    }
    let ev = h.events();
    let retired: Vec<_> = ev
        .iter()
        .filter(|e| e.code.as_deref() == Some("key_retired"))
        .collect();
    assert_eq!(retired.len(), 4);
    assert!(retired.iter().all(|e| e.principal == key_id));
}

// ---- KMS errors --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_builtin_key_denies_a_remote_tenant_at_once() {
    let h = Harness::start().await;
    h.tenant("remote-co", TenantMode::Remote);
    let (key_id, key) = h.key("svc", None);
    let (dek, edek) = h.wrap(&key, "remote-co").await;
    h.builtin
        .set_enabled("remote-co", "builtin-1", None, false)
        .unwrap();
    let r = h
        .post(WRAP, Some(&key), &body_for(WRAP, "remote-co", ""))
        .await;
    h.expect_error(&r, 403, "kms_denied");
    let r = h.unwrap_req(&key, "remote-co", &edek).await;
    h.expect_error(&r, 403, "kms_denied");
    let r = h
        .post(REKEY, Some(&key), &body_for(REKEY, "remote-co", &edek))
        .await;
    h.expect_error(&r, 403, "kms_denied");
    let r = h
        .post(
            BATCH_UNWRAP,
            Some(&key),
            &body_for(BATCH_UNWRAP, "remote-co", &edek),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["failures"]["a"]["code"], "kms_denied");
    assert_eq!(r.json()["keys"], json!({}));

    let ev = h.events();
    let denied: Vec<_> = ev
        .iter()
        .filter(|e| e.code.as_deref() == Some("kms_denied"))
        .collect();
    assert_eq!(denied.len(), 3, "{ev:#?}");
    for e in denied {
        assert_eq!(
            (e.outcome, e.principal.as_str()),
            ("failure", key_id.as_str())
        );
        assert_eq!(e.kms.as_ref().map(|k| k.provider.as_str()), Some("builtin"));
    }

    // Re-enabled: access is back at once.
    h.builtin
        .set_enabled("remote-co", "builtin-1", None, true)
        .unwrap();
    assert_eq!(h.unwrap(&key, "remote-co", &edek).await, dek);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_kms_failures_map_to_their_codes() {
    let h = Harness::start_with(Opts {
        retry: RetryPolicy {
            timeout: Duration::from_millis(150),
            attempts: 2,
            backoff: Duration::from_millis(5),
        },
        ..Opts::default()
    })
    .await;
    h.tenant("remote-co", TenantMode::Remote);
    h.tenant("lease-co", TenantMode::Leasing);
    let fake = Arc::new(FakeKms::new());
    let lease_fake = Arc::new(FakeKms::new());
    h.service
        .set_kms_override("remote-co", "builtin-1", fake.clone() as Arc<dyn Kms>);
    h.service
        .set_kms_override("lease-co", "builtin-1", lease_fake.clone() as Arc<dyn Kms>);
    let (key_id, key) = h.key("svc", None);

    // Normal: a round trip through the fake.
    let (dek, edek) = h.wrap(&key, "remote-co").await;
    assert_eq!(h.unwrap(&key, "remote-co", &edek).await, dek);
    assert_eq!(
        h.events().last().unwrap().kms.as_ref().unwrap().provider,
        "fake"
    );

    // (behaviour, status, code, Retry-After expected, KMS calls per request)
    let cases = [
        (Behavior::Deny, 403, "kms_denied", false, 1),
        (Behavior::Unreachable, 503, "kms_unreachable", true, 2),
        (Behavior::Hang, 504, "kms_timeout", false, 2),
        (Behavior::Fail, 502, "kms_error", false, 1),
    ];
    for (b, status, code, retry_after, calls) in cases {
        fake.set(b);
        for (route, body) in [
            (WRAP, body_for(WRAP, "remote-co", "")),
            (UNWRAP, body_for(UNWRAP, "remote-co", &edek)),
        ] {
            let before = fake.calls();
            let r = h.post(route, Some(&key), &body).await;
            h.expect_error(&r, status, code);
            assert_eq!(
                r.header("retry-after").is_some(),
                retry_after,
                "{b:?} {route}: {:?}",
                r.headers
            );
            if let Some(s) = r.header("retry-after") {
                assert!(s.parse::<u64>().is_ok_and(|n| n >= 1), "{s}");
            }
            assert_eq!(fake.calls() - before, calls, "{b:?} {route}: retries");
        }
        let e = h.events().last().cloned().unwrap();
        assert_eq!(
            (e.code.as_deref(), e.principal.as_str(), e.outcome),
            (Some(code), key_id.as_str(), "failure")
        );
    }
    fake.set(Behavior::Normal);
    assert_eq!(h.unwrap(&key, "remote-co", &edek).await, dek);

    // A leasing tenant that never held a lease: unreachable or timed out is reported as
    // such (`lease_expired` is for a lease that ran out during an outage), a denial is
    // `kms_denied`.
    for (b, status, code) in [
        (Behavior::Unreachable, 503, "kms_unreachable"),
        (Behavior::Hang, 504, "kms_timeout"),
        (Behavior::Fail, 502, "kms_error"),
        (Behavior::Deny, 403, "kms_denied"),
    ] {
        lease_fake.set(b);
        let r = h
            .post(WRAP, Some(&key), &body_for(WRAP, "lease-co", ""))
            .await;
        h.expect_error(&r, status, code);
        if code == "kms_unreachable" {
            assert!(r.header("retry-after").is_some());
        }
    }
}

// ---- rate_limited ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    // 1 request/s per tenant, 2 per key, bursts of one second's worth.
    let h = Harness::start_with(Opts {
        per_tenant: 1.0,
        per_key: 2.0,
        ..Opts::default()
    })
    .await;
    for t in ["t1", "t2", "t3"] {
        h.tenant(t, TenantMode::Leasing);
    }
    let (_, key) = h.key("svc", None);
    let (_, other_key) = h.key("other", None);
    let check_429 = |r: &common::Resp| {
        h.expect_error(r, 429, "rate_limited");
        let s = r.header("retry-after").expect("Retry-After");
        let n: u64 = s.parse().expect("whole seconds");
        assert!((1..=2).contains(&n), "Retry-After {n}");
    };
    h.wrap(&key, "t1").await;
    // Per tenant: t1 is out of tokens, whichever key asks.
    let r = h.post(WRAP, Some(&key), &body_for(WRAP, "t1", "")).await;
    check_429(&r);
    let r = h
        .post(WRAP, Some(&other_key), &body_for(WRAP, "t1", ""))
        .await;
    check_429(&r);
    // Per key: the second request of `key` passes, the third is limited on another tenant.
    h.wrap(&key, "t2").await;
    let r = h.post(WRAP, Some(&key), &body_for(WRAP, "t3", "")).await;
    check_429(&r);
    // A batch costs one token per item: three items are more than t2 has.
    let r = h
        .post(
            BATCH_WRAP,
            Some(&other_key),
            &json!({ "tenant_id": "t2", "ids": ["a", "b", "c"], "metadata": md() }),
        )
        .await;
    h.expect_error(&r, 429, "rate_limited");
    let s = r.header("retry-after").expect("Retry-After");
    assert!(s.parse::<u64>().is_ok_and(|n| n >= 1), "{s}");
}

// ---- audit ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_failures_and_denials_with_the_principal() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    h.tenant("remote-co", TenantMode::Remote);
    let (key_id, key) = h.key("svc", None);
    let (_, other_id_key) = h.key("other", None);
    let (_, edek) = h.wrap(&key, "acme").await;
    let (_, redek) = h.wrap(&key, "remote-co").await;
    let with_rid = |tenant: &str, edek: &str, rid: &str| json!({ "tenant_id": tenant, "edek": edek, "metadata": { "requesting_id": "user-17", "request_id": rid } });
    // edek_invalid
    let r = h
        .post(UNWRAP, Some(&key), &with_rid("acme", "AAAA", "r-invalid"))
        .await;
    h.expect_error(&r, 422, "edek_invalid");
    // tenant_not_found (all-tenants key)
    let r = h
        .post(UNWRAP, Some(&key), &with_rid("ghost", &edek, "r-ghost"))
        .await;
    h.expect_error(&r, 404, "tenant_not_found");
    // kms_denied
    h.builtin
        .set_enabled("remote-co", "builtin-1", None, false)
        .unwrap();
    let r = h
        .post(
            UNWRAP,
            Some(&key),
            &with_rid("remote-co", &redek, "r-denied"),
        )
        .await;
    h.expect_error(&r, 403, "kms_denied");
    // tenant_disabled
    h.set_disabled("acme", true);
    let r = h
        .post(UNWRAP, Some(&key), &with_rid("acme", &edek, "r-disabled"))
        .await;
    h.expect_error(&r, 409, "tenant_disabled");
    // Another key's failure is attributed to that key.
    let r = h
        .post(
            UNWRAP,
            Some(&other_id_key),
            &with_rid("acme", &edek, "r-other"),
        )
        .await;
    h.expect_error(&r, 409, "tenant_disabled");

    let ev = h.events();
    let find = |rid: &str| {
        ev.iter()
            .find(|e| e.metadata["request_id"] == rid)
            .unwrap_or_else(|| panic!("no event for {rid}: {ev:#?}"))
    };
    for (rid, tenant, code) in [
        ("r-invalid", "acme", "edek_invalid"),
        // Unknown tenants: the ES operator's chain, with the name in `detail`.
        ("r-ghost", "", "tenant_not_found"),
        ("r-denied", "remote-co", "kms_denied"),
        ("r-disabled", "acme", "tenant_disabled"),
    ] {
        let e = find(rid);
        assert_eq!(e.principal, key_id, "{rid}");
        assert_eq!(e.action, "unwrap");
        assert_eq!(e.outcome, "failure");
        assert_eq!(e.code.as_deref(), Some(code));
        assert_eq!(e.tenant_id, tenant);
        if tenant.is_empty() {
            assert_eq!(e.detail.as_ref().unwrap()["requested_tenant"], "ghost");
        }
        assert!(!e.time.is_empty() && e.time.ends_with('Z'));
    }
    assert_ne!(find("r-other").principal, key_id);
    // Failed events carry no key material either.
    let text = serde_json::to_string(&ev).unwrap();
    for dek in h.deks.lock().unwrap().iter() {
        for enc in encodings(dek) {
            assert!(!text.as_bytes().windows(enc.len()).any(|w| w == enc));
        }
    }
    assert!(!text.contains(&edek), "the audit log holds no EDEK");
}

/// Requests refused at the edge (tenant or operation out of scope) are audit events too,
/// attributed to the key, with the request metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_service_are_audited() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (key_id, scoped) = h.key_full("scoped", Some(&["acme"]), &["wrap"], None);
    let body = |tenant: &str, rid: &str| json!({ "tenant_id": tenant, "metadata": { "requesting_id": "u", "request_id": rid } });
    let r = h
        .post(WRAP, Some(&scoped), &body("other", "r-tenant"))
        .await;
    h.expect_error(&r, 403, "tenant_forbidden");
    let r = h
        .post(
            UNWRAP,
            Some(&scoped),
            &json!({ "tenant_id": "acme", "edek": "AAAA", "metadata": { "requesting_id": "u", "request_id": "r-op" } }),
        )
        .await;
    h.expect_error(&r, 403, "operation_forbidden");
    let ev = h.events();
    for (rid, action, code, tenant) in [
        // Outside the key's scope: the ES operator's chain (no tenant lookup).
        ("r-tenant", "wrap", "tenant_forbidden", ""),
        ("r-op", "unwrap", "operation_forbidden", "acme"),
    ] {
        let e = ev
            .iter()
            .find(|e| e.metadata["request_id"] == rid)
            .unwrap_or_else(|| panic!("no event for {rid}"));
        assert_eq!(
            (e.principal.as_str(), e.action.as_str(), e.outcome),
            (key_id.as_str(), action, "failure")
        );
        assert_eq!(
            (e.code.as_deref(), e.tenant_id.as_str()),
            (Some(code), tenant)
        );
    }
}

#[test]
fn a_batch_larger_than_the_rate_passes_once_then_pays_its_debt() {
    use keystead_server::auth::Principal;
    use keystead_server::http::RateLimiter;
    let limiter = RateLimiter::new(10.0, 0.0);
    let p = Principal {
        key_id: "k".into(),
        name: "k".into(),
        tenants: None,
        ops: Default::default(),
    };
    // A full bucket lets a 100-item batch through even though the rate is 10/s ...
    assert!(limiter.check(&p, "t", 100).is_ok());
    // ... and the debt refuses what follows, with a Retry-After that covers it.
    let e = limiter.check(&p, "t", 1).unwrap_err();
    assert_eq!(e.code, "rate_limited");
    assert!(e.retry_after.unwrap() >= 9, "{:?}", e.retry_after);
}

#[test]
fn rate_limit_buckets_are_bounded() {
    use keystead_server::auth::Principal;
    use keystead_server::http::RateLimiter;
    let limiter = RateLimiter::new(1000.0, 0.0);
    let p = Principal {
        key_id: "k".into(),
        name: "k".into(),
        tenants: None,
        ops: Default::default(),
    };
    // An all-tenants key naming 10 000 tenants (each a bucket) ...
    for i in 0..10_000 {
        limiter.check(&p, &format!("t{i}"), 1).unwrap();
    }
    assert_eq!(limiter.buckets(), 10_000);
    // ... whose buckets refill within a second: the next new bucket sweeps them.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // A bucket in debt is kept (forgetting it would forgive the debt).
    limiter.check(&p, "busy", 5000).unwrap();
    limiter.check(&p, "another", 1).unwrap();
    assert!(limiter.buckets() <= 3, "{} buckets", limiter.buckets());
    assert!(limiter.check(&p, "busy", 1).is_err(), "the debt stands");
}

/// `503 audit_unavailable`: a key operation whose audit event cannot be recorded fails
/// closed, and returns no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_sink_failure_fails_closed() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("svc", None);
    let (_, edek) = h.wrap(&key, "acme").await;
    h.audit_fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = h.post(WRAP, Some(&key), &body_for(WRAP, "acme", "")).await;
    h.expect_error(&r, 503, "audit_unavailable");
    assert!(r.header("retry-after").is_some());
    let r = h
        .post(UNWRAP, Some(&key), &body_for(UNWRAP, "acme", &edek))
        .await;
    h.expect_error(&r, 503, "audit_unavailable");
    h.audit_fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let r = h
        .post(UNWRAP, Some(&key), &body_for(UNWRAP, "acme", &edek))
        .await;
    assert_eq!(r.status, 200);
}

/// `500 internal`: a storage failure is a generic error with a correlation id only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failure_is_internal_with_a_correlation_id() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("svc", None);
    h.store
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = h.post(WRAP, Some(&key), &body_for(WRAP, "acme", "")).await;
    h.expect_error(&r, 500, "internal");
    let msg = r.json()["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("correlation id"), "{msg}");
    assert!(!msg.contains("disk I/O"), "5xx bodies are generic: {msg}");
}

/// `503 lease_expired` over the socket: a leasing tenant keeps serving from its lease while
/// the KMS is unreachable, and fails closed once the lease (1 h for harness tenants) has run
/// out since the last successful KMS call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_runs_out_during_an_outage() {
    let h = Harness::start_with(Opts {
        retry: RetryPolicy {
            timeout: Duration::from_millis(150),
            attempts: 1,
            backoff: Duration::from_millis(5),
        },
        ..Opts::default()
    })
    .await;
    h.tenant("lease-co", TenantMode::Leasing);
    let fake = Arc::new(FakeKms::new());
    h.service
        .set_kms_override("lease-co", "builtin-1", fake.clone() as Arc<dyn Kms>);
    let (_, key) = h.key("svc", None);
    let (_, edek) = h.wrap(&key, "lease-co").await;
    fake.set(Behavior::Unreachable);
    h.clock.advance(Duration::from_secs(1800));
    let r = h
        .post(UNWRAP, Some(&key), &body_for(UNWRAP, "lease-co", &edek))
        .await;
    assert_eq!(r.status, 200, "still inside the lease");
    h.clock.advance(Duration::from_secs(1801));
    h.service.renew_due_leases().await;
    for route in [WRAP, UNWRAP] {
        let r = h
            .post(route, Some(&key), &body_for(route, "lease-co", &edek))
            .await;
        h.expect_error(&r, 503, "lease_expired");
        assert!(r.header("retry-after").is_some());
    }
}
