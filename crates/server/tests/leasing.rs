//! Service-level tests of key leasing (DESIGN.md "Key hierarchy" and "Revocation"), driven
//! by a manual monotonic clock and the controllable fake KMS.
//!
//! Time: lease lifetimes are measured on the [`ManualClock`]; KMS timeouts and the fake's
//! `Slow`/`Hang` behaviours run on real tokio time (short: a 200 ms per-attempt timeout).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keystead_core::LeasedKeyId;
use keystead_core::edek::Edek;
use keystead_server::audit::{AuditEvent, MemorySink};
use keystead_server::auth::{OPS, Principal};
use keystead_server::clock::ManualClock;
use keystead_server::error::ApiError;
use keystead_server::kms::RetryPolicy;
use keystead_server::kms::breaker::BreakerPolicy;
use keystead_server::kms::builtin::{BuiltinKms, RootKey};
use keystead_server::kms::fake::{Behavior, FakeKms};
use keystead_server::lease::{LeasePolicy, MAX_LEASE, MAX_RENEW};
use keystead_server::metrics::Metrics;
use keystead_server::service::{Service, ServiceOptions, WrappedDek, create_builtin_tenant};
use keystead_server::store::sqlite::SqliteStore;
use keystead_server::store::{Store, TenantMode};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const TENANT: &str = "acme";
const CONFIG: &str = "builtin-1";
/// Per-attempt KMS timeout.
const KMS_TIMEOUT: Duration = Duration::from_millis(200);
/// An upper bound for "answers quickly, not a hung request".
const QUICK: Duration = Duration::from_secs(2);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn principal() -> Principal {
    Principal {
        key_id: "test-key".into(),
        name: "test".into(),
        tenants: None,
        ops: OPS.iter().map(|s| (*s).to_owned()).collect(),
    }
}

fn meta() -> Value {
    json!({ "requesting_id": "user-1" })
}

/// One ES instance's parts; `store`, `builtin`, `fake` and `clock` may be shared by several.
struct Es {
    service: Arc<Service>,
    audit: Arc<MemorySink>,
}

/// Shared state behind one or more ES instances.
struct World {
    store: Arc<dyn Store>,
    builtin: Arc<BuiltinKms>,
    clock: Arc<ManualClock>,
    fake: Arc<FakeKms>,
}

impl World {
    /// A store with one tenant in `mode` and the given lease policy (seconds).
    fn new(mode: TenantMode, lease_secs: u64, renew_secs: u64) -> Self {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let builtin = Arc::new(BuiltinKms::new(RootKey::from_bytes([7; 32]), store.clone()));
        create_builtin_tenant(&store, &builtin, TENANT, mode, lease_secs, renew_secs).unwrap();
        Self {
            store,
            builtin,
            clock: Arc::new(ManualClock::default()),
            fake: Arc::new(FakeKms::new()),
        }
    }

    /// A new ES instance (its own lease manager, caches and audit sink) over this world,
    /// with the tenant routed to the fake KMS.
    fn es(&self, instance: &str) -> Es {
        let audit = Arc::new(MemorySink::default());
        let opts = ServiceOptions {
            instance: instance.into(),
            retry: RetryPolicy {
                timeout: KMS_TIMEOUT,
                attempts: 1,
                backoff: Duration::from_millis(10),
            },
            // These tests count KMS calls through outages: a breaker that probes at once
            // after opening keeps those counts exact (the breaker has its own test).
            breaker: BreakerPolicy {
                threshold: 5,
                cool_down: Duration::ZERO,
            },
            ..ServiceOptions::default()
        };
        let service = Arc::new(Service::new(
            self.store.clone(),
            self.builtin.clone(),
            audit.clone(),
            Arc::new(Metrics::default()),
            self.clock.clone(),
            opts,
        ));
        service.set_kms_override(TENANT, CONFIG, self.fake.clone());
        Es { service, audit }
    }

    fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    fn calls(&self) -> u64 {
        self.fake.calls()
    }
}

impl Es {
    async fn wrap(&self) -> Result<WrappedDek, ApiError> {
        self.service.wrap(&principal(), TENANT, &meta()).await
    }

    async fn unwrap(&self, edek: &[u8]) -> Result<keystead_core::Dek, ApiError> {
        self.service
            .unwrap(&principal(), TENANT, edek, &meta())
            .await
    }

