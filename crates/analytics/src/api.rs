//! The `/api/analytics` routes and their OpenAPI document.
//!
//! Errors have the metadata API's shape, `{"error": "...", "field": "..."}` ([`ErrorBody`]). Every
//! route allows cross-origin requests: players POST beacons from pages on other
//! origins, and dashboards may read figures from elsewhere. No route uses cookies, so
//! this exposes nothing a page could not fetch anyway.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Json;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tower_http::cors::{Any, CorsLayer};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::EventsAccess;
use crate::beacon::{self, BeaconBatch, BeaconError};
use crate::error::AnalyticsError;
use crate::event::{DeliveryBatch, DeliveryEvent, now_ms};
use crate::rollup::{Dim, MINUTE_MS};
use crate::service::{Analytics, PlatformSummary, StreamSummary, Timeseries};

/// The analytics routes and their OpenAPI document. The caller serves the document
/// (merged with those of the other APIs it serves, if any) at `/api/openapi.json`.
pub fn routes(analytics: Analytics) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(post_beacons))
        .routes(routes!(post_events))
        .routes(routes!(stream_summary))
        .routes(routes!(stream_timeseries))
        .routes(routes!(platform_summary))
        .routes(routes!(platform_timeseries))
        .split_for_parts();
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(Any)
        .max_age(std::time::Duration::from_secs(86_400));
    (router.with_state(analytics).layer(cors), doc)
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rivulet analytics API",
        description = "Viewers, watch time, geography and playback quality of Rivulet streams."
    ),
    modifiers(&EventsAuth),
    tags((name = "analytics", description = "Viewer and quality-of-experience figures; player beacons")),
    components(schemas(ErrorBody, BeaconBatch, DeliveryBatch, Dim))
)]
struct ApiDoc;

struct EventsAuth;

impl utoipa::Modify for EventsAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "analytics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "--analytics-token / RIVULET_ANALYTICS_TOKEN, or the token `rivulet analytics` generated in DATA_DIR/analytics-token",
                    ))
                    .build(),
            ),
        );
    }
}

/// The answer to an accepted batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub accepted: usize,
}

/// Report playback from a player: a batch of beacons. The client's address (for its
/// country) is the TCP peer's, or `X-Forwarded-For`'s from a trusted proxy. Nothing
/// of a refused batch is stored.
#[utoipa::path(
    post,
    path = "/api/analytics/beacons",
    tag = "analytics",
    request_body = BeaconBatch,
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 400, description = "Malformed JSON, or an invalid field (named in `field`)", body = ErrorBody),
        (status = 404, description = "A beacon is about a stream that is not known here (named in `field`)", body = ErrorBody),
        (status = 413, description = "A body over 64 KiB", body = ErrorBody),
    )
)]
async fn post_beacons(State(analytics): State<Analytics>, request: Request) -> Response {
    let peer = peer_of(&request);
    let headers = request.headers().clone();
    let body = match read_body(request, beacon::MAX_BODY).await {
        Ok(body) => body,
        Err(e) => return refuse(e),
    };
    let beacons = match beacon::parse_batch(&body) {
        Ok(b) => b,
        Err(e) => return refuse(e),
    };
    let forwarded = crate::emit::forwarded_for(&headers);
    let client = analytics
        .config()
        .trusted_proxies
        .client_addr(peer, forwarded.as_deref());
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let accepted = beacons.len();
    if let Err(e) = analytics.ingest_beacons(beacons, client, user_agent) {
        metrics::counter!("analytics_beacons_rejected_total", "reason" => "unknown_stream")
            .increment(1);
        return error(StatusCode::NOT_FOUND, e.to_string(), Some(e.field));
    }
    (StatusCode::ACCEPTED, Json(Accepted { accepted })).into_response()
}

