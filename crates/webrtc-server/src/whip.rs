//! The WHIP resource (RFC 9725): `POST /whip/KEY`, or `POST /whip` with
//! `Authorization: Bearer KEY`, takes a publisher's SDP offer; the answer's `Location`
//! is the session, `/whip/session/ID`, which `DELETE` ends. `PATCH` with a trickle ICE
//! fragment is answered 204 and the fragment is not needed: the server is ICE-lite,
//! the publisher's checks reach it and teach it the publisher's address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Instant;

use access::{KeyRejection, PublishRequest, redact};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post};
use webrtc::{OfferError, WhipSession};

use crate::driver::{self, Publish};
use crate::whep::{OfferBody, answer, created, delete_session, patch_session};
use crate::{WebRtc, WhipIngest};

/// The WHIP routes (state: the server's).
pub(crate) fn routes() -> Router<WebRtc> {
    Router::new()
        .route("/whip", post(offer_bearer).options(options))
        .route("/whip/{key}", post(offer_in_path).options(options))
        .route(
            "/whip/session/{id}",
            patch(trickle).delete(end_session).options(options),
        )
}

/// `OPTIONS` outside CORS preflight (which the CORS layer answers): what is accepted.
async fn options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (
                header::HeaderName::from_static("accept-post"),
                "application/sdp",
            ),
            (header::ALLOW, "OPTIONS, POST, PATCH, DELETE"),
        ],
    )
        .into_response()
}

async fn offer_in_path(
    State(state): State<WebRtc>,
    Path(key): Path<String>,
    client: origin::ClientAddr,
    headers: HeaderMap,
    OfferBody(body): OfferBody,
) -> Response {
    offer(state, Some(key), client.0, headers, body).await
}

async fn offer_bearer(
    State(state): State<WebRtc>,
    client: origin::ClientAddr,
    headers: HeaderMap,
    OfferBody(body): OfferBody,
) -> Response {
    offer(state, None, client.0, headers, body).await
}

/// The stream key: the path's, else the Bearer token.
fn stream_key(in_path: Option<String>, headers: &HeaderMap) -> Option<String> {
    in_path.filter(|k| !k.is_empty()).or_else(|| {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
    })
}

async fn offer(
    state: WebRtc,
    key: Option<String>,
    client: Option<IpAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(ingest) = state.whip.clone() else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "WHIP ingest is off on this server; publish over RTMP: rtmp://HOST:1935/live/STREAM_KEY",
        );
    };
    let (key, sdp) = match read_offer(key, &headers, &body) {
        Ok(offer) => offer,
        Err(refusal) => return *refusal,
    };
    let peer = SocketAddr::new(client.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), 0);
    let name = match authorize(&ingest, key, peer).await {
        Ok(name) => name,
        Err(refusal) => return refusal,
    };
    // Reserve a place under the cap before the work of answering.
    if let Err(refusal) = reserve_session(&state) {
        return *refusal;
    }
    let release = || {
        state.sessions.fetch_sub(1, Ordering::AcqRel);
    };
    let (session, sdp_answer) = match WhipSession::answer(&state.config, sdp, Instant::now()) {
        Ok(s) => s,
        Err(e) => {
            release();
            metrics::counter!("whip_publish_rejected_total", "reason" => "offer").increment(1);
            tracing::warn!(stream = %name, %peer, reason = %e, "WHIP offer refused");
            let status = match e {
                OfferError::NoH264 => StatusCode::NOT_ACCEPTABLE,
                OfferError::Malformed(_) | OfferError::Rejected(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return answer(status, e);
        }
    };
    let publisher = match ingest.hub.publish(&name, peer.ip().to_string()) {
        Ok(p) => p,
        Err(e) => {
            // Another publisher won the race since the check.
            release();
            metrics::counter!("whip_publish_rejected_total", "reason" => "busy").increment(1);
            return answer(StatusCode::CONFLICT, busy(&name, e));
        }
    };
    let id = format!("{:032x}", rand::random::<u128>());
    let publish = Publish::new(name.clone(), session, publisher, &ingest, Instant::now());
    let added = state
        .commands
        .send(driver::Command::AddPublish {
            id: id.clone(),
            publish: Box::new(publish),
        })
        .await;
    if added.is_err() {
        release();
        return answer(StatusCode::SERVICE_UNAVAILABLE, "WebRTC is shutting down");
    }
    metrics::counter!("whip_publishes_total").increment(1);
    tracing::info!(stream = %name, %peer, session = %id, "publishing over WHIP");
    created(sdp_answer, &format!("/whip/session/{id}"), &id)
}

fn busy(name: &str, detail: impl std::fmt::Display) -> String {
    format!("stream '{name}' already has a live publisher ({detail}); stop the other encoder first")
}

/// The stream key and the SDP offer of a WHIP POST, or the refusal.
fn read_offer<'a>(
    key: Option<String>,
    headers: &HeaderMap,
    body: &'a Bytes,
) -> Result<(String, &'a str), Box<Response>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/sdp") {
        return Err(Box::new(answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a WHIP offer is an SDP offer with Content-Type: application/sdp",
        )));
    }
    let Some(key) = stream_key(key, headers) else {
        let mut response = answer(
            StatusCode::UNAUTHORIZED,
            "no stream key: POST to /whip/STREAM_KEY, or to /whip with Authorization: Bearer STREAM_KEY",
        );
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(Box::new(response));
    };
    let Ok(sdp) = std::str::from_utf8(body) else {
        return Err(Box::new(answer(
            StatusCode::BAD_REQUEST,
            "the SDP offer is not UTF-8 text",
        )));
    };
    Ok((key, sdp))
}

