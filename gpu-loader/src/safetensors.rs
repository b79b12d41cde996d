//! A strict parser of the safetensors header, so the GPU loader can report each tensor's
//! name, dtype, shape and byte range in the device buffer.
//!
//! Format (Hugging Face `safetensors`, `docs/gpu.md`): `u64le N ‖ N bytes of UTF-8 JSON ‖
//! data`. The JSON object maps tensor names to `{"dtype", "shape", "data_offsets": [begin,
//! end]}` (offsets relative to the data section), plus an optional `"__metadata__"` object of
//! strings. The header is untrusted input even inside an authenticated file, so we are
//! stricter than the reference implementation, never looser (a property test checks that
//! everything we accept, it accepts too):
//!
//! - `N` ≤ 100 000 000 (the reference's cap) and `8 + N` ≤ the file size;
//! - the JSON starts with `{`, has no duplicate keys and no unknown fields in a tensor entry;
//! - every dtype is known, `shape` elements × dtype bits is a whole number of bytes equal to
//!   `end - begin` (no overflow);
//! - sorted by offset, the tensors tile the data section exactly: no overlap, no gap, no
//!   trailing bytes (as the reference requires; this rules out polyglot files).

#![warn(clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

/// Largest header accepted (bytes of JSON), as the reference implementation.
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// Bytes of the length prefix.
pub const PREFIX_LEN: u64 = 8;

/// The key of the optional metadata object.
const METADATA_KEY: &str = "__metadata__";

/// Element types of the safetensors format (reference 0.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(non_camel_case_types, reason = "the format's own spelling")]
#[non_exhaustive]
pub enum Dtype {
    /// Boolean, one byte.
    BOOL,
    /// MXF4 (4 bits).
    F4,
    /// MXF6 E2M3 (6 bits).
    F6_E2M3,
    /// MXF6 E3M2 (6 bits).
    F6_E3M2,
    /// Unsigned byte.
    U8,
    /// Signed byte.
    I8,
    /// FP8 E5M2.
    F8_E5M2,
    /// FP8 E4M3.
    F8_E4M3,
    /// FP8 E8M0 (scale).
    F8_E8M0,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
}

/// Every dtype with its spelling and bit size.
const DTYPES: [(Dtype, &str, u64); 19] = [
    (Dtype::BOOL, "BOOL", 8),
    (Dtype::F4, "F4", 4),
    (Dtype::F6_E2M3, "F6_E2M3", 6),
    (Dtype::F6_E3M2, "F6_E3M2", 6),
    (Dtype::U8, "U8", 8),
    (Dtype::I8, "I8", 8),
    (Dtype::F8_E5M2, "F8_E5M2", 8),
    (Dtype::F8_E4M3, "F8_E4M3", 8),
    (Dtype::F8_E8M0, "F8_E8M0", 8),
    (Dtype::I16, "I16", 16),
    (Dtype::U16, "U16", 16),
    (Dtype::F16, "F16", 16),
    (Dtype::BF16, "BF16", 16),
    (Dtype::I32, "I32", 32),
    (Dtype::U32, "U32", 32),
    (Dtype::F32, "F32", 32),
    (Dtype::F64, "F64", 64),
    (Dtype::I64, "I64", 64),
    (Dtype::U64, "U64", 64),
];

impl Dtype {
    /// Parses the format's spelling (`"BF16"`); `None` for anything else.
    #[must_use]
    pub fn parse(s: &str) -> Option<Dtype> {
        DTYPES.iter().find(|(_, n, _)| *n == s).map(|(d, _, _)| *d)
    }

    /// The format's spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        DTYPES
            .iter()
            .find(|(d, _, _)| *d == self)
            .map_or("?", |(_, n, _)| n)
    }

    /// Bits per element.
    #[must_use]
    pub fn bits(self) -> u64 {
        DTYPES
            .iter()
            .find(|(d, _, _)| *d == self)
            .map_or(8, |(_, _, b)| *b)
    }

    /// Every dtype (for tests and generators).
    pub fn all() -> impl Iterator<Item = Dtype> {
        DTYPES.iter().map(|(d, _, _)| *d)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tensor of a parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions (empty for a scalar).
    pub shape: Vec<u64>,
    /// Byte range in the whole file (and so in a device buffer holding the whole file).
    pub range: Range<u64>,
}

