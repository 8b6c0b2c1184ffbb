//! The in-process hub: one broadcast per live stream.
//!
//! Ingest calls [`Hub::publish`] and gets a [`Publisher`]; everything downstream
//! (packager, transcoder, thumbnails) subscribes. A stream name has at most one
//! publish [`Session`] at a time. Each session is a broadcast of [`MediaEvent`]s:
//!
//! - a late subscriber starts with the current [`Tracks`] and the frames since the last
//!   video keyframe (the GOP cache), so its first video frame is decodable;
//! - a subscriber that falls more than the channel capacity behind is told how many
//!   events it missed and skips to the next video keyframe: a slow consumer never
//!   blocks the publisher;
//! - when the publisher is dropped, subscribers drain what is left and then see the end.
//!
//! Call order: [`Hub::publish`] → [`Publisher::send_tracks`] → [`Publisher::send_frame`]…
//! → drop. On the other side: [`Hub::announcements`] or [`Hub::watch_stream`] to learn
//! of sessions, [`Session::subscribe`], then [`Subscriber::recv`] until `None`.

mod meter;
mod rendition;

pub use meter::BitrateMeter;
pub use rendition::{
    AnnouncedRendition, DeclaredRate, IdrRequests, InputSignal, Passthrough, PassthroughInput,
    RenditionInput, RenditionOutput, RenditionPipeline, RenditionUpdate, Renditions,
    SOURCE_RENDITION,
};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use media::{Frame, TrackKind, Tracks};
use tokio::sync::{broadcast, watch};

/// Events per session buffered for subscribers before the slowest one starts losing them:
/// about 8 s of 30 fps video plus 48 kHz AAC.
const SESSION_CAPACITY: usize = 512;
/// Announcements of new sessions buffered for slow listeners.
const ANNOUNCEMENT_CAPACITY: usize = 64;

/// What a publish session carries.
#[derive(Clone, Debug)]
pub enum MediaEvent {
    /// The tracks of the frames that follow. Sent first, and again whenever the
    /// publisher changes its sequence headers.
    Tracks(Arc<Tracks>),
    /// One coded frame of a track announced by the last `Tracks`.
    Frame(Frame),
}

