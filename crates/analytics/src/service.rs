//! [`Analytics`]: the aggregator, the GeoIP database and the store, driven by one
//! background task, and the queries the API answers.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::EventsAccess;
use crate::aggregate::{Aggregator, AggregatorConfig, Concurrent};
use crate::beacon::ValidBeacon;
use crate::client::{TrustedProxies, session_id};
use crate::error::AnalyticsError;
use crate::event::{DeliveryEvent, now_ms};
use crate::geo::GeoIp;
use crate::known::{KnownStreams, StreamDirectory};
use crate::rollup::{Dim, Figures, MINUTE_MS, RollupRow, minute_of};
use crate::store::{AnalyticsStore, RawBeacon, RawDelivery};

/// Settings of the analytics server.
#[derive(Clone, Debug)]
pub struct AnalyticsConfig {
    pub aggregator: AggregatorConfig,
    /// How long raw events (with client addresses) are kept.
    pub retention: Duration,
    /// Proxies whose `X-Forwarded-For` is believed (for beacons).
    pub trusted_proxies: TrustedProxies,
    /// Who may `POST /api/analytics/events`: nobody (in-process events only, the
    /// default) or the holders of a token.
    pub events: EventsAccess,
    /// Raw events held for the next write at most; more are not stored raw (the
    /// rollups still count them), so that a slow database cannot eat the memory.
    pub raw_buffer: usize,
    /// Raw rows kept in the database per table (deliveries, beacons) at most; the
    /// oldest are deleted beyond it (`analytics_raw_pruned_total{reason="cap"}`), on top
    /// of the retention.
    pub max_raw_rows: u64,
    /// The streams that exist (beacons about others are refused). Without one, only
    /// streams an origin or edge reported serving are known.
    pub directory: Option<Arc<dyn StreamDirectory>>,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            aggregator: AggregatorConfig::default(),
            retention: Duration::from_secs(48 * 3600),
            trusted_proxies: TrustedProxies::default(),
            events: EventsAccess::default(),
            raw_buffer: 200_000,
            max_raw_rows: DEFAULT_MAX_RAW_ROWS,
            directory: None,
        }
    }
}

/// Default of [`AnalyticsConfig::max_raw_rows`].
pub const DEFAULT_MAX_RAW_ROWS: u64 = 2_000_000;

/// Why a beacon batch was refused by the service (after it parsed).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no stream named '{stream}' is known here: beacons are taken for streams that exist or are being served"
)]
pub struct UnknownStream {
    /// The beacon at fault, as a path (`beacons[2].stream`).
    pub field: String,
    pub stream: String,
}

/// The analytics server. Cheap to clone.
#[derive(Clone)]
pub struct Analytics {
    inner: Arc<Inner>,
}

struct Inner {
    config: AnalyticsConfig,
    store: AnalyticsStore,
    geo: GeoIp,
    agg: Mutex<Aggregator>,
    raw: Mutex<RawBuffer>,
    /// Held while rows move from memory to the database and while a query reads
    /// both, so that a query sees each row exactly once.
    flush: tokio::sync::Mutex<()>,
    /// Salt of hashed session ids made here (beacons without an id); the in-process
    /// emitter uses the same, so that a player's requests and beacons meet.
    salt: [u8; 16],
    /// Streams given a concurrency gauge, to set it to 0 when they empty.
    gauged: Mutex<HashSet<String>>,
    /// The latest upstream each edge got a stream from: (stream, edge) → (upstream,
    /// time of the event). In memory only: it says what is happening now.
    upstreams: Mutex<BTreeMap<(String, String), (String, i64)>>,
    /// The streams beacons (and error deliveries) may be about.
    known: Mutex<KnownStreams>,
}

/// Entries of the upstream table older than this are forgotten (the edge is gone,
/// or no longer serves the stream).
const UPSTREAM_MEMORY_MS: i64 = 3_600_000;

#[derive(Default)]
struct RawBuffer {
    deliveries: Vec<RawDelivery>,
    beacons: Vec<RawBeacon>,
    /// Rollup rows whose write failed, tried again next time.
    retry_rows: Vec<RollupRow>,
}

