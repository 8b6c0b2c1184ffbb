//! The REST API under `/api`, its OpenAPI document and the SSE event stream.
//!
//! Routes and document come from the same `#[utoipa::path]` attributes (registered
//! with `utoipa_axum::routes!`), so the document at `/api/openapi.json` lists exactly
//! the routes served.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use futures::Stream as FuturesStream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::MetaError;
use crate::events::StreamEvent;
use crate::model::{
    Declared, DeclaredKey, KeyCheck, KeyOwner, ListQuery, LiveReport, MAX_PAGE, NewStream,
    NodeReset, NodeResetDone, Stream, StreamName, StreamPage, StreamUpdate, StreamWithKey,
    normalize_tag, validate_declared_key, validate_node_name,
};
use crate::secret::AdminToken;
use crate::store::MetaStore;
use access::playback::{Grant, PlaybackKeys};

mod restreams;
mod webhooks;

/// The `/api` routes, `/api/openapi.json` included, ready to merge into a server.
pub fn router(store: MetaStore, admin: AdminToken) -> axum::Router {
    let (router, doc) = routes(store, admin);
    router.merge(finish(doc))
}

/// The `/api` routes and their OpenAPI document, without `/api/openapi.json` and the
/// answer to unknown endpoints: for a server that merges other APIs (and their
/// documents) in and then adds those two with [`finish`].
pub fn routes(store: MetaStore, admin: AdminToken) -> (axum::Router, utoipa::openapi::OpenApi) {
    routes_with_limit(store, admin, MAX_BODY)
}

/// [`routes()`] taking request bodies of at most `max_body` bytes (larger ones are
/// answered 413) instead of [`MAX_BODY`].
pub fn routes_with_limit(
    store: MetaStore,
    admin: AdminToken,
    max_body: usize,
) -> (axum::Router, utoipa::openapi::OpenApi) {
    routes_with_keys(store, admin, max_body, PlaybackKeys::default())
}

/// [`routes_with_limit`] minting playback tokens for private streams with
/// `playback_keys` (`POST /api/streams/{name}/tokens`; without keys it answers 503).
pub fn routes_with_keys(
    store: MetaStore,
    admin: AdminToken,
    max_body: usize,
    playback_keys: PlaybackKeys,
) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, doc) = api_router().split_for_parts();
    let router = router.with_state(ApiState {
        store,
        admin: Arc::new(admin),
        max_body,
        playback_keys: Arc::new(playback_keys),
    });
    (router, doc)
}

/// `/api/openapi.json` serving `doc`, and a JSON 404 for every other unknown `/api/…`.
pub fn finish(doc: utoipa::openapi::OpenApi) -> axum::Router {
    // Serialised once: the document does not change while the server runs.
    let doc = Bytes::from(doc.to_pretty_json().unwrap_or_else(|_| "{}".into()));
    axum::Router::new()
        .route(
            "/api/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc) }
            }),
        )
        .route("/api/{*rest}", any(unknown_endpoint))
}

/// A document without routes, for a server that has no metadata API of its own
/// (`serve --meta-url`) but merges others' documents in before [`finish`].
pub fn empty_openapi() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApiBuilder::new()
        .info(utoipa::openapi::Info::new(
            "Rivulet API",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

/// The OpenAPI document of [`router`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_router().split_for_parts().1
}

/// The answer to every failed request: `{"error": "...", "field": "..."}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// The request field at fault (body field or query parameter), if one is.
    pub field: Option<String>,
}

#[derive(Clone)]
struct ApiState {
    store: MetaStore,
    admin: Arc<AdminToken>,
    /// Largest request body, bytes.
    max_body: usize,
    /// What signs playback tokens.
    playback_keys: Arc<PlaybackKeys>,
}

