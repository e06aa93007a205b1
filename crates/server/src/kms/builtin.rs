//! The built-in KMS: a software KMS for the embedded default and for vendor-provided keys.
//!
//! Each (tenant, config) has master key versions: 32 random bytes, sealed under the root key
//! (AES-256-GCM, AAD naming tenant, config and version) and stored through the [`Store`].
//! A ciphertext is `version u32 ‖ nonce [12] ‖ AES-256-GCM(master, aad, secret) ‖ tag`, with
//! AAD = `"keystead/v1/builtin" ‖ lp16(tenant) ‖ lp16(config) ‖ context`. A disabled version
//! refuses everything with [`KmsError::Denied`], like a disabled key in a cloud KMS.
//!
//! The root key is a 32-byte file created on first run with mode 0600.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::{Zeroize, Zeroizing};

use keystead_core::edek::Edek;
use keystead_core::{Dek, EncryptionKeyPair, EncryptionPublicKey};

use super::{BoxFuture, KeyRef, Kms, KmsError, Wrapped};
use crate::store::{BuiltinKey, Store};
use crate::util::random_bytes;

const ROOT_AAD: &[u8] = b"keystead/v1/builtin-root";
const KEY_AAD: &[u8] = b"keystead/v1/builtin";

/// The root key that seals every built-in master key.
pub struct RootKey(Zeroizing<[u8; 32]>);

impl RootKey {
    /// Loads the root key file, creating it (mode 0600, new random key) if it is missing.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(mut bytes) => {
                let res = <[u8; 32]>::try_from(bytes.as_slice()).map(|k| Self(Zeroizing::new(k)));
                bytes.zeroize();
                res.map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "root key file {} must hold exactly 32 bytes",
                            path.display()
                        ),
                    )
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Zeroizing::new(random_bytes::<32>());
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(path)?;
                f.write_all(&key[..])?;
                f.sync_all()?;
                Ok(Self(key))
            }
            Err(e) => Err(e),
        }
    }

    /// A root key from bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&*self.0).into())
    }
}

fn nonce_array(n: &[u8]) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
    let mut a = [0u8; 12];
    a.copy_from_slice(n);
    a.into()
}

