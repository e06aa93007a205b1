//! Searchable fields: deterministic encryption and blind indexes.
//!
//! Both use keys the Encryption Service derives per tenant, purpose and field path from
//! secrets that only the tenant's KMS can unwrap (`POST /v1/keys/derive`). Keys are cached
//! in this client for [`ClientOptions::derived_key_ttl`](crate::ClientOptions) so a lookup
//! costs no round trip, and dropped (zeroized) after it, so a revoked tenant key or a
//! rotation reaches the client within that time.
//!
//! * **Deterministic encryption** (AES-256-SIV): equal plaintexts of one tenant and path
//!   encrypt to equal bytes, so a database can match them with `=`. It reveals which
//!   records share a value; use it only for fields that must be matched exactly.
//! * **Blind indexes** (truncated HMAC-SHA256): a token stored beside a normally encrypted
//!   field, matched with `=`. Shorter tokens collide more and reveal less.
//!
//! During a rotation of the tenant's derivation secret, values are written under the new
//! (current) secret while queries must match either: [`Client::deterministic_query`] and
//! [`Client::blind_index_query`] return one candidate per live secret, to be matched with
//! `IN (...)`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keystead_core::search::{
    BlindIndexer, DerivedKey, DeterministicCipher, Purpose, deterministic_secret_id,
};
use keystead_core::{FieldPath, SecretId, TenantId};
use serde_json::json;
use zeroize::Zeroizing;

use crate::{Client, Error, Metadata, unb64};

/// One derived key, set up for its purpose (built once per fetch, used by every call
/// until the entry expires), with the secret it comes from.
struct Entry {
    secret_id: SecretId,
    current: bool,
    op: Op,
}

/// A derived key ready for use: the cipher or indexer keeps the key material.
enum Op {
    Deterministic(DeterministicCipher),
    BlindIndex(BlindIndexer),
}

impl Entry {
    fn cipher(&self) -> Result<&DeterministicCipher, Error> {
        match &self.op {
            Op::Deterministic(c) => Ok(c),
            Op::BlindIndex(_) => Err(Error::InvalidResponse("not a deterministic key".into())),
        }
    }

    fn indexer(&self) -> Result<&BlindIndexer, Error> {
        match &self.op {
            Op::BlindIndex(i) => Ok(i),
            Op::Deterministic(_) => Err(Error::InvalidResponse("not a blind-index key".into())),
        }
    }
}

/// The derived keys of one (tenant, purpose, path), as fetched at one time.
struct Fetched {
    at: Instant,
    keys: Arc<Vec<Entry>>,
}

/// Derived keys by (tenant, purpose, path), each for a bounded time.
#[derive(Default)]
pub(crate) struct DerivedCache {
    map: Mutex<HashMap<(String, Purpose, String), Fetched>>,
}

impl std::fmt::Debug for DerivedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DerivedCache(<redacted>)")
    }
}

impl DerivedCache {
    fn get(&self, key: &(String, Purpose, String), ttl: Duration) -> Option<Arc<Vec<Entry>>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|f| f.at.elapsed() < ttl)
            .map(|f| f.keys.clone())
    }

    fn put(&self, key: (String, Purpose, String), keys: Arc<Vec<Entry>>, max: usize) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= max {
            // Full: forget the oldest half (their keys are zeroized when the last user
            // drops them).
            let mut ages: Vec<Instant> = map.values().map(|f| f.at).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            map.retain(|_, f| f.at > cut);
        }
        map.insert(
            key,
            Fetched {
                at: Instant::now(),
                keys,
            },
        );
    }

    fn clear(&self) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

impl Client {
    /// Parses the ids, then [`Self::derived`].
    async fn keys_for(
        &self,
        md: &Metadata,
        tenant: &str,
        purpose: Purpose,
        path: &str,
    ) -> Result<Arc<Vec<Entry>>, Error> {
        let (tenant, path) = (TenantId::new(tenant)?, FieldPath::new(path)?);
        self.derived(md, &tenant, purpose, &path).await
    }