fn api_router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_stream, list_streams))
        .routes(routes!(get_stream, update_stream, delete_stream))
        .routes(routes!(rotate_key))
        .routes(routes!(mint_token))
        .routes(routes!(stream_events))
        .routes(routes!(check_key))
        .routes(routes!(declare_key))
        .routes(routes!(report_live, report_offline))
        .routes(routes!(reset_node))
        .routes(routes!(webhooks::create_webhook, webhooks::list_webhooks))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::webhook_deliveries))
        .routes(routes!(restreams::add_restream, restreams::list_restreams))
        .routes(routes!(restreams::delete_restream))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Rivulet API",
        description = "Streams of a Rivulet server: their public metadata, their secret keys (admin only) and live state. Admin endpoints need `Authorization: Bearer TOKEN`."
    ),
    modifiers(&AdminAuth),
    tags(
        (name = "streams", description = "Streams: name, title, description, tags, live state"),
        (name = "ingest", description = "What ingest nodes (`rivulet serve --meta-url`) ask and report: key checks, declared streams, live state. Admin token required."),
        (name = "restreams", description = "A stream's external RTMP targets (YouTube, Twitch, …): forwarded while live, keys redacted. Admin token required."),
        (name = "webhooks", description = "Where stream events are POSTed (signed), and each hook's delivery log. Admin token required."),
    ),
    components(schemas(StreamEvent, ErrorBody))
)]
struct ApiDoc;

struct AdminAuth;

impl Modify for AdminAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "--admin-token / RIVULET_ADMIN_TOKEN, or the token generated in DATA_DIR/admin-token",
                    ))
                    .build(),
            ),
        );
    }
}

/// Create a stream. The answer holds its secret key, shown this once.
#[utoipa::path(
    post,
    path = "/api/streams",
    tag = "streams",
    request_body = NewStream,
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "Created; `key` is shown only now", body = StreamWithKey),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 409, description = "A stream with this name exists", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    )
)]
async fn create_stream(
    _: Admin,
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<NewStream>,
) -> Result<Response, ApiError> {
    let made = state.store.create(body.validate()?).await?;
    let location = format!("/api/streams/{}", made.stream.name);
    let mut response = created(made);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Query parameters of `GET /api/streams`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameters; they are parsed by `parse_list_query`
struct ListParams {
    /// Only streams with this tag (compared after trimming and lowercasing).
    tag: Option<String>,
    /// Only live (`true`) or only offline (`false`) streams.
    live: Option<bool>,
    /// Streams per page, 1-500. Default 50.
    limit: Option<u32>,
    /// Streams to skip.
    offset: Option<u64>,
    /// Cursor: only streams whose name sorts after this one (the previous page's `next_cursor`).
    after: Option<String>,
}

/// List streams, sorted by name.
#[utoipa::path(
    get,
    path = "/api/streams",
    tag = "streams",
    params(ListParams),
    responses(
        (status = 200, description = "A page of streams", body = StreamPage),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
    )
)]
async fn list_streams(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<Json<StreamPage>, ApiError> {
    let query = parse_list_query(query.as_deref().unwrap_or(""))?;
    Ok(Json(state.store.list(&query).await?))
}

/// Get one stream.
#[utoipa::path(
    get,
    path = "/api/streams/{name}",
    tag = "streams",
    params(("name" = String, Path, description = "The stream's public name")),
    responses(
        (status = 200, description = "The stream", body = Stream),
        (status = 404, description = "No such stream", body = ErrorBody),
    )
)]
async fn get_stream(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Stream>, ApiError> {
    Ok(Json(state.store.get(&path_name(&name)?).await?))
}

/// Change a stream's title, description or tags. Absent fields are left as they are;
/// `add_tags`/`remove_tags` edit the tag set in place (safe for concurrent editors).
#[utoipa::path(
    patch,
    path = "/api/streams/{name}",
    tag = "streams",
    params(("name" = String, Path, description = "The stream's public name")),
    request_body = StreamUpdate,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The stream after the change", body = Stream),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    )
)]
async fn update_stream(
    _: Admin,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<StreamUpdate>,
) -> Result<Json<Stream>, ApiError> {
    let name = path_name(&name)?;
    Ok(Json(state.store.update(&name, body.validate()?).await?))
}

