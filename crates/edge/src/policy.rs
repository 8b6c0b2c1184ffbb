//! How long an upstream answer may be kept, from its `Cache-Control`.

use std::time::Duration;

/// Longest we keep anything, whatever the upstream says: object names derive from
/// encoder timestamps and may come back after an origin restart.
pub const MAX_TTL: Duration = Duration::from_secs(300);
/// Media without a `Cache-Control` (an upstream we did not write).
const DEFAULT_MEDIA_TTL: Duration = Duration::from_secs(60);

/// What to do with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// Keep it this long.
    Keep(Duration),
    /// Share it with the requests that waited for it, then forget it.
    CoalesceOnly,
}

/// Longest a negative answer (404, 410) is kept, whatever the upstream says: the
/// object may appear (a stream that goes live).
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(10);

/// Decides from the status, the `Cache-Control` value and whether it is a playlist.
/// A 404 or 410 is kept for `negative_ttl`, or less if the upstream gives a shorter
/// `max-age`: our origin marks them `no-store` (the part may exist shortly), but a
/// second of caching turns a flood of requests for a missing object into one
/// upstream fetch per second, while a player retrying sees the object at most a
/// second late.
pub fn storage(
    status: u16,
    cache_control: Option<&str>,
    playlist: bool,
    negative_ttl: Duration,
) -> Storage {
    if status == 404 || status == 410 {
        let ttl = max_age(cache_control)
            .map_or(negative_ttl, |s| negative_ttl.min(Duration::from_secs(s)))
            .min(MAX_NEGATIVE_TTL);
        return if ttl.is_zero() {
            Storage::CoalesceOnly
        } else {
            Storage::Keep(ttl)
        };
    }
    if status != 200 {
        return Storage::CoalesceOnly;
    }
    let mut max_age = None;
    for directive in cache_control.unwrap_or_default().split(',') {
        let d = directive.trim().to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" || d == "private" {
            return Storage::CoalesceOnly;
        }
        if let Some(v) = d.strip_prefix("s-maxage=") {
            // s-maxage speaks to shared caches and wins over max-age.
            max_age = v.parse::<u64>().ok().or(max_age);
        } else if let Some(v) = d.strip_prefix("max-age=")
            && max_age.is_none()
        {
            max_age = v.parse::<u64>().ok();
        }
    }
    match max_age {
        Some(0) => Storage::CoalesceOnly,
        Some(s) => Storage::Keep(Duration::from_secs(s).min(MAX_TTL)),
        None if playlist => Storage::CoalesceOnly,
        None => Storage::Keep(DEFAULT_MEDIA_TTL),
    }
}

/// `s-maxage`, else `max-age`, in seconds.
fn max_age(cache_control: Option<&str>) -> Option<u64> {
    let mut max_age = None;
    for directive in cache_control.unwrap_or_default().split(',') {
        let d = directive.trim().to_ascii_lowercase();
        if let Some(v) = d.strip_prefix("s-maxage=") {
            return v.parse().ok();
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            max_age = v.parse().ok();
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_missing_objects_briefly() {
        let second = Duration::from_secs(1);
        assert_eq!(
            storage(404, Some("no-store"), false, second),
            Storage::Keep(second)
        );
        assert_eq!(storage(410, None, true, second), Storage::Keep(second));
        assert_eq!(
            storage(404, Some("max-age=0"), false, second),
            Storage::CoalesceOnly,
            "the upstream may say less"
        );
        assert_eq!(
            storage(404, None, false, Duration::from_secs(3600)),
            Storage::Keep(MAX_NEGATIVE_TTL)
        );
        assert_eq!(
            storage(404, None, false, Duration::ZERO),
            Storage::CoalesceOnly
        );
        assert_eq!(storage(500, None, false, second), Storage::CoalesceOnly);
        assert_eq!(storage(400, None, true, second), Storage::CoalesceOnly);
    }

    #[test]
    fn follows_the_upstream_with_sane_limits() {
        let storage = |status, cc, playlist| storage(status, cc, playlist, Duration::ZERO);
        let keep = |s| Storage::Keep(Duration::from_secs(s));
        assert_eq!(
            storage(200, Some("public, max-age=300, immutable"), false),
            keep(300)
        );
        assert_eq!(
            storage(200, Some("public, max-age=31536000"), false),
            keep(300)
        );
        assert_eq!(storage(200, Some("public, max-age=6"), true), keep(6));
        assert_eq!(storage(200, Some("no-cache"), true), Storage::CoalesceOnly);
        assert_eq!(storage(200, Some("no-store"), false), Storage::CoalesceOnly);
        assert_eq!(storage(200, Some("max-age=60, s-maxage=2"), false), keep(2));
        // The origin's blocking reloads: a second here, nothing in the browser.
        assert_eq!(
            storage(200, Some("public, max-age=0, s-maxage=1"), true),
            keep(1)
        );
        assert_eq!(storage(200, None, false), keep(60));
        assert_eq!(storage(200, None, true), Storage::CoalesceOnly);
        assert_eq!(
            storage(404, Some("max-age=300"), false),
            Storage::CoalesceOnly
        );
        assert_eq!(
            storage(200, Some("max-age=0"), false),
            Storage::CoalesceOnly
        );
    }
}
