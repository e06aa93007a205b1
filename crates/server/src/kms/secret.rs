//! Credentials in KMS settings: zeroized on drop, never printed, never serialized back.

use std::fmt;

use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// A credential (token, client secret, private key PEM, PIN) read from a KMS config.
/// `Debug` prints `[redacted]`; there is no `Display`, `Serialize` or `Clone` of the value
/// outside this module, so it cannot reach a log line, an error or an audit event by
/// accident.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The credential, for the one place that sends it to the KMS.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(serde::de::Error::custom("a credential must not be empty"));
        }
        Ok(Self(Zeroizing::new(s)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn debug_is_redacted_and_empty_is_refused() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct S {
            token: Secret,
        }
        let s: S = serde_json::from_str(r#"{"token":"hvs.very-secret"}"#).unwrap();
        assert_eq!(s.token.expose(), "hvs.very-secret");
        assert!(!format!("{s:?}").contains("very-secret"));
        assert!(serde_json::from_str::<S>(r#"{"token":""}"#).is_err());
    }
}
