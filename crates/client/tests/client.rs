//! The client against a real Encryption Service on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/two_calls.rs"]
#[allow(dead_code)]
mod two_calls;

use std::sync::Arc;

use keystead_client::{Client, ClientOptions, Document, Error, Metadata, ServiceKey};
use keystead_core::envelope::EncryptedDocument;
use keystead_server::audit::MemorySink;
use keystead_server::auth::{OPS, new_key};
use keystead_server::clock::SystemClock;
use keystead_server::http::{AppState, RateLimiter, app};
use keystead_server::kms::builtin::{BuiltinKms, RootKey};
use keystead_server::metrics::Metrics;
use keystead_server::service::{Service, ServiceOptions, create_builtin_tenant};
use keystead_server::store::sqlite::SqliteStore;
use keystead_server::store::{Store, TenantMode};

struct Es {
    url: String,
    store: Arc<dyn Store>,
    builtin: Arc<BuiltinKms>,
    service: Arc<Service>,
    audit: Arc<MemorySink>,
}

impl Es {
    async fn start() -> Self {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
        let builtin = Arc::new(BuiltinKms::new(RootKey::from_bytes([3; 32]), store.clone()));
        for (t, mode) in [
            ("acme", TenantMode::Leasing),
            ("globex", TenantMode::Leasing),
            ("remote-co", TenantMode::Remote),
        ] {
            create_builtin_tenant(&store, &builtin, t, mode, 3600, 1200).unwrap();
        }
        let audit = Arc::new(MemorySink::default());
        let service = Arc::new(Service::new(
            store.clone(),
            builtin.clone(),
            audit.clone(),
            Arc::new(Metrics::default()),
            Arc::new(SystemClock::default()),
            ServiceOptions::default(),
        ));
        let state = AppState {
            service: service.clone(),
            limiter: Arc::new(RateLimiter::new(0.0, 0.0)),
            directory: None,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
        Self {
            url,
            store,
            builtin,
            service,
            audit,
        }
    }

    fn key(&self, tenants: Option<&[&str]>) -> String {
        let k = new_key(
            &format!("k-{}", rand_name()),
            tenants.map(|t| t.iter().map(|s| (*s).to_owned()).collect()),
            OPS.iter().map(|s| (*s).to_owned()).collect(),
            None,
        );
        self.store.create_service_key(&k.record).unwrap();
        k.secret.to_string()
    }

    fn client(&self, tenants: Option<&[&str]>) -> Client {
        Client::new(&self.url, ServiceKey::new(self.key(tenants))).unwrap()
    }
}

fn rand_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

fn doc(tenant: &str, id: &str) -> Document {
    Document::new(tenant, id)
        .unwrap()
        .field("name", b"Ada")
        .unwrap()
        .field("ssn", b"078-05-1120")
        .unwrap()
}

#[tokio::test]
async fn example_runs_in_two_calls() {
    let es = Es::start().await;
    let got = two_calls::run(&es.url, &es.key(Some(&["acme"])))
        .await
        .unwrap();
    assert_eq!(got.get("email"), Some(&b"ada@example.com"[..]));
}

#[tokio::test]
async fn attached_and_detached_round_trips() {
    let es = Es::start().await;
    let c = es.client(None);
    let md = Metadata::new("svc");
    let d = doc("acme", "customer/1");
    let enc = c.encrypt(&md, &d).await.unwrap().to_bytes().unwrap();
    let back = c.decrypt(&md, &enc).await.unwrap();
    assert_eq!(back.get("ssn"), Some(&b"078-05-1120"[..]));
    let (det, edek) = c.encrypt_detached(&md, &d).await.unwrap();
    let back = c
        .decrypt_detached(&md, &det.to_bytes().unwrap(), &edek)
        .await
        .unwrap();
    assert_eq!(back.get("name"), Some(&b"Ada"[..]));
    // A detached document without its EDEK is a clear error, not a panic.
    assert!(matches!(
        c.decrypt(&md, &det.to_bytes().unwrap()).await,
        Err(Error::Config(_))
    ));
}

#[tokio::test]
async fn fields_swapped_between_documents_are_rejected() {
    let es = Es::start().await;
    let c = es.client(None);
    let md = Metadata::new("svc");
    let (a, edek_a) = c
        .encrypt_detached(&md, &doc("acme", "customer/1"))
        .await
        .unwrap();
    let (b, _) = c
        .encrypt_detached(&md, &doc("acme", "customer/2"))
        .await
        .unwrap();
    // Put b's `ssn` ciphertext into a's document bytes.
    let mut bytes = a.to_bytes().unwrap();
    let (ca, cb) = (&a.fields()[1].1, &b.fields()[1].1);
    let pos = bytes.windows(ca.len()).position(|w| w == &ca[..]).unwrap();
    bytes[pos..pos + cb.len()].copy_from_slice(cb);
    let err = c.decrypt_detached(&md, &bytes, &edek_a).await.unwrap_err();
    assert!(matches!(err, Error::Crypto(_)), "{err:?}");
}

#[tokio::test]
async fn a_document_of_tenant_a_cannot_be_decrypted_through_tenant_b() {
    let es = Es::start().await;
    let md = Metadata::new("svc");
    let a = es.client(Some(&["acme"]));
    let b = es.client(Some(&["globex"]));
    let (det, edek) = a
        .encrypt_detached(&md, &doc("acme", "customer/1"))
        .await
        .unwrap();
    let bytes = det.to_bytes().unwrap();
    // B's key is not scoped to acme.
    let err = b.decrypt_detached(&md, &bytes, &edek).await.unwrap_err();
    assert_eq!(err.code(), Some("tenant_forbidden"));
    // Relabel the document as globex's: the service refuses acme's EDEK for globex.
    let relabelled = EncryptedDocument::encrypt(
        &mut rand_core::UnwrapErr(getrandom::SysRng),
        &keystead_core::Dek::from_bytes([0; 32]),
        keystead_core::TenantId::new("globex").unwrap(),
        keystead_core::DocumentId::new("customer/1").unwrap(),
        keystead_core::envelope::EdekPlacement::Detached,
        Vec::<(keystead_core::FieldPath, &[u8])>::new(),
    )
    .unwrap();
    let err = b
        .decrypt_detached(&md, &relabelled.to_bytes().unwrap(), &edek)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("edek_invalid"));
}

