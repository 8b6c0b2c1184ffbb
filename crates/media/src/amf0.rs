//! AMF0 (Adobe "Action Message Format -- AMF 0"), the encoding of RTMP commands and
//! FLV script data. Decoding is a function over bytes with caller-set limits; it never
//! pre-allocates from a length the peer sent.

use std::fmt;

/// One AMF0 value.
#[derive(Clone, Debug, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    String(String),
    /// Properties in wire order.
    Object(Vec<(String, Amf0Value)>),
    Null,
    Undefined,
    /// An associative array (`onMetaData` uses it); properties in wire order.
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    Date {
        millis: f64,
        time_zone: i16,
    },
    LongString(String),
}

impl Amf0Value {
    /// The text of a `String` or `LongString`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A property of an `Object` or `EcmaArray`.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        match self {
            Amf0Value::Object(props) | Amf0Value::EcmaArray(props) => {
                props.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }
}

/// Bounds on what a peer may make us decode.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Nesting of objects and arrays.
    pub max_depth: usize,
    /// Bytes in one string.
    pub max_string_len: usize,
    /// Properties or elements in one object or array.
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 16,
            max_string_len: 64 * 1024,
            max_elements: 4096,
        }
    }
}

/// Why AMF0 bytes could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Amf0Error {
    #[error("unsupported AMF0 marker 0x{marker:02x} at byte {offset}")]
    UnsupportedMarker { marker: u8, offset: usize },
    #[error("AMF0 value nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("AMF0 string of {len} bytes exceeds the limit of {limit}")]
    StringTooLong { len: usize, limit: usize },
    #[error("AMF0 object or array with more than {0} elements")]
    TooManyElements(usize),
    #[error("AMF0 string at byte {0} is not UTF-8")]
    InvalidUtf8(usize),
    #[error("AMF0 data ends in the middle of a value")]
    Truncated,
}

/// Decodes one value from the front of `buf`.
///
/// `Ok(None)` means the bytes end inside the value: call again with more; `buf` is
/// left untouched then. On success `buf` is advanced past the value.
pub fn decode(buf: &mut &[u8], limits: &Limits) -> Result<Option<Amf0Value>, Amf0Error> {
    let mut reader = Reader {
        data: buf,
        pos: 0,
        limits,
    };
    match reader.value(0) {
        Ok(v) => {
            *buf = &buf[reader.pos..];
            Ok(Some(v))
        }
        Err(Amf0Error::Truncated) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Decodes a whole message body (an RTMP command): every value until the end.
/// A value cut short is an error here.
pub fn decode_all(buf: &[u8], limits: &Limits) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut reader = Reader {
        data: buf,
        pos: 0,
        limits,
    };
    let mut values = Vec::new();
    while reader.pos < buf.len() {
        if values.len() >= limits.max_elements {
            return Err(Amf0Error::TooManyElements(limits.max_elements));
        }
        values.push(reader.value(0)?);
    }
    Ok(values)
}

/// Appends the encoding of `value` to `out`.
pub fn encode(value: &Amf0Value, out: &mut Vec<u8>) {
    match value {
        Amf0Value::Number(n) => {
            out.push(NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0Value::Boolean(b) => out.extend_from_slice(&[BOOLEAN, u8::from(*b)]),
        Amf0Value::String(s) | Amf0Value::LongString(s) if s.len() > usize::from(u16::MAX) => {
            out.push(LONG_STRING);
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Amf0Value::String(s) | Amf0Value::LongString(s) => {
            out.push(STRING);
            write_utf8(s, out);
        }
        Amf0Value::Object(props) => {
            out.push(OBJECT);
            write_properties(props, out);
        }
        Amf0Value::Null => out.push(NULL),
        Amf0Value::Undefined => out.push(UNDEFINED),
        Amf0Value::EcmaArray(props) => {
            out.push(ECMA_ARRAY);
            out.extend_from_slice(&(props.len() as u32).to_be_bytes());
            write_properties(props, out);
        }
        Amf0Value::StrictArray(items) => {
            out.push(STRICT_ARRAY);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                encode(item, out);
            }
        }
        Amf0Value::Date { millis, time_zone } => {
            out.push(DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&time_zone.to_be_bytes());
        }
    }
}

impl fmt::Display for Amf0Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Amf0Value::Number(n) => write!(f, "{n}"),
            Amf0Value::Boolean(b) => write!(f, "{b}"),
            Amf0Value::String(s) | Amf0Value::LongString(s) => write!(f, "{s:?}"),
            Amf0Value::Null => f.write_str("null"),
            Amf0Value::Undefined => f.write_str("undefined"),
            Amf0Value::Date { millis, .. } => write!(f, "date({millis})"),
            Amf0Value::Object(p) | Amf0Value::EcmaArray(p) => {
                f.write_str("{")?;
                for (i, (k, v)) in p.iter().enumerate() {
                    write!(f, "{}{k}: {v}", if i > 0 { ", " } else { "" })?;
                }
                f.write_str("}")
            }
            Amf0Value::StrictArray(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    write!(f, "{}{v}", if i > 0 { ", " } else { "" })?;
                }
                f.write_str("]")
            }
        }
    }
}

