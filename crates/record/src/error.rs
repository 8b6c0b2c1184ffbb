//! The recorder's errors.

/// What went wrong reading or changing recordings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The object store refused or failed.
    #[error("recording store: {0}")]
    Store(#[from] object_store::Error),
    /// A manifest that is not the JSON the recorder writes.
    #[error("recording manifest: {0}")]
    Manifest(#[from] serde_json::Error),
    /// The store location could not be understood.
    #[error(
        "recording store {url:?}: {reason} (give a directory, file:///PATH, or s3://BUCKET[/PREFIX] with --record-s3-endpoint and AWS_* credentials)"
    )]
    BadLocation { url: String, reason: String },
}