    /// Unwraps and checks the DEK is the one `w` carried.
    async fn unwrap_ok(&self, w: &WrappedDek) {
        let dek = self.unwrap(&w.edek).await.unwrap();
        assert!(dek.ct_eq(&w.dek), "unwrap returned another DEK");
    }

    fn events(&self, action: &str) -> Vec<AuditEvent> {
        self.audit
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.action == action)
            .cloned()
            .collect()
    }
}

/// Awaits `fut`, failing the test if it takes [`QUICK`] or longer (a hung request).
async fn quick<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(QUICK, fut)
        .await
        .expect("the request hung instead of answering")
}

fn leased_id(edek: &[u8]) -> LeasedKeyId {
    Edek::parse(edek)
        .unwrap()
        .leased_key_id()
        .expect("a leased EDEK")
}

#[track_caller]
fn assert_code<T>(res: Result<T, ApiError>, status: u16, code: &str) -> ApiError {
    match res {
        Ok(_) => panic!("expected {status} {code}, got success"),
        Err(e) => {
            assert_eq!((e.status, e.code), (status, code), "{e:?}");
            e
        }
    }
}

// ---- 1. cold lease under load ----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn cold_lease_is_one_kms_call_under_load() {
    let world = World::new(TenantMode::Leasing, 3600, 600);
    let es = world.es("es-a");
    world.fake.set(Behavior::Slow(Duration::from_millis(50)));

    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = JoinSet::new();
    for _ in 0..100 {
        let service = es.service.clone();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            service.wrap(&principal(), TENANT, &meta()).await
        });
    }
    let mut wrapped = Vec::new();
    while let Some(r) = tasks.join_next().await {
        wrapped.push(r.unwrap().unwrap());
    }
    assert_eq!(wrapped.len(), 100);
    assert_eq!(
        world.calls(),
        1,
        "a cold lease must be exactly one KMS call"
    );

    let ids: HashSet<_> = wrapped.iter().map(|w| leased_id(&w.edek)).collect();
    assert_eq!(ids.len(), 1, "all EDEKs must carry the same leased key id");
    assert_eq!(es.events("wrap").len(), 100);
    assert!(es.events("wrap").iter().all(|e| e.outcome == "success"));

    // Unwrapping under the lease this instance made needs no KMS call.
    world.fake.set(Behavior::Normal);
    for w in wrapped.iter().take(10) {
        es.unwrap_ok(w).await;
    }
    assert_eq!(world.calls(), 1);
}

// ---- 2. earlier lease periods and other instances --------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edeks_from_earlier_periods_and_other_instances_unwrap_once_then_from_cache() {
    let world = World::new(TenantMode::Leasing, 3600, 600);
    let a = world.es("es-a");

    let e1 = a.wrap().await.unwrap();
    assert_eq!(world.calls(), 1);
    world.advance(secs(601));
    a.service.renew_due_leases().await;
    assert_eq!(world.calls(), 2, "a due renewal is one KMS call");
    assert_eq!(a.events("lease_renewed").len(), 1);
    let e2 = a.wrap().await.unwrap();
    assert_ne!(
        leased_id(&e1.edek),
        leased_id(&e2.edek),
        "every lease period has a new leased key"
    );
    // The instance that made both leases knows both keys.
    a.unwrap_ok(&e1).await;
    a.unwrap_ok(&e2).await;
    assert_eq!(world.calls(), 2);

    // A second ES instance: same store and KMS, its own lease manager.
    let b = world.es("es-b");
    b.unwrap_ok(&e1).await;
    assert_eq!(
        world.calls(),
        3,
        "one KMS call for an unknown leased key id"
    );
    b.unwrap_ok(&e1).await;
    assert_eq!(world.calls(), 3, "then from cache");

    // Concurrent unwraps of another unknown id: still one call (single flight per id).
    world.fake.set(Behavior::Slow(Duration::from_millis(50)));
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let service = b.service.clone();
        let edek = e2.edek.clone();
        tasks.spawn(async move { service.unwrap(&principal(), TENANT, &edek, &meta()).await });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r.unwrap().unwrap().ct_eq(&e2.dek));
    }
    assert_eq!(world.calls(), 4, "one KMS call per unknown leased key id");
    world.fake.set(Behavior::Normal);
    for _ in 0..3 {
        b.unwrap_ok(&e1).await;
        b.unwrap_ok(&e2).await;
    }
    assert_eq!(world.calls(), 4);

    // And the other way round: B's own lease, unwrapped by A.
    let e3 = b.wrap().await.unwrap();
    assert_eq!(world.calls(), 5, "B's first wrap obtains B's own lease");
    a.unwrap_ok(&e3).await;
    assert_eq!(world.calls(), 6);
    a.unwrap_ok(&e3).await;
    b.unwrap_ok(&e3).await;
    assert_eq!(world.calls(), 6);
}

