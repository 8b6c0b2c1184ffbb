//! Cache keys: the path and the LL-HLS query, nothing else. Two requests that differ
//! only in other query parameters (a CMCD string, a cache buster) share an entry, as
//! the LL-HLS spec asks of caches.

/// The query parameters that select a different object, in canonical order.
const LL_HLS_PARAMS: [&str; 3] = ["_HLS_msn", "_HLS_part", "_HLS_skip"];

/// Why a request cannot be cached or forwarded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("path must start with /live/")]
    NotLive,
    #[error("path contains '..' or an empty segment")]
    BadPath,
    #[error("query parameter {0} must be a number")]
    NotANumber(&'static str),
}

/// A normalised request target: `/live/NAME/…?_HLS_msn=…&_HLS_part=…&_HLS_skip=…`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(String);

impl CacheKey {
    /// From a request's path and raw query.
    pub fn new(path: &str, query: Option<&str>) -> Result<Self, KeyError> {
        if !path.starts_with("/live/") {
            return Err(KeyError::NotLive);
        }
        if path.split('/').skip(1).any(|s| s.is_empty() || s == "..") {
            return Err(KeyError::BadPath);
        }
        let mut params: [Option<&str>; 3] = [None; 3];
        for pair in query.unwrap_or_default().split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if let Some(i) = LL_HLS_PARAMS.iter().position(|p| *p == name) {
                params[i] = Some(value);
            }
        }
        let mut key = path.to_owned();
        let mut sep = '?';
        for (name, value) in LL_HLS_PARAMS.iter().zip(params) {
            let Some(value) = value else { continue };
            // _HLS_skip is YES or v2; the others are integers.
            if *name != "_HLS_skip" && value.parse::<u64>().is_err() {
                return Err(KeyError::NotANumber(name));
            }
            key.push(sep);
            key.push_str(name);
            key.push('=');
            key.push_str(value);
            sep = '&';
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
        let skip = CacheKey::new("/live/cam/720p/index.m3u8", Some("_HLS_skip=YES")).unwrap();
        assert_eq!(skip.as_str(), "/live/cam/720p/index.m3u8?_HLS_skip=YES");
        let msn_only = CacheKey::new("/live/cam/720p/index.m3u8", Some("_HLS_msn=7")).unwrap();
        assert_eq!(msn_only.blocking_target(), Some((7, None)));
    }

    #[test]
    fn refuses_what_is_not_a_live_object() {
        assert_eq!(CacheKey::new("/api/streams", None), Err(KeyError::NotLive));
        assert_eq!(
            CacheKey::new("/live/../etc/passwd", None),
            Err(KeyError::BadPath)
        );
        assert_eq!(CacheKey::new("/live/cam//x", None), Err(KeyError::BadPath));
        assert_eq!(
            CacheKey::new("/live/cam/a/index.m3u8", Some("_HLS_msn=abc")),
            Err(KeyError::NotANumber("_HLS_msn"))
        );
    }
}
