//! The aggregator: sessions and the open minutes' rollups, in memory. Sans-IO: time
//! comes in as arguments (ms since the epoch), rows go out through [`Aggregator::take_closed`].
//!
//! Call order: [`Aggregator::handle_delivery`] / [`Aggregator::handle_beacon`] for
//! every input; every second or so [`Aggregator::take_closed`] (store the rows it
//! returns) and [`Aggregator::prune`]; [`Aggregator::concurrent`] and
//! [`Aggregator::open_rows`] answer queries about what is not stored yet.
//!
//! A *viewer* is one playback session of one stream. Each input updates up to eight rows of
//! its minute: the stream's total, its edge, rendition and country, and the same four
//! for the platform (stream `""`).

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::beacon::ValidBeacon;
use crate::event::DeliveryEvent;
use crate::rollup::{Counters, Dim, MINUTE_MS, RollupRow, minute_of};

/// Settings of the aggregator.
#[derive(Clone, Copy, Debug)]
pub struct AggregatorConfig {
    /// A session is *active* (a concurrent viewer) while its last request or beacon is
    /// at most this old; gaps longer than this are not watch time. See `docs/api.md`
    /// ("Figures", `concurrent_viewers`) for why the default is three segment target
    /// durations.
    pub window_ms: i64,
    /// How long a session is remembered after its last activity: one that comes back
    /// within it is the same viewer (not counted again in unique viewers).
    pub memory_ms: i64,
    /// How long after a minute ends its rows are kept open for late events.
    pub lateness_ms: i64,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            window_ms: 6_000,
            memory_ms: 30 * 60_000,
            lateness_ms: 5_000,
        }
    }
}

/// Live figures: sessions active now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Concurrent {
    pub total: u64,
    pub by: BTreeMap<Dim, BTreeMap<String, u64>>,
}

pub struct Aggregator {
    config: AggregatorConfig,
    buckets: HashMap<BucketKey, Bucket>,
    sessions: HashMap<u64, Session>,
    /// When each viewer was last seen in each breakdown value, for `new_sessions`.
    seen: HashMap<(Dim, Arc<str>, u64), i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BucketKey {
    minute: i64,
    stream: Arc<str>,
    dim: Dim,
    value: Arc<str>,
}

#[derive(Default)]
struct Bucket {
    counters: Counters,
    active: HashSet<u64>,
}

struct Session {
    stream: Arc<str>,
    last_ms: i64,
    edge: Arc<str>,
    rendition: Arc<str>,
    country: Arc<str>,
}

/// What a breakdown is called when nothing says.
const UNKNOWN: &str = "unknown";

impl Aggregator {
    pub fn new(config: AggregatorConfig) -> Self {
        Self {
            config,
            buckets: HashMap::new(),
            sessions: HashMap::new(),
            seen: HashMap::new(),
        }
    }

    pub fn config(&self) -> &AggregatorConfig {
        &self.config
    }

    /// One answered request; `country` is the client's.
    pub fn handle_delivery(&mut self, event: &DeliveryEvent, country: &str) {
        let bitrate = event
            .cmcd
            .as_ref()
            .filter(|_| event.kind.is_media())
            .and_then(|c| c.br);
        let error = event.status >= 400;
        self.record(
            event.ts,
            &event.stream,
            &event.session,
            Some(&event.edge),
            event.rendition.as_deref(),
            country,
            |c| {
                c.requests += 1;
                c.errors += u64::from(error);
                c.bytes += event.bytes;
                c.ttfb_us_sum += event.ttfb_us;
                if let Some(br) = bitrate {
                    c.bitrate_kbps_sum += br;
                    c.bitrate_samples += 1;
                }
            },
        );
    }

