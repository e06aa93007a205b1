//! Trust in identity keys: pinning on first use and safety codes.
//!
//! **Safety code.** For each of the two users, with `L = "keystead/v1/safety-code"`:
//!
//! ```text
//! d_0     = SHA-512(L ‖ lp16(user id) ‖ identity key [32])
//! d_(i+1) = SHA-512(d_i ‖ identity key)          for i < 5200
//! half    = the first 30 bytes of d_5200, as 6 chunks of 5 bytes; each chunk is read as a
//!           40-bit big-endian integer and printed as 5 decimal digits (value mod 100 000)
//! code    = the two 30-digit halves in ascending (string) order, concatenated: 60 digits,
//!           shown as 12 groups of 5
//! ```
//!
//! Sorting makes the code the same on both sides. The iteration count raises the cost of
//! searching for a second key whose half collides with a given one (about 2^100 work for
//! 30 digits, multiplied by 5200). Only SHA-512 from the `sha2` crate is used.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use sha2::{Digest, Sha512};

use crate::error::{Error, Result};
use crate::ids::UserId;
use crate::keys::{Fingerprint, SigningPublicKey};
use crate::wire;

const SAFETY_LABEL: &[u8] = b"keystead/v1/safety-code";
/// SHA-512 iterations per half of a safety code.
pub const SAFETY_ITERATIONS: usize = 5200;

/// The result of comparing a newly seen identity key with the pinned one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinStatus {
    /// No key was pinned for the user: the new one is pinned now (trust on first use).
    New,
    /// The key is the pinned one.
    Match,
    /// The key differs from the pinned one. The application must surface this (and may
    /// re-pin after the user compared safety codes); see [`PinStatus::into_result`].
    Changed,
}

impl PinStatus {
    /// `Changed` as [`Error::KeyChanged`], the others as `Ok`.
    pub fn into_result(self) -> Result<Self> {
        match self {
            PinStatus::Changed => Err(Error::KeyChanged),
            s => Ok(s),
        }
    }
}

/// Compares a pinned fingerprint (if any) with a newly seen one, in constant time.
pub fn check_pin(pinned: Option<&Fingerprint>, seen: &Fingerprint) -> PinStatus {
    use subtle::ConstantTimeEq;
    match pinned {
        None => PinStatus::New,
        Some(p) if bool::from(p.ct_eq(seen)) => PinStatus::Match,
        Some(_) => PinStatus::Changed,
    }
}

/// An in-memory pin store: user id → pinned identity fingerprint. Applications persist it
/// through [`PinStore::entries`] and [`PinStore::insert`].
#[derive(Clone, Debug, Default)]
pub struct PinStore {
    pins: BTreeMap<UserId, Fingerprint>,
}

impl PinStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks `key` for `user`, pinning it if nothing was pinned. A `Changed` key does not
    /// replace the pin.
    pub fn observe(&mut self, user: &UserId, key: &SigningPublicKey) -> PinStatus {
        let fp = key.fingerprint();
        let status = check_pin(self.pins.get(user), &fp);
        if status == PinStatus::New {
            self.pins.insert(user.clone(), fp);
        }
        status
    }

    /// Replaces the pin (after the user verified the new key, e.g. by a safety code).
    pub fn insert(&mut self, user: UserId, fingerprint: Fingerprint) {
        self.pins.insert(user, fingerprint);
    }

    /// The pinned fingerprint of `user`.
    pub fn get(&self, user: &UserId) -> Option<&Fingerprint> {
        self.pins.get(user)
    }

    /// Every pin, for persisting.
    pub fn entries(&self) -> impl Iterator<Item = (&UserId, &Fingerprint)> {
        self.pins.iter()
    }
}

fn half(user: &UserId, key: &SigningPublicKey) -> Result<String> {
    let key = key.to_bytes();
    let mut first = Vec::with_capacity(SAFETY_LABEL.len() + 2 + user.as_bytes().len() + 32);
    first.extend_from_slice(SAFETY_LABEL);
    wire::put_lp16(&mut first, user.as_bytes())?;
    first.extend_from_slice(&key);
    let mut d = Sha512::digest(&first);
    for _ in 0..SAFETY_ITERATIONS {
        let mut h = Sha512::new();
        h.update(d);
        h.update(key);
        d = h.finalize();
    }
    let mut out = String::with_capacity(30);
    for chunk in d.chunks_exact(5).take(6) {
        let v = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)) % 100_000;
        // Five digits, zero-padded, written without `format!` (no_std-friendly).
        let mut digits = [b'0'; 5];
        let mut x = v;
        for slot in digits.iter_mut().rev() {
            // `x % 10` is below 10, so the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let dgt = (x % 10) as u8;
            *slot = b'0' + dgt;
            x /= 10;
        }
        out.extend(digits.iter().map(|b| char::from(*b)));
    }
    Ok(out)
}

/// The 60-digit safety code of two users (see the module docs), as 12 groups of 5 digits
/// separated by spaces. The same for `(a, b)` and `(b, a)`.
pub fn safety_code(
    user_a: &UserId,
    key_a: &SigningPublicKey,
    user_b: &UserId,
    key_b: &SigningPublicKey,
) -> Result<String> {
    let a = half(user_a, key_a)?;
    let b = half(user_b, key_b)?;
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let digits: Vec<char> = lo.chars().chain(hi.chars()).collect();
    let mut out = String::with_capacity(71);
    for (i, group) in digits.chunks(5).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.extend(group.iter());
    }
    Ok(out)
}
