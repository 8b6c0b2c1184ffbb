//! AMF0: decode with limits, re-encode what decodes, decode again: equal.
#![no_main]
use libfuzzer_sys::fuzz_target;
use media::amf0::{self, Amf0Value, Limits};

/// NaN != NaN: compare numbers by their bits. A short `LongString` is written as a
/// `String` (by design): the two compare by their text.
fn same(a: &Amf0Value, b: &Amf0Value) -> bool {
    use Amf0Value::*;
    let props = |x: &[(std::string::String, Amf0Value)], y: &[(std::string::String, Amf0Value)]| {
        x.len() == y.len()
            && x.iter()
                .zip(y)
                .all(|((k1, v1), (k2, v2))| k1 == k2 && same(v1, v2))
    };
    match (a, b) {
        (Number(x), Number(y)) => x.to_bits() == y.to_bits(),
        (String(x) | LongString(x), String(y) | LongString(y)) => x == y,
        (
            Date {
                millis: x,
                time_zone: t1,
            },
            Date {
                millis: y,
                time_zone: t2,
            },
        ) => x.to_bits() == y.to_bits() && t1 == t2,
        (Object(x), Object(y)) | (EcmaArray(x), EcmaArray(y)) => props(x, y),
        (StrictArray(x), StrictArray(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v1, v2)| same(v1, v2))
        }
        _ => a == b,
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_depth: 8,
        max_string_len: 4096,
        max_elements: 256,
    };
    // One value at a time, as the chunk layer sees them.
    let mut buf = data;
    while let Ok(Some(value)) = amf0::decode(&mut buf, &limits) {
        let mut encoded = Vec::new();
        amf0::encode(&value, &mut encoded);
        let again = amf0::decode(&mut &encoded[..], &limits);
        match again {
            Ok(Some(v)) => assert!(same(&value, &v), "{value:?} != {v:?}"),
            other => panic!("re-encoded {value:?} does not decode: {other:?}"),
        }
        if buf.is_empty() {
            break;
        }
    }
    // A whole command body.
    if let Ok(values) = amf0::decode_all(data, &limits) {
        let mut encoded = Vec::new();
        for v in &values {
            amf0::encode(v, &mut encoded);
        }
        let again = amf0::decode_all(&encoded, &limits).expect("re-encoded values decode");
        assert_eq!(values.len(), again.len());
        assert!(values.iter().zip(&again).all(|(a, b)| same(a, b)));
    }
    let _ = media::flv::parse_script_data(data);
});