/// Delete a stream. Its key stops working at once.
#[utoipa::path(
    delete,
    path = "/api/streams/{name}",
    tag = "streams",
    params(("name" = String, Path, description = "The stream's public name")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
    )
)]
async fn delete_stream(
    _: Admin,
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.store.delete(&path_name(&name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give a stream a new secret key, shown this once. The old key stops working at once.
#[utoipa::path(
    post,
    path = "/api/streams/{name}/rotate-key",
    tag = "streams",
    params(("name" = String, Path, description = "The stream's public name")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The stream and its new key", body = StreamWithKey),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
    )
)]
async fn rotate_key(
    _: Admin,
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let rotated = state.store.rotate_key(&path_name(&name)?).await?;
    Ok((no_store(), Json(rotated)).into_response())
}

/// The body of `POST /api/streams/{name}/tokens` (all optional).
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Seconds the token is good for, 1-2592000 (30 days). Default 3600.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// The only viewer address the token is good for (as the origin or edge sees it).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "192.0.2.7")]
    pub ip: Option<std::net::IpAddr>,
    /// A session id carried in the token (`sid`), for your own bookkeeping.
    #[serde(default)]
    pub session: Option<String>,
}

/// A playback token and the URLs that use it.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct PlaybackToken {
    /// An HS256 JSON Web Token: `kid` names the signing key; claims `sub` (stream),
    /// `exp` (seconds since the Unix epoch), optionally `ip` and `sid`.
    pub token: String,
    pub stream: String,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
    /// The viewer page with the token, relative to this server (or an edge).
    #[schema(example = "/watch/studio?token=…")]
    pub watch_url: String,
    /// The multivariant playlist with the token, relative to this server (or an edge).
    #[schema(example = "/live/studio/master.m3u8?token=…")]
    pub master_url: String,
}

/// Longest lifetime of a playback token, seconds.
pub const MAX_TOKEN_LIFETIME: u64 = 30 * 24 * 3600;
/// Lifetime of a playback token when none is asked for, seconds.
pub const DEFAULT_TOKEN_LIFETIME: u64 = 3600;

/// Mint a playback token for a stream (needed to watch it when it is private): the
/// body is optional.
#[utoipa::path(
    post,
    path = "/api/streams/{name}/tokens",
    tag = "streams",
    params(("name" = String, Path, description = "The stream's public name")),
    request_body(content = Option<TokenRequest>, description = "Optional: expiry, viewer address, session id"),
    security(("admin_token" = [])),
    responses(
        (status = 201, description = "A token and the URLs that use it", body = PlaybackToken),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
        (status = 503, description = "No playback key is configured", body = ErrorBody),
    )
)]
async fn mint_token(
    _: Admin,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<TokenRequest>,
) -> Result<Response, ApiError> {
    let name = path_name(&name)?;
    let lifetime = body.expires_in.unwrap_or(DEFAULT_TOKEN_LIFETIME);
    if lifetime == 0 || lifetime > MAX_TOKEN_LIFETIME {
        return Err(crate::model::ValidationError::new(
            "expires_in",
            format!("seconds, 1-{MAX_TOKEN_LIFETIME}"),
        )
        .into());
    }
    if let Some(session) = &body.session
        && (session.is_empty()
            || session.len() > access::playback::MAX_SESSION_LEN
            || session.chars().any(char::is_control))
    {
        return Err(crate::model::ValidationError::new(
            "session",
            format!(
                "1-{} bytes without control characters",
                access::playback::MAX_SESSION_LEN
            ),
        )
        .into());
    }
    // 404 for a stream that does not exist, before anything is signed.
    state.store.get(&name).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let grant = Grant {
        stream: name.to_string(),
        expires: now + lifetime,
        ip: body.ip,
        session: body.session,
    };
    let token = state.playback_keys.sign(&grant).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no playback key is configured on this server (--playback-key ID=SECRET)",
            None,
        )
    })?;
    let minted = PlaybackToken {
        watch_url: format!("/watch/{name}?token={token}"),
        master_url: format!("/live/{name}/master.m3u8?token={token}"),
        stream: name.to_string(),
        expires_at: grant.expires,
        token,
    };
    Ok(created(minted))
}

