//! `/vod/…`: finished recordings over HTTP, read from the store.

use std::net::{IpAddr, SocketAddr};

use access::playback::{PlaybackKeys, TokenError, token_in_query, with_token};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use media::live_path::{MEDIA_PLAYLIST, MULTIVARIANT_PLAYLIST, MediaObject, check_rendition_name};
use object_store::ObjectStoreExt;

use crate::poster::POSTER;
use crate::recorder::Recorder;
use crate::vod;

/// A finished recording does not change; it may be deleted, so not `immutable`.
const VOD_CACHE: &str = "public, max-age=3600";
/// A private stream's recording: kept by the viewer's browser only, never by a shared
/// cache (the token is not part of a cache key).
const PRIVATE_VOD_CACHE: &str = "private, max-age=3600";

#[derive(Clone)]
struct VodState {
    recorder: Recorder,
    /// Verify the tokens of private streams' recordings (the keys origin and edge use).
    keys: PlaybackKeys,
}

/// Who asks, and with what token: from the request.
struct Asker {
    query: Option<String>,
    client: Option<IpAddr>,
}

/// How a recording's objects are answered: to anyone, or to the bearer of `token`.
enum Access {
    Public,
    Private { token: String },
}

impl Access {
    fn cache(&self) -> &'static str {
        match self {
            Access::Public => VOD_CACHE,
            Access::Private { .. } => PRIVATE_VOD_CACHE,
        }
    }
}
const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// The routes for finished recordings:
/// `/vod/ID/master.m3u8`, `/vod/ID/RENDITION/(index.m3u8|init-V.mp4|seg-N.m4s)`, the
/// download `/vod/ID/RENDITION.mp4` and the poster `/vod/ID/poster.jpg`.
/// A private stream's recording needs the stream's playback token (`?token=`, checked
/// with `keys`), which its playlists carry into every URI, as live playlists do.
pub fn router(recorder: Recorder, keys: PlaybackKeys) -> Router {
    Router::new()
        .route("/vod/{id}/{file}", get(recording_file))
        .route("/vod/{id}/{rendition}/{file}", get(rendition_file))
        .with_state(VodState { recorder, keys })
}

/// Why a recording's object is not answered.
enum Refusal {
    NoSuchRecording,
    Token(TokenError),
}

impl Refusal {
    fn response(&self) -> Response {
        match self {
            Refusal::NoSuchRecording => not_found(),
            Refusal::Token(e) => refused(e),
        }
    }
}

/// Whether `asker` may have the objects of recording `id`.
fn check_access(state: &VodState, id: &str, asker: &Asker) -> Result<Access, Refusal> {
    let Some(recording) = state.recorder.get(id) else {
        return Err(Refusal::NoSuchRecording);
    };
    if !recording.private {
        return Ok(Access::Public);
    }
    let token = token_in_query(asker.query.as_deref()).unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match state
        .keys
        .verify(token, &recording.stream, asker.client, now)
    {
        Ok(_) => Ok(Access::Private {
            token: token.to_owned(),
        }),
        Err(e) => Err(Refusal::Token(e)),
    }
}

/// 401 (no valid token) or 403 (a token that does not cover this), saying why.
fn refused(e: &TokenError) -> Response {
    let status = if e.is_forbidden() {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNAUTHORIZED
    };
    let mut response = error(status, &e.to_string());
    response.headers_mut().insert(
        header::HeaderName::from_static(access::playback::ACCESS_HEADER),
        HeaderValue::from_static(access::playback::ACCESS_PRIVATE),
    );
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

fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such recording or file (GET /api/recordings lists the recordings)",
    )
}

/// The peer's address is there when the server runs with `ConnectInfo` (it does).
fn asker(query: Option<String>, request: &Request) -> Asker {
    Asker {
        query,
        client: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
    }
}

