//! `/vod/…`: finished recordings over HTTP, read from the store.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
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
const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";

/// The routes for finished recordings:
/// `/vod/ID/master.m3u8`, `/vod/ID/RENDITION/(index.m3u8|init-V.mp4|seg-N.m4s)`, the
/// download `/vod/ID/RENDITION.mp4` and the poster `/vod/ID/poster.jpg`.
pub fn router(recorder: Recorder) -> Router {
    Router::new()
        .route("/vod/{id}/{file}", get(recording_file))
        .route("/vod/{id}/{rendition}/{file}", get(rendition_file))
        .with_state(recorder)
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

async fn recording_file(
    State(recorder): State<Recorder>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    if !vod::valid_id(&id) || recorder.get(&id).is_none() {
        return not_found();
    }
    if file == MULTIVARIANT_PLAYLIST {
        return object(&recorder, vod::object_path(&id, None, &file), PLAYLIST_TYPE).await;
    }
    if file == POSTER {
        return object(&recorder, vod::object_path(&id, None, &file), "image/jpeg").await;
    }
    match file.strip_suffix(".mp4") {
        Some(rendition) if check_rendition_name(rendition).is_ok() => {
            download(&recorder, &id, rendition).await
        }
        _ => not_found(),
    }
}

async fn rendition_file(
    State(recorder): State<Recorder>,
    Path((id, rendition, file)): Path<(String, String, String)>,
) -> Response {
    if !vod::valid_id(&id)
        || check_rendition_name(&rendition).is_err()
        || recorder.get(&id).is_none()
    {
        return not_found();
    }
    let content_type = if file == MEDIA_PLAYLIST {
        PLAYLIST_TYPE
    } else {
        match MediaObject::parse(&file) {
            Some(MediaObject::Init { .. } | MediaObject::Segment { .. }) => "video/mp4",
            _ => return not_found(),
        }
    };
    object(
        &recorder,
        vod::object_path(&id, Some(&rendition), &file),
        content_type,
    )
    .await
}

async fn object(
    recorder: &Recorder,
    path: object_store::path::Path,
    content_type: &'static str,
) -> Response {
    match recorder.store().get(&path).await {
        Ok(got) => match got.bytes().await {
            Ok(bytes) => (
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, VOD_CACHE),
                ],
                bytes,
            )
                .into_response(),
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
async fn download(recorder: &Recorder, id: &str, rendition: &str) -> Response {
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
            (header::CACHE_CONTROL, VOD_CACHE.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{rendition}.mp4\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