/// A validated safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// `N`: bytes of JSON after the 8-byte prefix.
    pub json_len: u64,
    /// Where the data section starts in the file (`8 + N`).
    pub data_start: u64,
    /// Tensors sorted by offset; they tile `data_start..file_size` exactly.
    pub tensors: Vec<TensorInfo>,
    /// The `__metadata__` strings, sorted by key.
    pub metadata: Vec<(String, String)>,
}

/// Why a safetensors header was refused. Messages name the cause; the fix is always to
/// re-export the file with a current safetensors writer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SafetensorsError {
    /// The file is shorter than the 8-byte length prefix.
    #[error("the file is {0} bytes, shorter than the 8-byte header length")]
    TooSmall(u64),
    /// The declared header length exceeds the cap.
    #[error("the header length {0} is larger than the 100 MB limit")]
    HeaderTooLarge(u64),
    /// The declared header runs past the end of the file.
    #[error("the header length {len} runs past the end of the {file_size}-byte file")]
    HeaderPastEnd {
        /// Declared JSON length.
        len: u64,
        /// File size.
        file_size: u64,
    },
    /// The header is not UTF-8.
    #[error("the header is not UTF-8")]
    NotUtf8,
    /// The header does not start with `{`.
    #[error("the header does not start with '{{'")]
    NotObject,
    /// The header is not the expected JSON shape.
    #[error("the header is not valid safetensors JSON: {0}")]
    Json(String),
    /// A key appears twice.
    #[error("the header names {0:?} twice")]
    DuplicateKey(String),
    /// An unknown dtype.
    #[error("tensor {tensor:?} has unknown dtype {dtype:?}")]
    UnknownDtype {
        /// Tensor name.
        tensor: String,
        /// The dtype string.
        dtype: String,
    },
    /// The element count or byte size overflows.
    #[error("tensor {0:?}: its shape is too large (size overflows)")]
    ShapeOverflow(String),
    /// The shape's bit size is not a whole number of bytes.
    #[error("tensor {0:?}: its shape does not fill a whole number of bytes")]
    PartialByte(String),
    /// `data_offsets` is reversed.
    #[error("tensor {0:?}: data_offsets end before they begin")]
    ReversedOffsets(String),
    /// `end - begin` differs from dtype × shape.
    #[error(
        "tensor {tensor:?}: data_offsets span {got} bytes, its dtype and shape need {expected}"
    )]
    SizeMismatch {
        /// Tensor name.
        tensor: String,
        /// Bytes from dtype × shape.
        expected: u64,
        /// Bytes from the offsets.
        got: u64,
    },
    /// A tensor ends past the data section.
    #[error("tensor {tensor:?} ends at data offset {end}, past the {data_len}-byte data section")]
    OutOfBounds {
        /// Tensor name.
        tensor: String,
        /// Its end offset.
        end: u64,
        /// Data section length.
        data_len: u64,
    },
    /// Two tensors overlap.
    #[error("tensors {first:?} and {second:?} overlap")]
    Overlap {
        /// The earlier tensor.
        first: String,
        /// The later tensor.
        second: String,
    },
    /// Bytes of the data section belong to no tensor.
    #[error("data bytes {start}..{end} belong to no tensor (a hole or trailing data)")]
    Gap {
        /// First unclaimed data offset.
        start: u64,
        /// End of the unclaimed range.
        end: u64,
    },
}

