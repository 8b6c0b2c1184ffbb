//! The middleware that turns every `/live/…` request an origin or an edge answers
//! into one [`DeliveryEvent`], handed to an [`Emitter`] when its body ends.
//!
//! The event is emitted from the response body, not the handler, so that `bytes` is
//! what was really sent (a streamed part grows while it is sent; a client may leave
//! half-way) and a request held for a blocking reload is counted when it is answered.
//! The emitter never waits, so none of this can slow serving down.
//!
//! Objects are told apart by [`media::LivePath`], the one definition of the play URL
//! layout that the packager, the origin and the edge use as well (`master.m3u8`,
//! `RENDITION/index.m3u8`, `RENDITION/init-V.mp4`, `RENDITION/seg-N.m4s`,
//! `RENDITION/part-N-P.m4s`, `health`); the edge serves the same paths as the origin.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use media::live_path::{self, LiveObject, LivePath, LivePathError, MediaObject};
use tokio::time::Instant;

use crate::emit::Emitter;
use crate::event::{DeliveryEvent, ObjectKind, now_ms};

/// The middleware: records the request, runs it, wraps the answer's body. Use with
/// `axum::middleware::from_fn_with_state(emitter, record_delivery)`, and serve with
/// `into_make_service_with_connect_info::<SocketAddr>()` for client addresses.
pub async fn record_delivery(
    State(emitter): State<Emitter>,
    request: Request,
    next: Next,
) -> Response {
    if !emitter.is_enabled() || !matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let Some((stream, rendition, kind)) = target(request.uri().path()) else {
        return next.run(request).await;
    };
    if is_cache_fill(request.headers()) {
        return next.run(request).await;
    }
    let start = Instant::now();
    let ts = now_ms();
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let info = emitter.request_info(peer, request.headers(), request.uri().query());
    let response = next.run(request).await;
    let event = DeliveryEvent {
        ts,
        stream,
        rendition,
        kind,
        status: response.status().as_u16(),
        bytes: 0,
        ttfb_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        client: info.client,
        session: info.session,
        edge: emitter.edge().to_owned(),
        upstream: response
            .headers()
            .get(UPSTREAM_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|i| emitter.upstream(i))
            .map(str::to_owned),
        cmcd: info.cmcd,
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(
        parts,
        Body::new(CountingBody {
            inner: body,
            event: Some(event),
            emitter,
        }),
    )
}

/// Whether the request is a Rivulet edge filling its cache: not a viewer (the edge
/// reports the viewers it serves itself), so not counted here.
fn is_cache_fill(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.starts_with(EDGE_USER_AGENT))
}

/// The header by which an edge says which of its upstreams answered (an index).
const UPSTREAM_HEADER: &str = media::live_path::UPSTREAM_HEADER;

/// The start of the `User-Agent` a Rivulet edge sends upstream.
const EDGE_USER_AGENT: &str = "rivulet-edge/";

/// Stream, rendition and kind of a `/live/…` path (as sent, percent-encoded).
fn target(path: &str) -> Option<(String, Option<String>, ObjectKind)> {
    match LivePath::from_request_path(path) {
        Ok(live) => {
            let kind = match live.object() {
                LiveObject::Multivariant | LiveObject::DvrMultivariant => ObjectKind::Multivariant,
                LiveObject::MediaPlaylist { .. } | LiveObject::DvrPlaylist { .. } => {
                    ObjectKind::Playlist
                }
                LiveObject::Media { object, .. } | LiveObject::Recorded { object, .. } => {
                    match object {
                        MediaObject::Init { .. } => ObjectKind::Init,
                        MediaObject::Segment { .. } => ObjectKind::Segment,
                        MediaObject::Part { .. } => ObjectKind::Part,
                    }
                }
                LiveObject::Health => ObjectKind::Other,
            };
            Some((
                live.stream().to_owned(),
                live.rendition().map(str::to_owned),
                kind,
            ))
        }
        Err(LivePathError::NotLive) => None,
        Err(_) => {
            // Below a stream but not an object it serves: still a request its viewers
            // made (a 404), counted as "other". A path whose stream name breaks the
            // rule is no stream's (the analytics server would refuse the batch).
            let stream = path
                .strip_prefix(live_path::LIVE_PREFIX)?
                .split('/')
                .next()?;
            live_path::check_stream_name(stream).ok()?;
            Some((stream.to_owned(), None, ObjectKind::Other))
        }
    }
}