fn write_utf8(s: &str, out: &mut Vec<u8>) {
    let bytes = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn write_properties(props: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (k, v) in props {
        write_utf8(k, out);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, OBJECT_END]);
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    limits: &'a Limits,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], Amf0Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(Amf0Error::Truncated)?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    fn string(&mut self, len: usize) -> Result<String, Amf0Error> {
        if len > self.limits.max_string_len {
            return Err(Amf0Error::StringTooLong {
                len,
                limit: self.limits.max_string_len,
            });
        }
        let at = self.pos;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Amf0Error::InvalidUtf8(at))
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        if depth > self.limits.max_depth {
            return Err(Amf0Error::TooDeep(self.limits.max_depth));
        }
        let at = self.pos;
        let marker = self.u8()?;
        Ok(match marker {
            NUMBER => Amf0Value::Number(self.f64()?),
            BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            STRING => {
                let len = usize::from(self.u16()?);
                Amf0Value::String(self.string(len)?)
            }
            OBJECT => Amf0Value::Object(self.properties(depth)?),
            NULL => Amf0Value::Null,
            UNDEFINED => Amf0Value::Undefined,
            ECMA_ARRAY => {
                // The count is only a hint (encoders get it wrong); the end marker decides.
                self.u32()?;
                Amf0Value::EcmaArray(self.properties(depth)?)
            }
            STRICT_ARRAY => {
                let count = self.u32()? as usize;
                if count > self.limits.max_elements {
                    return Err(Amf0Error::TooManyElements(self.limits.max_elements));
                }
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Amf0Value::StrictArray(items)
            }
            DATE => {
                let millis = self.f64()?;
                let time_zone = self.u16()? as i16;
                Amf0Value::Date { millis, time_zone }
            }
            LONG_STRING => {
                let len = self.u32()? as usize;
                Amf0Value::LongString(self.string(len)?)
            }
            marker => return Err(Amf0Error::UnsupportedMarker { marker, offset: at }),
        })
    }

    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            let len = usize::from(self.u16()?);
            if len == 0 {
                // An empty key followed by the object-end marker closes the object.
                let end_at = self.pos;
                if self.u8()? == OBJECT_END {
                    return Ok(props);
                }
                self.pos = end_at;
            }
            if props.len() >= self.limits.max_elements {
                return Err(Amf0Error::TooManyElements(self.limits.max_elements));
            }
            let key = self.string(len)?;
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }
}

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;
const DATE: u8 = 0x0b;
const LONG_STRING: u8 = 0x0c;

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Amf0Value> {
        vec![
            Amf0Value::String("connect".into()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(vec![
                ("app".into(), Amf0Value::String("live".into())),
                ("type".into(), Amf0Value::String("nonprivate".into())),
                (
                    "flashVer".into(),
                    Amf0Value::String("FMLE/3.0 (compatible; FMSc/1.0)".into()),
                ),
                (
                    "tcUrl".into(),
                    Amf0Value::String("rtmp://127.0.0.1:1935/live".into()),
                ),
                (
                    "fourCcList".into(),
                    Amf0Value::StrictArray(vec![Amf0Value::String("hvc1".into())]),
                ),
                ("audio".into(), Amf0Value::Boolean(true)),
            ]),
            Amf0Value::Null,
            Amf0Value::Undefined,
            Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(1280.0))]),
            Amf0Value::Date {
                millis: 1.5e12,
                time_zone: 0,
            },
        ]
    }

    #[test]
    fn round_trips_every_type() {
        let mut bytes = Vec::new();
        for v in sample() {
            encode(&v, &mut bytes);
        }
        assert_eq!(
            decode_all(&bytes, &Limits::default()).expect("decodes"),
            sample()
        );
    }

    #[test]
    fn truncation_at_every_offset_asks_for_more() {
        let mut bytes = Vec::new();
        encode(&sample()[2], &mut bytes);
        for cut in 0..bytes.len() {
            let mut buf = &bytes[..cut];
            assert_eq!(
                decode(&mut buf, &Limits::default()),
                Ok(None),
                "cut at {cut}"
            );
            assert_eq!(buf.len(), cut, "buffer untouched");
            assert_eq!(
                decode_all(&bytes[..cut.max(1)], &Limits::default()).err(),
                Some(Amf0Error::Truncated)
            );
        }
        let mut buf = &bytes[..];
        assert_eq!(
            decode(&mut buf, &Limits::default()).expect("ok"),
            Some(sample()[2].clone())
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn limits_hold_without_allocating_from_peer_lengths() {
        // A long string that claims 4 GiB but carries 3 bytes.
        let bytes = [LONG_STRING, 0xff, 0xff, 0xff, 0xff, b'a', b'b', b'c'];
        assert!(matches!(
            decode_all(&bytes, &Limits::default()),
            Err(Amf0Error::StringTooLong { .. })
        ));
        // A strict array that claims 2^32-1 elements.
        let bytes = [STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode_all(&bytes, &Limits::default()),
            Err(Amf0Error::TooManyElements(_))
        ));
        // Deep nesting.
        let deep: Vec<u8> = std::iter::repeat_n([OBJECT, 0, 1, b'a'], 40)
            .flatten()
            .collect();
        assert!(matches!(
            decode_all(&deep, &Limits::default()),
            Err(Amf0Error::TooDeep(_))
        ));
        assert!(matches!(
            decode_all(&[0x11], &Limits::default()),
            Err(Amf0Error::UnsupportedMarker {
                marker: 0x11,
                offset: 0
            })
        ));
    }

    #[test]
    fn random_input_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..5000 {
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 13) as u8
                })
                .collect();
            let _ = decode_all(&bytes, &Limits::default());
            let _ = decode(&mut &bytes[..], &Limits::default());
        }
    }
}
