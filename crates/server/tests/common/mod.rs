//! Test harness of the API integration tests: a whole Encryption Service in-process (SQLite
//! store in a temporary data dir, built-in KMS, audit sink, both routers served on
//! 127.0.0.1 over real sockets) and a small HTTP client with assertions for the API's
//! error shape.

#![allow(dead_code)]

pub mod conformance;
pub mod pki;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use keystead_server::audit::{AuditError, AuditEvent, AuditSink, JsonLinesSink, MemorySink};
use keystead_server::auth::{OPS, new_key};
use keystead_server::clock::ManualClock;
use keystead_server::http::{AppState, RateLimiter, admin_app, app};
use keystead_server::kms::breaker::BreakerPolicy;
use keystead_server::kms::builtin::{BuiltinKms, RootKey};
use keystead_server::kms::net::OutboundPolicy;
use keystead_server::kms::registry::BuildContext;
use keystead_server::kms::{BoxFuture, RetryPolicy};
use keystead_server::metrics::Metrics;
use keystead_server::service::{Service, ServiceOptions, create_builtin_tenant};
use keystead_server::store::sqlite::SqliteStore;
use keystead_server::store::{
    BuiltinKey, DerivationSecretRecord, KmsConfig, ServiceKey, SinkRecord, Store, StoreResult,
    Tenant, TenantMode,
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Standard, padded base64.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard, padded base64 (panics on bad input: test data).
pub fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("base64 from the server")
}

/// Minimal valid request metadata.
pub fn md() -> Value {
    json!({ "requesting_id": "user-17" })
}

/// A [`Store`] that counts `tenant()` lookups and otherwise delegates.
pub struct CountingStore {
    inner: Arc<dyn Store>,
    tenant_calls: AtomicU64,
    /// When set, `tenant()` fails as a broken database would.
    pub fail: std::sync::atomic::AtomicBool,
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            tenant_calls: AtomicU64::new(0),
            fail: std::sync::atomic::AtomicBool::new(false),
        }
    }
    /// `tenant()` calls so far.
    pub fn tenant_calls(&self) -> u64 {
        self.tenant_calls.load(Ordering::SeqCst)
    }
}

impl Store for CountingStore {
    fn tenant(&self, id: &str) -> StoreResult<Option<Tenant>> {
        self.tenant_calls.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(keystead_server::store::StoreError::Db(
                "disk I/O error (test)".into(),
            ));
        }
        self.inner.tenant(id)
    }
    fn tenants(&self) -> StoreResult<Vec<Tenant>> {
        self.inner.tenants()
    }
    fn create_tenant(&self, tenant: &Tenant, config: &KmsConfig) -> StoreResult<()> {
        self.inner.create_tenant(tenant, config)
    }
    fn update_tenant(&self, tenant: &Tenant) -> StoreResult<()> {
        self.inner.update_tenant(tenant)
    }
    fn config(&self, tenant: &str, id: &str) -> StoreResult<Option<KmsConfig>> {
        self.inner.config(tenant, id)
    }
    fn configs(&self, tenant: &str) -> StoreResult<Vec<KmsConfig>> {
        self.inner.configs(tenant)
    }
    fn put_config(&self, config: &KmsConfig) -> StoreResult<()> {
        self.inner.put_config(config)
    }
    fn service_key(&self, id: &str) -> StoreResult<Option<ServiceKey>> {
        self.inner.service_key(id)
    }
    fn service_keys(&self) -> StoreResult<Vec<ServiceKey>> {
        self.inner.service_keys()
    }
    fn create_service_key(&self, key: &ServiceKey) -> StoreResult<()> {
        self.inner.create_service_key(key)
    }
    fn revoke_service_key(&self, name: &str) -> StoreResult<()> {
        self.inner.revoke_service_key(name)
    }
    fn builtin_keys(&self, tenant: &str, config: &str) -> StoreResult<Vec<BuiltinKey>> {
        self.inner.builtin_keys(tenant, config)
    }
    fn put_builtin_key(&self, key: &BuiltinKey) -> StoreResult<()> {
        self.inner.put_builtin_key(key)
    }
    fn derivation_secrets(&self, tenant: &str) -> StoreResult<Vec<DerivationSecretRecord>> {
        self.inner.derivation_secrets(tenant)
    }
    fn add_derivation_secret(
        &self,
        secret: &DerivationSecretRecord,
        rotate: bool,
    ) -> StoreResult<()> {
        self.inner.add_derivation_secret(secret, rotate)
    }
    fn rewrap_derivation_secret(
        &self,
        tenant: &str,
        id: &str,
        config: &str,
        key_version: u32,
        wrapped: &[u8],
    ) -> StoreResult<()> {
        self.inner
            .rewrap_derivation_secret(tenant, id, config, key_version, wrapped)
    }
    fn finish_derivation_rotation(&self, tenant: &str) -> StoreResult<String> {
        self.inner.finish_derivation_rotation(tenant)
    }
    fn recheck(&self) -> StoreResult<()> {
        self.inner.recheck()
    }
    fn sinks(&self, tenant: &str) -> StoreResult<Vec<SinkRecord>> {
        self.inner.sinks(tenant)
    }
    fn put_sink(&self, sink: &SinkRecord) -> StoreResult<()> {
        self.inner.put_sink(sink)
    }
    fn remove_sink(&self, tenant: &str, id: &str) -> StoreResult<bool> {
        self.inner.remove_sink(tenant, id)
    }
}

