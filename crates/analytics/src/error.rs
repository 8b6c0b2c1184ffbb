//! The analytics server's errors.

use std::path::PathBuf;

/// Why an analytics operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyticsError {
    #[error("analytics database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot apply the analytics migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value this version cannot read.
    #[error("stored analytics data is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot open the GeoIP database {path}: {reason} (set --geoip-db)")]
    GeoIp { path: PathBuf, reason: String },
    /// A background computation failed (panicked or was cancelled).
    #[error("analytics computation failed: {0}")]
    Task(String),
    /// A query parameter is out of range (answered 400, naming it).
    #[error("{reason}")]
    InvalidQuery { field: &'static str, reason: String },
}
