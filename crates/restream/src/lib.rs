//! Restreaming: while a stream is live, its source (the frames the publisher sends,
//! no re-encode) is forwarded to the stream's external RTMP targets.
//!
//! Not here: where the targets come from (the binary hands in a [`TargetSource`],
//! e.g. over the metadata store), HTTP, the API. This crate is on the data path and
//! knows nothing of the control plane.
//!
//! Main types and call order:
//! 1. [`Restreamer::new`]; [`Restreamer::status`] answers a target's state and bytes
//!    sent (for the API), [`run`] keeps them.
//! 2. [`run`] follows the hub's new publish sessions, asks the [`TargetSource`] for
//!    the stream's targets, and starts one task per target; it reads the live
//!    streams' targets again every few seconds, starting added ones and stopping
//!    removed ones.
//! 3. Each task connects (with backoff while the target is down), then feeds the
//!    session's frames to an [`encoder::publish::Publisher`] of one URL, which never
//!    waits for the network: a target that falls behind skips to the next keyframe,
//!    one that drops is reconnected and resumes at a keyframe. A slow or dead target
//!    therefore never slows the stream or the other targets. The task ends with the
//!    session.
//!
//! RTMP targets take H.264: for an HEVC or AV1 source the target gets the top H.264
//! rung of the stream's ladder instead (made by the transcoder already, from a
//! [`LadderSource`] the binary hands in); with no such rung (a ladder of the source
//! alone) the target is refused with the reason (state `failed`).
//!
//! Connectors: `rtmp://` through our own client (`crates/rtmp`), `rtmps://` the same
//! over TLS (the encoder's connector, trusting the web's public authorities).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use encoder::Encoded;
use encoder::publish::{PublishConfig, Publisher, UrlState};
use hub::{Hub, MediaEvent, Session, SubscriberEvent};
use rtmp::PublishUrl;
use tokio::sync::broadcast;

/// One external target of a stream.
#[derive(Clone)]
pub struct Target {
    /// Its id (the metadata store's), which states are reported under.
    pub id: i64,
    /// `rtmp://host[:port]/app/KEY`: a secret, never logged in full.
    pub url: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("id", &self.id)
            .field("url", &redact(&self.url))
            .finish()
    }
}

/// A boxed future of [`TargetSource::targets`].
pub type TargetsFuture<'a> = Pin<Box<dyn Future<Output = Vec<Target>> + Send + 'a>>;

/// Where a stream's targets come from (the binary implements it over its store).
pub trait TargetSource: Send + Sync + 'static {
    /// The targets of `stream` now.
    fn targets<'a>(&'a self, stream: &'a str) -> TargetsFuture<'a>;
}

/// Where a target stands.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetPhase {
    /// The stream is not live (or the target was not started yet).
    Idle,
    Connecting,
    /// Receiving the stream.
    Live,
    /// Down: the reason, while it is being retried.
    Failed(String),
}

/// Where a stream's H.264 comes from when its publisher sends HEVC or AV1, which RTMP
/// targets cannot take: the top H.264 rung of its ladder (the binary follows the
/// origin's renditions). Frames the transcoder made already, not a new encode.
pub trait LadderSource: Send + Sync + 'static {
    /// The tracks and frames of `stream`'s highest H.264 rendition from now on, the
    /// tracks first and the first frame a video keyframe. The channel closes without
    /// an event when the stream has no such rendition (a ladder of the source alone),
    /// and when the receiver is dropped.
    fn follow_h264(&self, stream: &str) -> tokio::sync::mpsc::Receiver<MediaEvent>;
}

/// A target's phase and the bytes sent to it in the current publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetStatus {
    pub phase: TargetPhase,
    pub bytes_sent: u64,
}

/// Settings of the forwarding tasks.
#[derive(Clone, Debug)]
pub struct RestreamConfig {
    /// Longest wait between two connection attempts.
    pub max_backoff: Duration,
    /// Time limit of one connection attempt.
    pub connect_timeout: Duration,
    /// Packets a target may fall behind before it skips to the next keyframe.
    pub queue_packets: usize,
    /// How often the live streams' targets are read again.
    pub refresh: Duration,
}

impl Default for RestreamConfig {
    fn default() -> Self {
        Self {
            max_backoff: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            queue_packets: 1024,
            refresh: Duration::from_secs(5),
        }
    }
}