/// Reads the 8-byte prefix of a `file_size`-byte file and checks the declared JSON length.
///
/// # Errors
/// [`SafetensorsError::TooSmall`], [`SafetensorsError::HeaderTooLarge`],
/// [`SafetensorsError::HeaderPastEnd`].
pub fn json_len(prefix: &[u8], file_size: u64) -> Result<u64, SafetensorsError> {
    let bytes: [u8; 8] =
        prefix
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or(SafetensorsError::TooSmall(
                file_size.min(prefix.len() as u64),
            ))?;
    if file_size < PREFIX_LEN {
        return Err(SafetensorsError::TooSmall(file_size));
    }
    let n = u64::from_le_bytes(bytes);
    if n > MAX_HEADER_LEN {
        return Err(SafetensorsError::HeaderTooLarge(n));
    }
    if n > file_size - PREFIX_LEN {
        return Err(SafetensorsError::HeaderPastEnd { len: n, file_size });
    }
    Ok(n)
}

/// Parses a header: `file` holds at least the first `8 + N` bytes of a `file_size`-byte
/// file (more is ignored).
///
/// # Errors
/// Any [`SafetensorsError`].
pub fn parse(file: &[u8], file_size: u64) -> Result<Header, SafetensorsError> {
    let n = json_len(file, file_size)?;
    let end = usize::try_from(PREFIX_LEN + n).map_err(|_| SafetensorsError::HeaderTooLarge(n))?;
    let json = file
        .get(8..end)
        .ok_or(SafetensorsError::HeaderPastEnd { len: n, file_size })?;
    parse_json(json, file_size)
}

/// Parses the JSON part of a header of a `file_size`-byte file (`json.len()` is `N`).
///
/// # Errors
/// Any [`SafetensorsError`] but the length ones.
pub fn parse_json(json: &[u8], file_size: u64) -> Result<Header, SafetensorsError> {
    let n = json.len() as u64;
    let data_start = PREFIX_LEN + n;
    let data_len = file_size
        .checked_sub(data_start)
        .ok_or(SafetensorsError::HeaderPastEnd { len: n, file_size })?;
    let text = std::str::from_utf8(json).map_err(|_| SafetensorsError::NotUtf8)?;
    if !text.starts_with('{') {
        return Err(SafetensorsError::NotObject);
    }
    let dup = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = de::Deserializer::deserialize_map(&mut de, HeaderVisitor { dup: &dup })
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| match dup.take() {
            Some(name) => SafetensorsError::DuplicateKey(name),
            None => SafetensorsError::Json(e.to_string().replace('\n', " ")),
        })?;

    let mut tensors = Vec::with_capacity(raw.tensors.len());
    for (name, t) in raw.tensors {
        let dtype = Dtype::parse(&t.dtype).ok_or_else(|| SafetensorsError::UnknownDtype {
            tensor: name.clone(),
            dtype: t.dtype.clone(),
        })?;
        let elems = t
            .shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .ok_or_else(|| SafetensorsError::ShapeOverflow(name.clone()))?;
        let bits = elems
            .checked_mul(dtype.bits())
            .ok_or_else(|| SafetensorsError::ShapeOverflow(name.clone()))?;
        if bits % 8 != 0 {
            return Err(SafetensorsError::PartialByte(name));
        }
        let [begin, end] = t.data_offsets;
        if end < begin {
            return Err(SafetensorsError::ReversedOffsets(name));
        }
        if end - begin != bits / 8 {
            return Err(SafetensorsError::SizeMismatch {
                tensor: name,
                expected: bits / 8,
                got: end - begin,
            });
        }
        if end > data_len {
            return Err(SafetensorsError::OutOfBounds {
                tensor: name,
                end,
                data_len,
            });
        }
        tensors.push(TensorInfo {
            name,
            dtype,
            shape: t.shape,
            // Cannot overflow: end <= data_len = file_size - data_start.
            range: data_start + begin..data_start + end,
        });
    }
    // Sort by (start, end) so zero-length tensors sit before a tensor starting at the same
    // offset; then the ranges must tile the data section.
    tensors.sort_by(|a, b| {
        (a.range.start, a.range.end, &a.name).cmp(&(b.range.start, b.range.end, &b.name))
    });
    let mut pos = data_start;
    let mut prev: Option<&TensorInfo> = None;
    for t in &tensors {
        if t.range.start < pos {
            return Err(SafetensorsError::Overlap {
                first: prev.map(|p| p.name.clone()).unwrap_or_default(),
                second: t.name.clone(),
            });
        }
        if t.range.start > pos {
            return Err(SafetensorsError::Gap {
                start: pos - data_start,
                end: t.range.start - data_start,
            });
        }
        pos = t.range.end;
        prev = Some(t);
    }
    if pos != file_size {
        return Err(SafetensorsError::Gap {
            start: pos - data_start,
            end: data_len,
        });
    }
    Ok(Header {
        json_len: n,
        data_start,
        tensors,
        metadata: raw.metadata,
    })
}

