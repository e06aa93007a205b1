//! What the Encryption Service adds to an AWS KMS call in remote-key mode, against
//! `moto_server` on 127.0.0.1 (needs the venv: `bash scripts/setup-venv.sh`).
//!
//! Measures, interleaved in rounds so that moto's own drift hits every series alike:
//! (a) a bare `aws-sdk-kms` `Decrypt` (the adapter's SDK client, same HTTP stack);
//! (b) `Service::unwrap` of an EDEK of a remote-mode tenant (tenant lookup, EDEK parsing,
//!     the adapter's `Decrypt`, HKDF, audit event) without the HTTP API;
//! (c) the full `POST /v1/keys/unwrap` over loopback HTTP.
//!
//! Prints p50 / p99 of each and the ES's added latency (b − a, c − a) at p50.
//! Run: `cargo bench -p keystead-server --bench kms_aws` (`-- --rounds N --per-round M`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../tests/aws_moto/mod.rs"]
mod aws_moto;
#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use aws_moto::{Moto, settings};
use common::{Harness, Opts, md, unb64};
use keystead_server::kms::RetryPolicy;
use keystead_server::kms::aws::sdk_client;
use keystead_server::store::TenantMode;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    // Nearest-rank percentile over at least one sample.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Series {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Series {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            samples: Vec::new(),
        }
    }
    fn p(&mut self, p: f64) -> Duration {
        self.samples.sort_unstable();
        percentile(&self.samples, p)
    }
}

async fn time<F: std::future::Future<Output = ()>>(s: &mut Series, f: F) {
    let start = Instant::now();
    f.await;
    s.samples.push(start.elapsed());
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds = arg("--rounds", 10);
    let per_round = arg("--per-round", 200);

    let moto = Moto::start().await;
    let arn = moto.create_key().await;
    let s = settings(&moto.endpoint, &arn);
    // Generous timeout and no retries: a slow moto answer is a sample, not an error.
    let h = Harness::start_with(Opts {
        retry: RetryPolicy {
            timeout: Duration::from_secs(10),
            attempts: 1,
            backoff: Duration::from_millis(1),
        },
        ..Opts::default()
    })
    .await;
    let tenant = "bench-aws";
    h.kms_tenant(tenant, TenantMode::Remote, "aws-1", "aws", &s);
    let (_, key) = h.key("bench", None);
    let (_, edek_b64) = h.wrap(&key, tenant).await;
    let edek = unb64(&edek_b64);
    let principal =
        keystead_server::auth::authenticate(h.sqlite.as_ref(), Some(&format!("Bearer {key}")))
            .expect("service key");
    let metadata = md();

    // The bare SDK call decrypts a blob of the same key with a context of the same shape.
    let (client, _) = sdk_client(s.clone(), &h.build_context()).unwrap();
    let ctx: std::collections::HashMap<String, String> = [
        ("keystead:tenant", tenant),
        ("keystead:config", "aws-1"),
        ("keystead:context-sha256", "00"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let blob = client
        .encrypt()
        .key_id(&arn)
        .plaintext(aws_sdk_kms::primitives::Blob::new([9u8; 32]))
        .set_encryption_context(Some(ctx.clone()))
        .send()
        .await
        .unwrap()
        .ciphertext_blob
        .unwrap();

    let mut bare = Series::new("(a) bare SDK Decrypt");
    let mut service = Series::new("(b) Service::unwrap (remote)");
    let mut http = Series::new("(c) POST /v1/keys/unwrap");
    for round in 0..=rounds {
        // Round 0 warms up (connections, moto's caches) and is discarded.
        let keep = round > 0;
        let mut a = Series::new("");
        let mut b = Series::new("");
        let mut c = Series::new("");
        for _ in 0..per_round {
            time(&mut a, async {
                client
                    .decrypt()
                    .key_id(&arn)
                    .ciphertext_blob(blob.clone())
                    .set_encryption_context(Some(ctx.clone()))
                    .send()
                    .await
                    .unwrap();
            })
            .await;
            time(&mut b, async {
                h.service
                    .unwrap(&principal, tenant, &edek, &metadata)
                    .await
                    .map_err(|e| format!("{e:?}"))
                    .unwrap();
            })
            .await;
            time(&mut c, async {
                let r = h.unwrap_req(&key, tenant, &edek_b64).await;
                assert_eq!(r.status, 200, "{}", r.text);
            })
            .await;
        }
        if keep {
            bare.samples.extend(a.samples);
            service.samples.extend(b.samples);
            http.samples.extend(c.samples);
        }
    }
    // The harness remembers every DEK it saw (for leak checks); not needed here.
    h.deks.lock().unwrap().clear();

    println!("kms_aws: {rounds} rounds × {per_round} calls per series, moto_server on 127.0.0.1");
    let base = bare.p(50.0);
    for s in [&mut bare, &mut service, &mut http] {
        let (p50, p99) = (s.p(50.0), s.p(99.0));
        let added = p50.as_secs_f64() * 1e6 - base.as_secs_f64() * 1e6;
        println!(
            "{:<32} p50 {:>9.1} µs   p99 {:>9.1} µs   p50 − (a) {:>+8.1} µs",
            s.name,
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            added
        );
    }
}