/// Server-sent events of one stream. First a `snapshot` event (the stream as a
/// `Stream` object), then `metadata`, `live`, `offline` events (`StreamEvent` objects)
/// as they happen, and `deleted` last if the stream is deleted. A client that falls
/// behind gets a fresh `snapshot` instead of the events it missed.
#[utoipa::path(
    get,
    path = "/api/streams/{name}/events",
    tag = "streams",
    params(("name" = String, Path, description = "The stream's public name")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = StreamEvent),
        (status = 404, description = "No such stream", body = ErrorBody),
    )
)]
async fn stream_events(
    State(state): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Sse<impl FuturesStream<Item = Result<Event, Infallible>>>, ApiError> {
    let name = path_name(&name)?;
    // Subscribe before reading the snapshot, so that no change falls between the two.
    let rx = state.store.subscribe();
    let snapshot = state.store.get(&name).await?;
    let events = EventFeed {
        store: state.store,
        name,
        rx,
        last_version: 0,
        pending: Some(snapshot),
        done: false,
    };
    Ok(Sse::new(futures::stream::unfold(events, EventFeed::next)).keep_alive(KeepAlive::default()))
}

/// The state of one SSE connection.
struct EventFeed {
    store: MetaStore,
    name: StreamName,
    rx: broadcast::Receiver<StreamEvent>,
    /// The version of what the client shows: older events are not sent.
    last_version: i64,
    /// A snapshot to send next.
    pending: Option<Stream>,
    done: bool,
}

impl EventFeed {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if self.done {
            return None;
        }
        loop {
            if let Some(snapshot) = self.pending.take() {
                self.last_version = snapshot.version;
                return Some((Ok(sse_event("snapshot", &snapshot)), self));
            }
            match self.rx.recv().await {
                Ok(event) if event.stream() == self.name.as_str() => match event.version() {
                    None => {
                        self.done = true;
                        return Some((Ok(sse_event(event.name(), &event)), self));
                    }
                    Some(v) if v <= self.last_version => continue,
                    Some(v) => {
                        self.last_version = v;
                        return Some((Ok(sse_event(event.name(), &event)), self));
                    }
                },
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    match self.store.get(&self.name).await {
                        Ok(snapshot) => self.pending = Some(snapshot),
                        Err(MetaError::NotFound(_)) => {
                            self.done = true;
                            let event = StreamEvent::Deleted {
                                stream: self.name.to_string(),
                            };
                            return Some((Ok(sse_event(event.name(), &event)), self));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot resync an SSE client; closing it");
                            return None;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn sse_event(name: &str, data: &impl Serialize) -> Event {
    // Our event types always serialise; the fallback only keeps the type honest.
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|_| Event::default().comment("unserialisable event"))
}

/// Which stream a publisher's key publishes: the ingest's key check. The key goes in
/// the body so that it stays out of URLs and access logs.
#[utoipa::path(
    post,
    path = "/api/keys/check",
    tag = "ingest",
    request_body = KeyCheck,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The key publishes this stream", body = KeyOwner),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No stream has this key", body = ErrorBody),
    )
)]
async fn check_key(
    _: Admin,
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<KeyCheck>,
) -> Result<Response, ApiError> {
    match state.store.stream_for_key(&body.key).await? {
        Some(stream) => Ok((no_store(), Json(KeyOwner { stream })).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no stream has this key",
            Some("key".into()),
        )),
    }
}

/// Declare a stream with a key the operator chose (`rivulet serve --stream NAME=KEY`
/// with `--meta-url`): creates it, or gives the existing stream this key.
#[utoipa::path(
    put,
    path = "/api/streams/{name}/key",
    tag = "ingest",
    params(("name" = String, Path, description = "The stream's public name")),
    request_body = DeclaredKey,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Declared", body = Declared),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 409, description = "Another stream has this key", body = ErrorBody),
        (status = 422, description = "The name or the key is invalid", body = ErrorBody),
    )
)]
async fn declare_key(
    _: Admin,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<DeclaredKey>,
) -> Result<Response, ApiError> {
    // Unlike the other routes, a bad name here is a bad declaration, not an unknown stream.
    let name = StreamName::parse(&name)?;
    validate_declared_key(&body.key)?;
    let changed = state.store.upsert_with_key(&name, &body.key).await?;
    Ok((no_store(), Json(Declared { changed })).into_response())
}

