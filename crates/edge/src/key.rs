//! Cache keys: the object and the LL-HLS query, nothing else. Two requests that differ
//! only in other query parameters (a CMCD string, a cache buster) share an entry, as
//! the LL-HLS spec asks of caches.
//!
//! The path is percent-decoded and then parsed strictly into the names the packager
//! produces (`/live/NAME/master.m3u8`, `/live/NAME/REND/index.m3u8`, `init-V.mp4`,
//! `seg-N.m4s`, `part-N-P.m4s`, `/live/NAME/health`); anything else is refused before
//! the cache or an upstream sees it. The key is then written out again from the
//! parsed parts, so that every spelling of one object (`%73eg-7.m4s`, `seg-007.m4s`)
//! is one entry and one upstream fetch, and no spelling can reach another path
//! upstream (`/live/%2e%2e/metrics`).

use package::MediaObject;

/// The query parameters that select a different object, in canonical order.
const LL_HLS_PARAMS: [&str; 3] = ["_HLS_msn", "_HLS_part", "_HLS_skip"];
/// Longest stream or rendition name (the metadata server's rule for stream names).
const MAX_NAME_LEN: usize = 64;

/// Why a request cannot be cached or forwarded. The message is for the viewer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("path must start with /live/")]
    NotLive,
    #[error("malformed percent-encoding in the path")]
    BadEncoding,
    #[error(
        "not a live object path: expected /live/NAME/master.m3u8 or /live/NAME/RENDITION/(index.m3u8|init-N.mp4|seg-N.m4s|part-N-P.m4s)"
    )]
    BadPath,
    #[error("'{0}' is not a stream or rendition name: 1-64 letters, digits, '-' or '_'")]
    BadName(String),
    #[error("query parameter {0} must be a non-negative integer")]
    NotANumber(&'static str),
    #[error("_HLS_skip must be YES or v2")]
    BadSkip,
    #[error("_HLS_part requires _HLS_msn")]
    PartWithoutMsn,
}

/// What an object is, for the bounds put on its upstream body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// A multivariant or media playlist.
    Playlist,
    /// An init segment, a segment or a part.
    Media,
    /// Anything else the origin answers below `/live/NAME/` (the input's health).
    Other,
}

