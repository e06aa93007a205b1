//! Test support: deterministic RNGs, and recording/replaying RNGs for frozen vectors.
#![allow(dead_code)]

use std::convert::Infallible;

use chacha20::ChaCha20Rng;
use rand_core::{Rng, SeedableRng, TryCryptoRng, TryRng};

/// A seeded RNG: tests are reproducible.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Records every byte it hands out, so a vector can store the randomness it used.
pub struct RecordingRng {
    inner: ChaCha20Rng,
    pub log: Vec<u8>,
}

impl RecordingRng {
    pub fn new(seed: u64) -> Self {
        Self {
            inner: rng(seed),
            log: Vec::new(),
        }
    }
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.log)
    }
}

impl TryRng for RecordingRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.inner.fill_bytes(dst);
        self.log.extend_from_slice(dst);
        Ok(())
    }
}
impl TryCryptoRng for RecordingRng {}

/// Hands out exactly the recorded bytes, then panics: regenerating a vector must consume
/// the same randomness in the same order.
pub struct ReplayRng {
    bytes: Vec<u8>,
    pos: usize,
}

impl ReplayRng {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self { bytes, pos: 0 }
    }
    pub fn exhausted(&self) -> bool {
        self.pos == self.bytes.len()
    }
}

impl TryRng for ReplayRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let end = self.pos + dst.len();
        assert!(
            end <= self.bytes.len(),
            "vector's recorded randomness exhausted"
        );
        dst.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(())
    }
}
impl TryCryptoRng for ReplayRng {}

/// The deterministic plaintext pattern of attachment vectors: byte i = (i * 31 + 7) mod 251.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// Calls `check` with every single-bit flip of `bytes`.
pub fn for_each_bit_flip(bytes: &[u8], mut check: impl FnMut(usize, &[u8])) {
    let mut b = bytes.to_vec();
    for i in 0..bytes.len() * 8 {
        b[i / 8] ^= 1 << (i % 8);
        check(i, &b);
        b[i / 8] ^= 1 << (i % 8);
    }
}

/// Test ids from string literals.
pub fn t(s: &str) -> keystead_core::TenantId {
    keystead_core::TenantId::new(s).unwrap()
}
/// A config id.
pub fn c(s: &str) -> keystead_core::ConfigId {
    keystead_core::ConfigId::new(s).unwrap()
}
/// A document id.
pub fn d(s: &str) -> keystead_core::DocumentId {
    keystead_core::DocumentId::new(s).unwrap()
}
/// A field path.
pub fn p(s: &str) -> keystead_core::FieldPath {
    keystead_core::FieldPath::new(s).unwrap()
}
