//! Per-minute rollups and the figures derived from them.
//!
//! A rollup row holds additive counters for one minute of one stream (or of the whole
//! platform, stream `""`) along one breakdown: the total, or one edge, rendition or
//! country. Everything the API reports is computed from a set of rows by
//! [`Figures::from_rows`]; the definitions are written on [`Figures`]' fields.
//!
//! Rows are only ever added, never updated: a minute that receives late events after
//! it was written gets a second row, and every figure sums over rows. The one figure
//! that is not a sum, unique viewers, is `active_sessions` of the first minute plus
//! `new_sessions` of the later ones (a viewer is new in a row the first time the
//! aggregator sees it there).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A breakdown dimension.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    /// No breakdown: the row covers the whole stream (value `""`).
    Total,
    Edge,
    Rendition,
    Country,
}

impl Dim {
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Total => "total",
            Dim::Edge => "edge",
            Dim::Rendition => "rendition",
            Dim::Country => "country",
        }
    }

    pub fn parse(s: &str) -> Option<Dim> {
        Some(match s {
            "total" => Dim::Total,
            "edge" => Dim::Edge,
            "rendition" => Dim::Rendition,
            "country" => Dim::Country,
            _ => return None,
        })
    }

    /// The breakdowns (everything but the total).
    pub const BREAKDOWNS: [Dim; 3] = [Dim::Country, Dim::Rendition, Dim::Edge];
}

/// One stored row.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct RollupRow {
    /// Start of the minute, ms since the epoch.
    pub minute: i64,
    /// The stream, or `""` for the platform.
    pub stream: String,
    pub dim: Option<Dim>,
    pub value: String,
    pub counters: Counters,
}

/// The additive counters of a row.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Sessions with any activity in the minute.
    pub active_sessions: u64,
    /// Sessions seen in this row's breakdown for the first time.
    pub new_sessions: u64,
    pub watch_ms: u64,
    pub requests: u64,
    /// Requests answered with a status of 400 or more.
    pub errors: u64,
    pub bytes: u64,
    pub ttfb_us_sum: u64,
    pub startup: Samples,
    pub play_ms: u64,
    pub rebuffer_count: u64,
    pub rebuffer_ms: u64,
    pub bitrate_kbps_sum: u64,
    pub bitrate_samples: u64,
    pub latency_ms_sum: u64,
    pub latency_samples: u64,
    pub player_errors: u64,
    pub rendition_switches: u64,
    pub dropped_frames: u64,
    pub beacons: u64,
}

impl Counters {
    /// Adds `other`'s counters (all but the session counts, which the caller owns).
    pub fn add(&mut self, other: &Counters) {
        self.active_sessions += other.active_sessions;
        self.new_sessions += other.new_sessions;
        self.watch_ms += other.watch_ms;
        self.requests += other.requests;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.ttfb_us_sum += other.ttfb_us_sum;
        self.startup.merge(&other.startup);
        self.play_ms += other.play_ms;
        self.rebuffer_count += other.rebuffer_count;
        self.rebuffer_ms += other.rebuffer_ms;
        self.bitrate_kbps_sum += other.bitrate_kbps_sum;
        self.bitrate_samples += other.bitrate_samples;
        self.latency_ms_sum += other.latency_ms_sum;
        self.latency_samples += other.latency_samples;
        self.player_errors += other.player_errors;
        self.rendition_switches += other.rendition_switches;
        self.dropped_frames += other.dropped_frames;
        self.beacons += other.beacons;
    }
}

/// Startup times of one row: exact while there are at most [`SAMPLE_CAP`] of them;
/// past that, every `stride`-th is kept (the stride doubling each time the cap is
/// reached), so that a percentile stays close while the row stays small.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Samples {
    /// Each kept sample stands for this many.
    pub stride: u64,
    /// Samples offered (kept or not).
    pub seen: u64,
    pub values: Vec<u64>,
}

/// Most samples kept in one row.
pub const SAMPLE_CAP: usize = 1024;

impl Default for Samples {
    fn default() -> Self {
        Self {
            stride: 1,
            seen: 0,
            values: Vec::new(),
        }
    }
}

