//! `GET /openapi.json` over a real socket: served without a key, the same document the code
//! generates, and consistent with what the routes answer (answer fields, error codes, the
//! JSON error shape on a wrong method). Schemathesis (scripts/schemathesis.sh) fuzzes the
//! routes against this document; these tests keep the basics in `cargo test`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::{Harness, md};
use keystead_server::store::TenantMode;
use serde_json::{Value, json};

fn doc() -> Value {
    serde_json::from_str(keystead_server::http::openapi::json()).unwrap()
}

/// The property names a component schema requires.
fn required(doc: &Value, schema: &str) -> BTreeSet<String> {
    doc["components"]["schemas"][schema]["required"]
        .as_array()
        .unwrap_or_else(|| panic!("{schema} has no required list"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn error_codes(doc: &Value) -> Vec<String> {
    serde_json::from_value(doc["components"]["schemas"]["ErrorCode"]["enum"].clone()).unwrap()
}

#[tokio::test]
async fn document_is_served_without_a_key() {
    let h = Harness::start().await;
    let r = h.get(&format!("{}/openapi.json", h.api)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.json(), doc());
    let paths = keys(&doc()["paths"]);
    for route in [
        "/v1/keys/wrap",
        "/v1/keys/unwrap",
        "/v1/keys/batch-wrap",
        "/v1/keys/batch-unwrap",
        "/v1/keys/rekey",
        "/v1/keys/derive",
        "/v1/events",
        "/health",
        "/openapi.json",
    ] {
        assert!(paths.contains(route), "{route} missing from {paths:?}");
    }
    // Only the API listener serves it.
    let r = h.get(&format!("{}/openapi.json", h.admin)).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn answers_have_the_documented_fields() {
    let h = Harness::start().await;
    let d = doc();
    h.tenant("acme", TenantMode::Leasing);
    let (_, key) = h.key("svc", Some(&["acme"]));

    let r = h
        .post(
            "/v1/keys/wrap",
            Some(&key),
            &json!({ "tenant_id": "acme", "metadata": md() }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(keys(&r.json()), required(&d, "WrapResp"));
    let edek = r.json()["edek"].as_str().unwrap().to_owned();

    let body = json!({ "tenant_id": "acme", "edek": edek, "metadata": md() });
    let r = h.post("/v1/keys/unwrap", Some(&key), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(keys(&r.json()), required(&d, "UnwrapResp"));
    let r = h.post("/v1/keys/rekey", Some(&key), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(keys(&r.json()), required(&d, "RekeyResp"));

    let r = h
        .post(
            "/v1/keys/derive",
            Some(&key),
            &json!({ "tenant_id": "acme", "purpose": "blind_index", "paths": ["email"], "metadata": md() }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(keys(&r.json()), required(&d, "DeriveResp"));
    assert_eq!(
        keys(&r.json()["keys"]["email"][0]),
        required(&d, "DerivedKeyResp")
    );

    let r = h
        .post(
            "/v1/keys/batch-wrap",
            Some(&key),
            &json!({ "tenant_id": "acme", "ids": ["a", "b"], "metadata": md() }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(keys(&r.json()), required(&d, "BatchWrapResp"));
    assert_eq!(keys(&r.json()["keys"]["a"]), required(&d, "WrapResp"));

    let r = h
        .post(
            "/v1/keys/batch-unwrap",
            Some(&key),
            &json!({ "tenant_id": "acme", "edeks": { "ok": edek, "bad": "AAAA" }, "metadata": md() }),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(keys(&v), required(&d, "BatchUnwrapResp"));
    assert!(v["keys"]["ok"].is_string());
    assert_eq!(keys(&v["failures"]["bad"]), required(&d, "ErrorBody"));
    let code = v["failures"]["bad"]["code"].as_str().unwrap();
    assert!(error_codes(&d).iter().any(|c| c == code), "{code}");

    let r = h
        .post(
            "/v1/events",
            Some(&key),
            &json!({ "tenant_id": "acme", "event": { "name": "USER_LOGIN" }, "metadata": md() }),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);

    let r = h.get(&format!("{}/health", h.api)).await;
    assert_eq!(keys(&r.json()), required(&d, "HealthResp"));
}

#[tokio::test]
async fn errors_use_documented_codes_and_shape() {
    let h = Harness::start().await;
    let codes = error_codes(&doc());
    let (_, key) = h.key("svc", Some(&["acme"]));
    let cases = [
        (
            h.post("/v1/keys/wrap", None, &json!({})).await,
            401,
            "unauthenticated",
        ),
        (
            h.post("/v1/keys/wrap", Some(&key), &json!({ "tenant_id": "acme" }))
                .await,
            400,
            "bad_request",
        ),
        (
            h.post(
                "/v1/keys/wrap",
                Some(&key),
                &json!({ "tenant_id": "other", "metadata": md() }),
            )
            .await,
            403,
            "tenant_forbidden",
        ),
        (
            h.post("/v1/keys/nope", Some(&key), &json!({})).await,
            404,
            "not_found",
        ),
    ];
    for (r, status, code) in &cases {
        h.expect_error(r, *status, code);
        assert!(codes.iter().any(|c| c == code), "{code} not in ErrorCode");
    }
}

#[tokio::test]
async fn wrong_method_keeps_the_error_shape() {
    let h = Harness::start().await;
    for (method, path, allow) in [
        (reqwest::Method::GET, "/v1/keys/wrap", "POST"),
        (reqwest::Method::PUT, "/v1/events", "POST"),
        (reqwest::Method::POST, "/health", "GET,HEAD"),
        (reqwest::Method::DELETE, "/openapi.json", "GET,HEAD"),
    ] {
        let r = h
            .http
            .request(method.clone(), format!("{}{path}", h.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405, "{method} {path}");
        let allowed = r
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.replace(' ', ""));
        assert_eq!(allowed.as_deref(), Some(allow), "{method} {path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["code"], "method_not_allowed", "{method} {path}: {v}");
        assert!(v["message"].is_string());
        assert!(
            error_codes(&doc())
                .iter()
                .any(|c| c == "method_not_allowed")
        );
    }
}
