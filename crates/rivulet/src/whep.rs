//! WHEP playback (`POST /live/NAME/whep`): the HTTP resource and the UDP driver.
//!
//! One task owns the UDP socket and every [`webrtc::WhepSession`]: a datagram goes to
//! the session that accepts it (ICE ufrag, DTLS/SRTP peer), time goes to all, and the
//! media of each (stream, rendition) that has viewers comes from one tap task on the
//! origin's stream, converted once (Annex B) and shared by `Arc` with every viewer.
//! The sessions themselves (SDP, ICE-lite, DTLS, SRTP, packetising, NACK buffers) are
//! the sans-IO `webrtc` crate's.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use media::{CodecConfig, TrackKind};
use origin::{LiveStreams, StreamPhase, TappedMedia};
use serde::Deserialize;
use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tower_http::cors::{Any, CorsLayer};
use webrtc::{
    AudioPacket, KeyframeRequests, SessionOutput, VideoAccessUnit, WhepConfig, WhepSession,
};

use crate::webrtc_options::WebRtcSettings;

/// Largest SDP offer taken (a browser's is a few kB).
const MAX_OFFER_BYTES: usize = 64 * 1024;
/// Media items queued from the taps to the driver; a full queue is a gap (viewers
/// wait for the next keyframe), never a wait.
const MEDIA_QUEUE: usize = 512;
/// How often a playing session is reported to analytics (a viewer is concurrent while
/// its last report is within analytics' window, three segment targets by default).
const ANALYTICS_INTERVAL: Duration = Duration::from_secs(2);
/// Keyframe requests of one stream's viewers logged at most this often.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_secs(1);

/// The UDP socket, bound before anything starts. `None`: WebRTC is off.
pub(crate) async fn bind(settings: &WebRtcSettings) -> anyhow::Result<Option<UdpSocket>> {
    if !settings.enabled {
        return Ok(None);
    }
    match UdpSocket::bind(settings.listen).await {
        Ok(s) => Ok(Some(s)),
        Err(e) if !settings.listen_given => {
            tracing::warn!(
                addr = %settings.listen, error = %e,
                "WebRTC is off: its default UDP port cannot be bound (set --webrtc-listen, or --no-webrtc)"
            );
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot listen for WebRTC on UDP {} (is another server using the port? set --webrtc-listen)",
                settings.listen
            )
        }),
    }
}

/// The WHEP resource's state: what the HTTP handlers share with the driver.
#[derive(Clone)]
pub(crate) struct Whep {
    config: Arc<WhepConfig>,
    streams: LiveStreams,
    commands: mpsc::Sender<Command>,
    sessions: Arc<AtomicUsize>,
    max_sessions: usize,
}

enum Command {
    Add {
        id: String,
        stream: String,
        rendition: String,
        session: Box<WhepSession>,
        client: Option<std::net::IpAddr>,
    },
    Remove {
        id: String,
        found: oneshot::Sender<bool>,
    },
    Exists {
        id: String,
        found: oneshot::Sender<bool>,
    },
}

/// Starts the driver on `socket`; returns the resource's state and the task.
pub(crate) fn start(
    socket: UdpSocket,
    settings: &WebRtcSettings,
    streams: LiveStreams,
    analytics: analytics::Emitter,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Whep, JoinHandle<()>)> {
    let bound = socket
        .local_addr()
        .context("the WebRTC socket has no address")?;
    let candidates = crate::webrtc_options::candidate_ips(&settings.candidates, bound);
    let config = WhepConfig::new(candidates.clone()).context("cannot set up WebRTC")?;
    let (commands, rx) = mpsc::channel(64);
    let sessions = Arc::new(AtomicUsize::new(0));
    let driver = Driver {
        socket,
        bound,
        candidates,
        streams: streams.clone(),
        sessions: HashMap::new(),
        taps: HashMap::new(),
        count: sessions.clone(),
        analytics,
    };
    let task = tokio::spawn(driver.run(rx, stop));
    Ok((
        Whep {
            config: Arc::new(config),
            streams,
            commands,
            sessions,
            max_sessions: settings.max_sessions,
        },
        task,
    ))
}