    /// The derived keys of `path` (current first), from the cache or one derive call.
    async fn derived(
        &self,
        md: &Metadata,
        tenant: &TenantId,
        purpose: Purpose,
        path: &FieldPath,
    ) -> Result<Arc<Vec<Entry>>, Error> {
        let cache_key = (
            tenant.as_str().to_owned(),
            purpose,
            path.as_str().to_owned(),
        );
        if let Some(hit) = self.derived.get(&cache_key, self.opts.derived_key_ttl) {
            return Ok(hit);
        }
        let v = self
            .post(
                "/v1/keys/derive",
                &json!({
                    "tenant_id": tenant.as_str(),
                    "purpose": purpose.as_str(),
                    "paths": [path.as_str()],
                    "metadata": md,
                }),
                true,
            )
            .await?;
        let list = v["keys"][path.as_str()]
            .as_array()
            .ok_or_else(|| Error::InvalidResponse("no keys for the path".into()))?;
        let mut keys = Vec::with_capacity(list.len());
        for e in list {
            let bytes = Zeroizing::new(unb64(e["key"].as_str().unwrap_or_default())?);
            let key = DerivedKey::from_bytes(purpose, &bytes)
                .map_err(|_| Error::InvalidResponse("a derived key has the wrong length".into()))?;
            let secret_id = SecretId::new(e["secret_id"].as_str().unwrap_or_default())
                .map_err(|_| Error::InvalidResponse("invalid secret id".into()))?;
            let current = e["current"]
                .as_bool()
                .ok_or_else(|| Error::InvalidResponse("no `current` flag".into()))?;
            let op = match purpose {
                Purpose::Deterministic => {
                    Op::Deterministic(DeterministicCipher::new(&key, tenant, &secret_id, path)?)
                }
                Purpose::BlindIndex => Op::BlindIndex(BlindIndexer::new(
                    &key,
                    tenant,
                    path,
                    self.opts.blind_index_len,
                )?),
            };
            keys.push(Entry {
                secret_id,
                current,
                op,
            });
        }
        if keys.first().is_none_or(|e| !e.current) || keys.iter().filter(|e| e.current).count() != 1
        {
            return Err(Error::InvalidResponse(
                "a derive answers exactly one current key, first".into(),
            ));
        }
        let keys = Arc::new(keys);
        self.derived.put(
            cache_key,
            keys.clone(),
            self.opts.derived_key_cache_max.max(1),
        );
        Ok(keys)
    }

    /// Forgets every cached derived key (e.g. right after the operator rotated a tenant's
    /// derivation secret, rather than waiting for the cache to expire).
    pub fn forget_derived_keys(&self) {
        self.derived.clear();
    }

    /// Encrypts `value` deterministically under the tenant's current derivation secret:
    /// the same tenant, path and value always give the same bytes.
    pub async fn encrypt_deterministic(
        &self,
        md: &Metadata,
        tenant: &str,
        path: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let keys = self
            .keys_for(md, tenant, Purpose::Deterministic, path)
            .await?;
        Ok(keys[0].cipher()?.encrypt(value)?)
    }

    /// Decrypts a value made by [`Self::encrypt_deterministic`] for the same tenant and
    /// path, under any live derivation secret.
    pub async fn decrypt_deterministic(
        &self,
        md: &Metadata,
        tenant: &str,
        path: &str,
        encrypted: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let secret = deterministic_secret_id(encrypted)?;
        let keys = self
            .keys_for(md, tenant, Purpose::Deterministic, path)
            .await?;
        let e = keys
            .iter()
            .find(|e| e.secret_id == secret)
            .ok_or_else(|| Error::Api {
                status: 0,
                code: "secret_retired".into(),
                message: format!(
                    "the value was encrypted under derivation secret {} which is no longer live",
                    secret.as_str()
                ),
            })?;
        Ok(e.cipher()?.decrypt(encrypted)?)
    }

    /// What to search a deterministic column for: `value` encrypted under each live
    /// derivation secret, current first. Match with `IN (...)`.
    pub async fn deterministic_query(
        &self,
        md: &Metadata,
        tenant: &str,
        path: &str,
        value: &[u8],
    ) -> Result<Vec<Vec<u8>>, Error> {
        let keys = self
            .keys_for(md, tenant, Purpose::Deterministic, path)
            .await?;
        keys.iter()
            .map(|e| Ok(e.cipher()?.encrypt(value)?))
            .collect()
    }

    /// The blind index of `value` under the tenant's current derivation secret, truncated
    /// to [`ClientOptions::blind_index_len`](crate::ClientOptions) bytes. Store it beside the
    /// encrypted field.
    pub async fn blind_index(
        &self,
        md: &Metadata,
        tenant: &str,
        path: &str,
        value: &[u8],
    ) -> Result<Vec<u8>, Error> {
        let keys = self.keys_for(md, tenant, Purpose::BlindIndex, path).await?;
        Ok(keys[0].indexer()?.compute(value)?)
    }

    /// What to search a blind-index column for: the index of `value` under each live
    /// derivation secret, current first. Match with `IN (...)`.
    pub async fn blind_index_query(
        &self,
        md: &Metadata,
        tenant: &str,
        path: &str,
        value: &[u8],
    ) -> Result<Vec<Vec<u8>>, Error> {
        let keys = self.keys_for(md, tenant, Purpose::BlindIndex, path).await?;
        keys.iter()
            .map(|e| Ok(e.indexer()?.compute(value)?))
            .collect()
    }
}