/// A normalised request target: `/live/NAME/…?_HLS_msn=…&_HLS_part=…&_HLS_skip=…`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    /// From a request's path (as sent, percent-encoded) and raw query.
    pub fn new(path: &str, query: Option<&str>) -> Result<Self, KeyError> {
        let decoded = percent_decode(path)?;
        let rest = decoded.strip_prefix("/live/").ok_or(KeyError::NotLive)?;
        let segments: Vec<&str> = rest.split('/').collect();
        let (canonical, playlist) = match segments.as_slice() {
            [stream, "master.m3u8"] => (format!("/live/{}/master.m3u8", name(stream)?), true),
            [stream, "health"] => (format!("/live/{}/health", name(stream)?), false),
            [stream, rendition, "index.m3u8"] => (
                format!("/live/{}/{}/index.m3u8", name(stream)?, name(rendition)?),
                true,
            ),
            [stream, rendition, object] => {
                let (stream, rendition) = (name(stream)?, name(rendition)?);
                let object = MediaObject::parse(object).ok_or(KeyError::BadPath)?;
                (
                    format!("/live/{stream}/{rendition}/{}", object.file_name()),
                    false,
                )
            }
            _ => return Err(KeyError::BadPath),
        };
        let mut params: [Option<&str>; 3] = [None; 3];
        for pair in query.unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if let Some(i) = LL_HLS_PARAMS.iter().position(|p| *p == name) {
                params[i] = Some(value);
            }
        }
        let mut key = canonical;
        // Only a playlist is selected by the LL-HLS query: on media it is noise.
        if !playlist {
            return Ok(Self(key));
        }
        let [msn, part, skip] = params;
        let msn = msn.map(|v| number::<u64>(v, "_HLS_msn")).transpose()?;
        let part = part.map(|v| number::<u32>(v, "_HLS_part")).transpose()?;
        if part.is_some() && msn.is_none() {
            return Err(KeyError::PartWithoutMsn);
        }
        let skip = match skip {
            None => None,
            Some(v @ ("YES" | "v2")) => Some(v),
            Some(_) => return Err(KeyError::BadSkip),
        };
        let mut sep = '?';
        let mut push = |name: &str, value: &str| {
            key.push(sep);
            key.push_str(name);
            key.push('=');
            key.push_str(value);
            sep = '&';
        };
        if let Some(m) = msn {
            push("_HLS_msn", &m.to_string());
        }
        if let Some(p) = part {
            push("_HLS_part", &p.to_string());
        }
        if let Some(s) = skip {
            push("_HLS_skip", s);
        }
        Ok(Self(key))
    }

    /// Path and query, to append to an upstream's base URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn path(&self) -> &str {
        self.0.split('?').next().unwrap_or_default()
    }

    /// A playlist request (`.m3u8`).
    pub fn is_playlist(&self) -> bool {
        self.path().ends_with(".m3u8")
    }

    /// What the object is.
    pub fn kind(&self) -> ObjectKind {
        if self.is_playlist() {
            ObjectKind::Playlist
        } else if self.path().ends_with(".m4s") || self.path().ends_with(".mp4") {
            ObjectKind::Media
        } else {
            ObjectKind::Other
        }
    }

    /// A blocking playlist reload (`_HLS_msn` present): held upstream until the part exists.
    pub fn is_blocking(&self) -> bool {
        self.0.contains("_HLS_msn=")
    }

    /// The stream name (`/live/NAME/…`).
    pub fn stream(&self) -> &str {
        self.path().split('/').nth(2).unwrap_or_default()
    }

    /// A partial segment (`part-MSN-PART.m4s`): the next one is held upstream until it
    /// starts, which is at most a part duration away.
    pub fn is_part(&self) -> bool {
        self.path()
            .rsplit('/')
            .next()
            .is_some_and(|f| f.starts_with("part-") && f.ends_with(".m4s"))
    }

    /// What a blocking reload waits for: `_HLS_msn` and, if given, `_HLS_part`.
    pub fn blocking_target(&self) -> Option<(u64, Option<u32>)> {
        let query = self.0.split_once('?')?.1;
        let value = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        };
        let msn = value("_HLS_msn")?.parse().ok()?;
        Some((msn, value("_HLS_part").and_then(|p| p.parse().ok())))
    }
}

/// A stream or rendition name: the characters the packager and the metadata server
/// use, which need no encoding in a URL.
fn name(s: &str) -> Result<&str, KeyError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(s)
    } else {
        Err(KeyError::BadName(s.chars().take(MAX_NAME_LEN).collect()))
    }
}

/// Digits only (no sign, no spaces), written back without leading zeros.
fn number<T: std::str::FromStr>(v: &str, param: &'static str) -> Result<T, KeyError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyError::NotANumber(param));
    }
    v.parse().map_err(|_| KeyError::NotANumber(param))
}