/// `GET /api/analytics/streams/{name}/summary`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamSummary {
    pub stream: String,
    /// Start of the window, ms since the epoch.
    pub from: i64,
    /// End of the window (exclusive), ms since the epoch.
    pub to: i64,
    /// A session is a concurrent viewer while its latest request or beacon is at most
    /// this old (ms).
    pub active_window_ms: i64,
    /// Sessions active now.
    pub concurrent_viewers: u64,
    /// The figures over `from..to`.
    #[serde(flatten)]
    pub figures: Figures,
    pub by_country: Vec<Breakdown>,
    pub by_rendition: Vec<Breakdown>,
    pub by_edge: Vec<Breakdown>,
    /// Which upstream (pipeline: origin or shield) each edge serves the stream from,
    /// by the latest delivery event that edge reported (last hour).
    pub edges: Vec<EdgeUpstream>,
}

/// The upstream an edge served a stream from, last time it said.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EdgeUpstream {
    /// The edge's name (as in its delivery events).
    pub edge: String,
    /// The upstream's base URL.
    pub upstream: String,
    /// When that edge last reported serving the stream from it, ms since the epoch.
    pub last_seen_ms: i64,
}

/// `GET /api/analytics/summary`: the same figures for the whole platform, and per stream.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PlatformSummary {
    pub from: i64,
    pub to: i64,
    pub active_window_ms: i64,
    pub concurrent_viewers: u64,
    #[serde(flatten)]
    pub figures: Figures,
    /// One entry per stream with data in the window or viewers now.
    pub streams: Vec<Breakdown>,
    pub by_country: Vec<Breakdown>,
    pub by_rendition: Vec<Breakdown>,
    pub by_edge: Vec<Breakdown>,
}

/// The figures of one breakdown value (a country, a rendition, an edge, a stream).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Breakdown {
    pub value: String,
    pub concurrent_viewers: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// `GET …/timeseries`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Timeseries {
    pub metric: String,
    /// The breakdown, or `total`.
    pub by: Dim,
    pub from: i64,
    pub to: i64,
    pub step_ms: i64,
    /// One series per breakdown value (`""` for the total).
    pub series: Vec<Series>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Series {
    pub key: String,
    /// `[start of step (ms since the epoch), value or null]`.
    pub points: Vec<(i64, Option<f64>)>,
}

impl Analytics {
    pub fn new(store: AnalyticsStore, geo: GeoIp, config: AnalyticsConfig) -> Self {
        let mut salt = [0u8; 16];
        rand::fill(&mut salt[..]);
        Self {
            inner: Arc::new(Inner {
                agg: Mutex::new(Aggregator::new(config.aggregator)),
                config,
                store,
                geo,
                raw: Mutex::new(RawBuffer::default()),
                flush: tokio::sync::Mutex::new(()),
                salt,
                gauged: Mutex::new(HashSet::new()),
                upstreams: Mutex::new(BTreeMap::new()),
                known: Mutex::new(KnownStreams::default()),
            }),
        }
    }

    pub fn config(&self) -> &AnalyticsConfig {
        &self.inner.config
    }

    pub fn store(&self) -> &AnalyticsStore {
        &self.inner.store
    }

    pub fn geo(&self) -> &GeoIp {
        &self.inner.geo
    }

    pub(crate) fn salt(&self) -> &[u8; 16] {
        &self.inner.salt
    }

