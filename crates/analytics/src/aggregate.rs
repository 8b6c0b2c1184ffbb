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
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
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
    /// Sessions remembered at most. A new session beyond it evicts the one heard from
    /// longest ago (counted in [`AggregatorStats::sessions_evicted`]): viewers who keep
    /// playing are always the newest, so a flood of one-shot sessions only pushes out
    /// its own kind.
    pub max_sessions: usize,
    /// Distinct values of one breakdown (edges, renditions, countries) per stream and
    /// minute at most; inputs with further values are counted under [`OTHER`].
    pub max_values: usize,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        Self {
            window_ms: 6_000,
            memory_ms: 30 * 60_000,
            lateness_ms: 5_000,
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_values: DEFAULT_MAX_VALUES,
        }
    }
}

/// Default of [`AggregatorConfig::max_sessions`].
pub const DEFAULT_MAX_SESSIONS: usize = 100_000;
/// Default of [`AggregatorConfig::max_values`].
pub const DEFAULT_MAX_VALUES: usize = 64;
/// The breakdown value that inputs beyond [`AggregatorConfig::max_values`] count under.
pub const OTHER: &str = "other";

/// Live figures: sessions active now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Concurrent {
    pub total: u64,
    pub by: BTreeMap<Dim, BTreeMap<String, u64>>,
}

/// What the caps did since the last [`Aggregator::take_stats`], for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Sessions forgotten early to stay within `max_sessions`.
    pub sessions_evicted: u64,
    /// Inputs counted under [`OTHER`] because a breakdown had `max_values` values.
    pub values_folded: u64,
}

/// The sessions and open rollups. Every operation costs time in proportion to what it
/// returns or to one input, never to everything held: queries of one stream read that
/// stream's rows only, and concurrency reads the active sessions only. Together with
/// the caps this bounds how long a caller holds the lock around it.
pub struct Aggregator {
    config: AggregatorConfig,
    /// Open rows, per stream (`""`: the platform).
    streams: HashMap<Arc<str>, StreamRows>,
    sessions: HashMap<u64, Session>,
    /// Sessions by last activity: the active ones are a range at the end, and the
    /// first is the one to evict.
    by_age: BTreeSet<(i64, u64)>,
    stats: AggregatorStats,
}