    /// One player beacon, for `session` (already resolved), at `ts`.
    pub fn handle_beacon(&mut self, ts: i64, session: &str, beacon: &ValidBeacon, country: &str) {
        self.record(
            ts,
            &beacon.stream,
            session,
            None,
            beacon.rendition.as_deref(),
            country,
            |c| {
                c.beacons += 1;
                if let Some(s) = beacon.startup_ms {
                    c.startup.push(s);
                }
                c.play_ms += beacon.play_ms;
                c.rebuffer_count += beacon.rebuffer_count;
                c.rebuffer_ms += beacon.rebuffer_ms;
                c.rendition_switches += beacon.rendition_switches;
                c.player_errors += beacon.errors;
                c.dropped_frames += beacon.dropped_frames;
                if let Some(l) = beacon.live_latency_ms {
                    c.latency_ms_sum += l;
                    c.latency_samples += 1;
                }
                if let Some(br) = beacon.cmcd.br {
                    c.bitrate_kbps_sum += br;
                    c.bitrate_samples += 1;
                }
            },
        );
    }

    /// Sessions active at `now`, of `stream` (or of every stream), broken down by the
    /// edge, rendition and country of their latest activity.
    pub fn concurrent(&self, now: i64, stream: Option<&str>) -> Concurrent {
        let mut out = Concurrent::default();
        for s in self.active_sessions(now) {
            if stream.is_some_and(|name| name != &*s.stream) {
                continue;
            }
            out.total += 1;
            for (dim, value) in [
                (Dim::Edge, &s.edge),
                (Dim::Rendition, &s.rendition),
                (Dim::Country, &s.country),
            ] {
                if dim == Dim::Rendition && **value == *UNKNOWN {
                    // Only the multivariant playlist so far: no rendition to count in.
                    continue;
                }
                *out.by
                    .entry(dim)
                    .or_default()
                    .entry(value.to_string())
                    .or_default() += 1;
            }
        }
        out
    }

    /// Active sessions at `now`, per stream.
    pub fn concurrent_per_stream(&self, now: i64) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in self.active_sessions(now) {
            *out.entry(s.stream.to_string()).or_default() += 1;
        }
        out
    }

    /// Removes and returns the rows of every minute that ended at least
    /// `lateness_ms` before `now`.
    pub fn take_closed(&mut self, now: i64) -> Vec<RollupRow> {
        let cutoff = now - self.config.lateness_ms - MINUTE_MS;
        let closed: Vec<BucketKey> = self
            .buckets
            .keys()
            .filter(|k| k.minute <= cutoff)
            .cloned()
            .collect();
        closed
            .into_iter()
            .filter_map(|k| self.buckets.remove(&k).map(|b| to_row(&k, b)))
            .collect()
    }

    /// Removes and returns every row (at shutdown).
    pub fn take_all(&mut self) -> Vec<RollupRow> {
        self.buckets.drain().map(|(k, b)| to_row(&k, b)).collect()
    }

    /// Copies of the open rows of `stream` (`""`: the platform) in `dims`, for minutes
    /// that overlap `from..to`.
    pub fn open_rows(&self, stream: &str, dims: &[Dim], from: i64, to: i64) -> Vec<RollupRow> {
        self.buckets
            .iter()
            .filter(|(k, _)| {
                &*k.stream == stream
                    && dims.contains(&k.dim)
                    && k.minute + MINUTE_MS > from
                    && k.minute < to
            })
            .map(|(k, b)| {
                let mut row = to_row(
                    k,
                    Bucket {
                        counters: b.counters.clone(),
                        active: HashSet::new(),
                    },
                );
                row.counters.active_sessions = b.active.len() as u64;
                row
            })
            .collect()
    }

    /// Copies of the open total rows of every stream (not the platform's), for
    /// minutes that overlap `from..to`.
    pub fn open_totals(&self, from: i64, to: i64) -> Vec<RollupRow> {
        let streams: HashSet<&Arc<str>> = self
            .buckets
            .keys()
            .filter(|k| !k.stream.is_empty() && k.dim == Dim::Total)
            .map(|k| &k.stream)
            .collect();
        streams
            .into_iter()
            .flat_map(|s| self.open_rows(s, &[Dim::Total], from, to))
            .collect()
    }

    /// Forgets sessions idle for longer than `memory_ms`.
    pub fn prune(&mut self, now: i64) {
        let horizon = now - self.config.memory_ms;
        self.sessions.retain(|_, s| s.last_ms >= horizon);
        self.seen.retain(|_, last| *last >= horizon);
    }

