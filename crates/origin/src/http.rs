//! The `/live/…` routes.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Path, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use media::live_path::routes;
use package::{MediaObject, Readiness};
use serde::Deserialize;
use tokio::time::Instant;
use tower_http::cors::{Any, CorsLayer};

use crate::health::InputState;
use crate::live::{LiveStream, LiveStreams, StreamPhase};

/// Playlists: players reload them constantly, so a cache may keep one only as long
/// as it takes to revalidate.
const PLAYLIST_CACHE: &str = "no-cache";
/// Media objects never change under their name within a stream's timeline. The
/// lifetime is bounded (not a year) because a restarted origin may number again
/// from the encoder's timestamps.
const MEDIA_CACHE: &str = "public, max-age=300, immutable";
/// `EXT-X-SESSION-DATA` DATA-ID of the stream's title (reverse-DNS, as RFC 8216 asks).
const TITLE_DATA_ID: &str = "com.rivulet.title";
/// The response header that carries the input's health on playlists.
pub const INPUT_HEADER: &str = media::live_path::INPUT_HEADER;
/// Errors (a part that does not exist *yet*) must not be cached.
const ERROR_CACHE: &str = "no-store";
/// Answers to blocking reloads: a shared cache (edge, CDN) keeps one a second, long
/// enough for every viewer waiting on that part to share it; a browser keeps none.
/// video.js asks again for a part it already has at each segment end and calls the
/// playlist "unchanged" if the answer is the same: with `max-age=6` its browser cache
/// (or an edge) served it that same answer for six seconds, about every 40 to 340 ms,
/// and playback stalled (issue 20, item 11).
const BLOCKING_PLAYLIST_CACHE: &str = "public, max-age=0, s-maxage=1";

/// The router for `/live/NAME/…`, with CORS for browser players. The binary layers
/// the analytics delivery middleware on it (as on the edge's): the origin knows
/// nothing of analytics.
pub fn router(streams: LiveStreams) -> Router {
    let state = OriginState {
        held: httpd::HeldRequests::new(streams.config().held),
        streams,
    };
    Router::new()
        .route(&routes::multivariant(), get(multivariant_playlist))
        .route(&routes::health(), get(input_health))
        .route(&routes::media_playlist(), get(media_playlist))
        .route(&routes::media_object(), get(media_object))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(Any)
                .allow_headers(Any)
                .expose_headers(Any)
                // The answer is the same whatever the request's Origin (`*`): without
                // this, the default `Vary: origin, …` would make a shared cache (Varnish,
                // nginx, a CDN) keep and fetch one copy per embedding site.
                .vary(Vec::<header::HeaderName>::new()),
        )
        .with_state(state)
}

/// What the handlers share: the streams, and the requests held waiting on them.
#[derive(Clone)]
struct OriginState {
    streams: LiveStreams,
    held: httpd::HeldRequests,
}

impl FromRef<OriginState> for LiveStreams {
    fn from_ref(state: &OriginState) -> Self {
        state.streams.clone()
    }
}

impl FromRef<OriginState> for httpd::HeldRequests {
    fn from_ref(state: &OriginState) -> Self {
        state.held.clone()
    }
}

