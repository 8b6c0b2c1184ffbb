//! DVR over HTTP, beside the origin's live objects (docs/recording.md):
//!
//! ```text
//! /live/NAME/dvr.m3u8                     the DVR multivariant playlist
//! /live/NAME/RENDITION/dvr.m3u8           a rendition's window (PDT on every segment)
//! /live/NAME/RENDITION/rec-T/seg-N.m4s    recorded objects (init-V.mp4 likewise)
//! ```
//!
//! The recorder keeps the window and the objects; this module checks a private
//! stream's token by the origin's rule, carries it into the playlists' URIs, and sets
//! the cache headers. The live playlists are not touched.

use crate::LiveStreams;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use media::live_path::{DVR_PLAYLIST, LiveObject, LivePath};
use record::Recorder;

/// A DVR playlist changes with every segment: a cache may keep it a second, so that
/// an edge in front of many viewers fetches it once per second at most.
const PLAYLIST_CACHE: &str = "public, max-age=1";
/// A recorded object's name holds its recording's start, so it is never reused for
/// other bytes: immutable. A day, not a year: a recording may be deleted.
const RECORDED_CACHE: &str = "public, max-age=86400, immutable";
const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

#[derive(Clone)]
struct DvrState {
    streams: LiveStreams,
    recorder: Recorder,
}

pub fn router(streams: LiveStreams, recorder: Recorder) -> Router {
    Router::new()
        .route(&format!("/live/{{name}}/{DVR_PLAYLIST}"), get(multivariant))
        .route(
            &format!("/live/{{name}}/{{rendition}}/{DVR_PLAYLIST}"),
            get(media_playlist),
        )
        .route(
            "/live/{name}/{rendition}/{recording}/{object}",
            get(recorded_object),
        )
        .with_state(DvrState { streams, recorder })
}

fn answer(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        format!("{message}\n"),
    )
        .into_response()
}

fn no_window(name: &str) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        format!(
            "stream '{name}' has no DVR window: it is not live, not recorded (PATCH /api/streams/{name} {{\"record\": true}}), or --dvr-window is 0; /live/{name}/master.m3u8 plays it live"
        ),
    )
}

/// The token check of a private stream: `Err` with the refusal, else the token to
/// carry into the playlists' URIs (`None` for a public stream).
fn admit(
    state: &DvrState,
    name: &str,
    raw: Option<&str>,
    client: &crate::ClientAddr,
) -> Result<Option<String>, Box<Response>> {
    if let Some(refusal) = crate::playback_refusal(&state.streams, name, raw, client.0) {
        return Err(Box::new(refusal));
    }
    Ok(state.streams.is_private(name).then(|| {
        access::playback::token_in_query(raw)
            .unwrap_or_default()
            .to_owned()
    }))
}

/// Marks a private stream's answer, so that an edge in front learns to check tokens.
fn mark(mut response: Response, private: bool) -> Response {
    if private {
        response.headers_mut().insert(
            header::HeaderName::from_static(access::playback::ACCESS_HEADER),
            HeaderValue::from_static(access::playback::ACCESS_PRIVATE),
        );
    }
    response
}

fn playlist(text: String, token: Option<&str>) -> Response {
    let text = match token {
        Some(t) => access::playback::with_token(&text, t),
        None => text,
    };
    mark(
        (
            [
                (header::CONTENT_TYPE, PLAYLIST_TYPE),
                (header::CACHE_CONTROL, PLAYLIST_CACHE),
            ],
            text,
        )
            .into_response(),
        token.is_some(),
    )
}

async fn multivariant(
    State(state): State<DvrState>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    client: crate::ClientAddr,
) -> Response {
    let token = match admit(&state, &name, raw.as_deref(), &client) {
        Ok(t) => t,
        Err(refusal) => return *refusal,
    };
    match state.recorder.dvr_multivariant(&name) {
        Some(text) => playlist(text, token.as_deref()),
        None => mark(no_window(&name), token.is_some()),
    }
}

async fn media_playlist(
    State(state): State<DvrState>,
    Path((name, rendition)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    client: crate::ClientAddr,
) -> Response {
    let token = match admit(&state, &name, raw.as_deref(), &client) {
        Ok(t) => t,
        Err(refusal) => return *refusal,
    };
    match state.recorder.dvr_playlist(&name, &rendition) {
        Some(text) => playlist(text, token.as_deref()),
        None => mark(no_window(&name), token.is_some()),
    }
}

async fn recorded_object(
    State(state): State<DvrState>,
    uri: Uri,
    client: crate::ClientAddr,
) -> Response {
    let path = match LivePath::from_request_path(uri.path()) {
        Ok(p) => p,
        Err(e) => return answer(StatusCode::NOT_FOUND, e.to_string()),
    };
    let LiveObject::Recorded {
        rendition,
        recording,
        object,
    } = path.object()
    else {
        return answer(
            StatusCode::NOT_FOUND,
            "not a recorded object: expected /live/NAME/RENDITION/rec-T/(init-V.mp4|seg-N.m4s)"
                .into(),
        );
    };
    let name = path.stream();
    let token = match admit(&state, name, uri.query(), &client) {
        Ok(t) => t,
        Err(refusal) => return *refusal,
    };
    let private = token.is_some();
    match state
        .recorder
        .dvr_object(name, rendition, *recording, *object)
        .await
    {
        Ok(Some(bytes)) => mark(
            (
                [
                    (header::CONTENT_TYPE, "video/mp4"),
                    (header::CACHE_CONTROL, RECORDED_CACHE),
                ],
                bytes,
            )
                .into_response(),
            private,
        ),
        Ok(None) => mark(
            answer(
                StatusCode::NOT_FOUND,
                format!(
                    "no such recorded object (its recording was deleted, or lost that segment): {path}"
                ),
            ),
            private,
        ),
        Err(e) => {
            tracing::warn!(object = %path, error = %e, "cannot read a recorded object from the store");
            mark(
                answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the recording store cannot be read right now; try again".into(),
                ),
                private,
            )
        }
    }
}
