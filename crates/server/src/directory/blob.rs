//! Attachment blob storage: the local filesystem (default, under the data dir) or an
//! S3-compatible object store. Blobs are ciphertext (range-decryptable attachments); the
//! server never holds their keys.
//!
//! Uploads are streamed by the HTTP layer into a temporary file under [`BlobStore::temp_dir`]
//! (hashed on the way: the device signature covers the body's SHA-256), and only then handed
//! to [`BlobStore::put_file`], so a refused or interrupted upload never replaces a blob.
//! Downloads are streamed, whole or by byte range.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::kms::BoxFuture;

/// A blob's bytes, in chunks.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A blob storage failure (never carries blob contents or credentials).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob under that name.
    #[error("no such blob")]
    NotFound,
    /// The backend failed.
    #[error("blob storage: {0}")]
    Backend(String),
}

/// Where blob contents live.
pub trait BlobStore: Send + Sync + 'static {
    /// A directory for upload temporary files (on the same filesystem as the blobs for the
    /// file backend, so that the final rename is atomic).
    fn temp_dir(&self) -> &Path;
    /// Stores the complete file at `file` as blob `key`, replacing any previous content
    /// atomically; the temporary file is consumed.
    fn put_file<'a>(&'a self, key: &'a str, file: &'a Path)
    -> BoxFuture<'a, Result<(), BlobError>>;
    /// Streams blob `key`, or the bytes `range` of it (the caller checked the range against
    /// the recorded size).
    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'a, Result<BlobStream, BlobError>>;
}

/// The storage key of (tenant, blob id): hex SHA-256 of both, length-prefixed, with a
/// two-character fan-out. Path-safe whatever the ids hold, and fixed-length.
pub fn blob_key(tenant: &str, blob_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"keystead/blob\0");
    h.update((tenant.len() as u64).to_be_bytes());
    h.update(tenant.as_bytes());
    h.update(blob_id.as_bytes());
    let hex = hex::encode(h.finalize());
    format!("{}/{}", &hex[..2], hex)
}

fn io(e: std::io::Error) -> BlobError {
    if e.kind() == std::io::ErrorKind::NotFound {
        BlobError::NotFound
    } else {
        BlobError::Backend(e.to_string())
    }
}

/// Chunk size of streamed reads.
const CHUNK: usize = 64 * 1024;

/// Streams `len` bytes of `file` from its current position.
fn file_stream(file: tokio::fs::File, len: u64) -> BlobStream {
    Box::pin(futures_util::stream::unfold(
        (file, len),
        |(mut file, left)| async move {
            if left == 0 {
                return None;
            }
            let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
            let mut buf = vec![0u8; want];
            match file.read(&mut buf).await {
                Ok(0) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob shorter than recorded",
                    )),
                    (file, 0),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), (file, left - n as u64)))
                }
                Err(e) => Some((Err(e), (file, 0))),
            }
        },
    ))
}

/// Blobs as files under a directory.
pub struct FileBlobStore {
    root: PathBuf,
    tmp: PathBuf,
}

impl FileBlobStore {
    /// Uses (and creates) `root` and `root/tmp`.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        let tmp = root.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        Ok(Self {
            root: root.to_path_buf(),
            tmp,
        })
    }

    fn path(&self, key: &str) -> PathBuf {
        // Keys come from `blob_key`: hex and one '/', never `..`.
        self.root.join(key)
    }
}

impl BlobStore for FileBlobStore {
    fn temp_dir(&self) -> &Path {
        &self.tmp
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let dest = self.path(key);
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent).await.map_err(io)?;
            }
            // The upload was written and fsynced by the HTTP layer; rename replaces any
            // previous content atomically.
            tokio::fs::rename(file, &dest).await.map_err(io)
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'a, Result<BlobStream, BlobError>> {
        Box::pin(async move {
            let mut f = tokio::fs::File::open(self.path(key)).await.map_err(io)?;
            let size = f.metadata().await.map_err(io)?.len();
            let r = range.unwrap_or(0..size);
            if r.start > r.end || r.end > size {
                return Err(BlobError::Backend("range outside the stored file".into()));
            }
            f.seek(std::io::SeekFrom::Start(r.start))
                .await
                .map_err(io)?;
            Ok(file_stream(f, r.end - r.start))
        })
    }
}

/// Settings of the S3 backend (`[directory]` in keystead.toml); credentials come from the
/// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
/// No `Debug`: it may hold a secret.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL (S3-compatible stores, moto); `None` = AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Allow a plain-HTTP endpoint (tests only).
    pub allow_http: bool,
    /// Key prefix inside the bucket.
    pub prefix: String,
    /// Explicit credentials (access key id, secret) instead of the environment's: tests
    /// only; keystead.toml has no field for them.
    pub credentials: Option<(String, zeroize::Zeroizing<String>)>,
}

/// Blobs in an S3-compatible bucket.
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    tmp: PathBuf,
}