    /// Takes delivery events (from the in-process emitter or a remote server's batch).
    ///
    /// A success (status below 400) proves its stream exists; an error about a stream
    /// not known otherwise is not counted (`analytics_events_ignored_total`): a request
    /// for a made-up name must not become a stream with its own rows.
    pub fn ingest_deliveries(&self, events: impl IntoIterator<Item = DeliveryEvent>) {
        let mut countries = Vec::new();
        let mut ignored = 0u64;
        let events: Vec<DeliveryEvent> = {
            let mut known = lock(&self.inner.known);
            events
                .into_iter()
                .filter(|e| {
                    if e.status < 400 {
                        known.handle_served(&e.stream, e.ts);
                        true
                    } else if known.is_known(&e.stream) {
                        true
                    } else {
                        ignored += 1;
                        false
                    }
                })
                .collect()
        };
        if ignored > 0 {
            metrics::counter!("analytics_events_ignored_total", "reason" => "unknown_stream")
                .increment(ignored);
        }
        for e in &events {
            countries.push(self.inner.geo.country(e.client));
        }
        {
            let mut agg = lock(&self.inner.agg);
            for (e, country) in events.iter().zip(&countries) {
                agg.handle_delivery(e, country);
            }
        }
        metrics::counter!("analytics_events_ingested_total").increment(events.len() as u64);
        {
            let mut upstreams = lock(&self.inner.upstreams);
            for e in &events {
                let Some(upstream) = &e.upstream else {
                    continue;
                };
                let entry = upstreams
                    .entry((e.stream.clone(), e.edge.clone()))
                    .or_insert_with(|| (upstream.clone(), e.ts));
                // Batches from different edges interleave; within an edge, the latest
                // event wins.
                if e.ts >= entry.1 {
                    *entry = (upstream.clone(), e.ts);
                }
            }
        }
        let mut raw = lock(&self.inner.raw);
        let room = self
            .inner
            .config
            .raw_buffer
            .saturating_sub(raw.deliveries.len());
        let dropped = events.len().saturating_sub(room);
        raw.deliveries.extend(
            events
                .into_iter()
                .zip(countries)
                .take(room)
                .map(|(event, country)| RawDelivery { event, country }),
        );
        if dropped > 0 {
            metrics::counter!("analytics_raw_dropped_total").increment(dropped as u64);
        }
    }

    /// Takes validated beacons from `client` (already resolved through trusted proxies).
    /// A batch with a beacon about a stream that is not known (declared in the metadata
    /// tables, or served within the session memory) is refused whole, and nothing of
    /// it is kept: made-up names must not grow the sessions and rollups.
    pub fn ingest_beacons(
        &self,
        beacons: Vec<ValidBeacon>,
        client: IpAddr,
        user_agent: Option<&str>,
    ) -> Result<(), UnknownStream> {
        {
            let known = lock(&self.inner.known);
            if let Some((i, b)) = beacons
                .iter()
                .enumerate()
                .find(|(_, b)| !known.is_known(&b.stream))
            {
                return Err(UnknownStream {
                    field: format!("beacons[{i}].stream"),
                    stream: b.stream.clone(),
                });
            }
        }
        let now = now_ms();
        let country = self.inner.geo.country(client);
        let mut raw_rows = Vec::with_capacity(beacons.len());
        {
            let mut agg = lock(&self.inner.agg);
            for b in &beacons {
                let session = session_id(
                    b.cmcd.sid.as_deref(),
                    b.session_id.as_deref(),
                    client,
                    user_agent,
                    &self.inner.salt,
                );
                // A player's clock may be anywhere: believe it only when it is close.
                let ts =
                    b.ts.filter(|ts| (ts - now).abs() <= BEACON_CLOCK_SKEW_MS)
                        .unwrap_or(now);
                agg.handle_beacon(ts, &session, b, &country);
                raw_rows.push(RawBeacon {
                    ts,
                    stream: b.stream.clone(),
                    session,
                    client_ip: client.to_string(),
                    country: country.clone(),
                    body: beacon_json(b),
                });
            }
        }
        metrics::counter!("analytics_beacons_accepted_total").increment(beacons.len() as u64);
        let mut raw = lock(&self.inner.raw);
        let room = self
            .inner
            .config
            .raw_buffer
            .saturating_sub(raw.beacons.len());
        let dropped = raw_rows.len().saturating_sub(room);
        raw.beacons.extend(raw_rows.into_iter().take(room));
        if dropped > 0 {
            metrics::counter!("analytics_raw_dropped_total").increment(dropped as u64);
        }
        Ok(())
    }

    /// Reads the stream names of the [`AnalyticsConfig::directory`] into the set of
    /// known streams.
    pub async fn refresh_known(&self) {
        let Some(directory) = &self.inner.config.directory else {
            return;
        };
        match directory.stream_names(MAX_DECLARED_STREAMS).await {
            Ok(names) => lock(&self.inner.known).set_declared(names),
            // Without the list, the previous one and the served streams still count.
            Err(e) => tracing::warn!(error = %e, "cannot read the stream names for analytics"),
        }
    }