/// One tensor entry as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTensor {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: [u64; 2],
}

/// The top-level object.
struct RawHeader {
    tensors: Vec<(String, RawTensor)>,
    metadata: Vec<(String, String)>,
}

/// Visits the top-level object; a duplicate key is recorded in `dup` and fails the parse.
struct HeaderVisitor<'a> {
    dup: &'a RefCell<Option<String>>,
}

impl<'de> Visitor<'de> for HeaderVisitor<'_> {
    type Value = RawHeader;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of tensors")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
        let mut seen = BTreeSet::new();
        let mut tensors = Vec::new();
        let mut metadata = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                *self.dup.borrow_mut() = Some(key);
                return Err(de::Error::custom("duplicate key"));
            }
            if key == METADATA_KEY {
                metadata = map.next_value_seed(StringMap { dup: self.dup })?;
            } else {
                let t = map.next_value::<RawTensor>()?;
                tensors.push((key.clone(), t));
            }
            seen.insert(key);
        }
        Ok(RawHeader { tensors, metadata })
    }
}

/// `__metadata__`: an object of strings without duplicate keys, returned sorted by key.
struct StringMap<'a> {
    dup: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StringMap<'_> {
    type Value = Vec<(String, String)>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for StringMap<'_> {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of strings")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, String>()? {
            if out.contains_key(&k) {
                *self.dup.borrow_mut() = Some(k);
                return Err(de::Error::custom("duplicate key"));
            }
            out.insert(k, v);
        }
        Ok(out.into_iter().collect())
    }
}

