//! The edge: a pull-through cache for `/live/…` in front of one or more upstreams.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use futures::StreamExt;
use tower_http::cors::{Any, CorsLayer};

use crate::failover::{
    AttemptError, BodyError, BodyPlan, Failover, FailoverConfig, UpstreamError, Verdict,
};
use crate::fetch::{Fetch, FetchError, Head};
use crate::key::CacheKey;
use crate::policy::{Storage, storage};
use crate::upstream::Upstreams;

/// Settings of an edge.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Upstream base URLs in order of preference (origins, or a shield edge).
    pub upstreams: Vec<String>,
    /// Bytes of objects kept (bodies plus keys and headers).
    pub cache_bytes: u64,
    /// How long to wait for an upstream's first byte (a blocking playlist request to
    /// the last upstream may legitimately be held this long).
    pub first_byte_timeout: Duration,
    /// A blocking playlist request unanswered this long means the playlist stopped
    /// advancing on that upstream (3 × the part target).
    pub stall_limit: Duration,
    /// How often upstreams are probed (`GET /healthz`).
    pub probe_interval: Duration,
    /// A body from the last upstream left to try that sends nothing for this long is
    /// broken off (the others get `stall_limit`): a host dripping a byte now and then
    /// must not hold viewers.
    pub body_stall_timeout: Duration,
    /// Bytes of an upstream playlist (or error answer) at most.
    pub max_playlist_bytes: usize,
    /// Bytes of an upstream media object (init segment, segment, part) at most.
    pub max_media_bytes: usize,
    /// How long a 404 or 410 is kept (unless the upstream says less with `max-age`),
    /// so that a flood of requests for a missing object costs one upstream fetch per
    /// period. Zero: not kept.
    pub negative_ttl: Duration,
    /// Bounds on requests held waiting for an upstream (blocking reloads, parts).
    pub held: httpd::HeldLimits,
    /// The keys that check viewers' playback tokens for private streams, and sign the
    /// edge's own requests upstream. Without any, private streams are refused.
    pub playback_keys: access::playback::PlaybackKeys,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            cache_bytes: 512 * 1024 * 1024,
            first_byte_timeout: Duration::from_secs(8),
            stall_limit: Duration::from_millis(1002),
            probe_interval: Duration::from_secs(1),
            body_stall_timeout: Duration::from_secs(2),
            max_playlist_bytes: 1 << 20,
            max_media_bytes: 64 << 20,
            negative_ttl: Duration::from_secs(1),
            held: httpd::HeldLimits::default(),
            playback_keys: access::playback::PlaybackKeys::default(),
        }
    }
}

/// A kept answer.
#[derive(Debug)]
struct Cached {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    ttl: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<CacheKey, Arc<Cached>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Cached>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

struct Inner {
    config: EdgeConfig,
    upstreams: Upstreams,
    client: reqwest::Client,
    cache: moka::sync::Cache<CacheKey, Arc<Cached>>,
    inflight: Mutex<HashMap<CacheKey, Arc<Fetch>>>,
    /// `/live/` requests served, and (count, time) at the last `/edge/load` answer.
    requests: AtomicU64,
    load_mark: Mutex<(u64, Instant)>,
    held: httpd::HeldRequests,
    /// Streams whose upstream answers were marked private (`X-Rivulet-Access`), and
    /// when last: their viewers need a token, even for what is in the cache.
    private: Mutex<HashMap<String, Instant>>,
}

impl Inner {
    /// Whether an upstream said `stream` is private within [`PRIVATE_MEMORY`]. Past
    /// that, a request without a valid token goes to the cache and upstream like any
    /// other and is checked against what answers: that is how the edge learns that a
    /// stream became public again (a refused request would never ask).
    fn is_private(&self, stream: &str) -> bool {
        self.private
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
            .is_some_and(|at| at.elapsed() < PRIVATE_MEMORY)
    }

