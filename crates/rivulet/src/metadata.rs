//! Wiring of the metadata server: opening the store, the admin token, live state from
//! the hub, and `rivulet meta` (the metadata server alone).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use hub::{BitrateMeter, Hub, Session};
use meta::live::{LiveLink, TitleSink};
use meta::remote::RemoteKeys;
use meta::{AdminToken, LiveReport, MetaStore, StreamName, TokenSource};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::config::{MetaConfig, StreamDecl};

/// Opens the metadata database and creates (or re-keys) the declared streams.
pub(crate) async fn open_store(
    database_url: Option<&str>,
    data_dir: &Path,
    streams: &[StreamDecl],
) -> anyhow::Result<MetaStore> {
    let store = MetaStore::connect(database_url, data_dir)
        .await
        .with_context(|| match database_url {
            Some(url) => format!(
                "cannot open the metadata database {} (check --database-url)",
                db::redact_url(url)
            ),
            None => format!(
                "cannot open the metadata database {} (check --data-dir)",
                data_dir.join(db::SQLITE_FILE).display()
            ),
        })?;
    for s in streams {
        let name = StreamName::parse(&s.name).map_err(|e| anyhow::anyhow!(e))?;
        let changed = store
            .upsert_with_key(&name, &s.key)
            .await
            .with_context(|| format!("cannot declare stream '{}'", s.name))?;
        if changed {
            tracing::info!(stream = %s.name, "declared stream stored (its key is the one given)");
        }
    }
    Ok(store)
}

/// Stores the configuration's webhooks (and forgets the ones no longer declared).
pub(crate) async fn declare_webhooks(
    store: &MetaStore,
    webhooks: &crate::hooks_options::WebhookSettings,
) -> anyhow::Result<()> {
    store
        .declare_webhooks(&webhooks.declared)
        .await
        .context("cannot store the declared webhooks")
}

/// The admin token, generated and stored in the data directory if none is configured.
pub(crate) fn admin_token(
    configured: Option<&AdminToken>,
    data_dir: &Path,
) -> anyhow::Result<(AdminToken, TokenSource)> {
    match configured {
        Some(token) => Ok((token.clone(), TokenSource::Configured)),
        None => AdminToken::load_or_generate(None, data_dir)
            .context("cannot set up the admin token (set --admin-token)"),
    }
}

/// The file in the data directory holding the generated playback key.
pub(crate) const PLAYBACK_KEY_FILE: &str = "playback-key";
/// The id of the generated playback key.
pub(crate) const PLAYBACK_KEY_ID: &str = "local";

/// The keys of signed playback: the configured ones, else the one in
/// DATA_DIR/playback-key (generated on the first start, like the admin token).
pub(crate) fn playback_keys(
    configured: &access::playback::PlaybackKeys,
    data_dir: &Path,
) -> anyhow::Result<(access::playback::PlaybackKeys, TokenSource)> {
    if !configured.is_empty() {
        return Ok((configured.clone(), TokenSource::Configured));
    }
    let path = data_dir.join(PLAYBACK_KEY_FILE);
    let (secret, source) = db::secret::load_or_generate_secret(&path)
        .context("cannot set up the playback key (set --playback-key ID=SECRET)")?;
    let mut keys = access::playback::PlaybackKeys::default();
    keys.add(PLAYBACK_KEY_ID, secret.as_bytes())
        .with_context(|| format!("the playback key in {} is not usable", path.display()))?;
    Ok((keys, source))
}

/// The start-up banner's line about the playback key.
pub(crate) fn print_playback_banner(
    keys: &access::playback::PlaybackKeys,
    source: TokenSource,
    data_dir: &Path,
) {
    match source {
        TokenSource::Configured => println!(
            "  Playback keys (private streams): {} (the first signs)",
            keys.ids().collect::<Vec<_>>().join(", ")
        ),
        _ => println!(
            "  Playback key (private streams): id `{PLAYBACK_KEY_ID}` in {}; give edges --playback-key {PLAYBACK_KEY_ID}=\"$(cat FILE)\"",
            data_dir.join(PLAYBACK_KEY_FILE).display()
        ),
    }
}

