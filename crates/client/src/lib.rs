//! # keystead-client
//!
//! The Rust SDK for backend services. Integration is two calls:
//!
//! ```no_run
//! # async fn demo(client: keystead_client::Client) -> Result<(), keystead_client::Error> {
//! use keystead_client::{Document, Metadata};
//! let md = Metadata::new("user-17");
//! let doc = Document::new("acme", "invoice/991")?.field("customer.email", b"ada@example.com")?;
//! let sealed = client.encrypt(&md, &doc).await?;          // one wrap call + local AES-GCM
//! let plain = client.decrypt(&md, &sealed.to_bytes()?).await?; // one unwrap call
//! # Ok(()) }
//! ```
//!
//! Fields are encrypted locally under a fresh DEK per document (AES-256-GCM, AAD binding
//! tenant, document id and field path); the Encryption Service only ever sees DEKs and EDEKs.
//! DEKs never leave this crate's API: no method returns raw key bytes.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use keystead_core::envelope::{EdekPlacement, EncryptedDocument};
use keystead_core::{Dek, DocumentId, FieldPath, TenantId};
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

mod search;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Encryption Service answered with an error (shared/API.md "Errors").
    #[error("{status} {code}: {message}")]
    Api {
        /// HTTP status; 0 for one item's failure inside a successful batch answer.
        status: u16,
        /// Stable code, e.g. `kms_denied`.
        code: String,
        /// Human text from the service.
        message: String,
    },
    /// The service could not be reached or the connection broke.
    #[error("transport: {0}")]
    Transport(String),
    /// Local encryption or decryption failed (tampered or foreign ciphertext, bad input).
    #[error("crypto: {0}")]
    Crypto(#[from] keystead_core::Error),
    /// The service's answer was not what the API promises.
    #[error("unexpected answer from the Encryption Service: {0}")]
    InvalidResponse(String),
    /// The client was configured in a way it refuses (e.g. plain HTTP to a remote host).
    #[error("configuration: {0}")]
    Config(String),
}

impl Error {
    /// The API code for service errors (`None` for local ones).
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A service key (secret). Never printed.
#[derive(Clone)]
pub struct ServiceKey(Arc<Zeroizing<String>>);

impl ServiceKey {
    /// Wraps the secret printed by `keystead service-key create`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Arc::new(Zeroizing::new(secret.into())))
    }
}

impl fmt::Debug for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServiceKey(<redacted>)")
    }
}

/// Request metadata (API.md "Request metadata"); `requesting_id` is required.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Metadata {
    /// Who asks (user or service).
    pub requesting_id: String,
    /// Classification of the data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_label: Option<String>,
    /// The object concerned (defaults to the document id on encrypt/decrypt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// The end user's IP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// Echoed in the audit event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Free string map, copied into the audit event.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, String>,
}

impl Metadata {
    /// Metadata for `requesting_id`.
    pub fn new(requesting_id: impl Into<String>) -> Self {
        Self {
            requesting_id: requesting_id.into(),
            ..Self::default()
        }
    }
}

/// A plaintext document: tenant, id and fields by path.
#[derive(Clone, Debug)]
pub struct Document {
    tenant: TenantId,
    id: DocumentId,
    fields: BTreeMap<FieldPath, Zeroizing<Vec<u8>>>,
}

impl Document {
    /// An empty document.
    pub fn new(tenant: &str, id: &str) -> Result<Self, Error> {
        Ok(Self {
            tenant: TenantId::new(tenant)?,
            id: DocumentId::new(id)?,
            fields: BTreeMap::new(),
        })
    }
    /// Adds a field (builder style).
    pub fn field(mut self, path: &str, value: &[u8]) -> Result<Self, Error> {
        self.fields
            .insert(FieldPath::new(path)?, Zeroizing::new(value.to_vec()));
        Ok(self)
    }
    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }
    /// The document id.
    pub fn id(&self) -> &DocumentId {
        &self.id
    }
    /// A field's value.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(p, _)| p.as_str() == path)
            .map(|(_, v)| v.as_slice())
    }
    /// All fields.
    pub fn fields(&self) -> impl Iterator<Item = (&FieldPath, &[u8])> {
        self.fields.iter().map(|(p, v)| (p, v.as_slice()))
    }
}

