//! The built-in KMS through the KMS conformance checks that need no peer to stop (the
//! built-in KMS lives in the ES process): adapter-level generate / wrap / unwrap and
//! binding, and round trips through the API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Harness;
use common::conformance::{adapter_checks, tenants};
use serde_json::json;

#[tokio::test]
async fn builtin_adapter_binds_context_tenant_and_config() {
    let h = Harness::start().await;
    let t = tenants(&h, "builtin", &json!({}));
    adapter_checks(&h, "builtin", &json!({}), &t).await;
    for tenant in [&t.remote, &t.lease] {
        let (dek, edek) = h.wrap(&t.key, tenant).await;
        assert_eq!(h.unwrap(&t.key, tenant, &edek).await, dek);
    }
}

#[tokio::test]
async fn unknown_provider_and_bad_settings_are_refused() {
    let h = Harness::start().await;
    let ctx = h.build_context();
    let e = keystead_server::kms::registry::build("nope", json!({}), &ctx, &h.builtin)
        .err()
        .expect("unknown provider");
    assert!(e.to_string().contains("not available"), "{e}");
    let e = keystead_server::kms::registry::build("builtin", json!({"x": 1}), &ctx, &h.builtin)
        .err()
        .expect("builtin takes no settings");
    assert!(e.to_string().contains("no settings"), "{e}");
    // A tenant whose primary config names an unknown provider: 502 kms_error, no panic.
    h.kms_tenant(
        "ghost",
        keystead_server::store::TenantMode::Remote,
        "ghost-1",
        "nope",
        &json!({}),
    );
    let (_, key) = h.key("k", None);
    let r = h
        .post(
            "/v1/keys/wrap",
            Some(&key),
            &json!({ "tenant_id": "ghost", "metadata": common::md() }),
        )
        .await;
    h.expect_error(&r, 502, "kms_error");
}
