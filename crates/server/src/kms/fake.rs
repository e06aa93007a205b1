//! A controllable KMS for tests: it works like a KMS (ciphertexts bound to key and context)
//! until told to deny, hang, fail or slow down, and it counts its calls.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use zeroize::Zeroizing;

use super::{BoxFuture, Generated, KeyRef, Kms, KmsError, Wrapped};
use crate::util::random_bytes;

/// What the fake does on the next calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Answer normally.
    Normal,
    /// Refuse: [`KmsError::Denied`].
    Deny,
    /// Never answer (the caller's timeout fires).
    Hang,
    /// Fail as unreachable: [`KmsError::Unreachable`].
    Unreachable,
    /// Fail with [`KmsError::Other`].
    Fail,
    /// Answer after a delay.
    Slow(Duration),
}

/// The fake KMS.
pub struct FakeKms {
    key: Aes256Gcm,
    behavior: Mutex<Behavior>,
    calls: AtomicU64,
}

impl Default for FakeKms {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeKms {
    /// A fake with a random key, answering normally.
    pub fn new() -> Self {
        Self {
            key: Aes256Gcm::new((&random_bytes::<32>()).into()),
            behavior: Mutex::new(Behavior::Normal),
            calls: AtomicU64::new(0),
        }
    }

    /// Changes the behaviour for subsequent calls.
    pub fn set(&self, b: Behavior) {
        *self.behavior.lock().unwrap_or_else(|p| p.into_inner()) = b;
    }

    /// Calls made so far (every operation counts, whatever its outcome).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    async fn gate(&self) -> Result<(), KmsError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let b = *self.behavior.lock().unwrap_or_else(|p| p.into_inner());
        match b {
            Behavior::Normal => Ok(()),
            Behavior::Deny => Err(KmsError::Denied("fake: denied".into())),
            Behavior::Hang => {
                std::future::pending::<()>().await;
                Ok(())
            }
            Behavior::Unreachable => Err(KmsError::Unreachable("fake: unreachable".into())),
            Behavior::Fail => Err(KmsError::Other("fake: failure".into())),
            Behavior::Slow(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
        }
    }

    fn aad(key: &KeyRef, context: &[u8]) -> Vec<u8> {
        let mut aad = format!("{}\0{}\0", key.tenant, key.config).into_bytes();
        aad.extend_from_slice(context);
        aad
    }

    fn seal(&self, key: &KeyRef, pt: &[u8], context: &[u8]) -> Result<Vec<u8>, KmsError> {
        let nonce = random_bytes::<12>();
        let ct = self
            .key
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: pt,
                    aad: &Self::aad(key, context),
                },
            )
            .map_err(|_| KmsError::Other("fake: seal".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }
}

impl Kms for FakeKms {
    fn provider(&self) -> &'static str {
        "fake"
    }

    fn generate<'a>(
        &'a self,
        key: &'a KeyRef,
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Generated, KmsError>> {
        Box::pin(async move {
            self.gate().await?;
            let pt = Zeroizing::new(random_bytes::<32>().to_vec());
            let ciphertext = self.seal(key, &pt, context)?;
            Ok(Generated {
                plaintext: pt,
                ciphertext,
                version: key.version.unwrap_or(1),
            })
        })
    }

    fn wrap<'a>(
        &'a self,
        key: &'a KeyRef,
        plaintext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Wrapped, KmsError>> {
        Box::pin(async move {
            self.gate().await?;
            Ok(Wrapped {
                ciphertext: self.seal(key, plaintext, context)?,
                version: key.version.unwrap_or(1),
            })
        })
    }

    fn unwrap<'a>(
        &'a self,
        key: &'a KeyRef,
        ciphertext: &'a [u8],
        context: &'a [u8],
    ) -> BoxFuture<'a, Result<Zeroizing<Vec<u8>>, KmsError>> {
        Box::pin(async move {
            self.gate().await?;
            if ciphertext.len() < 12 + 16 {
                return Err(KmsError::InvalidCiphertext);
            }
            let (nonce, ct) = ciphertext.split_at(12);
            self.key
                .decrypt(
                    &{
                        let mut a = [0u8; 12];
                        a.copy_from_slice(nonce);
                        a.into()
                    },
                    Payload {
                        msg: ct,
                        aad: &Self::aad(key, context),
                    },
                )
                .map(Zeroizing::new)
                .map_err(|_| KmsError::InvalidCiphertext)
        })
    }

    fn describe<'a>(&'a self, key: &'a KeyRef) -> BoxFuture<'a, Result<u32, KmsError>> {
        Box::pin(async move {
            self.gate().await?;
            Ok(key.version.unwrap_or(1))
        })
    }
}