/// One stream's open rows.
#[derive(Default)]
struct StreamRows {
    buckets: BTreeMap<BucketKey, Bucket>,
    /// Distinct values per (minute, breakdown), for the `max_values` cap.
    values: HashMap<(i64, Dim), usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct BucketKey {
    minute: i64,
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
    /// When this viewer was last seen in each breakdown value, for `new_sessions`. A
    /// handful per session: a viewer moves between few edges, renditions, countries.
    seen: Vec<(Dim, Arc<str>, i64)>,
}

/// What a breakdown is called when nothing says.
const UNKNOWN: &str = "unknown";
/// Breakdown values remembered per session for `new_sessions`; the oldest goes first.
const SEEN_PER_SESSION: usize = 16;

impl Aggregator {
    pub fn new(config: AggregatorConfig) -> Self {
        Self {
            config,
            streams: HashMap::new(),
            sessions: HashMap::new(),
            by_age: BTreeSet::new(),
            stats: AggregatorStats::default(),
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
        // The same cap as on the rows: the largest values by name, the rest as one.
        let max_values = self.config.max_values.max(1);
        for values in out.by.values_mut() {
            if values.len() > max_values {
                let mut all: Vec<(String, u64)> = std::mem::take(values).into_iter().collect();
                all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let rest: u64 = all.drain(max_values - 1..).map(|(_, n)| n).sum();
                values.extend(all);
                *values.entry(OTHER.to_owned()).or_default() += rest;
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
        let mut out = Vec::new();
        for (stream, rows) in &mut self.streams {
            // Keys sort by minute first: the closed ones are a prefix.
            let first_open = BucketKey {
                minute: cutoff.saturating_add(1),
                dim: Dim::Total,
                value: Arc::from(""),
            };
            let open = rows.buckets.split_off(&first_open);
            let closed = std::mem::replace(&mut rows.buckets, open);
            rows.values.retain(|(minute, _), _| *minute > cutoff);
            out.extend(closed.into_iter().map(|(k, b)| to_row(stream, &k, b)));
        }
        self.streams.retain(|_, rows| !rows.buckets.is_empty());
        out
    }

    /// Removes and returns every row (at shutdown).
    pub fn take_all(&mut self) -> Vec<RollupRow> {
        self.streams
            .drain()
            .flat_map(|(stream, rows)| {
                rows.buckets
                    .into_iter()
                    .map(move |(k, b)| to_row(&stream, &k, b))
            })
            .collect()
    }

    /// Copies of the open rows of `stream` (`""`: the platform) in `dims`, for minutes
    /// that overlap `from..to`.
    pub fn open_rows(&self, stream: &str, dims: &[Dim], from: i64, to: i64) -> Vec<RollupRow> {
        let Some(rows) = self.streams.get(stream) else {
            return Vec::new();
        };
        rows.buckets
            .iter()
            .filter(|(k, _)| dims.contains(&k.dim) && k.minute + MINUTE_MS > from && k.minute < to)
            .map(|(k, b)| open_row(stream, k, b))
            .collect()
    }

    /// Copies of the open total rows of every stream (not the platform's), for
    /// minutes that overlap `from..to`: one pass over the open rows.
    pub fn open_totals(&self, from: i64, to: i64) -> Vec<RollupRow> {
        self.streams
            .iter()
            .filter(|(stream, _)| !stream.is_empty())
            .flat_map(|(stream, rows)| {
                rows.buckets
                    .iter()
                    .filter(|(k, _)| {
                        k.dim == Dim::Total && k.minute + MINUTE_MS > from && k.minute < to
                    })
                    .map(move |(k, b)| open_row(stream, k, b))
            })
            .collect()
    }

    /// Forgets sessions idle for longer than `memory_ms`.
    pub fn prune(&mut self, now: i64) {
        let horizon = now - self.config.memory_ms;
        while let Some(&(last, viewer)) = self.by_age.first() {
            if last >= horizon {
                break;
            }
            self.by_age.pop_first();
            self.sessions.remove(&viewer);
        }
        for s in self.sessions.values_mut() {
            s.seen.retain(|(_, _, last)| *last >= horizon);
        }
    }

    /// Sessions remembered (active or not), for metrics.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Streams with open rows (the platform's included), for metrics.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// What the caps did since the previous call.
    pub fn take_stats(&mut self) -> AggregatorStats {
        std::mem::take(&mut self.stats)
    }

    fn active_sessions(&self, now: i64) -> impl Iterator<Item = &Session> {
        let since = now - self.config.window_ms;
        self.by_age
            .range((since, 0)..)
            .filter_map(|(_, viewer)| self.sessions.get(viewer))
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
        if !self.sessions.contains_key(&viewer) {
            self.make_room();
            self.sessions.insert(
                viewer,
                Session {
                    stream: Arc::from(stream),
                    last_ms: ts,
                    edge: Arc::from(edge.unwrap_or(UNKNOWN)),
                    rendition: Arc::from(rendition.unwrap_or(UNKNOWN)),
                    country: Arc::from(country),
                    seen: Vec::new(),
                },
            );
            self.by_age.insert((ts, viewer));
        }
        let Some(s) = self.sessions.get_mut(&viewer) else {
            return;
        };
        if ts > s.last_ms {
            let gap = ts - s.last_ms;
            if gap <= window {
                watch = u64::try_from(gap).unwrap_or(0);
            }
            self.by_age.remove(&(s.last_ms, viewer));
            self.by_age.insert((ts, viewer));
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
        let max_values = self.config.max_values;
        for (dim, value) in dims {
            let new = see(&mut s.seen, dim, &value, ts);
            for scope in [&stream_name, &platform] {
                let rows = self.streams.entry(scope.clone()).or_default();
                let bucket = rows.bucket(minute, dim, value.clone(), max_values, &mut self.stats);
                bucket.active.insert(viewer);
                bucket.counters.new_sessions += u64::from(new);
                bucket.counters.watch_ms += watch;
                apply(&mut bucket.counters);
            }
        }
    }

    /// Evicts the session heard from longest ago if the cap is reached.
    fn make_room(&mut self) {
        while self.sessions.len() >= self.config.max_sessions.max(1) {
            let Some((_, viewer)) = self.by_age.pop_first() else {
                break;
            };
            self.sessions.remove(&viewer);
            self.stats.sessions_evicted += 1;
        }
    }
}

impl StreamRows {
    /// The bucket of `value` in `dim` at `minute`, or of [`OTHER`] if the breakdown
    /// has `max_values` values already.
    fn bucket(
        &mut self,
        minute: i64,
        dim: Dim,
        value: Arc<str>,
        max_values: usize,
        stats: &mut AggregatorStats,
    ) -> &mut Bucket {
        let mut key = BucketKey { minute, dim, value };
        if !self.buckets.contains_key(&key) {
            let count = self.values.entry((minute, dim)).or_default();
            if dim != Dim::Total && *count >= max_values.max(1) {
                stats.values_folded += 1;
                key.value = Arc::from(OTHER);
            }
            if !self.buckets.contains_key(&key) {
                *count += 1;
            }
        }
        self.buckets.entry(key).or_default()
    }
}

/// Marks `value` of `dim` seen at `ts`; whether it was not seen before.
fn see(seen: &mut Vec<(Dim, Arc<str>, i64)>, dim: Dim, value: &Arc<str>, ts: i64) -> bool {
    if let Some(entry) = seen.iter_mut().find(|(d, v, _)| *d == dim && v == value) {
        entry.2 = entry.2.max(ts);
        return false;
    }
    if seen.len() >= SEEN_PER_SESSION
        && let Some(oldest) = seen
            .iter()
            .enumerate()
            .min_by_key(|(_, (_, _, last))| *last)
            .map(|(i, _)| i)
    {
        seen.swap_remove(oldest);
    }
    seen.push((dim, value.clone(), ts));
    true
}

fn open_row(stream: &str, k: &BucketKey, b: &Bucket) -> RollupRow {
    let mut row = to_row(
        stream,
        k,
        Bucket {
            counters: b.counters.clone(),
            active: HashSet::new(),
        },
    );
    row.counters.active_sessions = b.active.len() as u64;
    row
}

fn to_row(stream: &str, k: &BucketKey, b: Bucket) -> RollupRow {
    let mut counters = b.counters;
    counters.active_sessions = counters.active_sessions.max(b.active.len() as u64);
    RollupRow {
        minute: k.minute,
        stream: stream.to_owned(),
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

    #[test]
    fn sessions_beyond_the_cap_evict_the_longest_silent() {
        let mut agg = Aggregator::new(AggregatorConfig {
            max_sessions: 3,
            window_ms: 10_000,
            ..Default::default()
        });
        for (i, s) in ["a", "b", "c"].iter().enumerate() {
            agg.handle_delivery(&delivery(i as i64 * 1000, s, "hi", 200), "US");
        }
        // a plays on; d is new: b, silent longest, goes.
        agg.handle_delivery(&delivery(3_000, "a", "hi", 200), "US");
        agg.handle_delivery(&delivery(4_000, "d", "hi", 200), "US");
        assert_eq!(agg.sessions(), 3);
        assert_eq!(agg.take_stats().sessions_evicted, 1);
        assert_eq!(agg.take_stats(), AggregatorStats::default());
        assert_eq!(agg.concurrent(4_000, Some("cam")).total, 3);

        // A flood of one-shot sessions does not push out a viewer who keeps playing
        // (heard from more often than the cap's worth of new sessions arrive).
        let mut agg = Aggregator::new(AggregatorConfig {
            max_sessions: 50,
            ..Default::default()
        });
        for i in 0..1_000 {
            let t = i * 10;
            if i % 10 == 0 {
                agg.handle_delivery(&delivery(t, "a", "hi", 200), "US");
            }
            agg.handle_delivery(&delivery(t, &format!("flood-{i}"), "hi", 200), "US");
        }
        assert_eq!(agg.sessions(), 50);
        // 1,001 sessions made, 50 kept: a was never forgotten (it would have been
        // made again, and another evicted).
        assert_eq!(agg.take_stats().sessions_evicted, 1_001 - 50);
        assert!(agg.concurrent(10_000, Some("cam")).total <= 50);
    }

    #[test]
    fn breakdown_values_beyond_the_cap_count_as_other() {
        let mut agg = Aggregator::new(AggregatorConfig {
            max_values: 2,
            ..Default::default()
        });
        for i in 0..5 {
            agg.handle_delivery(
                &delivery(1_000, &format!("s{i}"), &format!("r{i}"), 404),
                "US",
            );
        }
        let values: BTreeMap<String, u64> = agg
            .open_rows("cam", &[Dim::Rendition], 0, MINUTE_MS)
            .into_iter()
            .map(|r| (r.value, r.counters.requests))
            .collect();
        assert_eq!(
            values,
            BTreeMap::from([("other".into(), 3), ("r0".into(), 1), ("r1".into(), 1)])
        );
        assert_eq!(
            agg.take_stats().values_folded,
            6,
            "3 for the stream, 3 for the platform"
        );
        // The live breakdown is capped the same way.
        let now = agg.concurrent(1_000, Some("cam"));
        assert_eq!(now.by[&Dim::Rendition].len(), 2);
        assert_eq!(now.by[&Dim::Rendition].values().sum::<u64>(), 5);
        // The total is never folded.
        assert_eq!(figures(&agg, "cam", Dim::Total, "").requests, 5);
    }

    #[test]
    fn open_totals_has_each_stream_once() {
        let mut agg = Aggregator::new(AggregatorConfig::default());
        for i in 0..2_000 {
            let event = DeliveryEvent {
                stream: format!("s{i}"),
                ..delivery(1_000, "a", "hi", 200)
            };
            agg.handle_delivery(&event, "US");
        }
        let totals = agg.open_totals(0, MINUTE_MS);
        assert_eq!(totals.len(), 2_000);
        let streams: HashSet<&str> = totals.iter().map(|r| r.stream.as_str()).collect();
        assert_eq!(streams.len(), 2_000);
        assert!(!streams.contains(""));
        assert_eq!(agg.open_streams(), 2_001);
        // Closing the minute empties every stream's rows.
        assert_eq!(agg.take_closed(MINUTE_MS * 3).len(), 2_001 * 4);
        assert_eq!(agg.open_streams(), 0);
    }
}
