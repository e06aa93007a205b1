//! The randomness source: the platform CSPRNG through `getrandom` (in browsers and Node,
//! `crypto.getRandomValues`).

use rand_core::UnwrapErr;

/// The platform CSPRNG as a [`rand_core::CryptoRng`].
///
/// `UnwrapErr` turns a failure into a panic (a trap in the wasm build). `getRandomValues`
/// fails only when no Web Crypto exists at all, and then no key could be made safely anyway.
pub type SysRng = UnwrapErr<getrandom::SysRng>;

/// A handle on the platform CSPRNG.
pub fn rng() -> SysRng {
    UnwrapErr(getrandom::SysRng)
}