// Ids are at most 256 bytes (checked at the API edge), so the length fits a u16.
#[allow(clippy::cast_possible_truncation)]
fn lp16(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

fn root_aad(tenant: &str, config: &str, version: u32) -> Vec<u8> {
    let mut aad = ROOT_AAD.to_vec();
    lp16(&mut aad, tenant.as_bytes());
    lp16(&mut aad, config.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

const X25519_INFO: &[u8] = b"keystead/v1/builtin-x25519";
const SETTINGS_PREFIX: &str = "sealed:v1:";
const SETTINGS_AAD: &[u8] = b"keystead/v1/kms-settings";

fn settings_aad(tenant: &str, config: &str) -> Vec<u8> {
    let mut aad = SETTINGS_AAD.to_vec();
    lp16(&mut aad, tenant.as_bytes());
    lp16(&mut aad, config.as_bytes());
    aad
}

/// The built-in KMS.
pub struct BuiltinKms {
    root: RootKey,
    store: Arc<dyn Store>,
}

impl BuiltinKms {
    /// A built-in KMS over `store`, sealing with `root`.
    pub fn new(root: RootKey, store: Arc<dyn Store>) -> Self {
        Self { root, store }
    }

    /// Seals a KMS config's settings (which may hold credentials) for the store:
    /// `sealed:v1:` ‖ base64(nonce ‖ AES-256-GCM(root key, settings, AAD = tenant, config)).
    pub fn seal_settings(
        &self,
        tenant: &str,
        config: &str,
        settings: &[u8],
    ) -> Result<String, KmsError> {
        let nonce = random_bytes::<12>();
        let ct = self
            .root
            .cipher()
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: settings,
                    aad: &settings_aad(tenant, config),
                },
            )
            .map_err(|_| KmsError::Other("sealing failed".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ct);
        Ok(format!("{SETTINGS_PREFIX}{}", B64.encode(sealed)))
    }

    /// Opens settings stored by [`Self::seal_settings`]; settings without the prefix are
    /// returned as they are (they hold no credentials, e.g. `{}`).
    pub fn open_settings(
        &self,
        tenant: &str,
        config: &str,
        stored: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let Some(b64) = stored.strip_prefix(SETTINGS_PREFIX) else {
            return Ok(Zeroizing::new(stored.as_bytes().to_vec()));
        };
        let bad = || KmsError::Other("sealed KMS settings do not open under the root key".into());
        let sealed = B64.decode(b64).map_err(|_| bad())?;
        if sealed.len() < 12 + 16 {
            return Err(bad());
        }
        let (nonce, ct) = sealed.split_at(12);
        self.root
            .cipher()
            .decrypt(
                &nonce_array(nonce),
                Payload {
                    msg: ct,
                    aad: &settings_aad(tenant, config),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| bad())
    }

    /// Creates the next master key version for (tenant, config) and returns its number.
    pub fn create_version(&self, tenant: &str, config: &str) -> Result<u32, KmsError> {
        let existing = self
            .store
            .builtin_keys(tenant, config)
            .map_err(|e| KmsError::Other(e.to_string()))?;
        let version = existing.iter().map(|k| k.version).max().unwrap_or(0) + 1;
        let master = Zeroizing::new(random_bytes::<32>());
        let nonce = random_bytes::<12>();
        let aad = root_aad(tenant, config, version);
        let ct = self
            .root
            .cipher()
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: &master[..],
                    aad: &aad,
                },
            )
            .map_err(|_| KmsError::Other("sealing failed".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ct);
        self.store
            .put_builtin_key(&BuiltinKey {
                tenant: tenant.into(),
                config: config.into(),
                version,
                sealed,
                enabled: true,
            })
            .map_err(|e| KmsError::Other(e.to_string()))?;
        Ok(version)
    }

    /// Enables or disables a version (all versions when `version` is `None`).
    pub fn set_enabled(
        &self,
        tenant: &str,
        config: &str,
        version: Option<u32>,
        enabled: bool,
    ) -> Result<(), KmsError> {
        let keys = self
            .store
            .builtin_keys(tenant, config)
            .map_err(|e| KmsError::Other(e.to_string()))?;
        if keys.is_empty() {
            return Err(KmsError::Other(format!(
                "no built-in key for {tenant}/{config}"
            )));
        }
        for mut k in keys
            .into_iter()
            .filter(|k| version.is_none_or(|v| v == k.version))
        {
            k.enabled = enabled;
            self.store
                .put_builtin_key(&k)
                .map_err(|e| KmsError::Other(e.to_string()))?;
        }
        Ok(())
    }

    /// The master key for (tenant, config, version or current) as an AES-256-GCM cipher.
    fn master(&self, key: &KeyRef) -> Result<(u32, Aes256Gcm), KmsError> {
        let (version, master) = self.master_bytes(key)?;
        let cipher = Aes256Gcm::new_from_slice(&master)
            .map_err(|_| KmsError::Other("bad master key".into()))?;
        Ok((version, cipher))
    }

    /// The X25519 key pair of an asymmetric master key version: derived from the version's
    /// 32 master-key bytes with HKDF-SHA256 (info `keystead/v1/builtin-x25519`), so the same
    /// bytes are never used both as an AES key and as an X25519 scalar.
    fn asymmetric_pair(&self, key: &KeyRef) -> Result<(u32, EncryptionKeyPair), KmsError> {
        let (version, master) = self.master_bytes(key)?;
        let mut secret = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(None, &master)
            .expand(X25519_INFO, &mut secret[..])
            .map_err(|_| KmsError::Other("key derivation failed".into()))?;
        Ok((version, EncryptionKeyPair::from_secret_bytes(&secret)))
    }

    /// The master key bytes for (tenant, config, version or current), unsealed.
    fn master_bytes(&self, key: &KeyRef) -> Result<(u32, Zeroizing<Vec<u8>>), KmsError> {
        let keys = self
            .store
            .builtin_keys(&key.tenant, &key.config)
            .map_err(|e| KmsError::Other(e.to_string()))?;
        let k = match key.version {
            Some(v) => keys.iter().find(|k| k.version == v),
            None => keys.iter().max_by_key(|k| k.version),
        }
        .ok_or_else(|| {
            KmsError::Denied(format!(
                "no such key version for {}/{}",
                key.tenant, key.config
            ))
        })?;
        if !k.enabled {
            return Err(KmsError::Denied(format!(
                "key {}/{} v{} is disabled",
                key.tenant, key.config, k.version
            )));
        }
        if k.sealed.len() < 12 + 16 {
            return Err(KmsError::Other("corrupt sealed key".into()));
        }
        let (nonce, ct) = k.sealed.split_at(12);
        let aad = root_aad(&key.tenant, &key.config, k.version);
        let master = Zeroizing::new(
            self.root
                .cipher()
                .decrypt(&nonce_array(nonce), Payload { msg: ct, aad: &aad })
                .map_err(|_| {
                    KmsError::Other("a sealed master key does not open under the root key".into())
                })?,
        );
        Ok((k.version, master))
    }

    fn aad(key: &KeyRef, context: &[u8]) -> Vec<u8> {
        let mut aad = KEY_AAD.to_vec();
        lp16(&mut aad, key.tenant.as_bytes());
        lp16(&mut aad, key.config.as_bytes());
        aad.extend_from_slice(context);
        aad
    }

    fn encrypt(&self, key: &KeyRef, plaintext: &[u8], context: &[u8]) -> Result<Wrapped, KmsError> {
        let (version, cipher) = self.master(key)?;
        let nonce = random_bytes::<12>();
        let ct = cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plaintext,
                    aad: &Self::aad(key, context),
                },
            )
            .map_err(|_| KmsError::Other("encryption failed".into()))?;
        let mut out = Vec::with_capacity(4 + 12 + ct.len());
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(Wrapped {
            ciphertext: out,
            version,
        })
    }

    fn decrypt(
        &self,
        key: &KeyRef,
        ciphertext: &[u8],
        context: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        if ciphertext.len() < 4 + 12 + 16 {
            return Err(KmsError::InvalidCiphertext);
        }
        let version =
            u32::from_be_bytes([ciphertext[0], ciphertext[1], ciphertext[2], ciphertext[3]]);
        // A version this key never had means a tampered or forged ciphertext, not a refusal:
        // answering `Denied` would turn a bad EDEK into `kms_denied` (and drop a leasing
        // tenant's leases).
        let versions = self
            .store
            .builtin_keys(&key.tenant, &key.config)
            .map_err(|e| KmsError::Other(e.to_string()))?;
        if !versions.is_empty() && !versions.iter().any(|k| k.version == version) {
            return Err(KmsError::InvalidCiphertext);
        }
        let key = KeyRef {
            version: Some(version),
            ..key.clone()
        };
        let (_, cipher) = self.master(&key)?;
        let (nonce, ct) = ciphertext[4..].split_at(12);
        cipher
            .decrypt(
                &nonce_array(nonce),
                Payload {
                    msg: ct,
                    aad: &Self::aad(&key, context),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KmsError::InvalidCiphertext)
    }
}

impl Kms for BuiltinKms {
    fn provider(&self) -> &'static str {
        "builtin"
    }

    fn wrap<'a>(
        &'a self,
        key: &'a KeyRef,
        plaintext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        Box::pin(async move { self.encrypt(key, plaintext, context) })
    }

    fn unwrap<'a>(
        &'a self,
        key: &'a KeyRef,
        ciphertext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, KmsError>> {
        Box::pin(async move { self.decrypt(key, ciphertext, context) })
    }

    fn describe<'a>(&'a self, key: &'a KeyRef) -> BoxFuture<'a, Result<u32, KmsError>> {
        Box::pin(async move { self.master(key).map(|(v, _)| v) })
    }

    fn public_key<'a>(
        &'a self,
        key: &'a KeyRef,
    ) -> BoxFuture<'a, Result<(u32, EncryptionPublicKey), KmsError>> {
        Box::pin(async move {
            self.asymmetric_pair(key)
                .map(|(v, pair)| (v, pair.public().clone()))
        })
    }

    fn unwrap_asymmetric<'a>(
        &'a self,
        key: &'a KeyRef,
        edek: &'a Edek,
    ) -> BoxFuture<'a, Result<Dek, KmsError>> {
        Box::pin(async move {
            let versions = self
                .store
                .builtin_keys(&key.tenant, &key.config)
                .map_err(|e| KmsError::Other(e.to_string()))?;
            // As for symmetric ciphertexts: a version this key never had is a forged EDEK,
            // not a refusal.
            if key
                .version
                .is_some_and(|v| !versions.iter().any(|k| k.version == v))
            {
                return Err(KmsError::InvalidCiphertext);
            }
            let (_, pair) = self.asymmetric_pair(key)?;
            edek.unwrap_asymmetric(&pair)
                .map_err(|_| KmsError::InvalidCiphertext)
        })
    }
}
