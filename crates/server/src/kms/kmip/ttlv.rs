//! A minimal KMIP TTLV encoder and decoder (KMIP 1.x/2.x binary encoding): protocol framing
//! only, no cryptography.
//!
//! Every item is `tag [3] ‖ type [1] ‖ length u32 BE ‖ value ‖ padding to a multiple of 8`.
//! Structures hold a sequence of items; the other types are scalars.
//!
//! The decoder reads what a (possibly hostile or broken) server sent, so it is strict and
//! bounded: every length is checked against the bytes that remain before anything is sliced
//! or allocated, fixed-size types must have their exact size, padding must be present,
//! structures nest at most [`MAX_DEPTH`] deep, and a message is at most [`MAX_MESSAGE`]
//! bytes. Malformed input is an error, never a panic.

use std::fmt;

use zeroize::Zeroizing;

/// The deepest structure nesting accepted (KMIP responses nest about 6 deep).
pub const MAX_DEPTH: usize = 16;

/// The largest message accepted or sent (Encrypt/Decrypt/Get Attributes answers are small).
pub const MAX_MESSAGE: usize = 1 << 20;

/// Why bytes are not a TTLV item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtlvError(pub &'static str);

impl fmt::Display for TtlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A TTLV value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// Type 0x01: a sequence of items.
    Structure(Vec<Item>),
    /// Type 0x02.
    Integer(i32),
    /// Type 0x03.
    LongInteger(i64),
    /// Type 0x04: big-endian two's complement, a multiple of 8 bytes.
    BigInteger(Vec<u8>),
    /// Type 0x05.
    Enumeration(u32),
    /// Type 0x06.
    Boolean(bool),
    /// Type 0x07: UTF-8.
    Text(String),
    /// Type 0x08. Zeroized on drop: byte strings carry plaintext keys.
    Bytes(Zeroizing<Vec<u8>>),
    /// Type 0x09: seconds since the Unix epoch.
    DateTime(i64),
    /// Type 0x0A: seconds.
    Interval(u32),
}

/// One tagged item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The 3-byte tag (e.g. `0x42_0094` for Unique Identifier).
    pub tag: u32,
    /// Its value.
    pub value: Value,
}

impl Item {
    /// A structure item.
    pub fn structure(tag: u32, items: Vec<Item>) -> Self {
        Self {
            tag,
            value: Value::Structure(items),
        }
    }

    /// An enumeration item.
    pub fn enumeration(tag: u32, v: u32) -> Self {
        Self {
            tag,
            value: Value::Enumeration(v),
        }
    }

    /// An integer item.
    pub fn integer(tag: u32, v: i32) -> Self {
        Self {
            tag,
            value: Value::Integer(v),
        }
    }

    /// A text string item.
    pub fn text(tag: u32, v: impl Into<String>) -> Self {
        Self {
            tag,
            value: Value::Text(v.into()),
        }
    }

    /// A byte string item.
    pub fn bytes(tag: u32, v: impl Into<Vec<u8>>) -> Self {
        Self {
            tag,
            value: Value::Bytes(Zeroizing::new(v.into())),
        }
    }

    /// The first child with `tag`, if this is a structure holding one.
    pub fn child(&self, tag: u32) -> Option<&Item> {
        self.children(tag).next()
    }

    /// Every child with `tag`.
    pub fn children(&self, tag: u32) -> impl Iterator<Item = &Item> {
        let items: &[Item] = match &self.value {
            Value::Structure(items) => items,
            _ => &[],
        };
        items.iter().filter(move |i| i.tag == tag)
    }

    /// The value as an enumeration.
    pub fn as_enum(&self) -> Option<u32> {
        match self.value {
            Value::Enumeration(v) => Some(v),
            _ => None,
        }
    }

    /// The value as an integer.
    pub fn as_int(&self) -> Option<i32> {
        match self.value {
            Value::Integer(v) => Some(v),
            _ => None,
        }
    }

