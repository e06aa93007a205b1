//! Request parsing at the edge: body size limit, JSON with duplicate keys rejected anywhere,
//! unknown fields rejected, base64 and id limits, and the request metadata.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::ApiError;

/// Largest request body (API.md "Limits").
pub const MAX_BODY: usize = 1 << 20;
/// Largest serialized `metadata`.
pub const MAX_METADATA: usize = 4096;
/// Longest id or tenant id, in bytes.
pub const MAX_ID: usize = 256;
/// Most items in a batch.
pub const MAX_BATCH: usize = 1000;

/// Walks any JSON value and fails on an object with a repeated key.
struct NoDuplicates;

impl<'de> Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDupVisitor)
    }
}

struct NoDupVisitor;

impl<'de> Visitor<'de> for NoDupVisitor {
    type Value = NoDuplicates;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<NoDuplicates, E> {
        Ok(NoDuplicates)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NoDuplicates, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoDuplicates, A::Error> {
        let mut seen = HashSet::new();
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !seen.insert(k.to_string()) {
                return Err(de::Error::custom(format!("duplicate key `{k}`")));
            }
            map.next_value::<NoDuplicates>()?;
        }
        Ok(NoDuplicates)
    }
}

/// Parses a JSON body into `T`: duplicate keys anywhere and unknown fields (per `T`'s
/// `deny_unknown_fields`) are `400 bad_request`.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::bad_request("request body exceeds 1 MiB"));
    }
    serde_json::from_slice::<NoDuplicates>(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))
}

/// Bytes carried as standard, padded base64.
#[derive(Debug, Clone)]
pub struct B64(pub Vec<u8>);

/// In the OpenAPI document: the shared `Base64` schema, a `format: byte` string.
impl utoipa::PartialSchema for B64 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Byte)))
            .description(Some("Bytes as base64 (standard alphabet, padded)."))
            .into()
    }
}

impl utoipa::ToSchema for B64 {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Base64")
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(B64)
            .map_err(|_| de::Error::custom("invalid base64 (standard alphabet, padded)"))
    }
}

/// Encodes bytes as standard, padded base64.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The request metadata of every key operation (API.md "Request metadata"). At most 4 KiB
/// serialized; copied into the audit event.
#[derive(Debug, Clone, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Who asks (user or service). Required.
    #[schema(min_length = 1)]
    pub requesting_id: String,
    /// Classification of the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_label: Option<String>,
    /// The object concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// The end user's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// Echoed in the audit event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Free string map, copied into the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<BTreeMap<String, String>>,
}

impl Metadata {
    /// Checks limits and returns the metadata as the JSON value audit events carry.
    pub fn validate(&self) -> Result<Value, ApiError> {
        if self.requesting_id.is_empty() {
            return Err(ApiError::bad_request(
                "metadata.requesting_id must not be empty",
            ));
        }
        let v =
            serde_json::to_value(self).map_err(|_| ApiError::bad_request("invalid metadata"))?;
        if serde_json::to_vec(&v)
            .map(|b| b.len())
            .unwrap_or(usize::MAX)
            > MAX_METADATA
        {
            return Err(ApiError::bad_request("metadata exceeds 4 KiB"));
        }
        Ok(v)
    }
}

/// Checks an id or tenant id against the API's limits.
pub fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{what} must be 1 to {MAX_ID} bytes without control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct R {
        a: u32,
        m: Option<Value>,
    }

    #[test]
    fn duplicates_and_unknown_fields_rejected() {
        assert!(parse_json::<R>(br#"{"a":1}"#).is_ok());
        assert_eq!(
            parse_json::<R>(br#"{"a":1,"a":2}"#).unwrap_err().code,
            "bad_request"
        );
        assert_eq!(
            parse_json::<R>(br#"{"a":1,"m":{"x":1,"x":2}}"#)
                .unwrap_err()
                .code,
            "bad_request"
        );
        assert_eq!(
            parse_json::<R>(br#"{"a":1,"m":[{"x":1,"x":2}]}"#)
                .unwrap_err()
                .code,
            "bad_request"
        );
        assert_eq!(
            parse_json::<R>(br#"{"a":1,"b":2}"#).unwrap_err().code,
            "bad_request"
        );
        assert_eq!(
            parse_json::<R>(br#"{"a":-1}"#).unwrap_err().code,
            "bad_request"
        );
        assert_eq!(parse_json::<R>(b"{").unwrap_err().code, "bad_request");
    }

    #[test]
    fn base64_is_strict() {
        #[derive(Deserialize)]
        struct E {
            e: B64,
        }
        assert_eq!(
            serde_json::from_str::<E>(r#"{"e":"AAEC"}"#).unwrap().e.0,
            vec![0, 1, 2]
        );
        assert!(serde_json::from_str::<E>(r#"{"e":"AAE"}"#).is_err());
        assert!(serde_json::from_str::<E>(r#"{"e":"AA-_"}"#).is_err());
    }
}
