//! What a node tells the metadata server about its publishes, and what it learns back:
//! live state (in this process's store or on a remote server, the same facts to
//! either), declared streams stored on a remote server, and stream titles followed for
//! the playlists. The node's media side is not known here: it passes facts in and
//! takes titles out through a callback.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::remote::{RemoteError, RemoteEvent, RemoteKeys, RemoteMeta};
use crate::{ListQuery, LiveReport, MetaError, MetaStore, StreamEvent, StreamName};

/// Tries of an offline report.
const OFFLINE_ATTEMPTS: u32 = 5;
/// How often declared streams are offered again to an unreachable metadata server.
const DECLARE_RETRY: Duration = Duration::from_secs(5);

/// Why a live-state report failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Store(#[from] MetaError),
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// Where a node reports live state: the store in this process, or a remote metadata
/// server.
#[derive(Clone)]
pub enum LiveLink {
    Local(MetaStore),
    Remote(RemoteMeta),
}

impl LiveLink {
    /// Records `name` as live with `report`'s facts.
    pub async fn set_live(&self, name: &str, report: &LiveReport) -> Result<(), LiveError> {
        match self {
            Self::Local(store) => store.set_live(name, report).await?,
            Self::Remote(remote) => remote.set_live(name, report).await?,
        }
        Ok(())
    }

    /// Records `name` as offline, if the publish that started at `since` (epoch ms)
    /// is still the live one.
    pub async fn set_offline(&self, name: &str, since: Option<i64>) -> Result<(), LiveError> {
        match self {
            Self::Local(store) => store.set_offline(name, since).await?,
            Self::Remote(remote) => remote.set_offline(name, since).await?,
        }
        Ok(())
    }