/// Files up to this size are sent in one PUT; larger ones as a multipart upload in parts of
/// this size.
const SINGLE_PUT: usize = 8 * 1024 * 1024;

impl S3BlobStore {
    /// Builds the client (no request is made); upload temporary files go to `tmp`.
    pub fn new(s: &S3Settings, tmp: &Path) -> Result<Self, BlobError> {
        // object_store builds its own reqwest client, and reqwest is built without a default
        // rustls provider here (`rustls-no-provider`): make ring, the tree's only provider,
        // the process default. A provider installed already (the same one) is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&s.bucket)
            .with_allow_http(s.allow_http);
        if let Some(e) = &s.endpoint {
            b = b.with_endpoint(e);
        }
        if let Some(r) = &s.region {
            b = b.with_region(r);
        }
        if let Some((id, secret)) = &s.credentials {
            b = b
                .with_access_key_id(id)
                .with_secret_access_key(secret.as_str());
        }
        let store = b.build().map_err(|e| BlobError::Backend(e.to_string()))?;
        std::fs::create_dir_all(tmp).map_err(io)?;
        Ok(Self {
            store: Arc::new(store),
            prefix: s.prefix.trim_matches('/').to_owned(),
            tmp: tmp.to_path_buf(),
        })
    }

    fn location(&self, key: &str) -> object_store::path::Path {
        if self.prefix.is_empty() {
            object_store::path::Path::from(key)
        } else {
            object_store::path::Path::from(format!("{}/{key}", self.prefix))
        }
    }
}

fn os_err(e: object_store::Error) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound,
        other => BlobError::Backend(other.to_string()),
    }
}

impl BlobStore for S3BlobStore {
    fn temp_dir(&self) -> &Path {
        &self.tmp
    }

    fn put_file<'a>(
        &'a self,
        key: &'a str,
        file: &'a Path,
    ) -> BoxFuture<'a, Result<(), BlobError>> {
        Box::pin(async move {
            let res = async {
                let loc = self.location(key);
                let mut f = tokio::fs::File::open(file).await.map_err(io)?;
                let size = f.metadata().await.map_err(io)?.len();
                if size <= SINGLE_PUT as u64 {
                    let mut buf = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                    f.read_to_end(&mut buf).await.map_err(io)?;
                    self.store
                        .put(&loc, PutPayload::from(buf))
                        .await
                        .map_err(os_err)?;
                    return Ok(());
                }
                let upload = self.store.put_multipart(&loc).await.map_err(os_err)?;
                let mut w = WriteMultipart::new_with_chunk_size(upload, SINGLE_PUT);
                let mut buf = vec![0u8; CHUNK * 16];
                loop {
                    let n = match f.read(&mut buf).await {
                        Ok(n) => n,
                        Err(e) => {
                            let _ = w.abort().await;
                            return Err(io(e));
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    w.wait_for_capacity(4).await.map_err(os_err)?;
                    w.write(&buf[..n]);
                }
                w.finish().await.map_err(os_err)?;
                Ok(())
            }
            .await;
            let _ = tokio::fs::remove_file(file).await;
            res
        })
    }

    fn get<'a>(
        &'a self,
        key: &'a str,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'a, Result<BlobStream, BlobError>> {
        Box::pin(async move {
            if range.as_ref().is_some_and(|r| r.start == r.end) {
                return Ok(Box::pin(futures_util::stream::empty()) as BlobStream);
            }
            let opts = GetOptions {
                range: range.map(GetRange::Bounded),
                ..GetOptions::default()
            };
            let res = self
                .store
                .get_opts(&self.location(key), opts)
                .await
                .map_err(os_err)?;
            let s = res
                .into_stream()
                .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())));
            Ok(Box::pin(s) as BlobStream)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(s: BlobStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn file_backend_ranges_overwrite_and_missing() {
        let dir = std::env::temp_dir().join(format!(
            "keystead-blob-test-{}",
            hex::encode(crate::util::random_bytes::<6>())
        ));
        let store = FileBlobStore::new(&dir).unwrap();
        let key = blob_key("acme", "../../etc/passwd");
        assert!(!key.contains(".."));
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let tmp = store.temp_dir().join("up1");
        std::fs::write(&tmp, &data).unwrap();
        store.put_file(&key, &tmp).await.unwrap();
        assert!(!tmp.exists());
        assert_eq!(collect(store.get(&key, None).await.unwrap()).await, data);
        assert_eq!(
            collect(store.get(&key, Some(70_000..140_001)).await.unwrap()).await,
            data[70_000..140_001]
        );
        assert!(
            collect(store.get(&key, Some(5..5)).await.unwrap())
                .await
                .is_empty()
        );
        // Overwrite.
        std::fs::write(&tmp, b"short").unwrap();
        store.put_file(&key, &tmp).await.unwrap();
        assert_eq!(
            collect(store.get(&key, None).await.unwrap()).await,
            b"short"
        );
        // Missing.
        assert!(matches!(
            store.get(&blob_key("acme", "nope"), None).await,
            Err(BlobError::NotFound)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