// ---- 3. denial -------------------------------------------------------------------------

/// Leasing tenant (lease 1 h, renewal 10 min) with a lease and two EDEKs under it, then
/// a KMS denial noticed by the renewal at t = 601 s. Returns the EDEKs.
async fn denied(world: &World, es: &Es) -> (WrappedDek, WrappedDek) {
    let e1 = es.wrap().await.unwrap();
    es.unwrap_ok(&e1).await;
    assert_eq!(world.calls(), 1);

    world.fake.set(Behavior::Deny);
    // Revocation is not instant: until the renewal notices, the lease keeps serving.
    es.service.renew_due_leases().await;
    assert_eq!(world.calls(), 1, "no renewal is due yet");
    let e2 = es.wrap().await.unwrap();
    es.unwrap_ok(&e1).await;
    es.unwrap_ok(&e2).await;
    assert!(es.events("lease_failed").is_empty());
    assert_eq!(world.calls(), 1);

    world.advance(secs(601));
    es.service.renew_due_leases().await;
    assert_eq!(world.calls(), 2, "the renewal asked the KMS");
    let failed = es.events("lease_failed");
    assert_eq!(failed.len(), 1, "a lease_failed event is recorded");
    assert_eq!(failed[0].outcome, "failure");
    assert_eq!(failed[0].code.as_deref(), Some("kms_denied"));
    assert_eq!(failed[0].tenant_id, TENANT);
    (e1, e2)
}

#[tokio::test]
async fn denial_drops_the_lease_at_the_next_renewal() {
    let world = World::new(TenantMode::Leasing, 3600, 600);
    let es = world.es("es-a");
    let (e1, e2) = denied(&world, &es).await;

    assert_code(es.wrap().await, 403, "kms_denied");
    // Even EDEKs whose leased key was cached.
    assert_code(es.unwrap(&e1.edek).await, 403, "kms_denied");
    assert_code(es.unwrap(&e2.edek).await, 403, "kms_denied");

    // Failed attempts are audit events too.
    let wraps = es.events("wrap");
    let last = wraps.last().unwrap();
    assert_eq!(
        (last.outcome, last.code.as_deref()),
        ("failure", Some("kms_denied"))
    );
    let unwraps = es.events("unwrap");
    let last = unwraps.last().unwrap();
    assert_eq!(
        (last.outcome, last.code.as_deref()),
        ("failure", Some("kms_denied"))
    );

    // Another instance, which never held the key, is refused by the KMS itself.
    let b = world.es("es-b");
    assert_code(b.unwrap(&e1.edek).await, 403, "kms_denied");
    assert_code(b.wrap().await, 403, "kms_denied");
}

// ---- 4. unreachable / hanging KMS ------------------------------------------------------

