//! Typed identifiers. Each is built by parsing, so a value of the type is valid by
//! construction: non-empty UTF-8 of at most [`MAX_ID_LEN`] bytes, without control characters.

use alloc::string::String;
use core::fmt;

use crate::error::{Error, Result};

/// The longest identifier, in bytes (API.md: "ids and tenant ids ≤ 256 bytes").
pub const MAX_ID_LEN: usize = 256;

pub(crate) fn check_id(s: &str) -> Result<()> {
    if s.is_empty() || s.len() > MAX_ID_LEN || s.chars().any(char::is_control) {
        return Err(Error::InvalidId);
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Parses an identifier: 1 to 256 bytes of UTF-8 without control characters.
            pub fn new(s: impl Into<String>) -> Result<Self> {
                let s = s.into();
                check_id(&s)?;
                Ok(Self(s))
            }

            /// Parses an identifier from bytes read off the wire.
            pub(crate) fn from_wire(bytes: &[u8]) -> Result<Self> {
                let s = core::str::from_utf8(bytes)
                    .map_err(|_| crate::error::FormatError::InvalidValue)?;
                check_id(s).map_err(|_| crate::error::FormatError::InvalidValue)?;
                Ok(Self(String::from(s)))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The identifier's UTF-8 bytes, as they appear in formats.
            pub fn as_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl core::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }
    };
}

string_id!(
    /// A tenant: the customer whose master key protects the data.
    TenantId
);
string_id!(
    /// One KMS configuration of a tenant (provider, key, credentials). A tenant has a
    /// history of them; the id stays valid for unwraps until the config is retired.
    ConfigId
);
string_id!(
    /// A record, document or attachment. Bound into every field and attachment header.
    DocumentId
);
string_id!(
    /// The path of a field inside a document, e.g. `address.street`.
    FieldPath
);
string_id!(
    /// The recipient of a sealed key: a device id, or a group id for group-epoch keys.
    RecipientId
);
string_id!(
    /// A cryptographic access-control group.
    GroupId
);
string_id!(
    /// A user (a person with an Ed25519 identity key and one or more devices).
    UserId
);
string_id!(
    /// A tenant's derivation secret, e.g. `ds-1`: the secret the keys of deterministic fields
    /// and blind indexes are derived from. Every deterministic field names the secret its key
    /// came from, so a reader picks the right key while secrets rotate.
    SecretId
);

/// The version of a master key inside one KMS configuration (rotation increments it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyVersion(pub u32);

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
