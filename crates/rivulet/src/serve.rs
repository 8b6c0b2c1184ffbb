//! `rivulet serve`: ingest, packager and origin wired together in one process.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use httpd::shutdown::Stop;
use hub::Hub;
use meta::remote::RemoteKeys;
use meta::{AdminToken, MetaStore, TokenSource};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use origin::{LiveStreams, OriginConfig};
use tls::TlsListeners;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::analytics_server::ServeAnalytics;
use crate::config::{AnalyticsMode, MetaMode, ServeConfig};
use crate::metadata;
use httpd::display_addr;

/// The listening sockets of `serve`, bound before anything else starts so that a
/// caller (`demo`, tests) knows the real ports when it asked for port 0.
pub(crate) struct Listeners {
    rtmp: TcpListener,
    http: TcpListener,
    /// The TLS listeners, if configured, and the certificate they share.
    tls: Option<TlsListeners>,
    /// The sockets of every WebRTC session (UDP, and TCP for ICE-TCP); `None`: WebRTC
    /// is off.
    webrtc: Option<crate::webrtc_options::Sockets>,
    /// The SRT listener's socket, unless SRT is off.
    srt: Option<tokio::net::UdpSocket>,
}

impl Listeners {
    pub(crate) async fn bind(config: &ServeConfig) -> anyhow::Result<Self> {
        // First: a certificate that cannot be used stops the start before any port is taken.
        let tls = TlsListeners::bind(&config.tls).await?;
        let rtmp = httpd::bind(config.rtmp_listen, "RTMP", "--rtmp-listen").await?;
        let http = httpd::bind(config.http_listen, "HTTP", "--http-listen").await?;
        let webrtc = crate::webrtc_options::bind(&config.webrtc).await?;
        let srt = config.srt.bind().await?;
        Ok(Self {
            rtmp,
            http,
            tls,
            webrtc,
            srt,
        })
    }

    pub(crate) fn rtmp_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.rtmp.local_addr()
    }

    pub(crate) fn http_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.http.local_addr()
    }
}

/// Runs until `shutdown` completes, then stops accepting and closes cleanly.
pub(crate) async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config).await?;
    serve(config, listeners, shutdown).await
}

/// Where each stream's highest media sequence number is kept, so that a restarted
/// origin never names other bytes as it named segments before (`DATA/live-msn`).
fn live_numbering(data_dir: &std::path::Path) -> anyhow::Result<origin::NumberingDir> {
    let dir = data_dir.join("live-msn");
    origin::NumberingDir::open(&dir)
        .with_context(|| format!("cannot create {} (set --data-dir)", dir.display()))
}