    /// [`LiveLink::set_offline`], tried a few times with backoff (a remote server may be
    /// briefly down); the node's [`LiveLink::reset_node`] at its next start clears what
    /// is still left.
    pub async fn set_offline_with_retries(&self, name: &str, since: i64) {
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=OFFLINE_ATTEMPTS {
            match self.set_offline(name, Some(since)).await {
                Ok(()) => return,
                Err(e) if attempt == OFFLINE_ATTEMPTS => {
                    tracing::warn!(stream = %name, error = %e, "cannot record the stream as offline");
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }

    /// Marks offline the streams `node` left live (it crashed, or was stopped while
    /// publishers were connected), and logs how many.
    pub async fn reset_node(&self, node: &str) {
        let reset = match self {
            Self::Local(store) => store
                .reset_node(node)
                .await
                .map(|n| u64::try_from(n).unwrap_or(u64::MAX))
                .map_err(LiveError::from),
            Self::Remote(remote) => remote.reset_node(node).await.map_err(LiveError::from),
        };
        match reset {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                streams = n,
                "marked offline the streams this node had left live"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot mark this node's streams offline"),
        }
    }
}

/// Stores the declared streams (name, key) on the remote metadata server, and
/// remembers their keys as last known good. If the server cannot be reached now, this
/// keeps trying in the background; a refusal (a key another stream has, a bad token)
/// is returned with the stream it concerns.
pub async fn declare_remote(
    keys: &RemoteKeys,
    streams: &[(StreamName, String)],
) -> Result<(), (StreamName, RemoteError)> {
    let mut pending = Vec::new();
    for (name, key) in streams {
        keys.seed(key, name.as_str());
        match keys.remote().declare(name, key).await {
            Ok(true) => {
                tracing::info!(stream = %name, meta = %keys.remote().url(), "declared stream stored on the metadata server (its key is the one given)");
            }
            Ok(false) => {}
            Err(e) if e.is_unavailable() => pending.push((name.clone(), key.clone())),
            Err(e) => return Err((name.clone(), e)),
        }
    }
    if !pending.is_empty() {
        tracing::warn!(
            meta = %keys.remote().url(),
            streams = pending.len(),
            "metadata server unreachable: the declared streams will be stored there when it answers (their keys work here meanwhile)"
        );
        tokio::spawn(redeclare(keys.remote().clone(), pending));
    }
    Ok(())
}

/// Offers `pending` declarations again until the server has taken or refused each.
async fn redeclare(remote: RemoteMeta, mut pending: Vec<(StreamName, String)>) {
    while !pending.is_empty() {
        tokio::time::sleep(DECLARE_RETRY).await;
        let mut left = Vec::new();
        for (name, key) in pending {
            match remote.declare(&name, &key).await {
                Ok(_) => {
                    tracing::info!(stream = %name, "declared stream stored on the metadata server")
                }
                Err(e) if e.is_unavailable() => left.push((name, key)),
                Err(e) => {
                    tracing::error!(stream = %name, error = %e, "the metadata server refused a declared stream")
                }
            }
        }
        pending = left;
    }
}

/// What the origin needs to know of a stream to serve it: its title (for the
/// playlists) and whether playback needs a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaybackSettings<'a> {
    pub title: &'a str,
    pub private: bool,
}

/// Where followed settings go: `(stream, Some(settings))`, or `(stream, None)` when
/// the stream was deleted.
pub type TitleSink = Arc<dyn Fn(&str, Option<PlaybackSettings<'_>>) + Send + Sync>;

/// Keeps `sink` told of every stream's title and privacy in the store until `stop`:
/// all of them first, then every change (all again if changes were missed).
pub async fn sync_titles(store: MetaStore, sink: TitleSink, stop: impl Future<Output = ()>) {
    // Each change is applied before the API call that made it answers…
    let sink = Arc::new(Versioned {
        sink,
        applied: std::sync::Mutex::default(),
    });
    let observer = sink.clone();
    store.observe(Arc::new(move |event| observer.apply_event(event)));
    // …and again here, after the first load, so that a load that read a row before a
    // change cannot leave the older settings in place; the versions keep a replayed
    // change from undoing a newer one. Subscribed before that load, so that no change
    // falls between the two.
    let mut changes = store.subscribe();
    let mut reload = true;
    tokio::pin!(stop);
    loop {
        if reload {
            reload = false;
            if let Err(e) = load_titles(&store, &sink).await {
                tracing::warn!(error = %e, "cannot load stream titles for the playlists");
            }
        }
        tokio::select! {
            () = &mut stop => break,
            change = changes.recv() => match change {
                Ok(event) => sink.apply_event(&event),
                Err(broadcast::error::RecvError::Lagged(_)) => reload = true,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// A sink that takes each stream's settings only if newer than what it took last (the
/// stream's `version`), whether they come from the store's observer, its event channel
/// or a load.
struct Versioned {
    sink: TitleSink,
    applied: std::sync::Mutex<std::collections::HashMap<String, i64>>,
}

impl Versioned {
    fn apply(&self, stream: &str, version: i64, settings: PlaybackSettings<'_>) {
        let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
        if applied.get(stream).is_some_and(|&v| v > version) {
            return;
        }
        applied.insert(stream.to_owned(), version);
        (self.sink)(stream, Some(settings));
    }

    /// Passes a change of a stream's title or privacy, or its deletion, on.
    fn apply_event(&self, event: &StreamEvent) {
        match event {
            StreamEvent::Metadata {
                stream,
                version,
                title,
                private,
                ..
            } => self.apply(
                stream,
                *version,
                PlaybackSettings {
                    title,
                    private: *private,
                },
            ),
            StreamEvent::Deleted { stream } => {
                // A stream made again under the name numbers its versions from 1.
                let mut applied = self.applied.lock().unwrap_or_else(|e| e.into_inner());
                applied.remove(stream.as_str());
                (self.sink)(stream, None);
            }
            StreamEvent::Live { .. } | StreamEvent::Offline { .. } => {}
        }
    }
}

async fn load_titles(store: &MetaStore, sink: &Versioned) -> Result<(), MetaError> {
    let mut query = ListQuery {
        limit: crate::MAX_PAGE,
        ..ListQuery::default()
    };
    loop {
        let page = store.list(&query).await?;
        for s in &page.streams {
            sink.apply(
                &s.name,
                s.version,
                PlaybackSettings {
                    title: &s.title,
                    private: s.private,
                },
            );
        }
        match page.next_cursor {
            Some(cursor) => query.after = Some(StreamName::parse(&cursor)?),
            None => return Ok(()),
        }
    }
}

/// Keeps `sink` told of `stream`'s title and privacy on the remote metadata server, from the
/// stream's event stream, reconnecting after errors with backoff, until aborted.
pub async fn follow_remote_title(remote: RemoteMeta, stream: String, sink: TitleSink) {
    let mut delay = Duration::from_secs(1);
    let mut warned = false;
    loop {
        match remote.events(&stream).await {
            Ok(mut events) => loop {
                match events.next().await {
                    Ok(Some(RemoteEvent::Snapshot(s))) => {
                        delay = Duration::from_secs(1);
                        sink(
                            &stream,
                            Some(PlaybackSettings {
                                title: &s.title,
                                private: s.private,
                            }),
                        );
                    }
                    Ok(Some(RemoteEvent::Change(StreamEvent::Metadata {
                        title, private, ..
                    }))) => {
                        sink(
                            &stream,
                            Some(PlaybackSettings {
                                title: &title,
                                private,
                            }),
                        );
                    }
                    Ok(Some(RemoteEvent::Change(StreamEvent::Deleted { .. }))) => {
                        sink(&stream, None);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(stream = %stream, error = %e, "the title's event stream broke off");
                        break;
                    }
                }
            },
            Err(e) => {
                if !warned {
                    tracing::warn!(stream = %stream, error = %e, "cannot follow the stream's title on the metadata server; retrying");
                    warned = true;
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// One publish's live state in the metadata server, from its start to its end: the
/// node reports it live, refreshes its facts, and reports it offline. With a remote
/// server, the stream's title follows the server's events meanwhile.
pub struct LivePublish {
    link: LiveLink,
    stream: String,
    report: LiveReport,
    titles: Option<tokio::task::JoinHandle<()>>,
}

impl LivePublish {
    /// Reports `stream` live since `since_ms` on `node`; with a remote server, its title
    /// goes to `titles` as it changes there.
    pub async fn start(
        link: &LiveLink,
        stream: &str,
        since_ms: i64,
        node: &str,
        titles: TitleSink,
    ) -> LivePublish {
        let report = LiveReport {
            since: since_ms,
            ingest_node: Some(node.to_owned()),
            ..Default::default()
        };
        if let Err(e) = link.set_live(stream, &report).await {
            tracing::warn!(stream = %stream, error = %e, "cannot record the stream as live");
        }
        let titles = match link {
            LiveLink::Remote(remote) => Some(tokio::spawn(follow_remote_title(
                remote.clone(),
                stream.to_owned(),
                titles,
            ))),
            LiveLink::Local(_) => None,
        };
        LivePublish {
            link: link.clone(),
            stream: stream.to_owned(),
            report,
            titles,
        }
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Reports the publish's current facts: the publisher's bitrate, the renditions
    /// being produced (none: not reported) and its connection statistics.
    pub async fn refresh(
        &mut self,
        ingest_bitrate: Option<u64>,
        renditions: &[String],
        ingest_stats: Option<serde_json::Value>,
    ) {
        let report = &mut self.report;
        report.ingest_bitrate = ingest_bitrate.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        report.renditions = (!renditions.is_empty()).then(|| serde_json::json!(renditions));
        report.ingest_stats = ingest_stats;
        if let Err(e) = self.link.set_live(&self.stream, report).await {
            tracing::warn!(stream = %self.stream, error = %e, "cannot update the stream's live state");
        }
    }

    /// Reports the publish offline (retrying), and stops following its title.
    pub async fn end(self) {
        if let Some(titles) = self.titles {
            titles.abort();
        }
        // Conditional on `since`: if a new publish already started, it stays live.
        self.link
            .set_offline_with_retries(&self.stream, self.report.since)
            .await;
    }
}

/// A name for this node in the streams' live state: host name and RTMP port.
pub fn node_name(rtmp_port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rivulet".into());
    format!("{host}:{rtmp_port}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn metadata(stream: &str, version: i64, private: bool) -> StreamEvent {
        StreamEvent::Metadata {
            stream: stream.to_owned(),
            version,
            title: format!("v{version}"),
            description: String::new(),
            tags: Vec::new(),
            private,
            updated_at: 0,
        }
    }

    #[test]
    fn a_replayed_change_never_undoes_a_newer_one() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let sink = Versioned {
            sink: Arc::new(move |stream, settings| {
                record.lock().unwrap().push((
                    stream.to_owned(),
                    settings.map(|s| (s.title.to_owned(), s.private)),
                ));
            }),
            applied: std::sync::Mutex::default(),
        };
        // The observer applies v2 (private) then v3 (public); the channel replays v2.
        sink.apply_event(&metadata("cam", 2, true));
        sink.apply_event(&metadata("cam", 3, false));
        sink.apply_event(&metadata("cam", 2, true));
        // A deleted stream made again numbers from 1.
        sink.apply_event(&StreamEvent::Deleted {
            stream: "cam".to_owned(),
        });
        sink.apply_event(&metadata("cam", 1, true));
        let seen = seen.lock().unwrap();
        let expected = vec![
            ("cam".to_owned(), Some(("v2".to_owned(), true))),
            ("cam".to_owned(), Some(("v3".to_owned(), false))),
            ("cam".to_owned(), None),
            ("cam".to_owned(), Some(("v1".to_owned(), true))),
        ];
        assert_eq!(*seen, expected);
    }
}