/// Client options.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Attempts for unwraps on 503/504/connection errors (1 = no retry).
    pub unwrap_attempts: u32,
    /// Allow `http://` to a non-loopback host (behind a trusted TLS-terminating proxy).
    pub allow_plain_http: bool,
    /// How long derived keys (deterministic fields, blind indexes) are cached. A rotation
    /// or a revoked tenant key reaches this client within this time; zero disables the
    /// cache (a derive call per operation).
    pub derived_key_ttl: Duration,
    /// Most (tenant, purpose, path) entries the derived-key cache holds.
    pub derived_key_cache_max: usize,
    /// Blind-index length in bytes (1 to 32). Shorter indexes collide more often, so a
    /// match reveals less and queries return more false positives to filter out after
    /// decryption.
    pub blind_index_len: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            unwrap_attempts: 3,
            allow_plain_http: false,
            derived_key_ttl: Duration::from_secs(300),
            derived_key_cache_max: 10_000,
            blind_index_len: 16,
        }
    }
}

/// A client of one Encryption Service. Cheap to clone; keeps a keep-alive pool.
#[derive(Clone, Debug)]
pub struct Client {
    base: url::Url,
    key: ServiceKey,
    http: reqwest::Client,
    opts: ClientOptions,
    derived: Arc<search::DerivedCache>,
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Result<Vec<u8>, Error> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|_| Error::InvalidResponse("invalid base64".into()))
}

fn dek_from(s: &str) -> Result<Dek, Error> {
    let mut bytes = Zeroizing::new(unb64(s)?);
    let arr: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| Error::InvalidResponse("a DEK must be 32 bytes".into()))?;
    bytes.iter_mut().for_each(|b| *b = 0);
    Ok(Dek::from_bytes(arr))
}

impl Client {
    /// A client for the service at `url` (e.g. `https://es.internal:7777`).
    pub fn new(url: &str, key: ServiceKey) -> Result<Self, Error> {
        Self::with_options(url, key, ClientOptions::default())
    }

    /// A client with explicit options.
    pub fn with_options(url: &str, key: ServiceKey, opts: ClientOptions) -> Result<Self, Error> {
        let base =
            url::Url::parse(url).map_err(|e| Error::Config(format!("bad URL {url}: {e}")))?;
        let loopback = match base.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        match base.scheme() {
            "https" => {}
            "http" if loopback || opts.allow_plain_http => {}
            "http" => {
                return Err(Error::Config(format!(
                    "refusing plain HTTP to non-loopback host {url}: use https or allow_plain_http"
                )));
            }
            other => return Err(Error::Config(format!("unsupported URL scheme {other}"))),
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(e.to_string()))?;
        let tls = rustls_platform_roots(tls)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .no_proxy()
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        if !(1..=32).contains(&opts.blind_index_len) {
            return Err(Error::Config(
                "blind_index_len must be 1 to 32 bytes".into(),
            ));
        }
        Ok(Self {
            base,
            key,
            http,
            opts,
            derived: Arc::default(),
        })
    }

    async fn post(&self, path: &str, body: &Value, retry: bool) -> Result<Value, Error> {
        let url = self
            .base
            .join(path)
            .map_err(|e| Error::Config(e.to_string()))?;
        let attempts = if retry {
            self.opts.unwrap_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            let res = self
                .http
                .post(url.clone())
                .bearer_auth(self.key.0.as_str())
                .json(body)
                .send()
                .await;
            let retryable = match &res {
                Err(e) => e.is_connect() || e.is_timeout(),
                Ok(r) => matches!(r.status().as_u16(), 503 | 504),
            };
            if retryable && attempt < attempts {
                tokio::time::sleep(Duration::from_millis(100 << (attempt - 1))).await;
                attempt += 1;
                continue;
            }
            let r = res.map_err(|e| Error::Transport(e.to_string()))?;
            let status = r.status().as_u16();
            if status == 204 {
                return Ok(Value::Null);
            }
            let v: Value = r
                .json()
                .await
                .map_err(|e| Error::InvalidResponse(e.to_string()))?;
            if (200..300).contains(&status) {
                return Ok(v);
            }
            #[derive(Deserialize)]
            struct E {
                code: String,
                message: String,
            }
            let e: E =
                serde_json::from_value(v).map_err(|e| Error::InvalidResponse(e.to_string()))?;
            return Err(Error::Api {
                status,
                code: e.code,
                message: e.message,
            });
        }
    }

