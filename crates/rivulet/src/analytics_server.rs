//! Wiring of the analytics server: opening it over the metadata database, the
//! emitter `serve`'s origin hands its delivery events to, and `rivulet analytics`
//! (the analytics server alone).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use analytics::{
    Analytics, AnalyticsConfig, AnalyticsStore, DirectoryError, EmitConfig, Emitter, EventsAccess,
    EventsToken, GeoIp, StreamDirectory,
};
use anyhow::Context;
use axum::Router;
use axum::routing::get;
use futures::future::BoxFuture;
use meta::{MetaStore, TokenSource};
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{AnalyticsCmdConfig, AnalyticsMode, AnalyticsSettings};

/// The metadata server's streams, as the analytics server's list of streams that
/// exist: the wiring that lets `analytics` not depend on `meta`.
#[derive(Debug)]
struct MetaStreams(MetaStore);

impl StreamDirectory for MetaStreams {
    fn stream_names(&self, limit: u32) -> BoxFuture<'_, Result<Vec<String>, DirectoryError>> {
        Box::pin(async move { Ok(self.0.stream_names(limit).await?) })
    }
}

/// Opens the analytics server over the metadata store's database, its streams the
/// ones analytics knows; `events` says who may POST delivery events.
pub(crate) async fn open(
    settings: &AnalyticsSettings,
    store: &MetaStore,
    events: EventsAccess,
) -> anyhow::Result<Analytics> {
    let geo = open_geoip(settings.geoip_db.as_deref())?;
    let analytics_store = AnalyticsStore::open(store.database())
        .await
        .context("cannot set up the analytics tables")?;
    Ok(Analytics::new(
        analytics_store,
        geo,
        AnalyticsConfig {
            aggregator: analytics::AggregatorConfig {
                window_ms: settings.window_ms,
                max_sessions: settings.limits.max_sessions,
                max_values: settings.limits.max_values,
                ..Default::default()
            },
            retention: settings.retention,
            trusted_proxies: settings.trusted_proxies.clone(),
            events,
            max_raw_rows: settings.limits.max_raw_rows,
            directory: Some(Arc::new(MetaStreams(store.clone()))),
            ..Default::default()
        },
    ))
}

/// The configured GeoIP database (an error if it cannot be read), or the installed
/// one, or none (every country "unknown", said once in the log).
pub(crate) fn open_geoip(configured: Option<&Path>) -> anyhow::Result<GeoIp> {
    if let Some(path) = configured {
        return Ok(GeoIp::open(path)?);
    }
    match analytics::default_paths().into_iter().find(|p| p.is_file()) {
        Some(path) => {
            let geo = GeoIp::open(&path)?;
            tracing::debug!(path = %path.display(), "GeoIP database");
            Ok(geo)
        }
        None => {
            tracing::warn!(
                "no GeoIP database (run scripts/setup.sh, or set --geoip-db): every viewer's country is \"unknown\""
            );
            Ok(GeoIp::none())
        }
    }
}

/// The analytics side of `serve`: what the origin emits into, the analytics server
/// (when it runs here), and the tasks behind them.
pub(crate) struct ServeAnalytics {
    pub(crate) emitter: Emitter,
    pub(crate) local: Option<Analytics>,
    drain: Option<tokio::task::JoinHandle<()>>,
    server: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl ServeAnalytics {
    pub(crate) async fn start(
        settings: &AnalyticsSettings,
        store: Option<&MetaStore>,
        edge: String,
    ) -> anyhow::Result<Self> {
        let emit = EmitConfig {
            edge,
            trusted_proxies: settings.trusted_proxies.clone(),
            queue: settings.queue,
            ..Default::default()
        };
        Ok(match &settings.mode {
            AnalyticsMode::Off => Self {
                emitter: Emitter::disabled(),
                local: None,
                drain: None,
                server: None,
            },
            AnalyticsMode::Remote(url) => {
                if settings.token.is_none() {
                    tracing::warn!(url = %url, "--analytics-url without --analytics-token: the analytics server will refuse the delivery events (set the token it uses, e.g. the one in its DATA_DIR/analytics-token)");
                }
                let token = settings.token.as_ref().map(|t| t.expose().to_owned());
                let (emitter, drain) = Emitter::remote(url, token, emit);
                Self {
                    emitter,
                    local: None,
                    drain: Some(tokio::spawn(drain)),
                    server: None,
                }
            }
            AnalyticsMode::Local => {
                // `serve` opens the database whenever analytics runs here.
                let store = store.context("in-process analytics needs the database")?;
                // This server's own deliveries are handed over in-process; HTTP events
                // (from edges) only with a token.
                let events = settings
                    .token
                    .clone()
                    .map_or(EventsAccess::InProcessOnly, EventsAccess::Token);
                let analytics = open(settings, store, events).await?;
                let (emitter, drain) = Emitter::local(analytics.clone(), emit);
                // Its own stop signal: it must outlive the drain, so that the last
                // events are written.
                let (stop_tx, mut stop_rx) = watch::channel(false);
                let server = tokio::spawn(analytics.clone().run(async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                }));
                Self {
                    emitter,
                    local: Some(analytics),
                    drain: Some(tokio::spawn(drain)),
                    server: Some((stop_tx, server)),
                }
            }
        })
    }

    /// After the HTTP server stopped (and dropped its emitters): lets the queue
    /// drain, then writes what the analytics server holds.
    pub(crate) async fn stop(mut self) {
        drop(self.emitter);
        if let Some(drain) = self.drain.take() {
            // A remote server that hangs gets no more than its send timeout.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(6), drain).await;
        }
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
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
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (set --data-dir)",
            config.data_dir.display()
        )
    })?;
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let store =
        crate::metadata::open_store(config.database_url.as_deref(), &config.data_dir, &[]).await?;
    // Alone, events come over HTTP only: always behind a token.
    let (token, source) = match &config.analytics.token {
        Some(token) => (token.clone(), TokenSource::Configured),
        None => EventsToken::load_or_generate(&config.data_dir)
            .context("cannot set up the analytics events token (set --analytics-token)")?,
    };
    let analytics = open(
        &config.analytics,
        &store,
        EventsAccess::Token(token.clone()),
    )
    .await?;
    let listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {} (is another server using the port? set --http-listen)", config.http_listen))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .merge(api_router(analytics.clone()))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || crate::serve::metrics_page(prometheus.clone())),
        );
    let http = crate::serve::display_addr(addr);
    println!("Rivulet analytics server is running.");
    println!("  HTTP: http://{http}/");
    println!(
        "  API: http://{http}/api/analytics (OpenAPI document: http://{http}/api/openapi.json)"
    );
    println!(
        "  Delivery events: POST http://{http}/api/analytics/events (rivulet serve --analytics-url http://{http} --analytics-token TOKEN)"
    );
    let file = config.data_dir.join(analytics::EVENTS_TOKEN_FILE);
    match source {
        TokenSource::Configured => println!("  Events token: the one configured"),
        TokenSource::File => println!("  Events token: in {}", file.display()),
        TokenSource::Generated => println!(
            "  Events token (generated now and shown only this once; kept in {}): {}",
            file.display(),
            token.expose()
        ),
    }
    println!(
        "  GeoIP: {}",
        analytics.geo().path().map_or_else(
            || "none (every country \"unknown\")".into(),
            |p| p.display().to_string()
        )
    );
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let worker = tokio::spawn(analytics.clone().run(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    crate::systemd::notify_ready();
    httpd::serve(
        listener,
        app,
        crate::http_options::fit_to_process(config.http.clone()),
        shutdown,
    )
    .await;
    let _ = stop_tx.send(true);
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
