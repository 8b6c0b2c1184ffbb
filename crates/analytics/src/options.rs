//! The analytics options as given (flags over the config file, merged by the binary),
//! checked and filled with the defaults into [`AnalyticsSettings`].

use std::path::PathBuf;
use std::time::Duration;

use crate::{
    AnalyticsLimits, AnalyticsMode, AnalyticsSettings, EventsToken, EventsTokenError, ProxyNet,
    ProxyNetError, TrustedProxies,
};

/// The analytics options of `serve` and `analytics`; `None`: not given.
#[derive(Debug, Clone, Default)]
pub struct AnalyticsOptions {
    /// Send delivery events to a remote analytics server at this base URL.
    pub url: Option<String>,
    /// No analytics at all.
    pub off: bool,
    pub geoip_db: Option<PathBuf>,
    /// The flags' trusted proxies, which replace the file's when there are any.
    pub trusted_proxies: Vec<ProxyNet>,
    /// The config file's `trusted_proxies`, as written (checked even when replaced).
    pub file_trusted_proxies: Vec<String>,
    pub retention_hours: Option<u64>,
    pub window_ms: Option<u64>,
    /// The events token (an empty one is none).
    pub token: Option<String>,
    pub queue: Option<usize>,
    pub limits: AnalyticsLimits,
}

/// An analytics option set to what cannot work.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyticsOptionsError {
    #[error("--analytics-url must be an http:// or https:// URL, not '{0}'")]
    Url(String),
    #[error("--analytics-window-ms must be more than 0")]
    Window,
    #[error("check --analytics-token (RIVULET_ANALYTICS_TOKEN, analytics_token)")]
    Token(#[source] EventsTokenError),
    #[error("in the config file's trusted_proxies")]
    FileProxy(#[source] ProxyNetError),
}

impl AnalyticsOptions {
    /// The settings; the activity window defaults to three segment targets.
    pub fn resolve(
        self,
        segment_target_ms: u32,
    ) -> Result<AnalyticsSettings, AnalyticsOptionsError> {
        let mode = match self.url {
            _ if self.off => AnalyticsMode::Off,
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return Err(AnalyticsOptionsError::Url(url));
            }
            Some(url) => AnalyticsMode::Remote(url),
            None => AnalyticsMode::Local,
        };
        // Three target durations: a player reloads its playlist at least once per
        // target duration (LL-HLS players every part), so a viewer who is still there
        // has been heard from within it even across a slow reload or a stall; one who
        // has been silent for three is gone.
        let window_ms = self.window_ms.unwrap_or(3 * u64::from(segment_target_ms));
        if window_ms == 0 {
            return Err(AnalyticsOptionsError::Window);
        }
        let mut trusted_proxies = (self.file_trusted_proxies.iter())
            .map(|p| p.parse::<ProxyNet>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(AnalyticsOptionsError::FileProxy)?;
        if !self.trusted_proxies.is_empty() {
            trusted_proxies = self.trusted_proxies;
        }
        Ok(AnalyticsSettings {
            mode,
            geoip_db: self.geoip_db,
            trusted_proxies: TrustedProxies::new(trusted_proxies),
            retention: Duration::from_secs(3600 * self.retention_hours.unwrap_or(48)),
            window_ms: i64::try_from(window_ms).unwrap_or(i64::MAX),
            token: self
                .token
                .filter(|t| !t.is_empty())
                .map(EventsToken::new)
                .transpose()
                .map_err(AnalyticsOptionsError::Token)?,
            queue: self.queue.unwrap_or(65_536).max(1),
            limits: self.limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_trusted_proxies_are_checked_and_the_flags_replace_them() {
        let file = AnalyticsOptions {
            file_trusted_proxies: vec!["10.0.0.0/8".into()],
            ..Default::default()
        };
        let settings = file.clone().resolve(2000).unwrap();
        assert!(
            settings
                .trusted_proxies
                .contains("10.1.2.3".parse().unwrap())
        );
        let flags = AnalyticsOptions {
            trusted_proxies: vec!["192.0.2.1".parse().unwrap()],
            ..file
        };
        let settings = flags.resolve(2000).unwrap();
        assert!(
            !settings
                .trusted_proxies
                .contains("10.1.2.3".parse().unwrap())
        );
        let bad = AnalyticsOptions {
            file_trusted_proxies: vec!["nope".into()],
            ..Default::default()
        };
        let e = bad.resolve(2000).unwrap_err();
        assert_eq!(e.to_string(), "in the config file's trusted_proxies");
        assert!(matches!(e, AnalyticsOptionsError::FileProxy(_)));
    }
}
