//! Wiring of the metadata server: opening the store, the admin token, live state from
//! the hub, and `rivulet meta` (the metadata server alone).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use hub::{Hub, Session};
use meta::banner;
use meta::live::{LiveLink, LivePublish, TitleSink};
use origin::live_report::{self, LiveStateSink, PublishFacts, PublishReport};
use tokio::sync::broadcast;

use crate::config::MetaConfig;

/// The origin's playlists take their titles (`EXT-X-SESSION-DATA`), and its private
/// streams their guard, from the metadata server through this.
pub(crate) fn title_sink(streams: &origin::LiveStreams) -> TitleSink {
    let streams = streams.clone();
    Arc::new(move |stream, settings| {
        streams.set_title(stream, settings.map(|s| s.title));
        // A deleted stream keeps its privacy: a publish still running stays guarded.
        if let Some(s) = settings {
            streams.set_private(stream, s.private);
        }
    })
}

/// Reports publish sessions on the hub as live/offline in the metadata server until
/// `stop` (`origin::live_report` does the following), with this node's name and the
/// SRT statistics; with a remote metadata server, the titles of the streams
/// published here follow its event streams.
pub(crate) async fn track_live(
    hub: Hub,
    announcements: broadcast::Receiver<Arc<Session>>,
    meta: LiveLink,
    node: String,
    streams: origin::LiveStreams,
    srt_stats: ingest::SrtStatsRegistry,
    stop: impl Future<Output = ()>,
) {
    let sink = Arc::new(MetaLive {
        meta,
        node,
        streams: streams.clone(),
        srt_stats,
    });
    live_report::track_live(hub, announcements, sink, streams, stop).await;
}

/// The metadata server as the keeper of this node's live state.
struct MetaLive {
    meta: LiveLink,
    node: String,
    streams: origin::LiveStreams,
    srt_stats: ingest::SrtStatsRegistry,
}

/// One publish's live state in the metadata server, with its SRT statistics.
struct MetaPublish {
    live: LivePublish,
    srt_stats: ingest::SrtStatsRegistry,
}

impl LiveStateSink for MetaLive {
    type Report = MetaPublish;

    async fn started(&self, stream: &str, facts: &PublishFacts) -> MetaPublish {
        let titles = title_sink(&self.streams);
        let live = LivePublish::start(&self.meta, stream, facts.since_ms, &self.node, titles).await;
        MetaPublish {
            live,
            srt_stats: self.srt_stats.clone(),
        }
    }
}

impl PublishReport for MetaPublish {
    async fn refresh(&mut self, facts: &PublishFacts) {
        // An SRT publisher's statistics (docs/srt.md).
        let stats = self
            .srt_stats
            .get(self.live.stream())
            .and_then(|s| serde_json::to_value(s).ok());
        self.live
            .refresh(facts.ingest_bitrate, &facts.renditions, stats)
            .await;
    }

    async fn ended(self) {
        self.live.end().await;
    }
}

/// `rivulet meta`: the API and the database, without ingest or origin.
pub(crate) async fn run(
    config: MetaConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::serve::create_data_dir(&config.data_dir)?;
    let (store, token, source) = meta::declared::open_server(
        config.database_url.as_deref(),
        &config.data_dir,
        &config.streams,
        &config.webhooks.declared,
        config.admin_token.as_ref(),
    )
    .await?;
    let stop = httpd::shutdown::Stop::on(shutdown);
    let webhooks = tokio::spawn(meta::webhooks::run_sender(
        store.clone(),
        config.webhooks.sender,
        stop.stopped(),
    ));
    let (playback, playback_source) =
        meta::playback_key::playback_keys(&config.playback_keys, &config.data_dir)?;
    let listener = httpd::bind(config.http_listen, "HTTP", "--http-listen").await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .merge({
            let (routes, doc) = meta::api::routes_with_keys(
                store.clone(),
                token.clone(),
                config.api_max_body,
                playback.clone(),
            );
            routes.merge(meta::api::finish(doc))
        })
        .route("/healthz", get(|| async { "ok\n" }));
    let http = httpd::display_addr(addr);
    println!("Rivulet metadata server is running.");
    println!("  HTTP: http://{http}/");
    // Before the admin token's line: scripts may stop reading at that one.
    let data_dir = &config.data_dir;
    print!(
        "{}",
        banner::playback_keys(&playback, playback_source, data_dir)
    );
    print!(
        "{}",
        banner::api(&format!("http://{http}"), &token, source, data_dir)
    );
    crate::systemd::notify_ready();
    httpd::serve(
        listener,
        app,
        crate::http_options::fit_to_process(config.http.clone()),
        stop.stopped(),
    )
    .await;
    webhooks.await.context("webhook task panicked")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