/// The states of every target started by [`run`]. Cheap to clone.
#[derive(Clone, Default)]
pub struct Restreamer {
    states: Arc<Mutex<HashMap<i64, TargetStatus>>>,
}

impl Restreamer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The target's state, if it was started since this process began.
    pub fn status(&self, id: i64) -> Option<TargetStatus> {
        self.states.lock().ok()?.get(&id).cloned()
    }

    fn set(&self, id: i64, phase: TargetPhase, bytes_sent: u64) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(id, TargetStatus { phase, bytes_sent });
        }
    }
}

/// Starts forwarding every new publish session of `hub` to its stream's targets,
/// until `stop` completes. The live streams' targets are read again every
/// [`RestreamConfig::refresh`]: a target added while live starts, one removed stops.
pub async fn run(
    hub: Hub,
    source: Arc<dyn TargetSource>,
    ladder: Option<Arc<dyn LadderSource>>,
    restreamer: Restreamer,
    config: RestreamConfig,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let mut sessions = hub.announcements();
    let mut running = Running::default();
    let mut refresh = tokio::time::interval(config.refresh);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        let live: Vec<Arc<Session>> = tokio::select! {
            () = &mut stop => break,
            s = sessions.recv() => match s {
                Ok(s) => vec![s],
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "restreaming missed publish sessions; catching up");
                    live_sessions(&hub)
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            _ = refresh.tick() => live_sessions(&hub),
        };
        running.forget_ended();
        for session in live {
            let targets = source.targets(&session.info().stream).await;
            running.reconcile(&session, targets, &ladder, &restreamer, &config);
        }
    }
    running.stop_all();
}

fn live_sessions(hub: &Hub) -> Vec<Arc<Session>> {
    hub.live_streams()
        .iter()
        .filter_map(|name| hub.session(name))
        .collect()
}

/// The forwarding tasks running, by (session id, target id), each with its stop switch.
#[derive(Default)]
struct Running {
    tasks: HashMap<
        (u64, i64),
        (
            tokio::sync::watch::Sender<bool>,
            tokio::task::JoinHandle<()>,
        ),
    >,
}

impl Running {
    /// Starts the targets of `session` not running yet, and stops those no longer listed.
    fn reconcile(
        &mut self,
        session: &Arc<Session>,
        targets: Vec<Target>,
        ladder: &Option<Arc<dyn LadderSource>>,
        restreamer: &Restreamer,
        config: &RestreamConfig,
    ) {
        let sid = session.info().id;
        let listed: Vec<i64> = targets.iter().map(|t| t.id).collect();
        self.tasks.retain(|(s, id), (stop, _)| {
            let keep = *s != sid || listed.contains(id);
            if !keep {
                stop.send_replace(true);
            }
            keep
        });
        for target in targets {
            if self.tasks.contains_key(&(sid, target.id)) {
                continue;
            }
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let id = target.id;
            let task = tokio::spawn(forward(
                session.clone(),
                target,
                ladder.clone(),
                restreamer.clone(),
                config.clone(),
                stop_rx,
            ));
            self.tasks.insert((sid, id), (stop_tx, task));
        }
    }

    fn forget_ended(&mut self) {
        self.tasks.retain(|_, (_, task)| !task.is_finished());
    }

    fn stop_all(&mut self) {
        for (stop, _) in self.tasks.values() {
            stop.send_replace(true);
        }
    }
}

