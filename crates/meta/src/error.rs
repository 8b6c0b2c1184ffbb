//! The store's errors.

use crate::model::ValidationError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// A field is invalid (answered as 422, naming the field).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("no stream named '{0}'")]
    NotFound(String),
    /// A unique value is taken: `field` is `name` (another stream has this name) or
    /// `key` (another stream has this key).
    #[error("{field} '{value}' is already used by another stream")]
    Conflict { field: &'static str, value: String },
    /// Something other than a stream does not exist (a webhook, a restream target):
    /// the text says what.
    #[error("{0}")]
    NotFoundWhat(String),
    /// A unique value other than a stream's is taken (answered as 409).
    #[error("{reason}")]
    Taken { field: &'static str, reason: String },
    /// The database cannot be opened.
    #[error(transparent)]
    Open(#[from] db::DbError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot apply the database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value that this version cannot read (e.g. renditions that are not JSON).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}
