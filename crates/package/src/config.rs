//! Packager settings and errors.

use media::TrackKind;

/// How a rendition is cut and how much of it is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackagerConfig {
    /// Segments start at the first keyframe at or after each multiple of this.
    pub segment_target_ms: u32,
    /// No part is longer than this.
    pub part_target_ms: u32,
    /// Complete segments listed in the media playlist.
    pub window_segments: usize,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        // 201 ms: whole parts of 6 frames at 30 and 29.97 fps (12 at 60, 10 at 50, 5 at
        // 25), so a 2 s segment is 10 full parts; players hold back 3 parts, 0.6 s
        // (rivulet-bench latency: glass to glass 0.69 s with these, 1.10 s with 334 ms).
        Self {
            segment_target_ms: 2000,
            part_target_ms: 201,
            window_segments: 8,
        }
    }
}

impl PackagerConfig {
    /// The targets and window given (`None`: the default), checked.
    pub fn with(
        segment_target_ms: Option<u32>,
        part_target_ms: Option<u32>,
        window_segments: Option<usize>,
    ) -> Result<Self, PackageError> {
        let d = Self::default();
        let config = Self {
            segment_target_ms: segment_target_ms.unwrap_or(d.segment_target_ms),
            part_target_ms: part_target_ms.unwrap_or(d.part_target_ms),
            window_segments: window_segments.unwrap_or(d.window_segments),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that the values make a playable stream.
    pub fn validate(&self) -> Result<(), PackageError> {
        let invalid = |reason: String| Err(PackageError::InvalidConfig(reason));
        if !(500..=30_000).contains(&self.segment_target_ms) {
            return invalid(format!(
                "segment_target_ms is {}; use 500 to 30000",
                self.segment_target_ms
            ));
        }
        if self.part_target_ms < 50 || self.part_target_ms > self.segment_target_ms / 2 {
            return invalid(format!(
                "part_target_ms is {}; use 50 to half the segment target ({})",
                self.part_target_ms,
                self.segment_target_ms / 2
            ));
        }
        if !(3..=1000).contains(&self.window_segments) {
            return invalid(format!(
                "window_segments is {}; use 3 to 1000",
                self.window_segments
            ));
        }
        Ok(())
    }

    /// `EXT-X-TARGETDURATION` for the configured target: whole seconds, rounded up.
    pub(crate) fn target_duration_secs(&self) -> u64 {
        u64::from(self.segment_target_ms).div_ceil(1000)
    }
}

/// Why the packager refused an input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    #[error("invalid packager settings: {0}")]
    InvalidConfig(String),
    #[error("a {0:?} frame arrived but the tracks announce no such track")]
    UnknownTrack(TrackKind),
    #[error(
        "{kind:?} decode time went backwards or stood still ({dts} after {last}); frame dropped"
    )]
    NonMonotonic {
        kind: TrackKind,
        dts: i64,
        last: i64,
    },
    #[error("{kind:?} decode time {dts} is before the start of the timeline; frame dropped")]
    BeforeStart { kind: TrackKind, dts: i64 },
    #[error("cannot write CMAF: {0}")]
    Cmaf(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_setting() {
        assert!(PackagerConfig::default().validate().is_ok());
        let bad = PackagerConfig {
            part_target_ms: 1500,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("part_target_ms")
        );
        let bad = PackagerConfig {
            window_segments: 1,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("window_segments")
        );
    }
}
