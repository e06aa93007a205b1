//! The AWS KMS adapter against a real AWS KMS API on 127.0.0.1: `moto_server` (moto, from
//! the project venv: `bash scripts/setup-venv.sh`) for the conformance suite, and a small
//! in-test HTTP double speaking AWS's JSON error shapes for what moto does not do (refuse
//! a disabled key, throttle, fail with 5xx, hang).
//!
//! The suite's "KMS down" is SIGSTOP / SIGCONT of moto (see `aws_moto`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod aws_moto;
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_moto::{Moto, SECRET_ACCESS_KEY, settings, setup_context};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::conformance::{self, assert_denied, free_port};
use common::{Harness, md};
use keystead_server::kms::net::OutboundPolicy;
use keystead_server::kms::registry::{self, BuildContext};
use keystead_server::kms::{KeyRef, KmsError};
use keystead_server::store::TenantMode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_conformance_against_moto() {
    let moto = Moto::start().await;
    let arn = moto.create_key().await;
    let h = Harness::start().await;
    let s = settings(&moto.endpoint, &arn);
    let mut peer = moto;
    conformance::run(&h, "aws", &s, &mut peer).await;
    // Nothing the ES recorded holds the secret access key.
    let events = serde_json::to_string(
        &h.events()
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!events.contains(SECRET_ACCESS_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_disabled_key_is_refused_by_describe_and_ciphertexts_are_pinned_to_the_key() {
    let moto = Moto::start().await;
    let arn = moto.create_key().await;
    let other = moto.create_key().await;
    let ctx = setup_context();
    let h = Harness::start().await;
    let kms = registry::build("aws", settings(&moto.endpoint, &arn), &ctx, &h.builtin).unwrap();
    let kms_other =
        registry::build("aws", settings(&moto.endpoint, &other), &ctx, &h.builtin).unwrap();
    let key = KeyRef {
        tenant: "t".into(),
        config: "c".into(),
        version: None,
    };
    assert_eq!(kms.describe(&key).await.unwrap(), 1);
    let w = kms.wrap(&key, &[7u8; 32], b"ctx").await.unwrap();
    assert_eq!(w.version, 1);
    // The config pins its key: a blob of another key does not decrypt under it.
    let e = kms_other
        .unwrap(&key, &w.ciphertext, b"ctx")
        .await
        .map(drop)
        .expect_err("another key's blob must not unwrap");
    assert!(
        matches!(e, KmsError::InvalidCiphertext | KmsError::Denied(_)),
        "{e:?}"
    );
    assert!(matches!(
        kms.unwrap(&key, b"", b"ctx").await,
        Err(KmsError::InvalidCiphertext)
    ));
    // A key that cannot wrap (an HMAC key) is named as such by describe.
    let (client, _) =
        keystead_server::kms::aws::sdk_client(settings(&moto.endpoint, &arn), &ctx).unwrap();
    let hmac = client
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Hmac256)
        .key_usage(aws_sdk_kms::types::KeyUsageType::GenerateVerifyMac)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .arn
        .unwrap();
    let kms_hmac =
        registry::build("aws", settings(&moto.endpoint, &hmac), &ctx, &h.builtin).unwrap();
    let e = kms_hmac
        .describe(&key)
        .await
        .map(drop)
        .expect_err("an HMAC key");
    assert!(
        matches!(&e, KmsError::Other(m) if m.contains("HMAC_256")),
        "{e:?}"
    );
    // Disable the key at moto: describe reports it unusable.
    // (moto's DisableKey wants the bare key id, not the ARN.)
    let id = arn.rsplit('/').next().unwrap();
    client.disable_key().key_id(id).send().await.unwrap();
    let e = kms
        .describe(&key)
        .await
        .map(drop)
        .expect_err("disabled key");
    assert!(
        matches!(&e, KmsError::Denied(m) if m.contains("Disabled")),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The AWS KMS double: answers the JSON protocol (`X-Amz-Target: TrentService.<Op>`), either
// as a toy KMS (ciphertext = marker ‖ plaintext) or with a configured failure.

#[derive(Clone, Default)]
struct Double {
    /// `None`: serve; `Some((status, code))`: answer that AWS error; status 0: hang.
    fail: Arc<Mutex<Option<(u16, String)>>>,
}

impl Double {
    fn fail_with(&self, status: u16, code: &str) {
        *self.fail.lock().unwrap() = Some((status, code.to_owned()));
    }
    fn serve(&self) {
        *self.fail.lock().unwrap() = None;
    }
    async fn start(&self) -> String {
        let app = axum::Router::new()
            .route("/", axum::routing::post(double_handler))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }
}

const TOY: &[u8] = b"toy-kms:";

fn aws_json(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.1")],
        body.to_string(),
    )
        .into_response()
}

async fn double_handler(
    State(d): State<Double>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let failure = d.fail.lock().unwrap().clone();
    if let Some((status, code)) = failure {
        if status == 0 {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut r = aws_json(
            status,
            json!({"__type": code, "message": format!("the double says {code}")}),
        );
        if !code.is_empty() {
            r.headers_mut()
                .insert("x-amzn-errortype", code.parse().unwrap());
        }
        return r;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let blob = |field: &str| {
        B64.decode(req[field].as_str().unwrap_or(""))
            .unwrap_or_default()
    };
    let key_id = "arn:aws:kms:us-east-1:111122223333:key/double";
    match target {
        "TrentService.Encrypt" => {
            let ct = [TOY, &blob("Plaintext")[..]].concat();
            aws_json(
                StatusCode::OK,
                json!({"CiphertextBlob": B64.encode(ct), "KeyId": key_id}),
            )
        }
        "TrentService.GenerateDataKey" => {
            let pt = keystead_server::util::random_bytes::<32>();
            let ct = [TOY, &pt[..]].concat();
            aws_json(
                StatusCode::OK,
                json!({"Plaintext": B64.encode(pt), "CiphertextBlob": B64.encode(ct), "KeyId": key_id}),
            )
        }
        "TrentService.Decrypt" => match blob("CiphertextBlob").strip_prefix(TOY) {
            Some(pt) => aws_json(
                StatusCode::OK,
                json!({"Plaintext": B64.encode(pt), "KeyId": key_id}),
            ),
            None => aws_json(
                StatusCode::BAD_REQUEST,
                json!({"__type": "InvalidCiphertextException"}),
            ),
        },
        "TrentService.DescribeKey" => aws_json(
            StatusCode::OK,
            json!({"KeyMetadata": {"KeyId": key_id, "Arn": key_id, "Enabled": true, "KeyState": "Enabled"}}),
        ),
        other => aws_json(
            StatusCode::BAD_REQUEST,
            json!({"__type": "UnknownOperationException", "message": other}),
        ),
    }
}

#[tokio::test]
async fn refusals_and_throttling_reach_the_api_as_kms_denied_and_rate_limited() {
    let double = Double::default();
    let endpoint = double.start().await;
    let h = Harness::start().await;
    let tenant = "aws-denied";
    h.kms_tenant(
        tenant,
        TenantMode::Remote,
        "aws-1",
        "aws",
        &settings(&endpoint, "arn:aws:kms:us-east-1:111122223333:key/double"),
    );
    let (_, key) = h.key("aws-denial", None);
    let (dek, edek) = h.wrap(&key, tenant).await;
    assert_eq!(h.unwrap(&key, tenant, &edek).await, dek);

    for code in [
        "AccessDeniedException",
        "DisabledException",
        "KMSInvalidStateException",
    ] {
        double.fail_with(400, code);
        assert_denied(&h, &key, tenant, &edek).await;
        double.serve();
        assert_eq!(h.unwrap(&key, tenant, &edek).await, dek, "after {code}");
    }

    double.fail_with(400, "ThrottlingException");
    let r = h.unwrap_req(&key, tenant, &edek).await;
    h.expect_error(&r, 429, "rate_limited");
    let r = h
        .post(
            "/v1/keys/wrap",
            Some(&key),
            &json!({ "tenant_id": tenant, "metadata": md() }),
        )
        .await;
    h.expect_error(&r, 429, "rate_limited");
    double.serve();
    assert_eq!(h.unwrap(&key, tenant, &edek).await, dek);
}

#[tokio::test]
async fn aws_errors_map_to_kms_errors_at_the_adapter() {
    let double = Double::default();
    let endpoint = double.start().await;
    let h = Harness::start().await;
    let kms = registry::build(
        "aws",
        settings(&endpoint, "alias/double"),
        &h.build_context(),
        &h.builtin,
    )
    .unwrap();
    let key = KeyRef {
        tenant: "t".into(),
        config: "c".into(),
        version: None,
    };
    let ct = kms.wrap(&key, &[1u8; 32], b"x").await.unwrap().ciphertext;
    // (HTTP status, AWS error code, the `KmsError::outcome` it must map to)
    let cases = [
        (400, "AccessDeniedException", "denied"),
        (400, "DisabledException", "denied"),
        (400, "KMSInvalidStateException", "denied"),
        (400, "NotFoundException", "denied"),
        (500, "KeyUnavailableException", "denied"),
        (400, "UnrecognizedClientException", "denied"),
        (400, "InvalidCiphertextException", "invalid_ciphertext"),
        (400, "IncorrectKeyException", "invalid_ciphertext"),
        (400, "ThrottlingException", "busy"),
        (400, "LimitExceededException", "busy"),
        (500, "KMSInternalException", "unreachable"),
        (503, "", "unreachable"),
        (400, "ValidationException", "error"),
    ];
    for (status, code, outcome) in cases {
        double.fail_with(status, code);
        for op in ["unwrap", "wrap", "generate", "describe"] {
            let res = match op {
                "unwrap" => kms.unwrap(&key, &ct, b"x").await.map(|_| ()),
                "wrap" => kms.wrap(&key, &[1u8; 32], b"x").await.map(|_| ()),
                "generate" => kms.generate(&key, b"x").await.map(|_| ()),
                _ => kms.describe(&key).await.map(|_| ()),
            };
            let e = res
                .err()
                .unwrap_or_else(|| panic!("{op} with {code} succeeded"));
            assert_eq!(e.outcome(), outcome, "{op}: HTTP {status} {code} → {e:?}");
            let text = format!("{e} {e:?}");
            assert!(!text.contains(SECRET_ACCESS_KEY), "{text}");
            if !code.is_empty() && !matches!(e, KmsError::InvalidCiphertext | KmsError::Busy) {
                assert!(text.contains(code), "the message names the code: {text}");
            }
        }
    }

    // A hung KMS: Timeout (never a hang of our own).
    double.fail_with(0, "");
    let e = tokio::time::timeout(conformance::QUICK, kms.unwrap(&key, &ct, b"x"))
        .await
        .expect("the adapter hung")
        .map(drop)
        .expect_err("a hung KMS cannot answer");
    assert_eq!(e, KmsError::Timeout);

    // Nothing listens: Unreachable.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let e = unwrap_error_at(&h, &dead, &h.build_context(), &ct).await;
    assert!(matches!(e, KmsError::Unreachable(_)), "{e:?}");

    // A name resolving to loopback is refused after resolution when loopback is not
    // allow-listed (the SDK's requests go through the guarded resolver).
    let port = endpoint.rsplit(':').next().unwrap();
    let strict = BuildContext {
        outbound: OutboundPolicy {
            allow_plain_http: true,
            ..OutboundPolicy::default()
        },
        timeout: Duration::from_secs(2),
    };
    double.serve();
    let e = unwrap_error_at(&h, &format!("http://localhost:{port}"), &strict, &ct).await;
    assert!(
        matches!(&e, KmsError::Unreachable(m) if m.contains("non-public")),
        "{e:?}"
    );
}

/// The error of an unwrap through a fresh adapter for `endpoint` (which must fail).
async fn unwrap_error_at(h: &Harness, endpoint: &str, ctx: &BuildContext, ct: &[u8]) -> KmsError {
    let kms = registry::build("aws", settings(endpoint, "k"), ctx, &h.builtin).unwrap();
    let key = KeyRef {
        tenant: "t".into(),
        config: "c".into(),
        version: None,
    };
    kms.unwrap(&key, ct, b"x")
        .await
        .map(drop)
        .expect_err("an unwrap that must fail succeeded")
}