    /// The value as text.
    pub fn as_text(&self) -> Option<&str> {
        match &self.value {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }

    /// The value as bytes.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Bytes(v) => Some(v.as_slice()),
            _ => None,
        }
    }

    /// Appends the encoding of this item to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), TtlvError> {
        out.extend_from_slice(&self.tag.to_be_bytes()[1..]);
        out.push(type_code(&self.value));
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        match &self.value {
            Value::Structure(items) => {
                for i in items {
                    i.encode(out)?;
                }
            }
            Value::Integer(v) => out.extend_from_slice(&v.to_be_bytes()),
            Value::LongInteger(v) | Value::DateTime(v) => out.extend_from_slice(&v.to_be_bytes()),
            Value::BigInteger(v) => out.extend_from_slice(v),
            Value::Bytes(v) => out.extend_from_slice(v),
            Value::Enumeration(v) | Value::Interval(v) => out.extend_from_slice(&v.to_be_bytes()),
            Value::Boolean(v) => out.extend_from_slice(&u64::from(*v).to_be_bytes()),
            Value::Text(v) => out.extend_from_slice(v.as_bytes()),
        }
        let len = out.len() - start;
        if len > MAX_MESSAGE {
            return Err(TtlvError("item too large"));
        }
        // Checked just above: len ≤ MAX_MESSAGE < u32::MAX.
        #[allow(clippy::cast_possible_truncation)]
        out[len_at..start].copy_from_slice(&(len as u32).to_be_bytes());
        out.resize(start + padded(len), 0);
        Ok(())
    }

    /// The encoding of this item (zeroized on drop: it may hold a plaintext key).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, TtlvError> {
        let mut out = Zeroizing::new(Vec::new());
        self.encode(&mut out)?;
        Ok(out)
    }
}

fn type_code(v: &Value) -> u8 {
    match v {
        Value::Structure(_) => 0x01,
        Value::Integer(_) => 0x02,
        Value::LongInteger(_) => 0x03,
        Value::BigInteger(_) => 0x04,
        Value::Enumeration(_) => 0x05,
        Value::Boolean(_) => 0x06,
        Value::Text(_) => 0x07,
        Value::Bytes(_) => 0x08,
        Value::DateTime(_) => 0x09,
        Value::Interval(_) => 0x0A,
    }
}

/// `len` rounded up to a multiple of 8.
fn padded(len: usize) -> usize {
    len.div_ceil(8) * 8
}

/// The length an item header announces: `bytes` must start with the 8-byte header. Lets a
/// reader know how much more to read before [`decode`].
pub fn announced_len(header: &[u8; 8]) -> usize {
    u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize
}

/// Decodes exactly one item spanning all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Item, TtlvError> {
    if bytes.len() > MAX_MESSAGE + 8 {
        return Err(TtlvError("message too large"));
    }
    let (item, rest) = decode_item(bytes, 0)?;
    if !rest.is_empty() {
        return Err(TtlvError("trailing bytes after the message"));
    }
    Ok(item)
}

/// Decodes one item at the start of `bytes`; returns it and the bytes after it.
fn decode_item(bytes: &[u8], depth: usize) -> Result<(Item, &[u8]), TtlvError> {
    let Some((header, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(TtlvError("truncated item header"));
    };
    let tag = u32::from_be_bytes([0, header[0], header[1], header[2]]);
    let len = announced_len(header);
    if len > rest.len() {
        return Err(TtlvError("item length exceeds the message"));
    }
    let padded_len = padded(len);
    if padded_len > rest.len() {
        return Err(TtlvError("item padding is missing"));
    }
    let (body, after) = rest.split_at(padded_len);
    let v = &body[..len];
    let value = match header[3] {
        0x01 => {
            if depth >= MAX_DEPTH {
                return Err(TtlvError("structures nest too deep"));
            }
            let mut items = Vec::new();
            let mut inner = v;
            while !inner.is_empty() {
                let (item, next) = decode_item(inner, depth + 1)?;
                items.push(item);
                inner = next;
            }
            Value::Structure(items)
        }
        0x02 => Value::Integer(i32::from_be_bytes(fixed(v)?)),
        0x03 => Value::LongInteger(i64::from_be_bytes(fixed(v)?)),
        0x04 if len.is_multiple_of(8) => Value::BigInteger(v.to_vec()),
        0x04 => return Err(TtlvError("big integer length is not a multiple of 8")),
        0x05 => Value::Enumeration(u32::from_be_bytes(fixed(v)?)),
        0x06 => match u64::from_be_bytes(fixed(v)?) {
            0 => Value::Boolean(false),
            1 => Value::Boolean(true),
            _ => return Err(TtlvError("boolean is neither 0 nor 1")),
        },
        0x07 => Value::Text(
            std::str::from_utf8(v)
                .map_err(|_| TtlvError("text string is not UTF-8"))?
                .to_owned(),
        ),
        0x08 => Value::Bytes(Zeroizing::new(v.to_vec())),
        0x09 => Value::DateTime(i64::from_be_bytes(fixed(v)?)),
        0x0A => Value::Interval(u32::from_be_bytes(fixed(v)?)),
        _ => return Err(TtlvError("unknown item type")),
    };
    Ok((Item { tag, value }, after))
}

/// A fixed-size value: exactly `N` bytes.
fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], TtlvError> {
    <[u8; N]>::try_from(v).map_err(|_| TtlvError("fixed-size value has the wrong length"))
}