/// `%XX` decoded; the result must be text.
fn percent_decode(path: &str) -> Result<String, KeyError> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(KeyError::BadEncoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| KeyError::BadEncoding)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| KeyError::BadEncoding)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| KeyError::BadEncoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_ll_hls_query_in_canonical_order() {
        let a = CacheKey::new(
            "/live/cam/720p/index.m3u8",
            Some("_HLS_part=2&CMCD=sid%3D%22x%22&_HLS_msn=10"),
        )
        .unwrap();
        let b =
            CacheKey::new("/live/cam/720p/index.m3u8", Some("_HLS_msn=10&_HLS_part=2")).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            a.as_str(),
            "/live/cam/720p/index.m3u8?_HLS_msn=10&_HLS_part=2"
        );
        assert!(a.is_playlist() && a.is_blocking() && !a.is_part());
        assert_eq!(a.stream(), "cam");
        assert_eq!(a.blocking_target(), Some((10, Some(2))));
        let part = CacheKey::new("/live/cam/720p/part-3-1.m4s", Some("cachebust=1")).unwrap();
        assert_eq!(part.as_str(), "/live/cam/720p/part-3-1.m4s");
        assert!(!part.is_playlist() && !part.is_blocking() && part.is_part());
        assert_eq!(part.blocking_target(), None);
        assert_eq!(part.kind(), ObjectKind::Media);
        let skip = CacheKey::new("/live/cam/720p/index.m3u8", Some("_HLS_skip=YES")).unwrap();
        assert_eq!(skip.as_str(), "/live/cam/720p/index.m3u8?_HLS_skip=YES");
        assert_eq!(skip.kind(), ObjectKind::Playlist);
        let msn_only = CacheKey::new("/live/cam/720p/index.m3u8", Some("_HLS_msn=7")).unwrap();
        assert_eq!(msn_only.blocking_target(), Some((7, None)));
        let health = CacheKey::new("/live/cam/health", None).unwrap();
        assert_eq!(health.kind(), ObjectKind::Other);
    }

    #[test]
    fn every_spelling_of_an_object_is_one_key() {
        let canonical = CacheKey::new("/live/cam/720p/seg-7.m4s", None).unwrap();
        for alias in [
            "/live/cam/720p/seg-007.m4s",
            "/live/%63am/720p/seg-7.m4s",
            "/live/cam/720p/%73eg-7.m4s",
            "/live/cam/720p/seg-0000000000000000007.m4s",
        ] {
            assert_eq!(
                CacheKey::new(alias, Some("x=1")).unwrap(),
                canonical,
                "{alias}"
            );
        }
        // The LL-HLS query means nothing on media, and numbers lose leading zeros.
        assert_eq!(
            CacheKey::new("/live/cam/720p/seg-7.m4s", Some("_HLS_msn=3")).unwrap(),
            canonical
        );
        assert_eq!(
            CacheKey::new(
                "/live/cam/720p/index.m3u8",
                Some("_HLS_msn=010&_HLS_part=02")
            )
            .unwrap()
            .as_str(),
            "/live/cam/720p/index.m3u8?_HLS_msn=10&_HLS_part=2"
        );
    }

    #[test]
    fn refuses_what_is_not_a_live_object() {
        assert_eq!(CacheKey::new("/api/streams", None), Err(KeyError::NotLive));
        for bad in [
            "/live/../etc/passwd",
            "/live/cam//x",
            "/live/cam/720p/seg-7.m4s/x",
            "/live/cam/720p/whatever.txt",
            "/live/cam/720p/seg--1.m4s",
            "/live/cam",
            "/live/",
        ] {
            let e = CacheKey::new(bad, None).unwrap_err();
            assert!(
                matches!(e, KeyError::BadPath | KeyError::BadName(_)),
                "{bad}: {e:?}"
            );
        }
        // Encoded dots and slashes decode into what they are, and are refused as such.
        for bad in [
            "/live/%2e%2e/metrics",
            "/live/%2E%2E/metrics",
            "/live/cam/%2e%2e/%2e%2e/metrics",
            "/live/cam%2f..%2fmetrics/master.m3u8",
            "/live/cam%00/master.m3u8",
            "/live/c%20m/master.m3u8",
        ] {
            let e = CacheKey::new(bad, None).unwrap_err();
            assert!(
                matches!(e, KeyError::BadPath | KeyError::BadName(_)),
                "{bad}: {e:?}"
            );
        }
        for bad in [
            "/live/cam/%zz/x",
            "/live/cam/%2",
            "/live/%ff%fe/master.m3u8",
        ] {
            assert_eq!(
                CacheKey::new(bad, None),
                Err(KeyError::BadEncoding),
                "{bad}"
            );
        }
        let long = format!("/live/{}/master.m3u8", "a".repeat(65));
        assert!(matches!(
            CacheKey::new(&long, None),
            Err(KeyError::BadName(_))
        ));
        assert_eq!(
            CacheKey::new("/live/cam/a/index.m3u8", Some("_HLS_msn=abc")),
            Err(KeyError::NotANumber("_HLS_msn"))
        );
        assert_eq!(
            CacheKey::new("/live/cam/a/index.m3u8", Some("_HLS_msn=-1")),
            Err(KeyError::NotANumber("_HLS_msn"))
        );
        assert_eq!(
            CacheKey::new(
                "/live/cam/a/index.m3u8",
                Some("_HLS_msn=99999999999999999999999")
            ),
            Err(KeyError::NotANumber("_HLS_msn"))
        );
        assert_eq!(
            CacheKey::new("/live/cam/a/index.m3u8", Some("_HLS_part=1")),
            Err(KeyError::PartWithoutMsn)
        );
        assert_eq!(
            CacheKey::new("/live/cam/a/index.m3u8", Some("_HLS_skip=../x")),
            Err(KeyError::BadSkip)
        );
    }
}
