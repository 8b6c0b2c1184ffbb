//! Following this node's publish sessions for whoever keeps their live state (the
//! metadata server, wired by the binary through [`LiveStateSink`]): a session is
//! reported when it starts, its facts (ingest bitrate, renditions) a while after its
//! media starts to flow and then every [`REPORT_INTERVAL`], and its end when the
//! publisher leaves.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use hub::{BitrateMeter, Hub, Session};
use tokio::sync::broadcast;

use crate::LiveStreams;

/// When a publish's facts are first reported, after its media starts to flow.
pub const FIRST_REPORT: Duration = Duration::from_secs(2);
/// How often they are reported after that.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What is known of a publish when it is reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishFacts {
    /// When the publish started, ms since the Unix epoch: it names the publish.
    pub since_ms: i64,
    /// Bits per second of media taken in, over the last interval.
    pub ingest_bitrate: Option<u64>,
    /// The stream's renditions (empty before its first frames are packaged).
    pub renditions: Vec<String>,
}

/// Where live state goes. One [`LiveStateSink::started`] per publish session, then
/// [`PublishReport::refresh`] while it lasts, then [`PublishReport::ended`].
pub trait LiveStateSink: Send + Sync + 'static {
    type Report: PublishReport;
    /// A publish session of `stream` started (facts: only `since_ms`).
    fn started(
        &self,
        stream: &str,
        facts: &PublishFacts,
    ) -> impl Future<Output = Self::Report> + Send;
}

/// The live state of one publish session.
pub trait PublishReport: Send + 'static {
    /// The publish's facts, refreshed.
    fn refresh(&mut self, facts: &PublishFacts) -> impl Future<Output = ()> + Send;
    /// The publisher left.
    fn ended(self) -> impl Future<Output = ()> + Send;
}

/// Reports publish sessions on the hub to `sink` until `stop`. Takes the hub's
/// announcements already subscribed, so that the caller can make sure no session
/// starts unseen before this task runs.
pub async fn track_live<S: LiveStateSink>(
    hub: Hub,
    mut announcements: broadcast::Receiver<Arc<Session>>,
    sink: Arc<S>,
    streams: LiveStreams,
    stop: impl Future<Output = ()>,
) {
    let follow = |session: Arc<Session>| {
        tokio::spawn(follow_session(sink.clone(), streams.clone(), session));
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            announced = announcements.recv() => match announced {
                Ok(session) => follow(session),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Some starts were missed: follow every live session again (a
                    // second report of the same publish changes nothing but the version).
                    for name in hub.live_streams() {
                        if let Some(session) = hub.session(&name) {
                            follow(session);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// Reports the session started, refreshes its facts while it lasts, reports its end
/// when the publisher leaves.
async fn follow_session<S: LiveStateSink>(
    sink: Arc<S>,
    streams: LiveStreams,
    session: Arc<Session>,
) {
    let info = session.info().clone();
    let mut media = session.subscribe();
    let mut facts = PublishFacts {
        since_ms: info
            .started_at
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0),
        ..Default::default()
    };
    let mut report = sink.started(&info.stream, &facts).await;
    // Facts are first reported a while after media starts to flow (the ingest may
    // hold the first frames back until it knows the tracks), then every interval.
    let mut meter: Option<BitrateMeter> = None;
    let mut next_report: Option<tokio::time::Instant> = None;
    loop {
        let report_due = async {
            match next_report {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = media.recv() => match event {
                Some(_) if next_report.is_none() => {
                    meter = Some(BitrateMeter::new(Instant::now(), session.media_bytes()));
                    next_report = Some(tokio::time::Instant::now() + FIRST_REPORT);
                }
                Some(_) => {}
                // The publisher left.
                None => break,
            },
            () = report_due => {
                facts.ingest_bitrate = meter
                    .as_mut()
                    .and_then(|m| m.poll_bitrate(Instant::now(), session.media_bytes()));
                facts.renditions = streams
                    .get(&info.stream)
                    .map(|s| s.rendition_names())
                    .unwrap_or_default();
                report.refresh(&facts).await;
                next_report = Some(tokio::time::Instant::now() + REPORT_INTERVAL);
            }
        }
    }
    report.ended().await;
}