/// Report a stream live, or new facts about its publish (bitrate, renditions).
#[utoipa::path(
    put,
    path = "/api/streams/{name}/live",
    tag = "ingest",
    params(("name" = String, Path, description = "The stream's public name")),
    request_body = LiveReport,
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Recorded"),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
        (status = 422, description = "A field is invalid", body = ErrorBody),
    )
)]
async fn report_live(
    _: Admin,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    JsonBody(report): JsonBody<LiveReport>,
) -> Result<StatusCode, ApiError> {
    let name = path_name(&name)?;
    report.validate()?;
    state.store.set_live(name.as_str(), &report).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query parameters of `DELETE /api/streams/{name}/live`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // documents the parameter; it is parsed by `parse_since`
struct OfflineParams {
    /// Only if the live publish is the one that started at this time (ms since the
    /// Unix epoch): a late report must not end a newer publish.
    since: Option<i64>,
}

/// Report a stream offline: its publisher left.
#[utoipa::path(
    delete,
    path = "/api/streams/{name}/live",
    tag = "ingest",
    params(
        ("name" = String, Path, description = "The stream's public name"),
        OfflineParams,
    ),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Recorded (or it was not live)"),
        (status = 400, description = "A query parameter is invalid", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such stream", body = ErrorBody),
    )
)]
async fn report_offline(
    _: Admin,
    State(state): State<ApiState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, ApiError> {
    let name = path_name(&name)?;
    let since = parse_since(query.as_deref().unwrap_or(""))?;
    state.store.set_offline(name.as_str(), since).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mark offline every stream an ingest node reported live: the node (re)starts, or
/// stops, and its publishes are gone.
#[utoipa::path(
    post,
    path = "/api/live/reset",
    tag = "ingest",
    request_body = NodeReset,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Done", body = NodeResetDone),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 422, description = "The node name is invalid", body = ErrorBody),
    )
)]
async fn reset_node(
    _: Admin,
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<NodeReset>,
) -> Result<Json<NodeResetDone>, ApiError> {
    validate_node_name(&body.ingest_node, "ingest_node")?;
    let streams = state.store.reset_node(&body.ingest_node).await?;
    Ok(Json(NodeResetDone {
        streams: u64::try_from(streams).unwrap_or(u64::MAX),
    }))
}

async fn unknown_endpoint() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such API endpoint: see /api/openapi.json",
        None,
    )
}

/// Proof that the request carries the admin token.
struct Admin;

impl FromRequestParts<ApiState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match presented {
            Some(token) if state.admin.matches(token.trim()) => Ok(Admin),
            Some(_) => Err(ApiError::unauthorized("the admin token is wrong")),
            None => Err(ApiError::unauthorized(
                "this endpoint needs the admin token: send Authorization: Bearer TOKEN",
            )),
        }
    }
}

/// A JSON body whose errors are answered as [`ErrorBody`] naming the field at fault.
/// Any content type is accepted: `curl -d` sends a form type by default.
struct JsonBody<T>(T);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state.max_body).await?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(JsonBody)
            .map_err(|e| {
                let path = e.path().to_string();
                let field = (path != ".").then_some(path);
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid JSON body: {}", e.inner()),
                    field,
                )
            })
    }
}

/// A JSON body that may be absent (empty): then `T::default()`.
struct OptionalJsonBody<T>(T);

impl<T: DeserializeOwned + Default> FromRequest<ApiState> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let bytes = read_body(req, state.max_body).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(OptionalJsonBody)
            .map_err(|e| {
                let path = e.path().to_string();
                let field = (path != ".").then_some(path);
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("invalid JSON body: {}", e.inner()),
                    field,
                )
            })
    }
}

/// Reads a request body of at most `limit` bytes; a larger one is answered 413
/// without being read further (what `Content-Length` declares too large, at once).
async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes, the most this API takes"),
            None,
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            // A body that ends badly is the client's fault too; only length is named.
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                too_large()
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {e}"),
                    None,
                )
            }
        })
}