/// Delivery events from an origin or edge (`--analytics-url`). Needs
/// `Authorization: Bearer TOKEN` with the analytics server's events token
/// (`--analytics-token`, or the one `rivulet analytics` generated in
/// DATA_DIR/analytics-token); a `rivulet serve` without one records its own deliveries
/// in-process and refuses these (403). Events with an error status about a stream
/// that is not known are ignored.
#[utoipa::path(
    post,
    path = "/api/analytics/events",
    tag = "analytics",
    request_body = DeliveryBatch,
    security(("analytics_token" = [])),
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 400, description = "Malformed batch, or a field too long (named in `field`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong token", body = ErrorBody),
        (status = 403, description = "This server takes no delivery events over HTTP (no events token set)", body = ErrorBody),
        (status = 413, description = "A body over 8 MiB", body = ErrorBody),
    )
)]
async fn post_events(State(analytics): State<Analytics>, request: Request) -> Response {
    match &analytics.config().events {
        EventsAccess::InProcessOnly => {
            return error(
                StatusCode::FORBIDDEN,
                "this server records its own deliveries in-process and takes no delivery events over HTTP: to accept them from edges, set --analytics-token here and the same on the edges",
                None,
            );
        }
        EventsAccess::Token(token) => {
            let presented = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !presented.is_some_and(|p| token.matches(p.trim())) {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "this endpoint needs the analytics token: send Authorization: Bearer TOKEN",
                    None,
                );
            }
        }
    }
    let body = match read_body(request, MAX_EVENTS_BODY).await {
        Ok(body) => body,
        Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, e.reason, e.field),
    };
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let batch: DeliveryBatch = match serde_path_to_error::deserialize(de) {
        Ok(b) => b,
        Err(e) => {
            let path = e.path().to_string();
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid JSON body: {}", e.inner()),
                (path != "." && path != "?").then_some(path),
            );
        }
    };
    if let Err((field, reason)) = check_events(&batch.events) {
        return error(StatusCode::BAD_REQUEST, reason, Some(field));
    }
    let accepted = batch.events.len();
    analytics.ingest_deliveries(batch.events);
    (StatusCode::ACCEPTED, Json(Accepted { accepted })).into_response()
}

/// Query parameters of the summaries.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; they are parsed by `parse_query`
struct WindowParams {
    /// Start of the window, ms since the Unix epoch. Default: an hour before `to`.
    from: Option<i64>,
    /// End of the window (exclusive), ms since the Unix epoch. Default: now.
    to: Option<i64>,
}

/// Query parameters of the time series.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; they are parsed by `parse_query`
struct SeriesParams {
    /// The figure: viewers (unique viewers per step), watch_time_ms, avg_watch_time_ms,
    /// startup_p50_ms, startup_p95_ms, rebuffer_ratio, avg_bitrate_kbps,
    /// avg_live_latency_ms, error_rate, avg_ttfb_ms, bytes_served, requests, errors,
    /// player_errors, dropped_frames. Default: viewers.
    metric: Option<String>,
    /// One series per country, rendition or edge; default: one series, the total.
    by: Option<String>,
    /// Start, ms since the Unix epoch. Default: an hour before `to`.
    from: Option<i64>,
    /// End (exclusive), ms since the Unix epoch. Default: now.
    to: Option<i64>,
    /// Step in ms, a whole number of minutes. Default: 60000.
    step: Option<i64>,
}

/// One stream's figures: sessions active now (`concurrent_viewers`), and over
/// `from..to` viewers, watch time, startup, stalls, bitrate, latency, errors and bytes,
/// in total and per country, rendition and edge.
#[utoipa::path(
    get,
    path = "/api/analytics/streams/{name}/summary",
    tag = "analytics",
    params(("name" = String, Path, description = "The stream's public name"), WindowParams),
    responses(
        (status = 200, description = "The summary", body = StreamSummary),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
    )
)]
async fn stream_summary(
    State(analytics): State<Analytics>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = match parse_query(query.as_deref(), false) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    answer(analytics.stream_summary(&name, q.from, q.to).await)
}

