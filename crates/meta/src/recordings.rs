//! The recordings API: `GET /api/recordings`, `GET /api/streams/{name}/recordings`,
//! `DELETE /api/recordings/{id}`. The recordings themselves are the recorder's (a
//! data-path crate this one does not depend on): it answers through
//! [`RecordingCatalog`], which the binary implements.

use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::ErrorBody;
use crate::model::StreamName;
use crate::secret::AdminToken;

/// A finished recording: a VOD asset at `/vod/{id}/master.m3u8`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordingInfo {
    #[schema(example = "studio-1764745200000")]
    pub id: String,
    /// The stream it recorded.
    pub stream: String,
    /// Milliseconds since the Unix epoch: the first recorded segment's wall clock.
    pub started_at: i64,
    /// Milliseconds since the Unix epoch: when the stream ended.
    pub ended_at: i64,
    /// Media duration of the longest rendition, milliseconds.
    pub duration_ms: u64,
    /// Bytes stored, all renditions.
    pub bytes: u64,
    /// Rendition names: each has `/vod/{id}/{rendition}/index.m3u8` and the download
    /// `/vod/{id}/{rendition}.mp4`.
    pub renditions: Vec<String>,
    /// Segments missing from the recording (the store was slow or failing).
    pub gaps: u64,
    /// The stream's title, description and tags when it ended.
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    /// `/vod/{id}/master.m3u8`
    pub playlist: String,
    /// `/vod/{id}/poster.jpg`, a JPEG of a keyframe a few seconds in; absent when no
    /// poster could be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "/vod/studio-1764745200000/poster.jpg")]
    pub poster: Option<String>,
}

/// Where the recordings are: implemented by the binary over the recorder.
pub trait RecordingCatalog: Send + Sync {
    /// Every finished recording, newest first.
    fn list(&self) -> Vec<RecordingInfo>;
    /// Deletes a recording and its media: `Ok(false)` if there is none, `Err` with a
    /// reason when the store failed.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, String>>;
}

#[derive(Clone)]
struct RecordingsState {
    catalog: Arc<dyn RecordingCatalog>,
    admin: Arc<AdminToken>,
}

/// The recordings routes and their OpenAPI document, to merge beside
/// [`crate::api::routes`].
pub fn routes(
    catalog: Arc<dyn RecordingCatalog>,
    admin: AdminToken,
) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, doc) = OpenApiRouter::new()
        .routes(routes!(list_recordings))
        .routes(routes!(stream_recordings))
        .routes(routes!(delete_recording))
        .split_for_parts();
    (
        router.with_state(RecordingsState {
            catalog,
            admin: Arc::new(admin),
        }),
        doc,
    )
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            error: message.to_owned(),
            field: None,
        }),
    )
        .into_response()
}

/// Proof that the request carries the admin token.
struct Admin;

impl FromRequestParts<RecordingsState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &RecordingsState,
    ) -> Result<Self, Response> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(token) if state.admin.matches(token.trim()) => Ok(Admin),
            Some(_) => Err(error(StatusCode::UNAUTHORIZED, "the admin token is wrong")),
            None => Err(error(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs the admin token: send Authorization: Bearer TOKEN",
            )),
        }
    }
}

/// Every finished recording, newest first.
#[utoipa::path(
    get,
    path = "/api/recordings",
    tag = "recordings",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Recordings, newest first", body = Vec<RecordingInfo>),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
    )
)]
async fn list_recordings(_: Admin, State(state): State<RecordingsState>) -> Response {
    Json(state.catalog.list()).into_response()
}

/// The finished recordings of one stream, newest first.
#[utoipa::path(
    get,
    path = "/api/streams/{name}/recordings",
    tag = "recordings",
    params(("name" = String, Path, description = "The stream's public name")),
    responses(
        (status = 200, description = "The stream's recordings, newest first", body = Vec<RecordingInfo>),
        (status = 404, description = "Not a valid stream name", body = ErrorBody),
    )
)]
async fn stream_recordings(
    State(state): State<RecordingsState>,
    Path(name): Path<String>,
) -> Response {
    if StreamName::parse(&name).is_err() {
        return error(StatusCode::NOT_FOUND, "no such stream");
    }
    let mine: Vec<RecordingInfo> = state
        .catalog
        .list()
        .into_iter()
        .filter(|r| r.stream == name)
        .collect();
    Json(mine).into_response()
}

/// Delete a recording and its media.
#[utoipa::path(
    delete,
    path = "/api/recordings/{id}",
    tag = "recordings",
    params(("id" = String, Path, description = "The recording's id")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such recording", body = ErrorBody),
        (status = 503, description = "The recording store failed; try again", body = ErrorBody),
    )
)]
async fn delete_recording(
    _: Admin,
    State(state): State<RecordingsState>,
    Path(id): Path<String>,
) -> Response {
    match state.catalog.delete(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, &format!("no recording '{id}'")),
        Err(reason) => {
            tracing::warn!(recording = %id, error = %reason, "cannot delete a recording");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("cannot delete the recording now: {reason}; try again"),
            )
        }
    }
}