async fn recording_file(
    State(state): State<VodState>,
    Path((id, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    if !vod::valid_id(&id) {
        return not_found();
    }
    let access = match check_access(&state, &id, &asker(query, &request)) {
        Ok(access) => access,
        Err(refusal) => return refusal.response(),
    };
    let recorder = &state.recorder;
    if file == MULTIVARIANT_PLAYLIST {
        return object(
            recorder,
            vod::object_path(&id, None, &file),
            PLAYLIST_TYPE,
            &access,
        )
        .await;
    }
    if file == POSTER {
        return object(
            recorder,
            vod::object_path(&id, None, &file),
            "image/jpeg",
            &access,
        )
        .await;
    }
    match file.strip_suffix(".mp4") {
        Some(rendition) if check_rendition_name(rendition).is_ok() => {
            download(recorder, &id, rendition, &access).await
        }
        _ => not_found(),
    }
}

async fn rendition_file(
    State(state): State<VodState>,
    Path((id, rendition, file)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    request: Request,
) -> Response {
    if !vod::valid_id(&id) || check_rendition_name(&rendition).is_err() {
        return not_found();
    }
    let access = match check_access(&state, &id, &asker(query, &request)) {
        Ok(access) => access,
        Err(refusal) => return refusal.response(),
    };
    let content_type = if file == MEDIA_PLAYLIST {
        PLAYLIST_TYPE
    } else {
        match MediaObject::parse(&file) {
            Some(MediaObject::Init { .. } | MediaObject::Segment { .. }) => "video/mp4",
            _ => return not_found(),
        }
    };
    object(
        &state.recorder,
        vod::object_path(&id, Some(&rendition), &file),
        content_type,
        &access,
    )
    .await
}

async fn object(
    recorder: &Recorder,
    path: object_store::path::Path,
    content_type: &'static str,
    access: &Access,
) -> Response {
    match recorder.store().get(&path).await {
        Ok(got) => match got.bytes().await {
            Ok(bytes) => {
                // A private recording's playlists carry the token into every URI.
                let bytes = match access {
                    Access::Private { token } if content_type == PLAYLIST_TYPE => {
                        bytes::Bytes::from(with_token(&String::from_utf8_lossy(&bytes), token))
                    }
                    _ => bytes,
                };
                (
                    [
                        (header::CONTENT_TYPE, content_type),
                        (header::CACHE_CONTROL, access.cache()),
                    ],
                    bytes,
                )
                    .into_response()
            }
            Err(e) => store_error(&path, &e),
        },
        Err(object_store::Error::NotFound { .. }) => not_found(),
        Err(e) => store_error(&path, &e),
    }
}

fn store_error(path: &object_store::path::Path, e: &object_store::Error) -> Response {
    tracing::warn!(object = %path, error = %e, "cannot read a recording from the store");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the recording store cannot be read right now; try again",
    )
}

/// The rendition as one fragmented MP4: its init segment, then every segment in
/// order, streamed from the store as read.
async fn download(recorder: &Recorder, id: &str, rendition: &str, access: &Access) -> Response {
    let playlist_path = vod::object_path(id, Some(rendition), MEDIA_PLAYLIST);
    let playlist = match recorder.store().get(&playlist_path).await {
        Ok(got) => match got.bytes().await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) => return store_error(&playlist_path, &e),
        },
        Err(object_store::Error::NotFound { .. }) => return not_found(),
        Err(e) => return store_error(&playlist_path, &e),
    };
    let Some(objects) = vod::mp4_objects(&playlist) else {
        return error(
            StatusCode::CONFLICT,
            "this rendition changed its tracks during the recording, so it has no single MP4; play /vod/ID/master.m3u8 instead",
        );
    };
    let store = recorder.store().clone();
    let id = id.to_owned();
    let rendition_name = rendition.to_owned();
    let body = futures::stream::iter(objects)
        .then(move |file| {
            let store = store.clone();
            let path = vod::object_path(&id, Some(&rendition_name), &file);
            async move {
                let got = store.get(&path).await?;
                got.bytes().await
            }
        })
        .map(|r| {
            r.map_err(|e| {
                tracing::warn!(error = %e, "MP4 download broke off: a segment could not be read");
                std::io::Error::other(e)
            })
        });
    (
        [
            (header::CONTENT_TYPE, "video/mp4".to_owned()),
            (header::CACHE_CONTROL, access.cache().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{rendition}.mp4\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