    /// Sessions remembered (active or not), for metrics.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    fn active_sessions(&self, now: i64) -> impl Iterator<Item = &Session> {
        let since = now - self.config.window_ms;
        self.sessions.values().filter(move |s| s.last_ms >= since)
    }

    /// Updates the session (watch time, where it is watched from) and applies `apply`
    /// to the (up to eight) rows of this minute.
    #[allow(clippy::too_many_arguments)] // one call per input kind; a struct would only rename them
    fn record(
        &mut self,
        ts: i64,
        stream: &str,
        session: &str,
        edge: Option<&str>,
        rendition: Option<&str>,
        country: &str,
        apply: impl Fn(&mut Counters),
    ) {
        let viewer = viewer_id(stream, session);
        let window = self.config.window_ms;
        let mut watch = 0;
        let s = self.sessions.entry(viewer).or_insert_with(|| Session {
            stream: Arc::from(stream),
            last_ms: ts,
            edge: Arc::from(edge.unwrap_or(UNKNOWN)),
            rendition: Arc::from(rendition.unwrap_or(UNKNOWN)),
            country: Arc::from(country),
        });
        if ts > s.last_ms {
            let gap = ts - s.last_ms;
            if gap <= window {
                watch = u64::try_from(gap).unwrap_or(0);
            }
            s.last_ms = ts;
        }
        // Where the viewer is now: the latest input that says.
        if let Some(e) = edge
            && *s.edge != *e
        {
            s.edge = Arc::from(e);
        }
        if let Some(r) = rendition
            && *s.rendition != *r
        {
            s.rendition = Arc::from(r);
        }
        if *s.country != *country && country != UNKNOWN {
            s.country = Arc::from(country);
        }
        let mut dims = vec![
            (Dim::Total, Arc::<str>::from("")),
            (Dim::Edge, s.edge.clone()),
            (Dim::Country, s.country.clone()),
        ];
        // A session that has asked only for the multivariant playlist has no
        // rendition yet; it is counted in every other breakdown, not under "unknown".
        if *s.rendition != *UNKNOWN {
            dims.push((Dim::Rendition, s.rendition.clone()));
        }
        let stream_name = s.stream.clone();
        let minute = minute_of(ts);
        let platform: Arc<str> = Arc::from("");
        for (dim, value) in dims {
            let last = self
                .seen
                .entry((dim, value.clone(), viewer))
                .or_insert(i64::MIN);
            let new = *last == i64::MIN;
            *last = (*last).max(ts);
            for scope in [&stream_name, &platform] {
                let bucket = self
                    .buckets
                    .entry(BucketKey {
                        minute,
                        stream: scope.clone(),
                        dim,
                        value: value.clone(),
                    })
                    .or_default();
                bucket.active.insert(viewer);
                bucket.counters.new_sessions += u64::from(new);
                bucket.counters.watch_ms += watch;
                apply(&mut bucket.counters);
            }
        }
    }
}

fn to_row(k: &BucketKey, b: Bucket) -> RollupRow {
    let mut counters = b.counters;
    counters.active_sessions = counters.active_sessions.max(b.active.len() as u64);
    RollupRow {
        minute: k.minute,
        stream: k.stream.to_string(),
        dim: Some(k.dim),
        value: k.value.to_string(),
        counters,
    }
}