    /// Learns a stream's privacy from an upstream answer: marked private, it is; a
    /// 200 without the mark means public again. Other answers (a shield's own 502)
    /// say nothing either way.
    fn learn_privacy(&self, stream: &str, status: StatusCode, headers: &HeaderMap) {
        let marked = headers
            .get(ACCESS)
            .is_some_and(|v| v.as_bytes() == access::playback::ACCESS_PRIVATE.as_bytes());
        let mut private = self.private.lock().unwrap_or_else(|e| e.into_inner());
        if marked {
            private.insert(stream.to_owned(), Instant::now());
        } else if status == StatusCode::OK {
            private.remove(stream);
        }
    }

    /// Checks a viewer's token for `stream`.
    fn check_token(
        &self,
        stream: &str,
        token: Option<&str>,
        client: Option<std::net::IpAddr>,
    ) -> Result<(), access::playback::TokenError> {
        self.config
            .playback_keys
            .verify(token.unwrap_or_default(), stream, client, unix_now())
            .map(|_| ())
    }

    /// The query this edge adds to its upstream requests: a token of its own for the
    /// stream (no address, short-lived), so that the upstream answers for a private
    /// stream whatever viewer asked. Empty without keys.
    fn upstream_token(&self, stream: &str) -> Option<String> {
        self.config.playback_keys.sign(&access::playback::Grant {
            stream: stream.to_owned(),
            expires: unix_now() + UPSTREAM_TOKEN_LIFETIME,
            ip: None,
            session: None,
        })
    }
}

/// How long an upstream's "private" mark is trusted without a new one. Viewers of a
/// private stream reload its playlists (uncached) every part, renewing it.
const PRIVATE_MEMORY: Duration = Duration::from_secs(5);

/// Seconds an edge's own upstream token is good for: one request (held at most a
/// few seconds) and clock skew between hosts.
const UPSTREAM_TOKEN_LIFETIME: u64 = 300;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A running edge's state; [`Edge::router`] serves it.
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

/// An origin's word on its stream's input (`ok`, `stalled`, `black`, `silent`,
/// `lost`), on playlists.
const INPUT: HeaderName = HeaderName::from_static(media::live_path::INPUT_HEADER);

/// Which upstream answered (its index), for the analytics of this edge's viewers.
const UPSTREAM: HeaderName = HeaderName::from_static(media::live_path::UPSTREAM_HEADER);

/// An origin's mark on a private stream's answers.
const ACCESS: HeaderName = HeaderName::from_static(access::playback::ACCESS_HEADER);

/// Headers passed from upstream to viewers.
const FORWARDED: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::CONTENT_LENGTH,
    INPUT,
    ACCESS,
];

impl Edge {
    pub fn new(config: EdgeConfig) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(config.cache_bytes)
            .weigher(|k: &CacheKey, v: &Arc<Cached>| {
                (k.as_str().len() + v.body.len() + 256)
                    .try_into()
                    .unwrap_or(u32::MAX)
            })
            .expire_after(PerEntryTtl)
            .eviction_listener(|_k, _v, cause| {
                if cause.was_evicted() && cause != moka::notification::RemovalCause::Expired {
                    metrics::counter!("edge_evictions_total").increment(1);
                }
            })
            .build();
        let client = reqwest::Client::builder()
            // Says "cache fill, not a viewer" to the analytics of the node upstream
            // (see analytics::record_delivery); this edge reports its own viewers.
            .user_agent(concat!("rivulet-edge/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        let held = config.held;
        Self {
            inner: Arc::new(Inner {
                upstreams: Upstreams::new(&config.upstreams),
                config,
                client,
                cache,
                inflight: Mutex::default(),
                requests: AtomicU64::new(0),
                load_mark: Mutex::new((0, Instant::now())),
                held: httpd::HeldRequests::new(held),
                private: Mutex::default(),
            }),
        }
    }

    /// `/live/…` through the cache, `/api/…` passed through, plus `/healthz`.
    ///
    /// `/live/…` answers CORS itself, as the origin does (players on other sites —
    /// Shaka, video.js — preflight and read headers); `/api/…` passes the upstream's
    /// CORS headers through.
    pub fn router(&self) -> Router {
        let live = Router::new().route("/live/{*rest}", get(serve_live)).layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
                .allow_headers(Any)
                .expose_headers(Any),
        );
        Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/edge/load", get(load))
            .route("/api/{*rest}", any(crate::api::pass_through))
            .merge(live)
            .with_state(self.clone())
    }