/// Lines of the start-up banner about the API and its token.
pub(crate) fn print_api_banner(
    http: &str,
    token: &AdminToken,
    source: TokenSource,
    data_dir: &Path,
) {
    println!("  API: {http}/api (OpenAPI document: {http}/api/openapi.json)");
    let file = data_dir.join(meta::TOKEN_FILE);
    match source {
        TokenSource::Configured => println!("  Admin token: the one configured"),
        TokenSource::File => println!("  Admin token: in {}", file.display()),
        TokenSource::Generated => {
            println!(
                "  Admin token (generated now and shown only this once; kept in {}): {}",
                file.display(),
                token.expose()
            );
        }
    }
}

/// When a publish's facts (bitrate, renditions) are first reported, after its
/// media starts to flow.
const FIRST_REPORT: Duration = Duration::from_secs(2);
/// How often they are reported after that.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// A name for this node in the streams' live state: host name and RTMP port.
pub(crate) fn node_name(rtmp_port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rivulet".into());
    format!("{host}:{rtmp_port}")
}

/// Stores the declared streams on the remote metadata server (see
/// [`meta::live::declare_remote`]); a refusal stops the start.
pub(crate) async fn declare_remote(
    keys: &RemoteKeys,
    streams: &[StreamDecl],
) -> anyhow::Result<()> {
    let declared = streams
        .iter()
        .map(|s| Ok((StreamName::parse(&s.name)?, s.key.clone())))
        .collect::<Result<Vec<_>, meta::ValidationError>>()?;
    meta::live::declare_remote(keys, &declared)
        .await
        .map_err(|(name, e)| {
            anyhow::Error::new(e).context(format!("cannot declare stream '{name}'"))
        })
}

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

