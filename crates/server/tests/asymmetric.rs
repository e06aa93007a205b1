//! Asymmetric master keys with the built-in KMS: DEKs are HPKE-sealed to the tenant's X25519
//! public key (asymmetric-mode EDEKs, FORMAT.md §7.4). Wraps make no KMS call but are still
//! audited; every unwrap is a KMS call, so a disabled key stops unwraps at once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Harness, b64, md, unb64};
use keystead_core::edek::{Edek, Mode};
use keystead_server::store::TenantMode;
use serde_json::json;

/// Successful built-in KMS calls so far, from the admin listener's metrics.
async fn kms_calls(h: &Harness) -> u64 {
    let r = h.get(&format!("{}/metrics", h.admin)).await;
    r.text
        .lines()
        .find(|l| {
            l.starts_with("keystead_kms_calls_total{provider=\"builtin\",outcome=\"success\"}")
        })
        .map_or(0, |l| l.rsplit(' ').next().unwrap().parse().unwrap())
}

#[tokio::test]
async fn wraps_need_no_kms_call_unwraps_do() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Asymmetric);
    let (_, key) = h.key("k", None);

    let (dek, edek) = h.wrap(&key, "acme").await;
    let parsed = Edek::parse(&unb64(&edek)).unwrap();
    assert_eq!(parsed.mode(), Mode::Asymmetric);
    assert_eq!(parsed.key_version().0, 1);
    assert_eq!(h.unwrap(&key, "acme", &edek).await, dek);

    // The public key is cached: ten more wraps, no KMS call.
    let before = kms_calls(&h).await;
    let mut wrapped = Vec::new();
    for _ in 0..10 {
        wrapped.push(h.wrap(&key, "acme").await);
    }
    assert_eq!(kms_calls(&h).await, before, "a wrap called the KMS");
    // Each unwrap is one KMS call.
    for (dek, edek) in &wrapped {
        assert_eq!(&h.unwrap(&key, "acme", edek).await, dek);
    }
    assert_eq!(kms_calls(&h).await, before + 10);

    // Every wrap is an audit event with the key version, although no KMS was called.
    let wraps: Vec<_> = h
        .events()
        .into_iter()
        .filter(|e| e.action == "wrap" && e.tenant_id == "acme")
        .collect();
    assert_eq!(wraps.len(), 11);
    for e in &wraps {
        assert_eq!(e.outcome, "success");
        let kms = e.kms.as_ref().unwrap();
        assert_eq!(
            (kms.provider.as_str(), kms.key_version),
            ("builtin", Some(1))
        );
    }
}

#[tokio::test]
async fn a_disabled_key_stops_unwraps_at_once_and_wraps_within_the_cache_time() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Asymmetric);
    let (_, key) = h.key("k", None);
    let (_, edek) = h.wrap(&key, "acme").await;
    h.builtin
        .set_enabled("acme", "builtin-1", None, false)
        .unwrap();

    let r = h.unwrap_req(&key, "acme", &edek).await;
    h.expect_error(&r, 403, "kms_denied");
    // Wraps use the cached public key for at most 30 s, then ask the KMS and are refused.
    h.clock.advance(Duration::from_secs(31));
    let r = h
        .post(
            "/v1/keys/wrap",
            Some(&key),
            &json!({ "tenant_id": "acme", "metadata": md() }),
        )
        .await;
    h.expect_error(&r, 403, "kms_denied");

    h.builtin
        .set_enabled("acme", "builtin-1", None, true)
        .unwrap();
    h.unwrap(&key, "acme", &edek).await;
}

#[tokio::test]
async fn rotation_keeps_old_edeks_and_tampering_is_edek_invalid() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Asymmetric);
    h.tenant("globex", TenantMode::Asymmetric);
    let (_, key) = h.key("k", None);
    let (dek1, edek1) = h.wrap(&key, "acme").await;

    h.builtin.create_version("acme", "builtin-1").unwrap();
    h.clock.advance(Duration::from_secs(31));
    let (dek2, edek2) = h.wrap(&key, "acme").await;
    assert_eq!(Edek::parse(&unb64(&edek2)).unwrap().key_version().0, 2);
    assert_eq!(h.unwrap(&key, "acme", &edek1).await, dek1);
    assert_eq!(h.unwrap(&key, "acme", &edek2).await, dek2);
    // rekey moves a v1 EDEK to v2, same DEK.
    let moved = h.rekey(&key, "acme", &edek1).await;
    assert_eq!(Edek::parse(&unb64(&moved)).unwrap().key_version().0, 2);
    assert_eq!(h.unwrap(&key, "acme", &moved).await, dek1);

    // Every flipped byte of the body, and the other tenant's EDEK: 422 edek_invalid.
    let raw = unb64(&edek2);
    for i in [raw.len() - 1, raw.len() - 20, raw.len() - 60] {
        let mut bad = raw.clone();
        bad[i] ^= 1;
        let r = h.unwrap_req(&key, "acme", &b64(&bad)).await;
        h.expect_error(&r, 422, "edek_invalid");
    }
    let r = h.unwrap_req(&key, "globex", &edek2).await;
    h.expect_error(&r, 422, "edek_invalid");
}

#[tokio::test]
async fn a_leasing_tenant_moves_to_asymmetric_with_rekey() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("k", None);
    let (dek, leased) = h.wrap(&key, "acme").await;
    let mut t = h.sqlite.tenant("acme").unwrap().unwrap();
    t.mode = TenantMode::Asymmetric;
    h.sqlite.update_tenant(&t).unwrap();
    let moved = h.rekey(&key, "acme", &leased).await;
    assert_eq!(
        Edek::parse(&unb64(&moved)).unwrap().mode(),
        Mode::Asymmetric
    );
    assert_eq!(h.unwrap(&key, "acme", &moved).await, dek);
    assert_eq!(h.unwrap(&key, "acme", &leased).await, dek);
}