#[tokio::test]
async fn rekey_after_rotation_keeps_the_data() {
    let es = Es::start().await;
    let c = es.client(None);
    let md = Metadata::new("svc");
    let (det, edek) = c
        .encrypt_detached(&md, &doc("remote-co", "r/1"))
        .await
        .unwrap();
    es.builtin.create_version("remote-co", "builtin-1").unwrap();
    es.service.forget_versions();
    let new_edek = c.rekey(&md, "remote-co", &edek).await.unwrap();
    let parsed = keystead_core::edek::Edek::parse(&new_edek).unwrap();
    assert_eq!(parsed.key_version().0, 2);
    let bytes = det.to_bytes().unwrap();
    for e in [&edek, &new_edek] {
        let back = c.decrypt_detached(&md, &bytes, e).await.unwrap();
        assert_eq!(back.get("name"), Some(&b"Ada"[..]));
    }
}

#[tokio::test]
async fn events_and_errors() {
    let es = Es::start().await;
    let c = es.client(None);
    let md = Metadata::new("svc");
    c.log_event(
        &md,
        "acme",
        "USER_LOGIN",
        serde_json::json!({ "user": "ada" }),
    )
    .await
    .unwrap();
    let err = c
        .log_event(&md, "acme", "login", serde_json::Value::Null)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("bad_request"));
    let bad = Client::new(&es.url, ServiceKey::new("ks_000000000000_nope")).unwrap();
    let err = bad.encrypt(&md, &doc("acme", "x")).await.unwrap_err();
    assert_eq!(err.code(), Some("unauthenticated"));
    // Plain HTTP to a non-loopback host is refused unless explicitly allowed.
    assert!(matches!(
        Client::new("http://10.0.0.1:7777", ServiceKey::new("k")),
        Err(Error::Config(_))
    ));
    let opts = ClientOptions {
        allow_plain_http: true,
        ..ClientOptions::default()
    };
    assert!(Client::with_options("http://10.0.0.1:7777", ServiceKey::new("k"), opts).is_ok());
    assert!(format!("{:?}", ServiceKey::new("secret-value")).contains("redacted"));
}