/// One figure of one stream over time, in total or per country, rendition or edge.
#[utoipa::path(
    get,
    path = "/api/analytics/streams/{name}/timeseries",
    tag = "analytics",
    params(("name" = String, Path, description = "The stream's public name"), SeriesParams),
    responses(
        (status = 200, description = "The series", body = Timeseries),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
    )
)]
async fn stream_timeseries(
    State(analytics): State<Analytics>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = match parse_query(query.as_deref(), true) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    answer(
        analytics
            .timeseries(&name, &q.metric, q.by, q.from, q.to, q.step)
            .await,
    )
}

/// The whole platform's figures, and each stream's.
#[utoipa::path(
    get,
    path = "/api/analytics/summary",
    tag = "analytics",
    params(WindowParams),
    responses(
        (status = 200, description = "The summary", body = PlatformSummary),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
    )
)]
async fn platform_summary(
    State(analytics): State<Analytics>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = match parse_query(query.as_deref(), false) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    answer(analytics.platform_summary(q.from, q.to).await)
}

/// One figure of the whole platform over time.
#[utoipa::path(
    get,
    path = "/api/analytics/timeseries",
    tag = "analytics",
    params(SeriesParams),
    responses(
        (status = 200, description = "The series", body = Timeseries),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
    )
)]
async fn platform_timeseries(
    State(analytics): State<Analytics>,
    RawQuery(query): RawQuery,
) -> Response {
    let q = match parse_query(query.as_deref(), true) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    answer(
        analytics
            .timeseries("", &q.metric, q.by, q.from, q.to, q.step)
            .await,
    )
}

struct Query {
    from: i64,
    to: i64,
    metric: String,
    by: Dim,
    step: i64,
}

fn parse_query(query: Option<&str>, series: bool) -> Result<Query, BadQuery> {
    let bad = |field: &str, reason: String| BadQuery {
        field: Some(field.to_owned()),
        reason,
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.unwrap_or("")).map_err(|e| BadQuery {
            field: None,
            reason: format!("malformed query string: {e}"),
        })?;
    let (mut from, mut to, mut step) = (None, None, MINUTE_MS);
    let (mut metric, mut by) = ("viewers".to_owned(), Dim::Total);
    let int = |key: &str, value: &str| {
        value.parse::<i64>().map_err(|_| {
            bad(
                key,
                format!("'{value}' is not a whole number of milliseconds"),
            )
        })
    };
    for (key, value) in pairs {
        match key.as_str() {
            "from" => from = Some(int(&key, &value)?),
            "to" => to = Some(int(&key, &value)?),
            "step" if series => step = int(&key, &value)?,
            "metric" if series => metric = value,
            "by" if series => {
                by = match value.as_str() {
                    "country" | "rendition" | "edge" | "total" => {
                        Dim::parse(&value).unwrap_or(Dim::Total)
                    }
                    _ => {
                        return Err(bad(
                            "by",
                            format!("'{value}' is not country, rendition or edge"),
                        ));
                    }
                };
            }
            _ => {
                let known = if series {
                    "metric, by, from, to or step"
                } else {
                    "from or to"
                };
                return Err(bad(&key, format!("unknown parameter '{key}': use {known}")));
            }
        }
    }
    let to = to.unwrap_or_else(now_ms);
    let from = from.unwrap_or(to - DEFAULT_WINDOW_MS);
    if from >= to {
        return Err(bad("from", "from must be before to".into()));
    }
    if to - from > MAX_WINDOW_MS {
        return Err(bad("from", "the window may be at most 366 days".into()));
    }
    Ok(Query {
        from,
        to,
        metric,
        by,
        step,
    })
}

/// A query parameter that cannot be used (answered 400).
struct BadQuery {
    field: Option<String>,
    reason: String,
}

impl IntoResponse for BadQuery {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self.reason, self.field)
    }
}