/// A deterministic xorshift generator for the decoders' junk-input tests.
#[cfg(test)]
pub(crate) struct TestRng(pub u64);

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
impl TestRng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A number below `n` (> 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// `len` random bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Item {
        Item::structure(
            0x42_0078,
            vec![
                Item::structure(
                    0x42_0077,
                    vec![
                        Item::integer(0x42_006A, 1),
                        Item::integer(0x42_006B, 4),
                        Item {
                            tag: 0x42_0092,
                            value: Value::DateTime(1_700_000_000),
                        },
                    ],
                ),
                Item::enumeration(0x42_005C, 0x1F),
                Item::text(0x42_0094, "key-1"),
                Item::bytes(0x42_00C2, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]),
                Item {
                    tag: 0x42_00C5,
                    value: Value::Boolean(true),
                },
                Item {
                    tag: 0x42_0001,
                    value: Value::LongInteger(-5),
                },
                Item {
                    tag: 0x42_0002,
                    value: Value::BigInteger(vec![0; 8]),
                },
                Item {
                    tag: 0x42_0003,
                    value: Value::Interval(60),
                },
            ],
        )
    }

    #[test]
    fn round_trips_and_pads_to_eight() {
        let item = sample();
        let bytes = item.to_bytes().unwrap();
        assert_eq!(bytes.len() % 8, 0);
        assert_eq!(decode(&bytes).unwrap(), item);
    }

    #[test]
    fn matches_the_kmip_spec_example() {
        // KMIP 1.4 §9.1.2 examples: an Integer 8 and a Text String "Hello World".
        let i = Item::integer(0x42_0020, 8).to_bytes().unwrap();
        assert_eq!(hex::encode(i), "42002002000000040000000800000000");
        let t = Item::text(0x42_0020, "Hello World").to_bytes().unwrap();
        assert_eq!(
            hex::encode(t),
            "420020070000000b48656c6c6f20576f726c640000000000"
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().to_bytes().unwrap();
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = TestRng(0x1234_5678_9abc_def0);
        let valid = sample().to_bytes().unwrap();
        for _ in 0..20_000 {
            let len = rng.below(200);
            let _ = decode(&rng.bytes(len));
            // Mutations of a valid message reach deeper into the decoder.
            let mut m = valid.clone();
            for _ in 0..3 {
                let at = rng.below(m.len());
                m[at] = rng.bytes(1)[0];
            }
            let _ = decode(&m);
        }
    }

    #[test]
    fn huge_lengths_deep_nesting_and_bad_values_are_errors() {
        // A header announcing 4 GiB, with nothing behind it: no allocation, an error.
        assert!(decode(&[0x42, 0, 0x78, 0x01, 0xff, 0xff, 0xff, 0xff]).is_err());
        // 100 nested structures.
        let mut item = Item::integer(0x42_0001, 1);
        for _ in 0..100 {
            item = Item::structure(0x42_0001, vec![item]);
        }
        let deep = item.to_bytes().unwrap();
        assert_eq!(decode(&deep), Err(TtlvError("structures nest too deep")));
        // Wrong fixed sizes, a boolean of 2, an unknown type, invalid UTF-8, a big integer
        // of 4 bytes.
        for (bad, why) in [
            (
                "420020020000000300000000000000000",
                "fixed-size value has the wrong length",
            ),
            (
                "42002006000000080000000000000002",
                "boolean is neither 0 nor 1",
            ),
            ("4200200b00000000", "unknown item type"),
            (
                "42002007000000018000000000000000",
                "text string is not UTF-8",
            ),
            (
                "42002004000000040000000000000000",
                "big integer length is not a multiple of 8",
            ),
        ] {
            let b = hex::decode(&bad[..bad.len() / 2 * 2]).unwrap();
            assert_eq!(decode(&b), Err(TtlvError(why)), "{bad}");
        }
    }
}
