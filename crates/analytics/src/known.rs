//! Which streams exist, as far as analytics can tell without asking the data path.
//!
//! Beacons come from anyone: a stream name in one is only believed if the stream is
//! *known*, so that made-up names cannot grow the sessions, the rollups and the
//! per-stream gauges without bound. A stream is known when
//! - the [`StreamDirectory`] the caller wired (the metadata server's streams) lists it
//!   ([`KnownStreams::set_declared`], refreshed by the service every few seconds), or
//! - an origin or edge reported serving it successfully (status below 400) within the
//!   session memory ([`KnownStreams::handle_served`]). Delivery events come from the
//!   in-process emitter or carry the events token, and an origin answers 2xx/3xx only
//!   for streams it has: this covers `rivulet analytics` on a database of its own.
//!
//! Sans-IO: times are arguments (ms since the epoch).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

/// Where analytics learns which streams exist: the metadata server's streams, handed
/// in by the binary (`AnalyticsConfig::directory`), so that analytics needs neither
/// the metadata server's crate nor its tables.
pub trait StreamDirectory: Send + Sync + fmt::Debug {
    /// The names of the streams, at most `limit`.
    fn stream_names(&self, limit: u32) -> BoxFuture<'_, Result<Vec<String>, DirectoryError>>;
}

/// Why a [`StreamDirectory`] could not answer (logged; the previous list stays).
pub type DirectoryError = Box<dyn std::error::Error + Send + Sync>;

/// The set of streams beacons and error deliveries may be about.
#[derive(Debug, Default)]
pub(crate) struct KnownStreams {
    declared: HashSet<Arc<str>>,
    /// Stream → last time a server reported serving it.
    served: HashMap<Arc<str>, i64>,
}

impl KnownStreams {
    pub(crate) fn is_known(&self, stream: &str) -> bool {
        self.declared.contains(stream) || self.served.contains_key(stream)
    }

    /// A server answered a request for `stream` with a success at `ts`.
    pub(crate) fn handle_served(&mut self, stream: &str, ts: i64) {
        match self.served.get_mut(stream) {
            Some(last) => *last = (*last).max(ts),
            None => {
                self.served.insert(Arc::from(stream), ts);
            }
        }
    }

    /// The streams of the metadata database, replacing the previous list.
    pub(crate) fn set_declared(&mut self, names: impl IntoIterator<Item = String>) {
        self.declared = names.into_iter().map(Arc::from).collect();
    }

    /// Forgets streams not served since `horizon`.
    pub(crate) fn prune(&mut self, horizon: i64) {
        self.served.retain(|_, last| *last >= horizon);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_or_recently_served() {
        let mut k = KnownStreams::default();
        assert!(!k.is_known("cam"));
        k.set_declared(["cam".to_owned()]);
        assert!(k.is_known("cam"));
        k.handle_served("edge-only", 1_000);
        assert!(k.is_known("edge-only"));
        k.prune(2_000);
        assert!(!k.is_known("edge-only"));
        k.set_declared(Vec::new());
        assert!(!k.is_known("cam"));
    }
}
