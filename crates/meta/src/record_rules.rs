//! Recording's rules as the metadata server holds them: which streams are recorded
//! (the stream's `record`, else the configured default) and what a recording is
//! described with. The recorder (a data-path crate this one does not depend on) asks
//! through its own trait, which the binary implements over [`RecordRules`].

use crate::webhooks::{self, SenderConfig, WebhookEvent};
use crate::{MetaStore, Stream, StreamName};

/// The metadata store's word on recording.
#[derive(Clone)]
pub struct RecordRules {
    /// `None` (a remote metadata server): every stream gets the default.
    pub store: Option<MetaStore>,
    /// Whether streams whose `record` is not set are recorded.
    pub default: bool,
    /// How `recording.ready` is sent.
    pub webhooks: SenderConfig,
}

impl RecordRules {
    /// The stream's metadata, if the store here has it.
    pub async fn stream(&self, name: &str) -> Option<Stream> {
        let store = self.store.as_ref()?;
        let name = StreamName::parse(name).ok()?;
        match store.get(&name).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(stream = %name, error = %e, "no stream metadata for the recorder");
                None
            }
        }
    }

    /// Whether `stream` is recorded: its `record`, else the default.
    pub async fn should_record(&self, stream: &str) -> bool {
        self.stream(stream)
            .await
            .and_then(|s| s.record)
            .unwrap_or(self.default)
    }

    /// Sends the `recording.ready` webhook with `payload` (where the store is here).
    pub fn recording_ready(&self, payload: serde_json::Value) {
        if let Some(store) = &self.store {
            webhooks::send_event(store, self.webhooks, WebhookEvent::RecordingReady, payload);
        }
    }
}
