//! Running the analytics server from its [`AnalyticsSettings`]: opening it over a
//! database, and the emitter a server's HTTP middleware hands its delivery events to,
//! with the tasks behind them (`serve`, where analytics may run in-process, be a
//! remote server, or be off).

use std::path::Path;
use std::sync::Arc;

use db::Database;
use tokio::sync::watch;

use crate::{
    Analytics, AnalyticsConfig, AnalyticsError, AnalyticsMode, AnalyticsSettings, AnalyticsStore,
    EmitConfig, Emitter, EventsAccess, GeoIp, StreamDirectory,
};

/// Why the analytics side of a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error(transparent)]
    GeoIp(AnalyticsError),
    #[error("cannot set up the analytics tables")]
    Tables(#[source] AnalyticsError),
    #[error("in-process analytics needs the database")]
    NoDatabase,
}

impl GeoIp {
    /// The configured database (an error if it cannot be read), or the installed one,
    /// or none (every country "unknown", said once in the log).
    pub fn open_or_default(configured: Option<&Path>) -> Result<GeoIp, AnalyticsError> {
        if let Some(path) = configured {
            return GeoIp::open(path);
        }
        match crate::default_paths().into_iter().find(|p| p.is_file()) {
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
}

impl Analytics {
    /// Opens the analytics server over `database` with `settings`; `directory` lists
    /// the streams that exist, `events` says who may POST delivery events.
    pub async fn open_with(
        settings: &AnalyticsSettings,
        database: &Database,
        directory: Arc<dyn StreamDirectory>,
        events: EventsAccess,
    ) -> Result<Analytics, ServingError> {
        let geo =
            GeoIp::open_or_default(settings.geoip_db.as_deref()).map_err(ServingError::GeoIp)?;
        let store = AnalyticsStore::open(database)
            .await
            .map_err(ServingError::Tables)?;
        Ok(Analytics::new(
            store,
            geo,
            AnalyticsConfig {
                aggregator: crate::AggregatorConfig {
                    window_ms: settings.window_ms,
                    max_sessions: settings.limits.max_sessions,
                    max_values: settings.limits.max_values,
                    ..Default::default()
                },
                retention: settings.retention,
                trusted_proxies: settings.trusted_proxies.clone(),
                events,
                max_raw_rows: settings.limits.max_raw_rows,
                directory: Some(directory),
                ..Default::default()
            },
        ))
    }
}

/// The analytics side of a server: what its HTTP middleware emits into, the
/// analytics server (when it runs here), and the tasks behind them.
pub struct Serving {
    pub emitter: Emitter,
    pub local: Option<Analytics>,
    drain: Option<tokio::task::JoinHandle<()>>,
    server: Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>,
}

impl Serving {
    /// Starts by `settings.mode`; `local` is the database and the stream directory,
    /// needed when analytics runs here. `edge` names this node in the events.
    pub async fn start(
        settings: &AnalyticsSettings,
        local: Option<(&Database, Arc<dyn StreamDirectory>)>,
        edge: String,
    ) -> Result<Self, ServingError> {
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
                let (database, directory) = local.ok_or(ServingError::NoDatabase)?;
                // This server's own deliveries are handed over in-process; HTTP events
                // (from edges) only with a token.
                let events = settings
                    .token
                    .clone()
                    .map_or(EventsAccess::InProcessOnly, EventsAccess::Token);
                let analytics = Analytics::open_with(settings, database, directory, events).await?;
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

    /// An edge's side: its delivery events go to the analytics server at `url` (an edge
    /// never runs one), or nowhere without a URL.
    pub fn remote(url: Option<&str>, token: Option<String>, emit: EmitConfig) -> Self {
        let (emitter, drain) = match url {
            Some(url) => {
                let (emitter, drain) = Emitter::remote(url, token, emit);
                (emitter, Some(tokio::spawn(drain)))
            }
            None => (Emitter::disabled(), None),
        };
        Self {
            emitter,
            local: None,
            drain,
            server: None,
        }
    }

    /// After the HTTP server stopped (and dropped its emitters): lets the queue
    /// drain, then writes what the analytics server holds.
    pub async fn stop(mut self) {
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
