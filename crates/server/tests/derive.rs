//! `POST /v1/keys/derive`: keys for deterministic fields and blind indexes, derived from
//! per-tenant secrets that only the tenant's KMS unwraps, with rotation.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Harness, md, unb64};
use keystead_core::search::{DerivationSecret, DerivedKey, Purpose};
use keystead_core::{FieldPath, SecretId, TenantId};
use keystead_server::kms::{KeyRef, Kms};
use keystead_server::service::derivation_secret_context;
use keystead_server::store::{SecretState, TenantMode};
use serde_json::{Value, json};

const DERIVE: &str = "/v1/keys/derive";

/// (key, secret id, current) per path.
type Keys = BTreeMap<String, Vec<(Vec<u8>, String, bool)>>;

fn parse(v: &Value) -> Keys {
    let mut out = Keys::new();
    for (path, list) in v["keys"].as_object().expect("keys") {
        let entries = list
            .as_array()
            .expect("array")
            .iter()
            .map(|e| {
                assert_eq!(e.as_object().unwrap().len(), 3, "{e}");
                (
                    unb64(e["key"].as_str().unwrap()),
                    e["secret_id"].as_str().unwrap().to_owned(),
                    e["current"].as_bool().unwrap(),
                )
            })
            .collect();
        out.insert(path.clone(), entries);
    }
    out
}

async fn derive_at(
    h: &Harness,
    base: &str,
    key: &str,
    tenant: &str,
    purpose: &str,
    paths: &[&str],
) -> Keys {
    let body = json!({ "tenant_id": tenant, "purpose": purpose, "paths": paths, "metadata": md() });
    let r = h
        .post_to(base, DERIVE, Some(key), serde_json::to_vec(&body).unwrap())
        .await;
    assert_eq!(r.status, 200, "derive: {}", r.text);
    parse(&r.json())
}

async fn derive(h: &Harness, key: &str, tenant: &str, purpose: &str, paths: &[&str]) -> Keys {
    derive_at(h, &h.api, key, tenant, purpose, paths).await
}

/// The plaintext of a stored derivation secret, unwrapped through the built-in KMS the
/// way the service does it.
async fn stored_secret(h: &Harness, tenant: &str, id: &str) -> DerivationSecret {
    let rec = h
        .sqlite
        .derivation_secrets(tenant)
        .unwrap()
        .into_iter()
        .find(|s| s.id == id)
        .expect("stored secret");
    let ctx = derivation_secret_context(tenant, &rec.config, &rec.id, &rec.cache_id);
    let key_ref = KeyRef {
        tenant: tenant.into(),
        config: rec.config.clone(),
        version: Some(rec.key_version),
    };
    let bytes = h
        .builtin
        .unwrap(&key_ref, &rec.wrapped, &ctx)
        .await
        .unwrap();
    DerivationSecret::from_bytes(bytes.as_slice().try_into().unwrap())
}

#[tokio::test]
async fn keys_are_stable_per_tenant_purpose_and_path_and_match_the_kms_protected_secret() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    h.tenant("globex", TenantMode::Remote);
    let (_, key) = h.key("svc", None);

    let a = derive(&h, &key, "acme", "deterministic", &["email", "ssn"]).await;
    assert_eq!(a.len(), 2);
    for (path, entries) in &a {
        assert_eq!(entries.len(), 1, "{path}: one live secret");
        let (k, id, current) = &entries[0];
        assert_eq!((k.len(), id.as_str(), *current), (64, "ds-1", true));
    }
    assert_ne!(a["email"][0].0, a["ssn"][0].0, "paths get different keys");
    // Stable across calls and instances (the secret lives in the store, KMS-wrapped).
    assert_eq!(
        derive(&h, &key, "acme", "deterministic", &["email"]).await["email"],
        a["email"]
    );
    let other = h.second_instance().await;
    assert_eq!(
        derive_at(&h, &other, &key, "acme", "deterministic", &["email"]).await["email"],
        a["email"]
    );
    // Blind-index keys are 32 bytes and differ from deterministic ones.
    let b = derive(&h, &key, "acme", "blind_index", &["email"]).await;
    assert_eq!(b["email"][0].0.len(), 32);
    assert_ne!(b["email"][0].0[..], a["email"][0].0[..32]);
    // Another tenant (remote mode: the secret is unwrapped on every derive) differs.
    let g = derive(&h, &key, "globex", "deterministic", &["email"]).await;
    assert_ne!(g["email"][0].0, a["email"][0].0);
    assert_eq!(
        derive(&h, &key, "globex", "deterministic", &["email"]).await,
        g
    );

    // The answer is exactly HKDF over the secret that only the tenant's KMS can unwrap.
    let secret = stored_secret(&h, "acme", "ds-1").await;
    let expect = DerivedKey::derive(
        &secret,
        &TenantId::new("acme").unwrap(),
        &SecretId::new("ds-1").unwrap(),
        Purpose::Deterministic,
        &FieldPath::new("email").unwrap(),
    );
    assert_eq!(expect.expose_secret(), &a["email"][0].0[..]);

    // One secret per tenant however many derives ran.
    let recs = h.sqlite.derivation_secrets("acme").unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].state, SecretState::Current);
    assert_ne!(recs[0].wrapped.len(), 32, "stored wrapped, not raw");
}

