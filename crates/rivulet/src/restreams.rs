//! Wiring of restreaming: the metadata store's targets handed to the data path's
//! forwarding, and its states handed back to the API.

use meta::MetaStore;
use meta::restream::{RestreamPhase, RestreamStates, RestreamStatus};
use restream::{Target, TargetPhase, TargetSource, TargetsFuture};

/// A stream's targets, read from the store when its publish starts.
pub(crate) struct StoreTargets(pub(crate) MetaStore);

impl TargetSource for StoreTargets {
    fn targets<'a>(&'a self, stream: &'a str) -> TargetsFuture<'a> {
        Box::pin(async move {
            match self.0.restream_urls(stream).await {
                Ok(urls) => urls
                    .into_iter()
                    .map(|(id, url, _)| Target { id, url })
                    .collect(),
                Err(e) => {
                    tracing::warn!(stream = %stream, error = %e, "cannot read the restream targets; not restreaming this publish");
                    Vec::new()
                }
            }
        })
    }
}

/// The forwarding tasks' states, as the API shows them.
pub(crate) struct States(pub(crate) restream::Restreamer);

impl RestreamStates for States {
    fn status(&self, id: i64) -> Option<RestreamStatus> {
        let status = self.0.status(id)?;
        let (state, reason) = match status.phase {
            TargetPhase::Connecting => (RestreamPhase::Connecting, None),
            TargetPhase::Live => (RestreamPhase::Live, None),
            TargetPhase::Failed(reason) => (RestreamPhase::Failed, Some(reason)),
            _ => (RestreamPhase::Idle, None),
        };
        Some(RestreamStatus {
            state,
            reason,
            bytes_sent: status.bytes_sent,
        })
    }
}

/// The top H.264 rung of a stream's ladder, followed in the origin's renditions, for
/// targets of an HEVC or AV1 publish (see [`restream::LadderSource`]).
pub(crate) struct OriginLadder(pub(crate) origin::LiveStreams);

impl restream::LadderSource for OriginLadder {
    fn follow_h264(&self, stream: &str) -> tokio::sync::mpsc::Receiver<hub::MediaEvent> {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let live = self.0.get_or_create(stream);
        tokio::spawn(origin::rung_tap::follow_top_h264(live, tx));
        rx
    }
}