    pub(crate) fn upstreams(&self) -> &Upstreams {
        &self.inner.upstreams
    }

    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.inner.client
    }

    pub(crate) fn first_byte_timeout(&self) -> Duration {
        self.inner.config.first_byte_timeout
    }

    /// Probes the upstreams until `shutdown` completes.
    pub async fn probe_upstreams(&self, shutdown: impl Future<Output = ()>) {
        let inner = &self.inner;
        let mut tick = tokio::time::interval(inner.config.probe_interval);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let probes = (0..inner.upstreams.len()).map(|i| async move {
                let Some(u) = inner.upstreams.get(i) else {
                    return;
                };
                let ok = tokio::time::timeout(
                    Duration::from_millis(800),
                    inner.client.get(format!("{}/healthz", u.base)).send(),
                )
                .await
                .is_ok_and(|r| r.is_ok_and(|r| r.status().is_success()));
                inner.upstreams.probed(i, ok);
            });
            futures::future::join_all(probes).await;
            // moka settles evictions and sizes lazily: settle them before reporting.
            inner.cache.run_pending_tasks();
            metrics::gauge!("edge_cache_bytes").set(inner.cache.weighted_size() as f64);
        }
    }

    /// Bytes the cache holds (weighted).
    pub fn cached_bytes(&self) -> u64 {
        self.inner.cache.run_pending_tasks();
        self.inner.cache.weighted_size()
    }
}

/// 401 (no valid token) or 403 (a token that does not cover this), saying why.
fn refused(e: &access::playback::TokenError) -> Response {
    metrics::counter!("edge_requests_refused_total", "reason" => "token").increment(1);
    let status = if e.is_forbidden() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNAUTHORIZED
    };
    let mut response = error(status, &e.to_string());
    response.headers_mut().insert(
        ACCESS,
        HeaderValue::from_static(access::playback::ACCESS_PRIVATE),
    );
    response
}

/// The viewer learns that no upstream answered, not which hosts stand behind this
/// edge; the log has the detail.
fn bad_gateway(key: &CacheKey, detail: &FetchError) -> Response {
    tracing::debug!(key = key.as_str(), error = %detail, "502 to a viewer");
    error(
        StatusCode::BAD_GATEWAY,
        "no upstream could answer this request; retry shortly",
    )
}

fn held_refusal(e: httpd::HoldError) -> Response {
    metrics::counter!("edge_requests_refused_total", "reason" => "held").increment(1);
    let status = match e {
        httpd::HoldError::ClientFull => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = error(status, &e.to_string());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        format!("{message}\n"),
    )
        .into_response()
}

/// Requests per second since the previous call (for the router's load awareness).
async fn load(State(edge): State<Edge>) -> String {
    let now = Instant::now();
    let count = edge.inner.requests.load(Ordering::Relaxed);
    let mut mark = edge
        .inner
        .load_mark
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let (before, then) = *mark;
    *mark = (count, now);
    let seconds = now.duration_since(then).as_secs_f64().max(0.001);
    format!("{:.1}\n", (count - before) as f64 / seconds)
}