#[tokio::test]
async fn rotation_answers_current_and_previous_secret_until_finished() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("svc", Some(&["acme"]));
    let before = derive(&h, &key, "acme", "blind_index", &["email"]).await;

    let id = h.service.rotate_derivation_secret("acme").await.unwrap();
    assert_eq!(id, "ds-2");
    let during = derive(&h, &key, "acme", "blind_index", &["email"]).await;
    let e = &during["email"];
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!((e[0].1.as_str(), e[0].2), ("ds-2", true), "current first");
    assert_eq!((e[1].1.as_str(), e[1].2), ("ds-1", false));
    assert_eq!(
        e[1].0, before["email"][0].0,
        "the previous key is unchanged"
    );
    assert_ne!(e[0].0, e[1].0);

    // One rotation at a time.
    let err = h
        .service
        .rotate_derivation_secret("acme")
        .await
        .unwrap_err();
    assert!(err.message.contains("in progress"), "{}", err.message);

    assert_eq!(
        h.service.finish_derivation_rotation("acme").await.unwrap(),
        "ds-1"
    );
    let after = derive(&h, &key, "acme", "blind_index", &["email"]).await;
    assert_eq!(after["email"].len(), 1);
    assert_eq!(after["email"][0], e[0]);
    assert!(
        h.service.finish_derivation_rotation("acme").await.is_err(),
        "nothing to finish"
    );

    // A second rotation works once the first is finished.
    assert_eq!(
        h.service.rotate_derivation_secret("acme").await.unwrap(),
        "ds-3"
    );
    let states: Vec<_> = h
        .sqlite
        .derivation_secrets("acme")
        .unwrap()
        .into_iter()
        .map(|s| (s.id, s.state))
        .collect();
    assert_eq!(
        states,
        [
            ("ds-1".into(), SecretState::Retired),
            ("ds-2".into(), SecretState::Rotating),
            ("ds-3".into(), SecretState::Current)
        ]
    );
    // Operator changes are audit events.
    let changes: Vec<_> = h
        .events()
        .into_iter()
        .filter(|e| e.action == "config_changed")
        .collect();
    assert_eq!(
        changes.len(),
        5,
        "three rotations and two finishes attempted"
    );
    assert!(changes.iter().all(|e| e.principal == "operator"));
    assert_eq!(changes.iter().filter(|e| e.outcome == "failure").count(), 2);
}