/// Takes a place under the session cap, or the refusal.
fn reserve_session(state: &WebRtc) -> Result<(), Box<Response>> {
    let reserved = state
        .sessions
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < state.max_sessions).then_some(n + 1)
        });
    if reserved.is_err() {
        metrics::counter!("whip_publish_rejected_total", "reason" => "cap").increment(1);
        return Err(Box::new(answer(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "this server has its maximum of {} WebRTC sessions (--webrtc-max-sessions); publish over RTMP or SRT",
                state.max_sessions
            ),
        )));
    }
    Ok(())
}

/// The stream `key` may publish, as an RTMP or SRT publish is checked, or the refusal.
async fn authorize(ingest: &WhipIngest, key: String, peer: SocketAddr) -> Result<String, Response> {
    let redacted = redact(&key);
    let request = PublishRequest {
        // The WHIP URL has no application; the key check treats it as `live`.
        app: "live".into(),
        stream_key: key,
        peer,
    };
    let name = match ingest.keys.authorize(&request).await {
        Ok(name) => name,
        Err(e) => {
            let status = match e {
                KeyRejection::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::FORBIDDEN,
            };
            metrics::counter!("whip_publish_rejected_total", "reason" => "key").increment(1);
            tracing::warn!(%peer, key = %redacted, reason = %e, "WHIP publish refused");
            return Err(answer(status, e));
        }
    };
    if ingest.hub.session(&name).is_some_and(|s| !s.is_ended()) {
        metrics::counter!("whip_publish_rejected_total", "reason" => "busy").increment(1);
        tracing::warn!(%peer, stream = %name, "WHIP publish refused: the stream is live");
        return Err(answer(StatusCode::CONFLICT, busy(&name, "live")));
    }
    Ok(name)
}

/// `PATCH`: trickle ICE, answered 204 (the server is ICE-lite).
async fn trickle(
    State(state): State<WebRtc>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    patch_session(&state, id, &headers, "WHIP").await
}

/// `DELETE`: the publisher stops; the stream goes offline as when an RTMP encoder
/// disconnects.
async fn end_session(State(state): State<WebRtc>, Path(id): Path<String>) -> Response {
    delete_session(&state, id, "WHIP").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_from_the_path_or_the_bearer_token() {
        let mut h = HeaderMap::new();
        assert_eq!(stream_key(Some("abc".into()), &h), Some("abc".into()));
        assert_eq!(stream_key(None, &h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert_eq!(stream_key(None, &h), Some("s3cret".into()));
        assert_eq!(stream_key(Some("abc".into()), &h), Some("abc".into()));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(stream_key(None, &h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer   "));
        assert_eq!(stream_key(None, &h), None);
    }
}