    /// Runs the background work until `stop`: every second, closed minutes and raw
    /// events go to the database and the gauges are set; every minute, raw events
    /// past the retention are pruned. At `stop`, everything still open is written.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune: Option<i64> = None;
        let mut last_refresh: Option<i64> = None;
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = tick.tick() => {}
            }
            let now = now_ms();
            if last_refresh.is_none_or(|last| now.saturating_sub(last) >= REFRESH_KNOWN_EVERY_MS) {
                last_refresh = Some(now);
                self.refresh_known().await;
            }
            self.flush(now, false).await;
            self.set_gauges(now);
            if last_prune.is_none_or(|last| now.saturating_sub(last) >= PRUNE_EVERY_MS) {
                last_prune = Some(now);
                self.prune(now).await;
            }
        }
        self.flush(now_ms(), true).await;
    }

    /// Writes the closed minutes (all of them if `all`) and the raw events.
    pub async fn flush(&self, now: i64, all: bool) {
        let _guard = self.inner.flush.lock().await;
        let mut rows = {
            let mut agg = lock(&self.inner.agg);
            if all {
                agg.take_all()
            } else {
                agg.take_closed(now)
            }
        };
        let (deliveries, beacons) = {
            let mut raw = lock(&self.inner.raw);
            rows.append(&mut raw.retry_rows);
            (
                std::mem::take(&mut raw.deliveries),
                std::mem::take(&mut raw.beacons),
            )
        };
        if let Err(e) = self.inner.store.write(&rows, &deliveries, &beacons).await {
            tracing::warn!(error = %e, rows = rows.len(), raw = deliveries.len() + beacons.len(),
                "cannot write analytics; rollups will be retried, raw events are lost");
            metrics::counter!("analytics_raw_dropped_total")
                .increment((deliveries.len() + beacons.len()) as u64);
            let mut raw = lock(&self.inner.raw);
            // Bounded: a database that stays down must not eat the memory.
            if raw.retry_rows.len() < MAX_RETRY_ROWS {
                raw.retry_rows.extend(rows);
            }
        }
    }

    /// Deletes raw events older than the retention and forgets idle sessions.
    pub async fn prune(&self, now: i64) {
        let retention = i64::try_from(self.inner.config.retention.as_millis()).unwrap_or(i64::MAX);
        match self.inner.store.prune(now.saturating_sub(retention)).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "pruned raw analytics events"),
            Err(e) => tracing::warn!(error = %e, "cannot prune raw analytics events"),
        }
        match self
            .inner
            .store
            .cap_raw(self.inner.config.max_raw_rows)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(
                    rows = n,
                    cap = self.inner.config.max_raw_rows,
                    "deleted the oldest raw analytics events beyond the cap (--analytics-max-raw-rows)"
                );
                metrics::counter!("analytics_raw_pruned_total", "reason" => "cap").increment(n);
            }
            Err(e) => tracing::warn!(error = %e, "cannot cap the raw analytics events"),
        }
        let memory = self.inner.config.aggregator.memory_ms;
        lock(&self.inner.agg).prune(now);
        lock(&self.inner.known).prune(now.saturating_sub(memory));
        lock(&self.inner.upstreams)
            .retain(|_, (_, ts)| now.saturating_sub(*ts) < UPSTREAM_MEMORY_MS);
    }

    /// Sessions active now, of one stream or of all.
    pub fn concurrent(&self, stream: Option<&str>) -> Concurrent {
        lock(&self.inner.agg).concurrent(now_ms(), stream)
    }

    /// The summary of one stream over `from..to`.
    pub async fn stream_summary(
        &self,
        stream: &str,
        from: i64,
        to: i64,
    ) -> Result<StreamSummary, AnalyticsError> {
        let dims = [Dim::Total, Dim::Country, Dim::Rendition, Dim::Edge];
        let rows = self.rows(stream, &dims, from, to).await?;
        let now = self.concurrent(Some(stream));
        let edges = self.edge_upstreams(stream);
        let stream = stream.to_owned();
        let active_window_ms = self.inner.config.aggregator.window_ms;
        let max_values = self.inner.config.aggregator.max_values;
        // A long window is many stored rows: summed off the async workers.
        off_runtime(move || {
            let mut b = breakdowns(&rows, &now, max_values);
            StreamSummary {
                stream,
                from,
                to,
                active_window_ms,
                concurrent_viewers: now.total,
                figures: Figures::from_rows(rows.iter().filter(|r| r.dim == Some(Dim::Total))),
                by_country: b.remove(&Dim::Country).unwrap_or_default(),
                by_rendition: b.remove(&Dim::Rendition).unwrap_or_default(),
                by_edge: b.remove(&Dim::Edge).unwrap_or_default(),
                edges,
            }
        })
        .await
    }

    /// The latest upstream of each edge serving `stream` (the last hour's).
    pub fn edge_upstreams(&self, stream: &str) -> Vec<EdgeUpstream> {
        let now = now_ms();
        lock(&self.inner.upstreams)
            .range((stream.to_owned(), String::new())..)
            .take_while(|((s, _), _)| s == stream)
            .filter(|(_, (_, ts))| now.saturating_sub(*ts) < UPSTREAM_MEMORY_MS)
            .map(|((_, edge), (upstream, ts))| EdgeUpstream {
                edge: edge.clone(),
                upstream: upstream.clone(),
                last_seen_ms: *ts,
            })
            .collect()
    }

    /// The platform-wide summary over `from..to`.
    pub async fn platform_summary(
        &self,
        from: i64,
        to: i64,
    ) -> Result<PlatformSummary, AnalyticsError> {
        let dims = [Dim::Total, Dim::Country, Dim::Rendition, Dim::Edge];
        let rows = self.rows("", &dims, from, to).await?;
        let now = self.concurrent(None);
        // Per stream: their total rows. The open ones in one pass over the open rows
        // (not one pass per stream: that made this request quadratic in the streams).
        let stream_rows = {
            let _guard = self.inner.flush.lock().await;
            let mut rows = self.inner.store.stream_totals(from, to).await?;
            rows.extend(lock(&self.inner.agg).open_totals(from, to));
            rows
        };
        let per_stream_now = lock(&self.inner.agg).concurrent_per_stream(now_ms());
        let active_window_ms = self.inner.config.aggregator.window_ms;
        let max_values = self.inner.config.aggregator.max_values;
        off_runtime(move || {
            platform_summary(
                (from, to, active_window_ms, max_values),
                &rows,
                &now,
                &stream_rows,
                &per_stream_now,
            )
        })
        .await
    }

    /// One figure of `stream` (`""`: the platform) per `step` over `from..to`, per
    /// value of `by` (or in total).
    pub async fn timeseries(
        &self,
        stream: &str,
        metric: &str,
        by: Dim,
        from: i64,
        to: i64,
        step: i64,
    ) -> Result<Timeseries, AnalyticsError> {
        if Figures::default().metric(metric).is_none() {
            return Err(AnalyticsError::InvalidQuery {
                field: "metric",
                reason: format!(
                    "unknown metric '{metric}': one of {}",
                    crate::rollup::METRICS.join(", ")
                ),
            });
        }
        if step < MINUTE_MS || step % MINUTE_MS != 0 {
            return Err(AnalyticsError::InvalidQuery {
                field: "step",
                reason: "step must be a whole number of minutes, in ms (60000, 300000, …)".into(),
            });
        }
        let start = minute_of(from);
        let steps = (to - start + step - 1) / step;
        if steps > MAX_POINTS {
            return Err(AnalyticsError::InvalidQuery {
                field: "step",
                reason: format!("{steps} points: at most {MAX_POINTS}; use a larger step"),
            });
        }
        let rows = self.rows(stream, &[by], from, to).await?;
        let metric = metric.to_owned();
        let max_values = self.inner.config.aggregator.max_values;
        off_runtime(move || {
            timeseries(
                &rows,
                metric,
                by,
                (from, to),
                (start, step, steps),
                max_values,
            )
        })
        .await
    }

    /// Stored and open rows, read consistently.
    async fn rows(
        &self,
        stream: &str,
        dims: &[Dim],
        from: i64,
        to: i64,
    ) -> Result<Vec<RollupRow>, AnalyticsError> {
        let _guard = self.inner.flush.lock().await;
        let mut rows = self.inner.store.rollups(stream, dims, from, to).await?;
        rows.extend(lock(&self.inner.agg).open_rows(stream, dims, from, to));
        Ok(rows)
    }

    fn set_gauges(&self, now: i64) {
        let (per_stream, sessions, open_streams, stats) = {
            let mut agg = lock(&self.inner.agg);
            (
                agg.concurrent_per_stream(now),
                agg.sessions(),
                agg.open_streams(),
                agg.take_stats(),
            )
        };
        metrics::counter!("analytics_sessions_evicted_total").increment(stats.sessions_evicted);
        metrics::counter!("analytics_breakdown_values_folded_total").increment(stats.values_folded);
        metrics::gauge!("analytics_open_streams").set(open_streams as f64);
        let total: u64 = per_stream.values().sum();
        metrics::gauge!("analytics_concurrent_viewers_total").set(total as f64);
        metrics::gauge!("analytics_sessions_remembered").set(sessions as f64);
        let mut gauged = lock(&self.inner.gauged);
        for name in gauged.iter() {
            if !per_stream.contains_key(name) {
                metrics::gauge!("analytics_concurrent_viewers", "stream" => name.clone()).set(0.0);
            }
        }
        for (name, n) in &per_stream {
            metrics::gauge!("analytics_concurrent_viewers", "stream" => name.clone())
                .set(*n as f64);
            gauged.insert(name.clone());
        }
    }
}

