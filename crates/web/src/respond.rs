//! Conditional requests and content coding, decided from the request headers alone
//! (no I/O): [`negotiate`] picks what to send, [`build`] makes the response.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::WebError;

/// What to send for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Representation {
    /// 304: the client's copy (If-None-Match) is current.
    NotModified { gzip: bool },
    /// 200 with `Content-Encoding: gzip`.
    Gzip,
    /// 200, uncompressed: the client does not accept gzip.
    Identity,
}

/// How long caches may keep a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CacheRule {
    /// The URL names this exact content (versioned assets).
    Immutable,
    /// Check with the server every time (pages; assets of another version).
    Revalidate,
}

impl CacheRule {
    fn header(self) -> &'static str {
        match self {
            Self::Immutable => "public, max-age=31536000, immutable",
            Self::Revalidate => "no-cache",
        }
    }
}

/// Chooses the representation. The gzip and identity forms carry different ETags
/// (`"H-gz"`, `"H"`): they are different bytes, and a cache must not mix them up.
pub(crate) fn negotiate(hash: &str, headers: &HeaderMap) -> Representation {
    let gzip = accepts_gzip(headers.get(header::ACCEPT_ENCODING));
    let etag = etag(hash, gzip);
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| if_none_match_contains(v, &etag));
    match (matches, gzip) {
        (true, gzip) => Representation::NotModified { gzip },
        (false, true) => Representation::Gzip,
        (false, false) => Representation::Identity,
    }
}

/// The response for `representation`; the body comes from `gzip` or `identity`.
pub(crate) fn build<G, I>(
    representation: Representation,
    content_type: &'static str,
    cache: CacheRule,
    hash: &str,
    gzip: G,
    identity: I,
) -> Response
where
    G: FnOnce() -> Result<Bytes, WebError>,
    I: FnOnce() -> Result<Bytes, WebError>,
{
    let (status, compressed, body) = match representation {
        Representation::NotModified { gzip } => (StatusCode::NOT_MODIFIED, gzip, None),
        Representation::Gzip => match gzip() {
            Ok(b) => (StatusCode::OK, true, Some(b)),
            Err(e) => return e.into_response(),
        },
        Representation::Identity => match identity() {
            Ok(b) => (StatusCode::OK, false, Some(b)),
            Err(e) => return e.into_response(),
        },
    };
    let mut response = match body {
        Some(b) => Response::new(Body::from(b)),
        None => Response::new(Body::empty()),
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache.header()),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Ok(v) = HeaderValue::from_str(&etag(hash, compressed)) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::OK {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if compressed {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
    }
    response
}

fn etag(hash: &str, gzip: bool) -> String {
    if gzip {
        format!("\"{hash}-gz\"")
    } else {
        format!("\"{hash}\"")
    }
}

/// Whether an `If-None-Match` value lists `etag` (weak comparison, RFC 9110 §13.1.2).
fn if_none_match_contains(value: &str, etag: &str) -> bool {
    value
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Whether `Accept-Encoding` allows gzip: listed (or `*`) without `q=0` (RFC 9110 §12.5.3).
fn accepts_gzip(value: Option<&HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut star = None;
    for item in value.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        match coding.as_str() {
            "gzip" | "x-gzip" => return q > 0.0,
            "*" => star = Some(q > 0.0),
            _ => {}
        }
    }
    star.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).expect("valid header"));
        }
        h
    }

    #[test]
    fn gzip_only_when_accepted() {
        let cases = [
            ("gzip, deflate, br", true),
            ("br;q=1.0, gzip;q=0.8", true),
            ("gzip;q=0", false),
            ("deflate", false),
            ("*", true),
            ("*;q=0", false),
            ("identity", false),
            ("GZIP", true),
        ];
        for (value, expected) in cases {
            let h = headers(&[(header::ACCEPT_ENCODING, value)]);
            assert_eq!(
                accepts_gzip(h.get(header::ACCEPT_ENCODING)),
                expected,
                "{value}"
            );
        }
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn if_none_match_picks_the_matching_representation() {
        let gz = headers(&[
            (header::ACCEPT_ENCODING, "gzip"),
            (header::IF_NONE_MATCH, "\"other\", W/\"abc-gz\""),
        ]);
        assert_eq!(
            negotiate("abc", &gz),
            Representation::NotModified { gzip: true }
        );
        // The gzip ETag does not validate the uncompressed form.
        let plain = headers(&[(header::IF_NONE_MATCH, "\"abc-gz\"")]);
        assert_eq!(negotiate("abc", &plain), Representation::Identity);
        let plain = headers(&[(header::IF_NONE_MATCH, "\"abc\"")]);
        assert_eq!(
            negotiate("abc", &plain),
            Representation::NotModified { gzip: false }
        );
        let star = headers(&[(header::IF_NONE_MATCH, "*")]);
        assert!(matches!(
            negotiate("abc", &star),
            Representation::NotModified { .. }
        ));
        assert_eq!(
            negotiate("abc", &HeaderMap::new()),
            Representation::Identity
        );
    }
}