/// Records into memory and, optionally, into `audit.jsonl` in the data dir.
struct TeeSink {
    mem: Arc<MemorySink>,
    file: Option<JsonLinesSink>,
    fail: Arc<std::sync::atomic::AtomicBool>,
}

impl AuditSink for TeeSink {
    fn record(&self, event: AuditEvent) -> BoxFuture<'_, Result<(), AuditError>> {
        Box::pin(async move {
            if self.fail.load(Ordering::SeqCst) {
                return Err(AuditError("sink down (test)".into()));
            }
            if let Some(f) = &self.file {
                f.record(event.clone()).await?;
            }
            self.mem.record(event).await
        })
    }
}

/// Harness options.
#[derive(Clone)]
pub struct Opts {
    /// Requests per second per tenant (0 = unlimited).
    pub per_tenant: f64,
    /// Requests per second per key (0 = unlimited).
    pub per_key: f64,
    /// KMS timeout and retries.
    pub retry: RetryPolicy,
    /// Also write audit events to `<data dir>/audit.jsonl`.
    pub jsonl_audit: bool,
    /// Outbound policy of KMS adapters: loopback and plain HTTP allowed (test peers).
    pub outbound: OutboundPolicy,
    /// Circuit breaker: short cool-down so a test can watch it close again.
    pub breaker: BreakerPolicy,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            per_tenant: 0.0,
            per_key: 0.0,
            retry: RetryPolicy {
                timeout: Duration::from_millis(200),
                attempts: 2,
                backoff: Duration::from_millis(5),
            },
            jsonl_audit: false,
            outbound: OutboundPolicy::allow_loopback_for_tests(),
            breaker: BreakerPolicy {
                threshold: 5,
                cool_down: Duration::from_millis(300),
            },
        }
    }
}

/// An HTTP answer.
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body as text.
    pub text: String,
}

impl Resp {
    /// The body as JSON (panics if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }
    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// A running Encryption Service.
pub struct Harness {
    /// The temporary data dir (removed on drop).
    pub dir: PathBuf,
    /// The SQLite store itself.
    pub sqlite: Arc<dyn Store>,
    /// The store the service uses (counts tenant lookups).
    pub store: Arc<CountingStore>,
    /// The built-in KMS.
    pub builtin: Arc<BuiltinKms>,
    /// The service behind the API listener.
    pub service: Arc<Service>,
    /// Every audit event, in order.
    pub audit: Arc<MemorySink>,
    /// Lease clock.
    pub clock: Arc<ManualClock>,
    /// `http://127.0.0.1:<port>` of the API listener.
    pub api: String,
    /// `http://127.0.0.1:<port>` of the admin listener.
    pub admin: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Every DEK the API returned so far.
    pub deks: Mutex<Vec<Vec<u8>>>,
    /// When set, the audit sink fails (fail-closed behaviour).
    pub audit_fail: Arc<std::sync::atomic::AtomicBool>,
    sink: Arc<dyn AuditSink>,
    opts: Opts,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Serves `router` on an ephemeral loopback port.
async fn serve(router: axum::Router) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    (format!("http://{addr}"), task)
}

impl Harness {
    /// Starts a service with default options.
    pub async fn start() -> Self {
        Self::start_with(Opts::default()).await
    }