/// The platform summary from the rows read (run off the async workers).
fn platform_summary(
    (from, to, active_window_ms, max_values): (i64, i64, i64, usize),
    rows: &[RollupRow],
    now: &Concurrent,
    stream_rows: &[RollupRow],
    per_stream_now: &BTreeMap<String, u64>,
) -> PlatformSummary {
    let mut b = breakdowns(rows, now, max_values);
    let mut grouped: BTreeMap<&str, Vec<&RollupRow>> = BTreeMap::new();
    for r in stream_rows {
        grouped.entry(&r.stream).or_default().push(r);
    }
    for name in per_stream_now.keys() {
        grouped.entry(name).or_default();
    }
    let streams = grouped
        .into_iter()
        .map(|(name, rows)| Breakdown {
            value: name.to_owned(),
            concurrent_viewers: per_stream_now.get(name).copied().unwrap_or(0),
            figures: Figures::from_rows(rows),
        })
        .collect();
    PlatformSummary {
        from,
        to,
        active_window_ms,
        concurrent_viewers: now.total,
        figures: Figures::from_rows(rows.iter().filter(|r| r.dim == Some(Dim::Total))),
        streams,
        by_country: b.remove(&Dim::Country).unwrap_or_default(),
        by_rendition: b.remove(&Dim::Rendition).unwrap_or_default(),
        by_edge: b.remove(&Dim::Edge).unwrap_or_default(),
    }
}

