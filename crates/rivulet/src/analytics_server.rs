//! Wiring of the analytics server: opening it over the metadata database, the
//! emitter `serve`'s origin hands its delivery events to, and `rivulet analytics`
//! (the analytics server alone).

use std::future::Future;
use std::sync::Arc;

use analytics::{Analytics, DirectoryError, EventsAccess, EventsToken, Serving, StreamDirectory};
use anyhow::Context;
use axum::Router;
use axum::routing::get;
use futures::future::BoxFuture;
use meta::MetaStore;

use crate::config::{AnalyticsCmdConfig, AnalyticsSettings};

/// The analytics side of `serve` (`analytics::Serving`).
pub(crate) use analytics::Serving as ServeAnalytics;

/// The metadata server's streams, as the analytics server's list of streams that
/// exist: the wiring that lets `analytics` not depend on `meta`.
#[derive(Debug)]
struct MetaStreams(MetaStore);

impl StreamDirectory for MetaStreams {
    fn stream_names(&self, limit: u32) -> BoxFuture<'_, Result<Vec<String>, DirectoryError>> {
        Box::pin(async move { Ok(self.0.stream_names(limit).await?) })
    }
}

/// The analytics side of `serve`: the emitter, the server when it runs here (over
/// the metadata store's database, its streams the ones analytics knows).
pub(crate) async fn start_serving(
    settings: &AnalyticsSettings,
    store: Option<&MetaStore>,
    edge: String,
) -> anyhow::Result<Serving> {
    let local = store.map(|s| (s.database(), directory(s)));
    Ok(Serving::start(settings, local, edge).await?)
}

fn directory(store: &MetaStore) -> Arc<dyn StreamDirectory> {
    Arc::new(MetaStreams(store.clone()))
}

/// The analytics routes with `/api/openapi.json` (this API only) and the JSON answer
/// for unknown `/api/…` paths: for `rivulet analytics` running alone.
fn api_router(analytics: Analytics) -> Router {
    let (routes, doc) = analytics::api::routes(analytics);
    routes.merge(meta::api::finish(doc))
}

/// `rivulet analytics`: the analytics API over the database, fed by the delivery
/// events other servers POST and by player beacons.
pub(crate) async fn run(
    config: AnalyticsCmdConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::serve::create_data_dir(&config.data_dir)?;
    let prometheus = crate::serve::install_metrics()?;
    let store =
        MetaStore::open_declared(config.database_url.as_deref(), &config.data_dir, &[]).await?;
    // Alone, events come over HTTP only: always behind a token.
    let (token, source) =
        EventsToken::configured_or_generated(config.analytics.token.as_ref(), &config.data_dir)?;
    let analytics = Analytics::open_with(
        &config.analytics,
        store.database(),
        directory(&store),
        EventsAccess::Token(token.clone()),
    )
    .await?;
    let listener = httpd::bind(config.http_listen, "HTTP", "--http-listen").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .merge(api_router(analytics.clone()))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || crate::serve::metrics_page(prometheus.clone())),
        );
    let http = httpd::display_addr(addr);
    println!("Rivulet analytics server is running.");
    println!("  HTTP: http://{http}/");
    let geo = analytics.geo();
    print!(
        "{}",
        analytics::banner::alone(&http, &token, source, &config.data_dir, geo)
    );
    let stop = httpd::shutdown::Stop::new();
    let worker = tokio::spawn(analytics.clone().run(stop.stopped()));
    crate::systemd::notify_ready();
    httpd::serve(
        listener,
        app,
        crate::http_options::fit_to_process(config.http.clone()),
        shutdown,
    )
    .await;
    stop.trigger();
    worker.await.context("analytics task panicked")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    /// Analytics keeps its own copies of the metadata server's name rules (so as not to
    /// depend on it); they must agree, or beacons for real streams would be refused.
    #[test]
    fn name_rules_agree_with_the_metadata_server() {
        assert_eq!(analytics::MAX_STREAM_NAME_LEN, meta::MAX_NAME_LEN);
        assert_eq!(analytics::MAX_NODE_NAME_LEN, meta::MAX_NODE_LEN);
    }
}