/// Reports publish sessions on the hub as live/offline until `stop`, with their
/// facts: start time, this node, renditions and ingest bitrate (refreshed every
/// [`REPORT_INTERVAL`]). With a remote metadata server, the titles of the streams
/// published here follow its event streams. Takes the hub's announcements already
/// subscribed, so that the caller can make sure no session starts unseen before this
/// task runs.
pub(crate) async fn track_live(
    hub: Hub,
    mut announcements: broadcast::Receiver<Arc<Session>>,
    meta: LiveLink,
    node: String,
    streams: origin::LiveStreams,
    srt_stats: ingest::SrtStatsRegistry,
    stop: impl Future<Output = ()>,
) {
    let follow = |session: Arc<Session>| {
        tokio::spawn(follow_session(
            meta.clone(),
            node.clone(),
            streams.clone(),
            srt_stats.clone(),
            session,
        ));
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            announced = announcements.recv() => match announced {
                Ok(session) => follow(session),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Some starts were missed: follow every live session again (a
                    // second report of the same publish changes nothing but the version).
                    for name in hub.live_streams() {
                        if let Some(session) = hub.session(&name) {
                            follow(session);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// Marks the session's stream live, refreshes its facts while it lasts, marks it
/// offline when the publisher leaves.
async fn follow_session(
    meta: LiveLink,
    node: String,
    streams: origin::LiveStreams,
    srt_stats: ingest::SrtStatsRegistry,
    session: Arc<Session>,
) {
    let info = session.info().clone();
    let mut media = session.subscribe();
    let since = info
        .started_at
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mut report = LiveReport {
        since,
        ingest_node: Some(node),
        ..Default::default()
    };
    if let Err(e) = meta.set_live(&info.stream, &report).await {
        tracing::warn!(stream = %info.stream, error = %e, "cannot record the stream as live");
    }
    let titles = match &meta {
        LiveLink::Remote(remote) => Some(tokio::spawn(meta::live::follow_remote_title(
            remote.clone(),
            info.stream.clone(),
            title_sink(&streams),
        ))),
        LiveLink::Local(_) => None,
    };
    // Facts are first reported a while after media starts to flow (the ingest may
    // hold the first frames back until it knows the tracks), then every interval.
    let mut meter: Option<BitrateMeter> = None;
    let mut next_report: Option<tokio::time::Instant> = None;
    loop {
        let report_due = async {
            match next_report {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = media.recv() => match event {
                Some(_) if next_report.is_none() => {
                    meter = Some(BitrateMeter::new(Instant::now(), session.media_bytes()));
                    next_report = Some(tokio::time::Instant::now() + FIRST_REPORT);
                }
                Some(_) => {}
                // The publisher left.
                None => break,
            },
            () = report_due => {
                report.ingest_bitrate = meter
                    .as_mut()
                    .and_then(|m| m.poll_bitrate(Instant::now(), session.media_bytes()))
                    .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
                report.renditions = streams
                    .get(&info.stream)
                    .map(|s| serde_json::json!(s.rendition_names()))
                    .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()));
                report.ingest_stats = srt_stats.get(&info.stream).map(|s| srt_stats_json(&s));
                if let Err(e) = meta.set_live(&info.stream, &report).await {
                    tracing::warn!(stream = %info.stream, error = %e, "cannot update the stream's live state");
                }
                next_report = Some(tokio::time::Instant::now() + REPORT_INTERVAL);
            }
        }
    }
    if let Some(titles) = titles {
        titles.abort();
    }
    // Conditional on `since`: if a new publish already started, it stays live.
    meta.set_offline_with_retries(&info.stream, since).await;
}

/// An SRT publisher's statistics as the stream's `live.ingest_stats` (docs/srt.md).
fn srt_stats_json(s: &ingest::SrtConnectionStats) -> serde_json::Value {
    serde_json::json!({
        "protocol": "srt",
        "peer": s.peer,
        "latency_ms": s.latency_ms,
        "packets_received": s.packets_received,
        "bytes_received": s.bytes_received,
        "loss_reports": s.loss_reports,
        "packets_retransmitted": s.packets_retransmitted,
        "packets_dropped": s.packets_dropped,
        "receive_buffer_ms": s.receive_buffer_ms,
        "ts_continuity_gaps": s.ts_continuity_gaps,
        "unsupported_streams": s.unsupported_streams,
    })
}

/// `rivulet meta`: the API and the database, without ingest or origin.
pub(crate) async fn run(
    config: MetaConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {} (set --data-dir)",
            config.data_dir.display()
        )
    })?;
    let store = open_store(
        config.database_url.as_deref(),
        &config.data_dir,
        &config.streams,
    )
    .await?;
    declare_webhooks(&store, &config.webhooks).await?;
    let (token, source) = admin_token(config.admin_token.as_ref(), &config.data_dir)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let webhooks = tokio::spawn(meta::webhooks::run_sender(
        store.clone(),
        config.webhooks.sender,
        stopped(stop_rx.clone()),
    ));
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (playback, playback_source) = playback_keys(&config.playback_keys, &config.data_dir)?;
    let listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {} (is another server using the port? set --http-listen)", config.http_listen))?;
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
    let http = crate::serve::display_addr(addr);
    println!("Rivulet metadata server is running.");
    println!("  HTTP: http://{http}/");
    // Before the admin token's line: scripts may stop reading at that one.
    print_playback_banner(&playback, playback_source, &config.data_dir);
    print_api_banner(&format!("http://{http}"), &token, source, &config.data_dir);
    crate::systemd::notify_ready();
    httpd::serve(
        listener,
        app,
        crate::http_options::fit_to_process(config.http.clone()),
        stopped(stop_rx),
    )
    .await;
    webhooks.await.context("webhook task panicked")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