/// One series per value from the rows read (run off the async workers).
fn timeseries(
    rows: &[RollupRow],
    metric: String,
    by: Dim,
    (from, to): (i64, i64),
    (start, step, steps): (i64, i64, i64),
    max_values: usize,
) -> Timeseries {
    // At most `max_values` series: the values with the most activity, the rest summed
    // as one (a window may hold many more values than one minute may).
    let mut activity: BTreeMap<&str, u64> = BTreeMap::new();
    for r in rows {
        *activity.entry(&r.value).or_default() +=
            r.counters.active_sessions + r.counters.requests + r.counters.beacons;
    }
    let kept: std::collections::HashSet<&str> = if activity.len() > max_values.max(1) {
        let mut ranked: Vec<(&str, u64)> = activity.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        ranked
            .into_iter()
            .take(max_values.max(1) - 1)
            .map(|(v, _)| v)
            .collect()
    } else {
        activity.into_keys().collect()
    };
    let mut grouped: BTreeMap<&str, BTreeMap<i64, Vec<&RollupRow>>> = BTreeMap::new();
    for r in rows {
        let slot = start + (r.minute - start).div_euclid(step) * step;
        let value = if kept.contains(r.value.as_str()) {
            r.value.as_str()
        } else {
            crate::OTHER
        };
        grouped
            .entry(value)
            .or_default()
            .entry(slot)
            .or_default()
            .push(r);
    }
    let series = grouped
        .into_iter()
        .map(|(key, slots)| Series {
            key: key.to_owned(),
            points: (0..steps)
                .map(|i| {
                    let t = start + i * step;
                    let v = slots.get(&t).and_then(|rows| {
                        Figures::from_rows(rows.iter().copied())
                            .metric(&metric)
                            .flatten()
                    });
                    (t, v)
                })
                .collect(),
        })
        .collect();
    Timeseries {
        metric,
        by,
        from,
        to,
        step_ms: step,
        series,
    }
}