/// [`run`] on listeners bound already.
pub(crate) async fn serve(
    config: ServeConfig,
    mut listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    create_data_dir(&config.data_dir)?;
    let prometheus = crate::serve::install_metrics()?;
    let rtmp_addr = listeners.rtmp.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    let node = config
        .node_name
        .clone()
        .unwrap_or_else(|| meta::live::node_name(rtmp_addr.port()));

    let control = ControlPlane::open(&config).await?;
    let stop = Stop::on(shutdown);
    let analytics = crate::analytics_server::start_serving(
        &config.analytics,
        control.analytics_store.as_ref(),
        node.clone(),
    )
    .await?;
    let recorder = crate::recording::open(
        &config.record,
        &config.data_dir,
        control.local.as_ref().map(|l| l.store.clone()),
        config.webhooks.sender,
    )
    .await?;
    let retention = crate::recording::spawn_retention(&recorder, &config.record, stop.stopped());
    let streams = LiveStreams::with_sink(
        OriginConfig {
            packager: config.packager.clone(),
            grace_period: config.grace_period,
            health: config.health.clone(),
            held: config.held,
            playback_keys: control.playback_keys.clone(),
            ..OriginConfig::default()
        },
        Arc::new(recorder.clone()),
    )
    .with_numbering_store(Arc::new(live_numbering(&config.data_dir)?));
    // Every publish (RTMP, SRT, WHIP) goes to this hub.
    let hub = Hub::new();
    let whep = start_whep(
        listeners.webrtc.take(),
        &config,
        &streams,
        &analytics,
        webrtc_server::WhipIngest {
            hub: hub.clone(),
            keys: control.keys.clone(),
            idle_timeout: config.rtmp.session.idle_timeout,
            max_bitrate: config.rtmp.max_bitrate,
            bitrate_burst: config.rtmp.bitrate_burst,
        },
        http_addr,
        &stop,
    )?;
    let mut app = http_app(
        &config, &control, &analytics, &streams, &recorder, rtmp_addr, prometheus,
    );
    app = app.merge(match &whep {
        Some((whep, _)) => webrtc_server::router(whep.clone()),
        None => webrtc_server::disabled_router(),
    });
    print_banners(&listeners, &config, &control, &analytics)?;
    let Listeners {
        rtmp,
        http,
        tls,
        srt,
        ..
    } = listeners;
    let (rtmp_listeners, https_server, cert_watch) =
        start_tls_listeners(rtmp, tls, &app, &config, &stop)?;
    let tasks = Tasks::start(
        &config,
        &control,
        &node,
        hub,
        streams,
        (rtmp_listeners, srt),
        &stop,
    )
    .await;
    // Every listener is bound and the RTMP ones are accepting: a `Type=notify` unit is up.
    crate::systemd::notify_ready();
    // Handlers see the peer's address (ConnectInfo), for analytics (client address,
    // country) and the held-request bounds.
    httpd::serve(
        http,
        app,
        crate::http_options::fit_to_process(config.http.clone()),
        stop.stopped(),
    )
    .await;
    if let Some(server) = https_server {
        server.await.context("HTTPS server task panicked")?;
    }
    if let Some(watch) = cert_watch {
        watch.await.context("TLS certificate watch task panicked")?;
    }
    analytics.stop().await;
    if let Some((_, task)) = whep {
        task.await.context("WebRTC task panicked")?;
    }
    tasks.join().await?;
    retention.await.context("retention task panicked")?;
    // Publishers were cut by the shutdown: their streams are no longer live here.
    control.link.reset_node(&node).await;
    if let Some(store) = control.analytics_store {
        store.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// The control plane as `serve` sees it: where live state goes, who checks stream
/// keys, and the databases opened here.
struct ControlPlane {
    /// Where live state is reported: the store here or the remote metadata server.
    link: meta::live::LiveLink,
    keys: Arc<dyn ingest::StreamKeys>,
    /// The metadata server run here, with its admin token.
    local: Option<LocalMeta>,
    /// The database in-process analytics keeps its tables in, if it runs here.
    analytics_store: Option<MetaStore>,
    /// What signs (API) and checks (origin) the playback tokens of private streams.
    playback_keys: access::playback::PlaybackKeys,
    playback_source: TokenSource,
}

struct LocalMeta {
    store: MetaStore,
    token: AdminToken,
    source: TokenSource,
}

impl ControlPlane {
    /// Opens the metadata link: the store here (streams and keys live in it), or the
    /// remote metadata server; the declared streams are upserted either way. In-process
    /// analytics keeps its tables in the metadata database, opened here for analytics
    /// alone when the metadata server is remote.
    async fn open(config: &ServeConfig) -> anyhow::Result<Self> {
        let (link, keys, local) = match &config.meta {
            MetaMode::Local => {
                let (store, token, source) = meta::declared::open_server(
                    config.database_url.as_deref(),
                    &config.data_dir,
                    &config.streams,
                    &config.webhooks.declared,
                    config.admin_token.as_ref(),
                )
                .await?;
                (
                    meta::live::LiveLink::Local(store.clone()),
                    Arc::new(store.clone()) as Arc<dyn ingest::StreamKeys>,
                    Some(LocalMeta {
                        store,
                        token,
                        source,
                    }),
                )
            }
            MetaMode::Remote(settings) => {
                if !config.webhooks.declared.is_empty() {
                    tracing::warn!(
                        "webhooks are sent by the metadata server: declare them on the `rivulet meta` at --meta-url; the ones given here are ignored"
                    );
                }
                let keys = RemoteKeys::new(settings.client()?, settings.cache);
                meta::declared::declare_remote(&keys, &config.streams).await?;
                (
                    meta::live::LiveLink::Remote(keys.remote().clone()),
                    Arc::new(keys) as Arc<dyn ingest::StreamKeys>,
                    None,
                )
            }
        };
        let keys = meta::publish_hook::PublishHook::around(keys, config.publish_hook.as_ref())?;
        let analytics_store = match (&local, &config.analytics.mode) {
            (Some(local), _) => Some(local.store.clone()),
            (None, AnalyticsMode::Local) => Some(
                MetaStore::open_declared(config.database_url.as_deref(), &config.data_dir, &[])
                    .await?,
            ),
            (None, _) => None,
        };
        let (playback_keys, playback_source) =
            meta::playback_key::playback_keys(&config.playback_keys, &config.data_dir)?;
        Ok(Self {
            link,
            keys,
            local,
            analytics_store,
            playback_keys,
            playback_source,
        })
    }
}

/// The HTTP app: the origin (its deliveries recorded for analytics), the APIs run
/// here with one OpenAPI document, the web pages, health and metrics.
fn http_app(
    config: &ServeConfig,
    control: &ControlPlane,
    analytics: &ServeAnalytics,
    streams: &LiveStreams,
    recorder: &record::Recorder,
    rtmp_addr: std::net::SocketAddr,
    prometheus: PrometheusHandle,
) -> Router {
    let (mut api, mut doc) = match &control.local {
        Some(local) => meta::api::routes_with_keys(
            local.store.clone(),
            local.token.clone(),
            config.api_max_body,
            control.playback_keys.clone(),
        ),
        None => (Router::new(), meta::api::empty_openapi()),
    };
    if let Some(local) = &control.local {
        let catalog = Arc::new(crate::recording::Catalog(recorder.clone()));
        let (routes, recordings_doc) = meta::recordings::routes(catalog, local.token.clone());
        doc.merge(recordings_doc);
        api = api.merge(routes);
    }
    if let Some(local) = &analytics.local {
        let (routes, analytics_doc) = analytics::api::routes(local.clone());
        doc.merge(analytics_doc);
        api = api.merge(routes);
    }
    Router::new()
        .merge(
            origin::router(streams.clone()).layer(axum::middleware::from_fn_with_state(
                analytics.emitter.clone(),
                analytics::record_delivery,
            )),
        )
        .merge(record::router(
            recorder.clone(),
            control.playback_keys.clone(),
        ))
        .merge(crate::dvr::router(streams.clone(), recorder.clone()).layer(
            axum::middleware::from_fn_with_state(
                analytics.emitter.clone(),
                analytics::record_delivery,
            ),
        ))
        .merge(origin::thumbnail::router(
            streams.clone(),
            transcode::thumbnail::MIN_THUMBNAIL_WIDTH..=transcode::thumbnail::MAX_THUMBNAIL_WIDTH,
            transcode::thumbnail::keyframe_jpeg,
        ))
        .merge(api)
        .merge(meta::api::finish(doc))
        .merge(web::router(web_config(rtmp_addr, config)))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(move || metrics_page(prometheus.clone())))
}

/// Where the APIs served here are, and the admin token.
fn print_api_banner(http: &str, config: &ServeConfig, control: &ControlPlane, local: bool) {
    match &control.local {
        Some(m) => print!(
            "{}",
            meta::banner::api(http, &m.token, m.source, &config.data_dir)
        ),
        None if local => print!("{}", analytics::banner::api(http)),
        None => {}
    }
}

/// The tasks of `serve` besides the HTTP server: live state, RTMP ingest, title
/// following, the origin's feed.
struct Tasks {
    live: JoinHandle<()>,
    rtmp: JoinHandle<()>,
    srt: Option<JoinHandle<std::io::Result<()>>>,
    titles: Option<JoinHandle<()>>,
    webhooks: Option<JoinHandle<()>>,
    restream: Option<JoinHandle<()>>,
    feed: JoinHandle<()>,
}

impl Tasks {
    async fn start(
        config: &ServeConfig,
        control: &ControlPlane,
        node: &str,
        hub: Hub,
        streams: LiveStreams,
        (rtmp_listeners, srt_socket): (Vec<ingest::RtmpListener>, Option<tokio::net::UdpSocket>),
        stop: &Stop,
    ) -> Self {
        // Subscribed before the RTMP listener starts, so that every publish session is seen.
        control.link.reset_node(node).await;
        // SRT publishers' connection statistics, for the streams' live state.
        let srt_stats = ingest::SrtStatsRegistry::default();
        let live = tokio::spawn(metadata::track_live(
            hub.clone(),
            hub.announcements(),
            control.link.clone(),
            node.to_owned(),
            streams.clone(),
            srt_stats.clone(),
            stop.stopped(),
        ));
        let rtmp = tokio::spawn(ingest::serve_all(
            rtmp_listeners,
            hub.clone(),
            control.keys.clone(),
            config.rtmp.clone(),
            stop.stopped(),
        ));
        let srt = srt_socket.map(|socket| {
            tokio::spawn(ingest::serve_srt(
                socket,
                hub.clone(),
                control.keys.clone(),
                config.srt.ingest_config(&config.rtmp, srt_stats.clone()),
                stop.stopped(),
            ))
        });
        // With a remote metadata server, titles follow its event streams (`track_live`).
        let titles = control.local.as_ref().map(|local| {
            tokio::spawn(meta::live::sync_titles(
                local.store.clone(),
                metadata::title_sink(&streams),
                stop.stopped(),
            ))
        });
        // Webhooks are sent where the metadata store is (with --meta-url, by `rivulet meta`).
        let webhooks = control.local.as_ref().map(|local| {
            tokio::spawn(meta::webhooks::run_sender(
                local.store.clone(),
                config.webhooks.sender,
                stop.stopped(),
            ))
        });
        // Restream targets are kept by the metadata store here; forwarding runs beside
        // ingest and reports its states back to the API.
        let restream = control.local.as_ref().map(|local| {
            let restreamer = restream::Restreamer::new();
            local
                .store
                .set_restream_states(Arc::new(crate::restreams::States(restreamer.clone())));
            tokio::spawn(restream::run(
                hub.clone(),
                Arc::new(crate::restreams::StoreTargets(local.store.clone())),
                Some(Arc::new(crate::restreams::OriginLadder(streams.clone()))),
                restreamer,
                restream::RestreamConfig::default(),
                stop.stopped(),
            ))
        });
        let feed = tokio::spawn(origin::run_feed(
            streams,
            hub,
            Arc::new(transcode::Ladder::new(
                &config.renditions,
                &config.ladder,
                Duration::from_millis(u64::from(config.packager.segment_target_ms)),
            )),
            stop.stopped(),
        ));
        Self {
            live,
            rtmp,
            srt,
            titles,
            webhooks,
            restream,
            feed,
        }
    }

    /// Waits for every task to end (after the shutdown signal).
    async fn join(self) -> anyhow::Result<()> {
        self.rtmp.await.context("RTMP server task panicked")?;
        if let Some(srt) = self.srt {
            srt.await
                .context("SRT server task panicked")?
                .context("the SRT listener failed")?;
        }
        self.feed.await.context("feed task panicked")?;
        self.live.await.context("live state task panicked")?;
        if let Some(titles) = self.titles {
            titles.await.context("title task panicked")?;
        }
        if let Some(restream) = self.restream {
            restream.await.context("restream task panicked")?;
        }
        if let Some(webhooks) = self.webhooks {
            webhooks.await.context("webhook task panicked")?;
        }
        Ok(())
    }
}

/// What a user needs to see at start: where to publish and watch, the keys and tokens.
fn print_banners(
    listeners: &Listeners,
    config: &ServeConfig,
    control: &ControlPlane,
    analytics: &ServeAnalytics,
) -> anyhow::Result<()> {
    let (rtmp, http) = (listeners.rtmp.local_addr()?, listeners.http.local_addr()?);
    let (rtmp, http) = (display_addr(rtmp), display_addr(http));
    println!("Rivulet is running.");
    println!("  RTMP ingest: rtmp://{rtmp}/live/STREAM_KEY");
    println!("  HTTP origin: http://{http}/");
    println!("  Dashboard:   http://{http}/dashboard");
    if let Some(tls) = &listeners.tls {
        print!("{}", tls.banner(display_addr));
    }
    let remote = match &config.meta {
        MetaMode::Remote(remote) => Some(remote),
        MetaMode::Local => None,
    };
    print!(
        "{}",
        meta::banner::streams(&config.streams, remote, &rtmp, &http)
    );
    print!(
        "{}",
        analytics::banner::serve(&config.analytics.mode, &http)
    );
    if config.streams.is_empty() {
        print!("{}", meta::banner::NO_STREAMS);
    }
    // Before the admin token's line: scripts may stop reading at that one.
    print!(
        "{}",
        meta::banner::playback_keys(
            &control.playback_keys,
            control.playback_source,
            &config.data_dir
        )
    );
    let http = format!("http://{http}");
    print_api_banner(&http, config, control, analytics.local.is_some());
    if let Some(addr) = listeners.srt.as_ref().and_then(|s| s.local_addr().ok()) {
        println!(
            "  SRT ingest:  srt://{}?streamid=publish:STREAM_KEY",
            display_addr(addr)
        );
    }
    Ok(())
}

/// The WHEP side, if WebRTC has its socket: the session driver and its routes' state.
fn start_whep(
    sockets: Option<crate::webrtc_options::Sockets>,
    config: &ServeConfig,
    streams: &LiveStreams,
    analytics: &ServeAnalytics,
    whip: webrtc_server::WhipIngest,
    http_addr: std::net::SocketAddr,
    stop: &Stop,
) -> anyhow::Result<Option<(webrtc_server::WebRtc, tokio::task::JoinHandle<()>)>> {
    let Some(sockets) = sockets else {
        return Ok(None);
    };
    if let Ok(addr) = sockets.udp.local_addr() {
        let http = display_addr(http_addr);
        print!(
            "{}",
            webrtc_server::options::banner(addr, sockets.tcp.is_some(), &http)
        );
    }
    Ok(Some(crate::webrtc_options::start(
        sockets,
        &config.webrtc,
        streams.clone(),
        analytics.emitter.clone(),
        whip,
        stop.stopped(),
    )?))
}

/// The plain RTMP listener beside the RTMPS one, the HTTPS server (serving `app`) and
/// the certificate's reload watch, when TLS is configured.
#[allow(clippy::type_complexity)]
fn start_tls_listeners(
    rtmp: TcpListener,
    tls: Option<TlsListeners>,
    app: &axum::Router,
    config: &ServeConfig,
    stop: &Stop,
) -> anyhow::Result<(
    Vec<ingest::RtmpListener>,
    Option<tokio::task::JoinHandle<()>>,
    Option<tokio::task::JoinHandle<()>>,
)> {
    let (rtmps, https, cert) = match tls {
        Some(t) => (t.rtmps, t.https, Some(t.cert)),
        None => (None, None, None),
    };
    let mut rtmp_listeners = vec![ingest::RtmpListener::plain(rtmp)];
    if let (Some(listener), Some(cert)) = (rtmps, &cert) {
        let tls = tls::listener_config(cert, false)?;
        rtmp_listeners.push(ingest::RtmpListener::tls(listener, tls));
    }
    let https_server = match (https, &cert) {
        (Some(listener), Some(cert)) => {
            let tls = tls::listener_config(cert, true)?;
            Some(tokio::spawn(httpd::serve_tls(
                listener,
                app.clone(),
                tls,
                crate::http_options::fit_to_process(config.http.clone()),
                stop.stopped(),
            )))
        }
        _ => None,
    };
    let cert_watch =
        cert.map(|cert| tokio::spawn(tls::watch(cert, tls::WATCH_INTERVAL, stop.stopped())));
    Ok((rtmp_listeners, https_server, cert_watch))
}

/// What the web pages need to know: where publishers connect, where analytics is.
fn web_config(rtmp: std::net::SocketAddr, config: &ServeConfig) -> web::WebConfig {
    web::WebConfig {
        rtmp_port: Some(rtmp.port()),
        analytics: match &config.analytics.mode {
            AnalyticsMode::Local => web::AnalyticsLink::Local,
            // Delivery events go there; the pages cannot know a public URL for it.
            AnalyticsMode::Remote(url) => web::AnalyticsLink::Remote(url.clone()),
            AnalyticsMode::Off => web::AnalyticsLink::Off,
        },
        dvr_record_default: (!config.record.recorder.dvr_window.is_zero())
            .then_some(config.record.default),
    }
}

/// The data directory, made if missing.
pub(crate) fn create_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the data directory {} (set --data-dir)",
            dir.display()
        )
    })
}

/// The process's Prometheus recorder, which `/metrics` renders.
pub(crate) fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    PrometheusBuilder::new()
        .install_recorder()
        .context("cannot install the metrics recorder")
}

pub(crate) async fn metrics_page(handle: PrometheusHandle) -> impl IntoResponse {
    // Tasks alive on this runtime: a leak shows here first (the soak bench reads it).
    metrics::gauge!("rivulet_runtime_tasks").set(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks() as f64,
    );
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}