/// The client's address, when served with connection info (not through `oneshot`).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The answer to a request that may not be held: 503 when the stream has as many
/// waiters as allowed, 429 when this client has.
fn held_refusal(e: httpd::HoldError) -> Response {
    let status = match e {
        httpd::HoldError::ClientFull => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    metrics::counter!("origin_errors_total", "status" => status.as_str().to_owned()).increment(1);
    (
        status,
        [
            (header::CACHE_CONTROL, HeaderValue::from_static(ERROR_CACHE)),
            (header::RETRY_AFTER, HeaderValue::from_static("1")),
        ],
        format!("{e}\n"),
    )
        .into_response()
}

/// The LL-HLS query parameters of a media playlist request.
#[derive(Debug, Default, Deserialize)]
struct HlsQuery {
    #[serde(rename = "_HLS_msn")]
    msn: Option<String>,
    #[serde(rename = "_HLS_part")]
    part: Option<String>,
    #[serde(rename = "_HLS_skip")]
    skip: Option<String>,
}

async fn multivariant_playlist(
    State(streams): State<LiveStreams>,
    client: ClientAddr,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let access = match check_access(&streams, &name, raw.as_deref(), client.0) {
        Ok(a) => a,
        Err(e) => return refused(&e),
    };
    let Some(stream) = playable(&streams, &name) else {
        return access.mark(offline(&name));
    };
    // Right after a publisher connects the renditions are not all there yet: hold the
    // request until every rendition the session will have has media, rather than
    // answering with part of the ladder (a player that loads that keeps it for the
    // whole session) or failing a player that was waiting for the stream.
    let mut waiter = Waiter::new(&stream, &streams);
    loop {
        let title = streams.title(&name);
        let session_data: Vec<(&str, &str)> = title
            .as_deref()
            .map(|t| (TITLE_DATA_ID, t))
            .into_iter()
            .collect();
        let text = stream.variants().map(|variants| {
            let variants: Vec<_> = variants
                .iter()
                .map(|(n, v)| (n.as_str(), v.clone()))
                .collect();
            package::multivariant_playlist(&variants, &session_data)
        });
        if let Some(text) = text {
            metrics::counter!("origin_requests_total", "kind" => "multivariant").increment(1);
            return access.playlist(text, PLAYLIST_CACHE, &stream);
        }
        if !waiter.changed().await {
            // No-store (as every error) and a retry hint: a cache must not keep it.
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the stream's renditions are not all ready yet; retry shortly",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
    }
}

async fn media_playlist(
    State(streams): State<LiveStreams>,
    State(held): State<httpd::HeldRequests>,
    client: ClientAddr,
    Path((name, rendition)): Path<(String, String)>,
    Query(query): Query<HlsQuery>,
    RawQuery(raw): RawQuery,
) -> Response {
    let access = match check_access(&streams, &name, raw.as_deref(), client.0) {
        Ok(a) => a,
        Err(e) => return refused(&e),
    };
    access.mark(
        media_playlist_for(&streams, &held, &client, &name, &rendition, &query, &access).await,
    )
}

async fn media_playlist_for(
    streams: &LiveStreams,
    held: &httpd::HeldRequests,
    client: &ClientAddr,
    name: &str,
    rendition: &str,
    query: &HlsQuery,
    access: &Access,
) -> Response {
    let block = match parse_blocking(query) {
        Ok(b) => b,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    let skip = matches!(query.skip.as_deref(), Some("YES" | "v2"));
    let Some(stream) = playable(streams, name) else {
        return offline(name);
    };
    let Some(index) = rendition_index(&stream, rendition) else {
        return error(StatusCode::NOT_FOUND, "no such rendition");
    };
    if stream.lock().renditions[index].withdrawn {
        return withdrawn();
    }
    let mut waiter = Waiter::new(&stream, streams);
    // Right after a publisher connects there is no part yet: an empty playlist is of no
    // use to a player, so hold the request until the first part exists.
    loop {
        let has_part = {
            let state = stream.lock();
            let r = &state.renditions[index];
            if r.withdrawn {
                return withdrawn();
            }
            r.packager.rendition_report("").last_msn.is_some() || r.packager.is_ended()
        };
        if has_part {
            break;
        }
        if block.is_some() {
            // A client asking for a part by number saw this stream's playlist
            // elsewhere (the other pipeline of an A/B pair, or this origin before a
            // restart): with no media yet, this origin cannot say when that part will
            // come. A quick 404 sends a CDN to the other pipeline at once.
            return error(
                StatusCode::NOT_FOUND,
                "this origin has no media of the stream yet",
            );
        }
        if !waiter.changed().await {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the stream has no media yet; retry shortly",
            );
        }
    }
    if let Some((msn, part)) = block {
        let _held = HeldRequest::new();
        let mut waiting = None;
        // Held for up to three of the playlist's actual target durations (not the
        // configured segment target: a stream with longer keyframe intervals has longer
        // segments, and a legal request may wait that long).
        let hold = stream.lock().renditions[index]
            .packager
            .blocking_hold_limit();
        waiter.extend_to(hold);
        loop {
            let readiness = {
                let state = stream.lock();
                let r = &state.renditions[index];
                if r.withdrawn {
                    return withdrawn();
                }
                r.packager.blocking_readiness(msn, part)
            };
            match readiness {
                Readiness::Ready => break,
                Readiness::TooFarAhead => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "_HLS_msn is more than two segments ahead of the playlist",
                    );
                }
                Readiness::PartOutOfRange => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "_HLS_part names a part that will not exist: past the end of a \
                         complete segment, or more than three seconds' worth of parts \
                         ahead of the playlist; ask for the part the playlist hints at",
                    );
                }
                Readiness::Wait => {
                    if waiting.is_none() {
                        match held.hold(name, client.0) {
                            Ok(h) => waiting = Some(h),
                            Err(e) => return held_refusal(e),
                        }
                    }
                }
            }
            if !waiter.changed().await {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the requested part did not appear in time",
                );
            }
        }
    }
    let text = render_media_playlist(&stream, index, skip);
    metrics::counter!("origin_requests_total", "kind" => "playlist").increment(1);
    // A blocking response describes a state that, by its URL, has been reached: a
    // shared cache may keep it briefly (see BLOCKING_PLAYLIST_CACHE).
    let cache = if block.is_some() {
        BLOCKING_PLAYLIST_CACHE
    } else {
        PLAYLIST_CACHE
    };
    access.playlist(text, cache, &stream)
}

