//! Wiring of the metadata server: opening the store, the admin token, live state from
//! the hub, and `rivulet meta` (the metadata server alone).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use hub::{Hub, MediaEvent, Session, SubscriberEvent};
use meta::remote::{RemoteEvent, RemoteKeys, RemoteMeta};
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

/// When a publish's facts (bitrate, renditions) are first reported, after its
/// media starts to flow.
const FIRST_REPORT: Duration = Duration::from_secs(2);
/// How often they are reported after that.
const REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Tries of an offline report.
const OFFLINE_ATTEMPTS: u32 = 5;
/// How often declared streams are offered again to an unreachable metadata server.
const DECLARE_RETRY: Duration = Duration::from_secs(5);

/// A name for this node in the streams' live state: host name and RTMP port.
pub(crate) fn node_name(rtmp_port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rivulet".into());
    format!("{host}:{rtmp_port}")
}

/// Where this node reports live state: the store in this process, or a remote
/// metadata server. The same facts go to either.
#[derive(Clone)]
pub(crate) enum MetaLink {
    Local(MetaStore),
    Remote(RemoteMeta),
}

impl MetaLink {
    async fn set_live(&self, name: &str, report: &LiveReport) -> anyhow::Result<()> {
        match self {
            Self::Local(store) => store.set_live(name, report).await?,
            Self::Remote(remote) => remote.set_live(name, report).await?,
        }
        Ok(())
    }

    async fn set_offline(&self, name: &str, since: Option<i64>) -> anyhow::Result<()> {
        match self {
            Self::Local(store) => store.set_offline(name, since).await?,
            Self::Remote(remote) => remote.set_offline(name, since).await?,
        }
        Ok(())
    }

    async fn reset_node(&self, node: &str) -> anyhow::Result<u64> {
        Ok(match self {
            Self::Local(store) => u64::try_from(store.reset_node(node).await?).unwrap_or(u64::MAX),
            Self::Remote(remote) => remote.reset_node(node).await?,
        })
    }
}

/// Stores the declared streams on the remote metadata server, and remembers their
/// keys as last known good. If the server cannot be reached now, this keeps trying in
/// the background; a refusal (a key another stream has, a bad token) stops the start.
pub(crate) async fn declare_remote(
    keys: &RemoteKeys,
    streams: &[StreamDecl],
) -> anyhow::Result<()> {
    let mut pending = Vec::new();
    for s in streams {
        let name = StreamName::parse(&s.name).map_err(|e| anyhow::anyhow!(e))?;
        keys.seed(&s.key, &s.name);
        match keys.remote().declare(&name, &s.key).await {
            Ok(changed) => {
                if changed {
                    tracing::info!(stream = %s.name, meta = %keys.remote().url(), "declared stream stored on the metadata server (its key is the one given)");
                }
            }
            Err(e) if e.is_unavailable() => pending.push((name, s.key.clone())),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot declare stream '{}'", s.name));
            }
        }
    }
    if !pending.is_empty() {
        tracing::warn!(
            meta = %keys.remote().url(),
            streams = pending.len(),
            "metadata server unreachable: the declared streams will be stored there when it answers (their keys work here meanwhile)"
        );
        let remote = keys.remote().clone();
        tokio::spawn(async move {
            while !pending.is_empty() {
                tokio::time::sleep(DECLARE_RETRY).await;
                let mut left = Vec::new();
                for (name, key) in pending {
                    match remote.declare(&name, &key).await {
                        Ok(_) => {
                            tracing::info!(stream = %name, "declared stream stored on the metadata server")
                        }
                        Err(e) if e.is_unavailable() => left.push((name, key)),
                        Err(e) => {
                            tracing::error!(stream = %name, error = %e, "the metadata server refused a declared stream")
                        }
                    }
                }
                pending = left;
            }
        });
    }
    Ok(())
}

