//! `/api/streams/{name}/restreams`: a stream's external RTMP targets (admin).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{Admin, ApiError, ApiState, ErrorBody, JsonBody, created, path_id, path_name};
use crate::restream::{NewRestreamTarget, RestreamList, RestreamTargetWithUrl};

/// Add a restream target: while the stream is live, its source rendition is forwarded
/// there (no re-encode). The answer holds the URL in full, shown this once.
#[utoipa::path(
    post,
    path = "/api/streams/{name}/restreams",
    tag = "restreams",
    params(("name" = String, Path, description = "The stream's public name")),
    request_body = NewRestreamTarget,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Added; `full_url` is shown only now", body = RestreamTargetWithUrl),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 422, description = "The URL is invalid, or the stream has too many targets", body = ErrorBody),
    )
)]
pub(super) async fn add_restream(
    _: Admin,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<NewRestreamTarget>,
) -> Result<Response, ApiError> {
    let added = state.store.add_restream(&path_name(&name)?, body).await?;
    Ok(created(added))
}

/// List a stream's restream targets (keys redacted) with their state: `idle`,
/// `connecting`, `live`, or `failed` with the reason, and the bytes sent.
#[utoipa::path(
    get,
    path = "/api/streams/{name}/restreams",
    tag = "restreams",
    params(("name" = String, Path, description = "The stream's public name")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The targets", body = RestreamList),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
    )
)]
pub(super) async fn list_restreams(
    _: Admin,
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<RestreamList>, ApiError> {
    let name = path_name(&name)?;
    // An unknown stream is a 404, not an empty list.
    state.store.get(&name).await?;
    Ok(Json(RestreamList {
        restreams: state.store.restreams(&name).await?,
    }))
}

/// Remove a restream target. A forwarding in progress stops within seconds.
#[utoipa::path(
    delete,
    path = "/api/streams/{name}/restreams/{id}",
    tag = "restreams",
    params(
        ("name" = String, Path, description = "The stream's public name"),
        ("id" = i64, Path, description = "The target's id"),
    ),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such stream or target", body = ErrorBody),
    )
)]
pub(super) async fn delete_restream(
    _: Admin,
    State(state): State<ApiState>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let name = path_name(&name)?;
    let id = path_id(&id, || {
        format!("stream '{name}' has no restream target '{id}'")
    })?;
    state.store.delete_restream(&name, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