fn viewer_id(stream: &str, session: &str) -> u64 {
    let mut h = DefaultHasher::new();
    stream.hash(&mut h);
    session.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ObjectKind;
    use crate::rollup::Figures;

    fn delivery(ts: i64, session: &str, rendition: &str, status: u16) -> DeliveryEvent {
        DeliveryEvent {
            ts,
            stream: "cam".into(),
            rendition: Some(rendition.into()),
            kind: ObjectKind::Part,
            status,
            bytes: 1000,
            ttfb_us: 500,
            client: "192.0.2.1".parse().unwrap(),
            session: session.into(),
            edge: "e1".into(),
            upstream: None,
            cmcd: Some(Box::new(crate::cmcd::Cmcd {
                br: Some(800),
                ..Default::default()
            })),
        }
    }

    fn figures(agg: &Aggregator, stream: &str, dim: Dim, value: &str) -> Figures {
        let rows: Vec<_> = agg
            .open_rows(stream, &[dim], i64::MIN / 2, i64::MAX / 2)
            .into_iter()
            .filter(|r| r.value == value)
            .collect();
        Figures::from_rows(&rows)
    }

    #[test]
    fn sessions_watch_time_and_concurrency() {
        let t0 = 600_000; // a minute boundary
        let mut agg = Aggregator::new(AggregatorConfig {
            window_ms: 3_000,
            ..Default::default()
        });
        // a: polls every second for 10 s (watch 10 s); b: 2 requests 5 s apart (a gap
        // longer than the window: no watch time); c: errors only, in DE.
        for i in 0..=10 {
            agg.handle_delivery(&delivery(t0 + i * 1000, "a", "hi", 200), "US");
        }
        agg.handle_delivery(&delivery(t0, "b", "lo", 200), "US");
        agg.handle_delivery(&delivery(t0 + 5_000, "b", "lo", 200), "US");
        agg.handle_delivery(&delivery(t0 + 9_000, "c", "lo", 404), "DE");

        let f = figures(&agg, "cam", Dim::Total, "");
        assert_eq!(f.unique_viewers, 3);
        assert_eq!(f.watch_time_ms, 10_000);
        assert_eq!(f.requests, 14);
        assert_eq!(f.errors, 1);
        assert_eq!(f.bytes_served, 14_000);
        assert_eq!(f.avg_bitrate_kbps, Some(800.0));
        assert_eq!(figures(&agg, "", Dim::Total, "").unique_viewers, 3);
        assert_eq!(figures(&agg, "cam", Dim::Country, "US").unique_viewers, 2);
        assert_eq!(figures(&agg, "cam", Dim::Rendition, "lo").unique_viewers, 2);

        // At t0 + 10 s, a (last 10 s) and c (9 s) are within 3 s; b (5 s) is not.
        let now = agg.concurrent(t0 + 10_000, Some("cam"));
        assert_eq!(now.total, 2);
        assert_eq!(now.by[&Dim::Country]["US"], 1);
        assert_eq!(now.by[&Dim::Country]["DE"], 1);
        assert_eq!(agg.concurrent(t0 + 10_000, Some("other")).total, 0);
        assert_eq!(agg.concurrent(t0 + 20_000, None).total, 0);
        assert_eq!(agg.concurrent_per_stream(t0 + 10_000)["cam"], 2);

        // Nothing closes before the minute (and its lateness) is over.
        assert!(agg.take_closed(t0 + 60_000).is_empty());
        let rows = agg.take_closed(t0 + 65_000);
        // 2 scopes × (total + 1 edge + 2 renditions + 2 countries).
        assert_eq!(rows.len(), 12);
        assert!(agg.open_rows("cam", &[Dim::Total], 0, i64::MAX).is_empty());
        assert_eq!(
            Figures::from_rows(
                rows.iter()
                    .filter(|r| r.stream == "cam" && r.dim == Some(Dim::Total))
            )
            .unique_viewers,
            3
        );
    }

    #[test]
    fn returning_viewers_are_not_new_and_beacons_count() {
        let mut agg = Aggregator::new(AggregatorConfig::default());
        agg.handle_delivery(&delivery(0, "a", "hi", 200), "US");
        agg.handle_delivery(&delivery(MINUTE_MS + 1, "a", "hi", 200), "US");
        let beacon = ValidBeacon {
            stream: "cam".into(),
            startup_ms: Some(700),
            play_ms: 9_000,
            rebuffer_ms: 1_000,
            rebuffer_count: 1,
            live_latency_ms: Some(1_200),
            ..Default::default()
        };
        agg.handle_beacon(MINUTE_MS + 2, "a", &beacon, "unknown");
        let f = figures(&agg, "cam", Dim::Total, "");
        // Minute 0: 1 active; minute 1: active but not new.
        assert_eq!(f.unique_viewers, 1);
        assert_eq!(f.startup_p50_ms, Some(700));
        assert_eq!(f.rebuffer_ratio, Some(0.1));
        assert_eq!(f.avg_live_latency_ms, Some(1_200.0));
        // The beacon's unknown country did not move the viewer out of US.
        assert_eq!(figures(&agg, "cam", Dim::Country, "US").startups, 1);
        agg.prune(MINUTE_MS * 100);
        assert_eq!(agg.sessions(), 0);
    }
}
