//! The error codes of the JS API: the Rust list (`ErrorCode::ALL`), the `ErrorCode` union of
//! `npm/index.d.ts` and the core's codes agree. (npm/test/errors.test.mjs checks the built
//! module's `errorCodes()` against the same union.)
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::panic)]

use keystead_core::{Error as CoreError, FormatError};
use keystead_wasm::ErrorCode;
use keystead_wasm::error::code_of;

/// The string literals of `export type ErrorCode = | "a" | "b" ...;` in index.d.ts, in order.
fn typescript_codes() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../npm/index.d.ts");
    let dts = std::fs::read_to_string(path).unwrap();
    let start = dts
        .find("export type ErrorCode =")
        .unwrap_or_else(|| panic!("no ErrorCode union in {path}"));
    let body = &dts[start..start + dts[start..].find(';').unwrap()];
    body.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn rust_and_typescript_lists_agree() {
    let rust: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    assert_eq!(rust, typescript_codes());
    let mut unique = rust.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), rust.len(), "duplicate codes");
    assert_eq!(keystead_wasm::error_codes(), rust);
}

#[test]
fn core_errors_keep_their_codes() {
    for e in [
        CoreError::Format(FormatError::BadMagic),
        CoreError::Format(FormatError::UnknownVersion(2)),
        CoreError::Format(FormatError::UnexpectedEnd),
        CoreError::Format(FormatError::TrailingBytes),
        CoreError::Format(FormatError::TooLong),
        CoreError::Format(FormatError::InvalidValue),
        CoreError::Decrypt,
        CoreError::Signature,
        CoreError::InvalidId,
        CoreError::InvalidKey,
        CoreError::Truncated,
        CoreError::Limit,
        CoreError::Usage,
        CoreError::NotAdmin,
        CoreError::LogChain,
        CoreError::Rollback,
        CoreError::Fork,
        CoreError::InvalidGroupOp,
        CoreError::KeyChanged,
    ] {
        assert_eq!(code_of(&e).as_str(), e.code(), "{e:?}");
        let wasm_err: keystead_wasm::Error = e.into();
        assert_eq!(wasm_err.code(), code_of(&e));
        assert!(!wasm_err.message().is_empty());
    }
}
