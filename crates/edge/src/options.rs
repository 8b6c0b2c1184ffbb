//! Checks of the edge's options as the binary's flags give them.

/// An option of the edge that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionError {
    #[error("'{0}' is not a size (examples: 512M, 300K, 2G)")]
    NotASize(String),
    #[error("cache size {0} is below 64K")]
    CacheTooSmall(String),
    #[error("{what} '{url}' is not an http:// or https:// URL")]
    NotHttp { what: &'static str, url: String },
}

/// A cache size: `512M`, `300K`, `2G`, `1048576` (bytes), at least 64K.
pub fn parse_cache_size(s: &str) -> Result<u64, OptionError> {
    let t = s.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&t[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| OptionError::NotASize(s.to_owned()))?;
    let bytes = n.saturating_mul(unit);
    if bytes < 64 * 1024 {
        return Err(OptionError::CacheTooSmall(s.to_owned()));
    }
    Ok(bytes)
}

/// Every URL is `http://` or `https://` with a host; `what` names the option.
pub fn check_http_urls(urls: &[String], what: &'static str) -> Result<(), OptionError> {
    for u in urls {
        if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < "http://x".len() {
            return Err(OptionError::NotHttp {
                what,
                url: u.clone(),
            });
        }
    }
    Ok(())
}

/// `rivulet edge`'s start-up lines: where it serves (`scheme` over `addr`) and its
/// upstreams.
pub fn banner(scheme: &str, addr: std::net::SocketAddr, origins: &[String]) -> String {
    let addr = httpd::display_addr(addr);
    format!(
        "Rivulet edge is running.\n  HTTP edge: {scheme}://{addr}/\n  viewer page: {scheme}://{addr}/watch/NAME\n  upstreams (in order of preference): {}\n",
        origins.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_urls() {
        assert_eq!(parse_cache_size("512M"), Ok(512 << 20));
        assert_eq!(parse_cache_size("300K"), Ok(300 << 10));
        assert!(parse_cache_size("1K").is_err());
        assert!(parse_cache_size("big").is_err());
        assert!(check_http_urls(&["http://a".into()], "--origin").is_ok());
        assert!(check_http_urls(&["ftp://a".into()], "--origin").is_err());
    }
}