/// Builds a valid safetensors file from `(name, dtype, shape)` with the given data bytes
/// per tensor (for tests, fuzz seeds and the benchmark). Tensors are laid out in the given
/// order; the header is padded with spaces to a multiple of 8 as the reference writer does.
///
/// # Errors
/// [`SafetensorsError::SizeMismatch`] if a tensor's data length does not match its shape.
pub fn build(tensors: &[(String, Dtype, Vec<u64>, Vec<u8>)]) -> Result<Vec<u8>, SafetensorsError> {
    let mut obj = serde_json::Map::new();
    let mut off = 0u64;
    for (name, dtype, shape, data) in tensors {
        let elems = shape
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .and_then(|e| e.checked_mul(dtype.bits()))
            .ok_or_else(|| SafetensorsError::ShapeOverflow(name.clone()))?;
        if elems % 8 != 0 || elems / 8 != data.len() as u64 {
            return Err(SafetensorsError::SizeMismatch {
                tensor: name.clone(),
                expected: elems / 8,
                got: data.len() as u64,
            });
        }
        let end = off + data.len() as u64;
        obj.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype.as_str(), "shape": shape, "data_offsets": [off, end]}),
        );
        off = end;
    }
    let mut json = serde_json::Value::Object(obj).to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + usize::try_from(off).unwrap_or(0));
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, _, data) in tensors {
        out.extend_from_slice(data);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        clippy::cast_possible_truncation,
        clippy::type_complexity,
        reason = "tests"
    )]

    use super::*;
    use proptest::prelude::*;

    fn file(json: &str, data_len: usize) -> Vec<u8> {
        let mut v = (json.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(json.as_bytes());
        v.extend(std::iter::repeat_n(0u8, data_len));
        v
    }

    fn p(json: &str, data_len: usize) -> Result<Header, SafetensorsError> {
        let f = file(json, data_len);
        parse(&f, f.len() as u64)
    }

    #[test]
    fn accepts_a_normal_header() {
        let h = p(
            r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2,2],"data_offsets":[4,20]},"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}  "#,
            20,
        )
        .unwrap();
        assert_eq!(h.tensors.len(), 2);
        assert_eq!(h.tensors[0].name, "a");
        assert_eq!(h.tensors[0].range, h.data_start..h.data_start + 4);
        assert_eq!(h.tensors[1].shape, vec![2, 2]);
        assert_eq!(h.metadata, vec![("format".into(), "pt".into())]);
    }

    #[test]
    fn empty_and_scalar_and_zero_sized() {
        assert!(p("{}", 0).unwrap().tensors.is_empty());
        let h = p(
            r#"{"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"z":{"dtype":"F16","shape":[0,3],"data_offsets":[8,8]}}"#,
            8,
        )
        .unwrap();
        assert_eq!(h.tensors.len(), 2);
        let h = p(
            r#"{"f":{"dtype":"F4","shape":[3,2],"data_offsets":[0,3]}}"#,
            3,
        )
        .unwrap();
        assert_eq!(h.tensors[0].dtype, Dtype::F4);
    }

    #[test]
    fn refuses_hostile_headers() {
        use SafetensorsError as E;
        let t = |s: &str| format!(r#"{{"t":{s}}}"#);
        let cases: Vec<(Vec<u8>, fn(&SafetensorsError) -> bool)> = vec![
            (vec![1, 2, 3], |e| matches!(e, E::TooSmall(3))),
            (
                {
                    let mut v = u64::MAX.to_le_bytes().to_vec();
                    v.push(b'{');
                    v
                },
                |e| matches!(e, E::HeaderTooLarge(_)),
            ),
            (
                {
                    let mut v = 100u64.to_le_bytes().to_vec();
                    v.extend_from_slice(b"{}");
                    v
                },
                |e| matches!(e, E::HeaderPastEnd { .. }),
            ),
            (file("[]", 0), |e| matches!(e, E::NotObject)),
            (file(" {}", 0), |e| matches!(e, E::NotObject)),
            (
                {
                    let mut v = file("{}", 0);
                    v[9] = 0xff;
                    v
                },
                |e| matches!(e, E::NotUtf8),
            ),
            (file("{", 0), |e| matches!(e, E::Json(_))),
            (file("{}x", 0), |e| matches!(e, E::Json(_))),
            (
                file(
                    &t(r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}"#),
                    4,
                ),
                |e| matches!(e, E::Json(_)),
            ),
            (
                file(
                    &t(r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4,5]}"#),
                    4,
                ),
                |e| matches!(e, E::Json(_)),
            ),
            (
                file(
                    &t(r#"{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}"#),
                    4,
                ),
                |e| matches!(e, E::Json(_)),
            ),
            (
                file(
                    r#"{"t":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"t":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#,
                    2,
                ),
                |e| matches!(e, E::DuplicateKey(n) if n == "t"),
            ),
            (
                file(r#"{"__metadata__":{"a":"1","a":"2"}}"#, 0),
                |e| matches!(e, E::DuplicateKey(n) if n == "a"),
            ),
            (file(r#"{"__metadata__":{"a":1}}"#, 0), |e| {
                matches!(e, E::Json(_))
            }),
            (
                file(
                    &t(r#"{"dtype":"F128","shape":[1],"data_offsets":[0,16]}"#),
                    16,
                ),
                |e| matches!(e, E::UnknownDtype { .. }),
            ),
            (
                file(
                    &t(r#"{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}"#),
                    4,
                ),
                |e| matches!(e, E::ShapeOverflow(_)),
            ),
            (
                file(&t(r#"{"dtype":"F4","shape":[3],"data_offsets":[0,2]}"#), 2),
                |e| matches!(e, E::PartialByte(_)),
            ),
            (
                file(&t(r#"{"dtype":"U8","shape":[1],"data_offsets":[1,0]}"#), 1),
                |e| matches!(e, E::ReversedOffsets(_)),
            ),
            (
                file(&t(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,4]}"#), 4),
                |e| {
                    matches!(
                        e,
                        E::SizeMismatch {
                            expected: 8,
                            got: 4,
                            ..
                        }
                    )
                },
            ),
            (
                file(&t(r#"{"dtype":"U8","shape":[8],"data_offsets":[0,8]}"#), 4),
                |e| matches!(e, E::OutOfBounds { .. }),
            ),
            (
                file(
                    r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
                    6,
                ),
                |e| matches!(e, E::Overlap { .. }),
            ),
            (
                file(
                    r#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}"#,
                    6,
                ),
                |e| matches!(e, E::Gap { start: 2, end: 4 }),
            ),
            (
                file(&t(r#"{"dtype":"U8","shape":[2],"data_offsets":[0,2]}"#), 5),
                |e| matches!(e, E::Gap { start: 2, end: 5 }),
            ),
        ];
        for (i, (bytes, ok)) in cases.iter().enumerate() {
            let r = parse(bytes, bytes.len() as u64);
            match r {
                Err(e) => {
                    assert!(ok(&e), "case {i}: unexpected error {e:?}");
                    let msg = e.to_string();
                    assert!(!msg.contains('\n'), "case {i}: {msg}");
                }
                Ok(h) => panic!("case {i} accepted: {h:?}"),
            }
        }
    }

    #[test]
    fn build_round_trips() {
        let f = build(&[
            ("w".into(), Dtype::BF16, vec![3], vec![1; 6]),
            ("b".into(), Dtype::U8, vec![], vec![7]),
        ])
        .unwrap();
        let h = parse(&f, f.len() as u64).unwrap();
        assert_eq!(h.data_start % 8, 0);
        assert_eq!(h.tensors[0].name, "w");
        assert_eq!(&f[h.tensors[1].range.start as usize..], &[7]);
    }

    fn arb_tensors() -> impl Strategy<Value = Vec<(String, Dtype, Vec<u64>, Vec<u8>)>> {
        let dt = proptest::sample::select(Dtype::all().collect::<Vec<_>>());
        proptest::collection::vec(
            (
                "[a-z.0-9_]{1,12}",
                dt,
                proptest::collection::vec(0u64..5, 0..4),
            ),
            0..8,
        )
        .prop_map(|v| {
            let mut seen = BTreeSet::new();
            v.into_iter()
                .filter(|(n, ..)| seen.insert(n.clone()) && n != METADATA_KEY)
                .map(|(n, d, mut shape)| {
                    let elems: u64 = shape.iter().product();
                    if !(elems * d.bits()).is_multiple_of(8) {
                        shape.push(4);
                    }
                    let bytes = shape.iter().product::<u64>() * d.bits() / 8;
                    (n, d, shape, vec![0xa5; bytes as usize])
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn built_files_parse_back(ts in arb_tensors()) {
            let f = build(&ts).unwrap();
            let h = parse(&f, f.len() as u64).unwrap();
            prop_assert_eq!(h.tensors.len(), ts.len());
            for t in &h.tensors {
                let (_, d, s, data) = ts.iter().find(|x| x.0 == t.name).unwrap();
                prop_assert_eq!(t.dtype, *d);
                prop_assert_eq!(&t.shape, s);
                prop_assert_eq!(t.range.end - t.range.start, data.len() as u64);
            }
        }

        #[test]
        fn mutated_headers_never_panic(ts in arb_tensors(), at in any::<usize>(), x in 1u8..) {
            let mut f = build(&ts).unwrap();
            let i = at % f.len();
            f[i] ^= x;
            crate::internal::fuzzing::safetensors_header(&f);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            crate::internal::fuzzing::safetensors_header(&data);
        }
    }
}
