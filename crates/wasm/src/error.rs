//! The crate's error type and the stable error codes of the JS API.
//!
//! Every error that reaches JavaScript is a plain `Error` whose `name` is `"KeysteadError"`
//! and whose `code` is one of [`ErrorCode::ALL`]. `npm/index.d.ts` lists the same strings as
//! the `ErrorCode` union; `tests/error_codes.rs` checks that the two lists agree.
//!
//! Decryption and authentication failures stay as opaque as in the core: a wrong key, a
//! tampered segment, a segment of another file and an access block of another file all say
//! `decrypt_failed`.

use core::fmt;
use std::borrow::Cow;

/// A stable, machine-readable error code (the `code` property of a `KeysteadError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Bytes are not a valid encoding of the expected format (wrong magic, unknown version,
    /// bad length, trailing bytes, key-derivation parameters below the floor).
    Malformed,
    /// Decryption or authentication failed: wrong key or passphrase, tampered, reordered,
    /// duplicated or foreign data, a key commitment that does not match.
    DecryptFailed,
    /// A signature did not verify, or the content was signed by another author than the one
    /// expected.
    BadSignature,
    /// An identifier (recipient id, document id) was empty, too long or held control
    /// characters.
    InvalidId,
    /// A public key was not valid.
    InvalidKey,
    /// The ciphertext ended before its final segment and trailer.
    Truncated,
    /// An input exceeded a documented limit.
    LimitExceeded,
    /// The API was used out of order (a stream read after it failed, an empty passphrase).
    Usage,
    /// The access block holds no grant for this identity from a trusted granter.
    NoGrant,
    /// An argument had the wrong type or value (not a `Uint8Array`, a negative range, ...).
    InvalidArgument,
    /// Reading the input failed: the source stream errored, or a range fetcher rejected or
    /// returned the wrong number of bytes.
    SourceFailed,
    /// A group log entry was signed by a key that was not an admin's as of its parent.
    NotAdmin,
    /// A group log entry does not follow its predecessor (wrong seq or parent hash: a
    /// dropped, reordered or foreign entry), or a genesis entry that is not one.
    LogChain,
    /// A group log is shorter than a checkpoint verified earlier (a withheld tail), or a
    /// user record is older than one seen before.
    LogRollback,
    /// A group log diverges from a checkpoint verified earlier, or two valid entries claim
    /// the same parent.
    LogFork,
    /// A group log entry's operations do not fit the group (removing a non-member or the
    /// last admin, missing or extra sealed epoch keys, ...).
    InvalidGroupOp,
    /// A user's identity key differs from the one pinned or recorded earlier: show it.
    KeyChanged,
}

impl ErrorCode {
    /// Every code, in the order `npm/index.d.ts` lists them.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::Malformed,
        ErrorCode::DecryptFailed,
        ErrorCode::BadSignature,
        ErrorCode::InvalidId,
        ErrorCode::InvalidKey,
        ErrorCode::Truncated,
        ErrorCode::LimitExceeded,
        ErrorCode::Usage,
        ErrorCode::NoGrant,
        ErrorCode::InvalidArgument,
        ErrorCode::SourceFailed,
        ErrorCode::NotAdmin,
        ErrorCode::LogChain,
        ErrorCode::LogRollback,
        ErrorCode::LogFork,
        ErrorCode::InvalidGroupOp,
        ErrorCode::KeyChanged,
    ];

    /// The code's string, as JavaScript sees it. The first eight and the last six equal the core's
    /// [`keystead_core::Error::code`] strings.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::DecryptFailed => "decrypt_failed",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::InvalidKey => "invalid_key",
            ErrorCode::Truncated => "truncated",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::Usage => "usage",
            ErrorCode::NoGrant => "no_grant",
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::SourceFailed => "source_failed",
            ErrorCode::NotAdmin => "not_admin",
            ErrorCode::LogChain => "log_chain",
            ErrorCode::LogRollback => "log_rollback",
            ErrorCode::LogFork => "log_fork",
            ErrorCode::InvalidGroupOp => "invalid_group_op",
            ErrorCode::KeyChanged => "key_changed",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of the wasm SDK: a code and a human-readable message. The message never holds
/// key material or plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: Cow<'static, str>,
}

/// Result alias of the crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

impl Error {
    /// An error with a fixed message.
    pub const fn new(code: ErrorCode, message: &'static str) -> Self {
        Self {
            code,
            message: Cow::Borrowed(message),
        }
    }

    /// An error with a composed message.
    pub fn with_message(code: ErrorCode, message: String) -> Self {
        Self {
            code,
            message: Cow::Owned(message),
        }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn invalid_argument(message: &'static str) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    pub(crate) fn no_grant() -> Self {
        Self::new(
            ErrorCode::NoGrant,
            "the access block holds no grant for this identity from a trusted granter",
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl core::error::Error for Error {}

/// The code the SDK reports for a core error.
pub fn code_of(e: &keystead_core::Error) -> ErrorCode {
    use keystead_core::Error as E;
    match e {
        E::Format(_) => ErrorCode::Malformed,
        E::Decrypt => ErrorCode::DecryptFailed,
        E::Signature => ErrorCode::BadSignature,
        E::InvalidId => ErrorCode::InvalidId,
        E::InvalidKey => ErrorCode::InvalidKey,
        E::Truncated => ErrorCode::Truncated,
        E::Limit => ErrorCode::LimitExceeded,
        E::Usage => ErrorCode::Usage,
        E::NotAdmin => ErrorCode::NotAdmin,
        E::LogChain => ErrorCode::LogChain,
        E::Rollback => ErrorCode::LogRollback,
        E::Fork => ErrorCode::LogFork,
        E::InvalidGroupOp => ErrorCode::InvalidGroupOp,
        E::KeyChanged => ErrorCode::KeyChanged,
        // The core error is non-exhaustive; a variant added later is at least an API misuse
        // until this match learns it (a test pins the mapping of every known variant).
        _ => ErrorCode::Usage,
    }
}

impl From<keystead_core::Error> for Error {
    fn from(e: keystead_core::Error) -> Self {
        Self::with_message(code_of(&e), format!("{e}"))
    }
}

impl From<keystead_core::FormatError> for Error {
    fn from(e: keystead_core::FormatError) -> Self {
        keystead_core::Error::from(e).into()
    }
}

impl From<Error> for wasm_bindgen::JsValue {
    /// A JS `Error` with `name = "KeysteadError"` and the stable `code`.
    fn from(e: Error) -> Self {
        let err = js_sys::Error::new(&e.message);
        err.set_name("KeysteadError");
        // Setting a data property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code.as_str().into());
        err.into()
    }
}