/// Runs `work` (summing many rows) on the blocking pool, so that a request over a
/// long window never holds an async worker that ingest and playback need.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AnalyticsError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| AnalyticsError::Task(e.to_string()))
}

/// Per breakdown dimension, one entry per value, sorted by concurrent viewers then
/// unique viewers (largest first); beyond `max_values` values, the smallest are
/// summed into one [`crate::OTHER`] entry, so that an answer stays small whatever
/// the window holds.
fn breakdowns(
    rows: &[RollupRow],
    now: &Concurrent,
    max_values: usize,
) -> BTreeMap<Dim, Vec<Breakdown>> {
    let mut grouped: BTreeMap<Dim, BTreeMap<&str, Vec<&RollupRow>>> = BTreeMap::new();
    for r in rows {
        if let Some(dim) = r.dim.filter(|d| *d != Dim::Total) {
            grouped
                .entry(dim)
                .or_default()
                .entry(&r.value)
                .or_default()
                .push(r);
        }
    }
    for (dim, values) in &now.by {
        for value in values.keys() {
            grouped.entry(*dim).or_default().entry(value).or_default();
        }
    }
    grouped
        .into_iter()
        .map(|(dim, values)| {
            let mut list: Vec<(Breakdown, Vec<&RollupRow>)> = values
                .into_iter()
                .map(|(value, rows)| {
                    let breakdown = Breakdown {
                        value: value.to_owned(),
                        concurrent_viewers: now
                            .by
                            .get(&dim)
                            .and_then(|m| m.get(value))
                            .copied()
                            .unwrap_or(0),
                        figures: Figures::from_rows(rows.iter().copied()),
                    };
                    (breakdown, rows)
                })
                .collect();
            let order = |list: &mut Vec<(Breakdown, Vec<&RollupRow>)>| {
                list.sort_by(|(a, _), (b, _)| {
                    (b.concurrent_viewers, b.figures.unique_viewers, &a.value).cmp(&(
                        a.concurrent_viewers,
                        a.figures.unique_viewers,
                        &b.value,
                    ))
                });
            };
            order(&mut list);
            let max_values = max_values.max(1);
            if list.len() > max_values {
                let mut concurrent = 0;
                let mut rest = Vec::new();
                for (b, rows) in list.drain(max_values - 1..) {
                    concurrent += b.concurrent_viewers;
                    rest.extend(rows);
                }
                // One viewer in two of the folded values counts twice here.
                list.push((
                    Breakdown {
                        value: crate::OTHER.to_owned(),
                        concurrent_viewers: concurrent,
                        figures: Figures::from_rows(rest.iter().copied()),
                    },
                    Vec::new(),
                ));
                order(&mut list);
            }
            (dim, list.into_iter().map(|(b, _)| b).collect())
        })
        .collect()
}

fn beacon_json(b: &ValidBeacon) -> String {
    serde_json::json!({
        "rendition": b.rendition,
        "startup_ms": b.startup_ms,
        "play_ms": b.play_ms,
        "rebuffer_count": b.rebuffer_count,
        "rebuffer_ms": b.rebuffer_ms,
        "rendition_switches": b.rendition_switches,
        "errors": b.errors,
        "live_latency_ms": b.live_latency_ms,
        "dropped_frames": b.dropped_frames,
        "cmcd": b.cmcd,
    })
    .to_string()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent between calls.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A beacon's own timestamp is used when within this of the server's clock.
const BEACON_CLOCK_SKEW_MS: i64 = 3_600_000;
const PRUNE_EVERY_MS: i64 = 60_000;
/// How often the stream names are read from the metadata database.
const REFRESH_KNOWN_EVERY_MS: i64 = 5_000;
/// Stream names read from the metadata database at most.
const MAX_DECLARED_STREAMS: u32 = 100_000;
const MAX_RETRY_ROWS: usize = 100_000;
/// Most points in one time series.
const MAX_POINTS: i64 = 10_000;