impl Samples {
    pub fn push(&mut self, value: u64) {
        self.seen += 1;
        if self.seen.is_multiple_of(self.stride) {
            self.values.push(value);
            if self.values.len() > SAMPLE_CAP {
                let mut i = 0;
                self.values.retain(|_| {
                    i += 1;
                    i % 2 == 0
                });
                self.stride *= 2;
            }
        }
    }

    /// Appends another row's samples. Rows of different strides are brought to the
    /// larger stride first (keeping every k-th sample of the other), so that every
    /// kept sample stands for the same number of startups.
    pub fn merge(&mut self, other: &Samples) {
        self.seen += other.seen;
        if other.values.is_empty() {
            return;
        }
        if self.values.is_empty() {
            self.stride = other.stride;
            self.values = other.values.clone();
            return;
        }
        let stride = self.stride.max(other.stride);
        let thin = |values: &[u64], own: u64| -> Vec<u64> {
            // Strides are powers of two, so `stride / own` is exact.
            let step = usize::try_from(stride / own).unwrap_or(usize::MAX).max(1);
            values
                .iter()
                .skip(step - 1)
                .step_by(step)
                .copied()
                .collect()
        };
        let mut values = thin(&self.values, self.stride);
        values.extend(thin(&other.values, other.stride));
        self.values = values;
        self.stride = stride;
    }

    /// The `p`-th percentile (0 < p ≤ 100) by the nearest-rank method: the smallest
    /// sample such that at least p % of the samples are at or below it.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        percentile(&self.values, p)
    }
}

/// Nearest-rank percentile of unsorted values: with `n` values sorted ascending, the
/// one at 1-based rank `ceil(p / 100 × n)`.
pub fn percentile(values: &[u64], p: f64) -> Option<u64> {
    if values.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    // n ≤ a few million, so the float product is exact enough; clamp guards rounding.
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// What the API reports about a set of rows.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize, ToSchema)]
pub struct Figures {
    /// Distinct playback sessions active in the window.
    pub unique_viewers: u64,
    /// Time sessions were active: the sum, over every session, of the gaps between
    /// its consecutive requests or beacons that are no longer than the activity
    /// window (a longer gap is a pause or the viewer leaving, and is not counted).
    pub watch_time_ms: u64,
    /// `watch_time_ms / unique_viewers`.
    pub avg_watch_time_ms: Option<f64>,
    /// Startup time (player beacons), 50th percentile, nearest rank.
    pub startup_p50_ms: Option<u64>,
    /// Startup time, 95th percentile, nearest rank.
    pub startup_p95_ms: Option<u64>,
    /// Player beacons that reported a startup time.
    pub startups: u64,
    /// Stalled time over stalled plus playing time (player beacons).
    pub rebuffer_ratio: Option<f64>,
    pub rebuffer_count: u64,
    /// Mean of the encoded bitrates (CMCD `br`) of the media requests and beacons
    /// that carried one, kbit/s.
    pub avg_bitrate_kbps: Option<f64>,
    /// Mean of the live latencies players reported, ms.
    pub avg_live_latency_ms: Option<f64>,
    /// Requests answered with a status of 400 or more, over all requests.
    pub error_rate: Option<f64>,
    /// Mean time to first byte of the answers, ms (held requests included).
    pub avg_ttfb_ms: Option<f64>,
    pub bytes_served: u64,
    pub requests: u64,
    pub errors: u64,
    /// Playback errors players reported.
    pub player_errors: u64,
    pub rendition_switches: u64,
    pub dropped_frames: u64,
}

impl Figures {
    /// The figures of a set of rows of one breakdown value (any order, any minutes).
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = &'a RollupRow>) -> Figures {
        let mut sum = Counters::default();
        // Per minute, the active sessions and the new ones.
        let mut minutes: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
        for row in rows {
            sum.add(&row.counters);
            let m = minutes.entry(row.minute).or_default();
            m.0 += row.counters.active_sessions;
            m.1 += row.counters.new_sessions;
        }
        let mut unique = 0;
        for (i, (active, new)) in minutes.values().enumerate() {
            unique += if i == 0 { *active } else { *new };
        }
        Figures::from_counters(&sum, unique)
    }

    /// The figures of summed counters with `unique_viewers` already counted.
    pub fn from_counters(c: &Counters, unique_viewers: u64) -> Figures {
        let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
        Figures {
            unique_viewers,
            watch_time_ms: c.watch_ms,
            avg_watch_time_ms: ratio(c.watch_ms, unique_viewers),
            startup_p50_ms: c.startup.percentile(50.0),
            startup_p95_ms: c.startup.percentile(95.0),
            startups: c.startup.seen,
            rebuffer_ratio: ratio(c.rebuffer_ms, c.rebuffer_ms + c.play_ms),
            rebuffer_count: c.rebuffer_count,
            avg_bitrate_kbps: ratio(c.bitrate_kbps_sum, c.bitrate_samples),
            avg_live_latency_ms: ratio(c.latency_ms_sum, c.latency_samples),
            error_rate: ratio(c.errors, c.requests),
            avg_ttfb_ms: ratio(c.ttfb_us_sum, c.requests).map(|us| us / 1000.0),
            bytes_served: c.bytes,
            requests: c.requests,
            errors: c.errors,
            player_errors: c.player_errors,
            rendition_switches: c.rendition_switches,
            dropped_frames: c.dropped_frames,
        }
    }

    /// One figure by its name in the API (`metric=`), as a number.
    pub fn metric(&self, name: &str) -> Option<Option<f64>> {
        let n = |v: u64| Some(v as f64);
        Some(match name {
            "unique_viewers" | "viewers" => n(self.unique_viewers),
            "watch_time_ms" => n(self.watch_time_ms),
            "avg_watch_time_ms" => self.avg_watch_time_ms,
            "startup_p50_ms" => self.startup_p50_ms.map(|v| v as f64),
            "startup_p95_ms" => self.startup_p95_ms.map(|v| v as f64),
            "rebuffer_ratio" => self.rebuffer_ratio,
            "avg_bitrate_kbps" => self.avg_bitrate_kbps,
            "avg_live_latency_ms" => self.avg_live_latency_ms,
            "error_rate" => self.error_rate,
            "avg_ttfb_ms" => self.avg_ttfb_ms,
            "bytes_served" => n(self.bytes_served),
            "requests" => n(self.requests),
            "errors" => n(self.errors),
            "player_errors" => n(self.player_errors),
            "dropped_frames" => n(self.dropped_frames),
            _ => return None,
        })
    }
}

