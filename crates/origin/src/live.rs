//! The registry of packaged streams and the state each one is in.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use hub::{AnnouncedRendition, DeclaredRate, IdrRequests};
use media::{Frame, Tracks};
use package::{
    PackageEvent, PackagerConfig, RenditionPackager, SegmentSink, StreamNumbering, VariantInfo,
};
use tokio::sync::{broadcast, watch};

use crate::health::{HealthConfig, InputHealth, InputState};
use crate::numbering::NumberingStore;

/// Settings of the origin and its feed.
#[derive(Clone, Debug)]
pub struct OriginConfig {
    pub packager: PackagerConfig,
    /// How long a stream stays live after its publisher leaves, waiting for it to return.
    pub grace_period: Duration,
    /// How long the ended playlist (with `EXT-X-ENDLIST`) is still served before the
    /// stream answers 404 "offline".
    pub ended_linger: Duration,
    /// When the input counts as stalled or black.
    pub health: HealthConfig,
    /// Bounds on requests held waiting (blocking reloads, the next part), per stream
    /// and per client address.
    pub held: httpd::HeldLimits,
    /// The keys that check the playback tokens of private streams ([`LiveStreams::set_private`]).
    /// Without any, a private stream refuses every viewer.
    pub playback_keys: access::playback::PlaybackKeys,
}

impl Default for OriginConfig {
    fn default() -> Self {
        Self {
            packager: PackagerConfig::default(),
            grace_period: Duration::from_secs(10),
            ended_linger: Duration::from_secs(30),
            health: HealthConfig::default(),
            held: httpd::HeldLimits::default(),
            playback_keys: access::playback::PlaybackKeys::default(),
        }
    }
}

/// Where a stream is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamPhase {
    /// A publisher is live.
    Live,
    /// The publisher left; the playlist stays live for the grace period.
    Grace,
    /// The grace period passed: the playlist carries `EXT-X-ENDLIST`.
    Ended,
    /// Ended long enough ago that playlists answer 404.
    Offline,
}

/// All streams that have been published on this origin.
#[derive(Clone)]
pub struct LiveStreams {
    streams: Arc<RwLock<HashMap<String, Arc<LiveStream>>>>,
    /// Stream titles, from the metadata server, for `EXT-X-SESSION-DATA`. Kept apart
    /// from `streams` because a stream has a title before it is ever published.
    titles: Arc<RwLock<HashMap<String, String>>>,
    /// The streams that need a playback token, from the metadata server; like titles,
    /// known before a stream is published.
    private: Arc<RwLock<HashSet<String>>>,
    config: Arc<OriginConfig>,
    /// Where complete segments also go (the recorder), if anywhere.
    sink: Option<Arc<dyn SegmentSink>>,
    /// Where each stream's highest media sequence number is kept across restarts.
    numbering: Option<Arc<dyn NumberingStore>>,
}

impl LiveStreams {
    pub fn new(config: OriginConfig) -> Self {
        Self {
            streams: Arc::default(),
            titles: Arc::default(),
            private: Arc::default(),
            config: Arc::new(config),
            sink: None,
            numbering: None,
        }
    }

    /// Keeps each stream's highest media sequence number in `store`, so that segment
    /// and part names never repeat for a stream across restarts of this origin.
    pub fn with_numbering_store(self, store: Arc<dyn NumberingStore>) -> Self {
        Self {
            numbering: Some(store),
            ..self
        }
    }

    /// Like [`LiveStreams::new`], also handing every complete segment and each stream's
    /// start and end to `sink` (a recorder), which must never wait.
    pub fn with_sink(config: OriginConfig, sink: Arc<dyn SegmentSink>) -> Self {
        Self {
            sink: Some(sink),
            ..Self::new(config)
        }
    }

    /// Sets the title the multivariant playlist of `name` carries as
    /// `EXT-X-SESSION-DATA` (`com.rivulet.title`); `None` or empty removes it.
    pub fn set_title(&self, name: &str, title: Option<&str>) {
        let mut titles = self.titles.write().unwrap_or_else(|e| e.into_inner());
        match title.filter(|t| !t.is_empty()) {
            Some(t) => {
                titles.insert(name.to_owned(), t.to_owned());
            }
            None => {
                titles.remove(name);
            }
        }
    }

