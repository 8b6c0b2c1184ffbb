//! Recording's options: the config file's `[record]` table as the binary's flags give
//! it too, merged (`or`) and checked (`resolve`) into [`RecordSettings`], which open
//! the recorder and run its retention.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::{RecordError, RecordPolicy, Recorder, RecorderConfig, RetentionPolicy};

/// How often retention runs.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// The `[record]` table (the flags' names without `--record-`, and `dvr_window`);
/// `None`: not given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordOptions {
    pub default: Option<bool>,
    pub store: Option<String>,
    pub s3_endpoint: Option<String>,
    pub queue_segments: Option<usize>,
    pub retention_days: Option<f64>,
    pub retention_bytes: Option<u64>,
    pub dvr_window: Option<u64>,
}

/// Recording, resolved.
#[derive(Debug, Clone)]
pub struct RecordSettings {
    /// Whether streams that do not say are recorded.
    pub default: bool,
    /// `None`: DATA_DIR/recordings.
    pub store: Option<String>,
    pub s3_endpoint: Option<String>,
    pub recorder: RecorderConfig,
    pub retention: RetentionPolicy,
}

/// A recording option set to what cannot work, or a store that cannot be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordOptionsError {
    #[error("--record-queue-segments must be at least 1")]
    QueueSegments,
    #[error("--record-retention-days must be a positive number of days")]
    RetentionDays,
    #[error("check --record-store (RIVULET_RECORD_STORE, [record] store)")]
    Store(#[source] RecordError),
    #[error("cannot read the recordings in {location}")]
    Catalog {
        location: String,
        #[source]
        source: RecordError,
    },
}

impl RecordOptions {
    /// Each option of `self`, else `other`'s (flags over the file).
    pub fn or(self, other: &RecordOptions) -> RecordOptions {
        RecordOptions {
            default: self.default.or(other.default),
            store: self.store.or(other.store.clone()),
            s3_endpoint: self.s3_endpoint.or(other.s3_endpoint.clone()),
            queue_segments: self.queue_segments.or(other.queue_segments),
            retention_days: self.retention_days.or(other.retention_days),
            retention_bytes: self.retention_bytes.or(other.retention_bytes),
            dvr_window: self.dvr_window.or(other.dvr_window),
        }
    }

    /// The settings: the defaults where nothing is given, checked.
    pub fn resolve(&self) -> Result<RecordSettings, RecordOptionsError> {
        let defaults = RecorderConfig::default();
        let queue = self.queue_segments.unwrap_or(defaults.queue_segments);
        if queue == 0 {
            return Err(RecordOptionsError::QueueSegments);
        }
        let max_age = match self.retention_days {
            Some(d) if !(d.is_finite() && d > 0.0) => {
                return Err(RecordOptionsError::RetentionDays);
            }
            Some(d) => Some(Duration::from_secs_f64(d * 86_400.0)),
            None => None,
        };
        Ok(RecordSettings {
            default: self.default.unwrap_or(false),
            store: self.store.clone(),
            s3_endpoint: self.s3_endpoint.clone(),
            recorder: RecorderConfig {
                queue_segments: queue,
                dvr_window: self
                    .dvr_window
                    .map_or(defaults.dvr_window, Duration::from_secs),
                ..defaults
            },
            retention: RetentionPolicy {
                max_age,
                max_bytes_per_stream: self.retention_bytes,
            },
        })
    }
}

impl RecordSettings {
    /// Opens the store (DATA_DIR/recordings unless one is set) and the recorder, its
    /// catalog read from the store.
    pub async fn open(
        &self,
        data_dir: &Path,
        policy: Arc<dyn RecordPolicy>,
    ) -> Result<Recorder, RecordOptionsError> {
        let location = self
            .store
            .clone()
            .unwrap_or_else(|| data_dir.join("recordings").to_string_lossy().into_owned());
        let objects = crate::open_store(&location, self.s3_endpoint.as_deref())
            .map_err(RecordOptionsError::Store)?;
        Recorder::open(objects, policy, self.recorder.clone())
            .await
            .map_err(|source| RecordOptionsError::Catalog { location, source })
    }

    /// Runs retention in the background until `stop`.
    pub fn spawn_retention(
        &self,
        recorder: &Recorder,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(
            recorder
                .clone()
                .run_retention(self.retention, RETENTION_INTERVAL, stop),
        )
    }
}