async fn serve_live(State(edge): State<Edge>, request: Request) -> Response {
    edge.inner.requests.fetch_add(1, Ordering::Relaxed);
    let uri = request.uri();
    // Refused before the cache or an upstream sees it: only the names the packager
    // produces, in one spelling.
    let key = match CacheKey::new(uri.path(), uri.query()) {
        Ok(k) => k,
        Err(e) => {
            metrics::counter!("edge_requests_refused_total", "reason" => "path").increment(1);
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // The viewer's playback token: checked, never part of the cache key, and written
    // into the playlists this viewer is served.
    let token = access::playback::token_in_query(request.uri().query()).map(str::to_owned);
    drop(request);
    let inner = &edge.inner;
    // A stream known to be private is checked before anything is fetched; one that
    // turns out private from the upstream's answer, once that answer is there.
    let mut checked = false;
    if inner.is_private(key.stream()) {
        if let Err(e) = inner.check_token(key.stream(), token.as_deref(), client) {
            return refused(&e);
        }
        checked = true;
    }
    let guard = Guard {
        inner,
        stream: key.stream(),
        token: token.as_deref(),
        client,
        checked,
    };
    // What may wait on an upstream (a blocking reload, the next part) is bounded per
    // stream and per client; a cache hit lets go at once.
    let _held = if key.is_blocking() || key.is_part() {
        match inner.held.hold(key.stream(), client) {
            Ok(h) => Some(h),
            Err(e) => return held_refusal(e),
        }
    } else {
        None
    };
    let (fetch, role) = {
        let mut inflight = inner.inflight.lock().unwrap_or_else(|e| e.into_inner());
        // Checked under the lock a finished fetch takes to move into the cache, so
        // that no request can miss both.
        if let Some(hit) = inner.cache.get(&key) {
            drop(inflight);
            return answer_hit(&guard, &key, &hit);
        }
        match inflight.get(&key) {
            Some(f) => (f.clone(), "COALESCED"),
            None => {
                let f = Arc::new(Fetch::default());
                inflight.insert(key.clone(), f.clone());
                tokio::spawn(run_fetch(edge.inner.clone(), key.clone(), f.clone()));
                (f, "MISS")
            }
        }
    };
    metrics::counter!("edge_requests_total", "result" => if role == "MISS" { "miss" } else { "coalesced" })
        .increment(1);

    if key.is_playlist() {
        // A playlist is small and useless in pieces: thousands of held blocking
        // reloads wake once, when it is whole, and each answers with one write.
        return match fetch.whole().await {
            Ok((head, body)) => answer_playlist(&guard, &key, head, body, role),
            Err(e) => bad_gateway(&key, &e),
        };
    }
    let head = match fetch.head().await {
        Ok(h) => h,
        Err(e) => return bad_gateway(&key, &e),
    };
    if let Err(e) = guard.admit(&head.headers) {
        return refused(&e);
    }
    let body = fetch.body().map(|chunk| {
        if let Ok(c) = &chunk {
            metrics::counter!("edge_bytes_out_total").increment(c.len() as u64);
        }
        chunk
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static(role));
    response
}

/// A cached object, to a viewer the guard admits.
fn answer_hit(guard: &Guard<'_>, key: &CacheKey, hit: &Cached) -> Response {
    let private = match guard.admit(&hit.headers) {
        Ok(p) => p,
        Err(e) => return refused(&e),
    };
    metrics::counter!("edge_requests_total", "result" => "hit").increment(1);
    let body = guard.body(private, key, hit.body.clone());
    metrics::counter!("edge_bytes_out_total").increment(body.len() as u64);
    let mut response = Response::new(Body::from(body.clone()));
    *response.status_mut() = hit.status;
    *response.headers_mut() = hit.headers.clone();
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static("HIT"));
    response
}

/// A whole playlist just fetched (`role`: MISS or COALESCED), to a viewer the guard
/// admits, with the viewer's token written in if the stream is private.
fn answer_playlist(
    guard: &Guard<'_>,
    key: &CacheKey,
    head: Head,
    body: Bytes,
    role: &'static str,
) -> Response {
    let private = match guard.admit(&head.headers) {
        Ok(p) => p,
        Err(e) => return refused(&e),
    };
    let body = guard.body(private, key, body);
    metrics::counter!("edge_bytes_out_total").increment(body.len() as u64);
    let mut response = Response::new(Body::from(body.clone()));
    *response.status_mut() = head.status;
    *response.headers_mut() = head.headers;
    if private {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static(role));
    response
}

/// The token check of one viewer request.
struct Guard<'a> {
    inner: &'a Inner,
    stream: &'a str,
    token: Option<&'a str>,
    client: Option<std::net::IpAddr>,
    /// Checked already (the stream was known private before the lookup).
    checked: bool,
}

impl Guard<'_> {
    /// Whether the answer with `headers` may go to this viewer: `Ok(true)` for a
    /// private stream and a valid token, `Ok(false)` for a public stream.
    fn admit(&self, headers: &HeaderMap) -> Result<bool, access::playback::TokenError> {
        let private =
            self.checked || headers.contains_key(ACCESS) || self.inner.is_private(self.stream);
        if private && !self.checked {
            self.inner
                .check_token(self.stream, self.token, self.client)?;
        }
        Ok(private)
    }

    /// The body for this viewer: a private stream's playlist carries their token in
    /// every URI (the cached copy carries whatever token fetched it).
    fn body(&self, private: bool, key: &CacheKey, body: Bytes) -> Bytes {
        match (private, self.token, key.is_playlist()) {
            (true, Some(token), true) => match std::str::from_utf8(&body) {
                Ok(text) => Bytes::from(access::playback::with_token(text, token)),
                Err(_) => body,
            },
            _ => body,
        }
    }
}