/// Rendition `index`'s media playlist as it is now, with the other renditions' reports.
fn render_media_playlist(stream: &LiveStream, index: usize, skip: bool) -> String {
    let state = stream.lock();
    let reports: Vec<_> = state
        .renditions
        .iter()
        .enumerate()
        .filter(|(i, r)| *i != index && !r.withdrawn)
        .map(|(_, r)| {
            r.packager
                .rendition_report(&media::live_path::sibling_playlist_uri(&r.name))
        })
        .collect();
    state.renditions[index]
        .packager
        .media_playlist(skip, &reports)
}

/// `GET /live/NAME/health`: the input's state as JSON; 200 when `ok`, else 503 (so a
/// plain HTTP health check can use it).
async fn input_health(State(streams): State<LiveStreams>, Path(name): Path<String>) -> Response {
    let Some(stream) = streams.get(&name) else {
        return offline(&name);
    };
    let (state, reason) = stream.input_health(std::time::Instant::now());
    let phase = match stream.phase() {
        StreamPhase::Live => "live",
        StreamPhase::Grace => "grace",
        StreamPhase::Ended => "ended",
        StreamPhase::Offline => "offline",
    };
    let body = serde_json::json!({
        "stream": name,
        "phase": phase,
        "input": state.as_str(),
        "reason": reason,
    });
    let status = if state == InputState::Ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(ERROR_CACHE)),
        ],
        body.to_string(),
    )
        .into_response()
}