#[tokio::test]
async fn every_derive_is_audited_with_purpose_and_paths_but_no_key() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (kid, key) = h.key("svc", Some(&["acme"]));
    let keys = derive(&h, &key, "acme", "deterministic", &["a", "b.c"]).await;
    let ev = h
        .events()
        .into_iter()
        .find(|e| e.action == "derive")
        .expect("a derive event");
    assert_eq!(
        (ev.outcome, ev.principal.as_str(), ev.count),
        ("success", kid.as_str(), Some(2))
    );
    assert_eq!(
        ev.detail,
        Some(json!({ "purpose": "deterministic", "paths": ["a", "b.c"] }))
    );
    assert_eq!(ev.metadata, md());
    let kms = ev.kms.as_ref().expect("kms info");
    assert_eq!(
        (kms.provider.as_str(), kms.config_id.as_str()),
        ("builtin", "builtin-1")
    );
    let text = serde_json::to_string(&h.events()).unwrap();
    for entries in keys.values() {
        for enc in common::encodings(&entries[0].0) {
            assert!(!text.as_bytes().windows(enc.len()).any(|w| w == enc));
        }
    }

    // Refused derives are events too.
    let (_, no_derive) = h.key_full("no-derive", Some(&["acme"]), &["wrap"], None);
    let body = json!({ "tenant_id": "acme", "purpose": "deterministic", "paths": ["a"], "metadata": md() });
    let r = h.post(DERIVE, Some(&no_derive), &body).await;
    h.expect_error(&r, 403, "operation_forbidden");
    let last = h.events().pop().unwrap();
    assert_eq!((last.action.as_str(), last.outcome), ("derive", "failure"));
    assert_eq!(last.code.as_deref(), Some("operation_forbidden"));
}

#[tokio::test]
async fn bad_requests_are_refused_before_any_kms_call() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("svc", Some(&["acme"]));
    let cases = [
        json!({ "tenant_id": "acme", "purpose": "random", "paths": ["a"], "metadata": md() }),
        json!({ "tenant_id": "acme", "purpose": "deterministic", "paths": [], "metadata": md() }),
        json!({ "tenant_id": "acme", "purpose": "deterministic", "paths": ["a", "a"], "metadata": md() }),
        json!({ "tenant_id": "acme", "purpose": "deterministic", "paths": [""], "metadata": md() }),
        json!({ "tenant_id": "acme", "purpose": "deterministic", "paths": ["a\u{1}"], "metadata": md() }),
        json!({ "tenant_id": "acme", "purpose": "deterministic", "paths": ["x".repeat(257)], "metadata": md() }),
        json!({ "tenant_id": "acme", "purpose": "deterministic", "paths": (0..1001).map(|i| i.to_string()).collect::<Vec<_>>(), "metadata": md() }),
        json!({ "tenant_id": "acme", "purpose": "deterministic", "paths": ["a"] }),
        json!({ "tenant_id": "acme", "purpose": "deterministic", "paths": ["a"], "metadata": md(), "extra": 1 }),
        json!({ "tenant_id": "acme", "purpose": "deterministic", "paths": "a", "metadata": md() }),
    ];
    for body in &cases {
        let r = h.post(DERIVE, Some(&key), body).await;
        h.expect_error(&r, 400, "bad_request");
    }
    assert!(
        h.sqlite.derivation_secrets("acme").unwrap().is_empty(),
        "no secret was made"
    );
    // Scope and existence.
    h.tenant("other", TenantMode::Leasing);
    let body = json!({ "tenant_id": "other", "purpose": "deterministic", "paths": ["a"], "metadata": md() });
    let r = h.post(DERIVE, Some(&key), &body).await;
    h.expect_error(&r, 403, "tenant_forbidden");
    let r = h.post(DERIVE, None, &body).await;
    h.expect_error(&r, 401, "unauthenticated");
    h.set_disabled("acme", true);
    let body = json!({ "tenant_id": "acme", "purpose": "deterministic", "paths": ["a"], "metadata": md() });
    let r = h.post(DERIVE, Some(&key), &body).await;
    h.expect_error(&r, 409, "tenant_disabled");
}

