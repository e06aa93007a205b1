//! The crate's one error type.

use core::fmt;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything that can go wrong in the core.
///
/// Decryption and authentication failures are deliberately opaque ([`Error::Decrypt`]): the
/// caller learns that the input was not authentic for the given key and context, never which
/// check failed or why.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The bytes are not a valid encoding of the expected format.
    Format(FormatError),
    /// Decryption or authentication failed: wrong key, wrong context, or tampered data.
    Decrypt,
    /// A signature did not verify, or was made by a key other than the expected one.
    Signature,
    /// An identifier was empty, too long, or not valid UTF-8.
    InvalidId,
    /// A public or private key was not valid (for example a low-order X25519 point).
    InvalidKey,
    /// A stream ended before its final segment and trailer: never a clean end of file.
    Truncated,
    /// An input exceeded a documented limit (for example a stream longer than 2^64 segments
    /// or a field larger than the format can carry).
    Limit,
    /// The API was used out of order (for example data pushed after `finish`).
    Usage,
    /// A group log entry was signed by a key that was not an admin's identity key as of the
    /// entry's parent.
    NotAdmin,
    /// A group log entry does not follow its predecessor: wrong sequence number or parent
    /// hash (a dropped, reordered or foreign entry), or a genesis entry that is not one.
    LogChain,
    /// A group log is shorter than, or diverges from, a checkpoint this client verified
    /// earlier (a withheld or rewritten tail).
    Rollback,
    /// Two different valid entries claim the same parent: the log forked.
    Fork,
    /// A group log entry's operations are not valid for the group's state (removing a
    /// non-member, removing the last admin, missing or extra sealed epoch keys, ...).
    InvalidGroupOp,
    /// A user's identity key differs from the one pinned or recorded earlier. Applications
    /// must show this to the user.
    KeyChanged,
}

/// Why bytes failed to parse. Parsing errors are not secret: they are about the framing,
/// never about key material.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatError {
    /// The magic bytes name another format (or none).
    BadMagic,
    /// The magic bytes are right but the version is not one this build understands.
    UnknownVersion(u8),
    /// The input ended inside a field.
    UnexpectedEnd,
    /// Bytes were left over after a complete value.
    TrailingBytes,
    /// A length prefix exceeds the format's limit for that field.
    TooLong,
    /// A field holds a value the format does not allow (unknown mode, empty id, unsorted
    /// or duplicate field paths, ...).
    InvalidValue,
}

impl From<FormatError> for Error {
    fn from(e: FormatError) -> Self {
        Error::Format(e)
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::BadMagic => f.write_str("unrecognised format (bad magic bytes)"),
            FormatError::UnknownVersion(v) => write!(f, "unsupported format version {v}"),
            FormatError::UnexpectedEnd => f.write_str("input ends inside a field"),
            FormatError::TrailingBytes => f.write_str("trailing bytes after the value"),
            FormatError::TooLong => f.write_str("a length exceeds the format's limit"),
            FormatError::InvalidValue => f.write_str("a field holds a value the format forbids"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Format(e) => write!(f, "malformed input: {e}"),
            Error::Decrypt => f.write_str("decryption failed"),
            Error::Signature => f.write_str("signature verification failed"),
            Error::InvalidId => f.write_str("invalid identifier"),
            Error::InvalidKey => f.write_str("invalid key"),
            Error::Truncated => f.write_str("stream truncated before its final segment"),
            Error::Limit => f.write_str("input exceeds a limit"),
            Error::Usage => f.write_str("API used out of order"),
            Error::NotAdmin => f.write_str("group log entry not signed by an admin"),
            Error::LogChain => f.write_str("group log entry does not follow its parent"),
            Error::Rollback => f.write_str("group log is behind or diverges from a checkpoint"),
            Error::Fork => f.write_str("group log forked"),
            Error::InvalidGroupOp => f.write_str("invalid group operation"),
            Error::KeyChanged => f.write_str("identity key changed"),
        }
    }
}

impl core::error::Error for Error {}
impl core::error::Error for FormatError {}

impl Error {
    /// A stable snake_case code for the error, shared with the wasm SDK and the server.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Format(_) => "malformed",
            Error::Decrypt => "decrypt_failed",
            Error::Signature => "bad_signature",
            Error::InvalidId => "invalid_id",
            Error::InvalidKey => "invalid_key",
            Error::Truncated => "truncated",
            Error::Limit => "limit_exceeded",
            Error::Usage => "usage",
            Error::NotAdmin => "not_admin",
            Error::LogChain => "log_chain",
            Error::Rollback => "log_rollback",
            Error::Fork => "log_fork",
            Error::InvalidGroupOp => "invalid_group_op",
            Error::KeyChanged => "key_changed",
        }
    }
}
