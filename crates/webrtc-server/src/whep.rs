//! The WHEP resource (`POST /live/NAME/whep`; `PATCH`/`DELETE /live/NAME/whep/ID`).

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use origin::StreamPhase;
use serde::Deserialize;
use tokio::sync::oneshot;
use tower_http::cors::{Any, CorsLayer};
use webrtc::WhepSession;

use crate::{WebRtc, driver};

/// Largest SDP offer taken (a browser's is a few kB).
pub(crate) const MAX_OFFER_BYTES: usize = 64 * 1024;

/// The body of a WHEP or WHIP offer, at most [`MAX_OFFER_BYTES`]: a larger one is
/// answered 413 as soon as it says so (`Content-Length`) or crosses the bound, never
/// buffered whole (the server's own body limit is megabytes).
pub(crate) struct OfferBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for OfferBody {
    type Rejection = Response;

    async fn from_request(request: Request, _: &S) -> Result<Self, Response> {
        let too_large = || {
            answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the SDP offer is larger than {MAX_OFFER_BYTES} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_OFFER_BYTES as u64) {
            return Err(too_large());
        }
        match axum::body::to_bytes(request.into_body(), MAX_OFFER_BYTES).await {
            Ok(body) => Ok(Self(body)),
            // Over the bound (a chunked body), or the client went away mid-body.
            Err(_) => Err(too_large()),
        }
    }
}

/// The WebRTC routes: WHEP (and WHIP, [`crate::WhipIngest`]), with CORS.
///
/// `POST /live/{name}/whep`, `PATCH`/`DELETE /live/{name}/whep/{id}`, with CORS.
pub fn router(whep: WebRtc) -> Router {
    Router::new()
        .route("/live/{name}/whep", post(offer))
        .route("/live/{name}/whep/{id}", patch(trickle).delete(end_session))
        .merge(crate::whip::routes())
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(Any)
                .allow_headers(Any)
                .expose_headers([header::LOCATION, header::ETAG, header::LINK]),
        )
        .with_state(whep)
}

/// The WHEP (and WHIP) URLs where WebRTC is off: 503 with the reason, so that a player falls
/// back to LL-HLS at once (a 404 would read as "not live yet").
pub fn disabled_router() -> Router {
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
        .route("/whip", post(whip_off))
        .route("/whip/{key}", post(whip_off))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods(Any)
                .allow_headers(Any),
        )
}

async fn whip_off() -> Response {
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        "WebRTC is off on this server; publish over RTMP: rtmp://HOST:1935/live/STREAM_KEY",
    )
}

/// 201 Created for a WHEP or WHIP session: the SDP answer, the session resource
/// (`Location`) and its entity tag (the session id), never cached.
pub(crate) fn created(sdp_answer: String, location: &str, id: &str) -> Response {
    let mut response = (StatusCode::CREATED, sdp_answer).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{id}\"")) {
        h.insert(header::ETAG, v);
    }
    response
}

pub(crate) fn answer(status: StatusCode, message: impl std::fmt::Display) -> Response {
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
    State(whep): State<WebRtc>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    client: origin::ClientAddr,
    headers: HeaderMap,
    OfferBody(body): OfferBody,
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
        .send(driver::Command::Add {
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
    created(sdp_answer, &format!("/live/{name}/whep/{id}"), &id)
}

/// The highest transcoded rung (the ladder announces largest first), else the source.
fn default_rendition(names: &[String]) -> Option<String> {
    names
        .iter()
        .find(|n| n.as_str() != origin::SOURCE_RENDITION)
        .or(names.first())
        .cloned()
}

/// `PATCH`: trickle ICE ([`patch_session`]).
async fn trickle(
    State(whep): State<WebRtc>,
    Path((_name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    patch_session(&whep, id, &headers, "WHEP").await
}

/// `PATCH` on a session (WHEP or WHIP): trickle ICE. As an ICE-lite server we need no
/// candidates of the peer (its checks reach us and teach us its address), so a
/// fragment is accepted and nothing is sent back (204).
pub(crate) async fn patch_session(
    state: &WebRtc,
    id: String,
    headers: &HeaderMap,
    what: &str,
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
    if state
        .commands
        .send(driver::Command::Exists { id, found })
        .await
        .is_err()
        || !rx.await.unwrap_or(false)
    {
        return answer(StatusCode::NOT_FOUND, format!("no such {what} session"));
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `DELETE`: the viewer leaves.
async fn end_session(
    State(whep): State<WebRtc>,
    Path((_name, id)): Path<(String, String)>,
) -> Response {
    delete_session(&whep, id, "WHEP").await
}

/// `DELETE` on a session (WHEP or WHIP): it ends.
pub(crate) async fn delete_session(state: &WebRtc, id: String, what: &str) -> Response {
    let (found, rx) = oneshot::channel();
    if state
        .commands
        .send(driver::Command::Remove { id, found })
        .await
        .is_err()
        || !rx.await.unwrap_or(false)
    {
        return answer(StatusCode::NOT_FOUND, format!("no such {what} session"));
    }
    StatusCode::OK.into_response()
}
