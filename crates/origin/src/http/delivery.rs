//! Delivery events: every `/live/…` request this origin answers becomes one
//! [`analytics::DeliveryEvent`], handed to an [`Emitter`] when its body ends.
//!
//! The event is emitted from the response body, not the handler, so that `bytes` is
//! what was really sent (a streamed part grows while it is sent; a client may leave
//! half-way) and a request held for a blocking reload is counted when it is answered.
//! The emitter never waits, so none of this can slow serving down.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use analytics::{DeliveryEvent, Emitter, ObjectKind};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use package::MediaObject;
use tokio::time::Instant;

/// The middleware: records the request, runs it, wraps the answer's body.
pub(super) async fn record(
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
    let start = Instant::now();
    let ts = analytics::now_ms();
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

/// Stream, rendition and kind of a `/live/…` path.
fn target(path: &str) -> Option<(String, Option<String>, ObjectKind)> {
    let mut parts = path.strip_prefix("/live/")?.split('/');
    let stream = parts.next().filter(|s| !s.is_empty())?;
    let (rendition, kind) = match (parts.next(), parts.next(), parts.next()) {
        (Some("master.m3u8"), None, None) => (None, ObjectKind::Multivariant),
        (Some(rendition), Some("index.m3u8"), None) => (Some(rendition), ObjectKind::Playlist),
        (Some(rendition), Some(object), None) => (
            Some(rendition),
            match MediaObject::parse(object) {
                Some(MediaObject::Init { .. }) => ObjectKind::Init,
                Some(MediaObject::Segment { .. }) => ObjectKind::Segment,
                Some(MediaObject::Part { .. }) => ObjectKind::Part,
                None => ObjectKind::Other,
            },
        ),
        _ => (None, ObjectKind::Other),
    };
    Some((stream.to_owned(), rendition.map(str::to_owned), kind))
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
    }
}