/// A response body that counts what passes through it and emits the event when it
/// ends or is dropped (the client went away).
struct CountingBody {
    inner: Body,
    event: Option<DeliveryEvent>,
    emitter: Emitter,
}

impl CountingBody {
    fn finish(&mut self) {
        if let Some(event) = self.event.take() {
            self.emitter.emit(event);
        }
    }
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(event)) = (frame.data_ref(), self.event.as_mut()) {
                    event.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // Keeps the exact length, so that Content-Length is still sent.
        self.inner.size_hint()
    }
}

impl Drop for CountingBody {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            target("/live/cam/master.m3u8"),
            Some(("cam".into(), None, ObjectKind::Multivariant))
        );
        assert_eq!(
            target("/live/cam/source/index.m3u8"),
            Some(("cam".into(), Some("source".into()), ObjectKind::Playlist))
        );
        assert_eq!(
            target("/live/cam/source/part-3-1.m4s").map(|t| t.2),
            Some(ObjectKind::Part)
        );
        assert_eq!(
            target("/live/cam/source/seg-3.m4s").map(|t| t.2),
            Some(ObjectKind::Segment)
        );
        assert_eq!(
            target("/live/cam/source/x/y").map(|t| t.2),
            Some(ObjectKind::Other)
        );
        assert_eq!(target("/api/streams"), None);
        assert_eq!(target("/live//master.m3u8"), None);
        let long = "x".repeat(live_path::MAX_STREAM_NAME_LEN + 1);
        assert_eq!(target(&format!("/live/{long}/master.m3u8")), None);
        let long = "r".repeat(live_path::MAX_RENDITION_NAME_LEN + 1);
        assert_eq!(
            target(&format!("/live/cam/{long}/index.m3u8")),
            Some(("cam".into(), None, ObjectKind::Other))
        );
    }

    /// The middleware over a router that serves `/live/…` objects as an origin or an
    /// edge does: one event per response, sent when its body has been sent.
    #[tokio::test]
    async fn requests_become_delivery_events() {
        use axum::body::Body;
        use axum::http::{Request, StatusCode, header};
        use http_body_util::BodyExt;
        use tower::ServiceExt;

        let (emitter, mut events) = crate::Emitter::channel(crate::EmitConfig {
            edge: "node-1".into(),
            ..Default::default()
        });
        let part = Bytes::from_static(&[7u8; 1234]);
        let served = part.clone();
        let app = axum::Router::new()
            .route(
                "/live/cam/source/part-0-0.m4s",
                axum::routing::get(move || {
                    let body = served.clone();
                    async move { body }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                emitter,
                record_delivery,
            ));
        let request = |uri: &str| Request::get(uri).body(Body::empty()).expect("request");
        let response = app
            .clone()
            .oneshot({
                let mut r = request("/live/cam/source/part-0-0.m4s?CMCD=br%3D800%2Csid%3D%22q1%22");
                r.headers_mut()
                    .insert("cmcd-request", "bl=1500".parse().expect("header"));
                r
            })
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_LENGTH], "1234");
        // Not emitted until the body has been sent.
        assert!(events.try_recv().is_err());
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        assert_eq!(body, part);
        let e = events.try_recv().expect("an event for the part");
        assert_eq!(
            (e.stream.as_str(), e.rendition.as_deref()),
            ("cam", Some("source"))
        );
        assert_eq!(e.kind, ObjectKind::Part);
        assert_eq!((e.status, e.bytes), (200, 1234));
        assert_eq!(e.session, "q1");
        assert_eq!(e.edge, "node-1");
        let cmcd = e.cmcd.expect("CMCD");
        assert_eq!((cmcd.br, cmcd.bl), (Some(800), Some(1500)));

        // A 404 is an event too; a session without CMCD gets a hashed id.
        let response = app
            .oneshot(request("/live/nope/master.m3u8"))
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        drop(response);
        let e = events.try_recv().expect("an event for the 404");
        assert_eq!((e.status, e.kind), (404, ObjectKind::Multivariant));
        assert!(e.session.starts_with("h-"), "{}", e.session);
    }
}