fn answer<T: Serialize>(result: Result<T, AnalyticsError>) -> Response {
    match result {
        Ok(body) => (no_cache(), Json(body)).into_response(),
        Err(AnalyticsError::InvalidQuery { field, reason }) => {
            error(StatusCode::BAD_REQUEST, reason, Some(field.to_owned()))
        }
        Err(e) => {
            tracing::error!(error = %e, "analytics query failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)
        }
    }
}

/// Reads a body of at most `limit` bytes.
async fn read_body(request: Request, limit: usize) -> Result<bytes::Bytes, BeaconError> {
    let too_large = || BeaconError {
        field: None,
        reason: format!("body larger than {limit} bytes"),
        kind: "too_large",
    };
    // Refuse at once what says it is too large, without reading it.
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| too_large())
}

fn refuse(e: BeaconError) -> Response {
    metrics::counter!("analytics_beacons_rejected_total", "reason" => e.kind).increment(1);
    let status = if e.kind == "too_large" {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    error(status, e.reason, e.field)
}

/// Checks the lengths of the strings of delivery events: what our own origins and
/// edges send is far below these, so anything longer is refused (the batch, 400,
/// naming the field) rather than kept in memory and in the database.
fn check_events(events: &[DeliveryEvent]) -> Result<(), (String, String)> {
    let too_long = |i: usize, name: &str, max: usize| {
        Err((
            format!("events[{i}].{name}"),
            format!("longer than {max} characters"),
        ))
    };
    for (i, e) in events.iter().enumerate() {
        let cmcd_ids = e.cmcd.as_ref().map_or([None, None, None, None], |c| {
            [
                c.sid.as_deref(),
                c.cid.as_deref(),
                c.st.as_deref(),
                c.ot.as_deref(),
            ]
        });
        for (name, value, max) in [
            (
                "stream",
                Some(e.stream.as_str()),
                crate::event::MAX_STREAM_NAME_LEN,
            ),
            ("rendition", e.rendition.as_deref(), crate::cmcd::MAX_ID_LEN),
            ("session", Some(e.session.as_str()), crate::cmcd::MAX_ID_LEN),
            (
                "edge",
                Some(e.edge.as_str()),
                crate::event::MAX_NODE_NAME_LEN,
            ),
            ("upstream", e.upstream.as_deref(), MAX_UPSTREAM_LEN),
            ("cmcd.sid", cmcd_ids[0], crate::cmcd::MAX_ID_LEN),
            ("cmcd.cid", cmcd_ids[1], crate::cmcd::MAX_ID_LEN),
            ("cmcd.st", cmcd_ids[2], crate::cmcd::MAX_ID_LEN),
            ("cmcd.ot", cmcd_ids[3], crate::cmcd::MAX_ID_LEN),
        ] {
            if value.is_some_and(|v| v.chars().count() > max) {
                return too_long(i, name, max);
            }
        }
    }
    Ok(())
}

/// The answer to every failed request: `{"error": "...", "field": "..."}`, the
/// metadata API's shape, so that a client reads the errors of both the same way.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// The request field at fault (body field or query parameter), if one is.
    pub field: Option<String>,
}

fn peer_of(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

fn error(status: StatusCode, reason: impl Into<String>, field: Option<String>) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(ErrorBody {
            error: reason.into(),
            field,
        }),
    )
        .into_response()
}

fn no_cache() -> [(header::HeaderName, &'static str); 1] {
    // Live figures: a cache must not serve them stale.
    [(header::CACHE_CONTROL, "no-cache")]
}

/// Largest batch of delivery events, bytes (about 20 000 events).
pub const MAX_EVENTS_BODY: usize = 8 * 1024 * 1024;
/// Longest upstream URL in a delivery event.
const MAX_UPSTREAM_LEN: usize = 2048;
const DEFAULT_WINDOW_MS: i64 = 3_600_000;
const MAX_WINDOW_MS: i64 = 366 * 86_400_000;