    /// Starts a service.
    pub async fn start_with(opts: Opts) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "keystead-api-test-{}-{}",
            std::process::id(),
            hex::encode(keystead_server::util::random_bytes::<8>())
        ));
        std::fs::create_dir_all(&dir).expect("create data dir");
        let sqlite: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.join("keystead.db")).expect("open store"));
        let root = RootKey::load_or_create(&dir.join("root.key")).expect("root key");
        let builtin = Arc::new(BuiltinKms::new(root, sqlite.clone()));
        let store = Arc::new(CountingStore::new(sqlite.clone()));
        let audit = Arc::new(MemorySink::default());
        let file = opts
            .jsonl_audit
            .then(|| JsonLinesSink::open(&dir.join("audit.jsonl")).expect("audit file"));
        let audit_fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sink: Arc<dyn AuditSink> = Arc::new(TeeSink {
            mem: audit.clone(),
            file,
            fail: audit_fail.clone(),
        });
        let clock = Arc::new(ManualClock::default());
        let service = Self::make_service(&store, &builtin, &sink, &clock, &opts);
        let state = AppState {
            service: service.clone(),
            limiter: Arc::new(RateLimiter::new(opts.per_tenant, opts.per_key)),
            directory: None,
        };
        let (api, t1) = serve(app(state.clone())).await;
        let (admin, t2) = serve(admin_app(state)).await;
        // With the whole workspace built together, reqwest's `rustls-no-provider` feature
        // (from the client SDK) is on: give it a process-wide provider (first call wins).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("http client");
        Self {
            dir,
            sqlite,
            store,
            builtin,
            service,
            audit,
            clock,
            api,
            admin,
            http,
            deks: Mutex::new(Vec::new()),
            audit_fail,
            sink,
            opts,
            tasks: Mutex::new(vec![t1, t2]),
        }
    }

    fn make_service(
        store: &Arc<CountingStore>,
        builtin: &Arc<BuiltinKms>,
        sink: &Arc<dyn AuditSink>,
        clock: &Arc<ManualClock>,
        opts: &Opts,
    ) -> Arc<Service> {
        let store: Arc<dyn Store> = store.clone();
        Arc::new(Service::new(
            store,
            builtin.clone(),
            sink.clone(),
            Arc::new(Metrics::default()),
            clock.clone(),
            ServiceOptions {
                instance: "es-test".into(),
                retry: opts.retry,
                outbound: opts.outbound.clone(),
                breaker: opts.breaker,
                ..Default::default()
            },
        ))
    }

    /// Starts a second ES instance (own lease cache) over the same store, built-in KMS and
    /// audit sink; returns its API base URL.
    pub async fn second_instance(&self) -> String {
        let service = Self::make_service(
            &self.store,
            &self.builtin,
            &self.sink,
            &Arc::new(ManualClock::default()),
            &self.opts,
        );
        let state = AppState {
            service,
            limiter: Arc::new(RateLimiter::new(0.0, 0.0)),
            directory: None,
        };
        let (api, t) = serve(app(state)).await;
        self.tasks.lock().expect("tasks").push(t);
        api
    }

    /// Creates a tenant with the built-in KMS (config `builtin-1`, lease 1 h, renewal 20 min).
    pub fn tenant(&self, id: &str, mode: TenantMode) -> Tenant {
        create_builtin_tenant(&self.sqlite, &self.builtin, id, mode, 3600, 1200)
            .expect("create tenant")
    }

    /// Creates a service key; returns (key id, secret).
    pub fn key_full(
        &self,
        name: &str,
        tenants: Option<&[&str]>,
        ops: &[&str],
        expires_at: Option<i64>,
    ) -> (String, String) {
        let k = new_key(
            name,
            tenants.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
            ops.iter().map(|s| (*s).to_owned()).collect(),
            expires_at,
        );
        self.sqlite
            .create_service_key(&k.record)
            .expect("create key");
        (k.record.id.clone(), k.secret.to_string())
    }

    /// A key with every operation for `tenants` (`None`: all tenants).
    pub fn key(&self, name: &str, tenants: Option<&[&str]>) -> (String, String) {
        self.key_full(name, tenants, OPS, None)
    }

    /// POSTs raw bytes.
    pub async fn post_raw(&self, path: &str, key: Option<&str>, body: Vec<u8>) -> Resp {
        self.post_to(&self.api, path, key, body).await
    }

    /// POSTs raw bytes to another instance.
    pub async fn post_to(&self, base: &str, path: &str, key: Option<&str>, body: Vec<u8>) -> Resp {
        let mut req = self
            .http
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let r = req.send().await.expect("request");
        Self::resp(r).await
    }

    /// POSTs JSON.
    pub async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> Resp {
        self.post_raw(path, key, serde_json::to_vec(body).expect("json"))
            .await
    }

    /// GETs a full URL.
    pub async fn get(&self, url: &str) -> Resp {
        Self::resp(self.http.get(url).send().await.expect("request")).await
    }

    async fn resp(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        Resp {
            status,
            headers,
            text,
        }
    }

    /// Remembers a DEK the API returned.
    pub fn saw_dek(&self, dek: &[u8]) {
        assert_eq!(dek.len(), 32, "a DEK is 32 bytes");
        self.deks.lock().expect("deks").push(dek.to_vec());
    }

    /// Wraps for `tenant`, asserting success; returns (DEK, EDEK base64).
    pub async fn wrap(&self, key: &str, tenant: &str) -> (Vec<u8>, String) {
        let r = self
            .post(
                "/v1/keys/wrap",
                Some(key),
                &json!({ "tenant_id": tenant, "metadata": md() }),
            )
            .await;
        assert_eq!(r.status, 200, "wrap: {}", r.text);
        let v = r.json();
        let dek = unb64(v["dek"].as_str().expect("dek"));
        self.saw_dek(&dek);
        (dek, v["edek"].as_str().expect("edek").to_owned())
    }

    /// Unwraps (any outcome).
    pub async fn unwrap_req(&self, key: &str, tenant: &str, edek: &str) -> Resp {
        self.unwrap_at(&self.api, key, tenant, edek).await
    }

    /// Unwraps at another instance (any outcome).
    pub async fn unwrap_at(&self, base: &str, key: &str, tenant: &str, edek: &str) -> Resp {
        let body = json!({ "tenant_id": tenant, "edek": edek, "metadata": md() });
        let r = self
            .post_to(
                base,
                "/v1/keys/unwrap",
                Some(key),
                serde_json::to_vec(&body).expect("json"),
            )
            .await;
        if r.status == 200 {
            self.saw_dek(&unb64(r.json()["dek"].as_str().expect("dek")));
        } else {
            self.check_error_shape(&r);
        }
        r
    }

    /// Unwraps, asserting success; returns the DEK.
    pub async fn unwrap(&self, key: &str, tenant: &str, edek: &str) -> Vec<u8> {
        let r = self.unwrap_req(key, tenant, edek).await;
        assert_eq!(r.status, 200, "unwrap: {}", r.text);
        unb64(r.json()["dek"].as_str().expect("dek"))
    }

    /// Rekeys, asserting success; returns the new EDEK (base64).
    pub async fn rekey(&self, key: &str, tenant: &str, edek: &str) -> String {
        let r = self
            .post(
                "/v1/keys/rekey",
                Some(key),
                &json!({ "tenant_id": tenant, "edek": edek, "metadata": md() }),
            )
            .await;
        assert_eq!(r.status, 200, "rekey: {}", r.text);
        let v = r.json();
        assert_eq!(
            v.as_object().map(|o| o.len()),
            Some(1),
            "rekey answers only the EDEK: {v}"
        );
        v["edek"].as_str().expect("edek").to_owned()
    }

    /// Asserts the error shape: a JSON object with exactly `code` and `message` (strings),
    /// and no DEK seen so far in any encoding.
    pub fn check_error_shape(&self, r: &Resp) {
        assert!(r.status >= 400, "not an error: {} {}", r.status, r.text);
        let v = r.json();
        let o = v
            .as_object()
            .unwrap_or_else(|| panic!("error body is not an object: {}", r.text));
        assert_eq!(
            o.len(),
            2,
            "error body has exactly code and message: {}",
            r.text
        );
        let code = o.get("code").and_then(Value::as_str).expect("code");
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "code is snake_case: {code}"
        );
        assert!(
            o.get("message").and_then(Value::as_str).is_some(),
            "message is a string: {}",
            r.text
        );
        for dek in self.deks.lock().expect("deks").iter() {
            for enc in encodings(dek) {
                assert!(
                    !r.text.as_bytes().windows(enc.len()).any(|w| w == enc),
                    "an error body contains a DEK: {}",
                    r.text
                );
            }
        }
    }

    /// Asserts an error answer with `status` and `code`; returns the message.
    pub fn expect_error(&self, r: &Resp, status: u16, code: &str) -> String {
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (status, Some(code)),
            "expected {status} {code}, got: {} {}",
            r.status,
            r.text
        );
        self.check_error_shape(r);
        r.json()["message"].as_str().expect("message").to_owned()
    }

    /// Every audit event so far.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.audit.0.lock().expect("audit").clone()
    }

    /// Creates a tenant whose primary config is `config_id` at `provider` with `settings`
    /// (stored sealed, as `keystead tenant add-kms-config` does). The tenant keeps its
    /// built-in config `builtin-1` as a non-primary config.
    pub fn kms_tenant(
        &self,
        id: &str,
        mode: TenantMode,
        config_id: &str,
        provider: &str,
        settings: &Value,
    ) -> Tenant {
        let mut t = self.tenant(id, mode);
        self.add_kms_config(id, config_id, provider, settings);
        t.primary_config = config_id.to_owned();
        self.sqlite.update_tenant(&t).expect("update tenant");
        t
    }

    /// Adds a (non-primary) KMS config with sealed settings.
    pub fn add_kms_config(&self, tenant: &str, config_id: &str, provider: &str, settings: &Value) {
        let raw = serde_json::to_vec(settings).expect("settings json");
        let sealed = self
            .builtin
            .seal_settings(tenant, config_id, &raw)
            .expect("seal settings");
        self.sqlite
            .put_config(&KmsConfig {
                tenant: tenant.to_owned(),
                id: config_id.to_owned(),
                provider: provider.to_owned(),
                state: keystead_server::store::ConfigState::Active,
                settings: sealed,
            })
            .expect("put config");
    }

    /// The build context adapters get in this harness (for adapter-level tests).
    pub fn build_context(&self) -> BuildContext {
        BuildContext {
            outbound: self.opts.outbound.clone(),
            timeout: self.opts.retry.timeout,
        }
    }

    /// Sets a tenant's `disabled` flag through the store.
    pub fn set_disabled(&self, tenant: &str, disabled: bool) {
        let mut t = self.sqlite.tenant(tenant).expect("store").expect("tenant");
        t.disabled = disabled;
        self.sqlite.update_tenant(&t).expect("update tenant");
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A DEK in every encoding a leak could take: raw, hex (lower, upper), base64 (standard,
/// URL-safe, with and without padding).
pub fn encodings(dek: &[u8]) -> Vec<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    vec![
        dek.to_vec(),
        hex::encode(dek).into_bytes(),
        hex::encode_upper(dek).into_bytes(),
        STANDARD.encode(dek).into_bytes(),
        STANDARD_NO_PAD.encode(dek).into_bytes(),
        URL_SAFE.encode(dek).into_bytes(),
        URL_SAFE_NO_PAD.encode(dek).into_bytes(),
    ]
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}
