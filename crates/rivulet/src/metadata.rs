//! Wiring of the metadata server: opening the store, the admin token, live state from
//! the hub, and `rivulet meta` (the metadata server alone).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use hub::{Hub, Session};
use meta::{AdminToken, ListQuery, LiveReport, MetaStore, StreamEvent, StreamName, TokenSource};
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
                meta::redact_url(url)
            ),
            None => format!(
                "cannot open the metadata database {} (check --data-dir)",
                data_dir.join(meta::SQLITE_FILE).display()
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

/// A name for this node in the streams' live state: host name and RTMP port.
pub(crate) fn node_name(rtmp_port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rivulet".into());
    format!("{host}:{rtmp_port}")
}

/// Marks offline the streams this node left live (it crashed, or was stopped while
/// publishers were connected).
pub(crate) async fn reset_node(store: &MetaStore, node: &str) {
    match store.reset_node(node).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            streams = n,
            "marked offline the streams this node had left live"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot mark this node's streams offline"),
    }
}

/// Reports publish sessions on the hub to the store as live/offline until `stop`.
/// Takes the hub's announcements already subscribed, so that the caller can make sure
/// no session starts unseen before this task runs.
pub(crate) async fn track_live(
    hub: Hub,
    mut announcements: broadcast::Receiver<Arc<Session>>,
    store: MetaStore,
    node: String,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            announced = announcements.recv() => match announced {
                Ok(session) => {
                    tokio::spawn(follow_session(hub.clone(), store.clone(), node.clone(), session));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Some starts were missed: follow every live session again (a
                    // second report of the same publish changes nothing but the version).
                    for name in hub.live_streams() {
                        if let Some(session) = hub.session(&name) {
                            tokio::spawn(follow_session(hub.clone(), store.clone(), node.clone(), session));
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

/// Marks the session's stream live, waits for the session to end, marks it offline.
async fn follow_session(hub: Hub, store: MetaStore, node: String, session: Arc<Session>) {
    let info = session.info().clone();
    drop(session);
    let since = info
        .started_at
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let report = LiveReport {
        since,
        ingest_node: Some(node),
        ..Default::default()
    };
    if let Err(e) = store.set_live(&info.stream, &report).await {
        tracing::warn!(stream = %info.stream, error = %e, "cannot record the stream as live");
    }
    let mut current = hub.watch_stream(&info.stream);
    let _ = current
        .wait_for(|s| s.as_ref().is_none_or(|s| s.info().id != info.id))
        .await;
    // Conditional on `since`: if a new publish already started, it stays live.
    if let Err(e) = store.set_offline(&info.stream, Some(since)).await {
        tracing::warn!(stream = %info.stream, error = %e, "cannot record the stream as offline");
    }
}

/// Keeps the origin's stream titles (its `EXT-X-SESSION-DATA`) equal to the store's
/// until `stop`: all of them first, then every change.
pub(crate) async fn sync_titles(
    store: MetaStore,
    streams: origin::LiveStreams,
    stop: impl Future<Output = ()>,
) {
    // Subscribed before the first load, so that no change falls between the two.
    let mut changes = store.subscribe();
    let mut reload = true;
    tokio::pin!(stop);
    loop {
        if reload {
            reload = false;
            if let Err(e) = load_titles(&store, &streams).await {
                tracing::warn!(error = %e, "cannot load stream titles for the playlists");
            }
        }
        tokio::select! {
            () = &mut stop => break,
            change = changes.recv() => match change {
                Ok(StreamEvent::Metadata { stream, title, .. }) => {
                    streams.set_title(&stream, Some(&title));
                }
                Ok(StreamEvent::Deleted { stream }) => streams.set_title(&stream, None),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => reload = true,
                Err(broadcast::error::RecvError::Closed) => break,
            },
        }
    }
}

async fn load_titles(
    store: &MetaStore,
    streams: &origin::LiveStreams,
) -> Result<(), meta::MetaError> {
    let mut query = ListQuery {
        limit: meta::MAX_PAGE,
        ..ListQuery::default()
    };
    loop {
        let page = store.list(&query).await?;
        for s in &page.streams {
            streams.set_title(&s.name, Some(&s.title));
        }
        match page.next_cursor {
            Some(cursor) => query.after = Some(StreamName::parse(&cursor)?),
            None => return Ok(()),
        }
    }
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
    let (token, source) = admin_token(config.admin_token.as_ref(), &config.data_dir)?;
    let listener = TcpListener::bind(config.http_listen)
        .await
        .with_context(|| format!("cannot listen for HTTP on {} (is another server using the port? set --http-listen)", config.http_listen))?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .merge(meta::api::router(store.clone(), token.clone()))
        .route("/healthz", get(|| async { "ok\n" }));
    let http = crate::serve::display_addr(addr);
    println!("Rivulet metadata server is running.");
    println!("  HTTP: http://{http}/");
    print_api_banner(&format!("http://{http}"), &token, source, &config.data_dir);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .context("HTTP server failed")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