#[tokio::test]
async fn batches_succeed_per_document() {
    let es = Es::start().await;
    let c = es.client(None);
    let md = Metadata::new("svc");
    let docs: Vec<Document> = (0..25)
        .map(|i| doc("acme", &format!("customer/{i}")))
        .collect();
    let enc = c.encrypt_batch(&md, &docs).await.unwrap();
    assert_eq!(enc.len(), 25);
    let mut blobs: Vec<Vec<u8>> = enc
        .into_iter()
        .map(|r| r.unwrap().to_bytes().unwrap())
        .collect();
    // Item 3: flip the last byte of its EDEK (the wrapped DEK's tag) inside the document:
    // the document still parses, the service refuses that one EDEK. Item 5: garbage.
    let edek = EncryptedDocument::parse(&blobs[3])
        .unwrap()
        .edek()
        .unwrap()
        .to_bytes();
    let pos = blobs[3]
        .windows(edek.len())
        .position(|w| w == &edek[..])
        .unwrap();
    blobs[3][pos + edek.len() - 1] ^= 1;
    blobs[5] = b"garbage".to_vec();
    let dec = c.decrypt_batch(&md, &blobs).await.unwrap();
    assert_eq!(dec.len(), 25);
    for (i, r) in dec.iter().enumerate() {
        match i {
            3 => assert_eq!(r.as_ref().unwrap_err().code(), Some("edek_invalid")),
            5 => assert!(
                matches!(r, Err(Error::Config(_))),
                "garbage fails locally: {r:?}"
            ),
            _ => assert_eq!(
                r.as_ref().unwrap().get("ssn"),
                Some(&b"078-05-1120"[..]),
                "item {i}"
            ),
        }
    }
    // Mixed tenants and duplicate ids are refused up front.
    let mixed = vec![doc("acme", "a"), doc("globex", "b")];
    assert!(matches!(
        c.encrypt_batch(&md, &mixed).await,
        Err(Error::Config(_))
    ));
    let dup = vec![doc("acme", "a"), doc("acme", "a")];
    assert!(matches!(
        c.encrypt_batch(&md, &dup).await,
        Err(Error::Config(_))
    ));
    assert!(c.encrypt_batch(&md, &[]).await.unwrap().is_empty());
}

fn derive_events(es: &Es) -> usize {
    es.audit
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.action == "derive")
        .count()
}

#[tokio::test]
async fn derived_keys_are_cached_for_a_bounded_time() {
    let es = Es::start().await;
    let key = es.key(None);
    let md = Metadata::new("svc");
    let cached = Client::new(&es.url, ServiceKey::new(key.clone())).unwrap();
    for v in [&b"a"[..], b"b", b"c"] {
        let e = cached
            .encrypt_deterministic(&md, "acme", "email", v)
            .await
            .unwrap();
        cached
            .decrypt_deterministic(&md, "acme", "email", &e)
            .await
            .unwrap();
        cached.blind_index(&md, "acme", "email", v).await.unwrap();
        cached
            .blind_index_query(&md, "acme", "email", v)
            .await
            .unwrap();
    }
    assert_eq!(derive_events(&es), 2, "one derive per purpose");
    cached.forget_derived_keys();
    cached
        .blind_index(&md, "acme", "email", b"a")
        .await
        .unwrap();
    assert_eq!(derive_events(&es), 3);

    let uncached = Client::with_options(
        &es.url,
        ServiceKey::new(key.clone()),
        ClientOptions {
            derived_key_ttl: std::time::Duration::ZERO,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    for _ in 0..3 {
        uncached
            .blind_index(&md, "acme", "email", b"a")
            .await
            .unwrap();
    }
    assert_eq!(derive_events(&es), 6, "ttl 0: a derive per operation");

    // The cache is bounded: with room for one entry, alternating paths derive every time.
    let tiny = Client::with_options(
        &es.url,
        ServiceKey::new(key.clone()),
        ClientOptions {
            derived_key_cache_max: 1,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    for p in ["a", "b", "a", "b"] {
        tiny.blind_index(&md, "acme", p, b"v").await.unwrap();
    }
    assert_eq!(derive_events(&es), 10);

    // Blind-index length is configurable within 1..=32 bytes.
    for (len, ok) in [(0, false), (1, true), (32, true), (33, false)] {
        let c = Client::with_options(
            &es.url,
            ServiceKey::new(key.clone()),
            ClientOptions {
                blind_index_len: len,
                ..ClientOptions::default()
            },
        );
        assert_eq!(c.is_ok(), ok, "len {len}");
        if let Ok(c) = c {
            let i = c.blind_index(&md, "acme", "email", b"a").await.unwrap();
            assert_eq!(i.len(), len);
        }
    }
}

#[tokio::test]
async fn searchable_fields_surface_service_errors() {
    let es = Es::start().await;
    let c = es.client(Some(&["acme"]));
    let md = Metadata::new("svc");
    let err = c
        .encrypt_deterministic(&md, "globex", "email", b"a")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("tenant_forbidden"), "{err}");
    es.builtin
        .set_enabled("acme", "builtin-1", None, false)
        .unwrap();
    let err = c.blind_index(&md, "acme", "email", b"a").await.unwrap_err();
    assert_eq!(err.code(), Some("kms_denied"), "{err}");
    // Garbage is a local error, not a call.
    assert!(matches!(
        c.decrypt_deterministic(&md, "acme", "email", b"KSV").await,
        Err(Error::Crypto(_))
    ));
}
