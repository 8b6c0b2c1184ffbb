//! `/api/…` passed through to the upstream, uncached: the viewer page served by an
//! edge reads its stream's metadata and event stream (SSE) and posts its QoE beacons
//! there, so a viewer sent to an edge by the router needs no other address.

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::server::Edge;

/// A request body larger than this is refused: the API takes small JSON documents.
const MAX_BODY: usize = 1 << 20;

/// Request headers that mean something to the API.
const REQUEST_HEADERS: [HeaderName; 6] = [
    header::ACCEPT,
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::USER_AGENT,
    header::ORIGIN,
    HeaderName::from_static("last-event-id"),
];

/// Response headers passed back (CORS included: the analytics API allows other origins).
const RESPONSE_HEADERS: [HeaderName; 6] = [
    header::CONTENT_TYPE,
    header::CACHE_CONTROL,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::ACCESS_CONTROL_ALLOW_METHODS,
    header::ACCESS_CONTROL_ALLOW_HEADERS,
    header::WWW_AUTHENTICATE,
];

pub(crate) async fn pass_through(State(edge): State<Edge>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body over {MAX_BODY} bytes\n"),
            )
                .into_response();
        }
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/api", |p| p.as_str())
        .to_owned();
    // The viewer's address for the upstream's analytics (believed there when this
    // edge is one of its --trusted-proxy).
    let forwarded_for = {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        let earlier = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        match (earlier, peer) {
            (Some(e), Some(p)) => Some(format!("{e}, {p}")),
            (None, Some(p)) => Some(p),
            (Some(e), None) => Some(e.to_owned()),
            (None, None) => None,
        }
    };
    // Only requests that change nothing are retried on another upstream after an
    // answer; a connection that never opened is safe to retry for any method.
    let idempotent = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mut tried = Vec::new();
    let mut last_error = String::from("no upstream configured");
    while let Some(index) = edge.upstreams().pick("", &tried, Instant::now()) {
        tried.push(index);
        let Some(upstream) = edge.upstreams().get(index) else {
            break;
        };
        let url = format!("{}{path_and_query}", upstream.base);
        let mut outgoing = edge.client().request(parts.method.clone(), &url);
        for name in &REQUEST_HEADERS {
            if let Some(v) = parts.headers.get(name) {
                outgoing = outgoing.header(name, v.clone());
            }
        }
        if let Some(f) = forwarded_for
            .as_deref()
            .and_then(|f| HeaderValue::from_str(f).ok())
        {
            outgoing = outgoing.header("x-forwarded-for", f);
        }
        let answer = tokio::time::timeout(
            edge.first_byte_timeout(),
            outgoing.body(body.clone()).send(),
        )
        .await;
        let answer = match answer {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                last_error = format!("{}: {e}", upstream.base);
                if e.is_connect() || idempotent {
                    continue;
                }
                break;
            }
            Err(_) => {
                last_error = format!("{} did not answer in time", upstream.base);
                if idempotent {
                    continue;
                }
                break;
            }
        };
        if answer.status().is_server_error() && idempotent && tried.len() < edge.upstreams().len() {
            last_error = format!("{} answered {}", upstream.base, answer.status());
            continue;
        }
        let mut response = Response::builder().status(answer.status());
        for name in &RESPONSE_HEADERS {
            if let Some(v) = answer.headers().get(name) {
                response = response.header(name, v.clone());
            }
        }
        // Streamed, so that an event stream (SSE) flows event by event.
        return response
            .body(Body::from_stream(answer.bytes_stream()))
            .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response());
    }
    // The viewer is not told which hosts stand behind this edge; the log is.
    tracing::warn!(path = %path_and_query, error = %last_error, "no upstream could answer an API request");
    (
        StatusCode::BAD_GATEWAY,
        "no upstream could answer this request; retry shortly\n",
    )
        .into_response()
}