    /// The title set for `name`, if any.
    pub fn title(&self, name: &str) -> Option<String> {
        self.titles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Marks `name` private (every request needs a playback token) or public.
    pub fn set_private(&self, name: &str, private: bool) {
        let mut set = self.private.write().unwrap_or_else(|e| e.into_inner());
        if private {
            set.insert(name.to_owned());
        } else {
            set.remove(name);
        }
    }

    /// Whether `name` needs a playback token.
    pub fn is_private(&self, name: &str) -> bool {
        self.private
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    pub fn config(&self) -> &OriginConfig {
        &self.config
    }

    /// The stream called `name`, if it was ever published here.
    pub fn get(&self, name: &str) -> Option<Arc<LiveStream>> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// The stream called `name`, created (offline, with one passthrough rendition) if new.
    pub fn get_or_create(&self, name: &str) -> Arc<LiveStream> {
        let mut streams = self.streams.write().unwrap_or_else(|e| e.into_inner());
        streams
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(LiveStream::new(
                    name,
                    &self.config,
                    self.sink.clone(),
                    self.numbering.clone(),
                ))
            })
            .clone()
    }

    /// Names and phases of all known streams, sorted by name.
    pub fn list(&self) -> Vec<(String, StreamPhase)> {
        let streams = self.streams.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = streams
            .iter()
            .map(|(n, s)| (n.clone(), s.phase()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

/// The name of the rendition that passes the published stream through unchanged.
pub use hub::SOURCE_RENDITION;

/// One stream: its renditions' packagers and a change signal for waiting requests.
pub struct LiveStream {
    name: String,
    state: Mutex<StreamState>,
    /// Bumped after every change to any packager of this stream.
    changed: watch::Sender<u64>,
    packager_config: PackagerConfig,
    sink: Option<Arc<dyn SegmentSink>>,
    /// Numbers the renditions' first segments alike, above any number used before.
    numbering: Arc<StreamNumbering>,
    numbering_store: Option<Arc<dyn NumberingStore>>,
    /// The renditions' media as packaged, for other outputs (WebRTC). Sent to only
    /// while someone listens; frames are shared (`Bytes`), never copied.
    tap: broadcast::Sender<TappedMedia>,
}

/// Rendition updates a tap buffers before a slow listener loses some (about 4 s of
/// five renditions at 30 fps with audio).
const TAP_CAPACITY: usize = 1024;

/// One update of a rendition, as [`LiveStream::tap`] sees it.
#[derive(Clone, Debug)]
pub enum TappedMedia {
    Tracks {
        rendition: Arc<str>,
        tracks: Arc<Tracks>,
    },
    /// A frame, with the wall clock its source frame arrived at ingest.
    Frame {
        rendition: Arc<str>,
        frame: Frame,
        at: SystemTime,
    },
}

pub(crate) struct StreamState {
    pub(crate) phase: StreamPhase,
    pub(crate) renditions: Vec<Rendition>,
    /// The renditions the current session will have, as its pipeline announced them.
    pub(crate) expected: ExpectedRenditions,
    /// When the phase last changed.
    pub(crate) since: Instant,
    pub(crate) health: InputHealth,
    /// The highest media sequence number a segment was started with.
    highest_msn: Option<u64>,
    /// Where the current session's pipeline takes requests for IDRs (one that encodes).
    idr_requests: Option<IdrRequests>,
}

/// What the multivariant playlist lists.
#[derive(Clone, Debug)]
pub(crate) enum ExpectedRenditions {
    /// Nothing was announced for this stream: every rendition with media is listed.
    Unknown,
    /// A session started and its pipeline has not announced its renditions yet: the
    /// multivariant playlist waits.
    Pending,
    /// These, in this order; the playlist waits until each has media.
    Known(Arc<[AnnouncedRendition]>),
}

pub(crate) struct Rendition {
    pub(crate) name: String,
    pub(crate) packager: RenditionPackager,
    /// The highest measured peak bit rate advertised so far: a measured `BANDWIDTH`
    /// only goes up, so that players never see a rung get cheaper than it was.
    pub(crate) advertised_peak: u64,
    /// Withdrawn from the session's set (a rung the machine could not encode in real
    /// time): its media playlist answers 404 and no sibling reports it, so players
    /// move to a rendition that plays on. A new announcement naming it again clears it.
    pub(crate) withdrawn: bool,
    /// When the frame last handed to the packager arrived (for the availability metric).
    last_arrival: Option<Instant>,
    /// The part that received the last chunk, and when that chunk's frame arrived.
    last_chunk: Option<((u64, u32), Instant)>,
    /// The rendition's tracks and its latest video keyframe, for thumbnails.
    tracks: Option<Arc<Tracks>>,
    keyframe: Option<Frame>,
}

/// A rendition's latest video keyframe, with the tracks that describe it.
#[derive(Clone, Debug)]
pub struct LatestKeyframe {
    pub rendition: String,
    pub tracks: Arc<Tracks>,
    pub frame: Frame,
}

impl LiveStream {
    fn new(
        name: &str,
        config: &OriginConfig,
        sink: Option<Arc<dyn SegmentSink>>,
        numbering_store: Option<Arc<dyn NumberingStore>>,
    ) -> Self {
        let floor = numbering_store.as_ref().and_then(|s| s.last_msn(name));
        Self {
            name: name.to_owned(),
            state: Mutex::new(StreamState {
                phase: StreamPhase::Offline,
                renditions: Vec::new(),
                expected: ExpectedRenditions::Unknown,
                since: Instant::now(),
                health: InputHealth::new(config.health.clone(), Instant::now()),
                highest_msn: floor,
                idr_requests: None,
            }),
            changed: watch::channel(0).0,
            packager_config: config.packager.clone(),
            sink,
            numbering: Arc::new(StreamNumbering::new(floor)),
            numbering_store,
            tap: broadcast::channel(TAP_CAPACITY).0,
        }
    }

    /// The input's health now, and why it is not `ok`.
    pub fn input_health(&self, now: Instant) -> (InputState, Option<String>) {
        self.lock().health.state(now)
    }

    /// A frame arrived from the publisher (before any rendition pipeline).
    pub fn handle_input_frame(&self, now: Instant) {
        self.lock().health.handle_frame(now);
    }

    /// A decoded picture of the input was (or was not) black.
    pub fn handle_input_picture(&self, now: Instant, black: bool) {
        self.lock().health.handle_picture(now, black);
    }

    /// The input's decoded audio turned (or stopped being) silent.
    pub fn handle_input_audio(&self, now: Instant, silent: bool) {
        self.lock().health.handle_audio(now, silent);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn phase(&self) -> StreamPhase {
        self.lock().phase
    }

    /// The latest video keyframe of the smallest rendition (the cheapest to decode),
    /// while the stream is live or in its grace period.
    pub fn latest_keyframe(&self) -> Option<LatestKeyframe> {
        let state = self.lock();
        if !matches!(state.phase, StreamPhase::Live | StreamPhase::Grace) {
            return None;
        }
        state
            .renditions
            .iter()
            .filter_map(|r| {
                let tracks = r.tracks.clone()?;
                let frame = r.keyframe.clone()?;
                let width = match &tracks.video.as_ref()?.codec {
                    media::CodecConfig::Avc(avc) => avc.width,
                    _ => return None,
                };
                Some((
                    width,
                    LatestKeyframe {
                        rendition: r.name.clone(),
                        tracks,
                        frame,
                    },
                ))
            })
            .min_by_key(|(width, _)| *width)
            .map(|(_, k)| k)
    }

    /// The renditions the current session's pipeline announced, in its order (a ladder
    /// announces its rungs largest first), once it has.
    pub fn announced_renditions(&self) -> Option<Vec<String>> {
        match &self.lock().expected {
            ExpectedRenditions::Known(r) => Some(r.iter().map(|a| a.name.to_string()).collect()),
            _ => None,
        }
    }

    /// The names of the renditions packaged so far, in the order they appeared.
    pub fn rendition_names(&self) -> Vec<String> {
        self.lock()
            .renditions
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// Every rendition's tracks and frames from now on (a listener that falls behind
    /// is told how many it missed), with the tracks each rendition has now.
    pub fn tap(&self) -> (Vec<TappedMedia>, broadcast::Receiver<TappedMedia>) {
        let state = self.lock();
        let current = state
            .renditions
            .iter()
            .filter_map(|r| {
                Some(TappedMedia::Tracks {
                    rendition: Arc::from(r.name.as_str()),
                    tracks: r.tracks.clone()?,
                })
            })
            .collect();
        (current, self.tap.subscribe())
    }

    /// A receiver that sees a new value after every change of this stream.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, StreamState> {
        // Every critical section leaves the packagers consistent between calls.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A publisher arrived. If this stream was published before, the playlists continue
    /// after a discontinuity.
    pub fn handle_session_start(&self) {
        let mut state = self.lock();
        if state.phase != StreamPhase::Live {
            for r in &mut state.renditions {
                if r.packager.has_media() {
                    r.packager.handle_discontinuity();
                }
            }
        }
        if state.phase != StreamPhase::Live {
            metrics::gauge!("rivulet_live_streams").increment(1.0);
        }
        state.phase = StreamPhase::Live;
        state.since = Instant::now();
        state.health.handle_session_start(Instant::now());
        // The new session's pipeline says what it makes as soon as it knows.
        state.expected = ExpectedRenditions::Pending;
        drop(state);
        if let Some(sink) = &self.sink {
            sink.session_started(&self.name);
        }
        self.notify();
    }

    /// New tracks for `rendition`, which is created (appended after the others) the
    /// first time it is named. Renditions are never removed, so indices stay valid.
    pub fn handle_tracks(&self, rendition: &str, tracks: Arc<Tracks>, now: SystemTime) {
        let mut state = self.lock();
        let index = match state.renditions.iter().position(|r| r.name == rendition) {
            Some(i) => i,
            None => {
                state.renditions.push(Rendition {
                    name: rendition.to_owned(),
                    packager: RenditionPackager::with_numbering(
                        self.packager_config.clone(),
                        self.numbering.clone(),
                    ),
                    advertised_peak: 0,
                    withdrawn: false,
                    last_arrival: None,
                    last_chunk: None,
                    tracks: None,
                    keyframe: None,
                });
                state.renditions.len() - 1
            }
        };
        let r = &mut state.renditions[index];
        if self.tap.receiver_count() > 0 {
            let _ = self.tap.send(TappedMedia::Tracks {
                rendition: Arc::from(rendition),
                tracks: tracks.clone(),
            });
        }
        r.tracks = Some(tracks.clone());
        r.packager.handle_tracks(tracks, now);
        drain_events(&self.name, r, self.sink.as_deref());
        drop(state);
        self.notify();
    }

    /// The session's pipeline announced the renditions it will make.
    pub fn handle_announce(&self, renditions: Arc<[AnnouncedRendition]>) {
        let mut state = self.lock();
        for r in &mut state.renditions {
            if renditions.iter().any(|a| *a.name == r.name) {
                r.withdrawn = false;
            }
        }
        state.expected = ExpectedRenditions::Known(renditions);
        drop(state);
        self.notify();
    }

    /// `rendition` leaves the announced set: the master stops listing it, the other
    /// renditions stop reporting it, and its media playlist answers 404 (a player on it
    /// fails over to another rendition instead of waiting on parts that never come).
    /// Its segments and parts stay available for the players still fetching them.
    pub fn handle_withdraw(&self, rendition: &str) {
        let mut state = self.lock();
        if let Some(r) = state.renditions.iter_mut().find(|r| r.name == rendition) {
            r.withdrawn = true;
        }
        if let ExpectedRenditions::Known(set) = &state.expected {
            let kept: Arc<[AnnouncedRendition]> = set
                .iter()
                .filter(|a| &*a.name != rendition)
                .cloned()
                .collect();
            state.expected = ExpectedRenditions::Known(kept);
        }
        drop(state);
        self.notify();
    }

    /// Packages one frame of `rendition`. `now` is the wall clock the frame stands
    /// for (its arrival at ingest, for PROGRAM-DATE-TIME), `arrival` when it reached
    /// this origin (for the availability metric).
    pub fn handle_frame(&self, rendition: &str, frame: Frame, now: SystemTime, arrival: Instant) {
        let mut state = self.lock();
        let Some(r) = state.renditions.iter_mut().find(|r| r.name == rendition) else {
            metrics::counter!("origin_frames_rejected_total").increment(1);
            return;
        };
        if frame.keyframe && frame.kind == media::TrackKind::Video {
            r.keyframe = Some(frame.clone());
        }
        if self.tap.receiver_count() > 0 {
            let _ = self.tap.send(TappedMedia::Frame {
                rendition: Arc::from(rendition),
                frame: frame.clone(),
                at: now,
            });
        }
        if let Err(e) = r.packager.handle_frame(frame, now) {
            metrics::counter!("origin_frames_rejected_total").increment(1);
            tracing::warn!(stream = %self.name, rendition = %r.name, error = %e, "frame not packaged");
        }
        r.last_arrival = Some(arrival);
        let started = drain_events(&self.name, r, self.sink.as_deref());
        if let Some(msn) = started
            && state.highest_msn.is_none_or(|h| msn > h)
        {
            state.highest_msn = Some(msn);
            if let Some(store) = &self.numbering_store {
                store.record_msn(&self.name, msn);
            }
        }
        drop(state);
        self.notify();
    }

    /// Where the current session's rendition pipeline takes IDR requests (`None`: it
    /// does not encode, and keyframes are the publisher's).
    pub fn set_idr_requests(&self, requests: Option<IdrRequests>) {
        self.lock().idr_requests = requests;
    }

    /// Asks for an IDR in `rendition` soon (a viewer that must start on one is
    /// waiting); false when no encoder of this stream can make one.
    pub fn request_idr(&self, rendition: &str) -> bool {
        let state = self.lock();
        match &state.idr_requests {
            Some(requests) => {
                requests.request(rendition);
                true
            }
            None => false,
        }
    }

    /// The publisher left: the grace period starts.
    pub fn handle_publisher_gone(&self) {
        let mut state = self.lock();
        state.idr_requests = None;
        if state.phase == StreamPhase::Live {
            metrics::gauge!("rivulet_live_streams").decrement(1.0);
        }
        state.phase = StreamPhase::Grace;
        state.since = Instant::now();
        state.health.handle_session_end(Instant::now());
        drop(state);
        self.notify();
    }

    /// The grace period passed without a publisher: end the playlists.
    pub fn handle_end(&self, now: SystemTime) {
        let mut state = self.lock();
        for r in &mut state.renditions {
            r.packager.handle_end(now);
            drain_events(&self.name, r, self.sink.as_deref());
        }
        state.phase = StreamPhase::Ended;
        state.since = Instant::now();
        drop(state);
        if let Some(sink) = &self.sink {
            sink.stream_ended(&self.name);
        }
        self.notify();
    }

    /// The ended playlist has been served long enough.
    pub fn handle_offline(&self) {
        let mut state = self.lock();
        if state.phase == StreamPhase::Ended {
            state.phase = StreamPhase::Offline;
            state.since = Instant::now();
        }
        drop(state);
        self.notify();
    }

    /// The variants of the multivariant playlist, or `None` while it would not be
    /// whole: before the session's renditions are announced, or while one of them
    /// has no media yet. A rendition with a declared rate is advertised at it; a
    /// measured one at the highest peak measured so far.
    pub(crate) fn variants(&self) -> Option<Vec<(String, VariantInfo)>> {
        let mut state = self.lock();
        let state = &mut *state;
        let wanted: Vec<(String, Option<DeclaredRate>)> = match &state.expected {
            ExpectedRenditions::Pending => return None,
            ExpectedRenditions::Unknown => state
                .renditions
                .iter()
                .map(|r| (r.name.clone(), None))
                .collect(),
            ExpectedRenditions::Known(set) => set
                .iter()
                .map(|a| (a.name.to_string(), a.declared))
                .collect(),
        };
        let mut variants = Vec::with_capacity(wanted.len());
        for (name, declared) in wanted {
            let Some(r) = state.renditions.iter_mut().find(|r| r.name == name) else {
                if matches!(state.expected, ExpectedRenditions::Known(_)) {
                    return None;
                }
                continue;
            };
            let Some(mut info) = r.packager.variant() else {
                if matches!(state.expected, ExpectedRenditions::Known(_)) {
                    return None;
                }
                continue;
            };
            match declared {
                Some(rate) => {
                    info.bandwidth = rate.peak;
                    info.average_bandwidth = rate.average;
                }
                None => {
                    r.advertised_peak = r.advertised_peak.max(info.bandwidth);
                    info.bandwidth = r.advertised_peak;
                }
            }
            variants.push((name, info));
        }
        (!variants.is_empty()).then_some(variants)
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Drains a packager's events into metrics. Waiters are woken by the caller's `notify`.
/// Returns the highest media sequence number of a segment started meanwhile.
fn drain_events(stream: &str, r: &mut Rendition, sink: Option<&dyn SegmentSink>) -> Option<u64> {
    let mut started = None;
    while let Some(event) = r.packager.poll_event() {
        match event {
            PackageEvent::PartStarted { msn, part: 0 } => {
                started = started.max(Some(msn));
            }
            PackageEvent::ChunkAppended { msn, part } => {
                if let Some(arrival) = r.last_arrival {
                    r.last_chunk = Some(((msn, part), arrival));
                }
            }
            PackageEvent::PartCompleted { msn, part, .. } => {
                // From the arrival at ingest of the part's last frame to now, when the
                // part is complete and servable.
                if let Some((_, arrival)) = r.last_chunk.filter(|(id, _)| *id == (msn, part)) {
                    metrics::histogram!("part_availability_delay_seconds")
                        .record(arrival.elapsed().as_secs_f64());
                }
                metrics::counter!("origin_parts_total").increment(1);
            }
            PackageEvent::SegmentCompleted { msn, .. } => {
                tracing::trace!(stream, rendition = %r.name, msn, "segment completed");
                metrics::counter!("origin_segments_total").increment(1);
                if let Some(sink) = sink
                    && let Some(segment) = r.packager.completed_segment(msn)
                {
                    sink.segment_completed(stream, &r.name, segment);
                }
            }
            _ => {}
        }
    }
    started
}
