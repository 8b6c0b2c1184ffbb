//! Rivulet's web pages: the viewer page `/watch/NAME`, the operator dashboard
//! `/dashboard`, and the files they load under `/assets/V/…`.
//!
//! The pages are plain HTML, CSS and JavaScript modules in `web/src`, plus hls.js and
//! uPlot from `web/node_modules` (`npm ci --prefix web`). `build.rs` embeds them all,
//! gzip-compressed, with an ETag each, so the binary is the only file to deploy. `V` is
//! a hash of every page and asset: asset URLs change with their content, so assets are
//! cached for a year and pages revalidate (`no-cache`, answered 304 while unchanged).
//!
//! What this crate does not do: it calls no other API. The pages call the metadata API
//! (`/api/streams/…`), the analytics API (`/api/analytics/…`) and the origin
//! (`/live/…`) from the browser.
//!
//! Call [`router`] with a [`WebConfig`] and merge the result into the server's router.

mod assets;
mod csp;
mod respond;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

use crate::assets::{Asset, Page};
use crate::csp::Framing;
use crate::respond::CacheRule;

/// What the pages need to know about the server that serves them.
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    /// The RTMP port publishers connect to, shown by the dashboard as
    /// `rtmp://HOST:PORT/live` (HOST as the browser reached this server); `None` shows
    /// no RTMP URL.
    pub rtmp_port: Option<u16>,
    /// Where the analytics API is, for beacons, viewer counts and charts.
    pub analytics: AnalyticsLink,
    /// Whether this server keeps a rewind window (DVR) for recorded streams, and if so
    /// whether streams record by default (`Some(default)`); `None`: it keeps none, and
    /// the viewer page never asks for one.
    pub dvr_record_default: Option<bool>,
}

/// Where the pages find the analytics API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AnalyticsLink {
    /// On this server, under `/api/analytics`.
    #[default]
    Local,
    /// On another server: its base URL, e.g. `http://analytics.example:8090` (the
    /// analytics API allows cross-origin requests).
    Remote(String),
    /// None: the pages send no beacons and show no figures.
    Off,
}

/// Why a page or asset could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// No page or asset at this path.
    #[error("not found")]
    NotFound,
    /// An embedded asset did not decompress (a build problem, not the client's).
    #[error("embedded asset {path} is corrupt: {source}")]
    Corrupt {
        path: &'static str,
        source: std::io::Error,
    },
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Corrupt { .. } => {
                tracing::error!(error = %self, "cannot serve an embedded asset");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (
            status,
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            ],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// The routes: `GET /watch/{name}`, `/dashboard`, `/dashboard/streams/{name}` and
/// `/assets/{version}/{*path}` (HEAD too).
pub fn router(config: WebConfig) -> Router {
    let analytics = match &config.analytics {
        AnalyticsLink::Remote(url) => csp::origin_of(url),
        AnalyticsLink::Local | AnalyticsLink::Off => None,
    };
    let page_config = PageConfig::new(&config);
    let pages = Pages {
        watch: Page::render(
            assets::WATCH_HTML,
            &page_config,
            analytics.as_deref(),
            Framing::Anywhere,
        ),
        dashboard: Page::render(
            assets::DASHBOARD_HTML,
            &page_config,
            analytics.as_deref(),
            Framing::Nowhere,
        ),
    };
    Router::new()
        .route("/watch/{name}", get(watch))
        .route("/dashboard", get(dashboard))
        .route("/dashboard/", get(dashboard))
        .route("/dashboard/streams/{name}", get(dashboard_stream))
        .route("/assets/{version}/{*path}", get(asset))
        .with_state(std::sync::Arc::new(pages))
}

/// The asset version of this build: pages load `/assets/{VERSION}/…`.
pub fn asset_version() -> &'static str {
    assets::VERSION
}

struct Pages {
    watch: Page,
    dashboard: Page,
}

type Shared = State<std::sync::Arc<Pages>>;

/// What the pages read from `<script type="application/json" id="rivulet-config">`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageConfig {
    rtmp_port: Option<u16>,
    /// Base URL of the analytics API: `""` for this server, `null` for none.
    analytics: Option<String>,
    /// `null`: no rewind window on this server; otherwise whether a stream whose
    /// `record` is unset records (and so can be rewound).
    dvr_record_default: Option<bool>,
    version: &'static str,
}

impl PageConfig {
    fn new(config: &WebConfig) -> Self {
        Self {
            rtmp_port: config.rtmp_port,
            analytics: match &config.analytics {
                AnalyticsLink::Local => Some(String::new()),
                AnalyticsLink::Remote(url) => Some(url.trim_end_matches('/').to_owned()),
                AnalyticsLink::Off => None,
            },
            dvr_record_default: config.dvr_record_default,
            version: assets::VERSION,
        }
    }
}

async fn watch(State(pages): Shared, Path(name): Path<String>, headers: HeaderMap) -> Response {
    // Only names a stream could have: anything else is no page at all.
    if meta::StreamName::parse(&name).is_err() {
        return WebError::NotFound.into_response();
    }
    page(&pages.watch, &headers)
}

async fn dashboard(State(pages): Shared, headers: HeaderMap) -> Response {
    page(&pages.dashboard, &headers)
}

async fn dashboard_stream(
    State(pages): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if meta::StreamName::parse(&name).is_err() {
        return WebError::NotFound.into_response();
    }
    page(&pages.dashboard, &headers)
}

fn page(page: &Page, headers: &HeaderMap) -> Response {
    let representation = respond::negotiate(&page.etag, headers);
    let mut response = respond::build(
        representation,
        "text/html; charset=utf-8",
        CacheRule::Revalidate,
        &page.etag,
        || Ok(page.gzip.clone()),
        || Ok(page.raw.clone()),
    );
    response
        .headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, page.csp.clone());
    response
}

async fn asset(Path((version, path)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let Some(asset) = Asset::find(&path) else {
        return WebError::NotFound.into_response();
    };
    // An older page may ask for an older version: it gets today's file, not kept.
    let cache = if version == assets::VERSION {
        CacheRule::Immutable
    } else {
        CacheRule::Revalidate
    };
    let representation = respond::negotiate(asset.etag, &headers);
    respond::build(
        representation,
        asset.content_type,
        cache,
        asset.etag,
        || Ok(bytes_of(asset.gzip)),
        || asset.decompressed().map(Into::into),
    )
}

fn bytes_of(s: &'static [u8]) -> axum::body::Bytes {
    axum::body::Bytes::from_static(s)
}

#[cfg(test)]
mod tests;