/// Default largest request body of the metadata API, bytes: a stream's fields at
/// their longest (a 5,000-character description) fit many times over.
pub const MAX_BODY: usize = 64 * 1024;

/// A stream name from a path. A name that breaks the naming rule cannot exist, so
/// it is answered like any unknown stream.
fn path_name(name: &str) -> Result<StreamName, ApiError> {
    StreamName::parse(name).map_err(|_| MetaError::NotFound(name.to_owned()).into())
}

fn parse_list_query(query: &str) -> Result<ListQuery, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed query string: {e}"),
            None,
        )
    })?;
    let bad = |field: &str, reason: String| {
        ApiError::new(StatusCode::BAD_REQUEST, reason, Some(field.to_owned()))
    };
    let mut out = ListQuery::default();
    for (key, value) in pairs {
        match key.as_str() {
            "tag" => {
                out.tag = Some(normalize_tag(&value, "tag").map_err(|e| bad("tag", e.reason))?);
            }
            "live" => {
                out.live = Some(match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("live", format!("'{value}' is not true or false"))),
                });
            }
            "limit" => {
                out.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "limit",
                            format!("'{value}' is not a number from 1 to {MAX_PAGE}"),
                        )
                    })?;
            }
            "offset" => {
                out.offset = value
                    .parse()
                    .map_err(|_| bad("offset", format!("'{value}' is not a whole number")))?;
            }
            "after" | "cursor" => {
                out.after = Some(
                    StreamName::parse_field(&value, "after").map_err(|e| bad(&key, e.reason))?,
                );
            }
            _ => {
                return Err(bad(
                    &key,
                    format!("unknown parameter '{key}': use tag, live, limit, offset or after"),
                ));
            }
        }
    }
    Ok(out)
}

fn parse_since(query: &str) -> Result<Option<i64>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("malformed query string: {e}"),
            None,
        )
    })?;
    let mut since = None;
    for (key, value) in pairs {
        if key != "since" {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown parameter '{key}': use since"),
                Some(key),
            ));
        }
        since = Some(value.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("'{value}' is not a time in ms since the Unix epoch"),
                Some("since".into()),
            )
        })?);
    }
    Ok(since)
}

/// `201 Created` with `value`, never cached: the admin's create routes (a stream, a
/// token, a webhook, a restream target) answer with what they made, secrets and all.
fn created(value: impl Serialize) -> Response {
    (StatusCode::CREATED, no_store(), Json(value)).into_response()
}

/// A numeric id from the path; any other text names nothing (`missing` says what).
fn path_id(id: &str, missing: impl FnOnce() -> String) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| MetaError::NotFoundWhat(missing()).into())
}

fn no_store() -> [(header::HeaderName, &'static str); 1] {
    // Answers that carry a secret key must not be kept by any cache.
    [(header::CACHE_CONTROL, "no-store")]
}

/// An error answer.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>, field: Option<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                error: error.into(),
                field,
            },
        }
    }

    fn unauthorized(reason: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, reason, None)
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::Invalid(v) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, v.reason, Some(v.field))
            }
            MetaError::NotFound(_) | MetaError::NotFoundWhat(_) => {
                Self::new(StatusCode::NOT_FOUND, e.to_string(), None)
            }
            MetaError::Taken { field, .. } => {
                Self::new(StatusCode::CONFLICT, e.to_string(), Some(field.to_owned()))
            }
            MetaError::Conflict { field, .. } => {
                Self::new(StatusCode::CONFLICT, e.to_string(), Some(field.to_owned()))
            }
            MetaError::Database(sqlx::Error::PoolTimedOut) => {
                tracing::error!(error = %e, "metadata store busy");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is busy; try again",
                    None,
                )
            }
            _ => {
                tracing::error!(error = %e, "metadata request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error", None)
            }
        }
    }
}

impl From<crate::model::ValidationError> for ApiError {
    fn from(e: crate::model::ValidationError) -> Self {
        MetaError::Invalid(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, no_store(), Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