    fn md(md: &Metadata, doc: &DocumentId) -> Value {
        let mut m = md.clone();
        if m.object_id.is_none() {
            m.object_id = Some(doc.as_str().to_owned());
        }
        serde_json::to_value(m).unwrap_or(Value::Null)
    }

    async fn wrap(
        &self,
        md: &Metadata,
        doc: &Document,
    ) -> Result<(Dek, keystead_core::edek::Edek), Error> {
        let v = self
            .post(
                "/v1/keys/wrap",
                &json!({ "tenant_id": doc.tenant.as_str(), "metadata": Self::md(md, &doc.id) }),
                false,
            )
            .await?;
        let dek = dek_from(
            v["dek"]
                .as_str()
                .ok_or_else(|| Error::InvalidResponse("no dek".into()))?,
        )?;
        let edek = unb64(
            v["edek"]
                .as_str()
                .ok_or_else(|| Error::InvalidResponse("no edek".into()))?,
        )?;
        Ok((dek, keystead_core::edek::Edek::parse(&edek)?))
    }

    async fn unwrap(
        &self,
        md: &Metadata,
        tenant: &TenantId,
        doc: &DocumentId,
        edek: &[u8],
    ) -> Result<Dek, Error> {
        let v = self
            .post(
                "/v1/keys/unwrap",
                &json!({ "tenant_id": tenant.as_str(), "edek": b64(edek), "metadata": Self::md(md, doc) }),
                true,
            )
            .await?;
        dek_from(
            v["dek"]
                .as_str()
                .ok_or_else(|| Error::InvalidResponse("no dek".into()))?,
        )
    }

    /// Encrypts a document under a fresh DEK (one wrap call); the EDEK is attached to the
    /// returned document.
    pub async fn encrypt(&self, md: &Metadata, doc: &Document) -> Result<EncryptedDocument, Error> {
        let (dek, edek) = self.wrap(md, doc).await?;
        Ok(EncryptedDocument::encrypt(
            &mut rng()?,
            &dek,
            doc.tenant.clone(),
            doc.id.clone(),
            EdekPlacement::Attached(edek),
            doc.fields().map(|(p, v)| (p.clone(), v)),
        )?)
    }

    /// Encrypts a document and returns it with its EDEK kept apart (detached form), for
    /// storing the EDEK in its own column.
    pub async fn encrypt_detached(
        &self,
        md: &Metadata,
        doc: &Document,
    ) -> Result<(EncryptedDocument, Vec<u8>), Error> {
        let (dek, edek) = self.wrap(md, doc).await?;
        let enc = EncryptedDocument::encrypt(
            &mut rng()?,
            &dek,
            doc.tenant.clone(),
            doc.id.clone(),
            EdekPlacement::Detached,
            doc.fields().map(|(p, v)| (p.clone(), v)),
        )?;
        Ok((enc, edek.to_bytes()))
    }

    /// Decrypts an attached-form document (one unwrap call).
    pub async fn decrypt(&self, md: &Metadata, encrypted: &[u8]) -> Result<Document, Error> {
        let doc = EncryptedDocument::parse(encrypted)?;
        let edek = doc
            .edek()
            .ok_or_else(|| {
                Error::Config("detached document: use decrypt_detached with its EDEK".into())
            })?
            .to_bytes();
        self.open(md, &doc, &edek).await
    }

    /// Decrypts a detached-form document with its EDEK (one unwrap call).
    pub async fn decrypt_detached(
        &self,
        md: &Metadata,
        encrypted: &[u8],
        edek: &[u8],
    ) -> Result<Document, Error> {
        let doc = EncryptedDocument::parse(encrypted)?;
        self.open(md, &doc, edek).await
    }

