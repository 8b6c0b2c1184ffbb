//! `/api/webhooks`: the admin's hooks and their delivery logs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Admin, ApiError, ApiState, ErrorBody, JsonBody, created};
use crate::webhooks::{DeliveryLog, NewWebhook, Webhook, WebhookUpdate, WebhookWithSecret};

/// The webhooks, by id.
#[derive(Serialize, Deserialize, ToSchema)]
pub(super) struct WebhookList {
    webhooks: Vec<Webhook>,
}

/// Add a webhook. The answer holds its signing secret in full, shown this once.
#[utoipa::path(
    post,
    path = "/api/webhooks",
    tag = "webhooks",
    request_body = NewWebhook,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Created; `signing_secret` is shown only now", body = WebhookWithSecret),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 409, description = "A webhook for this URL exists", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    )
)]
pub(super) async fn create_webhook(
    _: Admin,
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<NewWebhook>,
) -> Result<Response, ApiError> {
    let made = state.store.create_webhook(body).await?;
    Ok(created(made))
}

/// List the webhooks (secrets redacted).
#[utoipa::path(
    get,
    path = "/api/webhooks",
    tag = "webhooks",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The webhooks", body = WebhookList),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
    )
)]
pub(super) async fn list_webhooks(
    _: Admin,
    State(state): State<ApiState>,
) -> Result<Json<WebhookList>, ApiError> {
    Ok(Json(WebhookList {
        webhooks: state.store.webhooks().await?,
    }))
}

/// Get one webhook (secret redacted).
#[utoipa::path(
    get,
    path = "/api/webhooks/{id}",
    tag = "webhooks",
    params(("id" = i64, Path, description = "The webhook's id")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The webhook", body = Webhook),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
    )
)]
pub(super) async fn get_webhook(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    Ok(Json(state.store.webhook(path_id(&id)?).await?))
}

/// Change a webhook's URL, events or secret; absent fields stay as they are.
#[utoipa::path(
    patch,
    path = "/api/webhooks/{id}",
    tag = "webhooks",
    params(("id" = i64, Path, description = "The webhook's id")),
    request_body = WebhookUpdate,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The webhook after the change", body = Webhook),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
        (status = 409, description = "Another webhook has this URL", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    )
)]
pub(super) async fn update_webhook(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<WebhookUpdate>,
) -> Result<Json<Webhook>, ApiError> {
    Ok(Json(state.store.update_webhook(path_id(&id)?, body).await?))
}

/// Delete a webhook and its delivery log. Retries in progress stop.
#[utoipa::path(
    delete,
    path = "/api/webhooks/{id}",
    tag = "webhooks",
    params(("id" = i64, Path, description = "The webhook's id")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
    )
)]
pub(super) async fn delete_webhook(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete_webhook(path_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The last 100 delivery attempts of a webhook, newest first: status or error of each.
#[utoipa::path(
    get,
    path = "/api/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = i64, Path, description = "The webhook's id")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The delivery log", body = DeliveryLog),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such webhook", body = ErrorBody),
    )
)]
pub(super) async fn webhook_deliveries(
    _: Admin,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<DeliveryLog>, ApiError> {
    Ok(Json(DeliveryLog {
        deliveries: state.store.deliveries(path_id(&id)?).await?,
    }))
}

fn path_id(id: &str) -> Result<i64, ApiError> {
    super::path_id(id, || format!("no webhook with id '{id}'"))
}