/// Fetches `key` from the upstreams (failing over), feeding `fetch`; then caches it.
async fn run_fetch(inner: Arc<Inner>, key: CacheKey, fetch: Arc<Fetch>) {
    let outcome = fetch_upstream(&inner, &key, &fetch).await;
    if let Err(e) = &outcome {
        // Once per fetch, however many viewers waited for it; they get a generic 502.
        tracing::warn!(key = key.as_str(), error = %e, "no upstream could answer");
    }
    fetch.finish(outcome.clone().map_err(FetchError::from));
    let mut inflight = inner.inflight.lock().unwrap_or_else(|e| e.into_inner());
    if outcome.is_ok()
        && let Some(head) = fetch.head_now()
        && let Storage::Keep(ttl) = storage(
            head.status.as_u16(),
            head.headers
                .get(header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
            key.is_playlist(),
            inner.config.negative_ttl,
        )
        && let Some(body) = fetch.complete_body()
    {
        let mut headers = head.headers.clone();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        inner.cache.insert(
            key.clone(),
            Arc::new(Cached {
                status: head.status,
                headers,
                body,
                ttl,
            }),
        );
    }
    inflight.remove(&key);
}

/// Drives the failover state machine ([`Failover`]) with the HTTP client: the
/// decisions are there, the sockets and timers here.
async fn fetch_upstream(inner: &Inner, key: &CacheKey, fetch: &Fetch) -> Result<(), UpstreamError> {
    let config = FailoverConfig {
        first_byte_timeout: inner.config.first_byte_timeout,
        stall_limit: inner.config.stall_limit,
        body_stall_timeout: inner.config.body_stall_timeout,
        max_playlist_bytes: inner.config.max_playlist_bytes,
        max_media_bytes: inner.config.max_media_bytes,
    };
    let mut failover = Failover::new(&inner.upstreams, key, config);
    while let Some(attempt) = failover.next(Instant::now()) {
        let Some(upstream) = inner.upstreams.get(attempt.upstream) else {
            break;
        };
        let mut url = format!("{}{}", upstream.base, key.as_str());
        if let Some(token) = inner.upstream_token(key.stream()) {
            url = access::playback::set_token(&url, &token);
        }
        metrics::counter!("edge_upstream_fetches_total").increment(1);
        let response =
            match tokio::time::timeout(attempt.first_byte, inner.client.get(&url).send()).await {
                Err(_) => {
                    failover.handle_error(Instant::now(), AttemptError::NoAnswerInTime);
                    continue;
                }
                Ok(Err(e)) => {
                    failover.handle_error(Instant::now(), AttemptError::Transport(e.to_string()));
                    continue;
                }
                Ok(Ok(r)) => r,
            };
        let status = response.status();
        // The input's health is public on a private stream too: it says nothing.
        if key.kind() != crate::key::ObjectKind::Other {
            inner.learn_privacy(key.stream(), status, response.headers());
        }
        let mut headers = HeaderMap::new();
        for name in FORWARDED {
            if let Some(v) = response.headers().get(&name) {
                headers.insert(name, v.clone());
            }
        }
        headers.insert(UPSTREAM, HeaderValue::from(attempt.upstream));
        let head = Head { status, headers };
        let mut stream = response.bytes_stream();
        match failover.handle_head(Instant::now(), status.as_u16()) {
            BodyPlan::Whole {
                idle,
                deadline,
                max_bytes,
            } => {
                let body = match read_whole(&mut stream, idle, deadline.into(), max_bytes).await {
                    Ok(b) => b,
                    Err(e) => {
                        failover.handle_error(Instant::now(), AttemptError::Body(e));
                        continue;
                    }
                };
                let input = head.headers.get(&INPUT).map(|v| v.as_bytes().to_vec());
                let verdict = failover.handle_answer(
                    Instant::now(),
                    status.as_u16(),
                    input.as_deref(),
                    &body.clone(),
                    (head, body),
                );
                if let Verdict::Serve((head, body)) = verdict {
                    fetch.set_head(head);
                    fetch.push(body);
                    return Ok(());
                }
            }
            BodyPlan::Stream {
                idle,
                max_bytes,
                skip_boxes,
                send_head,
            } => {
                if send_head {
                    // Viewers may not know the length: the next upstream's copy can differ.
                    let mut head = head;
                    head.headers.remove(header::CONTENT_LENGTH);
                    fetch.set_head(head);
                }
                match stream_boxes(&mut stream, idle, max_bytes, skip_boxes, fetch).await {
                    Ok(()) => return Ok(()),
                    Err((boxes, e)) => {
                        metrics::counter!("edge_spliced_total").increment(1);
                        failover.handle_stream_error(Instant::now(), boxes, e);
                    }
                }
            }
        }
    }
    let (head, body) = failover.finish()?;
    fetch.set_head(head);
    fetch.push(body);
    Ok(())
}

/// Streams a media body to `fetch` in whole boxes, skipping the first `skip` (viewers
/// have them from an upstream that broke off). On a break: how many whole boxes of
/// this body arrived, and why.
async fn stream_boxes<S>(
    stream: &mut S,
    idle: Duration,
    max_bytes: usize,
    skip: usize,
    fetch: &Fetch,
) -> Result<(), (usize, BodyError)>
where
    S: futures::Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    let mut splitter = crate::boxes::BoxSplitter::default();
    let mut boxes = 0usize;
    let mut received = 0usize;
    loop {
        let c = match tokio::time::timeout(idle, stream.next()).await {
            Ok(None) => break,
            Ok(Some(Ok(c))) => c,
            Ok(Some(Err(e))) => return Err((boxes, BodyError::Transport(e.to_string()))),
            Err(_) => return Err((boxes, BodyError::Idle(idle))),
        };
        metrics::counter!("edge_upstream_bytes_total").increment(c.len() as u64);
        received += c.len();
        if received > max_bytes {
            metrics::counter!("edge_upstream_oversized_total").increment(1);
            return Err((boxes, BodyError::TooLarge(max_bytes)));
        }
        splitter.push(&c);
        while let Some(b) = splitter.next_box() {
            boxes += 1;
            if boxes > skip {
                fetch.push(b);
            }
        }
    }
    let rest = splitter.rest();
    if !rest.is_empty() {
        fetch.push(rest);
    }
    Ok(())
}

