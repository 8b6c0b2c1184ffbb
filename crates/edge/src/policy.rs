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

/// Decides from the status, the `Cache-Control` value and whether it is a playlist.
pub fn storage(status: u16, cache_control: Option<&str>, playlist: bool) -> Storage {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_upstream_with_sane_limits() {
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