async fn outage_serves_until_lease_runs_out(bad: Behavior, renew_code: &str) {
    // Lease 30 min, renewal 10 min.
    let world = World::new(TenantMode::Leasing, 1800, 600);
    let es = world.es("es-a");

    let e1 = es.wrap().await.unwrap();
    assert_eq!(world.calls(), 1);
    // A successful renewal at t = 601 s: the lease now runs until 601 + 1800 s.
    world.advance(secs(601));
    es.service.renew_due_leases().await;
    assert_eq!(world.calls(), 2);
    let e2 = es.wrap().await.unwrap();

    // The KMS goes away; the renewal at t = 1201 s fails.
    world.fake.set(bad);
    world.advance(secs(600));
    quick(es.service.renew_due_leases()).await;
    assert_eq!(world.calls(), 3);
    let failed = es.events("lease_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].code.as_deref(), Some(renew_code));

    // ... but requests keep being served from the lease, without KMS calls.
    es.unwrap_ok(&e1).await;
    es.unwrap_ok(&e2).await;
    let e3 = es.wrap().await.unwrap();
    es.unwrap_ok(&e3).await;
    assert_eq!(world.calls(), 3);

    // t = 1801 s: past the lease length counted from the first lease, not from the last
    // successful KMS call (601 s). Still serving.
    world.advance(secs(600));
    es.unwrap_ok(&e1).await;
    es.wrap().await.unwrap();

    // t = 2402 s: the lease (601 + 1800) ran out: fail closed with 503 lease_expired.
    world.advance(secs(601));
    let err = assert_code(quick(es.wrap()).await, 503, "lease_expired");
    assert!(err.retry_after.is_some(), "Retry-After must be set");
    for w in [&e1, &e2, &e3] {
        let err = assert_code(quick(es.unwrap(&w.edek)).await, 503, "lease_expired");
        assert!(err.retry_after.is_some());
    }
    let last = es.events("unwrap");
    assert_eq!(last.last().unwrap().code.as_deref(), Some("lease_expired"));

    // The KMS is back: the next request obtains a new lease.
    world.fake.set(Behavior::Normal);
    let before = world.calls();
    let e4 = es.wrap().await.unwrap();
    assert_eq!(world.calls(), before + 1, "one KMS call for the new lease");
    assert_ne!(leased_id(&e4.edek), leased_id(&e3.edek));
    for w in [&e1, &e2, &e3, &e4] {
        es.unwrap_ok(w).await;
    }
    es.wrap().await.unwrap();
}

#[tokio::test]
async fn unreachable_kms_serves_until_the_lease_expires() {
    outage_serves_until_lease_runs_out(Behavior::Unreachable, "kms_unreachable").await;
}

#[tokio::test]
async fn hanging_kms_times_out_and_serves_until_the_lease_expires() {
    outage_serves_until_lease_runs_out(Behavior::Hang, "kms_timeout").await;
}

// ---- 5. recovery after denial ----------------------------------------------------------

#[tokio::test]
async fn recovery_after_denial_within_one_renewal_interval() {
    let world = World::new(TenantMode::Leasing, 3600, 600);
    let es = world.es("es-a");
    let (e1, e2) = denied(&world, &es).await;
    assert_code(es.wrap().await, 403, "kms_denied");

    // The tenant re-enables its key. The denial stands for one renewal interval at most
    // (the ES does not hammer a KMS that just refused) ...
    world.fake.set(Behavior::Normal);
    world.advance(secs(300));
    assert_code(es.unwrap(&e1.edek).await, 403, "kms_denied");

    // ... after one renewal interval from the denial, requests succeed again.
    world.advance(secs(300));
    let before = world.calls();
    let e3 = es.wrap().await.unwrap();
    assert_eq!(world.calls(), before + 1, "a new lease");
    es.unwrap_ok(&e1).await;
    es.unwrap_ok(&e2).await;
    assert_eq!(
        world.calls(),
        before + 2,
        "the dropped leased key is fetched again (one call for e1 and e2's shared key)"
    );
    es.unwrap_ok(&e3).await;
    assert_eq!(world.calls(), before + 2);

    // The renewal task picks the tenant up again.
    world.advance(secs(600));
    es.service.renew_due_leases().await;
    assert_eq!(world.calls(), before + 3);
    assert_eq!(es.events("lease_renewed").len(), 1);
}

// ---- 6. lease policy caps --------------------------------------------------------------

#[test]
fn lease_policy_is_capped() {
    let p = LeasePolicy::from_secs(100_000, 7_200);
    assert_eq!(p.lease, secs(24 * 3600));
    assert_eq!(p.renew, secs(3600));
    assert_eq!((MAX_LEASE, MAX_RENEW), (secs(24 * 3600), secs(3600)));
    // Within the caps, the configured values stand.
    let p = LeasePolicy::from_secs(7200, 900);
    assert_eq!((p.lease, p.renew), (secs(7200), secs(900)));
    // Renewal never longer than the lease.
    let p = LeasePolicy::from_secs(600, 3600);
    assert_eq!((p.lease, p.renew), (secs(600), secs(600)));
}

#[tokio::test]
async fn service_applies_the_capped_policy() {
    // Configured 100 000 s / 7 200 s: effective 24 h / 1 h.
    let world = World::new(TenantMode::Leasing, 100_000, 7_200);
    let es = world.es("es-a");
    let e1 = es.wrap().await.unwrap();
    assert_eq!(world.calls(), 1);

    world.advance(secs(3599));
    es.service.renew_due_leases().await;
    assert_eq!(world.calls(), 1, "not due before one hour");
    world.advance(secs(1));
    es.service.renew_due_leases().await;
    assert_eq!(world.calls(), 2, "renewal capped at one hour");

    // KMS outage from t = 3600 s: the lease runs 24 h from the last success, not 100 000 s.
    world.fake.set(Behavior::Unreachable);
    world.advance(secs(24 * 3600 - 1));
    es.unwrap_ok(&e1).await;
    es.wrap().await.unwrap();
    world.advance(secs(1));
    assert_code(es.wrap().await, 503, "lease_expired");
    assert_code(es.unwrap(&e1.edek).await, 503, "lease_expired");
}

// ---- 7. remote mode --------------------------------------------------------------------

#[tokio::test]
async fn remote_mode_is_one_kms_call_per_operation() {
    let world = World::new(TenantMode::Remote, 3600, 600);
    let es = world.es("es-a");

    // First wrap: describe (key version, then cached) + generate.
    let e1 = es.wrap().await.unwrap();
    assert_eq!(world.calls(), 2);
    let e2 = es.wrap().await.unwrap();
    assert_eq!(world.calls(), 3, "each wrap is one KMS call");
    es.unwrap_ok(&e1).await;
    assert_eq!(world.calls(), 4, "each unwrap is one KMS call");
    es.unwrap_ok(&e1).await;
    assert_eq!(world.calls(), 5, "nothing is cached in remote mode");
    es.unwrap_ok(&e2).await;
    assert_eq!(world.calls(), 6);
    assert!(Edek::parse(&e1.edek).unwrap().leased_key_id().is_none());

    // The cached key version expires: describe again.
    world.advance(secs(31));
    es.wrap().await.unwrap();
    assert_eq!(world.calls(), 8);
    // No lease, so nothing for the renewal task.
    es.service.renew_due_leases().await;
    assert_eq!(world.calls(), 8);

    // Denial ends access at once, without a renewal interval.
    world.fake.set(Behavior::Deny);
    assert_code(es.wrap().await, 403, "kms_denied");
    assert_code(es.unwrap(&e1.edek).await, 403, "kms_denied");
    assert_eq!(world.calls(), 10);

    // Unreachable: answered at once, with Retry-After.
    world.fake.set(Behavior::Unreachable);
    let started = Instant::now();
    let err = assert_code(quick(es.wrap()).await, 503, "kms_unreachable");
    assert!(err.retry_after.is_some());
    let err = assert_code(quick(es.unwrap(&e1.edek)).await, 503, "kms_unreachable");
    assert!(err.retry_after.is_some());
    assert!(
        started.elapsed() < KMS_TIMEOUT,
        "no waiting on an unreachable KMS"
    );

    // Hanging KMS: the request answers kms_timeout after the KMS timeout, not never.
    world.fake.set(Behavior::Hang);
    let started = Instant::now();
    assert_code(quick(es.wrap()).await, 504, "kms_timeout");
    let elapsed = started.elapsed();
    assert!(elapsed >= KMS_TIMEOUT && elapsed < QUICK, "{elapsed:?}");
    let started = Instant::now();
    assert_code(quick(es.unwrap(&e1.edek)).await, 504, "kms_timeout");
    let elapsed = started.elapsed();
    assert!(elapsed >= KMS_TIMEOUT && elapsed < QUICK, "{elapsed:?}");

    // Back to normal: serving again at once.
    world.fake.set(Behavior::Normal);
    es.unwrap_ok(&e1).await;
    es.unwrap_ok(&e2).await;
    es.wrap().await.unwrap();
}

/// A refusal while unwrapping one unknown leased key fails that unwrap only: the tenant's
/// current lease keeps serving until a renewal is refused (DESIGN.md "Revocation"), so an
/// EDEK naming a key the KMS refuses cannot lock a tenant out.
#[tokio::test]
async fn refused_unwrap_of_one_key_does_not_drop_the_lease() {
    let world = World::new(TenantMode::Leasing, 3600, 600);
    let a = world.es("es-a");
    let b = world.es("es-b");
    let from_b = b.wrap().await.unwrap();
    let mine = a.wrap().await.unwrap();
    let calls = world.calls();
    world.fake.set(Behavior::Deny);
    assert_code(a.unwrap(&from_b.edek).await, 403, "kms_denied");
    assert_eq!(world.calls(), calls + 1);
    // The current lease and its cached key still serve, without KMS calls.
    a.unwrap_ok(&mine).await;
    assert!(a.wrap().await.is_ok());
    assert_eq!(world.calls(), calls + 1);
    // A cold leasing tenant whose KMS is unreachable reports the KMS, not an expired lease.
    let c = world.es("es-c");
    world.fake.set(Behavior::Unreachable);
    assert_code(quick(c.wrap()).await, 503, "kms_unreachable");
}

/// The per-KMS-config concurrency limit: when every slot is taken and none frees up within
/// the queue wait, the request answers `429 rate_limited` instead of piling up.
#[tokio::test]
async fn kms_concurrency_limit_answers_429() {
    let world = World::new(TenantMode::Remote, 3600, 600);
    let opts = ServiceOptions {
        instance: "es-limited".into(),
        retry: RetryPolicy {
            timeout: Duration::from_secs(2),
            attempts: 1,
            backoff: Duration::from_millis(10),
        },
        kms_concurrency: 1,
        kms_queue_wait: Duration::from_millis(50),
        ..ServiceOptions::default()
    };
    let service = Arc::new(Service::new(
        world.store.clone(),
        world.builtin.clone(),
        Arc::new(MemorySink::default()),
        Arc::new(Metrics::default()),
        world.clock.clone(),
        opts,
    ));
    service.set_kms_override(TENANT, CONFIG, world.fake.clone());
    // Warm the key-version cache so each wrap is exactly one KMS call.
    service.wrap(&principal(), TENANT, &meta()).await.unwrap();
    world.fake.set(Behavior::Slow(Duration::from_millis(400)));
    let (p, md) = (principal(), meta());
    let (a, b) = tokio::join!(service.wrap(&p, TENANT, &md), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        service.wrap(&p, TENANT, &md).await
    });
    assert!(a.is_ok());
    let e = assert_code(b, 429, "rate_limited");
    assert!(e.retry_after.is_some());
}