async fn media_object(
    State(streams): State<LiveStreams>,
    State(held): State<httpd::HeldRequests>,
    client: ClientAddr,
    Path((name, rendition, object)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> Response {
    let access = match check_access(&streams, &name, raw.as_deref(), client.0) {
        Ok(a) => a,
        Err(e) => return refused(&e),
    };
    access.mark(media_object_for(&streams, &held, client, &name, &rendition, &object).await)
}

async fn media_object_for(
    streams: &LiveStreams,
    held: &httpd::HeldRequests,
    client: ClientAddr,
    name: &str,
    rendition: &str,
    object: &str,
) -> Response {
    let Some(object) = MediaObject::parse(object) else {
        return error(StatusCode::NOT_FOUND, "no such object");
    };
    let Some(stream) = streams.get(name) else {
        return offline(name);
    };
    let Some(index) = rendition_index(&stream, rendition) else {
        return error(StatusCode::NOT_FOUND, "no such rendition");
    };
    match object {
        MediaObject::Init { version } => {
            let init = stream.lock().renditions[index]
                .packager
                .init_segment(version);
            match init {
                Some(bytes) => {
                    metrics::counter!("origin_requests_total", "kind" => "init").increment(1);
                    media_response(ChunksBody::body(vec![bytes]), "video/mp4")
                }
                None => error(StatusCode::NOT_FOUND, "no such init segment"),
            }
        }
        MediaObject::Segment { msn } => {
            let segment = stream.lock().renditions[index].packager.segment(msn);
            match segment {
                Some(chunks) => {
                    metrics::counter!("origin_requests_total", "kind" => "segment").increment(1);
                    media_response(ChunksBody::body(chunks), "video/mp4")
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    "no such segment (not complete yet, or out of the window)",
                ),
            }
        }
        MediaObject::Part { msn, part } => {
            let waiting = Waiting {
                held,
                stream: name,
                client: &client,
            };
            serve_part(streams, stream, index, msn, part, waiting).await
        }
    }
}

/// Serves a part: at once if it is complete; streamed as it grows if it is being
/// produced; held until it starts if it is the next one (the preload hint).
async fn serve_part(
    streams: &LiveStreams,
    stream: Arc<LiveStream>,
    index: usize,
    msn: u64,
    part: u32,
    waiting: Waiting<'_>,
) -> Response {
    let mut waiter = Waiter::new(&stream, streams);
    let hold = stream.lock().renditions[index]
        .packager
        .blocking_hold_limit();
    waiter.extend_to(hold);
    let _held = HeldRequest::new();
    let mut held = None;
    loop {
        let state = PartState::read(&stream, index, msn, part);
        match state {
            PartState::Complete(chunks) => {
                metrics::counter!("origin_requests_total", "kind" => "part").increment(1);
                return media_response(ChunksBody::body(chunks), "video/mp4");
            }
            PartState::Growing => {
                metrics::counter!("origin_requests_total", "kind" => "part_streamed").increment(1);
                let body = Body::from_stream(futures::stream::unfold(
                    GrowingPart {
                        stream,
                        index,
                        msn,
                        part,
                        sent: 0,
                        pending: VecDeque::new(),
                        waiter,
                        done: false,
                    },
                    GrowingPart::next,
                ));
                return media_response(body, "video/mp4");
            }
            PartState::Future => {
                if held.is_none() {
                    match waiting.held.hold(waiting.stream, waiting.client.0) {
                        Ok(h) => held = Some(h),
                        Err(e) => return held_refusal(e),
                    }
                }
            }
            PartState::Gone => {
                return error(
                    StatusCode::NOT_FOUND,
                    "no such part (out of the window, or never produced)",
                );
            }
        }
        if !waiter.changed().await {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the requested part did not start in time",
            );
        }
    }
}

/// Who would wait for a part, to count it among the held requests.
struct Waiting<'a> {
    held: &'a httpd::HeldRequests,
    stream: &'a str,
    client: &'a ClientAddr,
}

enum PartState {
    Complete(Vec<Bytes>),
    Growing,
    /// Not produced yet, but next (at or after the preload hint) on a live stream.
    Future,
    Gone,
}

impl PartState {
    fn read(stream: &LiveStream, index: usize, msn: u64, part: u32) -> Self {
        let state = stream.lock();
        let packager = &state.renditions[index].packager;
        // A hinted number that a new segment overtook names that segment's first part.
        let (msn, part) = packager.canonical_part(msn, part);
        if let Some(view) = packager.part(msn, part) {
            return if view.complete {
                PartState::Complete(view.chunks)
            } else {
                PartState::Growing
            };
        }
        let upcoming = packager
            .preload_hint()
            .is_some_and(|hint| (msn, part) >= hint);
        // Only the next segment's worth of parts may be waited for.
        let near = packager
            .preload_hint()
            .is_some_and(|(hint_msn, _)| msn <= hint_msn + 1);
        if upcoming && near && matches!(state.phase, StreamPhase::Live | StreamPhase::Grace) {
            PartState::Future
        } else {
            PartState::Gone
        }
    }
}

/// The state of a streamed part response.
struct GrowingPart {
    stream: Arc<LiveStream>,
    index: usize,
    msn: u64,
    part: u32,
    /// Chunks already handed to the body.
    sent: usize,
    pending: VecDeque<Bytes>,
    waiter: Waiter,
    done: bool,
}

