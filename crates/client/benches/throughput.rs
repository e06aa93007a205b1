//! Client throughput (a benchmark, not a test): documents of 10 fields × 100 B through
//! `encrypt_batch` / `decrypt_batch` against an Encryption Service on loopback, plus the
//! local field crypto alone.
//!
//! `scripts/bench-client.sh` starts a release `keystead serve` and runs this with
//! `KEYSTEAD_BENCH_URL` / `KEYSTEAD_BENCH_KEY` / `KEYSTEAD_BENCH_TENANT` set. Without them
//! it starts the service in this process on 127.0.0.1 (the same code, sharing the cores
//! with the client). Knobs: `BENCH_SECONDS` (per phase, default 10), `BATCH` (documents per
//! request, default 500), `CONCURRENCY` (requests in flight, default 4).
//!
//! `cargo bench --no-run` compiles it; `cargo bench -p keystead-client --bench throughput`
//! runs it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use keystead_client::{Client, Document, Metadata, ServiceKey};
use keystead_core::envelope::FieldCipher;
use keystead_core::{Dek, DocumentId, FieldPath, TenantId};

const FIELDS: usize = 10;
const FIELD_LEN: usize = 100;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn docs(tenant: &str, prefix: &str, n: usize) -> Vec<Document> {
    (0..n)
        .map(|i| {
            let mut d = Document::new(tenant, &format!("{prefix}-{i}")).unwrap();
            for f in 0..FIELDS {
                let value: Vec<u8> = (0..FIELD_LEN).map(|b| (b + f + i) as u8).collect();
                d = d.field(&format!("field{f}"), &value).unwrap();
            }
            d
        })
        .collect()
}

/// Starts the service in this process (leased built-in tenant); returns URL and key.
async fn in_process(tenant: &str) -> (String, String) {
    use keystead_server::auth::{OPS, new_key};
    use keystead_server::clock::SystemClock;
    use keystead_server::http::{AppState, RateLimiter, app};
    use keystead_server::kms::builtin::{BuiltinKms, RootKey};
    use keystead_server::metrics::Metrics;
    use keystead_server::service::{Service, ServiceOptions, create_builtin_tenant};
    use keystead_server::store::sqlite::SqliteStore;
    use keystead_server::store::{Store, TenantMode};

    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let builtin = Arc::new(BuiltinKms::new(RootKey::from_bytes([7; 32]), store.clone()));
    create_builtin_tenant(&store, &builtin, tenant, TenantMode::Leasing, 3600, 1200).unwrap();
    let k = new_key(
        "bench",
        None,
        OPS.iter().map(|s| (*s).to_owned()).collect(),
        None,
    );
    store.create_service_key(&k.record).unwrap();
    let service = Arc::new(Service::new(
        store,
        builtin,
        // In-process mode discards audit events; the script's real server writes them to
        // its audit log as in production.
        Arc::new(keystead_server::audit::NullSink),
        Arc::new(Metrics::default()),
        Arc::new(SystemClock::default()),
        ServiceOptions::default(),
    ));
    let state = AppState {
        service,
        limiter: Arc::new(RateLimiter::new(0.0, 0.0)),
        directory: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    (url, k.secret.to_string())
}

/// Runs `batches` of work with `concurrency` in flight for `secs`; returns documents/s.
async fn phase<F, Fut>(name: &str, secs: u64, concurrency: usize, batch: usize, f: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let f = Arc::new(f);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            let mut i = w;
            while Instant::now() < deadline {
                f(i).await;
                n += 1;
                i += concurrency;
            }
            n
        }));
    }
    let mut requests = 0;
    for t in tasks {
        requests += t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let docs = (requests * batch) as f64;
    let rate = docs / elapsed;
    println!(
        "{name:<28} {rate:>10.0} documents/s  ({requests} requests of {batch} in {elapsed:.1} s, {:.0} fields/s)",
        rate * FIELDS as f64
    );
    rate
}

