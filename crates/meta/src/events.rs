//! Changes to streams, as pushed to SSE clients.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::LiveState;

/// One change to one stream. Every change carries the stream's new `version`: a
/// client that already shows a higher version ignores it (events of two writers may
/// be delivered in the other order than they were committed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum StreamEvent {
    /// The title, description, tags or privacy changed (all are sent).
    Metadata {
        stream: String,
        version: i64,
        title: String,
        description: String,
        tags: Vec<String>,
        /// Whether playback needs a signed token.
        #[serde(default)]
        private: bool,
        updated_at: i64,
    },
    /// A publish started (or its facts changed).
    Live {
        stream: String,
        version: i64,
        live: LiveState,
    },
    /// The publisher left.
    Offline { stream: String, version: i64 },
    /// The stream was deleted; no event follows.
    Deleted { stream: String },
}

impl StreamEvent {
    /// The stream the event is about.
    pub fn stream(&self) -> &str {
        match self {
            Self::Metadata { stream, .. }
            | Self::Live { stream, .. }
            | Self::Offline { stream, .. }
            | Self::Deleted { stream } => stream,
        }
    }

    /// The stream's version after the change (`None` for a deletion).
    pub fn version(&self) -> Option<i64> {
        match self {
            Self::Metadata { version, .. }
            | Self::Live { version, .. }
            | Self::Offline { version, .. } => Some(*version),
            Self::Deleted { .. } => None,
        }
    }

    /// The SSE event name: `metadata`, `live`, `offline` or `deleted`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Metadata { .. } => "metadata",
            Self::Live { .. } => "live",
            Self::Offline { .. } => "offline",
            Self::Deleted { .. } => "deleted",
        }
    }
}
