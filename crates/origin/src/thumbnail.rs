//! `GET /live/NAME/thumbnail.jpg[?width=W]`: the latest keyframe of the stream's
//! smallest rendition as a JPEG. Decoded only when asked, and at most once per
//! keyframe and width (the answer is kept until the next keyframe arrives). Served
//! beside the origin's media routes, not through them: a thumbnail is not a viewer in
//! analytics. The decoding (FFmpeg) is the transcoder's: the binary passes it in as a
//! [`Painter`], so that the origin stays free of codecs.

use std::collections::HashMap;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use media::{AvcConfig, CodecConfig};
use serde::Deserialize;

use crate::LiveStreams;

/// How long a client or cache may keep a thumbnail: about one keyframe interval.
const MAX_AGE_SECS: u32 = 2;
/// Thumbnails kept (stream, width); the oldest entries go first past this.
const CACHE_ENTRIES: usize = 256;

/// (stream, width) -> (the keyframe's decode time, its JPEG).
type ThumbnailCache = HashMap<(String, Option<u32>), (i64, Bytes)>;

/// Makes the JPEG of one keyframe (AVCC data, as the hub carries it), `width` pixels
/// wide or as wide as the picture. Blocking: it runs on a blocking thread.
pub trait Painter: Clone + Send + Sync + 'static {
    type Error: Display + Send;
    fn paint(
        &self,
        avc: &AvcConfig,
        data: &[u8],
        width: Option<u32>,
    ) -> Result<Vec<u8>, Self::Error>;
}

impl<F, E> Painter for F
where
    F: Fn(&AvcConfig, &[u8], Option<u32>) -> Result<Vec<u8>, E> + Clone + Send + Sync + 'static,
    E: Display + Send,
{
    type Error = E;
    fn paint(&self, avc: &AvcConfig, data: &[u8], width: Option<u32>) -> Result<Vec<u8>, E> {
        self(avc, data, width)
    }
}

#[derive(Clone)]
struct ThumbnailState<P> {
    streams: LiveStreams,
    painter: P,
    widths: RangeInclusive<u32>,
    cache: Arc<Mutex<ThumbnailCache>>,
}

#[derive(Deserialize)]
struct ThumbnailQuery {
    width: Option<u32>,
    /// A private stream's playback token (checked by the origin's rule).
    #[allow(dead_code)]
    token: Option<String>,
}

/// `GET /live/{name}/thumbnail.jpg`, painted by `painter`, `?width=` within `widths`.
pub fn router<P: Painter>(streams: LiveStreams, widths: RangeInclusive<u32>, painter: P) -> Router {
    Router::new()
        .route("/live/{name}/thumbnail.jpg", get(thumbnail::<P>))
        .with_state(ThumbnailState {
            streams,
            painter,
            widths,
            cache: Arc::default(),
        })
}

fn answer(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        format!("{message}\n"),
    )
        .into_response()
}

async fn thumbnail<P: Painter>(
    State(state): State<ThumbnailState<P>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    client: crate::ClientAddr,
    query: Result<Query<ThumbnailQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A private stream's picture is as private as its media.
    if let Some(refusal) = crate::playback_refusal(&state.streams, &name, raw.as_deref(), client.0)
    {
        return refusal;
    }
    let private = state.streams.is_private(&name);
    let (min, max) = (state.widths.start(), state.widths.end());
    let Ok(Query(query)) = query else {
        return answer(
            StatusCode::BAD_REQUEST,
            format!("width must be a whole number of pixels, {min} to {max}"),
        );
    };
    if query.width.is_some_and(|w| !state.widths.contains(&w)) {
        return answer(
            StatusCode::BAD_REQUEST,
            format!("width must be {min} to {max} pixels"),
        );
    }
    let Some(keyframe) = state.streams.get(&name).and_then(|s| s.latest_keyframe()) else {
        return answer(
            StatusCode::NOT_FOUND,
            format!("stream '{name}' is not live: no picture to show"),
        );
    };
    let key = (name.clone(), query.width);
    let dts = keyframe.frame.dts.ticks;
    let cached = state
        .cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .filter(|(at, _)| *at == dts)
        .map(|(_, jpeg)| jpeg.clone());
    let jpeg = match cached {
        Some(jpeg) => {
            metrics::counter!("thumbnails_total", "cached" => "true").increment(1);
            jpeg
        }
        None => {
            let Some(CodecConfig::Avc(avc)) =
                keyframe.tracks.video.as_ref().map(|t| t.codec.clone())
            else {
                return answer(
                    StatusCode::NOT_FOUND,
                    format!("stream '{name}' has no video"),
                );
            };
            let width = query.width;
            let data = keyframe.frame.data.clone();
            let painter = state.painter.clone();
            let made = tokio::task::spawn_blocking(move || painter.paint(&avc, &data, width)).await;
            let jpeg = match made {
                Ok(Ok(jpeg)) => Bytes::from(jpeg),
                Ok(Err(e)) => {
                    tracing::warn!(stream = %name, rendition = %keyframe.rendition, error = %e, "cannot make a thumbnail");
                    return answer(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("cannot make a thumbnail now: {e}"),
                    );
                }
                Err(e) => {
                    return answer(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the thumbnail task failed: {e}"),
                    );
                }
            };
            metrics::counter!("thumbnails_total", "cached" => "false").increment(1);
            let mut cache = state.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_ENTRIES && !cache.contains_key(&key) {
                // Bounded, not clever: a full cache starts over.
                cache.clear();
            }
            cache.insert(key, (dts, jpeg.clone()));
            jpeg
        }
    };
    (
        [
            (header::CONTENT_TYPE, "image/jpeg".to_owned()),
            (
                header::CACHE_CONTROL,
                format!(
                    "{}, max-age={MAX_AGE_SECS}",
                    if private { "private" } else { "public" }
                ),
            ),
        ],
        jpeg,
    )
        .into_response()
}