/// One target for one publish session.
async fn forward(
    session: Arc<Session>,
    target: Target,
    ladder: Option<Arc<dyn LadderSource>>,
    restreamer: Restreamer,
    config: RestreamConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let stream = session.info().stream.clone();
    let id = target.id;
    let url = match PublishUrl::parse(&target.url) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(stream = %stream, target = id, error = %e, "restream target refused");
            restreamer.set(id, TargetPhase::Failed(e.to_string()), 0);
            return;
        }
    };
    let publish = PublishConfig {
        connect_timeout: config.connect_timeout,
        max_backoff: config.max_backoff,
        queue_packets: config.queue_packets,
        ..PublishConfig::default()
    };
    if ladder.is_none()
        && let Some(reason) = session.tracks().as_deref().and_then(unforwardable)
    {
        refuse(&stream, id, &restreamer, reason, 0);
        return;
    }
    let mut backoff = Duration::from_millis(500);
    let publisher = loop {
        if session.is_ended() || *stop.borrow() {
            restreamer.set(id, TargetPhase::Idle, 0);
            return;
        }
        restreamer.set(id, TargetPhase::Connecting, 0);
        match Publisher::connect(vec![url.clone()], publish.clone()).await {
            Ok(p) => break p,
            Err(e) => {
                tracing::warn!(stream = %stream, target = id, error = %e, retry_in = ?backoff, "restream target unreachable");
                restreamer.set(id, TargetPhase::Failed(e.to_string()), 0);
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(config.max_backoff);
            }
        }
    };
    tracing::info!(stream = %stream, target = id, url = %url, "restreaming");
    feed(&session, publisher, id, ladder, &restreamer, &mut stop).await;
    tracing::info!(stream = %stream, target = id, "restream ended");
}

/// Where a target's media comes from: the publisher's frames, or (for an HEVC or AV1
/// source) the top H.264 rung of the ladder.
enum Feed {
    Source(hub::Subscriber),
    Ladder(tokio::sync::mpsc::Receiver<MediaEvent>),
}

impl Feed {
    /// The next tracks or frame; `None` when the feed ends.
    async fn recv(&mut self) -> Option<MediaEvent> {
        match self {
            Feed::Source(frames) => loop {
                match frames.recv().await? {
                    SubscriberEvent::Media(event) => return Some(event),
                    SubscriberEvent::Skipped { .. } => {}
                }
            },
            Feed::Ladder(events) => events.recv().await,
        }
    }
}

/// Feeds the session's frames to the publisher until the session ends.
async fn feed(
    session: &Arc<Session>,
    mut publisher: Publisher,
    id: i64,
    ladder: Option<Arc<dyn LadderSource>>,
    restreamer: &Restreamer,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) {
    let stream = session.info().stream.clone();
    let label = id.to_string();
    let Some(status) = publisher.statuses().first().cloned() else {
        return;
    };
    // Subscribed now: the first events are the current tracks and the GOP cache,
    // which start at a keyframe.
    let mut frames = Feed::Source(session.subscribe());
    let mut report = tokio::time::interval(Duration::from_millis(500));
    let mut last_bytes = 0;
    let mut refused = None;
    // The source's codec, while the ladder's H.264 is forwarded instead.
    let mut instead_of: Option<String> = None;
    let mut ladder_frames = 0_u64;
    loop {
        tokio::select! {
            event = frames.recv() => match event {
                Some(MediaEvent::Tracks(tracks)) => {
                    if let Some(reason) = unforwardable(&tracks) {
                        match (&ladder, &frames) {
                            (Some(ladder), Feed::Source(_)) => {
                                tracing::info!(stream = %stream, target = id, "the source is not H.264: forwarding the ladder's top H.264 rung");
                                instead_of = Some(reason);
                                frames = Feed::Ladder(ladder.follow_h264(&stream));
                                continue;
                            }
                            _ => {
                                refused = Some(reason);
                                break;
                            }
                        }
                    }
                    publisher.send(&Encoded::Tracks((*tracks).clone()));
                }
                Some(MediaEvent::Frame(frame)) => {
                    if instead_of.is_some() {
                        ladder_frames += 1;
                    }
                    publisher.send(&Encoded::Frame(frame));
                }
                None => {
                    if let Some(reason) = instead_of.take().filter(|_| ladder_frames == 0 && !session.is_ended()) {
                        refused = Some(format!("{reason} (and the ladder has no H.264 rendition to forward instead: add one with --renditions)"));
                    }
                    break;
                }
            },
            _ = report.tick() => {
                // The ladder's feed does not end with the publish: the session says.
                if instead_of.is_some() && session.is_ended() {
                    break;
                }
                let phase = match status.state() {
                    UrlState::Connecting => TargetPhase::Connecting,
                    UrlState::Publishing => TargetPhase::Live,
                    UrlState::Retrying { error } => TargetPhase::Failed(error),
                    UrlState::Stopped => TargetPhase::Idle,
                };
                let bytes = status.bytes_sent();
                metrics::counter!("restream_bytes_sent_total", "stream" => stream.clone(), "target" => label.clone())
                    .increment(bytes.saturating_sub(last_bytes));
                last_bytes = bytes;
                restreamer.set(id, phase, bytes);
            }
            _ = stop.changed() => break,
        }
    }
    let bytes = status.bytes_sent();
    metrics::counter!("restream_bytes_sent_total", "stream" => stream.clone(), "target" => label)
        .increment(bytes.saturating_sub(last_bytes));
    publisher.finish().await;
    match refused {
        Some(reason) => refuse(&stream, id, restreamer, reason, bytes),
        None => restreamer.set(id, TargetPhase::Idle, bytes),
    }
}