fn local_field_crypto() {
    let tenant = TenantId::new("acme").unwrap();
    let doc = DocumentId::new("doc").unwrap();
    let path = FieldPath::new("field0").unwrap();
    let dek = Dek::from_bytes([9; 32]);
    let cipher = FieldCipher::new(&dek, &tenant, &doc);
    // The client seeds a ChaCha20 generator from the OS once per document.
    let mut rng = {
        use rand_core::SeedableRng as _;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        chacha20::ChaCha20Rng::from_seed(seed)
    };
    let value = [0x5a; FIELD_LEN];
    let n = 200_000;
    let start = Instant::now();
    let mut last = Vec::new();
    for _ in 0..n {
        last = cipher
            .encrypt(&mut rng, &path, std::hint::black_box(&value))
            .unwrap();
    }
    let enc = start.elapsed().as_secs_f64() / f64::from(n) * 1e9;
    let start = Instant::now();
    for _ in 0..n {
        std::hint::black_box(cipher.decrypt(&path, std::hint::black_box(&last)).unwrap());
    }
    let dec = start.elapsed().as_secs_f64() / f64::from(n) * 1e9;
    println!(
        "local field crypto, 100 B    encrypt {enc:.0} ns, decrypt {dec:.0} ns per field (goal ≤ 1000 ns)"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter or `--list` from the harness is ignored.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    local_field_crypto();
    let secs = env_num("BENCH_SECONDS", 10);
    let batch = env_num("BATCH", 500) as usize;
    let concurrency = env_num("CONCURRENCY", 4) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tenant = std::env::var("KEYSTEAD_BENCH_TENANT").unwrap_or_else(|_| "acme".into());
        let (url, key) = match (
            std::env::var("KEYSTEAD_BENCH_URL"),
            std::env::var("KEYSTEAD_BENCH_KEY"),
        ) {
            (Ok(u), Ok(k)) => {
                println!("server: {u} (external process)");
                (u, k)
            }
            _ => {
                let (u, k) = in_process(&tenant).await;
                println!("server: {u} (in this process)");
                (u, k)
            }
        };
        println!(
            "documents: {FIELDS} fields × {FIELD_LEN} B; batch {batch}; {concurrency} requests in flight; {secs} s per phase"
        );
        let client = Client::new(&url, ServiceKey::new(key)).unwrap();
        let md = Metadata::new("bench");
        // Warm-up: connections, lease, allocator.
        let warm = docs(&tenant, "warm", batch);
        for _ in 0..3 {
            for r in client.encrypt_batch(&md, &warm).await.unwrap() {
                r.unwrap();
            }
        }
        let pool: Arc<Vec<Document>> = Arc::new(docs(&tenant, "doc", batch));
        let encrypted: Arc<Vec<Vec<u8>>> = Arc::new(
            client
                .encrypt_batch(&md, &pool)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.unwrap().to_bytes().unwrap())
                .collect(),
        );

        let (c, m, p) = (client.clone(), md.clone(), pool.clone());
        let enc = phase("encrypt_batch", secs, concurrency, batch, move |_| {
            let (c, m, p) = (c.clone(), m.clone(), p.clone());
            async move {
                for r in c.encrypt_batch(&m, &p).await.unwrap() {
                    std::hint::black_box(r.unwrap().to_bytes().unwrap());
                }
            }
        })
        .await;
        let (c, m, e) = (client.clone(), md.clone(), encrypted.clone());
        let dec = phase("decrypt_batch", secs, concurrency, batch, move |_| {
            let (c, m, e) = (c.clone(), m.clone(), e.clone());
            async move {
                for r in c.decrypt_batch(&m, &e).await.unwrap() {
                    std::hint::black_box(r.unwrap());
                }
            }
        })
        .await;
        println!(
            "goal ≥ 20000 documents/s: encrypt {}, decrypt {}",
            if enc >= 20_000.0 { "met" } else { "NOT met" },
            if dec >= 20_000.0 { "met" } else { "NOT met" }
        );
    });
}