impl GrowingPart {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                metrics::counter!("origin_bytes_out_total").increment(chunk.len() as u64);
                return Some((Ok(chunk), self));
            }
            if self.done {
                return None;
            }
            let view = self.stream.lock().renditions[self.index]
                .packager
                .part(self.msn, self.part);
            match view {
                Some(view) => {
                    self.pending.extend(view.chunks.into_iter().skip(self.sent));
                    self.sent += self.pending.len();
                    self.done = view.complete;
                    if !self.pending.is_empty() || self.done {
                        continue;
                    }
                }
                // Evicted while we streamed it: the stream is far behind; end the body with an error.
                None => {
                    return Some((
                        Err(std::io::Error::other("part left the window")),
                        self.finish(),
                    ));
                }
            }
            if !self.waiter.changed().await {
                return Some((
                    Err(std::io::Error::other("part stopped growing")),
                    self.finish(),
                ));
            }
        }
    }

    fn finish(mut self) -> Self {
        self.done = true;
        self
    }
}

/// A response body made of shared chunks, with an exact length and no copying.
struct ChunksBody {
    chunks: VecDeque<Bytes>,
    remaining: u64,
}

impl ChunksBody {
    fn body(chunks: Vec<Bytes>) -> Body {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        metrics::counter!("origin_bytes_out_total").increment(remaining);
        Body::new(ChunksBody {
            chunks: chunks.into(),
            remaining,
        })
    }
}

impl http_body::Body for ChunksBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let chunk = self.chunks.pop_front();
        if let Some(c) = &chunk {
            self.remaining -= c.len() as u64;
        }
        Poll::Ready(chunk.map(|c| Ok(http_body::Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// Waits for changes of one stream, until a deadline shared by one request.
struct Waiter {
    changes: tokio::sync::watch::Receiver<u64>,
    deadline: Instant,
}

impl Waiter {
    fn new(stream: &LiveStream, streams: &LiveStreams) -> Self {
        Self {
            changes: stream.changes(),
            deadline: Instant::now() + hold_timeout(streams),
        }
    }

    /// Lets the request be held for `hold` from now if that is longer.
    fn extend_to(&mut self, hold: Duration) {
        self.deadline = self.deadline.max(Instant::now() + hold);
    }

    /// Waits for the next change; `false` once the deadline has passed.
    async fn changed(&mut self) -> bool {
        matches!(
            tokio::time::timeout_at(self.deadline, self.changes.changed()).await,
            Ok(Ok(()))
        )
    }
}

/// Counts a request held open (blocking reload, part wait) in a gauge while it lives.
struct HeldRequest;

impl HeldRequest {
    fn new() -> Self {
        metrics::gauge!("origin_held_requests").increment(1.0);
        HeldRequest
    }
}

impl Drop for HeldRequest {
    fn drop(&mut self) {
        metrics::gauge!("origin_held_requests").decrement(1.0);
    }
}

/// `Some((msn, part))` for a blocking request, `None` for a plain one.
fn parse_blocking(q: &HlsQuery) -> Result<Option<(u64, Option<u32>)>, &'static str> {
    let msn = match &q.msn {
        None if q.part.is_some() => return Err("_HLS_part requires _HLS_msn"),
        None => return Ok(None),
        Some(m) => m
            .parse::<u64>()
            .map_err(|_| "_HLS_msn must be a non-negative integer")?,
    };
    let part = match &q.part {
        None => None,
        Some(p) => Some(
            p.parse::<u32>()
                .map_err(|_| "_HLS_part must be a non-negative integer")?,
        ),
    };
    Ok(Some((msn, part)))
}

fn hold_timeout(streams: &LiveStreams) -> Duration {
    // Three target durations, the spec's bound for how long a client waits.
    Duration::from_millis(u64::from(streams.config().packager.segment_target_ms) * 3)
}

fn playable(streams: &LiveStreams, name: &str) -> Option<Arc<LiveStream>> {
    streams
        .get(name)
        .filter(|s| s.phase() != StreamPhase::Offline)
}

/// The answer for a withdrawn rendition's media playlist.
fn withdrawn() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "this rendition was withdrawn (the server could not encode it in real time); \
         load the multivariant playlist again for the renditions that play",
    )
}