/// Why a source cannot be forwarded as it came, if it cannot. RTMP without Enhanced
/// RTMP, which most targets speak (nginx-rtmp, many services), carries H.264 video
/// only: an HEVC or AV1 source is not sent as extended FLV tags such a target would
/// take for garbage, but replaced by the ladder's H.264 (see [`LadderSource`]) or
/// refused with this reason.
fn unforwardable(tracks: &media::Tracks) -> Option<String> {
    let codec = match tracks.video.as_ref()?.codec {
        media::CodecConfig::Hevc(_) => "HEVC",
        media::CodecConfig::Av1(_) => "AV1",
        _ => return None,
    };
    Some(format!(
        "the source's video is {codec}: RTMP targets take H.264 (Enhanced RTMP is not assumed); publish H.264, or keep an H.264 rung in the ladder, to restream this stream"
    ))
}

/// Marks the target failed for this publish, with the reason, in the log and the API.
fn refuse(stream: &str, id: i64, restreamer: &Restreamer, reason: String, bytes: u64) {
    tracing::warn!(stream = %stream, target = id, reason = %reason, "restream refused");
    restreamer.set(id, TargetPhase::Failed(reason), bytes);
}

/// A target URL as logs and the API may show it: the key cut to three characters.
pub fn redact(url: &str) -> String {
    match PublishUrl::parse(url) {
        Ok(u) => u.to_string(),
        Err(_) => {
            // Not parseable: show only the scheme and host part.
            let cut = url.rfind('/').unwrap_or(url.len());
            format!("{}/…", &url[..cut])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct OneTarget(String);

    impl TargetSource for OneTarget {
        fn targets<'a>(&'a self, _stream: &'a str) -> TargetsFuture<'a> {
            Box::pin(std::future::ready(vec![Target {
                id: 7,
                url: self.0.clone(),
            }]))
        }
    }

    #[test]
    fn urls_are_shown_without_their_key() {
        assert_eq!(
            redact("rtmp://a.rtmp.youtube.com/live2/abcd-efgh"),
            "rtmp://a.rtmp.youtube.com:1935/live2/abc…"
        );
        assert!(!redact("rtmps://x/app/secret-key").contains("secret"));
    }

    #[tokio::test]
    async fn a_dead_target_fails_with_a_reason_and_goes_idle_with_the_publish() {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let hub = Hub::new();
        let restreamer = Restreamer::new();
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(run(
            hub.clone(),
            Arc::new(OneTarget(format!("rtmp://127.0.0.1:{port}/live/key-123"))),
            None,
            restreamer.clone(),
            RestreamConfig::default(),
            async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            },
        ));
        tokio::task::yield_now().await;
        let Ok(publisher) = hub.publish("show", "test") else {
            panic!("publish");
        };
        let failed = wait_for(&restreamer, |p| matches!(p, TargetPhase::Failed(_))).await;
        let TargetPhase::Failed(reason) = failed else {
            unreachable!()
        };
        assert!(reason.contains("cannot connect"), "{reason}");
        assert!(!reason.contains("key-123"), "the key is not in the reason");
        drop(publisher);
        wait_for(&restreamer, |p| *p == TargetPhase::Idle).await;
        stop_tx.send_replace(true);
        let _ = task.await;
    }

    async fn wait_for(restreamer: &Restreamer, want: impl Fn(&TargetPhase) -> bool) -> TargetPhase {
        for _ in 0..200 {
            if let Some(status) = restreamer.status(7)
                && want(&status.phase)
            {
                return status.phase;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("state never reached: {:?}", restreamer.status(7));
    }
}
