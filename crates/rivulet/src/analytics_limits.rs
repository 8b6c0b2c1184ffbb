//! The analytics server's resource limits: options shared by `serve` and `analytics`
//! (flag > `RIVULET_…` environment > the config file's `[analytics_limits]` > default).
//! See docs/limits.md.

use clap::Args;

/// The flags (and environment variables) of the limits.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct AnalyticsLimitArgs {
    /// Viewer sessions the analytics server remembers at most. Beyond it, a new session
    /// makes it forget the one heard from longest ago (counted in
    /// analytics_sessions_evicted_total): a viewer still playing is heard from every
    /// few seconds, so a flood of one-shot sessions pushes out its own kind first.
    /// [default: 100000]
    #[arg(long, env = "RIVULET_ANALYTICS_MAX_SESSIONS", value_name = "N")]
    pub(crate) analytics_max_sessions: Option<usize>,

    /// Distinct values of one breakdown (edges, renditions, countries) per stream and
    /// minute at most; further values are counted under "other" (and in
    /// analytics_breakdown_values_folded_total). [default: 64]
    #[arg(long, env = "RIVULET_ANALYTICS_MAX_BREAKDOWN_VALUES", value_name = "N")]
    pub(crate) analytics_max_breakdown_values: Option<usize>,

    /// Raw analytics events (which hold client addresses) kept in the database per
    /// table (deliveries, beacons) at most; once a minute the oldest beyond it are
    /// deleted (analytics_raw_pruned_total{reason="cap"}), on top of the retention.
    /// [default: 2000000]
    #[arg(long, env = "RIVULET_ANALYTICS_MAX_RAW_ROWS", value_name = "ROWS")]
    pub(crate) analytics_max_raw_rows: Option<u64>,
}

pub(crate) use analytics::{AnalyticsLimits, AnalyticsLimitsFile};

impl AnalyticsLimitArgs {
    /// Flags over the file's section over the defaults; every limit must be at least 1.
    pub(crate) fn resolve(
        &self,
        file: Option<&AnalyticsLimitsFile>,
    ) -> anyhow::Result<AnalyticsLimits> {
        let empty = AnalyticsLimitsFile::default();
        let file = file.unwrap_or(&empty);
        let defaults = AnalyticsLimits::default();
        let limits = AnalyticsLimits {
            max_sessions: self
                .analytics_max_sessions
                .or(file.max_sessions)
                .unwrap_or(defaults.max_sessions),
            max_values: self
                .analytics_max_breakdown_values
                .or(file.max_breakdown_values)
                .unwrap_or(defaults.max_values),
            max_raw_rows: self
                .analytics_max_raw_rows
                .or(file.max_raw_rows)
                .unwrap_or(defaults.max_raw_rows),
        };
        limits.validate()?;
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_section_and_zero_is_refused() {
        let file: AnalyticsLimitsFile =
            toml::from_str("max_sessions = 10\nmax_raw_rows = 500\n").expect("toml");
        let limits = AnalyticsLimitArgs {
            analytics_max_sessions: Some(20),
            ..Default::default()
        }
        .resolve(Some(&file))
        .expect("valid");
        assert_eq!(
            limits,
            AnalyticsLimits {
                max_sessions: 20,
                max_values: analytics::DEFAULT_MAX_VALUES,
                max_raw_rows: 500,
            }
        );
        let zero = AnalyticsLimitArgs {
            analytics_max_raw_rows: Some(0),
            ..Default::default()
        };
        assert!(
            format!("{:#}", zero.resolve(None).unwrap_err()).contains("--analytics-max-raw-rows")
        );
        assert!(toml::from_str::<AnalyticsLimitsFile>("max_session = 1\n").is_err());
    }
}