/// `POST /live/{name}/whep`, `PATCH`/`DELETE /live/{name}/whep/{id}`, with CORS.
pub(crate) fn router(whep: Whep) -> Router {
    Router::new()
        .route("/live/{name}/whep", post(offer))
        .route("/live/{name}/whep/{id}", patch(trickle).delete(end_session))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(Any)
                .allow_headers(Any)
                .expose_headers([header::LOCATION, header::ETAG, header::LINK]),
        )
        .with_state(whep)
}

/// The WHEP URL where WebRTC is off: 503 with the reason, so that a player falls
/// back to LL-HLS at once (a 404 would read as "not live yet").
pub(crate) fn disabled_router() -> Router {
    Router::new()
        .route(
            "/live/{name}/whep",
            post(|Path(name): Path<String>| async move {
                answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "WebRTC is off on this server; watch over LL-HLS: /live/{name}/master.m3u8"
                    ),
                )
            }),
        )
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(Any)
                .allow_headers(Any),
        )
}

fn answer(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        format!("{message}\n"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct OfferQuery {
    rendition: Option<String>,
}

async fn offer(
    State(whep): State<Whep>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    client: origin::ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/sdp") {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a WHEP offer is an SDP offer with Content-Type: application/sdp",
        );
    }
    if let Some(refusal) = origin::playback_refusal(&whep.streams, &name, raw.as_deref(), client.0)
    {
        return refusal;
    }
    let live = whep
        .streams
        .get(&name)
        .filter(|s| matches!(s.phase(), StreamPhase::Live | StreamPhase::Grace));
    let Some(live) = live else {
        return answer(
            StatusCode::NOT_FOUND,
            format!("stream '{name}' is not live"),
        );
    };
    let names = live.rendition_names();
    let query: OfferQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .unwrap_or(OfferQuery { rendition: None });
    let rendition = match query.rendition {
        Some(r) if names.contains(&r) => r,
        Some(r) => {
            return answer(
                StatusCode::NOT_FOUND,
                format!(
                    "stream '{name}' has no rendition '{r}' (it has: {})",
                    names.join(", ")
                ),
            );
        }
        None => match default_rendition(&names) {
            Some(r) => r,
            None => {
                return answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("stream '{name}' has no video yet; try again in a moment"),
                );
            }
        },
    };
    if body.len() > MAX_OFFER_BYTES {
        return answer(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the SDP offer is larger than {MAX_OFFER_BYTES} bytes"),
        );
    }
    let Ok(sdp) = std::str::from_utf8(&body) else {
        return answer(StatusCode::BAD_REQUEST, "the SDP offer is not UTF-8 text");
    };
    // Reserve a place under the cap before the work of answering.
    let reserved = whep
        .sessions
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < whep.max_sessions).then_some(n + 1)
        });
    if reserved.is_err() {
        metrics::counter!("webrtc_sessions_refused_total", "reason" => "cap").increment(1);
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this server has its maximum of {} WebRTC sessions (--webrtc-max-sessions); watch over LL-HLS: /live/{name}/master.m3u8",
                whep.max_sessions
            ),
        );
    }
    let (session, sdp_answer) = match WhepSession::answer(&whep.config, sdp, Instant::now()) {
        Ok(s) => s,
        Err(e) => {
            whep.sessions.fetch_sub(1, Ordering::AcqRel);
            metrics::counter!("webrtc_sessions_refused_total", "reason" => "offer").increment(1);
            return answer(StatusCode::BAD_REQUEST, e);
        }
    };
    let id = format!("{:032x}", rand::random::<u128>());
    let added = whep
        .commands
        .send(Command::Add {
            id: id.clone(),
            stream: name.clone(),
            rendition: rendition.clone(),
            session: Box::new(session),
            client: client.0,
        })
        .await;
    if added.is_err() {
        whep.sessions.fetch_sub(1, Ordering::AcqRel);
        return answer(StatusCode::SERVICE_UNAVAILABLE, "WebRTC is shutting down");
    }
    tracing::info!(stream = %name, %rendition, session = %id, "WHEP session started");
    let location = format!("/live/{name}/whep/{id}");
    let mut response = (StatusCode::CREATED, sdp_answer).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{id}\"")) {
        h.insert(header::ETAG, v);
    }
    response
}