fn rendition_index(stream: &LiveStream, rendition: &str) -> Option<usize> {
    stream
        .lock()
        .renditions
        .iter()
        .position(|r| r.name == rendition)
}

/// Whether a request may be answered, and how: a public stream's answers are as they
/// always were; a private stream's carry the viewer's token in every URI of their
/// playlists, and `X-Rivulet-Access: private` (so that an edge learns to check tokens).
enum Access {
    Public,
    Private { token: String },
}

impl Access {
    /// The playlist response, its URIs carrying the token of a private stream.
    fn playlist(&self, text: String, cache: &'static str, stream: &LiveStream) -> Response {
        match self {
            Access::Public => playlist_response(text, cache, stream),
            Access::Private { token } => self.mark(playlist_response(
                access::playback::with_token(&text, token),
                cache,
                stream,
            )),
        }
    }

    /// `response` with the private marker if the stream is private.
    fn mark(&self, mut response: Response) -> Response {
        if let Access::Private { .. } = self {
            mark_private(&mut response);
        }
        response
    }
}

/// Checks the playback token of a request for `name`, if the stream is private.
fn check_access(
    streams: &LiveStreams,
    name: &str,
    query: Option<&str>,
    client: Option<IpAddr>,
) -> Result<Access, access::playback::TokenError> {
    if !streams.is_private(name) {
        return Ok(Access::Public);
    }
    let token = access::playback::token_in_query(query).unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match streams
        .config()
        .playback_keys
        .verify(token, name, client, now)
    {
        Ok(_) => Ok(Access::Private {
            token: token.to_owned(),
        }),
        Err(e) => Err(e),
    }
}

/// For other handlers of a stream's objects (the binary's thumbnail): the refusal to
/// answer if `name` is private and the request's `query` has no token that covers it
/// for `client`; `None` when the request may be answered.
pub fn playback_refusal(
    streams: &LiveStreams,
    name: &str,
    query: Option<&str>,
    client: Option<IpAddr>,
) -> Option<Response> {
    check_access(streams, name, query, client)
        .err()
        .map(|e| refused(&e))
}

/// 401 (no valid token) or 403 (a token that does not cover this), saying why.
fn refused(e: &access::playback::TokenError) -> Response {
    let status = if e.is_forbidden() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNAUTHORIZED
    };
    metrics::counter!("origin_errors_total", "status" => status.as_str().to_owned()).increment(1);
    let mut response = (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static(ERROR_CACHE))],
        format!("{e}\n"),
    )
        .into_response();
    mark_private(&mut response);
    response
}

fn mark_private(response: &mut Response) {
    response.headers_mut().insert(
        header::HeaderName::from_static(access::playback::ACCESS_HEADER),
        HeaderValue::from_static(access::playback::ACCESS_PRIVATE),
    );
}

/// A playlist, with the input's health in `X-Rivulet-Input` (an edge in front of two
/// pipelines prefers the one whose input is `ok`).
fn playlist_response(text: String, cache: &'static str, stream: &LiveStream) -> Response {
    let (input, _) = stream.input_health(std::time::Instant::now());
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.apple.mpegurl"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::HeaderName::from_static(INPUT_HEADER),
                HeaderValue::from_static(input.as_str()),
            ),
        ],
        text,
    )
        .into_response()
}

fn media_response(body: Body, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static(MEDIA_CACHE)),
        ],
        body,
    )
        .into_response()
}

fn offline(name: &str) -> Response {
    metrics::counter!("origin_requests_total", "kind" => "offline").increment(1);
    let _ = name;
    error(StatusCode::NOT_FOUND, "stream is offline")
}

fn error(status: StatusCode, reason: &'static str) -> Response {
    metrics::counter!("origin_errors_total", "status" => status.as_str().to_owned()).increment(1);
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static(ERROR_CACHE))],
        format!("{reason}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests;