/// Marks offline the streams this node left live (it crashed, or was stopped while
/// publishers were connected).
pub(crate) async fn reset_node(meta: &MetaLink, node: &str) {
    match meta.reset_node(node).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            streams = n,
            "marked offline the streams this node had left live"
        ),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot mark this node's streams offline")
        }
    }
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
    meta: MetaLink,
    node: String,
    streams: origin::LiveStreams,
    stop: impl Future<Output = ()>,
) {
    let follow = |session: Arc<Session>| {
        tokio::spawn(follow_session(
            meta.clone(),
            node.clone(),
            streams.clone(),
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
    meta: MetaLink,
    node: String,
    streams: origin::LiveStreams,
    session: Arc<Session>,
) {
    let info = session.info().clone();
    let mut media = session.subscribe();
    drop(session);
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
        tracing::warn!(stream = %info.stream, error = %format!("{e:#}"), "cannot record the stream as live");
    }
    let titles = match &meta {
        MetaLink::Remote(remote) => Some(tokio::spawn(follow_title(
            remote.clone(),
            info.stream.clone(),
            streams.clone(),
        ))),
        MetaLink::Local(_) => None,
    };
    let mut meter = BitrateMeter::new(Instant::now());
    // Facts are first reported a while after media starts to flow (the ingest may
    // hold the first frames back until it knows the tracks), then every interval.
    let mut next_report: Option<tokio::time::Instant> = None;
    loop {
        let report_due = async {
            match next_report {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = media.recv() => {
                if next_report.is_none() {
                    meter = BitrateMeter::new(Instant::now());
                    next_report = Some(tokio::time::Instant::now() + FIRST_REPORT);
                }
                match event {
                    Some(SubscriberEvent::Media(MediaEvent::Frame(frame))) => {
                        meter.handle_bytes(frame.data.len());
                    }
                    Some(_) => {}
                    // The publisher left.
                    None => break,
                }
            }
            () = report_due => {
                report.ingest_bitrate = meter.poll_bitrate(Instant::now());
                report.renditions = streams
                    .get(&info.stream)
                    .map(|s| serde_json::json!(s.rendition_names()))
                    .filter(|r| r.as_array().is_some_and(|a| !a.is_empty()));
                if let Err(e) = meta.set_live(&info.stream, &report).await {
                    tracing::warn!(stream = %info.stream, error = %format!("{e:#}"), "cannot update the stream's live state");
                }
                next_report = Some(tokio::time::Instant::now() + REPORT_INTERVAL);
            }
        }
    }
    if let Some(titles) = titles {
        titles.abort();
    }
    // Conditional on `since`: if a new publish already started, it stays live. A
    // remote server that is down gets a few more tries; the node's reset at its next
    // start clears what is still left.
    let mut delay = Duration::from_millis(500);
    for attempt in 1..=OFFLINE_ATTEMPTS {
        match meta.set_offline(&info.stream, Some(since)).await {
            Ok(()) => break,
            Err(e) if attempt == OFFLINE_ATTEMPTS => {
                tracing::warn!(stream = %info.stream, error = %format!("{e:#}"), "cannot record the stream as offline");
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
}

/// Bits per second from byte counts: sans-IO, time comes in as `now`.
#[derive(Debug)]
struct BitrateMeter {
    bytes: u64,
    since: Instant,
}

impl BitrateMeter {
    fn new(now: Instant) -> Self {
        Self {
            bytes: 0,
            since: now,
        }
    }

    fn handle_bytes(&mut self, n: usize) {
        self.bytes = self
            .bytes
            .saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// The rate since the last call (or the start), and a new measurement begins.
    /// `None` if no time has passed.
    fn poll_bitrate(&mut self, now: Instant) -> Option<i64> {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed.is_zero() {
            return None;
        }
        let bits = u128::from(self.bytes) * 8 * 1_000_000;
        let rate = bits / elapsed.as_micros().max(1);
        self.bytes = 0;
        self.since = now;
        Some(i64::try_from(rate).unwrap_or(i64::MAX))
    }
}

/// Keeps the origin's title of `stream` equal to the remote metadata server's, from
/// the stream's event stream, reconnecting after errors, until aborted.
async fn follow_title(remote: RemoteMeta, stream: String, streams: origin::LiveStreams) {
    let mut delay = Duration::from_secs(1);
    let mut warned = false;
    loop {
        match remote.events(&stream).await {
            Ok(mut events) => loop {
                match events.next().await {
                    Ok(Some(RemoteEvent::Snapshot(s))) => {
                        delay = Duration::from_secs(1);
                        streams.set_title(&stream, Some(&s.title));
                    }
                    Ok(Some(RemoteEvent::Change(StreamEvent::Metadata { title, .. }))) => {
                        streams.set_title(&stream, Some(&title));
                    }
                    Ok(Some(RemoteEvent::Change(StreamEvent::Deleted { .. }))) => {
                        streams.set_title(&stream, None);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(stream = %stream, error = %e, "the title's event stream broke off");
                        break;
                    }
                }
            },
            Err(e) => {
                if !warned {
                    tracing::warn!(stream = %stream, error = %e, "cannot follow the stream's title on the metadata server; retrying");
                    warned = true;
                }
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
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
        .merge({
            let (routes, doc) =
                meta::api::routes_with_limit(store.clone(), token.clone(), config.api_max_body);
            routes.merge(meta::api::finish(doc))
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrate_is_bits_per_second_since_the_last_poll() {
        let t0 = Instant::now();
        let mut meter = BitrateMeter::new(t0);
        assert_eq!(meter.poll_bitrate(t0), None);
        meter.handle_bytes(500_000);
        meter.handle_bytes(250_000);
        assert_eq!(
            meter.poll_bitrate(t0 + Duration::from_secs(2)),
            Some(3_000_000)
        );
        // A new measurement: nothing arrived since.
        assert_eq!(meter.poll_bitrate(t0 + Duration::from_secs(4)), Some(0));
    }
}