    async fn open(
        &self,
        md: &Metadata,
        doc: &EncryptedDocument,
        edek: &[u8],
    ) -> Result<Document, Error> {
        let dek = self
            .unwrap(md, doc.tenant(), doc.document_id(), edek)
            .await?;
        let fields = doc.decrypt(&dek)?;
        Ok(Document {
            tenant: doc.tenant().clone(),
            id: doc.document_id().clone(),
            fields: fields
                .into_iter()
                .map(|(p, v)| (p, Zeroizing::new(v.to_vec())))
                .collect(),
        })
    }

    /// Encrypts many documents of one tenant with one `batch-wrap` call per 1000 documents.
    /// Results are per document, in input order: one failure does not fail the others.
    pub async fn encrypt_batch(
        &self,
        md: &Metadata,
        docs: &[Document],
    ) -> Result<Vec<Result<EncryptedDocument, Error>>, Error> {
        let Some(first) = docs.first() else {
            return Ok(Vec::new());
        };
        if docs.iter().any(|d| d.tenant != first.tenant) {
            return Err(Error::Config(
                "a batch holds documents of one tenant".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if !docs.iter().all(|d| seen.insert(d.id.as_str())) {
            return Err(Error::Config(
                "document ids in a batch must be unique".into(),
            ));
        }
        let mut out = Vec::with_capacity(docs.len());
        for chunk in docs.chunks(BATCH_MAX) {
            let ids: Vec<&str> = chunk.iter().map(|d| d.id.as_str()).collect();
            let v = self
                .post(
                    "/v1/keys/batch-wrap",
                    &json!({ "tenant_id": first.tenant.as_str(), "ids": ids, "metadata": md }),
                    false,
                )
                .await?;
            for d in chunk {
                out.push(
                    match (&v["keys"][d.id.as_str()], &v["failures"][d.id.as_str()]) {
                        (Value::Object(k), _) => self.seal_with(d, k),
                        (_, Value::Object(f)) => Err(item_error(f)),
                        _ => Err(Error::InvalidResponse(format!("no result for {}", d.id))),
                    },
                );
            }
        }
        Ok(out)
    }

    fn seal_with(
        &self,
        d: &Document,
        k: &serde_json::Map<String, Value>,
    ) -> Result<EncryptedDocument, Error> {
        let dek = dek_from(k.get("dek").and_then(Value::as_str).unwrap_or_default())?;
        let edek = keystead_core::edek::Edek::parse(&unb64(
            k.get("edek").and_then(Value::as_str).unwrap_or_default(),
        )?)?;
        Ok(EncryptedDocument::encrypt(
            &mut rng()?,
            &dek,
            d.tenant.clone(),
            d.id.clone(),
            EdekPlacement::Attached(edek),
            d.fields().map(|(p, v)| (p.clone(), v)),
        )?)
    }

    /// Decrypts many attached-form documents of one tenant with one `batch-unwrap` call per
    /// 1000 documents. Results are per document, in input order.
    pub async fn decrypt_batch(
        &self,
        md: &Metadata,
        encrypted: &[Vec<u8>],
    ) -> Result<Vec<Result<Document, Error>>, Error> {
        let parsed: Vec<Result<EncryptedDocument, Error>> = encrypted
            .iter()
            .map(|b| {
                let d = EncryptedDocument::parse(b)?;
                if d.edek().is_none() {
                    return Err(Error::Config("detached document in decrypt_batch".into()));
                }
                Ok(d)
            })
            .collect();
        let Some(tenant) = parsed
            .iter()
            .find_map(|r| r.as_ref().ok())
            .map(|d| d.tenant().clone())
        else {
            // Nothing parsed: every item is already an error.
            return Ok(parsed
                .into_iter()
                .map(|r| match r {
                    Err(e) => Err(e),
                    Ok(_) => Err(Error::InvalidResponse("unreachable".into())),
                })
                .collect());
        };
        if parsed.iter().flatten().any(|d| d.tenant() != &tenant) {
            return Err(Error::Config(
                "a batch holds documents of one tenant".into(),
            ));
        }
        let mut out: Vec<Result<Document, Error>> = Vec::with_capacity(parsed.len());
        let indexed: Vec<(usize, Result<EncryptedDocument, Error>)> =
            parsed.into_iter().enumerate().collect();
        for chunk in indexed.chunks(BATCH_MAX) {
            let edeks: serde_json::Map<String, Value> = chunk
                .iter()
                .filter_map(|(i, r)| {
                    let d = r.as_ref().ok()?;
                    Some((i.to_string(), Value::String(b64(&d.edek()?.to_bytes()))))
                })
                .collect();
            let v = if edeks.is_empty() {
                Value::Null
            } else {
                self.post(
                    "/v1/keys/batch-unwrap",
                    &json!({ "tenant_id": tenant.as_str(), "edeks": edeks, "metadata": md }),
                    true,
                )
                .await?
            };
            for (i, r) in chunk {
                let id = i.to_string();
                out.push(match r {
                    Err(e) => Err(Error::Config(e.to_string())),
                    Ok(d) => match (&v["keys"][&id], &v["failures"][&id]) {
                        (Value::String(k), _) => dek_from(k).and_then(|dek| {
                            let fields = d.decrypt(&dek)?;
                            Ok(Document {
                                tenant: d.tenant().clone(),
                                id: d.document_id().clone(),
                                fields: fields
                                    .into_iter()
                                    .map(|(p, v)| (p, Zeroizing::new(v.to_vec())))
                                    .collect(),
                            })
                        }),
                        (_, Value::Object(f)) => Err(item_error(f)),
                        _ => Err(Error::InvalidResponse(format!("no result for item {id}"))),
                    },
                });
            }
        }
        Ok(out)
    }

    /// Re-wraps an EDEK under the tenant's current primary key (the DEK, and so the data,
    /// is unchanged).
    pub async fn rekey(&self, md: &Metadata, tenant: &str, edek: &[u8]) -> Result<Vec<u8>, Error> {
        let v = self
            .post(
                "/v1/keys/rekey",
                &json!({ "tenant_id": tenant, "edek": b64(edek), "metadata": md }),
                false,
            )
            .await?;
        unb64(
            v["edek"]
                .as_str()
                .ok_or_else(|| Error::InvalidResponse("no edek".into()))?,
        )
    }

    /// Sends an application security event (`ADMIN_*`, `USER_*`, `DATA_*`, `PERIODIC_*`,
    /// `CUSTOM_<NAME>`) to the tenant's SIEM.
    pub async fn log_event(
        &self,
        md: &Metadata,
        tenant: &str,
        name: &str,
        details: Value,
    ) -> Result<(), Error> {
        let mut event = match details {
            Value::Object(m) => m,
            Value::Null => serde_json::Map::new(),
            other => {
                let mut m = serde_json::Map::new();
                m.insert("details".into(), other);
                m
            }
        };
        event.insert("name".into(), Value::String(name.to_owned()));
        self.post(
            "/v1/events",
            &json!({ "tenant_id": tenant, "event": event, "metadata": md }),
            false,
        )
        .await
        .map(|_| ())
    }
}

/// Most items one batch request may carry (API.md "Limits").
const BATCH_MAX: usize = 1000;

fn item_error(f: &serde_json::Map<String, Value>) -> Error {
    Error::Api {
        status: 0,
        code: f
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_owned(),
        message: f
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

/// The nonce source for one document's fields: a ChaCha20 CSPRNG seeded from the OS
/// for each document, so a document costs one `getrandom` call instead of one per field.
fn rng() -> Result<chacha20::ChaCha20Rng, Error> {
    use rand_core::SeedableRng as _;
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut())
        .map_err(|e| Error::Config(format!("the OS random number generator failed: {e}")))?;
    Ok(chacha20::ChaCha20Rng::from_seed(*seed))
}

/// Trust anchors: the platform's verifier (system roots) through reqwest's rustls setup.
fn rustls_platform_roots(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>,
) -> Result<rustls::ClientConfig, Error> {
    let verifier = rustls_platform_verifier::Verifier::new(builder.crypto_provider().clone())
        .map_err(|e| Error::Config(format!("system trust store: {e}")))?;
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}