/// What a subscriber receives.
#[derive(Clone, Debug)]
pub enum SubscriberEvent {
    Media(MediaEvent),
    /// The subscriber fell behind and `missed` events were dropped for it; the next
    /// video frame it receives is a keyframe.
    Skipped {
        missed: u64,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubError {
    /// Another publisher is live on this stream name.
    #[error("stream '{0}' already has a live publisher")]
    AlreadyPublishing(String),
}

/// Facts about one publish session.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    pub stream: String,
    /// Unique within this process, increasing.
    pub id: u64,
    pub started_at: SystemTime,
    /// Who is publishing (a socket address, for logs and the status API).
    pub peer: String,
}

/// The registry of live streams. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    streams: Mutex<HashMap<String, watch::Sender<Option<Arc<Session>>>>>,
    announcements: broadcast::Sender<Arc<Session>>,
    next_session_id: AtomicU64,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(HubInner {
                streams: Mutex::new(HashMap::new()),
                announcements: broadcast::channel(ANNOUNCEMENT_CAPACITY).0,
                next_session_id: AtomicU64::new(1),
            }),
        }
    }

    /// Starts a publish session on `stream`. Fails if one is already live.
    pub fn publish(&self, stream: &str, peer: impl Into<String>) -> Result<Publisher, HubError> {
        let mut streams = lock(&self.inner.streams);
        let slot = streams
            .entry(stream.to_owned())
            .or_insert_with(|| watch::channel(None).0);
        if slot.borrow().is_some() {
            return Err(HubError::AlreadyPublishing(stream.to_owned()));
        }
        let session = Arc::new(Session {
            info: SessionInfo {
                stream: stream.to_owned(),
                id: self.inner.next_session_id.fetch_add(1, Ordering::Relaxed),
                started_at: SystemTime::now(),
                peer: peer.into(),
            },
            state: Mutex::new(SessionState {
                tx: Some(broadcast::channel(SESSION_CAPACITY).0),
                tracks: None,
                gop: Vec::new(),
            }),
            media_bytes: AtomicU64::new(0),
        });
        slot.send_replace(Some(session.clone()));
        drop(streams);
        // Nobody listening is fine: the session is also visible through `watch_stream`.
        let _ = self.inner.announcements.send(session.clone());
        tracing::debug!(stream, session = session.info.id, "publish session started");
        Ok(Publisher {
            hub: self.clone(),
            session,
        })
    }

    /// The live session of `stream`, if any.
    pub fn session(&self, stream: &str) -> Option<Arc<Session>> {
        lock(&self.inner.streams)
            .get(stream)
            .and_then(|s| s.borrow().clone())
    }

    /// Names of the streams with a live publisher, sorted.
    pub fn live_streams(&self) -> Vec<String> {
        let streams = lock(&self.inner.streams);
        let mut names: Vec<_> = streams
            .iter()
            .filter(|(_, s)| s.borrow().is_some())
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Follows the sessions of one stream: the value is the live session or `None`.
    pub fn watch_stream(&self, stream: &str) -> watch::Receiver<Option<Arc<Session>>> {
        lock(&self.inner.streams)
            .entry(stream.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    /// Every session started from now on, on any stream.
    pub fn announcements(&self) -> broadcast::Receiver<Arc<Session>> {
        self.inner.announcements.subscribe()
    }

    fn end(&self, session: &Arc<Session>) {
        let streams = lock(&self.inner.streams);
        if let Some(slot) = streams.get(&session.info.stream) {
            slot.send_if_modified(|current| match current {
                Some(live) if Arc::ptr_eq(live, session) => {
                    *current = None;
                    true
                }
                _ => false,
            });
        }
    }
}

/// One publish session: a broadcast of media events with a GOP cache for late joiners.
pub struct Session {
    info: SessionInfo,
    state: Mutex<SessionState>,
    /// Bytes of coded media published so far (for the ingest bitrate, see
    /// [`BitrateMeter`]); counted without a subscriber.
    media_bytes: AtomicU64,
}

struct SessionState {
    /// `None` once the publisher has gone: dropping the sender lets subscribers drain and end.
    tx: Option<broadcast::Sender<MediaEvent>>,
    tracks: Option<Arc<Tracks>>,
    /// Frames since (and including) the last video keyframe; all frames if there is
    /// no video track. Bounded: a source without keyframes must not grow it forever.
    gop: Vec<Frame>,
}

/// Frames kept for late joiners at most (a 10 s GOP at 60 fps with audio).
const GOP_CACHE_LIMIT: usize = 1_500;

impl Session {
    pub fn info(&self) -> &SessionInfo {
        &self.info
    }

    /// Whether the publisher has gone.
    pub fn is_ended(&self) -> bool {
        lock(&self.state).tx.is_none()
    }

    /// Bytes of coded media (frame payloads) published in this session so far.
    pub fn media_bytes(&self) -> u64 {
        self.media_bytes.load(Ordering::Relaxed)
    }

    /// The tracks last announced, if any.
    pub fn tracks(&self) -> Option<Arc<Tracks>> {
        lock(&self.state).tracks.clone()
    }

    /// Subscribes from the current keyframe on.
    pub fn subscribe(&self) -> Subscriber {
        // Under the state lock, so that no event is both in the snapshot and in `rx`.
        let state = lock(&self.state);
        let mut backlog = Vec::with_capacity(state.gop.len() + 1);
        if let Some(tracks) = &state.tracks {
            backlog.push(MediaEvent::Tracks(tracks.clone()));
        }
        backlog.extend(state.gop.iter().cloned().map(MediaEvent::Frame));
        let rx = state.tx.as_ref().map(broadcast::Sender::subscribe);
        backlog.reverse();
        Subscriber {
            backlog,
            rx,
            skipping: false,
            has_video: state.tracks.as_ref().is_some_and(|t| t.video.is_some()),
        }
    }
}

/// The publishing side of a session. Dropping it ends the session.
pub struct Publisher {
    hub: Hub,
    session: Arc<Session>,
}

impl Publisher {
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Announces the tracks of the frames that follow.
    pub fn send_tracks(&self, tracks: Tracks) {
        let tracks = Arc::new(tracks);
        let mut state = lock(&self.session.state);
        state.tracks = Some(tracks.clone());
        state.gop.clear();
        if let Some(tx) = &state.tx {
            let _ = tx.send(MediaEvent::Tracks(tracks));
        }
    }

    /// Sends one frame to every subscriber. Never waits.
    pub fn send_frame(&self, frame: Frame) {
        self.session.media_bytes.fetch_add(
            u64::try_from(frame.data.len()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let mut state = lock(&self.session.state);
        let has_video = state.tracks.as_ref().is_some_and(|t| t.video.is_some());
        if frame.kind == TrackKind::Video && frame.keyframe {
            state.gop.clear();
        }
        let cacheable =
            !has_video || frame.kind == TrackKind::Audio || !state.gop.is_empty() || frame.keyframe;
        if cacheable {
            if state.gop.len() >= GOP_CACHE_LIMIT {
                state.gop.clear();
            }
            state.gop.push(frame.clone());
        }
        if let Some(tx) = &state.tx {
            // An error only means there are no subscribers right now.
            let _ = tx.send(MediaEvent::Frame(frame));
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        lock(&self.session.state).tx = None;
        self.hub.end(&self.session);
        tracing::debug!(stream = %self.session.info.stream, session = self.session.info.id, "publish session ended");
    }
}

/// The receiving side of a session.
pub struct Subscriber {
    /// Events from the GOP cache, in reverse order (popped from the end).
    backlog: Vec<MediaEvent>,
    rx: Option<broadcast::Receiver<MediaEvent>>,
    /// After a lag: drop video frames until the next keyframe.
    skipping: bool,
    has_video: bool,
}

impl Subscriber {
    /// The next event, or `None` once the publisher has gone and everything was delivered.
    pub async fn recv(&mut self) -> Option<SubscriberEvent> {
        if let Some(event) = self.backlog.pop() {
            return Some(SubscriberEvent::Media(event));
        }
        loop {
            let rx = self.rx.as_mut()?;
            match rx.recv().await {
                Ok(MediaEvent::Tracks(tracks)) => {
                    self.has_video = tracks.video.is_some();
                    return Some(SubscriberEvent::Media(MediaEvent::Tracks(tracks)));
                }
                Ok(MediaEvent::Frame(frame)) => {
                    if self.skipping && self.has_video {
                        if frame.kind != TrackKind::Video || !frame.keyframe {
                            continue;
                        }
                        self.skipping = false;
                    }
                    return Some(SubscriberEvent::Media(MediaEvent::Frame(frame)));
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.skipping = true;
                    return Some(SubscriberEvent::Skipped { missed });
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.rx = None;
                    return None;
                }
            }
        }
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every
/// critical section here leaves the state consistent between statements.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
