//! Common Media Client Data (CTA-5004): the keys a player sends with each request,
//! either as the `CMCD=` query parameter or in the `CMCD-Object`, `CMCD-Request`,
//! `CMCD-Session` and `CMCD-Status` headers (CTA-5004 §2).
//!
//! The wire form is a comma-separated list of `key=value` pairs, where a value is an
//! integer, a token or a quoted string, and a key without a value is boolean `true`
//! (§3.2). Parsing here is lenient on purpose: a request is served whatever its CMCD
//! says, so a malformed pair is skipped, never an error.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The CMCD keys Rivulet reads. Units as in CTA-5004.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Cmcd {
    /// Encoded bitrate of the requested object, kbit/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub br: Option<u64>,
    /// Buffer length, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bl: Option<u64>,
    /// Buffer starvation since the previous request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bs: Option<bool>,
    /// Object duration, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub d: Option<u64>,
    /// Measured throughput, kbit/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtp: Option<u64>,
    /// Startup: the object is needed urgently at start, seek or recovery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub su: Option<bool>,
    /// Stream type: `v` (VOD) or `l` (live).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub st: Option<String>,
    /// Object type: `m` manifest, `a` audio, `v` video, `av` muxed, `i` init, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ot: Option<String>,
    /// Content id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// Session id: the same for every request of one playback session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

/// The header names that carry CMCD (CTA-5004 §2.2), lowercase.
pub const HEADERS: [&str; 4] = ["cmcd-object", "cmcd-request", "cmcd-session", "cmcd-status"];

/// Longest `sid`/`cid` kept: the spec's limit (64 characters).
pub const MAX_ID_LEN: usize = 64;

impl Cmcd {
    /// Parses one CMCD list (a header value, or the decoded `CMCD=` query value) into
    /// `self`, keeping keys already set by an earlier list.
    pub fn merge_from(&mut self, list: &str) {
        for (key, value) in pairs(list) {
            match key {
                "br" => set_int(&mut self.br, value),
                "bl" => set_int(&mut self.bl, value),
                "d" => set_int(&mut self.d, value),
                "mtp" => set_int(&mut self.mtp, value),
                "bs" => set_bool(&mut self.bs, value),
                "su" => set_bool(&mut self.su, value),
                "st" => set_token(&mut self.st, value),
                "ot" => set_token(&mut self.ot, value),
                "cid" => set_string(&mut self.cid, value),
                "sid" => set_string(&mut self.sid, value),
                _ => {}
            }
        }
    }

    /// Parses a whole list.
    pub fn parse(list: &str) -> Cmcd {
        let mut cmcd = Cmcd::default();
        cmcd.merge_from(list);
        cmcd
    }

    /// Whether no key was read.
    pub fn is_empty(&self) -> bool {
        *self == Cmcd::default()
    }
}

/// The `CMCD` parameter of a raw (still percent-encoded) query string, decoded.
pub fn from_query(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == "CMCD").then(|| percent_decode(value))
    })
}

/// A CMCD value as it appears on the wire.
#[derive(Debug, PartialEq, Eq)]
enum Value<'a> {
    /// No `=`: boolean true.
    Flag,
    /// A quoted string, with its escapes (`\"`, `\\`) still in.
    Quoted(&'a str),
    /// Anything else: an integer, a token, `false`…
    Bare(&'a str),
}

/// The pairs of a list. A comma inside a quoted string does not split.
fn pairs(list: &str) -> impl Iterator<Item = (&str, Value<'_>)> {
    let mut rest = list;
    std::iter::from_fn(move || {
        loop {
            if rest.is_empty() {
                return None;
            }
            // Find the end of this pair: the first comma outside quotes.
            let bytes = rest.as_bytes();
            let (mut i, mut quoted, mut escaped) = (0, false, false);
            while i < bytes.len() {
                match bytes[i] {
                    _ if escaped => escaped = false,
                    b'\\' if quoted => escaped = true,
                    b'"' => quoted = !quoted,
                    b',' if !quoted => break,
                    _ => {}
                }
                i += 1;
            }
            let pair = rest[..i].trim();
            rest = rest.get(i + 1..).unwrap_or("");
            if pair.is_empty() {
                continue;
            }
            return Some(match pair.split_once('=') {
                None => (pair, Value::Flag),
                Some((k, v)) => {
                    let v = v.trim();
                    let value = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                        Some(inner) => Value::Quoted(inner),
                        None => Value::Bare(v),
                    };
                    (k.trim(), value)
                }
            });
        }
    })
}