/// The circuit breaker: after `threshold` consecutive unreachable answers, calls fail fast
/// with `503 kms_unreachable` and `Retry-After` without reaching the KMS; after the
/// cool-down one probe goes through, and a success closes the breaker.
#[tokio::test]
async fn circuit_breaker_fails_fast_then_probes() {
    let world = World::new(TenantMode::Remote, 3600, 600);
    let opts = ServiceOptions {
        instance: "es-breaker".into(),
        retry: RetryPolicy {
            timeout: KMS_TIMEOUT,
            attempts: 1,
            backoff: Duration::from_millis(10),
        },
        breaker: BreakerPolicy {
            threshold: 3,
            cool_down: Duration::from_millis(400),
        },
        ..ServiceOptions::default()
    };
    let service = Arc::new(Service::new(
        world.store.clone(),
        world.builtin.clone(),
        Arc::new(MemorySink::default()),
        Arc::new(Metrics::default()),
        world.clock.clone(),
        opts,
    ));
    service.set_kms_override(TENANT, CONFIG, world.fake.clone());
    let (p, md) = (principal(), meta());
    let w = service.wrap(&p, TENANT, &md).await.unwrap();
    world.fake.set(Behavior::Unreachable);
    let before = world.calls();
    for _ in 0..3 {
        assert_code(
            quick(service.unwrap(&p, TENANT, &w.edek, &md)).await,
            503,
            "kms_unreachable",
        );
    }
    assert_eq!(world.calls(), before + 3, "each call reached the KMS");
    // Open: answered at once, no KMS call, Retry-After set.
    for _ in 0..5 {
        let e = assert_code(
            quick(service.unwrap(&p, TENANT, &w.edek, &md)).await,
            503,
            "kms_unreachable",
        );
        assert!(e.retry_after.is_some_and(|s| s >= 1));
    }
    assert_eq!(
        world.calls(),
        before + 3,
        "an open breaker makes no KMS call"
    );
    // The KMS is back, but the breaker is still open until the cool-down ends.
    world.fake.set(Behavior::Normal);
    assert_code(
        quick(service.unwrap(&p, TENANT, &w.edek, &md)).await,
        503,
        "kms_unreachable",
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    quick(service.unwrap(&p, TENANT, &w.edek, &md))
        .await
        .unwrap();
    quick(service.unwrap(&p, TENANT, &w.edek, &md))
        .await
        .unwrap();
    assert_eq!(world.calls(), before + 5, "probe, then closed");
}