#[tokio::test]
async fn a_denying_kms_ends_derives_in_remote_mode_at_once_and_in_leasing_mode_at_expiry() {
    let h = Harness::start().await;
    h.tenant("remote-co", TenantMode::Remote);
    h.tenant("lease-co", TenantMode::Leasing);
    let (_, key) = h.key("svc", None);
    let body = |t: &str| json!({ "tenant_id": t, "purpose": "blind_index", "paths": ["a"], "metadata": md() });
    derive(&h, &key, "remote-co", "blind_index", &["a"]).await;
    derive(&h, &key, "lease-co", "blind_index", &["a"]).await;
    for t in ["remote-co", "lease-co"] {
        h.builtin.set_enabled(t, "builtin-1", None, false).unwrap();
    }
    let r = h.post(DERIVE, Some(&key), &body("remote-co")).await;
    h.expect_error(&r, 403, "kms_denied");
    // Leasing: the unwrapped secret serves for the lease (1 h), then the KMS is asked again.
    let r = h.post(DERIVE, Some(&key), &body("lease-co")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    h.clock.advance(Duration::from_secs(3601));
    let r = h.post(DERIVE, Some(&key), &body("lease-co")).await;
    h.expect_error(&r, 403, "kms_denied");
    // Re-enabled: derives work again, with the same keys.
    h.builtin
        .set_enabled("lease-co", "builtin-1", None, true)
        .unwrap();
    let r = h.post(DERIVE, Some(&key), &body("lease-co")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A first derive while the KMS denies makes no secret.
    h.tenant("new-co", TenantMode::Leasing);
    h.builtin
        .set_enabled("new-co", "builtin-1", None, false)
        .unwrap();
    let r = h.post(DERIVE, Some(&key), &body("new-co")).await;
    h.expect_error(&r, 403, "kms_denied");
    assert!(h.sqlite.derivation_secrets("new-co").unwrap().is_empty());
}

#[tokio::test]
async fn concurrent_first_derives_agree_on_one_secret() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("svc", Some(&["acme"]));
    let other = h.second_instance().await;
    let (a, b, c) = tokio::join!(
        derive(&h, &key, "acme", "deterministic", &["p"]),
        derive_at(&h, &other, &key, "acme", "deterministic", &["p"]),
        derive(&h, &key, "acme", "deterministic", &["p"]),
    );
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(h.sqlite.derivation_secrets("acme").unwrap().len(), 1);
}

/// A KMS takeover: the tenant starts on one config (the vendor-provided key), gets a new
/// primary, and `rewrap_derivation_secrets` moves its secrets there. Derived keys are
/// unchanged (values written before stay searchable), the secrets are now unwrapped by the
/// new config only, and the old config can be retired without breaking derives.
#[tokio::test]
async fn derivation_secrets_move_to_a_new_primary_config() {
    let h = Harness::start().await;
    h.tenant("acme", TenantMode::Remote);
    let (_, key) = h.key("k", None);
    let before = derive(&h, &key, "acme", "blind_index", &["email"]).await;
    h.service.rotate_derivation_secret("acme").await.unwrap();
    let both = derive(&h, &key, "acme", "blind_index", &["email"]).await;
    assert_eq!(both["email"].len(), 2);

    // The tenant's own key: a second built-in config, made primary.
    h.add_kms_config("acme", "own-1", "builtin", &json!({}));
    h.builtin.create_version("acme", "own-1").unwrap();
    let mut t = h.sqlite.tenant("acme").unwrap().unwrap();
    t.primary_config = "own-1".into();
    h.sqlite.update_tenant(&t).unwrap();

    let moved = h.service.rewrap_derivation_secrets("acme").await.unwrap();
    assert_eq!(moved, ["ds-1", "ds-2"]);
    for rec in h.sqlite.derivation_secrets("acme").unwrap() {
        assert_eq!(rec.config, "own-1", "{} still under {}", rec.id, rec.config);
    }
    // Idempotent: nothing left to move.
    assert!(
        h.service
            .rewrap_derivation_secrets("acme")
            .await
            .unwrap()
            .is_empty()
    );
    let ev = h
        .events()
        .into_iter()
        .rev()
        .find(|e| e.action == "config_changed")
        .unwrap();
    assert_eq!(
        ev.detail.as_ref().unwrap()["change"],
        "derivation_secrets_rewrapped"
    );

    // The old config retired and its key disabled: derives still answer the same keys.
    let mut old = h.sqlite.config("acme", "builtin-1").unwrap().unwrap();
    old.state = keystead_server::store::ConfigState::Retired;
    h.sqlite.put_config(&old).unwrap();
    h.builtin
        .set_enabled("acme", "builtin-1", None, false)
        .unwrap();
    let after = derive(&h, &key, "acme", "blind_index", &["email"]).await;
    assert_eq!(after, both);
    // The first secret (current then, rotating now) derives the same key as at the start.
    assert_eq!(
        after["email"][1].0, before["email"][0].0,
        "the first secret's keys are unchanged"
    );
}