fn set_int(slot: &mut Option<u64>, value: Value<'_>) {
    if slot.is_none()
        && let Value::Bare(v) = value
        && let Ok(n) = v.parse::<u64>()
    {
        *slot = Some(n);
    }
}

fn set_bool(slot: &mut Option<bool>, value: Value<'_>) {
    if slot.is_none() {
        match value {
            Value::Flag => *slot = Some(true),
            // CTA-5004 omits false keys, but players do send `bs=false`.
            Value::Bare("false") => *slot = Some(false),
            Value::Bare("true") => *slot = Some(true),
            _ => {}
        }
    }
}

fn set_token(slot: &mut Option<String>, value: Value<'_>) {
    if slot.is_none()
        && let Value::Bare(v) = value
        && !v.is_empty()
        && v.len() <= 8
        && v.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        *slot = Some(v.to_owned());
    }
}

fn set_string(slot: &mut Option<String>, value: Value<'_>) {
    if slot.is_none()
        && let Value::Quoted(v) = value
    {
        let v = v.replace("\\\"", "\"").replace("\\\\", "\\");
        if !v.is_empty() && v.chars().count() <= MAX_ID_LEN && !v.chars().any(char::is_control) {
            *slot = Some(v);
        }
    }
}

/// `%XX` and `+` decoding of a query value; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example() {
        // CTA-5004 §4, query form (percent-encoded).
        let query = "_HLS_msn=3&CMCD=bl%3D21300%2Cbr%3D3200%2Cbs%2Ccid%3D%22faec5fc2-ac30-11ea-bb37-0242ac130002%22%2Cd%3D4004%2Cmtp%3D25400%2Cot%3Dv%2Csid%3D%226e2fb550-c457-11e9-bb97-0800200c9a66%22%2Csu%2Cst%3Dl";
        let cmcd = Cmcd::parse(&from_query(query).unwrap());
        assert_eq!(
            cmcd,
            Cmcd {
                br: Some(3200),
                bl: Some(21300),
                bs: Some(true),
                d: Some(4004),
                mtp: Some(25400),
                su: Some(true),
                st: Some("l".into()),
                ot: Some("v".into()),
                cid: Some("faec5fc2-ac30-11ea-bb37-0242ac130002".into()),
                sid: Some("6e2fb550-c457-11e9-bb97-0800200c9a66".into()),
            }
        );
    }

    #[test]
    fn header_form_merges_and_skips_junk() {
        let mut cmcd = Cmcd::default();
        cmcd.merge_from("br=800,d=2000,ot=av");
        cmcd.merge_from("bl=1200,mtp=abc,,");
        cmcd.merge_from(r#"sid="a,b \"c\"",cid=unquoted,st=l, nope"#);
        assert_eq!(cmcd.br, Some(800));
        assert_eq!(cmcd.bl, Some(1200));
        assert_eq!(cmcd.mtp, None, "not an integer");
        assert_eq!(cmcd.sid.as_deref(), Some(r#"a,b "c""#));
        assert_eq!(cmcd.cid, None, "strings must be quoted");
        assert_eq!(cmcd.st.as_deref(), Some("l"));
        assert!(Cmcd::parse("").is_empty());
        let long = format!("sid=\"{}\"", "x".repeat(65));
        assert_eq!(Cmcd::parse(&long).sid, None);
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            from_query("a=1&CMCD=sid%3D%22x%22"),
            Some("sid=\"x\"".into())
        );
        assert_eq!(from_query("CMCD=%ZZ%4"), Some("%ZZ%4".into()));
        assert_eq!(from_query("cmcd=x"), None);
    }
}
