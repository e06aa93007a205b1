//! Request parsing at the edge: body size limit, JSON with duplicate keys rejected anywhere,
//! unknown fields rejected, base64 and id limits, and the request metadata.

use std::collections::BTreeMap;
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

/// Builds a JSON value like `serde_json::Value` does, but fails on an object with a
/// repeated key (serde_json keeps the last one silently).
struct StrictValueVisitor;

impl<'de> Visitor<'de> for StrictValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        strict_value(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let StrictValue(v) = map.next_value()?;
            if out.contains_key(&k) {
                return Err(de::Error::custom(format!("duplicate key `{k}`")));
            }
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictValueVisitor).map(StrictValue)
    }
}

/// `deserialize_with` for free-form JSON fields: any value, duplicate keys rejected at
/// every depth.
pub fn strict_value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    d.deserialize_any(StrictValueVisitor)
}

/// `deserialize_with` for string-keyed maps: a repeated key is an error.
pub fn unique_map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Vis<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, V>()? {
                if out.contains_key(&k) {
                    return Err(de::Error::custom(format!("duplicate key `{k}`")));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Vis(std::marker::PhantomData))
}

/// [`unique_map`] for an optional field (use with `#[serde(default)]`).
pub fn unique_map_opt<'de, D, V>(d: D) -> Result<Option<BTreeMap<String, V>>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    unique_map(d).map(Some)
}

/// Parses a JSON body into `T` in one pass: unknown fields (per `T`'s
/// `deny_unknown_fields`) and repeated keys are `400 bad_request`. Repeated struct fields are
/// refused by serde's derive; maps and free-form values must use [`unique_map`] /
/// [`strict_value`] so that no object anywhere accepts a repeated key.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    parse_json_max(body, MAX_BODY)
}

/// [`parse_json`] with another size limit than [`MAX_BODY`] (the group log routes).
pub fn parse_json_max<T: DeserializeOwned>(body: &[u8], max: usize) -> Result<T, ApiError> {
    if body.len() > max {
        return Err(ApiError::bad_request(format!(
            "request body exceeds {} MiB",
            max >> 20
        )));
    }
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
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "unique_map_opt"
    )]
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
        #[serde(default, deserialize_with = "strict_value")]
        m: Value,
        #[serde(default, deserialize_with = "unique_map_opt")]
        u: Option<BTreeMap<String, u32>>,
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
        assert_eq!(
            parse_json::<R>(br#"{"a":1,"u":{"k":1,"k":2}}"#)
                .unwrap_err()
                .code,
            "bad_request"
        );
        assert!(parse_json::<R>(br#"{"a":1,"u":{"k":1,"l":2},"m":[1,{"x":null}]}"#).is_ok());
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