/// The names `metric=` accepts.
pub const METRICS: &[&str] = &[
    "viewers",
    "unique_viewers",
    "watch_time_ms",
    "avg_watch_time_ms",
    "startup_p50_ms",
    "startup_p95_ms",
    "rebuffer_ratio",
    "avg_bitrate_kbps",
    "avg_live_latency_ms",
    "error_rate",
    "avg_ttfb_ms",
    "bytes_served",
    "requests",
    "errors",
    "player_errors",
    "dropped_frames",
];

/// Start of the minute that holds `ms`.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

pub const MINUTE_MS: i64 = 60_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(minute: i64, f: impl FnOnce(&mut Counters)) -> RollupRow {
        let mut counters = Counters::default();
        f(&mut counters);
        RollupRow {
            minute,
            counters,
            ..Default::default()
        }
    }

    #[test]
    fn nearest_rank_percentiles() {
        // Hand-computed: sorted 100 200 300 400 500 600 700 800 900 1000.
        // p50: rank ceil(5.0) = 5 → 500. p95: rank ceil(9.5) = 10 → 1000.
        // p90: rank 9 → 900. p10: rank 1 → 100. p11: rank ceil(1.1) = 2 → 200.
        let v = [700, 100, 1000, 300, 200, 900, 500, 400, 600, 800];
        assert_eq!(percentile(&v, 50.0), Some(500));
        assert_eq!(percentile(&v, 95.0), Some(1000));
        assert_eq!(percentile(&v, 90.0), Some(900));
        assert_eq!(percentile(&v, 10.0), Some(100));
        assert_eq!(percentile(&v, 11.0), Some(200));
        // Three samples 10 20 30: p50 rank ceil(1.5) = 2 → 20; p95 rank ceil(2.85) = 3 → 30.
        assert_eq!(percentile(&[30, 10, 20], 50.0), Some(20));
        assert_eq!(percentile(&[30, 10, 20], 95.0), Some(30));
        assert_eq!(percentile(&[42], 95.0), Some(42));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1], 0.0), None);
    }

    #[test]
    fn samples_thin_out_past_the_cap() {
        let mut s = Samples::default();
        for v in 1..=(SAMPLE_CAP as u64 * 4) {
            s.push(v);
        }
        assert!(s.values.len() <= SAMPLE_CAP, "{}", s.values.len());
        assert_eq!(s.seen, SAMPLE_CAP as u64 * 4);
        assert!(s.stride >= 4);
        // Uniform 1..=4096: the median stays within a stride of 2048.
        let p50 = s.percentile(50.0).unwrap();
        assert!((2048 - 8..=2048 + 8).contains(&p50), "{p50}");
        // Merging rows of different strides keeps one stride.
        let mut small = Samples::default();
        for v in [1, 2, 3, 4, 5, 6, 7, 8] {
            small.push(v);
        }
        let mut merged = small.clone();
        merged.merge(&s);
        assert_eq!(merged.stride, s.stride);
        assert_eq!(merged.seen, s.seen + 8);
        assert_eq!(merged.values.len(), s.values.len() + 8 / s.stride as usize);
    }

    #[test]
    fn figures_from_rows() {
        // Minute 0: 3 active sessions (all new); minute 1: 4 active, 1 new;
        // minute 2 in two rows (a late flush): 1 + 1 new. Unique = 3 + 1 + 2 = 6.
        let rows = [
            row(0, |c| {
                c.active_sessions = 3;
                c.new_sessions = 3;
                c.watch_ms = 30_000;
                c.requests = 90;
                c.errors = 9;
                c.bytes = 1_000;
                c.ttfb_us_sum = 90_000;
                c.play_ms = 9_000;
                c.rebuffer_ms = 1_000;
                c.rebuffer_count = 2;
                c.bitrate_kbps_sum = 800 + 1200;
                c.bitrate_samples = 2;
                for v in [900, 1_100, 1_000] {
                    c.startup.push(v);
                }
            }),
            row(MINUTE_MS, |c| {
                c.active_sessions = 4;
                c.new_sessions = 1;
                c.watch_ms = 60_000;
                c.requests = 10;
                c.play_ms = 30_000;
                c.latency_ms_sum = 3_000;
                c.latency_samples = 2;
                c.startup.push(5_000);
            }),
            row(2 * MINUTE_MS, |c| c.new_sessions = 1),
            row(2 * MINUTE_MS, |c| {
                c.new_sessions = 1;
                c.active_sessions = 2;
            }),
        ];
        let f = Figures::from_rows(&rows);
        assert_eq!(f.unique_viewers, 6);
        assert_eq!(f.watch_time_ms, 90_000);
        // 90 000 / 6 = 15 000.
        assert_eq!(f.avg_watch_time_ms, Some(15_000.0));
        // Startups 900 1000 1100 5000: p50 rank 2 → 1000; p95 rank ceil(3.8) = 4 → 5000.
        assert_eq!(
            (f.startup_p50_ms, f.startup_p95_ms),
            (Some(1_000), Some(5_000))
        );
        assert_eq!(f.startups, 4);
        // Stalled 1 000 over 1 000 + 39 000 played = 0.025.
        assert_eq!(f.rebuffer_ratio, Some(0.025));
        assert_eq!(f.avg_bitrate_kbps, Some(1_000.0));
        assert_eq!(f.avg_live_latency_ms, Some(1_500.0));
        // 9 errors in 100 requests.
        assert_eq!(f.error_rate, Some(0.09));
        // 90 000 µs over 100 requests = 0.9 ms.
        assert_eq!(f.avg_ttfb_ms, Some(0.9));
        assert_eq!(f.metric("viewers"), Some(Some(6.0)));
        assert_eq!(f.metric("avg_live_latency_ms"), Some(Some(1_500.0)));
        assert_eq!(f.metric("nope"), None);
        // No data: no ratios, not zeros.
        let empty = Figures::from_rows(&[]);
        assert_eq!((empty.error_rate, empty.rebuffer_ratio), (None, None));
    }

    #[test]
    fn minutes() {
        assert_eq!(minute_of(119_999), 60_000);
        assert_eq!(minute_of(120_000), 120_000);
        assert_eq!(minute_of(-1), -60_000);
    }
}