/// A whole (small) body, or why it broke off: no bytes for `idle`, not complete by
/// `deadline` (a drip), or longer than `max_bytes` (endless).
async fn read_whole<S>(
    stream: &mut S,
    idle: Duration,
    deadline: tokio::time::Instant,
    max_bytes: usize,
) -> Result<Bytes, BodyError>
where
    S: futures::Stream<Item = reqwest::Result<Bytes>> + Unpin,
{
    let mut whole = Vec::new();
    loop {
        let until = deadline.min(tokio::time::Instant::now() + idle);
        match tokio::time::timeout_at(until, stream.next()).await {
            Ok(None) => return Ok(Bytes::from(whole)),
            Ok(Some(Ok(c))) => {
                metrics::counter!("edge_upstream_bytes_total").increment(c.len() as u64);
                if whole.len() + c.len() > max_bytes {
                    metrics::counter!("edge_upstream_oversized_total").increment(1);
                    return Err(BodyError::TooLarge(max_bytes));
                }
                whole.extend_from_slice(&c);
            }
            Ok(Some(Err(e))) => return Err(BodyError::Transport(e.to_string())),
            Err(_) if until == deadline => return Err(BodyError::Deadline),
            Err(_) => return Err(BodyError::Idle(idle)),
        }
    }
}
