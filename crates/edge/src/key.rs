//! Cache keys: the object and the LL-HLS query, nothing else. Two requests that differ
//! only in other query parameters (a CMCD string, a cache buster) share an entry, as
//! the LL-HLS spec asks of caches.
//!
//! The path is percent-decoded and then parsed strictly into the names the packager
//! produces ([`LivePath`]: `/live/NAME/master.m3u8`, `/live/NAME/REND/index.m3u8`,
//! `init-V.mp4`, `seg-N.m4s`, `part-N-P.m4s`, `/live/NAME/health`, and the DVR's
//! `dvr.m3u8` and `REND/rec-T/(init-V.mp4|seg-N.m4s)`); anything else is
//! refused before the cache or an upstream sees it. The key is then written out again from the
//! parsed parts, so that every spelling of one object (`%73eg-7.m4s`, `seg-007.m4s`)
//! is one entry and one upstream fetch, and no spelling can reach another path
//! upstream (`/live/%2e%2e/metrics`).

use media::live_path::{LiveObject, LivePath, LivePathError, MediaObject};

/// The query parameters that select a different object, in canonical order.
const LL_HLS_PARAMS: [&str; 3] = ["_HLS_msn", "_HLS_part", "_HLS_skip"];

/// Why a request cannot be cached or forwarded. The message is for the viewer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The path is not one of the objects the play URL layout names.
    #[error(transparent)]
    Path(#[from] LivePathError),
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
pub struct CacheKey {
    /// Path and canonical LL-HLS query.
    key: String,
    path: LivePath,
    /// `_HLS_msn` and `_HLS_part` of a blocking reload.
    blocking: Option<(u64, Option<u32>)>,
}

impl CacheKey {
    /// From a request's path (as sent, percent-encoded) and raw query.
    pub fn new(path: &str, query: Option<&str>) -> Result<Self, KeyError> {
        let path = LivePath::from_request_path(path)?;
        let mut key = path.to_string();
        // Only a playlist is selected by the LL-HLS query: on media it is noise.
        if !path.is_playlist() {
            return Ok(Self {
                key,
                path,
                blocking: None,
            });
        }
        let mut params: [Option<&str>; 3] = [None; 3];
        for pair in query.unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if let Some(i) = LL_HLS_PARAMS.iter().position(|p| *p == name) {
                params[i] = Some(value);
            }
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
        Ok(Self {
            key,
            path,
            blocking: msn.map(|m| (m, part)),
        })
    }

    /// Path and query, to append to an upstream's base URL.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The object, parsed.
    pub fn live_path(&self) -> &LivePath {
        &self.path
    }

    /// A playlist request (`.m3u8`).
    pub fn is_playlist(&self) -> bool {
        self.path.is_playlist()
    }

    /// What the object is.
    pub fn kind(&self) -> ObjectKind {
        match self.path.object() {
            LiveObject::Multivariant
            | LiveObject::MediaPlaylist { .. }
            | LiveObject::DvrMultivariant
            | LiveObject::DvrPlaylist { .. } => ObjectKind::Playlist,
            LiveObject::Media { .. } | LiveObject::Recorded { .. } => ObjectKind::Media,
            LiveObject::Health => ObjectKind::Other,
        }
    }

    /// A blocking playlist reload (`_HLS_msn` present): held upstream until the part exists.
    pub fn is_blocking(&self) -> bool {
        self.blocking.is_some()
    }

    /// The stream name (`/live/NAME/…`).
    pub fn stream(&self) -> &str {
        self.path.stream()
    }

    /// A partial segment (`part-MSN-PART.m4s`): the next one is held upstream until it
    /// starts, which is at most a part duration away.
    pub fn is_part(&self) -> bool {
        matches!(self.path.media(), Some(MediaObject::Part { .. }))
    }

    /// What a blocking reload waits for: `_HLS_msn` and, if given, `_HLS_part`.
    pub fn blocking_target(&self) -> Option<(u64, Option<u32>)> {
        self.blocking
    }
}

/// Digits only (no sign, no spaces), written back without leading zeros.
fn number<T: std::str::FromStr>(v: &str, param: &'static str) -> Result<T, KeyError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyError::NotANumber(param));
    }
    v.parse().map_err(|_| KeyError::NotANumber(param))
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
        // A playback token is checked, never part of the key: one entry for all viewers.
        let with_token = CacheKey::new(
            "/live/cam/720p/index.m3u8",
            Some("token=a.b.c&_HLS_msn=10&_HLS_part=2"),
        )
        .unwrap();
        assert_eq!(with_token, b);
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
        assert_eq!(
            CacheKey::new("/api/streams", None),
            Err(KeyError::Path(LivePathError::NotLive))
        );
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
                matches!(
                    e,
                    KeyError::Path(
                        LivePathError::BadPath
                            | LivePathError::BadStreamName(_)
                            | LivePathError::BadRenditionName(_)
                    )
                ),
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
                matches!(
                    e,
                    KeyError::Path(
                        LivePathError::BadPath
                            | LivePathError::BadStreamName(_)
                            | LivePathError::BadRenditionName(_)
                    )
                ),
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
                Err(KeyError::Path(LivePathError::BadEncoding)),
                "{bad}"
            );
        }
        let long = format!("/live/{}/master.m3u8", "a".repeat(65));
        assert!(matches!(
            CacheKey::new(&long, None),
            Err(KeyError::Path(LivePathError::BadStreamName(_)))
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
