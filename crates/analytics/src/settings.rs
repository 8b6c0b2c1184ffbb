//! The analytics options as `serve` and `analytics` resolve them: where delivery events
//! go, the server's windows and retention, and its resource limits (docs/analytics-limits.md).
//! The binary reads them from flags, the environment and the config file.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::{EventsToken, TrustedProxies};

/// Where a server's delivery events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnalyticsMode {
    /// The analytics server runs in this process.
    Local,
    /// POSTed to a remote analytics server at this base URL.
    Remote(String),
    Off,
}

/// The resolved analytics options.
#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    pub mode: AnalyticsMode,
    pub geoip_db: Option<PathBuf>,
    pub trusted_proxies: TrustedProxies,
    pub retention: Duration,
    pub window_ms: i64,
    /// The events token: sent by `serve --analytics-url`, required by the server.
    pub token: Option<EventsToken>,
    pub queue: usize,
    pub limits: AnalyticsLimits,
}

/// The config file's `[analytics_limits]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsLimitsFile {
    pub max_sessions: Option<usize>,
    pub max_breakdown_values: Option<usize>,
    pub max_raw_rows: Option<u64>,
}

/// The analytics server's resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyticsLimits {
    pub max_sessions: usize,
    pub max_values: usize,
    pub max_raw_rows: u64,
}

impl Default for AnalyticsLimits {
    fn default() -> Self {
        Self {
            max_sessions: crate::DEFAULT_MAX_SESSIONS,
            max_values: crate::DEFAULT_MAX_VALUES,
            max_raw_rows: crate::DEFAULT_MAX_RAW_ROWS,
        }
    }
}

/// A limit set to what cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{flag} must be at least 1")]
pub struct LimitError {
    /// The flag that sets it.
    pub flag: &'static str,
}

impl AnalyticsLimits {
    /// Every limit must be at least 1.
    pub fn validate(&self) -> Result<(), LimitError> {
        for (value, flag) in [
            (self.max_sessions as u64, "--analytics-max-sessions"),
            (self.max_values as u64, "--analytics-max-breakdown-values"),
            (self.max_raw_rows, "--analytics-max-raw-rows"),
        ] {
            if value == 0 {
                return Err(LimitError { flag });
            }
        }
        Ok(())
    }
}