/// The highest transcoded rung (the ladder announces largest first), else the source.
fn default_rendition(names: &[String]) -> Option<String> {
    names
        .iter()
        .find(|n| n.as_str() != origin::SOURCE_RENDITION)
        .or(names.first())
        .cloned()
}

/// `PATCH`: trickle ICE. As an ICE-lite server we need no candidates of the viewer
/// (its checks reach us and teach us its address), so a fragment is accepted and
/// nothing is sent back (the draft's 204).
async fn trickle(
    State(whep): State<Whep>,
    Path((_name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/trickle-ice-sdpfrag") {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PATCH takes Content-Type: application/trickle-ice-sdpfrag",
        );
    }
    let (found, rx) = oneshot::channel();
    if whep
        .commands
        .send(Command::Exists { id, found })
        .await
        .is_err()
        || !rx.await.unwrap_or(false)
    {
        return answer(StatusCode::NOT_FOUND, "no such WHEP session");
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE`: the viewer leaves.
async fn end_session(
    State(whep): State<Whep>,
    Path((_name, id)): Path<(String, String)>,
) -> Response {
    let (found, rx) = oneshot::channel();
    if whep
        .commands
        .send(Command::Remove { id, found })
        .await
        .is_err()
        || !rx.await.unwrap_or(false)
    {
        return answer(StatusCode::NOT_FOUND, "no such WHEP session");
    }
    StatusCode::OK.into_response()
}

/// What a tap hands the driver.
enum TapItem {
    /// An access unit, with the wall clock its source frame arrived at ingest.
    Video(VideoAccessUnit, SystemTime),
    Audio(AudioPacket, SystemTime),
    /// Frames were lost: every viewer waits for the next keyframe.
    Gap,
}

type TapKey = (String, String);

struct Entry {
    key: TapKey,
    session: WhepSession,
    timeout: Instant,
    started: Instant,
    client: Option<std::net::IpAddr>,
    /// Bytes sent since the last analytics report, and when that was.
    unreported: u64,
    reported: Instant,
}

struct Tap {
    task: JoinHandle<()>,
    keyframe_requests: KeyframeRequests,
}

struct Driver {
    socket: UdpSocket,
    bound: SocketAddr,
    candidates: Vec<SocketAddr>,
    streams: LiveStreams,
    sessions: HashMap<String, Entry>,
    taps: HashMap<TapKey, Tap>,
    /// Sessions open (and reserved by handlers), for the cap.
    count: Arc<AtomicUsize>,
    /// Where WebRTC viewers are reported (a delivery event of kind `webrtc` per
    /// session every few seconds), as the origin's middleware reports HLS viewers.
    analytics: analytics::Emitter,
}

impl Driver {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (media_tx, mut media_rx) = mpsc::channel::<(TapKey, TapItem)>(MEDIA_QUEUE);
        let mut buf = vec![0u8; 2048];
        tokio::pin!(stop);
        loop {
            let next = self
                .sessions
                .values()
                .map(|e| e.timeout)
                .min()
                // At least once a second: the analytics reports ride on this wake-up.
                .map_or(Instant::now() + Duration::from_secs(1), |t| {
                    t.min(Instant::now() + Duration::from_secs(1))
                });
            tokio::select! {
                () = &mut stop => break,
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok((n, source)) => self.handle_datagram(source, &buf[..n]),
                    Err(e) => tracing::debug!(error = %e, "WebRTC socket read failed"),
                },
                command = commands.recv() => match command {
                    Some(command) => self.handle_command(command, &media_tx),
                    None => break,
                },
                Some((key, item)) = media_rx.recv() => self.handle_media(&key, item),
                () = tokio::time::sleep_until(next.into()) => {
                    let now = Instant::now();
                    for entry in self.sessions.values_mut() {
                        if entry.timeout <= now {
                            entry.session.handle_timeout(now);
                            entry.timeout = now + Duration::from_secs(1);
                        }
                    }
                    let ids: Vec<String> = self.sessions.keys().cloned().collect();
                    for id in ids {
                        self.drive(&id);
                    }
                    self.report();
                }
            }
            self.reap();
        }
        for (_, tap) in self.taps.drain() {
            tap.task.abort();
        }
        let open = self.sessions.len();
        self.count.fetch_sub(open, Ordering::AcqRel);
        metrics::gauge!("webrtc_sessions").set(0.0);
    }

    /// The address the datagram was sent to: the socket's, or for a wildcard socket
    /// the advertised candidate of the sender's family (str0m matches it to its
    /// local candidates).
    fn destination(&self, source: SocketAddr) -> SocketAddr {
        if !self.bound.ip().is_unspecified() {
            return self.bound;
        }
        self.candidates
            .iter()
            .find(|c| {
                c.is_ipv4() == source.is_ipv4() && c.ip().is_loopback() == source.ip().is_loopback()
            })
            .or_else(|| {
                self.candidates
                    .iter()
                    .find(|c| c.is_ipv4() == source.is_ipv4())
            })
            .copied()
            .unwrap_or(self.bound)
    }

    fn handle_datagram(&mut self, source: SocketAddr, data: &[u8]) {
        let now = Instant::now();
        let destination = self.destination(source);
        let id = self
            .sessions
            .iter()
            .find(|(_, e)| e.session.accepts(now, source, destination, data))
            .map(|(id, _)| id.clone());
        let Some(id) = id else {
            metrics::counter!("webrtc_datagrams_unmatched_total").increment(1);
            return;
        };
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry
                .session
                .handle_datagram(now, source, destination, data);
        }
        self.drive(&id);
    }

    fn handle_command(&mut self, command: Command, media_tx: &mpsc::Sender<(TapKey, TapItem)>) {
        match command {
            Command::Add {
                id,
                stream,
                rendition,
                session,
                client,
            } => {
                let key = (stream, rendition);
                if !self.taps.contains_key(&key) {
                    let live = self.streams.get_or_create(&key.0);
                    let task = tokio::spawn(run_tap(live, key.clone(), media_tx.clone()));
                    self.taps.insert(
                        key.clone(),
                        Tap {
                            task,
                            keyframe_requests: KeyframeRequests::new(KEYFRAME_REQUEST_INTERVAL),
                        },
                    );
                }
                let now = Instant::now();
                self.sessions.insert(
                    id.clone(),
                    Entry {
                        key,
                        session: *session,
                        timeout: now,
                        started: now,
                        client,
                        unreported: 0,
                        reported: now,
                    },
                );
                metrics::gauge!("webrtc_sessions").set(self.sessions.len() as f64);
                self.drive(&id);
            }
            Command::Remove { id, found } => {
                let entry = self.sessions.get_mut(&id);
                let _ = found.send(entry.is_some());
                if let Some(entry) = entry {
                    entry.session.close();
                }
            }
            Command::Exists { id, found } => {
                let _ = found.send(self.sessions.contains_key(&id));
            }
        }
    }

    fn handle_media(&mut self, key: &TapKey, item: TapItem) {
        // The media's wall clock as an Instant: RTCP sender reports map RTP time to
        // it, so a viewer's estimated playout time reads as the latency from ingest.
        let wallclock = |at: &SystemTime| {
            let age = SystemTime::now().duration_since(*at).unwrap_or_default();
            Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
        };
        let ids: Vec<String> = self
            .sessions
            .iter_mut()
            .filter(|(_, e)| &e.key == key)
            .map(|(id, e)| {
                match &item {
                    TapItem::Video(unit, at) => e.session.write_video(wallclock(at), unit),
                    TapItem::Audio(packet, at) => e.session.write_audio(wallclock(at), packet),
                    TapItem::Gap => e.session.handle_gap(),
                }
                id.clone()
            })
            .collect();
        for id in ids {
            self.drive(&id);
        }
    }

    /// Sends what the session has to send and notes when it wants time next.
    fn drive(&mut self, id: &str) {
        let Some(entry) = self.sessions.get_mut(id) else {
            return;
        };
        loop {
            match entry.session.poll_output() {
                SessionOutput::Transmit { destination, data } => {
                    entry.unreported += data.len() as u64;
                    // UDP: a full socket buffer is loss, which NACK and PLI repair.
                    if let Err(e) = self.socket.try_send_to(&data, destination) {
                        metrics::counter!("webrtc_send_errors_total").increment(1);
                        tracing::trace!(error = %e, "WebRTC datagram not sent");
                    }
                }
                SessionOutput::Timeout(t) => {
                    entry.timeout = t;
                    break;
                }
                SessionOutput::KeyframeRequest => {
                    metrics::counter!("webrtc_keyframe_requests_total").increment(1);
                    // No encoder hook: the viewer waits for the ladder's next IDR (on
                    // every segment boundary). Logged at most once a second per stream.
                    if let Some(tap) = self.taps.get_mut(&entry.key)
                        && tap.keyframe_requests.allow(Instant::now())
                    {
                        tracing::debug!(stream = %entry.key.0, rendition = %entry.key.1, "viewer asked for a keyframe; it gets the next IDR");
                    }
                }
                SessionOutput::Closed => {
                    entry.timeout = Instant::now();
                    break;
                }
            }
        }
    }

    /// Reports the sessions that play to analytics, every few seconds each.
    fn report(&mut self) {
        if !self.analytics.is_enabled() {
            return;
        }
        let now = Instant::now();
        for (id, e) in &mut self.sessions {
            if now.saturating_duration_since(e.reported) < ANALYTICS_INTERVAL
                || !e.session.is_connected()
            {
                continue;
            }
            let elapsed = now.saturating_duration_since(e.reported);
            e.reported = now;
            self.analytics.emit(analytics::DeliveryEvent {
                ts: analytics::now_ms(),
                stream: e.key.0.clone(),
                rendition: Some(e.key.1.clone()),
                kind: analytics::ObjectKind::WebRtc,
                status: 200,
                bytes: std::mem::take(&mut e.unreported),
                ttfb_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                client: e
                    .client
                    .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                session: id.clone(),
                edge: self.analytics.edge().to_owned(),
                upstream: None,
                cmcd: None,
            });
        }
    }

    /// Drops ended sessions, and the taps nobody watches any more.
    fn reap(&mut self) {
        let before = self.sessions.len();
        self.sessions.retain(|id, e| {
            let alive = e.session.is_alive();
            if !alive {
                tracing::info!(stream = %e.key.0, session = %id, watched_s = e.started.elapsed().as_secs(), "WHEP session ended");
            }
            alive
        });
        let ended = before - self.sessions.len();
        if ended == 0 {
            return;
        }
        self.count.fetch_sub(ended, Ordering::AcqRel);
        metrics::gauge!("webrtc_sessions").set(self.sessions.len() as f64);
        let sessions = &self.sessions;
        self.taps.retain(|key, tap| {
            let watched = sessions.values().any(|e| &e.key == key);
            if !watched {
                tap.task.abort();
            }
            watched
        });
    }
}

/// Follows one rendition of a stream: its H.264 as Annex B access units and its AAC
/// as Opus, made once here for every viewer.
async fn run_tap(live: Arc<origin::LiveStream>, key: TapKey, out: mpsc::Sender<(TapKey, TapItem)>) {
    let (current, mut rx) = live.tap();
    let mut tap = TapState {
        key: key.clone(),
        avc: None,
        aac: None,
        opus: None,
        offset_ms: None,
        least_offset_ms: None,
        ready: Vec::new(),
    };
    for media in current {
        tap.handle(media);
    }
    tap.ready.clear();
    let mut gap = false;
    loop {
        match rx.recv().await {
            Ok(media) => tap.handle(media),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                metrics::counter!("webrtc_frames_skipped_total").increment(missed);
                tap.ready.push(TapItem::Gap);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
        for item in tap.ready.drain(..) {
            if gap {
                if out.try_send((key.clone(), TapItem::Gap)).is_err() {
                    continue;
                }
                gap = false;
            }
            if out.try_send((key.clone(), item)).is_err() {
                metrics::counter!("webrtc_frames_skipped_total").increment(1);
                gap = true;
            }
        }
    }
}

struct TapState {
    key: TapKey,
    avc: Option<media::AvcConfig>,
    aac: Option<media::AacConfig>,
    opus: Option<transcode::opus::AacToOpus>,
    /// Ingest wall clock minus media time, ms, as RTP time carries it: RTP time is the
    /// ingest wall clock of the frame, so a viewer reads the latency from the RTP
    /// timestamp (as PROGRAM-DATE-TIME serves LL-HLS), while pacing stays the encoder's.
    offset_ms: Option<i64>,
    /// The least offset seen (the frame that queued least on its way to ingest): taken
    /// at the next video keyframe, where a step in RTP time does no harm.
    least_offset_ms: Option<i64>,
    ready: Vec<TapItem>,
}

impl TapState {
    /// Notes a frame's arrival; a video keyframe may move the RTP clock earlier.
    fn observe(&mut self, frame: &media::Frame, at: SystemTime) {
        let at_ms = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))
            .unwrap_or(0);
        let pts_ms = frame.pts.ticks * 1000 / i64::from(frame.pts.timescale.get());
        let offset = at_ms - pts_ms;
        let least = self.least_offset_ms.map_or(offset, |l| l.min(offset));
        self.least_offset_ms = Some(least);
        let moved = self.offset_ms.is_none_or(|o| least + 10 < o);
        if frame.kind == TrackKind::Video && frame.keyframe && moved {
            self.offset_ms = Some(least);
        }
    }

    /// `pts` on the ingest wall clock, in its timescale.
    fn on_wall_clock(&self, pts: media::MediaTime) -> media::MediaTime {
        let offset = self.offset_ms.or(self.least_offset_ms).unwrap_or(0);
        let rate = i64::from(pts.timescale.get());
        media::MediaTime::new(pts.ticks + offset * rate / 1000, pts.timescale)
    }
}

impl TapState {
    fn handle(&mut self, media: TappedMedia) {
        match media {
            TappedMedia::Tracks { rendition, tracks } if *rendition == *self.key.1 => {
                // New tracks (a publisher's return) may start a new timeline.
                self.offset_ms = None;
                self.least_offset_ms = None;
                self.avc = match tracks.video.as_ref().map(|t| &t.codec) {
                    Some(CodecConfig::Avc(c)) => Some(c.clone()),
                    _ => None,
                };
                self.aac = match tracks.audio.as_ref().map(|t| &t.codec) {
                    Some(CodecConfig::Aac(c)) => Some(c.clone()),
                    _ => None,
                };
            }
            TappedMedia::Frame {
                rendition,
                frame,
                at,
            } if *rendition == *self.key.1 => {
                self.observe(&frame, at);
                match frame.kind {
                    TrackKind::Video => self.handle_video(&frame, at),
                    TrackKind::Audio => self.handle_audio(&frame, at),
                }
            }
            _ => {}
        }
    }

    fn handle_video(&mut self, frame: &media::Frame, at: SystemTime) {
        let Some(config) = self.avc.as_ref() else {
            return;
        };
        match webrtc::annex_b(config, &frame.data, frame.keyframe) {
            Ok(data) => {
                let pts = self.on_wall_clock(frame.pts);
                self.ready.push(TapItem::Video(
                    VideoAccessUnit {
                        data,
                        pts,
                        keyframe: frame.keyframe,
                    },
                    at,
                ));
            }
            Err(e) => {
                tracing::warn!(stream = %self.key.0, error = %e, "H.264 frame not sent over WebRTC");
                self.ready.push(TapItem::Gap);
            }
        }
    }

    fn handle_audio(&mut self, frame: &media::Frame, at: SystemTime) {
        let Some(aac) = self.aac.as_ref() else {
            return;
        };
        if !self.opus.as_ref().is_some_and(|o| o.is_for(aac)) {
            self.opus = match transcode::opus::AacToOpus::new(aac) {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::warn!(stream = %self.key.0, error = %e, "no audio for WebRTC viewers");
                    self.aac = None;
                    return;
                }
            };
        }
        let Some(opus) = self.opus.as_mut() else {
            return;
        };
        let mut packets = Vec::new();
        opus.transcode(frame, &mut packets);
        for p in packets {
            let pts = self.on_wall_clock(p.pts);
            self.ready.push(TapItem::Audio(
                AudioPacket {
                    data: Arc::from(&p.data[..]),
                    pts,
                },
                at,
            ));
        }
    }
}
